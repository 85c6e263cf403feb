"""The local Athena's Iceberg tables, read with pyiceberg as Athena engine v3 (Trino's
Iceberg connector) reads them.

A Glue table whose parameter `table_type` is ICEBERG names its current metadata file in
`metadata_location` (catalog.read_table). This module reads that metadata through the
engine's S3 file system and:

- picks the snapshot a reference asks for: the current one, `FOR VERSION AS OF <snapshot
  id>` (or a branch or tag name), or `FOR TIMESTAMP AS OF <timestamp>` (the snapshot that
  was current then, from the table's snapshot log; a timestamp without time zone is UTC).
  A time-travel read projects the snapshot's own schema (pyiceberg's rule: the columns as
  they were named then, without the columns added since);
- plans the scan, pruned by the query's simple predicates on identity-partitioned columns
  (`partition_predicates`: `=`, `<>`, `IN`, comparisons, `BETWEEN`); the files read and
  the bytes scanned are those of the planned data (and delete) files;
- reads the rows (pyiceberg resolves schema evolution by field id: a column added later is
  NULL in older files, a renamed column reads under its new name);
- answers the metadata tables `"t$snapshots"`, `"t$history"`, `"t$files"`,
  `"t$partitions"` and `"t$refs"` with Trino's columns, less the ones that would show
  column values (`$files`' lower and upper bounds and readable metrics, `$partitions`'
  data): Lake Formation's hidden columns stay hidden there too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.noop import NoopCatalog
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
    NotEqualTo,
    Or,
)
from pyiceberg.io.pyarrow import ArrowScan, PyArrowFileIO
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import DataScan
from pyiceberg.table import Table as IcebergTable
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from dataplatform.runtime.local.athena.catalog import Source, Table
from dataplatform.runtime.local.athena.sql import Predicate, QueryError, TableVersion, view_name

# A constant's DuckDB SQL -> (DuckDB type, Athena type, value); timestamps and dates as
# epoch milliseconds (UTC). The engine evaluates time-travel pointers in locked-down DuckDB.
Evaluate = Callable[[str], tuple[str, str, Any]]

_S3_SCHEMES = ("s3", "s3a", "s3n")
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")


class _EngineFileIO(PyArrowFileIO):
    """pyiceberg's Arrow FileIO over the engine's S3 file system: the local platform's
    endpoint and keys, whatever bucket a metadata or data file lies in."""

    def __init__(self, filesystem: Any):
        self._filesystem = filesystem
        super().__init__()

    def _initialize_fs(self, scheme: str, netloc: str | None = None) -> Any:
        if scheme in _S3_SCHEMES:
            return self._filesystem
        raise QueryError(
            f"ICEBERG_FILESYSTEM_ERROR: {scheme}:// locations are not read here; the local "
            "platform's Iceberg tables live in its S3"
        )


class Tables:
    """The Iceberg tables one query reads, each metadata file read once."""

    def __init__(self, filesystem: Any):
        self.io = _EngineFileIO(filesystem)
        self._loaded: dict[str, IcebergTable] = {}

    def load(self, table: Table) -> IcebergTable:
        location = table.metadata_location
        if location not in self._loaded:
            try:
                metadata = FromInputFile.table_metadata(self.io.new_input(location))
            except (OSError, ValueError) as error:
                raise QueryError(
                    f"ICEBERG_INVALID_METADATA: Failed to read the metadata of "
                    f"{table.database}.{table.name} at {location}: {error}"
                ) from None
            self._loaded[location] = IcebergTable(
                identifier=(table.database, table.name),
                metadata=metadata,
                metadata_location=location,
                io=self.io,
                catalog=NoopCatalog("awsdatacatalog"),
            )
        return self._loaded[location]


def select(
    tables: Tables,
    table: Table,
    version: TableVersion | None,
    places: list[list[Predicate]],
    evaluate: Evaluate,
) -> Source:
    """The Iceberg table (or one of its metadata tables) as one reference of a query reads
    it: the snapshot it asks for, the data files its scan plans, and how to read them."""
    iceberg = tables.load(table)
    if table.metadata_table:
        if version is not None:
            raise QueryError(
                f"NOT_SUPPORTED: FOR {version.kind} AS OF applies to the table "
                f"{table.database}.{table.name}, not to its metadata table "
                f"${table.metadata_table}"
            )
        kind = table.metadata_table
        return Source(
            table.database,
            table.name,
            table,
            [],
            [],
            view=f"{table.name}${kind}",
            read=lambda hidden: metadata_table(iceberg, kind, hidden),
        )
    snapshot_id = _snapshot_id(iceberg, table, version, evaluate)
    scan = iceberg.scan(snapshot_id=snapshot_id)
    projection = scan.projection()
    scan = scan.update(row_filter=_row_filter(iceberg, projection, places))
    try:
        tasks = list(scan.plan_files())
    except (OSError, ValueError) as error:
        raise QueryError(
            f"ICEBERG_INVALID_METADATA: Failed to plan the scan of "
            f"{table.database}.{table.name}: {error}"
        ) from None
    sizes: dict[str, int] = {}
    for task in tasks:
        for file in (task.file, *task.delete_files):
            sizes.setdefault(_bucket_key(file.file_path), file.file_size_in_bytes)
    current = iceberg.schema()
    renames = {}
    for column in projection.fields:
        now = current.find_column_name(column.field_id)
        if now is not None and now.lower() != column.name.lower():
            renames[now.lower()] = column.name.lower()
    return Source(
        table.database,
        table.name,
        table,
        sorted(sizes.items()),
        [],
        view=view_name(table.name, version),
        read=lambda hidden: _rows(scan, tasks, f"{table.database}.{table.name}"),
        renames=renames,
    )


def _bucket_key(location: str) -> str:
    """`bucket/key` of an s3:// location (how the engine names the files it reads)."""
    scheme, sep, rest = location.partition("://")
    return rest if sep and scheme in _S3_SCHEMES else location


def _rows(scan: DataScan, tasks: list, what: str) -> pa.Table:
    try:
        return ArrowScan(
            scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive
        ).to_table(tasks)
    except (OSError, ValueError) as error:
        raise QueryError(f"ICEBERG_CANNOT_OPEN_SPLIT: Error reading {what}: {error}") from None


# ----------------------------------------------------------------------------- time travel


def _snapshot_id(
    iceberg: IcebergTable, table: Table, version: TableVersion | None, evaluate: Evaluate
) -> int | None:
    """The snapshot a reference reads (None: the current one, if any), with Trino's errors."""
    if version is None:
        return None
    duck_type, athena_type, value = evaluate(version.duckdb)
    if value is None:
        raise QueryError("INVALID_ARGUMENTS: Pointer value cannot be NULL")
    metadata = iceberg.metadata
    if version.kind == "VERSION":
        if duck_type in _INTEGERS or duck_type == "HUGEINT":
            snapshot_id = int(value)
        elif duck_type == "VARCHAR":
            ref = metadata.refs.get(str(value))
            if ref is None:
                raise QueryError(
                    f"INVALID_ARGUMENTS: Cannot find snapshot with reference name: {value}"
                )
            snapshot_id = ref.snapshot_id
        else:
            raise QueryError(f"NOT_SUPPORTED: Unsupported type for table version: {athena_type}")
        if metadata.snapshot_by_id(snapshot_id) is None:
            raise QueryError(
                f"INVALID_ARGUMENTS: Iceberg snapshot ID does not exists: {snapshot_id}"
            )
        return snapshot_id
    if not (duck_type.startswith("TIMESTAMP") or duck_type == "DATE"):
        raise QueryError(
            f"NOT_SUPPORTED: Unsupported type for temporal table version: {athena_type}"
        )
    snapshot = iceberg.snapshot_as_of_timestamp(int(value))
    if snapshot is None:
        raise QueryError(
            f"INVALID_ARGUMENTS: No version history table {table.database}.{table.name} at or "
            f"before {_instant(int(value))}"
        )
    return snapshot.snapshot_id


def _instant(epoch_ms: int) -> str:
    """Java's Instant.toString of an epoch millisecond (2026-12-05T10:00:00Z, with the
    milliseconds when there are some), as Trino's message prints it."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=epoch_ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond // 1000:03d}" if moment.microsecond else "") + "Z"


# ----------------------------------------------------------------------------- pruning

# pyiceberg's predicates take (column name, literal); pydantic's plugin types them by field
_OPERATORS: dict[str, Callable[..., BooleanExpression]] = {
    "=": EqualTo,
    "<>": NotEqualTo,
    ">": GreaterThan,
    ">=": GreaterThanOrEqual,
    "<": LessThan,
    "<=": LessThanOrEqual,
    "in": In,
}


def _identity_sources(iceberg: IcebergTable) -> set[int]:
    """The field ids of the columns an identity transform partitions by, in any spec."""
    return {
        field.source_id
        for spec in iceberg.metadata.partition_specs
        for field in spec.fields
        if isinstance(field.transform, IdentityTransform)
    }


def _fits(column: NestedField, literals: tuple) -> bool:
    if isinstance(column.field_type, StringType):
        return all(isinstance(v, str) for v in literals)
    if isinstance(column.field_type, (IntegerType, LongType)):
        return all(isinstance(v, int) and not isinstance(v, bool) for v in literals)
    return False


def _row_filter(
    iceberg: IcebergTable, projection: Any, places: list[list[Predicate]]
) -> BooleanExpression:
    """The union over the places that read the table of the conjunction of each place's
    predicates on identity-partitioned columns (the columns as the version read names
    them; the filter names them as the current schema does, as pyiceberg binds it). The
    full WHERE still applies in DuckDB: this only keeps the scan from planning files no
    place needs."""
    identity = _identity_sources(iceberg)
    current = iceberg.schema()
    by_name = {f.name.lower(): f for f in projection.fields if f.field_id in identity}
    union: BooleanExpression | None = None
    for predicates in places or [[]]:
        place: BooleanExpression = AlwaysTrue()
        for column_name, op, literals in predicates:
            column = by_name.get(column_name)
            name = current.find_column_name(column.field_id) if column else None
            if column is None or name is None or not _fits(column, literals):
                continue
            if op == "in":
                term = _OPERATORS["in"](name, literals)
            elif op == "between":
                low, high = _OPERATORS[">="], _OPERATORS["<="]
                term = And(low(name, literals[0]), high(name, literals[1]))
            else:
                term = _OPERATORS[op](name, literals[0])
            place = And(place, term)
        if isinstance(place, AlwaysTrue):
            return AlwaysTrue()
        union = place if union is None else Or(union, place)
    return union if union is not None else AlwaysTrue()


# ----------------------------------------------------------------------------- metadata tables


def _utc(data: pa.Table, column: str) -> pa.Table:
    """A naive UTC timestamp column as Trino's timestamp(3) with time zone."""
    index = data.schema.get_field_index(column)
    return data.set_column(index, column, data.column(column).cast(pa.timestamp("ms", tz="UTC")))


def _as_string(data: pa.Table, column: str) -> pa.Table:
    index = data.schema.get_field_index(column)
    return data.set_column(index, column, data.column(column).cast(pa.string()))


def _hidden_partition_fields(iceberg: IcebergTable, hidden: tuple[str, ...]) -> set[str]:
    """The partition fields whose source column the reader may not see."""
    current = iceberg.schema()
    hidden_lower = {h.lower() for h in hidden}
    ids = {f.field_id for f in current.fields if f.name.lower() in hidden_lower}
    return {
        field.name
        for spec in iceberg.metadata.partition_specs
        for field in spec.fields
        if field.source_id in ids
    }


def _partition_without(data: pa.Table, drop: set[str]) -> pa.Table:
    """The `partition` row without the fields in `drop`; no `partition` column at all when
    none is left (Trino shows none for an unpartitioned table)."""
    if "partition" not in data.column_names:
        return data
    column = data.column("partition").combine_chunks()
    kept = [f.name for f in column.type if f.name not in drop]
    index = data.schema.get_field_index("partition")
    if not kept:
        return data.remove_column(index)
    if len(kept) == column.type.num_fields:
        return data
    rebuilt = pa.StructArray.from_arrays(
        [column.field(name) for name in kept], names=kept, mask=column.is_null()
    )
    return data.set_column(index, "partition", rebuilt)


_FILES_COLUMNS = (
    "content",
    "file_path",
    "file_format",
    "spec_id",
    "partition",
    "record_count",
    "file_size_in_bytes",
    "column_sizes",
    "value_counts",
    "null_value_counts",
    "nan_value_counts",
    "split_offsets",
    "equality_ids",
    "sort_order_id",
)


def metadata_table(iceberg: IcebergTable, kind: str, hidden: tuple[str, ...] = ()) -> pa.Table:
    """`"t$<kind>"` as Trino's Iceberg connector answers it, from pyiceberg's inspection of
    the table's current metadata."""
    inspect = iceberg.inspect
    try:
        if kind == "snapshots":
            data = _utc(inspect.snapshots(), "committed_at")
            return data.take(pc.sort_indices(data, [("committed_at", "ascending")]))
        if kind == "history":
            return _utc(inspect.history(), "made_current_at")
        if kind == "refs":
            return _as_string(inspect.refs(), "type")
        drop = _hidden_partition_fields(iceberg, hidden)
        if kind == "files":
            data = inspect.files()
            data = data.select([c for c in _FILES_COLUMNS if c in data.column_names])
            data = data.set_column(0, "content", data.column("content").cast(pa.int32()))
            return _partition_without(_as_string(data, "file_format"), drop)
        if kind == "partitions":
            found = inspect.partitions()
            data = found.select(
                [c for c in ("partition", "record_count", "file_count") if c in found.column_names]
            ).append_column("total_size", found["total_data_file_size_in_bytes"])
            index = data.schema.get_field_index("file_count")
            data = data.set_column(index, "file_count", data["file_count"].cast(pa.int64()))
            return _partition_without(data, drop)
    except (OSError, ValueError) as error:
        raise QueryError(f"ICEBERG_INVALID_METADATA: {error}") from None
    raise QueryError(f"TABLE_NOT_FOUND: no Iceberg metadata table ${kind}")
