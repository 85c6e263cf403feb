"""StorageStack: the lake's KMS key and its buckets, one per zone."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dataplatform.naming import Names
from dataplatform.spec import Environment
from stacks.constructs import checkov
from stacks.constructs.lake import Lake
from stacks.constructs.lake_bucket import LakeBucket
from stacks.constructs.lake_key import LakeKey
from stacks.constructs.removal import DataRemoval

ARCHIVE_CLASSES = {
    "GLACIER_IR": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
    "GLACIER": s3.StorageClass.GLACIER,
    "DEEP_ARCHIVE": s3.StorageClass.DEEP_ARCHIVE,
}


class StorageStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        removal: DataRemoval,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal.annotate(self)
        lifecycle = settings.lifecycle

        key = LakeKey(self, "LakeKey", names=names, removal_policy=removal.policy)

        # S3 server access logging cannot deliver to an SSE-KMS bucket: SSE-S3 here.
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=names.access_logs_bucket,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(settings.log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
            removal_policy=removal.policy,
            auto_delete_objects=removal.destroys,
        )
        checkov.skip(
            access_logs,
            "CKV_AWS_18",
            "this is the lake's server access log bucket: "
            "logging it would log the log deliveries themselves, into itself or a bucket "
            "with the same question",
        )

        def bucket(construct_id: str, zone: str, **extra) -> LakeBucket:
            return LakeBucket(
                self,
                construct_id,
                bucket_name=names.bucket(zone),
                encryption_key=key,
                access_logs_bucket=access_logs,
                removal_policy=removal.policy,
                noncurrent_version_expiration_days=lifecycle.noncurrent_version_expiration_days,
                **extra,
            )

        raw = bucket(
            "Raw",
            "raw",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="tier-raw-data",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(lifecycle.raw_infrequent_access_days),
                        ),
                        s3.Transition(
                            storage_class=ARCHIVE_CLASSES[lifecycle.raw_archive_storage_class],
                            transition_after=Duration.days(lifecycle.raw_archive_days),
                        ),
                    ],
                )
            ],
            object_lock_retention_days=(
                settings.object_lock.retention_days if settings.object_lock.enabled else None
            ),
        )
        curated = bucket("Curated", "curated")
        features = bucket("Features", "features")
        models = bucket("Models", "models")
        athena_results = bucket(
            "AthenaResults",
            "athena-results",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-query-results",
                    expiration=Duration.days(lifecycle.athena_results_expiration_days),
                )
            ],
        )
        artifacts = bucket("Artifacts", "artifacts")

        for data_bucket in (raw, curated, features, models):
            data_bucket.deny_sensitive_reads_without_clearance()

        self.lake = Lake(
            key=key,
            raw=raw,
            curated=curated,
            features=features,
            models=models,
            athena_results=athena_results,
            artifacts=artifacts,
            access_logs=access_logs,
        )
