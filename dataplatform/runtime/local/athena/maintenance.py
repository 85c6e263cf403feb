"""Athena's Iceberg maintenance statements on the local endpoint, done for real on the table
(through pyiceberg, committed through the endpoint's own Glue, as Athena commits):

- `OPTIMIZE <table> REWRITE DATA USING BIN_PACK [WHERE <partition predicate>]`: in every
  partition the predicate keeps that has more than one data file, the files are read and
  written again as one (or as few as the table's target file size allows), in one snapshot
  (`overwrite`; Athena's is a `replace`): the rows stay, the files go down. (Athena also rewrites files with deletes;
  the platform's tables are copy-on-write and have none.)
- `VACUUM <table>`: the snapshots older than the table's `vacuum_max_snapshot_age_seconds`
  (Athena's default 432,000, five days) are expired, the newest
  `vacuum_min_snapshots_to_keep` (default 1) and the current one always kept, and the data
  and manifest files no kept snapshot refers to are deleted.

Only Iceberg tables take them, as in Athena (`NOT_SUPPORTED` otherwise). The WHERE of
OPTIMIZE may name partition columns only, as in Athena."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dataplatform.jobs.iceberg import is_iceberg_table
from dataplatform.runtime.local.athena.catalog import unknown_table
from dataplatform.runtime.local.athena.sql import QueryError

_OPTIMIZE = re.compile(
    r"^\s*OPTIMIZE\s+(?P<table>[\w\".`]+)\s+REWRITE\s+DATA\s+USING\s+BIN_PACK"
    r"(?:\s+WHERE\s+(?P<where>.+?))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_VACUUM = re.compile(r"^\s*VACUUM\s+(?P<table>[\w\".`]+)\s*;?\s*$", re.IGNORECASE)
DEFAULT_MAX_SNAPSHOT_AGE_S = 432_000
DEFAULT_MIN_SNAPSHOTS = 1


@dataclass(frozen=True)
class Maintenance:
    kind: str  # optimize | vacuum
    database: str | None
    table: str
    where: str | None = None


def parse(sql: str) -> Maintenance | None:
    """The maintenance statement `sql` is, or None for any other statement."""
    for kind, pattern in (("optimize", _OPTIMIZE), ("vacuum", _VACUUM)):
        match = pattern.match(sql)
        if match:
            parts = [p.strip('"`') for p in match.group("table").split(".")]
            if len(parts) > 2:
                parts = parts[-2:]  # awsdatacatalog.db.table
            database, table = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
            return Maintenance(kind, database, table, match.groupdict().get("where"))
    if re.match(r"^\s*(OPTIMIZE|VACUUM)\b", sql, re.IGNORECASE):
        raise QueryError(
            "line 1:1: mismatched input. Athena takes `OPTIMIZE <table> REWRITE DATA USING "
            "BIN_PACK [WHERE <partition predicate>]` and `VACUUM <table>`"
        )
    return None


def catalog(endpoint: str, region: str, access_key: str, secret_key: str):
    """pyiceberg's Glue catalog over the local endpoint (its commits go through the
    endpoint's Glue, with the VersionId check Glue makes)."""
    from pyiceberg.catalog.glue import GlueCatalog

    properties: dict[str, Any] = {
        "glue.endpoint": endpoint,
        "glue.region": region,
        "glue.access-key-id": access_key,
        "glue.secret-access-key": secret_key,
        "s3.endpoint": endpoint,
        "s3.region": region,
        "s3.access-key-id": access_key,
        "s3.secret-access-key": secret_key,
    }
    return GlueCatalog("local", None, **properties)


def run(
    statement: Maintenance, *, glue, s3, catalog_factory, default_database: str, now=None
) -> dict:
    """Do the statement; what it did (files before/after, snapshots expired, files deleted)."""
    database = statement.database or default_database
    try:
        found = glue.get_table(DatabaseName=database, Name=statement.table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        raise QueryError(unknown_table(glue, database, statement.table)) from None
    if not is_iceberg_table(found.get("Parameters") or {}):
        raise QueryError(
            f"NOT_SUPPORTED: {statement.kind.upper()} is supported for Iceberg tables only; "
            f"{database}.{statement.table} is not one"
        )
    table = catalog_factory().load_table((database, statement.table))
    if statement.kind == "optimize":
        return optimize(table, statement.where)
    return vacuum(table, s3=s3, now=now or datetime.now(UTC))


# ----------------------------------------------------------------------------- OPTIMIZE


def _partition_filter(table, where: str | None):
    """The WHERE of OPTIMIZE as a pyiceberg expression over partition source columns."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.expressions.parser import parse as parse_expression

    if not where:
        return AlwaysTrue()
    spec, schema = table.spec(), table.schema()
    partition_columns = {schema.find_field(f.source_id).name for f in spec.fields}
    try:
        expression = parse_expression(where)
    except Exception as error:  # noqa: BLE001 - any parse failure is the user's SQL
        raise QueryError(f"OPTIMIZE: cannot read the WHERE clause {where!r}: {error}") from None
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'[^']*'", "", where)))
    unknown = {
        n for n in named if n.lower() not in {"and", "or", "not", "in", "is", "null", "between"}
    } - partition_columns
    if unknown:
        raise QueryError(
            f"INVALID_ARGUMENTS: OPTIMIZE's WHERE may use partition columns only "
            f"({', '.join(sorted(partition_columns))}); it names {', '.join(sorted(unknown))}"
        )
    return expression


def optimize(table, where: str | None) -> dict:
    from pyiceberg.io.pyarrow import _dataframe_to_data_files
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _OverwriteFiles

    row_filter = _partition_filter(table, where)  # refused as Athena does, even if empty
    if table.current_snapshot() is None:
        return {"files_before": 0, "files_after": 0, "partitions_rewritten": 0}
    tasks = list(table.scan(row_filter=row_filter).plan_files())
    by_partition: dict[tuple, list] = {}
    for task in tasks:
        by_partition.setdefault(tuple(task.file.partition), []).append(task)
    files_before = len(tasks)
    rewrite = {key: group for key, group in by_partition.items() if len(group) > 1}
    if not rewrite:
        return {
            "files_before": files_before,
            "files_after": files_before,
            "partitions_rewritten": 0,
        }
    with table.transaction() as transaction:
        # One snapshot, as Athena's OPTIMIZE commits (pyiceberg's public overwrite would
        # commit a delete and then an append: a snapshot between them without the rows).
        # Athena calls its snapshot `replace`; pyiceberg 0.12 writes no `replace` summary,
        # so it is an `overwrite` here, with the same files removed and added.
        producer = _OverwriteFiles(
            operation=Operation.OVERWRITE, transaction=transaction, io=table.io, branch="main"
        )
        with producer as rewrite_files:
            for group in rewrite.values():
                rows = _read(table, group)
                for data_file in _dataframe_to_data_files(
                    table_metadata=transaction.table_metadata, df=rows, io=table.io
                ):
                    rewrite_files.append_data_file(data_file)
                for task in group:
                    rewrite_files.delete_data_file(task.file)
    table = table.refresh()
    files_after = len(list(table.scan(row_filter=_partition_filter(table, where)).plan_files()))
    return {
        "files_before": files_before,
        "files_after": files_after,
        "partitions_rewritten": len(rewrite),
    }


def _read(table, tasks: list):
    """The rows of these scan tasks' files, in the table's current schema (by field id)."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    return ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)


# ----------------------------------------------------------------------------- VACUUM


def vacuum(table, *, s3, now: datetime) -> dict:
    properties = table.properties
    max_age = int(properties.get("vacuum_max_snapshot_age_seconds", DEFAULT_MAX_SNAPSHOT_AGE_S))
    keep_newest = int(properties.get("vacuum_min_snapshots_to_keep", DEFAULT_MIN_SNAPSHOTS))
    cutoff_ms = int((now - timedelta(seconds=max_age)).timestamp() * 1000)
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    current = table.current_snapshot()
    protected = {s.snapshot_id for s in snapshots[-keep_newest:]} if keep_newest else set()
    if current is not None:
        protected.add(current.snapshot_id)
    expired = [
        s.snapshot_id
        for s in snapshots
        if s.timestamp_ms < cutoff_ms and s.snapshot_id not in protected
    ]
    referenced_before = _referenced_files(table)
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        table = table.refresh()
    kept = _referenced_files(table)
    unreferenced = sorted(referenced_before - kept)
    # deleted with S3's own DeleteObjects: pyarrow's file system (table.io) leaves a
    # `folder/` marker object behind when it deletes a folder's last file
    keys_by_bucket: dict[str, list[str]] = {}
    for path in unreferenced:
        bucket, _, key = path.split("://", 1)[1].partition("/")
        keys_by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in keys_by_bucket.items():
        for start in range(0, len(keys), 1000):
            answer = s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )
            if answer.get("Errors"):
                raise QueryError(f"VACUUM could not delete {answer['Errors'][:3]}")
    return {
        "snapshots_expired": len(expired),
        "snapshots_kept": len(table.snapshots()),
        "files_deleted": len(unreferenced),
    }


def _referenced_files(table) -> set[str]:
    """Every data file, manifest and manifest list a snapshot of the table refers to."""
    found: set[str] = set()
    for snapshot in table.snapshots():
        found.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            found.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                found.add(entry.data_file.file_path)
    return found
