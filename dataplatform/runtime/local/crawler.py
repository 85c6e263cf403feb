"""The local Glue crawler: what moto's crawler does not do (it crawls nothing). It finds
the raw partitions (dt=/hour= folders) of a dataset in S3, adds the new ones to the raw
table in the catalog, and infers the columns of the new files, logging columns the table
does not have (schema drift is logged, not applied: the deployed crawler's policy)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.runtime.local.provision import raw_table_input
from dataplatform.spec import Dataset

PARTITION_KEY = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+$")
SAMPLE_LINES = 200  # per new file: enough to see its columns


@dataclass
class CrawlResult:
    partitions_added: list[tuple[str, str]] = field(default_factory=list)
    partitions_existing: int = 0
    files: int = 0
    columns_seen: list[str] = field(default_factory=list)
    new_columns: list[str] = field(default_factory=list)  # logged, not applied


def crawl(s3, glue, *, dataset: Dataset, names: Names) -> CrawlResult:
    database, table = names.raw_database, names.table(dataset.name)
    try:
        definition = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=database, TableInput=raw_table_input(dataset, names))
        definition = glue.get_table(DatabaseName=database, Name=table)["Table"]
    existing: set[tuple[str, ...]] = set()
    for page in glue.get_paginator("get_partitions").paginate(
        DatabaseName=database, TableName=table
    ):
        existing.update(tuple(p["Values"]) for p in page["Partitions"])

    result = CrawlResult(partitions_existing=len(existing))
    prefix = layout.raw_prefix(dataset.name)
    new_files: dict[tuple[str, str], list[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=names.raw_bucket, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            match = PARTITION_KEY.match(item["Key"][len(prefix) :])
            if not match or item["Size"] == 0:
                continue
            result.files += 1
            values = (match.group(1), match.group(2))
            if values not in existing:
                new_files.setdefault(values, []).append(item["Key"])

    seen: dict[str, None] = {}
    for keys in new_files.values():
        for key in keys:
            for column in _columns_of(s3, names.raw_bucket, key, dataset.format):
                seen.setdefault(column, None)
    known = {c["Name"] for c in definition["StorageDescriptor"]["Columns"]}
    result.columns_seen = list(seen)
    result.new_columns = [c for c in seen if c not in known]

    sd = definition["StorageDescriptor"]
    location = sd["Location"].rstrip("/") + "/"
    inputs = [
        {
            "Values": list(values),
            "StorageDescriptor": {
                **{k: v for k, v in sd.items() if k != "Location"},
                "Location": f"{location}dt={values[0]}/hour={values[1]}/",
            },
        }
        for values in sorted(new_files)
    ]
    for start in range(0, len(inputs), 100):
        response = glue.batch_create_partition(
            DatabaseName=database, TableName=table, PartitionInputList=inputs[start : start + 100]
        )
        if response.get("Errors"):
            raise RuntimeError(
                f"catalog refused partitions of {database}.{table}: {response['Errors']}"
            )
    result.partitions_added = sorted(new_files)
    return result


def _columns_of(s3, bucket: str, key: str, fmt: str) -> list[str]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    text = body.decode("utf-8", errors="replace")
    if fmt == "csv":
        return next(csv.reader(io.StringIO(text)), [])
    columns: dict[str, None] = {}
    for line in text.splitlines()[:SAMPLE_LINES]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            for name in record:
                columns.setdefault(name, None)
    return list(columns)
