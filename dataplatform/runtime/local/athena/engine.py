"""The local Athena's engine: DuckDB. `run_query` analyses the statement (sql), lists the
files of the tables it reads (catalog; iceberg for Iceberg tables, one source per version a
query reads), refuses it when their bytes exceed the workgroup's cutoff, registers each
table with DuckDB as Arrow data behind a view `"<db>"."<table>"` (`"<db>"."<table> FOR
VERSION AS OF <id>"` for time travel), locks DuckDB down, runs the DuckDB SQL and writes
Athena's result CSV to the results bucket."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds

from dataplatform import layout
from dataplatform.runtime.local.athena import iceberg
from dataplatform.runtime.local.athena.catalog import (
    Source,
    Table,
    in_parallel,
    read_table,
    select_files,
)
from dataplatform.runtime.local.athena.sql import (
    QueryError,
    parse,
    reference_predicates,
    refuse_what_athena_refuses,
    table_references,
    to_duckdb,
)
from dataplatform.runtime.results import QueryResult

_GLUE_SCALAR_TYPES = {
    "string": pa.string(),
    "varchar": pa.string(),
    "char": pa.string(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "binary": pa.binary(),
}


# ----------------------------------------------------------------------------- public API


@dataclass
class Answer:
    """A query's answer before it is written anywhere: its columns, their Athena types, the
    rows as Arrow data, and what the query read."""

    columns: list[str]
    types: list[str]  # Athena's type names (varchar, bigint, decimal(10,2), ...)
    table: pa.Table
    bytes_scanned: int
    files_read: dict[str, list[str]]

    @property
    def rows(self) -> list[tuple]:
        data = [self.table.column(i).to_pylist() for i in range(self.table.num_columns)]
        return list(zip(*data, strict=True)) if data else []


def run_query(
    sql: str,
    *,
    glue,
    s3,
    s3_filesystem,
    workgroup: str,
    athena_results_bucket: str,
    bytes_scanned_cutoff: int | None,
    default_database: str | None = None,
    grants: Grants | None = None,
) -> QueryResult:
    """Run one Athena SQL statement against the local platform; see the package doc.

    `glue` and `s3` are boto3 clients, `s3_filesystem` a `pyarrow.fs.S3FileSystem`, all
    pointing at the same (moto) endpoint. `bytes_scanned_cutoff` None means no cutoff.
    Raises QueryError for anything Athena would fail the query for.
    """
    query_id = str(uuid.uuid4())
    answer = execute(
        parse(sql),
        glue=glue,
        s3=s3,
        s3_filesystem=s3_filesystem,
        workgroup=workgroup,
        bytes_scanned_cutoff=bytes_scanned_cutoff,
        default_database=default_database,
        grants=grants,
    )
    rows = answer.rows
    output_location = write_result(
        s3,
        f"s3://{athena_results_bucket}/{layout.ATHENA_RESULTS_PREFIX}",
        query_id,
        answer.columns,
        rows,
        sql=sql,
        workgroup=workgroup,
        bytes_scanned=answer.bytes_scanned,
    )
    return QueryResult(
        columns=answer.columns,
        rows=rows,
        bytes_scanned=answer.bytes_scanned,
        query_id=query_id,
        output_location=output_location,
        files_read=answer.files_read,
    )


def execute(
    tree,
    *,
    glue,
    s3,
    s3_filesystem,
    workgroup: str,
    bytes_scanned_cutoff: int | None,
    default_database: str | None = None,
    grants: Governs | None = None,
    interrupt=None,
) -> Answer:
    """Run a parsed query (SELECT, WITH, UNION, DESCRIBE): refuse what Athena refuses,
    prune the partitions, apply the cutoff, run it on DuckDB. `interrupt`, if given, is
    called with the DuckDB connection once the query runs (StopQueryExecution)."""
    refuse_what_athena_refuses(tree)
    references = table_references(tree, default_database)
    if grants is not None:
        # an Iceberg metadata table ("t$snapshots") is read under the grants on t
        for database, name in dict.fromkeys((db, n.partition("$")[0]) for db, n, _ in references):
            if not grants.allows(database, name):
                raise QueryError(
                    f"AccessDeniedException: Insufficient Lake Formation permission(s) on "
                    f"{database}.{name} ({grants.denial(database)})"
                )
    predicates = reference_predicates(tree, default_database)

    sources: list[Source] = []
    definitions: dict[tuple[str, str], Table] = {}
    icebergs = iceberg.Tables(s3_filesystem)
    for database, name, version in references:
        if (database, name) not in definitions:
            definitions[(database, name)] = read_table(glue, database, name)
        definition = definitions[(database, name)]
        places = predicates.get((database, name, version), [[]])
        if definition.format == "iceberg":
            sources.append(iceberg.select(icebergs, definition, version, places, _constant))
        elif version is not None:  # Hive tables have no versions (Trino's Hive connector)
            raise QueryError(
                f"NOT_SUPPORTED: This connector does not support versioned tables "
                f"({database}.{name} is not an Iceberg table)"
            )
        else:
            sources.append(select_files(definition, s3, places))

    scanned = sum(size for src in sources for _, size in src.files)
    if bytes_scanned_cutoff is not None and scanned > bytes_scanned_cutoff:
        raise CutoffExceeded(
            f"Query exhausted the workgroup's bytes-scanned cutoff ({scanned} bytes > "
            f"{bytes_scanned_cutoff} bytes) in workgroup {workgroup!r}: filter on the "
            "partition columns to read fewer partitions, or raise the workgroup's "
            "bytes_scanned_cutoff"
        )

    con = duckdb.connect()
    try:
        try:
            con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:  # pragma: no cover - ICU missing: timestamps stay naive
            pass
        for index, src in enumerate(sources):
            _register(con, index, src, s3_filesystem, hidden=_hidden(grants, src))
        _lock_down(con)
        duck_sql = to_duckdb(tree, default_database)
        if interrupt is not None:
            interrupt(con)
        try:
            cursor = con.execute(duck_sql)
            columns = [d[0] for d in cursor.description]
            types = [athena_type(str(d[1])) for d in cursor.description]
            table = cursor.to_arrow_table()
        except duckdb.Error as error:
            if grants is not None:
                _refuse_hidden_column(error, grants, sources)
            raise _duckdb_error(error, duck_sql) from None
    finally:
        con.close()
    return Answer(
        columns=columns,
        types=types,
        table=table,
        bytes_scanned=scanned,
        files_read={f"{s.database}.{s.view or s.name}": [p for p, _ in s.files] for s in sources},
    )


def _hidden(grants: Governs | None, source: Source) -> tuple[str, ...]:
    """The columns of a source the reader may not see: Lake Formation's hidden columns of
    the table, and, for an Iceberg table read at an older version, the names those columns
    had then (the same Iceberg field)."""
    if grants is None:
        return ()
    hidden = grants.hidden(source.database, source.name)
    renamed = tuple(source.renames[h.lower()] for h in hidden if h.lower() in source.renames)
    return tuple(dict.fromkeys(hidden + renamed))


def _constant(expression: str) -> tuple[str, str, Any]:
    """A time-travel pointer's DuckDB type, Athena type and value, evaluated in a locked-down
    DuckDB of its own (UTC); a timestamp or date as epoch milliseconds."""
    con = duckdb.connect()
    try:
        try:
            con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:  # pragma: no cover - ICU missing: timestamps stay naive
            pass
        _lock_down(con)
        row = con.execute(f"SELECT typeof(({expression}))").fetchone()
        duck_type = str(row[0]) if row else "NULL"
        if duck_type.startswith("TIMESTAMP") or duck_type == "DATE":
            row = con.execute(f"SELECT epoch_ms(CAST(({expression}) AS TIMESTAMPTZ))").fetchone()
        else:
            row = con.execute(f"SELECT ({expression})").fetchone()
    except duckdb.Error as error:
        raise QueryError(
            f"INVALID_ARGUMENTS: the version pointer {expression} is not a constant "
            f"Athena can evaluate: {str(error).strip().splitlines()[0]}"
        ) from None
    finally:
        con.close()
    return duck_type, athena_type(duck_type), row[0] if row else None


class CutoffExceeded(QueryError):
    """The workgroup's bytes-scanned cutoff: Athena cancels such a query."""


_DUCK_TO_ATHENA = {
    "VARCHAR": "varchar",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "TINYINT": "tinyint",
    "UBIGINT": "decimal(20,0)",
    "UINTEGER": "bigint",
    "USMALLINT": "integer",
    "UTINYINT": "smallint",
    "HUGEINT": "decimal(38,0)",
    "DOUBLE": "double",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "TIME": "time",
    "BLOB": "varbinary",
    "UUID": "varchar",
    "INTERVAL": "interval day to second",
    "JSON": "json",
}


def athena_type(duck: str) -> str:
    """The Athena (Trino) name of a DuckDB result type, as GetQueryResults reports it."""
    text = duck.strip().upper()
    if text in _DUCK_TO_ATHENA:
        return _DUCK_TO_ATHENA[text]
    if text.startswith("DECIMAL"):
        return text.lower().replace(" ", "")
    if text.endswith("[]") or text.startswith("LIST") or text.endswith("]"):
        return "array"
    if text.startswith("STRUCT"):
        return "row"
    if text.startswith("MAP"):
        return "map"
    return "varchar"


# ----------------------------------------------------------------------------- the sandbox

_LOCKDOWN = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET python_enable_replacements = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Once the lake's tables are registered (in memory, from Arrow), DuckDB may touch no
    file, extension or setting: the user's SQL runs in that connection."""
    for statement in _LOCKDOWN:
        con.execute(statement)


# ----------------------------------------------------------------------------- reading


def _glue_type(type_name: str) -> pa.DataType:
    t = type_name.strip().lower()
    base = t.split("(", 1)[0]
    if base in _GLUE_SCALAR_TYPES:
        return _GLUE_SCALAR_TYPES[base]
    if base == "decimal":
        digits = re.findall(r"\d+", t)
        return (
            pa.decimal128(int(digits[0]), int(digits[1]))
            if len(digits) == 2
            else pa.decimal128(38, 18)
        )
    if t.startswith("array<") and t.endswith(">"):
        return pa.list_(_glue_type(t[len("array<") : -1]))
    return pa.string()


def _partition_columns(source: Source, paths: Sequence[str]) -> dict[str, list]:
    mapping = source.file_partitions
    return {k: [mapping.get(p, {}).get(k) for p in paths] for k in source.table.partition_keys}


class Governs(Protocol):
    """Whose grants limit a query: what it may read and what it may not see."""

    def allows(self, database: str, table: str) -> bool: ...
    def hidden(self, database: str, table: str) -> tuple[str, ...]: ...
    def denial(self, database: str) -> str: ...
    @property
    def who(self) -> str: ...


@dataclass(frozen=True)
class Grants:
    """What a persona may query (Lake Formation's grants, from spec/personas.yaml): the
    databases, and per table the columns it may not see (the datasets' PII columns). The
    local endpoint's Athena evaluates the grants of the principal that signed the query
    (services/lakeformation.py) behind the same three methods."""

    persona: str
    databases: frozenset[str]
    hidden_columns: dict[tuple[str, str], tuple[str, ...]]

    def allows(self, database: str, table: str) -> bool:
        return database in self.databases

    def hidden(self, database: str, table: str) -> tuple[str, ...]:
        return self.hidden_columns.get((database, table), ())

    def denial(self, database: str) -> str:
        """Why a table of `database` is refused, for the error."""
        return (
            f"persona {self.persona}: no grant on database {database}; its grants are in "
            "spec/personas.yaml"
        )

    @property
    def who(self) -> str:
        return f"persona {self.persona}"


def _refuse_hidden_column(error: duckdb.Error, grants: Governs, sources: list[Source]) -> None:
    """A column the persona may not see is, as with Lake Formation's column grants, a
    column that is not there: Athena's COLUMN_NOT_FOUND, saying why."""
    text = str(error)
    for src in sources:
        for column in _hidden(grants, src):
            if re.search(rf'"{re.escape(column)}"|\b{re.escape(column)}\b', text):
                raise QueryError(
                    f"COLUMN_NOT_FOUND: Column '{column}' cannot be resolved (Lake Formation: "
                    f"{grants.who} is not granted the column "
                    f"{src.database}.{src.name}.{column})"
                ) from None


def _register(
    con: duckdb.DuckDBPyConnection, index: int, source: Source, fs, *, hidden: tuple[str, ...] = ()
) -> None:
    table = source.table
    paths = [p for p, _ in source.files]
    if source.read is not None:  # iceberg: pyiceberg's read of the planned scan
        data = source.read(hidden)
    elif table.format == "parquet":
        data = _parquet(source, paths, fs)
    elif table.format == "json":
        data = _text_table(source, paths, fs, _read_json)
    else:
        data = _text_table(source, paths, fs, _read_csv)
    internal = f"__dp_source_{index}"
    con.register(internal, data)
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.database}"')
    # columns the persona may not see are not in its view of the table at all
    present = [d[0] for d in con.execute(f'SELECT * FROM "{internal}" LIMIT 0').description]
    hidden_lower = {h.lower() for h in hidden}
    declared = (
        {} if table.format in ("parquet", "iceberg") else {n.lower(): t for n, t in table.columns}
    )
    selected = ", ".join(
        _typed_text_column(c, declared.get(c.lower()), field=i, strict=_strict_serde(table))
        for i, c in enumerate(present)
        if c.lower() not in hidden_lower
    )
    view = (source.view or table.name).replace('"', '""')
    con.execute(
        f'CREATE OR REPLACE VIEW "{table.database}"."{view}" AS SELECT {selected} FROM "{internal}"'
    )


_DUCK_TEXT_TYPES = {
    "int": "INTEGER",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "double": "DOUBLE",
    "float": "REAL",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def _duck_scalar(type_name: str) -> str | None:
    """The DuckDB type a text table's declared scalar column is read as; None keeps the
    text (strings, and complex types, which stay their JSON text)."""
    t = type_name.strip().lower()
    base = t.split("(", 1)[0]
    if base == "decimal":
        digits = re.findall(r"\d+", t)
        return f"DECIMAL({digits[0]}, {digits[1]})" if len(digits) == 2 else "DECIMAL(38, 18)"
    return _DUCK_TEXT_TYPES.get(base)


def _strict_serde(table: Table) -> bool:
    """The JSON SerDes and OpenCSVSerde fail a query on a value that does not parse as its
    column's type (HIVE_BAD_DATA); LazySimpleSerDe, the default for CSV, reads it as NULL."""
    return table.format == "json" or "opencsv" in table.serde_library.lower()


def _typed_text_column(name: str, glue_type: str | None, *, field: int, strict: bool) -> str:
    """A text table's column as Athena reads it: as its declared type. A value that does
    not parse is NULL, or, with a strict SerDe, fails the query with HIVE_BAD_DATA when a
    row holding it is actually read."""
    quoted = '"' + name.replace('"', '""') + '"'
    duck = _duck_scalar(glue_type) if glue_type else None
    if duck is None:
        return quoted
    parsed = f"TRY_CAST({quoted} AS {duck})"
    if not strict:
        return f"{parsed} AS {quoted}"
    message = (
        "'HIVE_BAD_DATA: Error parsing field value ''' || "
        f"{quoted} || ''' for field {field}: For input string: \"' || {quoted} || '\"'"
    )
    return (
        f"CASE WHEN {quoted} IS NOT NULL AND {parsed} IS NULL "
        f"THEN CAST(error({message}) AS {duck}) ELSE {parsed} END AS {quoted}"
    )


def _declared_schema(table: Table, *, all_strings: bool) -> pa.Schema:
    fields = [pa.field(n, pa.string() if all_strings else _glue_type(t)) for n, t in table.columns]
    fields += [
        pa.field(k, pa.string())
        for k in table.partition_keys
        if k not in {n for n, _ in table.columns}
    ]
    return pa.schema(fields)


def _parquet(source: Source, paths: list[str], fs):
    """A pyarrow dataset over the selected files; each file's partition values come from
    the catalog (or the `k=v` folders), so partition locations need not be Hive-style."""
    table = source.table
    if not paths:
        return _declared_schema(table, all_strings=False).empty_table()
    physical = pa_ds.dataset(paths[0], filesystem=fs, format="parquet").schema
    keys = table.partition_keys
    fields = [f for f in physical if f.name.lower() not in keys]
    schema = pa.schema(fields + [pa.field(k, pa.string()) for k in keys])
    values = source.file_partitions
    expressions = []
    for path in paths:
        expression = pc.scalar(True)
        for k in keys:
            value = values.get(path, {}).get(k)
            expression = expression & (
                pc.field(k) == value if value is not None else pc.field(k).is_null()
            )
        expressions.append(expression)
    return pa_ds.FileSystemDataset.from_paths(
        paths,
        schema=schema,
        format=pa_ds.ParquetFileFormat(),
        filesystem=fs,
        partitions=expressions,
    )


def _read_json(stream, table: Table) -> pa.Table:
    columns = [n for n, _ in table.columns]
    lines = []
    for raw in io.TextIOWrapper(stream, encoding="utf-8"):
        raw = raw.strip()
        if not raw:
            continue
        record = json.loads(raw)
        lowered = {str(k).lower(): v for k, v in record.items()} if isinstance(record, dict) else {}
        lines.append([_as_text(lowered.get(c)) for c in columns])
    return pa.table(
        {c: pa.array([row[i] for row in lines], pa.string()) for i, c in enumerate(columns)}
    )


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _read_csv(stream, table: Table) -> pa.Table:
    params = {**table.parameters, **table.serde_parameters}
    columns = [n for n, _ in table.columns]
    skip = int(params.get("skip.header.line.count", "0") or 0)
    delimiter = params.get("separatorChar") or params.get("field.delim") or ","
    quote = params.get("quoteChar", '"')
    escape = params.get("escapeChar")
    return pa_csv.read_csv(
        stream,
        read_options=pa_csv.ReadOptions(column_names=columns, skip_rows=skip),
        parse_options=pa_csv.ParseOptions(
            delimiter=delimiter, quote_char=quote or False, escape_char=escape or False
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=False
        ),
    )


def _text_table(source: Source, paths: list[str], fs, reader) -> pa.Table:
    table = source.table
    schema = _declared_schema(table, all_strings=True)
    partition_values = _partition_columns(source, paths)

    def read(numbered: tuple[int, str]) -> pa.Table:
        i, path = numbered
        compression = "gzip" if path.endswith(".gz") else None
        with fs.open_input_stream(path, compression=compression) as stream:
            data = reader(stream, table)
        for k in table.partition_keys:
            value = partition_values[k][i]
            if k in data.column_names:
                data = data.drop_columns([k])
            data = data.append_column(k, pa.array([value] * data.num_rows, pa.string()))
        return data.select(schema.names).cast(schema)

    parts = in_parallel(read, enumerate(paths))
    return pa.concat_tables(parts) if parts else schema.empty_table()


# ----------------------------------------------------------------------------- errors, output

_DUCK_POSITION = re.compile(r"LINE (\d+):")


def _duckdb_error(error: duckdb.Error, duck_sql: str) -> QueryError:
    text = str(error)
    if "HIVE_BAD_DATA: " in text:  # a JSON value that does not parse as its declared type
        return QueryError(text[text.index("HIVE_BAD_DATA: ") :].strip().splitlines()[0])
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    line = column = None
    match = _DUCK_POSITION.search(text)
    if match:
        line = int(match.group(1))
        lines = text.splitlines()
        for i, text_line in enumerate(lines):
            if text_line.startswith(f"LINE {line}:") and i + 1 < len(lines) and "^" in lines[i + 1]:
                column = lines[i + 1].index("^") - len(f"LINE {line}: ") + 1
                break
    where = f" at line {line}:{column} of the DuckDB SQL [{duck_sql}]" if line else ""
    return QueryError(f"{type(error).__name__}: {first}{where}", line=line, column=column)


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(csv_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={csv_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    return str(value)


def write_result(
    s3,
    output_location: str,
    query_id: str,
    columns: list[str],
    rows: list[tuple],
    *,
    sql: str,
    workgroup: str,
    bytes_scanned: int,
    encryption: dict | None = None,
) -> str:
    """Athena's CSV at `<output_location><query_id>.csv` (a header row, every field
    double-quoted, NULL as an empty field) and its `.metadata` beside it; `encryption` is
    put_object's ServerSideEncryption arguments (the workgroup's result encryption)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_value(v) for v in row])
    bucket, _, prefix = output_location[len("s3://") :].partition("/")
    key = f"{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}{query_id}.csv"
    extra = encryption or {}
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=buffer.getvalue().encode("utf-8"),
        ContentType="text/csv",
        **extra,
    )
    s3.put_object(
        Bucket=bucket,
        Key=f"{key}.metadata",
        ContentType="application/json",
        Body=json.dumps(
            {
                "QueryExecutionId": query_id,
                "WorkGroup": workgroup,
                "Query": sql,
                "Columns": columns,
                "RowCount": len(rows),
                "DataScannedInBytes": bytes_scanned,
            }
        ).encode("utf-8"),
        **extra,
    )
    return f"s3://{bucket}/{key}"
