"""A Glue crawl, by the crawler's own definition (what the local endpoint's Glue service
runs for StartCrawler; moto's crawler crawls nothing).

For each S3 target of the crawler: the table named after the target's folder (Glue's rule,
with the crawler's TablePrefix) in the crawler's database. An existing table gets the
partitions present below its location and missing from the catalog (Hive `k=v/` folders
for its partition keys); the columns seen in the new files that the table lacks are
logged, or added when the SchemaChangePolicy's UpdateBehavior is UPDATE_IN_DATABASE. A
missing table is created from the files: JSON lines (gzip or not) or CSV with a header,
every column a string (as the platform's raw tables declare them), `k=v` folders as string
partition keys. It needs no project spec: any client's crawler is crawled.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import posixpath
from dataclasses import dataclass, field

from dataplatform.runtime.local.formats import RAW_SERDES, TEXT_FORMATS

SAMPLE_LINES = 200  # per new file: enough to see its columns


@dataclass
class TableCrawl:
    """What one target's crawl found and did."""

    database: str
    table: str
    created: bool = False
    updated: bool = False
    partitions_added: list[tuple[str, ...]] = field(default_factory=list)
    partitions_existing: int = 0
    files: int = 0
    new_columns: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)


def _split(url: str) -> tuple[str, str]:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def table_name(path: str, prefix: str = "") -> str:
    """Glue's name for a target's table: its last folder, lower case, with the prefix."""
    _, key = _split(path)
    folder = posixpath.basename(key.rstrip("/")) or key.rstrip("/") or "root"
    return (prefix + folder).lower().replace("-", "_").replace(".", "_")


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def _data_objects(s3, bucket: str, prefix: str) -> list[tuple[str, int]]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/") or item["Size"] == 0 or _hidden(relative):
                continue
            found.append((item["Key"], item["Size"]))
    return found


def _format_of(key: str, text: str) -> str:
    name = key.removesuffix(".gz").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".json", ".jsonl")):
        return "json"
    first = text.lstrip()[:1]
    return "json" if first in ("{", "[") else "csv"


def _read_text(s3, bucket: str, key: str) -> str:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".gz") or body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body.decode("utf-8", errors="replace")


def columns_of(text: str, fmt: str) -> list[str]:
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
                columns.setdefault(str(name).lower(), None)
    return list(columns)


def _partition_values(relative: str, keys: list[str]) -> tuple[str, ...] | None:
    """The partition values of an object `relative` to the table's location, when its
    folders are exactly the keys' `k=v/` (None: not a partition of this table)."""
    folders = relative.split("/")[:-1]
    if len(folders) != len(keys):
        return None
    values = []
    for folder, key in zip(folders, keys, strict=True):
        name, _, value = folder.partition("=")
        if name.lower() != key or not value:
            return None
        values.append(value)
    return tuple(values)


def crawl_target(
    s3, glue, *, database: str, path: str, table_prefix: str = "", update_columns: bool = False
) -> TableCrawl:
    """One S3 target: its table's partitions (and, new, the table itself)."""
    name = table_name(path, table_prefix)
    bucket, prefix = _split(path)
    result = TableCrawl(database, name)
    try:
        table = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        table = None
    objects = _data_objects(s3, bucket, prefix)
    result.files = len(objects)
    if table is None:
        if not objects:
            return result
        table = _create_table(s3, glue, database, name, bucket, prefix, objects)
        result.created = True
    sd = table["StorageDescriptor"]
    location = sd.get("Location") or path
    t_bucket, t_prefix = _split(location)
    keys = [k["Name"].lower() for k in table.get("PartitionKeys") or []]
    existing: set[tuple[str, ...]] = set()
    if keys:
        for page in glue.get_paginator("get_partitions").paginate(
            DatabaseName=database, TableName=name
        ):
            existing.update(tuple(p["Values"]) for p in page["Partitions"])
    result.partitions_existing = len(existing)
    new_files: dict[tuple[str, ...], list[str]] = {}
    for key, _ in objects if t_bucket == bucket else []:
        if not key.startswith(t_prefix):
            continue
        values = _partition_values(key[len(t_prefix) :], keys) if keys else ()
        if values is None or values in existing:
            continue
        new_files.setdefault(values, []).append(key)
    # columns of the new files the table does not have
    known = {c["Name"].lower() for c in sd.get("Columns") or []} | set(keys)
    fmt = _table_format(table)
    seen: dict[str, None] = {}
    for files in new_files.values():
        for key in files:
            for column in columns_of(_read_text(s3, bucket, key), fmt):
                seen.setdefault(column, None)
    result.new_columns = [c for c in seen if c not in known]
    if result.new_columns and update_columns:
        columns = list(sd.get("Columns") or []) + [
            {"Name": c, "Type": "string"} for c in result.new_columns
        ]
        table_input = {
            k: v
            for k, v in table.items()
            if k in ("Name", "Description", "TableType", "Parameters", "PartitionKeys", "Owner")
        }
        glue.update_table(
            DatabaseName=database,
            TableInput={**table_input, "StorageDescriptor": {**sd, "Columns": columns}},
        )
        result.columns_added, result.updated = list(result.new_columns), True
    if keys:
        base = location.rstrip("/") + "/"
        inputs = [
            {
                "Values": list(values),
                "StorageDescriptor": {
                    **{k: v for k, v in sd.items() if k != "Location"},
                    "Location": base
                    + "".join(f"{k}={v}/" for k, v in zip(keys, values, strict=True)),
                },
            }
            for values in sorted(new_files)
        ]
        for start in range(0, len(inputs), 100):
            answer = glue.batch_create_partition(
                DatabaseName=database,
                TableName=name,
                PartitionInputList=inputs[start : start + 100],
            )
            if answer.get("Errors"):
                raise RuntimeError(
                    f"the catalog refused partitions of {database}.{name}: {answer['Errors']}"
                )
        result.partitions_added = sorted(new_files)
    return result


def _table_format(table: dict) -> str:
    sd = table.get("StorageDescriptor") or {}
    text = " ".join(
        [
            (sd.get("SerdeInfo") or {}).get("SerializationLibrary") or "",
            (table.get("Parameters") or {}).get("classification") or "",
        ]
    ).lower()
    return "csv" if "csv" in text else "json"


def _create_table(s3, glue, database, name, bucket, prefix, objects) -> dict:
    first = objects[0][0]
    text = _read_text(s3, bucket, first)
    fmt = _format_of(first, text)
    relative = first[len(prefix) :].split("/")[:-1]
    keys = [
        folder.partition("=")[0].lower() if "=" in folder else f"partition_{i}"
        for i, folder in enumerate(relative)
    ]
    columns = [c for c in columns_of(text, fmt) if c not in keys]
    parameters = {
        "classification": fmt,
        "compressionType": "gzip" if first.endswith(".gz") else "none",
    }
    if fmt == "csv":
        parameters["skip.header.line.count"] = "1"
    glue.create_table(
        DatabaseName=database,
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": parameters,
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in keys],
            "StorageDescriptor": {
                "Columns": [{"Name": c, "Type": "string"} for c in columns],
                "Location": f"s3://{bucket}/{prefix}",
                "Compressed": first.endswith(".gz"),
                **TEXT_FORMATS,
                "SerdeInfo": RAW_SERDES[fmt],
            },
        },
    )
    return glue.get_table(DatabaseName=database, Name=name)["Table"]
