"""The local Athena's catalog: a table's definition from the local platform's Glue (its
location, format, columns, partition keys and partitions, or -- for partition projection --
the `k=v/` folders below its location), and the S3 objects of the partitions a query keeps
(`select_files`), which are what the engine reads and counts as bytes scanned."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from dataplatform.runtime.local.athena.sql import Predicate, QueryError, keeps_partition

_PARQUET_MARKERS = ("parquet",)
_JSON_MARKERS = ("jsonserde", "json")
_CSV_MARKERS = ("opencsvserde", "lazysimpleserde", "textinputformat")


@dataclass
class Table:
    """A Glue table's definition, as the engine reads it."""

    database: str
    name: str
    location: str  # s3://bucket/prefix/
    format: str  # parquet | json | csv
    columns: list[tuple[str, str]]
    partition_keys: list[str]
    parameters: dict[str, str]
    serde_parameters: dict[str, str]
    catalog_partitions: list[tuple[dict[str, str], str]] | None  # None: projection


@dataclass
class Source:
    """A table as one query reads it: the S3 objects of the partitions it keeps."""

    database: str
    name: str
    table: Table
    files: list[tuple[str, int]]  # (bucket/key, size) after pruning
    partitions: list[dict[str, str]]
    file_partitions: dict[str, dict[str, str]] = field(default_factory=dict)


def read_table(glue, database: str, name: str) -> Table:
    try:
        table = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        raise QueryError(_unknown_table(glue, database, name)) from None
    sd = table.get("StorageDescriptor") or {}
    serde = sd.get("SerdeInfo") or {}
    params = {k: str(v) for k, v in (table.get("Parameters") or {}).items()}
    location = sd.get("Location") or ""
    if not location.startswith("s3://"):
        raise QueryError(
            f"Table {database}.{name} has no S3 location (StorageDescriptor."
            f"Location is {location!r})"
        )
    fmt = _format(sd, serde, params, f"{database}.{name}")
    keys = [k["Name"].lower() for k in table.get("PartitionKeys") or []]
    partitions: list[tuple[dict[str, str], str]] | None = None
    if keys:
        partitions = []
        paginator = glue.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=database, TableName=name):
            for part in page.get("Partitions", []):
                values = dict(zip(keys, part["Values"], strict=True))
                part_location = (part.get("StorageDescriptor") or {}).get("Location") or (
                    location.rstrip("/") + "/" + "/".join(f"{k}={v}" for k, v in values.items())
                )
                partitions.append((values, part_location))
        if not partitions and params.get("projection.enabled", "").lower() == "true":
            partitions = None  # discovered from S3 below
    return Table(
        database=database,
        name=name,
        location=location,
        format=fmt,
        columns=[(c["Name"].lower(), c.get("Type", "string")) for c in sd.get("Columns") or []],
        partition_keys=keys,
        parameters=params,
        serde_parameters={k: str(v) for k, v in (serde.get("Parameters") or {}).items()},
        catalog_partitions=partitions,
    )


def _unknown_table(glue, database: str, name: str) -> str:
    try:
        names: list[str] = []
        for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
            names += [t["Name"] for t in page.get("TableList", [])]
        known = ", ".join(sorted(names)) or "(none)"
        return (
            f"Table {database}.{name} does not exist (TABLE_NOT_FOUND); tables in "
            f"database {database}: {known}"
        )
    except glue.exceptions.EntityNotFoundException:
        databases: list[str] = []
        for page in glue.get_paginator("get_databases").paginate():
            databases += [d["Name"] for d in page.get("DatabaseList", [])]
        return (
            f"Table {database}.{name} does not exist: database {database} does not "
            f"exist (SCHEMA_NOT_FOUND); databases: {', '.join(sorted(databases)) or '(none)'}"
        )


def _format(sd: dict, serde: dict, params: dict, what: str) -> str:
    text = " ".join(
        [
            sd.get("InputFormat") or "",
            serde.get("SerializationLibrary") or "",
            params.get("classification") or "",
        ]
    ).lower()
    if any(m in text for m in _PARQUET_MARKERS):
        return "parquet"
    if any(m in text for m in _JSON_MARKERS):
        return "json"
    if any(m in text for m in _CSV_MARKERS) or "csv" in text:
        return "csv"
    raise QueryError(
        f"Table {what}: unsupported format (InputFormat "
        f"{sd.get('InputFormat')!r}, SerDe {serde.get('SerializationLibrary')!r}); "
        "the local platform reads Parquet, JSON lines and CSV"
    )


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    return bucket, prefix


def _list(s3, url: str) -> list[tuple[str, int]]:
    """(bucket/key, size) of the data files below an S3 location (Hive's rules: keys
    whose file name starts with `_` or `.` and folder markers are not data)."""
    bucket, prefix = _split_s3(url)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            base = posixpath.basename(key)
            if (
                key.endswith("/")
                or not base
                or base.startswith(("_", "."))
                or key.endswith("$folder$")
                or obj["Size"] == 0
            ):
                continue
            if any(part.startswith(("_", ".")) for part in key[len(prefix) :].split("/")[:-1]):
                continue
            found.append((f"{bucket}/{key}", obj["Size"]))
    return sorted(found)


def select_files(table: Table, s3, places: list[list[Predicate]]) -> Source:
    def wanted(values: dict[str, str]) -> bool:
        return any(keeps_partition(values, predicates) for predicates in places)

    if not table.partition_keys:
        return Source(table.database, table.name, table, _list(s3, table.location), [])

    files: list[tuple[str, int, dict[str, str]]] = []  # (bucket/key, size, partition values)
    partitions: list[dict[str, str]] = []
    if table.catalog_partitions is not None:
        for values, location in table.catalog_partitions:
            if wanted(values):
                partitions.append(values)
                files += [(p, s, values) for p, s in _list(s3, location)]
    else:  # partition projection: the k=v folders below the table's location
        bucket, prefix = _split_s3(table.location)
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        seen: dict[tuple, dict[str, str]] = {}
        for path, size in _list(s3, table.location):
            relative = path[len(bucket) + 1 + len(prefix) :].split("/")[:-1]
            pairs = [part.split("=", 1) for part in relative[: len(table.partition_keys)]]
            if len(pairs) != len(table.partition_keys) or any(
                len(p) != 2 or p[0].lower() != k
                for p, k in zip(pairs, table.partition_keys, strict=True)
            ):
                continue
            values = {k: v for (_, v), k in zip(pairs, table.partition_keys, strict=True)}
            if wanted(values):
                seen.setdefault(tuple(values.values()), values)
                files.append((path, size, values))
        partitions = list(seen.values())
    return Source(
        table.database,
        table.name,
        table,
        [(p, s) for p, s, _ in files],
        partitions,
        {p: v for p, _, v in files},
    )
