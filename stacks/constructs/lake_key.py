"""The lake's customer-managed KMS key and a key policy that limits who may use it."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from dataplatform.naming import Names

CRYPTO_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
]
ADMIN_ACTIONS = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
]
# People who administer the platform carry this IAM tag; they may use the key too (the Glue
# console, for example, decrypts catalog objects with the caller's permissions).
ADMIN_TAG_KEY = "dataplatform-admin"


def deletion_window(removal_policy: RemovalPolicy) -> Duration:
    """A key's pending deletion: a week where the environment destroys its data, else the
    30-day maximum."""
    return Duration.days(7 if removal_policy == RemovalPolicy.DESTROY else 30)


def account_administers_the_key() -> iam.PolicyStatement:
    """The account's IAM principals may administer the key (so it can never become
    unmanageable) but not use it."""
    return iam.PolicyStatement(
        sid="AccountAdministersTheKey",
        principals=[iam.AccountRootPrincipal()],
        actions=ADMIN_ACTIONS,
        resources=["*"],
    )


def replace_key_policy(key: kms.Key, policy: iam.PolicyDocument) -> None:
    """Escape hatch: the L2 always adds `kms:*` for the account root, which would let any
    IAM policy in the account use the key. `policy` replaces it; grants made through the L2
    therefore land in principals' IAM policies only, as intended."""
    cfn_key: kms.CfnKey = key.node.default_child  # type: ignore[assignment]
    cfn_key.key_policy = policy


class LakeKey(kms.Key):
    """Rotation on, an alias from `naming`, and a key policy in which:
    - the account's IAM principals may administer the key (so it can never become
      unmanageable) but not use it, unless they are
    - the platform's own roles (named `<project>-<env>-*`), CloudFormation's deployment
      role (it writes Glue catalog objects encrypted with the key), or principals tagged
      dataplatform-admin=true (the account's admins);
    - CloudWatch Logs may use it for this account's log groups only."""

    def __init__(
        self, scope: Construct, construct_id: str, *, names: Names, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            alias=names.lake_key_alias,
            description=f"{names.prefix}: encrypts the data lake, streams, catalog and logs",
            enable_key_rotation=True,
            pending_window=deletion_window(removal_policy),
            removal_policy=removal_policy,
        )
        account = iam.AccountRootPrincipal()
        role_arn = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
        self.key_policy = iam.PolicyDocument(
            statements=[
                account_administers_the_key(),
                iam.PolicyStatement(
                    sid="PlatformRolesUseTheKey",
                    principals=[account],
                    actions=[*CRYPTO_ACTIONS, "kms:CreateGrant"],
                    resources=["*"],
                    conditions={
                        "ArnLike": {
                            "aws:PrincipalArn": [
                                role_arn + names.role_name_pattern,
                                role_arn + f"cdk-*-cfn-exec-role-{Aws.ACCOUNT_ID}-{Aws.REGION}",
                            ]
                        }
                    },
                ),
                iam.PolicyStatement(
                    sid="TaggedAdminsUseTheKey",
                    principals=[account],
                    actions=CRYPTO_ACTIONS,
                    resources=["*"],
                    conditions={"StringEquals": {f"aws:PrincipalTag/{ADMIN_TAG_KEY}": "true"}},
                ),
                iam.PolicyStatement(
                    sid="CloudWatchLogsOfThisAccount",
                    principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                    actions=CRYPTO_ACTIONS,
                    resources=["*"],
                    conditions={
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        }
                    },
                ),
            ]
        )
        replace_key_policy(self, self.key_policy)
