"""The lake as the stacks and constructs that use it receive it: its key and its buckets,
by zone (built by StorageStack)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_s3 as s3

from stacks.constructs.lake_bucket import LakeBucket
from stacks.constructs.lake_key import LakeKey


@dataclass(frozen=True)
class Lake:
    """What other stacks receive: the key and the buckets, by zone."""

    key: LakeKey
    raw: LakeBucket
    curated: LakeBucket
    features: LakeBucket
    models: LakeBucket
    athena_results: LakeBucket
    artifacts: LakeBucket
    access_logs: s3.Bucket

    def bucket(self, zone: str) -> s3.Bucket:
        """The bucket of a zone of naming.BUCKET_ZONES."""
        return {
            "raw": self.raw,
            "curated": self.curated,
            "features": self.features,
            "models": self.models,
            "athena-results": self.athena_results,
            "artifacts": self.artifacts,
            "access-logs": self.access_logs,
        }[zone]
