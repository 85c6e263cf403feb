"""The local Athena's catalog: a table's definition from the local platform's Glue (its
location, format, columns, partition keys and partitions, or -- for partition projection --
the `k=v/` folders below its location), and the S3 objects of the partitions a query keeps
(`select_files`), which are what the engine reads and counts as bytes scanned. An Iceberg
table (Glue Parameters `table_type` ICEBERG and `metadata_location`) is recognised here and
read by `iceberg`, as is one of its metadata tables (`"t$snapshots"`, ...)."""

from __future__ import annotations

import bisect
import posixpath
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dataplatform.jobs.iceberg import is_iceberg_table
from dataplatform.runtime.local.athena.sql import Predicate, QueryError, keeps_partition

_PARQUET_MARKERS = ("parquet",)
_JSON_MARKERS = ("jsonserde", "json")
_CSV_MARKERS = ("opencsvserde", "lazysimpleserde", "textinputformat")
# The metadata tables Athena reads of an Iceberg table, as `"<table>$<name>"`.
ICEBERG_METADATA_TABLES = ("snapshots", "history", "files", "partitions", "refs")
# S3 requests in flight at once when a query lists partitions or reads text files: one at a
# time, the client waited on the server and the server on the client (a query over the demo's
# 1,056 raw hours reads 1,056 objects); a few at once keep both cores busy.
S3_REQUESTS_IN_FLIGHT = 8
_T = TypeVar("_T")
_R = TypeVar("_R")


def in_parallel(function: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """`function` of each item, in the items' order, S3_REQUESTS_IN_FLIGHT at a time (boto3
    clients and pyarrow's S3 file system are safe to share between threads)."""
    items = list(items)
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=S3_REQUESTS_IN_FLIGHT) as pool:
        return list(pool.map(function, items))


@dataclass
class Table:
    """A Glue table's definition, as the engine reads it."""

    database: str
    name: str
    location: str  # s3://bucket/prefix/
    format: str  # parquet | json | csv | iceberg
    columns: list[tuple[str, str]]
    partition_keys: list[str]
    parameters: dict[str, str]
    serde_parameters: dict[str, str]
    catalog_partitions: list[tuple[dict[str, str], str]] | None  # None: projection
    serde_library: str = ""  # SerdeInfo.SerializationLibrary: how a text value is parsed
    metadata_location: str = ""  # iceberg: s3://.../metadata/<n>-<uuid>.metadata.json
    metadata_table: str = ""  # iceberg: "snapshots" for `"t$snapshots"`, ...; "" the data


@dataclass
class Source:
    """A table as one query reads it: the S3 objects of the partitions it keeps. An Iceberg
    table's `read` gives its rows (the files are the data files its scan plans); `view` is
    the DuckDB view the query's SQL names (a table read at another version has its own)."""

    database: str
    name: str
    table: Table
    files: list[tuple[str, int]]  # (bucket/key, size) after pruning
    partitions: list[dict[str, str]]
    file_partitions: dict[str, dict[str, str]] = field(default_factory=dict)
    view: str = ""  # "" : the table's name
    # iceberg: the rows (pyarrow.Table), given the columns the reader may not see
    read: Callable[[tuple[str, ...]], Any] | None = None
    # iceberg: a column's current name (lower case) -> its name in the version read
    renames: dict[str, str] = field(default_factory=dict)


def read_table(glue, database: str, name: str) -> Table:
    base, dollar, suffix = name.partition("$")
    if dollar:
        return _metadata_table(glue, database, base, suffix)
    try:
        table = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        raise QueryError(unknown_table(glue, database, name)) from None
    sd = table.get("StorageDescriptor") or {}
    serde = sd.get("SerdeInfo") or {}
    params = {k: str(v) for k, v in (table.get("Parameters") or {}).items()}
    if is_iceberg_table(params):
        return _iceberg_table(database, name, sd, params)
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
        serde_library=serde.get("SerializationLibrary") or "",
    )


def _iceberg_table(database: str, name: str, sd: dict, params: dict[str, str]) -> Table:
    """An Iceberg table as Glue registers it: its partitioning, schema and files are in the
    metadata file `metadata_location` names (Glue's PartitionKeys are empty)."""
    metadata = next((v for k, v in params.items() if k.lower() == "metadata_location"), "")
    if not metadata:
        raise QueryError(
            f"ICEBERG_INVALID_METADATA: Table is missing [metadata_location] property: "
            f"{database}.{name}"
        )
    location = sd.get("Location") or metadata.rsplit("/metadata/", 1)[0]
    columns = [
        (c["Name"].lower(), c.get("Type", "string"))
        for c in sd.get("Columns") or []
        if str((c.get("Parameters") or {}).get("iceberg.field.current", "true")).lower() != "false"
    ]
    return Table(
        database=database,
        name=name,
        location=location,
        format="iceberg",
        columns=columns,
        partition_keys=[],
        parameters=params,
        serde_parameters={},
        catalog_partitions=None,
        metadata_location=metadata,
    )


def _metadata_table(glue, database: str, name: str, suffix: str) -> Table:
    """`"t$snapshots"` and the like: a metadata table of the Iceberg table t."""
    table = read_table(glue, database, name)
    if table.format != "iceberg" or suffix not in ICEBERG_METADATA_TABLES:
        why = (
            f"{database}.{name} is not an Iceberg table"
            if table.format != "iceberg"
            else f"the Iceberg metadata tables are ${', $'.join(ICEBERG_METADATA_TABLES)}"
        )
        raise QueryError(
            f"TABLE_NOT_FOUND: Table '{database}.{name}${suffix}' does not exist ({why})"
        )
    table.metadata_table = suffix
    return table


def unknown_table(glue, database: str, name: str) -> str:
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


def _location(url: str) -> tuple[str, str]:
    """An S3 location's bucket and key prefix, the prefix ending in `/` (a folder)."""
    bucket, prefix = _split_s3(url)
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _objects(s3, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of every object below the prefix, sorted by key."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [(obj["Key"], obj["Size"]) for obj in page.get("Contents", [])]
    return sorted(found)


def _hidden_folder(relative: str) -> bool:
    """A folder on the way to the file whose name starts with `_` or `.` (not data)."""
    return any(part.startswith(("_", ".")) for part in relative.split("/")[:-1])


def _data_files(bucket: str, prefix: str, objects: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(bucket/key, size) of the data files among a location's objects (Hive's rules: keys
    whose file name starts with `_` or `.`, or below such a folder, folder markers and empty
    objects are not data)."""
    found = []
    for key, size in objects:
        base = posixpath.basename(key)
        if (
            key.endswith("/")
            or not base
            or base.startswith(("_", "."))
            or key.endswith("$folder$")
            or size == 0
            or _hidden_folder(key[len(prefix) :])
        ):
            continue
        found.append((f"{bucket}/{key}", size))
    return sorted(found)


def _list(s3, url: str) -> list[tuple[str, int]]:
    """(bucket/key, size) of the data files below an S3 location."""
    bucket, prefix = _location(url)
    return _data_files(bucket, prefix, _objects(s3, bucket, prefix))


def _list_partitions(
    s3, table_location: str, locations: list[str], partitions_in_table: int
) -> list[list[tuple[str, int]]]:
    """Each partition location's data files, as `_list` gives them. When the query keeps
    most of the table's partitions and they lie below the table's location, one listing of
    the table (a LIST per 1,000 keys) split by partition gives the same files as a LIST per
    partition: the demo's raw table over 1,056 hours took 1,056 LISTs, as many requests as
    the reads of its files."""
    bucket, prefix = _location(table_location)

    def below_table(location: str) -> bool:
        their_bucket, their_prefix = _location(location)
        return (
            their_bucket == bucket
            and their_prefix.startswith(prefix)
            and not _hidden_folder(their_prefix[len(prefix) :])  # the table's listing keeps these
        )

    if 2 * len(locations) <= partitions_in_table or not all(map(below_table, locations)):
        return in_parallel(lambda location: _list(s3, location), locations)
    objects = _objects(s3, bucket, prefix)
    keys = [key for key, _ in objects]
    listings = []
    for location in locations:
        _, their_prefix = _location(location)
        start = end = bisect.bisect_left(keys, their_prefix)  # keys with the prefix follow
        while end < len(keys) and keys[end].startswith(their_prefix):
            end += 1
        listings.append(_data_files(bucket, their_prefix, objects[start:end]))
    return listings


def select_files(table: Table, s3, places: list[list[Predicate]]) -> Source:
    def wanted(values: dict[str, str]) -> bool:
        return any(keeps_partition(values, predicates) for predicates in places)

    if not table.partition_keys:
        return Source(table.database, table.name, table, _list(s3, table.location), [])

    files: list[tuple[str, int, dict[str, str]]] = []  # (bucket/key, size, partition values)
    partitions: list[dict[str, str]] = []
    if table.catalog_partitions is not None:
        kept = [
            (values, location) for values, location in table.catalog_partitions if wanted(values)
        ]
        listings = _list_partitions(
            s3, table.location, [location for _, location in kept], len(table.catalog_partitions)
        )
        for (values, _), listing in zip(kept, listings, strict=True):
            partitions.append(values)
            files += [(p, s, values) for p, s in listing]
    else:  # partition projection: the k=v folders below the table's location
        bucket, prefix = _location(table.location)
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
