"""What a stream dataset's raw zone holds, read back through S3 (shared by the tests that
count delivered records)."""

from __future__ import annotations

import base64
import gzip
import json

from dataplatform import layout


def raw_lines(s3, bucket: str, dataset: str) -> tuple[list[str], list[bytes]]:
    """event_ids delivered to raw, and the original bytes sent to the error prefix."""
    ids, errored = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            lines = [json.loads(line) for line in body.splitlines() if line]
            if obj["Key"].startswith(layout.errors_prefix(dataset)):
                errored += [base64.b64decode(line["rawData"]) for line in lines]
            elif obj["Key"].startswith(layout.raw_prefix(dataset)):
                ids += [line["event_id"] for line in lines]
    return ids, errored
