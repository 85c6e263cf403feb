"""The audit trail's own KMS key: CloudTrail encrypts the trail's log files with it, CloudWatch
Logs the trail's log group, and the account's admins decrypt what they query.

Why not the lake key: every platform role (`<project>-<env>-*`) may use the lake key, so the
jobs whose reads and writes the trail records could decrypt the record, and CloudTrail
would have to be admitted to the lake key by the storage stack, which the trail's stack
depends on. A key of its own separates the record from what it records.
"""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from dataplatform.naming import Names
from stacks.constructs.lake_key import (
    ADMIN_TAG_KEY,
    CRYPTO_ACTIONS,
    account_administers_the_key,
    deletion_window,
    replace_key_policy,
)


class AuditKey(kms.Key):
    """Rotation on, an alias from `naming`, and a key policy in which:
    - the account's IAM principals may administer the key but not use it;
    - CloudTrail may generate data keys for this trail only (aws:SourceArn and the trail's
      encryption context) and describe the key;
    - CloudWatch Logs may use it for the trail's log group only;
    - principals tagged dataplatform-admin=true may decrypt through S3 (Athena reads the
      log files with the caller's credentials; those admins already may use the lake key
      that encrypts the workgroup's query results)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        trail_arn: str,
        log_group_arn: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            alias=names.audit_key_alias,
            description=f"{names.prefix}: encrypts the audit trail's log files and log group",
            enable_key_rotation=True,
            pending_window=deletion_window(removal_policy),
            removal_policy=removal_policy,
        )
        account = iam.AccountRootPrincipal()
        cloudtrail = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        this_trail = {"aws:SourceArn": trail_arn}
        self.key_policy = iam.PolicyDocument(
            statements=[
                account_administers_the_key(),
                iam.PolicyStatement(
                    sid="CloudTrailEncryptsThisTrailsLogs",
                    principals=[cloudtrail],
                    actions=["kms:GenerateDataKey*"],
                    resources=["*"],
                    conditions={
                        "StringEquals": this_trail,
                        "StringLike": {
                            "kms:EncryptionContext:aws:cloudtrail:arn": (
                                f"arn:{Aws.PARTITION}:cloudtrail:*:{Aws.ACCOUNT_ID}:trail/*"
                            )
                        },
                    },
                ),
                # DescribeKey carries no encryption context: the trail's ARN alone.
                iam.PolicyStatement(
                    sid="CloudTrailDescribesTheKey",
                    principals=[cloudtrail],
                    actions=["kms:DescribeKey"],
                    resources=["*"],
                    conditions={"StringEquals": this_trail},
                ),
                iam.PolicyStatement(
                    sid="CloudWatchLogsOfTheTrailsLogGroup",
                    principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                    actions=CRYPTO_ACTIONS,
                    resources=["*"],
                    conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arn}},
                ),
                iam.PolicyStatement(
                    sid="TaggedAdminsReadTheTrailThroughS3",
                    principals=[account],
                    actions=["kms:Decrypt"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            f"aws:PrincipalTag/{ADMIN_TAG_KEY}": "true",
                            "kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com",
                        }
                    },
                ),
            ]
        )
        replace_key_policy(self, self.key_policy)
