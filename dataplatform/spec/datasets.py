"""spec/datasets/*.yaml: datasets, their columns and the columns' rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dataplatform.spec.core import NAME_PATTERN, SpecProblems, check_keys, is_number

COLUMN_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp")
NUMERIC_TYPES = ("int", "bigint", "double")
COLUMN_RULES = ("required", "allowed", "min", "max", "impute", "drop")
# `renamed_from`: the column's name before a rename (an Iceberg curated table renames the
# column in place, keeping its data and field id, instead of adding a new empty one).
COLUMN_KEYS = ("name", "type", "description", "renamed_from") + COLUMN_RULES
IMPUTE_STRATEGIES = ("median", "mean", "zero")
# Partition columns the platform adds itself; a dataset column may not shadow them.
RESERVED_COLUMNS = ("dt", "hour")

INGESTION_MODES = ("stream", "batch")
# A dataset's business domain (an LF-tag value on AWS); one that declares none is in this.
DEFAULT_DOMAIN = "general"
RAW_FORMATS = ("json", "csv")
# How the curated table is stored: Hive-style Parquet partitions the curate job overwrites
# (`hive`), or an Apache Iceberg table it MERGEs into by primary key (`iceberg`).
TABLE_FORMATS = ("hive", "iceberg")
DEFAULT_TABLE_FORMAT = "hive"
# The Iceberg table's maintenance, as Athena runs it: OPTIMIZE (bin-pack small files) and
# VACUUM (expire snapshots older than the retention, remove files nothing refers to).
MAINTENANCE_KEYS = ("optimize", "vacuum", "snapshot_retention_days", "min_snapshots_to_keep")
DEFAULT_SNAPSHOT_RETENTION_DAYS = 5  # Athena's default vacuum_max_snapshot_age_seconds
DEFAULT_MIN_SNAPSHOTS_TO_KEEP = 1  # Athena's default vacuum_min_snapshots_to_keep
_SCHEDULE = re.compile(r"^(rate|cron)\(.+\)$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""
    required: bool = False
    allowed: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    impute: str | int | float | bool | None = None
    drop: bool = False
    renamed_from: str | None = None

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


@dataclass(frozen=True)
class Maintenance:
    """An Iceberg table's scheduled maintenance (EventBridge schedule expressions; None: not
    scheduled) and VACUUM's retention, which become the table's Athena properties."""

    optimize: str | None = None
    vacuum: str | None = None
    snapshot_retention_days: int = DEFAULT_SNAPSHOT_RETENTION_DAYS
    min_snapshots_to_keep: int = DEFAULT_MIN_SNAPSHOTS_TO_KEEP


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    ingestion: str
    format: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    event_time: str | None = None
    pii: tuple[str, ...] = ()
    source_file: str = ""
    domain: str = DEFAULT_DOMAIN
    table_format: str = DEFAULT_TABLE_FORMAT
    maintenance: Maintenance = Maintenance()

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"dataset {self.name!r} has no column {name!r}")

    @property
    def kept_columns(self) -> tuple[Column, ...]:
        """The columns that reach the curated zone (the spec's `drop` columns do not)."""
        return tuple(c for c in self.columns if not c.drop)

    @property
    def is_stream(self) -> bool:
        return self.ingestion == "stream"

    @property
    def is_iceberg(self) -> bool:
        return self.table_format == "iceberg"

    @property
    def rebuilt_from_all_raw(self) -> bool:
        """A batch dataset with an event time: raw dt (the upload day) is not the curated dt
        (the event day), so a curated day is only right when rebuilt from every upload."""
        return self.event_time is not None and not self.is_stream

    @property
    def has_scheduled_maintenance(self) -> bool:
        """An Iceberg table whose spec schedules OPTIMIZE or VACUUM."""
        return self.is_iceberg and bool(self.maintenance.optimize or self.maintenance.vacuum)


def _literal_fits(value: Any, type_: str) -> bool:
    if type_ in ("int", "bigint"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "double":
        return is_number(value)
    if type_ == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def _parse_column(raw: Any, rel: str, where: str, problems: SpecProblems) -> Column | None:
    if not isinstance(raw, dict):
        problems.add(rel, where, "each column must be a mapping like {name: id, type: string}")
        return None
    for key in raw:
        if key not in COLUMN_KEYS:
            problems.add(
                rel,
                f"{where}.{key}",
                f"unknown rule {key!r}; known rules: {', '.join(COLUMN_RULES)}",
            )
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.add(
            rel,
            f"{where}.name",
            f"invalid column name {name!r}; use lower case letters, digits and _ "
            "starting with a letter",
        )
        name = str(name)
    elif name in RESERVED_COLUMNS:
        problems.add(
            rel,
            f"{where}.name",
            f"column name {name!r} is reserved for the platform's partitions; rename it",
        )
    type_ = raw.get("type")
    if type_ not in COLUMN_TYPES:
        problems.add(
            rel, f"{where}.type", f"unknown type {type_!r}; use one of: {', '.join(COLUMN_TYPES)}"
        )
        type_ = "string"
    numeric = type_ in NUMERIC_TYPES

    for flag in ("required", "drop"):
        if flag in raw and not isinstance(raw[flag], bool):
            problems.add(rel, f"{where}.{flag}", f"must be true or false, not {raw[flag]!r}")

    allowed = raw.get("allowed")
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed:
            problems.add(rel, f"{where}.allowed", "must be a non-empty list of values")
            allowed = None
        else:
            bad = [v for v in allowed if not _literal_fits(v, type_)]
            if bad:
                problems.add(
                    rel,
                    f"{where}.allowed",
                    f"values {bad!r} are not of the column's type {type_}; fix them "
                    "or the column's type",
                )
            allowed = tuple(allowed)

    bounds = {}
    for bound in ("min", "max"):
        if bound in raw:
            value = raw[bound]
            if not numeric:
                problems.add(
                    rel,
                    f"{where}.{bound}",
                    f"`{bound}` applies to numeric columns (int, bigint, double), "
                    f"not {type_}; remove it or change the type",
                )
            elif not is_number(value):
                problems.add(rel, f"{where}.{bound}", f"must be a number, not {value!r}")
            else:
                bounds[bound] = value
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        problems.add(
            rel,
            f"{where}.min",
            f"min {bounds['min']} is greater than max {bounds['max']}; swap them",
        )

    impute = raw.get("impute")
    if impute is not None:
        if impute in ("median", "mean", "zero"):
            if not numeric:
                problems.add(
                    rel,
                    f"{where}.impute",
                    f"impute: {impute} needs a numeric column (int, bigint, double) but "
                    f"{name!r} is {type_}; use a literal value of type {type_} instead",
                )
        elif not _literal_fits(impute, type_):
            problems.add(
                rel,
                f"{where}.impute",
                f"impute must be median, mean, zero or a literal {type_}; got {impute!r}",
            )
        elif allowed is not None and impute not in allowed:
            problems.add(
                rel,
                f"{where}.impute",
                f"imputed value {impute!r} is not in `allowed` "
                f"{list(allowed)}; it would fail the column's own rule",
            )
        elif is_number(impute) and (
            ("min" in bounds and impute < bounds["min"])
            or ("max" in bounds and impute > bounds["max"])
        ):
            problems.add(
                rel,
                f"{where}.impute",
                f"imputed value {impute!r} is outside "
                f"[{bounds.get('min')}, {bounds.get('max')}]; it would fail the column's "
                "own rule",
            )
        if raw.get("required"):
            problems.add(
                rel,
                f"{where}.impute",
                "a required column is never imputed (a missing value quarantines the "
                "row); remove `impute` or `required: true`",
            )
    if raw.get("drop") and (raw.get("required") or impute is not None):
        problems.add(
            rel,
            f"{where}.drop",
            "a dropped column cannot also be required or imputed; remove the other rules",
        )

    renamed_from = raw.get("renamed_from")
    if renamed_from is not None and (
        not isinstance(renamed_from, str) or not NAME_PATTERN.match(renamed_from)
    ):
        problems.add(
            rel,
            f"{where}.renamed_from",
            f"must be the column's earlier name (lower case letters, digits and _), "
            f"not {renamed_from!r}",
        )
        renamed_from = None
    elif renamed_from == name:
        problems.add(rel, f"{where}.renamed_from", f"names the column itself ({name!r}); remove it")
        renamed_from = None

    return Column(
        name=name,
        type=type_,
        renamed_from=renamed_from,
        description=str(raw.get("description", "")),
        required=bool(raw.get("required", False)),
        allowed=allowed,
        min=bounds.get("min"),
        max=bounds.get("max"),
        impute=impute,
        drop=bool(raw.get("drop", False)),
    )


DATASET_KEYS = (
    "name",
    "description",
    "ingestion",
    "format",
    "event_time",
    "primary_key",
    "columns",
    "pii",
    "domain",
    "table_format",
    "maintenance",
)


def parse_dataset(data: dict, rel: str, problems: SpecProblems) -> Dataset | None:
    check_keys(data, DATASET_KEYS, rel, "", problems)
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.add(
            rel,
            "name",
            f"invalid dataset name {name!r}; use lower case letters, digits "
            "and _ starting with a letter (it becomes S3 prefixes and table names)",
        )
        name = str(name)
    ingestion = data.get("ingestion")
    if ingestion not in INGESTION_MODES:
        problems.add(rel, "ingestion", f"unknown ingestion {ingestion!r}; use stream or batch")
    fmt = data.get("format")
    if fmt not in RAW_FORMATS:
        problems.add(rel, "format", f"unknown format {fmt!r}; use json (JSON lines) or csv")
    if ingestion == "stream" and fmt == "csv":
        problems.add(rel, "format", "stream datasets arrive as JSON records; use format: json")

    raw_columns = data.get("columns")
    columns: list[Column] = []
    if not isinstance(raw_columns, list) or not raw_columns:
        problems.add(rel, "columns", "a dataset needs a non-empty list of columns")
        raw_columns = []
    seen: set[str] = set()
    for i, raw_col in enumerate(raw_columns):
        col = _parse_column(raw_col, rel, f"columns[{i}]", problems)
        if col is None:
            continue
        if col.name in seen:
            problems.add(rel, f"columns[{i}].name", f"duplicate column {col.name!r}; rename one")
        seen.add(col.name)
        columns.append(col)
    by_name = {c.name: c for c in columns}

    def check_ref(field_: str, col_name: Any, *, must_be: tuple[str, ...] | None = None) -> None:
        if not isinstance(col_name, str):
            problems.add(rel, field_, f"must be a column name (a string), not {col_name!r}")
            return
        if col_name not in by_name:
            problems.add(
                rel,
                field_,
                f"names column {col_name!r}, which does not exist; use one "
                f"of: {', '.join(by_name) or '(no columns)'}",
            )
            return
        col = by_name[col_name]
        if col.drop:
            problems.add(
                rel,
                field_,
                f"names column {col_name!r}, which is dropped; remove "
                "`drop: true` or pick another column",
            )
        if must_be and col.type not in must_be:
            problems.add(
                rel, field_, f"column {col_name!r} is {col.type}; it must be {' or '.join(must_be)}"
            )

    event_time = data.get("event_time")
    if event_time is not None:
        check_ref("event_time", event_time, must_be=("timestamp",))
    elif ingestion == "stream":
        problems.add(
            rel,
            "event_time",
            "stream datasets need an event_time column: Firehose partitions raw data by it",
        )

    primary_key = data.get("primary_key", [])
    if not isinstance(primary_key, list):
        problems.add(rel, "primary_key", "must be a list of column names, e.g. [event_id]")
        primary_key = []
    for i, key in enumerate(primary_key):
        check_ref(f"primary_key[{i}]", key)
    pii = data.get("pii", [])
    if not isinstance(pii, list):
        problems.add(rel, "pii", "must be a list of column names")
        pii = []
    for i, col_name in enumerate(pii):
        if not isinstance(col_name, str):
            problems.add(rel, f"pii[{i}]", f"must be a column name (a string), not {col_name!r}")
        elif col_name not in by_name:
            problems.add(
                rel,
                f"pii[{i}]",
                f"names column {col_name!r}, which does not exist; use "
                f"one of: {', '.join(by_name)}",
            )

    domain = data.get("domain", DEFAULT_DOMAIN)
    if not isinstance(domain, str) or not NAME_PATTERN.match(domain):
        problems.add(
            rel,
            "domain",
            f"invalid domain {domain!r}; use lower case letters, digits and _ starting with a "
            f"letter, e.g. telecom (it becomes a Lake Formation tag value; default {DEFAULT_DOMAIN})",
        )
        domain = DEFAULT_DOMAIN

    for i, col in enumerate(columns):
        if col.renamed_from is not None and col.renamed_from in by_name:
            problems.add(
                rel,
                f"columns[{i}].renamed_from",
                f"{col.renamed_from!r} is still a column of the dataset; a renamed column's "
                "old name cannot be kept too: remove one of them",
            )
    table_format = data.get("table_format", DEFAULT_TABLE_FORMAT)
    if table_format not in TABLE_FORMATS:
        problems.add(
            rel,
            "table_format",
            f"unknown table_format {table_format!r}; use hive (Parquet partitions the curate "
            "job overwrites) or iceberg (a table it MERGEs into by primary key)",
        )
        table_format = DEFAULT_TABLE_FORMAT
    if table_format == "iceberg" and not primary_key:
        problems.add(
            rel,
            "primary_key",
            "table_format: iceberg MERGEs each run into the table by primary key; declare "
            "primary_key (e.g. [event_id]) or use table_format: hive",
        )
    maintenance = _parse_maintenance(
        data.get("maintenance"), rel, problems, iceberg=table_format == "iceberg"
    )

    return Dataset(
        name=name,
        description=str(data.get("description", "")).strip(),
        table_format=str(table_format),
        maintenance=maintenance,
        domain=domain,
        ingestion=str(ingestion),
        format=str(fmt),
        columns=tuple(columns),
        primary_key=tuple(primary_key),
        event_time=event_time,
        pii=tuple(pii),
        source_file=rel,
    )


def _parse_maintenance(raw: Any, rel: str, problems: SpecProblems, *, iceberg: bool) -> Maintenance:
    if raw is None:
        return Maintenance()
    if not iceberg:
        problems.add(
            rel,
            "maintenance",
            "OPTIMIZE and VACUUM maintain Iceberg tables; set table_format: iceberg or remove "
            "`maintenance`",
        )
        return Maintenance()
    if not isinstance(raw, dict):
        problems.add(
            rel,
            "maintenance",
            "must be a mapping like {optimize: 'cron(0 3 * * ? *)', vacuum: 'rate(7 days)'}",
        )
        return Maintenance()
    check_keys(raw, MAINTENANCE_KEYS, rel, "maintenance.", problems)
    schedules: dict[str, str | None] = {}
    for key in ("optimize", "vacuum"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not _SCHEDULE.match(value)):
            problems.add(
                rel,
                f"maintenance.{key}",
                f"must be an EventBridge schedule expression like 'cron(0 3 * * ? *)' or "
                f"'rate(1 day)', not {value!r}",
            )
            value = None
        schedules[key] = value
    numbers: dict[str, int] = {}
    for key, default, least in (
        ("snapshot_retention_days", DEFAULT_SNAPSHOT_RETENTION_DAYS, 0),
        ("min_snapshots_to_keep", DEFAULT_MIN_SNAPSHOTS_TO_KEEP, 1),
    ):
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            problems.add(
                rel, f"maintenance.{key}", f"must be a whole number >= {least}, not {value!r}"
            )
            value = default
        numbers[key] = value
    return Maintenance(
        optimize=schedules["optimize"],
        vacuum=schedules["vacuum"],
        snapshot_retention_days=numbers["snapshot_retention_days"],
        min_snapshots_to_keep=numbers["min_snapshots_to_keep"],
    )
