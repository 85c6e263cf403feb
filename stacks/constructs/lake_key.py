"""The lake's customer-managed KMS key and a key policy that limits who may use it."""
from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from dataplatform.naming import Names

CRYPTO_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                  "kms:DescribeKey"]


class LakeKey(kms.Key):
    """Rotation on, an alias from `naming`, and a key policy in which:
    - the account (its IAM admins) may administer the key but not use it;
    - only the platform's own roles (named `<project>-<env>-*`) and CloudFormation's
      deployment role (it writes Glue catalog objects encrypted with this key) may
      encrypt and decrypt;
    - CloudWatch Logs may use it for this account's log groups only."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(
            scope, construct_id,
            alias=names.lake_key_alias,
            description=f"{names.prefix}: encrypts the data lake, streams, catalog and logs",
            enable_key_rotation=True,
            # With `admins`, the account root principal gets key administration only,
            # not kms:* (the CDK default), so IAM policies alone cannot use the key.
            admins=[iam.AccountRootPrincipal()],
            pending_window=Duration.days(7 if removal_policy == RemovalPolicy.DESTROY else 30),
            removal_policy=removal_policy,
        )
        role_arn = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
        self.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowUseByPlatformRolesOnly",
            principals=[iam.AccountRootPrincipal()],
            actions=[*CRYPTO_ACTIONS, "kms:CreateGrant"],
            resources=["*"],
            conditions={"ArnLike": {"aws:PrincipalArn": [
                role_arn + names.role_name_pattern,
                role_arn + f"cdk-*-cfn-exec-role-{Aws.ACCOUNT_ID}-{Aws.REGION}",
            ]}},
        ))
        self.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=CRYPTO_ACTIONS,
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"}},
        ))
