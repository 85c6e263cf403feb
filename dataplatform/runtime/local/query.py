"""The embedded platform's Athena: Athena (Trino) SQL over the Glue catalog and S3 of the
local platform (a moto server), run by DuckDB.

moto's Athena answers every query with zero rows (see ../shared/FACTS.md), so the local
platform runs queries itself, the way Athena does:

1. parse the SQL with sqlglot (Athena dialect, Trino as a fall-back);
2. find every table it reads (`db.table`, `awsdatacatalog.db.table`, or a bare `table`
   in `default_database`; CTE names are not tables);
3. read each table's definition from Glue (`get_table`: location, SerDe / format,
   columns, partition keys) and its partitions (`get_partitions`, or -- for a table with
   `projection.enabled` and no catalog partitions -- the `k=v/` folders below its
   location, as partition projection would);
4. prune partitions with the simple predicates of the WHERE clauses on partition keys
   (`=`, `<>`, `IN`, `<`, `<=`, `>`, `>=`, `BETWEEN`, ANDed together);
5. refuse the query when the bytes it would scan exceed the workgroup's cutoff;
6. expose each table to DuckDB as a view `"<database>"."<table>"` (one DuckDB schema per
   Glue database) over the files of the selected partitions, with the partition
   columns as strings: Parquet through a `pyarrow.dataset` over `s3_filesystem`
   (DuckDB's httpfs is not available offline), JSON lines (gzip when the key ends in
   `.gz`) and CSV read with pyarrow, every catalog column as a string (as the raw
   tables declare them);
7. transpile to DuckDB SQL, run it, and write the result as CSV to
   `s3://<athena-results>/results/<query_id>.csv` (plus `<query_id>.csv.metadata`, JSON).

`bytes_scanned` is the total size of the S3 objects of the partitions selected after
pruning (the compressed size for gzip JSON). Athena counts only the Parquet columns and
row groups it actually reads, so for Parquet this is an upper bound of Athena's figure;
for JSON and CSV it is what Athena counts.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from dataplatform import layout
from dataplatform.runtime import errors

# Athena's default catalog name; `awsdatacatalog.db.t` is `db.t`.
DEFAULT_CATALOG = "awsdatacatalog"

_PARQUET_MARKERS = ("parquet",)
_JSON_MARKERS = ("jsonserde", "json")
_CSV_MARKERS = ("opencsvserde", "lazysimpleserde", "textinputformat")

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


class QueryError(errors.QueryError):
    """A query Athena would fail: bad SQL, unknown table, bytes-scanned cutoff, ..."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.line = line
        self.column = column
        super().__init__(message)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    bytes_scanned: int
    query_id: str
    output_location: str
    # The tables read and, for each, the S3 objects read (after pruning).
    files_read: dict[str, list[str]] = field(default_factory=dict)

    @property
    def frame(self):
        """The result as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)


# ----------------------------------------------------------------------------- public API


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
) -> QueryResult:
    """Run one Athena SQL statement against the local platform; see the module doc.

    `glue` and `s3` are boto3 clients, `s3_filesystem` a `pyarrow.fs.S3FileSystem`, all
    pointing at the same (moto) endpoint. `bytes_scanned_cutoff` None means no cutoff.
    Raises QueryError for anything Athena would fail the query for.
    """
    query_id = str(uuid.uuid4())
    tree = _parse(sql)
    _refuse_what_athena_refuses(tree)
    tables = _referenced_tables(tree, default_database)
    predicates = _partition_predicates(tree, default_database)

    sources: list[_Source] = []
    for key in tables:
        definition = _glue_table(glue, *key)
        sources.append(_select_files(definition, s3, predicates.get(key, [[]])))

    scanned = sum(size for src in sources for _, size in src.files)
    if bytes_scanned_cutoff is not None and scanned > bytes_scanned_cutoff:
        raise QueryError(
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
            _register(con, index, src, s3_filesystem)
        _lock_down(con)
        duck_sql = _to_duckdb(tree, default_database)
        try:
            cursor = con.execute(duck_sql)
            columns = [d[0] for d in cursor.description]
            rows = [tuple(r) for r in cursor.fetchall()]
        except duckdb.Error as error:
            raise _duckdb_error(error, duck_sql) from None
    finally:
        con.close()

    output_location = _write_result(
        s3,
        athena_results_bucket,
        query_id,
        columns,
        rows,
        sql=sql,
        workgroup=workgroup,
        bytes_scanned=scanned,
    )
    return QueryResult(
        columns=columns,
        rows=rows,
        bytes_scanned=scanned,
        query_id=query_id,
        output_location=output_location,
        files_read={f"{s.database}.{s.name}": [p for p, _ in s.files] for s in sources},
    )


# ----------------------------------------------------------------------------- the sandbox

# What the local Athena runs: queries and DESCRIBE. Everything else Athena would either
# refuse (DuckDB's COPY, ATTACH, INSTALL, PRAGMA, SET, EXPORT, CALL) or run against its own
# catalog (DDL, SHOW, EXPLAIN: not implemented here).
_STATEMENTS = (exp.Select, exp.SetOperation, exp.Describe, exp.Subquery)

# DuckDB functions that reach outside the catalog's tables: files, globs, the environment,
# settings, other databases, SQL in strings. Athena has none of them.
_OUTSIDE_FUNCTIONS = re.compile(
    r"^(read_\w*|glob|parquet_\w*|sniff_csv|getenv|duckdb_\w*|pragma_\w*|current_setting|"
    r"which_secret|query|query_table|load_\w*|iceberg_\w*|delta_\w*|sqlite_\w*|postgres_\w*|"
    r"mysql_\w*|json_execute_serialized_sql|arrow_scan\w*|checkpoint|force_checkpoint|"
    r"install\w*|enable_\w*|disable_\w*|test_\w*|summary)$",
    re.IGNORECASE,
)


def _where(node: exp.Expression) -> str:
    meta = getattr(node, "meta", {}) or {}
    line, col = meta.get("line"), meta.get("col")
    return f"line {line}:{col}: " if line is not None else ""


def _function_name(node: exp.Func) -> str:
    return node.name if isinstance(node, exp.Anonymous) else node.sql_name()


def _refuse_what_athena_refuses(tree: exp.Expression) -> None:
    """Statements other than queries and DESCRIBE, table functions, and DuckDB's functions
    for files, settings and the environment are refused before anything runs, in Athena's
    words. DuckDB is locked down as well (`_lock_down`), so what this misses still reads
    and writes nothing outside the lake."""
    if not isinstance(tree, _STATEMENTS) or (
        isinstance(tree, exp.Subquery) and not isinstance(tree.unnest(), _STATEMENTS)
    ):
        kind = (tree.this if isinstance(tree, exp.Command) else tree.key).upper()
        raise QueryError(
            f"NOT_SUPPORTED: {kind} statements are not supported here; the local platform "
            "runs SELECT (WITH, UNION, ...) and DESCRIBE, as Athena queries"
        )
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, (exp.Identifier, exp.Unnest, exp.Values)):
            name = (
                _function_name(table.this) if isinstance(table.this, exp.Func) else table.this.sql()
            )
            raise QueryError(
                f"FUNCTION_NOT_FOUND: {_where(table.this)}Table function '{name}' not "
                "registered; read the lake's tables by name (database.table)"
            )
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if _OUTSIDE_FUNCTIONS.match(name or ""):
            raise QueryError(
                f"FUNCTION_NOT_FOUND: {_where(node)}Function '{name.lower()}' not registered"
            )


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


# ----------------------------------------------------------------------------- parsing


def _parse(sql: str) -> exp.Expression:
    first_error: ParseError | None = None
    for dialect in ("athena", "trino"):
        try:
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
        except ParseError as error:
            first_error = first_error or error
            continue
        except SqlglotError as error:  # tokenizer errors
            raise QueryError(f"SYNTAX_ERROR: {error}") from None
        if len(statements) != 1:
            raise QueryError(f"SYNTAX_ERROR: expected one SQL statement, got {len(statements)}")
        return statements[0]
    assert first_error is not None
    detail = first_error.errors[0] if first_error.errors else {}
    line, col = detail.get("line"), detail.get("col")
    where = f"line {line}:{col}: " if line is not None else ""
    message = detail.get("description") or str(first_error)
    near = (detail.get("highlight") or "").strip()
    raise QueryError(
        f"SYNTAX_ERROR: {where}{message}" + (f" (near {near!r})" if near else ""),
        line=line,
        column=col,
    ) from None


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _table_key(table: exp.Table, default_database: str | None) -> tuple[str, str] | None:
    """(database, table) of a table reference, lower case as Athena folds identifiers."""
    name = table.name
    if not name:
        return None
    db = table.db or default_database
    if not db:
        raise QueryError(
            f"SCHEMA_NOT_FOUND: {_where(table)}Schema must be specified when session "
            f"schema is not set: write <database>.<table> for {name!r}, or set a "
            "default database"
        )
    if table.catalog and table.catalog.lower() != DEFAULT_CATALOG:
        raise QueryError(
            f"Catalog {table.catalog!r} does not exist; the local platform "
            f"has only {DEFAULT_CATALOG!r}"
        )
    return db.lower(), name.lower()


def _is_physical(table: exp.Table, ctes: set[str]) -> bool:
    if not isinstance(table.this, exp.Identifier):  # table functions, UNNEST, VALUES
        return False
    return bool(table.db) or table.name.lower() not in ctes


def _referenced_tables(tree: exp.Expression, default_database: str | None) -> list[tuple[str, str]]:
    ctes = _cte_names(tree)
    seen: dict[tuple[str, str], None] = {}
    for table in tree.find_all(exp.Table):
        if _is_physical(table, ctes):
            key = _table_key(table, default_database)
            if key:
                seen[key] = None
    return list(seen)


def _to_duckdb(tree: exp.Expression, default_database: str | None) -> str:
    tree = tree.copy()
    ctes = _cte_names(tree)
    for table in tree.find_all(exp.Table):
        if not _is_physical(table, ctes):
            continue
        db, name = _table_key(table, default_database)
        table.set("catalog", None)
        table.set("db", exp.to_identifier(db, quoted=True))
        table.set("this", exp.to_identifier(name, quoted=True))
    try:
        return tree.sql(dialect="duckdb")
    except SqlglotError as error:
        raise QueryError(f"NOT_SUPPORTED: {error}") from None


# ----------------------------------------------------------------------------- pruning

# A predicate on one partition column: (column, operator, values).
Predicate = tuple[str, str, tuple[Any, ...]]

_COMPARISONS = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_FLIPPED = {"=": "=", "<>": "<>", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _literal(node: exp.Expression) -> Any:
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else _number(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -_number(node.this.this)
    return _NO_LITERAL


_NO_LITERAL = object()


def _number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _conjuncts(node: exp.Expression | None) -> Iterable[exp.Expression]:
    if node is None:
        return
    if isinstance(node, exp.Paren):
        yield from _conjuncts(node.this)
    elif isinstance(node, exp.And):
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _simple_predicate(node: exp.Expression) -> tuple[exp.Column, str, tuple] | None:
    for kind, op in _COMPARISONS.items():
        if isinstance(node, kind):
            left, right = node.left, node.right
            if isinstance(left, exp.Column) and _literal(right) is not _NO_LITERAL:
                return left, op, (_literal(right),)
            if isinstance(right, exp.Column) and _literal(left) is not _NO_LITERAL:
                return right, _FLIPPED[op], (_literal(left),)
            return None
    if (
        isinstance(node, exp.In)
        and isinstance(node.this, exp.Column)
        and not node.args.get("query")
        and not node.args.get("unnest")
        and node.expressions
    ):
        values = tuple(_literal(v) for v in node.expressions)
        if all(v is not _NO_LITERAL for v in values):
            return node.this, "in", values
    if isinstance(node, exp.Between) and isinstance(node.this, exp.Column):
        low, high = _literal(node.args["low"]), _literal(node.args["high"])
        if low is not _NO_LITERAL and high is not _NO_LITERAL:
            return node.this, "between", (low, high)
    return None


def _partition_predicates(
    tree: exp.Expression, default_database: str | None
) -> dict[tuple[str, str], list[list[Predicate]]]:
    """For each table, one list of column predicates per place the query reads it.

    A table read in two places (a self-join, two subqueries) is pruned to the union of
    what each place needs; a place whose WHERE says nothing usable reads everything.
    Predicates are attached to a table when qualified with its alias or name, or, when
    unqualified, if the table is the only source of its SELECT.
    """
    ctes = _cte_names(tree)
    per_node: dict[int, list[Predicate]] = {}
    try:
        scopes = traverse_scope(tree)
    except Exception:  # noqa: BLE001 - an unusual query: no pruning, still correct
        scopes = []
    for scope in scopes:
        where = (
            scope.expression.args.get("where") if isinstance(scope.expression, exp.Select) else None
        )
        if where is None:
            continue
        tables = {
            alias: src
            for alias, src in scope.sources.items()
            if isinstance(src, exp.Table) and _is_physical(src, ctes)
        }
        only = next(iter(tables.values())) if len(scope.sources) == 1 and tables else None
        for conjunct in _conjuncts(where.this):
            found = _simple_predicate(conjunct)
            if not found:
                continue
            column, op, values = found
            target = tables.get(column.table) if column.table else only
            if target is None and column.table:
                target = next((t for t in tables.values() if t.name == column.table), None)
            if target is not None:
                per_node.setdefault(id(target), []).append((column.name.lower(), op, values))

    result: dict[tuple[str, str], list[list[Predicate]]] = {}
    for table in tree.find_all(exp.Table):
        if _is_physical(table, ctes):
            key = _table_key(table, default_database)
            result.setdefault(key, []).append(per_node.get(id(table), []))
    return result


def _compare(value: str, op: str, literals: tuple) -> bool:
    def coerce(literal):
        if isinstance(literal, str):
            return value, literal
        try:
            return _number(value), literal
        except ValueError:
            return value, str(literal)

    if op == "in":
        return any(a == b for a, b in map(coerce, literals))
    if op == "between":
        (a, low), (_, high) = coerce(literals[0]), coerce(literals[1])
        return low <= a <= high
    a, b = coerce(literals[0])
    return {"=": a == b, "<>": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def _keep(values: dict[str, str], predicates: list[Predicate]) -> bool:
    for column, op, literals in predicates:
        if column in values:
            try:
                if not _compare(values[column], op, literals):
                    return False
            except TypeError:  # incomparable: keep the partition, DuckDB decides
                continue
    return True


# ----------------------------------------------------------------------------- catalog


@dataclass
class _Table:
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
class _Source:
    database: str
    name: str
    table: _Table
    files: list[tuple[str, int]]  # (bucket/key, size) after pruning
    partitions: list[dict[str, str]]
    file_partitions: dict[str, dict[str, str]] = field(default_factory=dict)


def _glue_table(glue, database: str, name: str) -> _Table:
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
    partitions = None
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
    return _Table(
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


def _select_files(table: _Table, s3, places: list[list[Predicate]]) -> _Source:
    def wanted(values: dict[str, str]) -> bool:
        return any(_keep(values, predicates) for predicates in places)

    if not table.partition_keys:
        return _Source(table.database, table.name, table, _list(s3, table.location), [])

    files: list[tuple[str, int]] = []
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
    return _Source(
        table.database,
        table.name,
        table,
        [(p, s) for p, s, _ in files],
        partitions,
        {p: v for p, _, v in files},
    )


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


def _partition_columns(source: _Source, paths: Sequence[str]) -> dict[str, list]:
    mapping = source.file_partitions
    return {k: [mapping.get(p, {}).get(k) for p in paths] for k in source.table.partition_keys}


def _register(con: duckdb.DuckDBPyConnection, index: int, source: _Source, fs) -> None:
    table = source.table
    paths = [p for p, _ in source.files]
    if table.format == "parquet":
        data = _parquet(source, paths, fs)
    elif table.format == "json":
        data = _text_table(source, paths, fs, _read_json)
    else:
        data = _text_table(source, paths, fs, _read_csv)
    internal = f"__dp_source_{index}"
    con.register(internal, data)
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.database}"')
    con.execute(
        f'CREATE OR REPLACE VIEW "{table.database}"."{table.name}" AS SELECT * FROM "{internal}"'
    )


def _declared_schema(table: _Table, *, all_strings: bool) -> pa.Schema:
    fields = [pa.field(n, pa.string() if all_strings else _glue_type(t)) for n, t in table.columns]
    fields += [
        pa.field(k, pa.string())
        for k in table.partition_keys
        if k not in {n for n, _ in table.columns}
    ]
    return pa.schema(fields)


def _parquet(source: _Source, paths: list[str], fs):
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


def _read_json(stream, table: _Table) -> pa.Table:
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


def _read_csv(stream, table: _Table) -> pa.Table:
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


def _text_table(source: _Source, paths: list[str], fs, reader) -> pa.Table:
    table = source.table
    schema = _declared_schema(table, all_strings=True)
    parts = []
    partition_values = _partition_columns(source, paths)
    for i, path in enumerate(paths):
        compression = "gzip" if path.endswith(".gz") else None
        with fs.open_input_stream(path, compression=compression) as stream:
            data = reader(stream, table)
        for k in table.partition_keys:
            value = partition_values[k][i]
            if k in data.column_names:
                data = data.drop_columns([k])
            data = data.append_column(k, pa.array([value] * data.num_rows, pa.string()))
        parts.append(data.select(schema.names).cast(schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


# ----------------------------------------------------------------------------- errors, output

_DUCK_POSITION = re.compile(r"LINE (\d+):")


def _duckdb_error(error: duckdb.Error, duck_sql: str) -> QueryError:
    text = str(error)
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


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_csv_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_csv_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    return str(value)


def _write_result(
    s3,
    bucket: str,
    query_id: str,
    columns: list[str],
    rows: list[tuple],
    *,
    sql: str,
    workgroup: str,
    bytes_scanned: int,
) -> str:
    """Athena's CSV: a header row, every field double-quoted, NULL as an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])
    key = f"{layout.ATHENA_RESULTS_PREFIX}{query_id}.csv"
    s3.put_object(
        Bucket=bucket, Key=key, Body=buffer.getvalue().encode("utf-8"), ContentType="text/csv"
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
    )
    return f"s3://{bucket}/{key}"
