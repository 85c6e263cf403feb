"""A data-lake bucket that is secure by default and still a plain `s3.Bucket`."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

# Objects tagged with this are sensitive (PHI): only principals tagged phi-access=true read them.
SENSITIVE_TAG_KEY = "Classification"
SENSITIVE_TAG_VALUE = "PHI"
ACCESS_TAG_KEY = "phi-access"


class LakeBucket(s3.Bucket):
    """SSE-KMS with an S3 bucket key, all public access blocked, TLS 1.2+ enforced,
    versioning, bucket-owner-enforced ownership, server access logs, and lifecycle
    hygiene (noncurrent versions expire, incomplete multipart uploads are aborted)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        encryption_key: kms.IKey,
        access_logs_bucket: s3.IBucket,
        removal_policy: RemovalPolicy,
        noncurrent_version_expiration_days: int,
        lifecycle_rules: Sequence[s3.LifecycleRule] = (),
        object_lock_retention_days: int | None = None,
        object_lock_mode: str = "GOVERNANCE",
        auto_delete_objects: bool | None = None,
    ) -> None:
        destroy = removal_policy == RemovalPolicy.DESTROY
        lock = (
            s3.ObjectLockRetention.compliance
            if object_lock_mode == "COMPLIANCE"
            else s3.ObjectLockRetention.governance
        )
        super().__init__(
            scope,
            construct_id,
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=encryption_key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix=f"{construct_id}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(noncurrent_version_expiration_days),
                ),
                *lifecycle_rules,
            ],
            object_lock_enabled=True if object_lock_retention_days else None,
            object_lock_default_retention=(
                lock(Duration.days(object_lock_retention_days))
                if object_lock_retention_days
                else None
            ),
            removal_policy=removal_policy,
            # Emptying a bucket on destroy only makes sense once destroying was opted into
            # (and not at all where Object Lock forbids it: the caller says so).
            auto_delete_objects=destroy if auto_delete_objects is None else auto_delete_objects,
        )

    def deny_sensitive_reads_without_clearance(self) -> None:
        """Objects tagged Classification=PHI are readable only by principals tagged
        phi-access=true; an explicit deny wins over any IAM allow."""
        self.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyPhiObjectsWithoutPhiAccessTag",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=[
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:GetObjectAttributes",
                    "s3:GetObjectVersionAttributes",
                ],
                resources=[self.arn_for_objects("*")],
                conditions={
                    "StringEquals": {
                        f"s3:ExistingObjectTag/{SENSITIVE_TAG_KEY}": SENSITIVE_TAG_VALUE
                    },
                    # Also true when the principal has no phi-access tag at all.
                    "StringNotEquals": {f"aws:PrincipalTag/{ACCESS_TAG_KEY}": "true"},
                },
            )
        )
