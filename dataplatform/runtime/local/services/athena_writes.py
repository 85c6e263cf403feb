"""What CREATE TABLE AS SELECT and UNLOAD write, as Athena writes it: the answer's rows as
Parquet files in an empty S3 location (Hive partition folders for `partitioned_by`, whose
columns come last), a manifest listing every file written, and for CTAS the new table in
the Glue catalog (its columns typed from the answer). Only Parquet, and only into S3: a
location that is not s3:// or a format other than Parquet fails the query, in Athena's
words where Athena has them."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataplatform.runtime.local.athena.engine import Answer
from dataplatform.runtime.local.athena.sql import QueryError, Statement
from dataplatform.runtime.local.formats import PARQUET

COMPRESSIONS = {"SNAPPY": "snappy", "GZIP": "gzip", "ZSTD": "zstd", "LZ4": "lz4", "NONE": "none"}


@dataclass(frozen=True)
class Written:
    files: list[str]  # s3://bucket/key of each data file
    manifest: str  # s3:// of the manifest
    result_location: str  # the execution's ResultConfiguration.OutputLocation


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def hive_type(kind: pa.DataType) -> str:
    """The Glue (Hive) type of an Arrow column, as Athena's CTAS declares it."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_int64(kind) or pa.types.is_uint32(kind):
        return "bigint"
    if pa.types.is_int32(kind) or pa.types.is_uint16(kind):
        return "int"
    if pa.types.is_int16(kind) or pa.types.is_uint8(kind):
        return "smallint"
    if pa.types.is_int8(kind):
        return "tinyint"
    if pa.types.is_float64(kind):
        return "double"
    if pa.types.is_float32(kind):
        return "float"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_decimal(kind):
        return f"decimal({kind.precision},{kind.scale})"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"array<{hive_type(kind.value_type)}>"
    if pa.types.is_map(kind):
        return f"map<{hive_type(kind.key_type)},{hive_type(kind.item_type)}>"
    if pa.types.is_struct(kind):
        fields = ",".join(f"{f.name}:{hive_type(f.type)}" for f in kind)
        return f"struct<{fields}>"
    return "string"


def _parquet_safe(table: pa.Table) -> pa.Table:
    """Timestamps with a zone are stored as UTC instants (Hive has no zoned timestamp)."""
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            column = pc.cast(column, pa.timestamp(kind.unit))
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _empty(s3, location: str, what: str) -> None:
    bucket, prefix = _split(location)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    if listed.get("KeyCount", 0):
        raise QueryError(
            f"HIVE_PATH_ALREADY_EXISTS: Target directory for {what} already exists: {location}. "
            "Empty the location, or write somewhere else"
        )


def write(
    what: Statement,
    answer: Answer,
    *,
    query_id: str,
    database: str,
    output: str,
    glue,
    s3,
    filesystem,
    encryption: dict,
) -> Written:
    properties = {k.lower(): v for k, v in what.properties.items()}
    fmt = str(properties.get("format") or "PARQUET").upper()
    if fmt != "PARQUET":
        raise QueryError(
            f"NOT_SUPPORTED: format '{fmt}': the local platform writes CTAS and UNLOAD as "
            "PARQUET only"
        )
    compression = str(
        properties.get("write_compression") or properties.get("compression") or "SNAPPY"
    ).upper()
    if compression not in COMPRESSIONS:
        raise QueryError(f"INVALID_TABLE_PROPERTY: compression '{compression}' is not supported")
    partitioned_by = [str(c).lower() for c in properties.get("partitioned_by") or []]
    columns = [c.lower() for c in answer.columns]
    if len(set(columns)) != len(columns):
        raise QueryError(
            "Column name specified more than once: give each column of the query its own name"
        )
    if any(c.startswith("_col") for c in columns):
        raise QueryError(
            "Column name not specified at position "
            f"{next(i for i, c in enumerate(columns) if c.startswith('_col')) + 1}"
        )
    if partitioned_by and columns[-len(partitioned_by) :] != partitioned_by:
        raise QueryError(
            f"HIVE_COLUMN_ORDER_MISMATCH: Partition keys must be the last columns in the table "
            f"and in the same order as the table properties: {partitioned_by}"
        )

    if what.kind == "ctas":
        assert what.table is not None
        table_db, table_name = what.table[0] or database, what.table[1]
        try:
            glue.get_table(DatabaseName=table_db, Name=table_name)
            raise QueryError(f"Table 'awsdatacatalog.{table_db}.{table_name}' already exists")
        except glue.exceptions.EntityNotFoundException:
            pass
        location = str(properties.get("external_location") or f"{output}tables/{query_id}/")
        manifest = f"{output}tables/{query_id}-manifest.csv"
        result_location = f"{output}tables/{query_id}"
        target = f"table '{table_db}.{table_name}'"
    else:
        location = what.location or ""
        manifest = f"{output}{query_id}-manifest.csv"
        result_location = f"{output}{query_id}"
        target = "UNLOAD"
    if not location.startswith("s3://"):
        raise QueryError(
            f"INVALID_TABLE_PROPERTY: location '{location}': CTAS and UNLOAD write to s3:// "
            "locations only"
        )
    location = location if location.endswith("/") else location + "/"
    _empty(s3, location, target)

    table = _parquet_safe(answer.table.rename_columns(columns))
    files: list[str] = []
    if what.with_data and table.num_rows:
        files = _write_files(table, location, partitioned_by, query_id, compression, filesystem)
    bucket, key = _split(manifest)
    s3.put_object(
        Bucket=bucket, Key=key, Body="".join(f"{f}\n" for f in files).encode(), **encryption
    )
    if what.kind == "ctas":
        _create_table(glue, table_db, table_name, table.schema, location, partitioned_by)
        _add_partitions(glue, table_db, table_name, location, partitioned_by, files)
    return Written(files, manifest, result_location)


def _write_files(
    table: pa.Table,
    location: str,
    partitioned_by: list[str],
    query_id: str,
    compression: str,
    filesystem,
) -> list[str]:
    groups: list[tuple[str, pa.Table]] = []
    if partitioned_by:
        keys = table.select(partitioned_by).to_pylist()
        order: dict[tuple, list[int]] = {}
        for index, row in enumerate(keys):
            order.setdefault(tuple(row[c] for c in partitioned_by), []).append(index)
        data = table.drop_columns(partitioned_by)
        for values, indices in order.items():
            folder = "".join(
                f"{c}={'__HIVE_DEFAULT_PARTITION__' if v is None else v}/"
                for c, v in zip(partitioned_by, values, strict=True)
            )
            groups.append((folder, data.take(indices)))
    else:
        groups.append(("", table))
    files = []
    for number, (folder, part) in enumerate(groups):
        url = f"{location}{folder}{query_id}_{number:05d}.{COMPRESSIONS[compression]}.parquet"
        buffer = io.BytesIO()
        pq.write_table(part, buffer, compression=COMPRESSIONS[compression])
        with filesystem.open_output_stream(url[len("s3://") :]) as stream:
            stream.write(buffer.getvalue())
        files.append(url)
    return files


def _create_table(glue, database: str, name: str, schema: pa.Schema, location: str, keys) -> None:
    columns = [{"Name": f.name, "Type": hive_type(f.type)} for f in schema if f.name not in keys]
    partition_keys = [{"Name": f.name, "Type": hive_type(f.type)} for f in schema if f.name in keys]
    glue.create_table(
        DatabaseName=database,
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "has_encrypted_data": "false"},
            "PartitionKeys": partition_keys,
            "StorageDescriptor": {
                "Columns": columns,
                "Location": location,
                "Compressed": False,
                **PARQUET,
            },
        },
    )


def _add_partitions(glue, database: str, name: str, location: str, keys, files) -> None:
    if not keys:
        return
    folders = sorted({f[len(location) :].rsplit("/", 1)[0] for f in files})
    inputs = [
        {
            "Values": [part.split("=", 1)[1] for part in folder.split("/")],
            "StorageDescriptor": {"Location": f"{location}{folder}/", **PARQUET},
        }
        for folder in folders
    ]
    for start in range(0, len(inputs), 100):
        glue.batch_create_partition(
            DatabaseName=database, TableName=name, PartitionInputList=inputs[start : start + 100]
        )
