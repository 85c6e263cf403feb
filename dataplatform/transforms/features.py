"""Feature tables from `spec/features/*.sql`: pure PySpark (no I/O, no AWS).

A feature SQL file is Spark SQL that names its inputs by zone and table, e.g.
`curated.telecom_events`, and may use `${name}` variables (e.g. `${as_of}`).

How table names are resolved (one approach, temp views):
- the runner registers every input DataFrame as a Spark temporary view named
  `<database>__<table>` (`view_name`), and
- `render_sql` rewrites each zone-qualified reference `<zone>.<table>` (zones: raw, curated,
  features) to that view name, where `<database>` is `databases[zone]`, or the zone itself
  when `databases` does not name it. `build_feature_table` uses the zone itself, so
  `curated.telecom_events` runs as the view `curated__telecom_events`; passing physical
  database names (`{"curated": "mldp_dev_curated"}`) gives `mldp_dev_curated__telecom_events`.
  Only plain, unquoted `zone.table` references are rewritten, never text inside string
  literals, quoted identifiers or comments; the zone names are therefore reserved as
  qualifiers (do not use `raw`, `curated` or `features` as a table alias).

Variables: `${name}` becomes a quoted SQL string literal (`'2026-11-20'`), or `NULL` when
the value is None (the SQL then chooses its default, e.g. as_of = max(dt)). Every
variable the SQL uses must be given (extra ones are ignored). Variables inside comments
and string literals are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pyspark.sql import DataFrame, SparkSession

from dataplatform.spec import FeatureTable

ZONES = ("raw", "curated", "features")
VIEW_SEPARATOR = "__"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_QUALIFIED = re.compile(
    r"(?<![\w.`$])(" + "|".join(ZONES) + r")\.([A-Za-z_][A-Za-z0-9_]*)\b", re.IGNORECASE
)
# Pieces of SQL left untouched: comments, string literals and quoted identifiers.
_PROTECTED = re.compile(
    r"--[^\n]*"  # line comment
    r"|/\*.*?\*/"  # block comment
    r"|'(?:\\.|[^'\\])*'"  # single-quoted string (backslash escapes, as Spark)
    r'|"(?:\\.|[^"\\])*"'  # double-quoted string
    r"|`(?:``|[^`])*`",  # quoted identifier
    re.DOTALL,
)


class FeatureSqlError(ValueError):
    """The feature SQL cannot be rendered or its output is not what the spec says."""


def view_name(zone: str, table: str, databases: Mapping[str, str] | None = None) -> str:
    """The temp view name a `<zone>.<table>` reference runs as."""
    database = (databases or {}).get(zone.lower(), zone.lower())
    return f"{database}{VIEW_SEPARATOR}{table.lower()}"


def _code_segments(sql: str):
    """(is_code, text) pieces of the SQL: code, or protected text (comment/literal)."""
    position = 0
    for match in _PROTECTED.finditer(sql):
        if match.start() > position:
            yield True, sql[position : match.start()]
        yield False, match.group(0)
        position = match.end()
    if position < len(sql):
        yield True, sql[position:]


def referenced_tables(sql: str) -> list[tuple[str, str]]:
    """The (zone, table) pairs the SQL reads, in order of first use, lower case."""
    found: list[tuple[str, str]] = []
    for is_code, text in _code_segments(sql):
        if is_code:
            for match in _QUALIFIED.finditer(text):
                pair = (match.group(1).lower(), match.group(2).lower())
                if pair not in found:
                    found.append(pair)
    return found


def variables_used(sql: str) -> list[str]:
    names: list[str] = []
    for is_code, text in _code_segments(sql):
        if is_code:
            for match in _VARIABLE.finditer(text):
                if match.group(1) not in names:
                    names.append(match.group(1))
    return names


def sql_literal(value: str | None) -> str:
    """A Spark SQL string literal (backslash-escaped, as Spark reads them), or NULL."""
    if value is None:
        return "NULL"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def render_sql(
    sql: str, *, variables: Mapping[str, str | None], databases: Mapping[str, str] | None = None
) -> str:
    """Substitute `${name}` variables with literals and rewrite `<zone>.<table>` to the temp
    view name `<databases[zone] or zone>__<table>` (see the module docstring)."""
    missing = [name for name in variables_used(sql) if name not in variables]
    if missing:
        raise FeatureSqlError(
            f"the SQL uses variable(s) {', '.join('${' + m + '}' for m in missing)} but no "
            f"value was given (given: {', '.join(sorted(variables)) or 'none'})"
        )
    unknown_zones = [z for z in (databases or {}) if z not in ZONES]
    if unknown_zones:
        raise FeatureSqlError(
            f"unknown zone(s) {unknown_zones} in databases; known zones: {', '.join(ZONES)}"
        )

    def substitute(match: re.Match) -> str:
        return sql_literal(variables[match.group(1)])

    def qualify(match: re.Match) -> str:
        return view_name(match.group(1), match.group(2), databases)

    out = []
    for is_code, text in _code_segments(sql):
        if is_code:
            text = _QUALIFIED.sub(qualify, _VARIABLE.sub(substitute, text))
        out.append(text)
    return "".join(out)


def _statements(sql: str) -> list[str]:
    """Split on `;` outside comments and literals; drop empty (or comment-only) statements."""
    statements, current = [], []
    for is_code, text in _code_segments(sql):
        if not is_code:
            if not text.startswith(("--", "/*")):
                current.append(text)
            continue
        parts = text.split(";")
        current.append(parts[0])
        for part in parts[1:]:
            statements.append("".join(current))
            current = [part]
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def build_feature_table(
    spark: SparkSession,
    feature: FeatureTable,
    *,
    tables: Mapping[str, DataFrame],
    variables: Mapping[str, str | None],
) -> DataFrame:
    """Run a feature table's SQL over the given input tables and return its rows.

    `tables` maps each `<zone>.<table>` the SQL reads (e.g. "curated.telecom_events") to
    its DataFrame; each is registered as the temp view `<zone>__<table>`. Statements before
    the last one (e.g. `CACHE TABLE`, `CREATE TEMP VIEW`) are run first; the last must be the
    SELECT. The output columns must be exactly `feature.columns` (when known), in order.
    """
    given = {name.lower(): df for name, df in tables.items()}
    needed = [f"{zone}.{table}" for zone, table in referenced_tables(feature.sql)]
    missing = [name for name in needed if name not in given]
    if missing:
        raise FeatureSqlError(
            f"feature table {feature.name!r} reads {', '.join(missing)} but no DataFrame was "
            f"given for it (given: {', '.join(sorted(given)) or 'none'})"
        )
    for name, df in given.items():
        zone, _, table = name.partition(".")
        if zone not in ZONES or not table:
            raise FeatureSqlError(
                f"input table {name!r} must be named <zone>.<table> with a "
                f"zone among {', '.join(ZONES)}"
            )
        df.createOrReplaceTempView(view_name(zone, table))

    statements = _statements(render_sql(feature.sql, variables=variables))
    if not statements:
        raise FeatureSqlError(f"feature table {feature.name!r} has no SQL statement")
    for statement in statements[:-1]:
        spark.sql(statement)
    result = spark.sql(statements[-1])
    if feature.columns is not None and tuple(result.columns) != tuple(feature.columns):
        expected, got = list(feature.columns), list(result.columns)
        detail = []
        if set(expected) - set(got):
            detail.append(f"missing {sorted(set(expected) - set(got))}")
        if set(got) - set(expected):
            detail.append(f"unexpected {sorted(set(got) - set(expected))}")
        if not detail:
            detail.append("same columns in a different order")
        raise FeatureSqlError(
            f"feature table {feature.name!r} ({feature.source_file or 'SQL'}) produced columns "
            f"{got} but the spec expects {expected} ({'; '.join(detail)})"
        )
    return result
