"""raw -> curated: the curate job's transform, pure PySpark (no I/O, no AWS).

`curate(raw, dataset)` takes a dataset's raw rows (every column a string, as the raw Glue
table reads them) and returns the curated rows, the quarantined rows and a report:

1. The spec's `drop` columns are dropped. Columns the spec does not know (schema drift)
   are left out and listed in the report; spec columns missing from the input are null.
2. Every kept column is typed with a safe cast (`try_cast`: a bad value never fails the
   job). A row is quarantined, with every reason it breaks, when a non-empty value does
   not cast (`<col>:type`), a required value is missing (`<col>:required`), a value is not
   `allowed` (`<col>:allowed`), below `min` (`<col>:min`) or above `max` (`<col>:max`).
   Reasons are joined with ';' in spec column order, then rule order. Quarantined rows
   keep the original (untrimmed) raw strings of the kept spec columns, so they can be
   fixed and replayed, plus `reason` and `dt`; `drop` columns are not kept there either
   (they are often personal data). A row whose `dt` cannot be found is quarantined too
   (`dt:required` / `dt:type`) unless its event_time's own reason already explains it.
3. Nulls among the valid rows are imputed per the spec (median, mean, zero or a literal),
   before deduplication, as the steps are ordered: the statistics and the reported row
   counts cover every valid row. The median is exact (interpolated, like pandas); for
   int columns the median or mean is rounded half up. With no valid values to compute
   from, the reported value is None and the nulls stay.
4. Rows are deduplicated on the primary key; the latest event_time wins and ties are
   broken by the row's values, so the same input always keeps the same row. Rows with a
   null key column cannot match anything and are all kept.
5. `dt` (YYYY-MM-DD) is derived from event_time in UTC, or taken from the raw `dt`
   partition column for datasets without an event_time (or rows without one).

Typing: values are trimmed of edge whitespace first (inner characters, control and
unicode ones included, are kept) and an empty value is null. Booleans accept
true/false/1/0/yes/no in any case; int columns accept "3.0"; NaN and infinities are not
valid doubles; timestamps are ISO-8601 with or without an offset, or epoch seconds
(epoch milliseconds from 1e11 up).

Timestamps are parsed to UTC instants; the Spark session must run in UTC
(`spark.sql.session.timeZone=UTC`), which `curate` checks, so offset-less timestamps
mean UTC and `dt` is a UTC date whatever the machine's time zone.

The report is a plain JSON-serialisable dict, and its numbers reconcile:
rows_in == rows_curated + rows_quarantined + duplicates_removed (checked before returning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dataplatform.spec import RESERVED_COLUMNS, Column, Dataset

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "bigint": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
RULE_ORDER = ("type", "required", "allowed", "min", "max")
DT_COLUMN = "dt"
REASON_COLUMN = "reason"
UNKNOWN_DT = "__unknown__"
UTC_ZONES = ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "+00:00", "Zulu", "UCT", "Etc/UCT")
# A bare number in a timestamp column is epoch seconds, or epoch milliseconds from 1e11 up
# (1e11 seconds is the year 5138; 1e11 milliseconds is March 1973).
EPOCH_MILLIS_FROM = 100_000_000_000
_EPOCH_PATTERN = r"^[+-]?[0-9]{1,15}([.][0-9]+)?$"
_INTEGRAL_FLOAT_PATTERN = r"^[+-]?[0-9]+[.]0*$"  # "3.0" in an int column is 3
# Trimmed from both ends: a character set, not a regex (a regex per value and per use of
# the cleaned value made curate several times slower).
_EDGE_WHITESPACE = " \t\n\r\f\u000b\u00a0"

# Internal column names; the `__` prefix keeps them apart from spec names (lower case
# letters, digits and _ starting with a letter).
_RAW_DT = "__raw_dt"
_DT = "__dt"
_REASON = "__reason"
_RANK = "__rank"


def _raw(name: str) -> str:
    return f"__raw__{name}"


def _clean(name: str) -> str:
    return f"__clean__{name}"


@dataclass
class CurateResult:
    """The curated rows (typed, spec column order + dt), the quarantined rows (raw
    strings + reason + dt) and the run's report (plain JSON-serialisable dict)."""

    curated: DataFrame
    quarantined: DataFrame
    report: dict[str, Any]
    # The validated rows are cached (both outputs and the report read them); a caller
    # done with the outputs calls `release()` to free the cache.
    _cached: tuple[DataFrame, ...] = field(default=(), repr=False, compare=False)

    def release(self) -> None:
        for frame in self._cached:
            frame.unpersist()
        self._cached = ()


def check_reconciliation(report: dict[str, Any]) -> None:
    """Raise ValueError unless every input row is accounted for exactly once."""
    rows_in = report["rows_in"]
    parts = (report["rows_curated"], report["rows_quarantined"], report["duplicates_removed"])
    if rows_in != sum(parts):
        raise ValueError(
            f"curate does not reconcile: rows_in={rows_in} but rows_curated={parts[0]} + "
            f"rows_quarantined={parts[1]} + duplicates_removed={parts[2]} = {sum(parts)} "
            f"({rows_in - sum(parts):+d} row(s) unaccounted for)"
        )


def _check_utc(raw: DataFrame) -> None:
    tz = raw.sparkSession.conf.get("spark.sql.session.timeZone")
    if tz not in UTC_ZONES:
        raise ValueError(
            f"curate needs a UTC Spark session (timestamps without an offset are UTC and dt is "
            f"a UTC date) but spark.sql.session.timeZone is {tz!r}; set "
            "spark.sql.session.timeZone=UTC when building the session"
        )


def _typed(column: Column) -> SparkColumn:
    """The safe cast of a cleaned string column to the column's type (null if it fails)."""
    c = f"`{_clean(column.name)}`"
    t = column.type
    if t == "string":
        return F.col(_clean(column.name))
    if t in ("int", "bigint"):
        # try_cast refuses "3.0"; CSV exports often write whole numbers that way.
        return F.expr(
            f"coalesce(try_cast({c} AS {t}), CASE WHEN {c} RLIKE '{_INTEGRAL_FLOAT_PATTERN}' "
            f"THEN try_cast(regexp_extract({c}, '^([+-]?[0-9]+)', 1) AS {t}) END)"
        )
    if t == "double":
        d = F.expr(f"try_cast({c} AS double)")
        # NaN and infinities are not measurements: they fail the cast.
        return F.when(F.isnan(d) | d.isin(float("inf"), float("-inf")), F.lit(None)).otherwise(d)
    if t == "boolean":
        word = F.lower(F.col(_clean(column.name)))
        return F.when(word.isin(*TRUE_WORDS), F.lit(True)).when(
            word.isin(*FALSE_WORDS), F.lit(False)
        )
    if t == "date":
        return F.expr(f"try_cast({c} AS date)")
    if t == "timestamp":
        # ISO-8601 with or without an offset (none means UTC), or epoch seconds/milliseconds.
        return F.expr(
            f"CASE WHEN {c} RLIKE '{_EPOCH_PATTERN}' THEN timestamp_micros(try_cast(round("
            f"CASE WHEN abs(try_cast({c} AS decimal(24,6))) >= {EPOCH_MILLIS_FROM} "
            f"THEN try_cast({c} AS decimal(24,6)) * 1000 "
            f"ELSE try_cast({c} AS decimal(24,6)) * 1000000 END) AS bigint)) "
            f"ELSE try_cast({c} AS timestamp) END"
        )
    raise ValueError(f"column {column.name!r}: unsupported type {t!r}")


def _violations(column: Column) -> list[tuple[str, SparkColumn]]:
    """(reason token, condition) for each rule of the column, in RULE_ORDER."""
    clean, typed = F.col(_clean(column.name)), F.col(column.name)
    rules: list[tuple[str, SparkColumn]] = [("type", clean.isNotNull() & typed.isNull())]
    if column.required:
        rules.append(("required", clean.isNull()))
    if column.allowed is not None:
        rules.append(("allowed", typed.isNotNull() & ~typed.isin(*column.allowed)))
    if column.min is not None:
        rules.append(("min", typed < F.lit(column.min)))
    if column.max is not None:
        rules.append(("max", typed > F.lit(column.max)))
    return [(f"{column.name}:{rule}", cond) for rule, cond in rules]


def _to_python(value: Any, column: Column) -> Any:
    """A statistic as the column's Python value (ints rounded half up)."""
    if value is None:
        return None
    if column.type in ("int", "bigint"):
        return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return float(value)


def curate(raw: DataFrame, dataset: Dataset, *, raw_dt_column: str | None = "dt") -> CurateResult:
    """Type, validate, impute and deduplicate `dataset`'s raw rows; see the module doc.

    `raw_dt_column` names the raw partition column holding the raw zone's date (None if
    there is none); it is where `dt` comes from when a row has no event_time.
    """
    _check_utc(raw)
    kept = dataset.kept_columns
    spec_names = {c.name for c in dataset.columns}
    partition_columns = set(RESERVED_COLUMNS) | ({raw_dt_column} if raw_dt_column else set())

    # Address input columns by position: Spark resolves names case-insensitively, and a
    # drifting source may send `Event_ID` next to `event_id`.
    positions: dict[str, str] = {}
    for i, name in enumerate(raw.columns):
        positions.setdefault(name, f"__in{i}")
    source = raw.toDF(*[f"__in{i}" for i in range(len(raw.columns))])
    extra_columns = sorted(
        {n for n in raw.columns if n not in spec_names and n not in partition_columns}
    )

    def input_column(name: str | None) -> SparkColumn:
        if name is not None and name in positions:
            return F.col(positions[name]).cast("string")
        return F.lit(None).cast("string")

    # 1. The kept spec columns as raw strings (dropped and unknown columns left out).
    staged = source.select(
        *[input_column(c.name).alias(_raw(c.name)) for c in kept],
        input_column(raw_dt_column).alias(_RAW_DT),
    )

    # 2. Clean (edge whitespace trimmed, empty -> null), then type safely.
    def cleaned(name: str) -> SparkColumn:
        return F.nullif(F.btrim(F.col(name), F.lit(_EDGE_WHITESPACE)), F.lit(""))

    staged = staged.select(
        "*",
        *[cleaned(_raw(c.name)).alias(_clean(c.name)) for c in kept],
        cleaned(_RAW_DT).alias(_RAW_DT + "_clean"),
    )
    typed = staged.select("*", *[_typed(c).cast(SPARK_TYPES[c.type]).alias(c.name) for c in kept])

    # dt: the event_time's UTC date, else the raw partition's date.
    raw_dt = F.date_format(F.expr(f"try_cast(`{_RAW_DT}_clean` AS date)"), "yyyy-MM-dd")
    if dataset.event_time:
        dt = F.coalesce(F.date_format(F.col(dataset.event_time), "yyyy-MM-dd"), raw_dt)
    else:
        dt = raw_dt
    typed = typed.withColumn(_DT, dt)

    checks: list[tuple[str, SparkColumn]] = []
    for column in kept:
        checks.extend(_violations(column))
    # A row that cannot be given a partition is quarantined too, unless its event_time's
    # own reason (`<event_time>:type` or `:required`) already explains why.
    explained = F.lit(False)
    event_column = next((c for c in kept if c.name == dataset.event_time), None)
    if event_column is not None:
        et_clean, et_typed = F.col(_clean(event_column.name)), F.col(event_column.name)
        explained = et_clean.isNotNull() & et_typed.isNull()
        if event_column.required:
            explained = explained | et_clean.isNull()
    no_dt = F.col(_DT).isNull() & ~explained
    checks.append((f"{DT_COLUMN}:required", no_dt & F.col(_RAW_DT + "_clean").isNull()))
    checks.append((f"{DT_COLUMN}:type", no_dt & F.col(_RAW_DT + "_clean").isNotNull()))
    reason = F.concat_ws(";", *[F.when(cond, F.lit(token)) for token, cond in checks])

    # Cached (both outputs and the report read it) without the intermediate cleaned
    # strings: a narrower cache is much cheaper to build.
    validated = (
        typed.withColumn(_REASON, reason)
        .drop(*[_clean(c.name) for c in kept], _RAW_DT, _RAW_DT + "_clean")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    is_bad = F.col(_REASON) != ""

    quarantined = validated.filter(is_bad).select(
        *[F.col(_raw(c.name)).alias(c.name) for c in kept],
        F.col(_REASON).alias(REASON_COLUMN),
        F.coalesce(F.col(_DT), F.lit(UNKNOWN_DT)).alias(DT_COLUMN),
    )
    valid = validated.filter(~is_bad)

    # 3. Impute the valid rows' nulls; statistics come from the valid non-null values.
    # One pass over the validated rows counts the quarantine and computes the statistics
    # (aggregates skip nulls, so `when(valid, x)` restricts them to the valid rows).
    imputed_columns = [c for c in kept if c.impute is not None]
    aggs = [
        F.count(F.lit(1)).alias("__rows_in"),
        F.sum(F.when(is_bad, 1).otherwise(0)).alias("__quarantined"),
    ]
    for c in imputed_columns:
        valid_values = F.when(~is_bad, F.col(c.name))
        aggs.append(
            F.sum(F.when(~is_bad & F.col(c.name).isNull(), 1).otherwise(0)).alias(
                f"{c.name}__nulls"
            )
        )
        if c.impute == "median":  # exact, interpolated like pandas' median
            aggs.append(F.percentile(valid_values, F.lit(0.5)).alias(f"{c.name}__stat"))
        elif c.impute == "mean":
            aggs.append(F.avg(valid_values).alias(f"{c.name}__stat"))
    stats_row = validated.agg(*aggs).collect()[0].asDict()
    imputed: dict[str, dict[str, Any]] = {}
    fills: dict[str, SparkColumn] = {}
    for c in imputed_columns:
        if c.impute in ("median", "mean"):
            value = _to_python(stats_row[f"{c.name}__stat"], c)
        elif c.impute == "zero":
            value = 0 if c.type in ("int", "bigint") else 0.0
        else:
            value = c.impute
        rows = int(stats_row[f"{c.name}__nulls"] or 0)
        imputed[c.name] = {"value": value, "rows": rows if value is not None else 0}
        if value is not None:
            fills[c.name] = F.coalesce(F.col(c.name), F.lit(value).cast(SPARK_TYPES[c.type]))

    output = [
        fills.get(c.name, F.col(c.name)).cast(SPARK_TYPES[c.type]).alias(c.name) for c in kept
    ]
    filled = valid.select(*output, F.col(_DT).alias(DT_COLUMN))

    # 4. Deduplicate: the latest event_time wins, ties go to the smallest row by value.
    if dataset.primary_key:
        order = []
        if dataset.event_time:
            order.append(F.col(dataset.event_time).desc_nulls_last())
        order += [F.col(c.name).asc_nulls_last() for c in kept]
        order.append(F.col(DT_COLUMN).asc_nulls_last())
        window = Window.partitionBy(*[F.col(k) for k in dataset.primary_key]).orderBy(*order)
        key_missing = F.lit(False)
        for k in dataset.primary_key:
            key_missing = key_missing | F.col(k).isNull()
        # Rows without a full key cannot be matched to anything: each is kept.
        ranked = filled.withColumn(
            _RANK, F.when(key_missing, F.lit(1)).otherwise(F.row_number().over(window))
        )
    else:
        ranked = filled.withColumn(_RANK, F.lit(1))
    # The report and the curated output both read the ranking: sort once.
    ranked = ranked.persist(StorageLevel.MEMORY_AND_DISK)
    curated = ranked.filter(F.col(_RANK) == 1).drop(_RANK)

    # The report.
    totals = ranked.agg(
        F.sum(F.when(F.col(_RANK) == 1, 1).otherwise(0)).alias("curated"),
        F.sum(F.when(F.col(_RANK) > 1, 1).otherwise(0)).alias("duplicates"),
        F.collect_set(F.when(F.col(_RANK) == 1, F.col(DT_COLUMN))).alias("partitions"),
    ).collect()[0]
    reasons = (
        quarantined.select(F.explode(F.split(F.col(REASON_COLUMN), ";")).alias("token"))
        .groupBy("token")
        .count()
        .collect()
    )
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "rows_in": int(stats_row["__rows_in"]),
        "rows_curated": int(totals["curated"] or 0),
        "rows_quarantined": int(stats_row["__quarantined"] or 0),
        "quarantined_by_reason": {
            r["token"]: int(r["count"]) for r in sorted(reasons, key=lambda r: r["token"])
        },
        "duplicates_removed": int(totals["duplicates"] or 0),
        "imputed": imputed,
        "extra_columns": extra_columns,
        "partitions": sorted(p for p in (totals["partitions"] or []) if p is not None),
    }
    check_reconciliation(report)
    return CurateResult(
        curated=curated, quarantined=quarantined, report=report, _cached=(validated, ranked)
    )
