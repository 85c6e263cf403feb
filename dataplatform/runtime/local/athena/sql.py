"""The local Athena's SQL analysis, without I/O: parse a statement (Athena's dialect, Trino
as a fall-back), refuse what Athena refuses, find the tables it reads (and the version of an
Iceberg table each reference asks for: `FOR VERSION AS OF`, `FOR TIMESTAMP AS OF`) and the
simple predicates on their partition columns, decide which partitions those predicates keep,
and transpile the statement to DuckDB SQL over one DuckDB schema per Glue database."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from dataplatform.runtime import errors

# Athena's default catalog name; `awsdatacatalog.db.t` is `db.t`.
DEFAULT_CATALOG = "awsdatacatalog"


class QueryError(errors.QueryError):
    """A query Athena would fail: bad SQL, unknown table, bytes-scanned cutoff, ..."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.line = line
        self.column = column
        super().__init__(message)


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


def _where(node: exp.Expr) -> str:
    meta = getattr(node, "meta", {}) or {}
    line, col = meta.get("line"), meta.get("col")
    return f"line {line}:{col}: " if line is not None else ""


def _function_name(node: exp.Func) -> str:
    return node.name if isinstance(node, exp.Anonymous) else node.sql_name()


def refuse_what_athena_refuses(tree: exp.Expr) -> None:
    """Statements other than queries and DESCRIBE, table functions, and DuckDB's functions
    for files, settings and the environment are refused before anything runs, in Athena's
    words. DuckDB is locked down as well (engine.py's `_lock_down`), so what this misses
    still reads and writes nothing outside the lake."""
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


# ----------------------------------------------------------------------------- parsing


def parse(sql: str) -> exp.Expr:
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


def _cte_names(tree: exp.Expr) -> set[str]:
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


def referenced_tables(tree: exp.Expr, default_database: str | None) -> list[tuple[str, str]]:
    """(database, table) of every catalog table the query reads, in order, once each."""
    return list(
        dict.fromkeys((db, name) for db, name, _ in table_references(tree, default_database))
    )


class TableVersion(NamedTuple):
    """The version of a table a reference asks for (Athena engine v3 / Trino time travel):
    `FOR VERSION AS OF <snapshot id or ref name>` (kind VERSION) or `FOR TIMESTAMP AS OF
    <timestamp>` (kind TIMESTAMP); the pointer's expression in Athena's SQL and in DuckDB's."""

    kind: str  # VERSION | TIMESTAMP
    text: str
    duckdb: str


# (database, table, version or None for the current one): one DuckDB view each
Reference = tuple[str, str, TableVersion | None]


def table_version(table: exp.Table) -> TableVersion | None:
    version = table.args.get("version")
    if version is None:
        return None
    kind = str(version.this).upper()
    if kind not in ("VERSION", "TIMESTAMP") or str(version.args.get("kind", "")).upper() != "AS OF":
        raise QueryError(
            f"NOT_SUPPORTED: {_where(table)}FOR {kind} {version.args.get('kind')}: Athena reads "
            "a table FOR VERSION AS OF <snapshot id> or FOR TIMESTAMP AS OF <timestamp>"
        )
    pointer = version.expression
    try:
        return TableVersion(kind, pointer.sql(dialect="trino"), pointer.sql(dialect="duckdb"))
    except SqlglotError as error:
        raise QueryError(f"NOT_SUPPORTED: {error}") from None


def view_name(name: str, version: TableVersion | None) -> str:
    """The DuckDB view of one version of a table: the table's name for the current version,
    `<table> FOR VERSION AS OF <pointer>` for another, so that the same table read at two
    versions in one query (comparing snapshots) is two views."""
    return name if version is None else f"{name} FOR {version.kind} AS OF {version.text}"


def table_references(tree: exp.Expr, default_database: str | None) -> list[Reference]:
    """(database, table, version) of every catalog table the query reads, in order, once
    each; the version is None for the table as it is now."""
    ctes = _cte_names(tree)
    seen: dict[Reference, None] = {}
    for table in tree.find_all(exp.Table):
        if _is_physical(table, ctes):
            key = _table_key(table, default_database)
            if key:
                seen[(*key, table_version(table))] = None
    return list(seen)


def _name_unnamed_columns(tree: exp.Expr) -> None:
    """Athena names a result column that is neither a column nor aliased `_col<position>`
    (`SELECT event_type, count(*)` answers event_type and _col1); DuckDB would name it after
    the expression (`count_star()`). The outermost SELECT's (a set operation's first)."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if isinstance(select, exp.Subquery):
        select = select.unnest()
    if not isinstance(select, exp.Select):
        return
    for position, projection in enumerate(select.expressions):
        if isinstance(projection, (exp.Alias, exp.Column, exp.Star)):
            continue
        projection.replace(exp.alias_(projection.copy(), f"_col{position}"))


def to_duckdb(tree: exp.Expr, default_database: str | None) -> str:
    tree = tree.copy()
    _name_unnamed_columns(tree)
    ctes = _cte_names(tree)
    for table in tree.find_all(exp.Table):
        if not _is_physical(table, ctes):
            if table.args.get("version") is not None:
                raise QueryError(
                    f"NOT_SUPPORTED: {_where(table)}FOR {table.args['version'].this} AS OF "
                    f"applies to a catalog table; {table.name!r} is not one"
                )
            continue
        key = _table_key(table, default_database)
        if key is None:  # `FROM ""`: an empty quoted table name
            raise QueryError(
                f"SYNTAX_ERROR: {_where(table.this)}Zero-length delimited identifier not allowed"
            )
        db, name = key
        version = table_version(table)
        if version is not None:  # its own view; `t.column` still names it
            table.set("version", None)
            if not table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(name, quoted=True)))
        table.set("catalog", None)
        table.set("db", exp.to_identifier(db, quoted=True))
        table.set("this", exp.to_identifier(view_name(name, version), quoted=True))
    try:
        return tree.sql(dialect="duckdb")
    except SqlglotError as error:
        raise QueryError(f"NOT_SUPPORTED: {error}") from None


# ----------------------------------------------------------------------------- pruning

# A predicate on one partition column: (column, operator, values).
Predicate = tuple[str, str, tuple[Any, ...]]

_COMPARISONS = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_FLIPPED = {"=": "=", "<>": "<>", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _literal(node: exp.Expr) -> Any:
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


def _conjuncts(node: exp.Expr | None) -> Iterable[exp.Expr]:
    if node is None:
        return
    if isinstance(node, exp.Paren):
        yield from _conjuncts(node.this)
    elif isinstance(node, exp.And):
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _simple_predicate(node: exp.Expr) -> tuple[exp.Column, str, tuple[Any, ...]] | None:
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


def partition_predicates(
    tree: exp.Expr, default_database: str | None
) -> dict[tuple[str, str], list[list[Predicate]]]:
    """For each table, one list of column predicates per place the query reads it.

    A table read in two places (a self-join, two subqueries) is pruned to the union of
    what each place needs; a place whose WHERE says nothing usable reads everything.
    Predicates are attached to a table when qualified with its alias or name, or, when
    unqualified, if the table is the only source of its SELECT.
    """
    result: dict[tuple[str, str], list[list[Predicate]]] = {}
    for (db, name, _), places in reference_predicates(tree, default_database).items():
        result.setdefault((db, name), []).extend(places)
    return result


def reference_predicates(
    tree: exp.Expr, default_database: str | None
) -> dict[Reference, list[list[Predicate]]]:
    """`partition_predicates` per table reference: each version of a table (time travel)
    is pruned by the places that read that version."""
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

    result: dict[Reference, list[list[Predicate]]] = {}
    for table in tree.find_all(exp.Table):
        if _is_physical(table, ctes):
            key = _table_key(table, default_database)
            if key is not None:  # `FROM ""` has no key; to_duckdb refuses it
                reference = (*key, table_version(table))
                result.setdefault(reference, []).append(per_node.get(id(table), []))
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


def keeps_partition(values: dict[str, str], predicates: list[Predicate]) -> bool:
    for column, op, literals in predicates:
        if column in values:
            try:
                if not _compare(values[column], op, literals):
                    return False
            except TypeError:  # incomparable: keep the partition, DuckDB decides
                continue
    return True


# ----------------------------------------------------------------------------- statements


@dataclass
class Statement:
    """What one Athena statement asks: a query (SELECT, WITH, UNION, DESCRIBE) answered as
    rows, or a query whose rows are written as Parquet to S3: CREATE TABLE AS SELECT (a new
    catalog table) or UNLOAD."""

    kind: str  # query | ctas | unload
    query: exp.Expr  # the query whose rows are the answer (or are written)
    properties: dict[str, Any] = field(default_factory=dict)  # WITH (...), lower-case keys
    table: tuple[str | None, str] | None = None  # ctas: (database or None, name)
    location: str | None = None  # unload: TO '...'
    with_data: bool = True  # ctas: WITH NO DATA creates the table only


def _property_value(node: exp.Expr) -> Any:
    if isinstance(node, exp.Array):
        return [_property_value(e) for e in node.expressions]
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else _number(node.this)
    return node.name if isinstance(node, (exp.Identifier, exp.Column, exp.Var)) else node.sql()


def _properties(node: exp.Expr | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for prop in node.expressions if node is not None else []:
        if isinstance(prop, exp.FileFormatProperty):
            found["format"] = _property_value(prop.this)
        elif isinstance(prop, exp.PartitionedByProperty):
            found["partitioned_by"] = _property_value(prop.this)
        elif isinstance(prop, exp.WithDataProperty):
            found["with_data"] = not prop.args.get("no")
        elif "value" in prop.args:
            found[prop.name.lower()] = _property_value(prop.args["value"])
        else:
            found[prop.key.removesuffix("property")] = (
                _property_value(prop.this) if prop.this is not None else True
            )
    return found


def _closing_parenthesis(sql: str, opening: int) -> int:
    """The index of the `)` matching the `(` at `opening`, strings and quoted names skipped."""
    depth, at, quote = 0, opening, None
    while at < len(sql):
        ch = sql[at]
        if quote:
            if ch == quote:
                if at + 1 < len(sql) and sql[at + 1] == quote:
                    at += 1  # a doubled quote inside the string
                else:
                    quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return at
        at += 1
    raise QueryError("SYNTAX_ERROR: UNLOAD (query): the query's parenthesis is not closed")


_UNLOAD = re.compile(r"^\s*UNLOAD\s*\(", re.IGNORECASE)
_UNLOAD_TAIL = re.compile(
    r"^\s*TO\s*'(?P<location>(?:[^']|'')*)'\s*(?:WITH\s*(?P<with>\(.*\)))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


def statement(sql: str) -> Statement:
    """The statement `sql` is (QueryError for bad SQL and what Athena would refuse)."""
    match = _UNLOAD.match(sql)
    if match:
        close = _closing_parenthesis(sql, match.end() - 1)
        tail = _UNLOAD_TAIL.match(sql[close + 1 :])
        if tail is None:
            raise QueryError(
                "SYNTAX_ERROR: UNLOAD (query) TO 's3://bucket/prefix/' WITH (format = 'PARQUET')"
            )
        query = parse(sql[match.end() : close])
        properties: dict[str, Any] = {}
        if tail.group("with"):
            wrapper = parse(f"CREATE TABLE t WITH {tail.group('with')} AS SELECT 1")
            properties = _properties(wrapper.args.get("properties"))
        return Statement(
            "unload", query, properties, location=tail.group("location").replace("''", "'")
        )
    tree = parse(sql)
    if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE":
        query = tree.expression
        if query is None:
            raise QueryError(
                "NOT_SUPPORTED: CREATE TABLE without AS SELECT: create tables in the Glue "
                "catalog (the stacks, or glue.create_table)"
            )
        if isinstance(query, exp.Subquery):
            query = query.unnest()
        target = tree.this if isinstance(tree.this, exp.Table) else tree.this.find(exp.Table)
        if target is None:
            raise QueryError("SYNTAX_ERROR: CREATE TABLE AS SELECT needs a table name")
        properties = _properties(tree.args.get("properties"))
        return Statement(
            "ctas",
            query,
            properties,
            table=(target.db.lower() or None, target.name.lower()),
            with_data=properties.pop("with_data", True),
        )
    return Statement("query", tree)
