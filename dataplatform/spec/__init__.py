"""The platform's declarative spec: `spec/platform.yaml`, `spec/datasets/*.yaml`,
`spec/features/*.sql` and `spec/models/*.yaml`, loaded into immutable, typed objects.

Everything is validated up front and every problem names the file, the field and
the fix, so a bad spec fails at `cdk synth` or `dp` start-up, never in a job.
All problems found are reported together (a user fixes them in one pass).

The objects also round-trip through plain dicts (`to_dict` / `from_dict`), which is
how the spec travels to places without PyYAML or the spec folder: the Firehose
transform Lambda and the Glue/EMR jobs get a compiled JSON copy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,11}$")
ENV_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,7}$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INSTANCE_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")

COLUMN_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp")
NUMERIC_TYPES = ("int", "bigint", "double")
COLUMN_RULES = ("required", "allowed", "min", "max", "impute", "drop")
COLUMN_KEYS = ("name", "type", "description") + COLUMN_RULES
IMPUTE_STRATEGIES = ("median", "mean", "zero")
# Partition columns the platform adds itself; a dataset column may not shadow them.
RESERVED_COLUMNS = ("dt", "hour")

INGESTION_MODES = ("stream", "batch")
RAW_FORMATS = ("json", "csv")

PROBLEMS = ("regression", "binary_classification")
ALGORITHMS = {
    "linear": ("regression",),
    "logistic": ("binary_classification",),
    "random_forest": ("regression", "binary_classification"),
    "xgboost": ("regression", "binary_classification"),
}
GATE_METRICS = {
    # metric -> (problem, higher_is_better)
    "auc": ("binary_classification", True),
    "accuracy": ("binary_classification", True),
    "f1": ("binary_classification", True),
    "precision": ("binary_classification", True),
    "recall": ("binary_classification", True),
    "r2": ("regression", True),
    "rmse": ("regression", False),
    "mae": ("regression", False),
}

# train.py's own arguments: set through the model's fields, never as hyperparameters.
RESERVED_HYPERPARAMETERS = (
    "problem",
    "algorithm",
    "target",
    "id_columns",
    "exclude_columns",
    "test_fraction",
    "seed",
    "stratify",
    "cv_folds",
)

KINESIS_CAPACITY_MODES = ("on_demand", "provisioned")
GLUE_WORKER_TYPES = ("G.025X", "G.1X", "G.2X", "G.4X", "G.8X")
ARCHIVE_STORAGE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Firehose dynamic partitioning refuses buffers below 64 MiB.
FIREHOSE_MIN_BUFFER_MIB = 64
FLOW_LOG_TRAFFIC = ("ALL", "ACCEPT", "REJECT")
# EMR 7.x ships Spark 3.5, the version the steps are written and tested against locally.
EMR_RELEASE_PATTERN = re.compile(r"^emr-7\.\d+\.\d+$")
EMR_APPLICATIONS = ("Spark", "Hadoop", "Hive", "Livy", "JupyterEnterpriseGateway")
EMR_REQUIRED_APPLICATIONS = ("Spark", "Hadoop")


class SpecError(ValueError):
    """One or more problems in the spec; `problems` lists each as file, field, message."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:  # one problem, one line
            super().__init__(f"problem in the spec: {lines[0]}")
            return
        super().__init__(
            f"{len(lines)} problem(s) in the spec:\n" + "\n".join(f"  - {line}" for line in lines)
        )


@dataclass(frozen=True)
class SpecProblem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


# ----------------------------------------------------------------------------- datasets


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

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


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


@dataclass(frozen=True)
class FeatureTable:
    name: str
    sql: str
    # Output column names of the final SELECT; None when they cannot be known (SELECT *).
    columns: tuple[str, ...] | None
    source_file: str = ""


@dataclass(frozen=True)
class Split:
    test_fraction: float = 0.2
    seed: int = 42
    stratify: bool = False


@dataclass(frozen=True)
class Model:
    name: str
    problem: str
    algorithm: str
    features_table: str
    target: str
    id_columns: tuple[str, ...] = ()
    # Output columns of the features table that are neither features nor target (e.g. as_of).
    exclude_columns: tuple[str, ...] = ()
    split: Split = Split()
    cv_folds: int = 0
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    quality_gate: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    source_file: str = ""


# ----------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class LifecycleSettings:
    raw_infrequent_access_days: int
    raw_archive_days: int
    raw_archive_storage_class: str
    noncurrent_version_expiration_days: int
    athena_results_expiration_days: int


@dataclass(frozen=True)
class ObjectLockSettings:
    enabled: bool
    retention_days: int


@dataclass(frozen=True)
class KinesisSettings:
    capacity_mode: str
    shard_count: int
    retention_hours: int


@dataclass(frozen=True)
class FirehoseSettings:
    buffer_mib: int
    buffer_seconds: int
    transform_reserved_concurrency: int  # per dataset's transform Lambda


@dataclass(frozen=True)
class GlueSettings:
    worker_type: str
    number_of_workers: int
    timeout_minutes: int
    crawler_schedule: str | None


@dataclass(frozen=True)
class AthenaSettings:
    bytes_scanned_cutoff: int


@dataclass(frozen=True)
class NetworkSettings:
    cidr: str
    max_azs: int
    nat_gateways: int
    flow_logs_traffic: str


@dataclass(frozen=True)
class EmrSettings:
    release_label: str
    applications: tuple[str, ...]
    master_instance_type: str
    core_instance_type: str
    core_instance_count: int
    core_ebs_gib: int
    task_instance_type: str
    task_instance_count: int
    # EMR managed scaling limits, in core + task instances (the master is never scaled).
    min_capacity: int
    max_capacity: int
    max_on_demand_capacity: int
    idle_timeout_minutes: int
    long_running: bool
    in_transit_encryption: bool


@dataclass(frozen=True)
class SageMakerSettings:
    instance_type: str
    volume_gib: int
    max_runtime_minutes: int
    use_spot_instances: bool
    max_wait_minutes: int  # spot: runtime plus time waiting for capacity
    sklearn_framework_version: str  # the SageMaker scikit-learn container, e.g. 1.2-1


@dataclass(frozen=True)
class PipelineSettings:
    schedule: str | None  # EventBridge cron for the ML pipeline; null = on demand


@dataclass(frozen=True)
class Environment:
    """One deployment environment's typed settings. Code branches on these, never on `name`."""

    name: str
    account: str | None
    region: str
    allow_destroy: bool
    log_retention_days: int
    lifecycle: LifecycleSettings
    object_lock: ObjectLockSettings
    kinesis: KinesisSettings
    firehose: FirehoseSettings
    glue: GlueSettings
    athena: AthenaSettings
    network: NetworkSettings
    emr: EmrSettings
    sagemaker: SageMakerSettings
    pipeline: PipelineSettings
    alarm_email: str | None

    def resolved_account(self) -> str | None:
        """The spec's account, else the CDK CLI's default account, else None (env-agnostic)."""
        return self.account or os.environ.get("CDK_DEFAULT_ACCOUNT") or None


@dataclass(frozen=True)
class Platform:
    project: str
    description: str
    environments: Mapping[str, Environment]
    datasets: tuple[Dataset, ...]
    features: tuple[FeatureTable, ...]
    models: tuple[Model, ...]
    root: str = ""

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise SpecError(
                [
                    SpecProblem(
                        "spec/platform.yaml",
                        "environments",
                        f"unknown environment {name!r}; known: {known}. Pick one (cdk: -c env=NAME, dp: --env NAME) "
                        "or add it under `environments:`",
                    )
                ]
            )
        return self.environments[name]

    def dataset(self, name: str) -> Dataset:
        for d in self.datasets:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.datasets) or "none"
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}")

    @property
    def stream_datasets(self) -> tuple[Dataset, ...]:
        return tuple(d for d in self.datasets if d.is_stream)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, default=list)


# ----------------------------------------------------------------------------- loading


class _Problems:
    """Collects problems so a user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[SpecProblem] = []

    def add(self, file: str, field_: str, message: str) -> None:
        self.items.append(SpecProblem(file, field_, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def _read_yaml(path: Path, rel: str, problems: _Problems) -> dict | None:
    import yaml  # only the spec loader needs PyYAML; jobs and Lambdas read compiled JSON

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        problems.add(rel, where, f"not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax")
        return None
    if not isinstance(data, dict):
        problems.add(rel, "(file)", "must be a YAML mapping (key: value lines) at the top level")
        return None
    return data


def _check_keys(
    data: Mapping,
    allowed: tuple[str, ...],
    rel: str,
    where: str,
    problems: _Problems,
    what: str = "field",
) -> None:
    for key in data:
        if key not in allowed:
            problems.add(
                rel,
                f"{where}{key}" if where else str(key),
                f"unknown {what} {key!r}; allowed: {', '.join(allowed)}",
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _literal_fits(value: Any, type_: str) -> bool:
    if type_ in ("int", "bigint"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "double":
        return _is_number(value)
    if type_ == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def _parse_column(raw: Any, rel: str, where: str, problems: _Problems) -> Column | None:
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
            elif not _is_number(value):
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
        elif _is_number(impute) and (
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

    return Column(
        name=name,
        type=type_,
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
)


def _parse_dataset(data: dict, rel: str, problems: _Problems) -> Dataset | None:
    _check_keys(data, DATASET_KEYS, rel, "", problems)
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

    return Dataset(
        name=name,
        description=str(data.get("description", "")).strip(),
        ingestion=str(ingestion),
        format=str(fmt),
        columns=tuple(columns),
        primary_key=tuple(primary_key),
        event_time=event_time,
        pii=tuple(pii),
        source_file=rel,
    )


def feature_sql_columns(sql: str) -> tuple[str, ...] | None:
    """Output column names of the last statement's SELECT, or None if it has a `*`."""
    import sqlglot
    from sqlglot import exp

    statements = [
        s
        for s in sqlglot.parse(sql, read="spark")
        if s is not None and not isinstance(s, exp.Semicolon)
    ]
    if not statements:
        raise ValueError("no SQL statement found")
    select = statements[-1]
    if not isinstance(select, exp.Query):
        raise ValueError("the last statement must be a SELECT query")
    names = []
    for projection in select.selects:
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            return None
        if not isinstance(projection, (exp.Alias, exp.Column)):
            # Spark would name it after the expression's text: make the name explicit.
            raise ValueError(
                f"output column `{projection.sql(dialect='spark')}` has no name; add `AS some_name`"
            )
        names.append(projection.alias_or_name)
    return tuple(names)


MODEL_KEYS = (
    "name",
    "description",
    "problem",
    "algorithm",
    "features_table",
    "target",
    "exclude_columns",
    "id_columns",
    "split",
    "cross_validation",
    "hyperparameters",
    "quality_gate",
)


def _parse_model(
    data: dict, rel: str, features: Mapping[str, FeatureTable], problems: _Problems
) -> Model | None:
    _check_keys(data, MODEL_KEYS, rel, "", problems)
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.add(
            rel,
            "name",
            f"invalid model name {name!r}; use lower case letters, digits "
            "and _ starting with a letter",
        )
    problem = data.get("problem")
    if problem not in PROBLEMS:
        problems.add(rel, "problem", f"unknown problem {problem!r}; use {' or '.join(PROBLEMS)}")
    algorithm = data.get("algorithm")
    if algorithm not in ALGORITHMS:
        problems.add(
            rel,
            "algorithm",
            f"unknown algorithm {algorithm!r}; use one of: {', '.join(ALGORITHMS)}",
        )
    elif problem in PROBLEMS and problem not in ALGORITHMS[algorithm]:
        problems.add(
            rel,
            "algorithm",
            f"{algorithm} does not solve {problem}; use one of: "
            f"{', '.join(a for a, p in ALGORITHMS.items() if problem in p)}",
        )

    table_name = data.get("features_table")
    target = data.get("target")
    id_columns = data.get("id_columns", [])
    if not isinstance(id_columns, list):
        problems.add(rel, "id_columns", "must be a list of column names")
        id_columns = []
    exclude_columns = data.get("exclude_columns", [])
    if not isinstance(exclude_columns, list):
        problems.add(rel, "exclude_columns", "must be a list of column names")
        exclude_columns = []
    table = features.get(table_name) if isinstance(table_name, str) else None
    if table is None:
        problems.add(
            rel,
            "features_table",
            f"unknown features table {table_name!r}; known (spec/features/*.sql): "
            f"{', '.join(sorted(features)) or 'none'}. Add spec/features/{table_name}.sql "
            "or fix the name",
        )
    elif table.columns is not None:
        for field_, col in (
            [("target", target)]
            + [(f"id_columns[{i}]", c) for i, c in enumerate(id_columns)]
            + [(f"exclude_columns[{i}]", c) for i, c in enumerate(exclude_columns)]
        ):
            if col not in table.columns:
                problems.add(
                    rel,
                    field_,
                    f"column {col!r} is not an output of features table "
                    f"{table_name!r} ({table.source_file}); its columns: "
                    f"{', '.join(table.columns)}",
                )
    if not isinstance(target, str):
        problems.add(rel, "target", "name the column to predict, e.g. target: churned")
    elif target in id_columns:
        problems.add(
            rel,
            "target",
            f"{target!r} is also an id column; a model cannot predict its own identifier",
        )

    split_raw = data.get("split", {}) or {}
    split = Split()
    if not isinstance(split_raw, dict):
        problems.add(rel, "split", "must be a mapping like {test_fraction: 0.2, seed: 42}")
    else:
        _check_keys(split_raw, ("test_fraction", "seed", "stratify"), rel, "split.", problems)
        fraction = split_raw.get("test_fraction", 0.2)
        if not _is_number(fraction) or not 0 < fraction < 1:
            problems.add(rel, "split.test_fraction", f"must be between 0 and 1, not {fraction!r}")
            fraction = 0.2
        seed = split_raw.get("seed", 42)
        if not isinstance(seed, int) or isinstance(seed, bool):
            problems.add(rel, "split.seed", f"must be an integer, not {seed!r}")
            seed = 42
        stratify = bool(split_raw.get("stratify", False))
        if stratify and problem == "regression":
            problems.add(
                rel,
                "split.stratify",
                "stratify needs class labels; set it to false for a regression model",
            )
        split = Split(test_fraction=float(fraction), seed=seed, stratify=stratify)

    cv = data.get("cross_validation", {}) or {}
    folds = cv.get("folds", 0) if isinstance(cv, dict) else None
    if not isinstance(folds, int) or isinstance(folds, bool) or folds == 1 or folds < 0:
        problems.add(
            rel,
            "cross_validation.folds",
            f"must be 0 (no cross-validation) or an integer >= 2, not {folds!r}",
        )
        folds = 0
    hyperparameters = data.get("hyperparameters", {}) or {}
    if not isinstance(hyperparameters, dict):
        problems.add(rel, "hyperparameters", "must be a mapping of name: value")
        hyperparameters = {}
    for hp_name in hyperparameters:
        if hp_name in RESERVED_HYPERPARAMETERS or str(hp_name).startswith("sagemaker_"):
            problems.add(
                rel,
                f"hyperparameters.{hp_name}",
                f"{hp_name!r} is reserved by the training "
                "script; set it with the model's own field (target, split, "
                "cross_validation, ...) instead",
            )
    gate = data.get("quality_gate", {}) or {}
    if not isinstance(gate, dict):
        problems.add(rel, "quality_gate", "must be a mapping like {auc: 0.75}")
        gate = {}
    for metric, threshold in gate.items():
        if metric not in GATE_METRICS:
            problems.add(
                rel,
                f"quality_gate.{metric}",
                f"unknown metric {metric!r}; use one of: {', '.join(GATE_METRICS)}",
            )
        elif problem in PROBLEMS and GATE_METRICS[metric][0] != problem:
            problems.add(
                rel,
                f"quality_gate.{metric}",
                f"{metric} does not measure {problem}; "
                f"use one of: {', '.join(m for m, (p, _) in GATE_METRICS.items() if p == problem)}",
            )
        if not _is_number(threshold):
            problems.add(rel, f"quality_gate.{metric}", f"must be a number, not {threshold!r}")

    return Model(
        name=str(name),
        problem=str(problem),
        algorithm=str(algorithm),
        features_table=str(table_name),
        target=str(target),
        id_columns=tuple(id_columns),
        exclude_columns=tuple(exclude_columns),
        split=split,
        cv_folds=folds,
        hyperparameters=dict(hyperparameters),
        quality_gate=dict(gate),
        description=str(data.get("description", "")).strip(),
        source_file=rel,
    )


# --- environments: `defaults` deep-merged with each environment's overrides

ENV_SECTIONS = {
    "lifecycle": (
        LifecycleSettings,
        {
            "raw_infrequent_access_days": int,
            "raw_archive_days": int,
            "raw_archive_storage_class": str,
            "noncurrent_version_expiration_days": int,
            "athena_results_expiration_days": int,
        },
    ),
    "object_lock": (ObjectLockSettings, {"enabled": bool, "retention_days": int}),
    "kinesis": (
        KinesisSettings,
        {"capacity_mode": str, "shard_count": int, "retention_hours": int},
    ),
    "firehose": (
        FirehoseSettings,
        {"buffer_mib": int, "buffer_seconds": int, "transform_reserved_concurrency": int},
    ),
    "glue": (
        GlueSettings,
        {
            "worker_type": str,
            "number_of_workers": int,
            "timeout_minutes": int,
            "crawler_schedule": (str, type(None)),
        },
    ),
    "athena": (AthenaSettings, {"bytes_scanned_cutoff": int}),
    "network": (
        NetworkSettings,
        {"cidr": str, "max_azs": int, "nat_gateways": int, "flow_logs_traffic": str},
    ),
    "emr": (
        EmrSettings,
        {
            "release_label": str,
            "applications": list,
            "master_instance_type": str,
            "core_instance_type": str,
            "core_instance_count": int,
            "core_ebs_gib": int,
            "task_instance_type": str,
            "task_instance_count": int,
            "min_capacity": int,
            "max_capacity": int,
            "max_on_demand_capacity": int,
            "idle_timeout_minutes": int,
            "long_running": bool,
            "in_transit_encryption": bool,
        },
    ),
    "sagemaker": (
        SageMakerSettings,
        {
            "instance_type": str,
            "volume_gib": int,
            "max_runtime_minutes": int,
            "use_spot_instances": bool,
            "max_wait_minutes": int,
            "sklearn_framework_version": str,
        },
    ),
    "pipeline": (PipelineSettings, {"schedule": (str, type(None))}),
}
ENV_SCALARS = {
    "account": (str, type(None)),
    "region": str,
    "allow_destroy": bool,
    "log_retention_days": int,
    "alarm_email": (str, type(None)),
}


def _merge(defaults: Mapping, overrides: Mapping) -> dict:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _typed(value: Any, expected: Any) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join("null" if t is type(None) else t.__name__ for t in expected)
    return {"str": "a string", "int": "an integer", "bool": "true or false", "list": "a list"}[
        expected.__name__
    ]


def _parse_environment(name: str, raw: dict, rel: str, problems: _Problems) -> Environment | None:
    where = f"environments.{name}"
    if not ENV_NAME_PATTERN.match(name):
        problems.add(
            rel,
            where,
            f"invalid environment name {name!r}; use up to 8 lower case "
            "letters and digits (it becomes part of every resource name)",
        )
    allowed = tuple(ENV_SCALARS) + tuple(ENV_SECTIONS)
    _check_keys(raw, allowed, rel, f"{where}.", problems, what="setting")
    values: dict[str, Any] = {}
    ok = True
    for key, expected in ENV_SCALARS.items():
        if key not in raw:
            if key in ("account", "alarm_email"):
                values[key] = None
                continue
            problems.add(rel, f"{where}.{key}", "missing; set it here or under `defaults:`")
            ok = False
            continue
        if not _typed(raw[key], expected):
            hint = ' (quote account ids in YAML: "012345678901")' if key == "account" else ""
            problems.add(
                rel, f"{where}.{key}", f"must be {_type_name(expected)}, not {raw[key]!r}{hint}"
            )
            ok = False
        values[key] = raw[key]
    for section, (cls, fields) in ENV_SECTIONS.items():
        sub = raw.get(section)
        if not isinstance(sub, dict):
            problems.add(
                rel,
                f"{where}.{section}",
                "missing or not a mapping; set it under `defaults:` or the environment",
            )
            ok = False
            continue
        _check_keys(sub, tuple(fields), rel, f"{where}.{section}.", problems, what="setting")
        kwargs = {}
        for key, expected in fields.items():
            if key not in sub:
                problems.add(
                    rel, f"{where}.{section}.{key}", "missing; set it here or under `defaults:`"
                )
                ok = False
            elif not _typed(sub[key], expected):
                problems.add(
                    rel,
                    f"{where}.{section}.{key}",
                    f"must be {_type_name(expected)}, not {sub[key]!r}",
                )
                ok = False
            else:
                # Lists become tuples: the settings are frozen and hashable.
                kwargs[key] = tuple(sub[key]) if isinstance(sub[key], list) else sub[key]
        if ok:
            values[section] = cls(**kwargs)
    if not ok:
        return None

    env = Environment(name=name, **values)
    account, region = env.account, env.region
    if account is not None and not ACCOUNT_PATTERN.match(account):
        problems.add(
            rel,
            f"{where}.account",
            f"{account!r} is not a 12-digit AWS account id "
            "(quote it in YAML); or remove it to use CDK_DEFAULT_ACCOUNT",
        )
    if not REGION_PATTERN.match(region):
        problems.add(rel, f"{where}.region", f"{region!r} is not an AWS region like eu-west-1")
    if env.log_retention_days not in LOG_RETENTION_DAYS:
        problems.add(
            rel,
            f"{where}.log_retention_days",
            f"{env.log_retention_days} is not a "
            f"CloudWatch Logs retention; use one of {LOG_RETENTION_DAYS}",
        )
    lc = env.lifecycle
    if lc.raw_archive_storage_class not in ARCHIVE_STORAGE_CLASSES:
        problems.add(
            rel,
            f"{where}.lifecycle.raw_archive_storage_class",
            f"use one of {', '.join(ARCHIVE_STORAGE_CLASSES)}",
        )
    if lc.raw_infrequent_access_days < 30:
        problems.add(
            rel,
            f"{where}.lifecycle.raw_infrequent_access_days",
            "S3 moves objects to STANDARD_IA after 30 days at the earliest; use >= 30",
        )
    if lc.raw_archive_days <= lc.raw_infrequent_access_days:
        problems.add(
            rel,
            f"{where}.lifecycle.raw_archive_days",
            "must be later than raw_infrequent_access_days",
        )
    for key in ("noncurrent_version_expiration_days", "athena_results_expiration_days"):
        if getattr(lc, key) < 1:
            problems.add(rel, f"{where}.lifecycle.{key}", "must be at least 1 day")
    if env.object_lock.enabled and env.object_lock.retention_days < 1:
        problems.add(rel, f"{where}.object_lock.retention_days", "must be at least 1 day")
    ks = env.kinesis
    if ks.capacity_mode not in KINESIS_CAPACITY_MODES:
        problems.add(
            rel, f"{where}.kinesis.capacity_mode", f"use one of {', '.join(KINESIS_CAPACITY_MODES)}"
        )
    if ks.shard_count < 1:
        problems.add(rel, f"{where}.kinesis.shard_count", "must be at least 1")
    if not 24 <= ks.retention_hours <= 8760:
        problems.add(rel, f"{where}.kinesis.retention_hours", "Kinesis keeps data 24 to 8760 hours")
    fh = env.firehose
    if not FIREHOSE_MIN_BUFFER_MIB <= fh.buffer_mib <= 128:
        problems.add(
            rel,
            f"{where}.firehose.buffer_mib",
            f"Firehose dynamic partitioning needs a buffer of {FIREHOSE_MIN_BUFFER_MIB} to 128 MiB",
        )
    if not 60 <= fh.buffer_seconds <= 900:
        problems.add(rel, f"{where}.firehose.buffer_seconds", "Firehose buffers 60 to 900 seconds")
    if not 1 <= fh.transform_reserved_concurrency <= 1000:
        problems.add(
            rel,
            f"{where}.firehose.transform_reserved_concurrency",
            "reserve 1 to 1000 "
            "concurrent executions (the account keeps at least 10 unreserved: on a new "
            "account with a quota of 10, raise the quota first)",
        )
    gl = env.glue
    if gl.worker_type not in GLUE_WORKER_TYPES:
        problems.add(rel, f"{where}.glue.worker_type", f"use one of {', '.join(GLUE_WORKER_TYPES)}")
    if gl.number_of_workers < 2:
        problems.add(rel, f"{where}.glue.number_of_workers", "Glue Spark jobs need at least 2")
    if not 1 <= gl.timeout_minutes <= 2880:
        problems.add(rel, f"{where}.glue.timeout_minutes", "must be 1 to 2880 minutes")
    if gl.crawler_schedule is not None and not re.match(r"^cron\(.+\)$", gl.crawler_schedule):
        problems.add(
            rel,
            f"{where}.glue.crawler_schedule",
            "use a Glue cron expression like cron(15 * * * ? *), or null for on demand",
        )
    if env.athena.bytes_scanned_cutoff < 10 * 1024 * 1024:
        problems.add(
            rel,
            f"{where}.athena.bytes_scanned_cutoff",
            "Athena's smallest cutoff is 10 MB (10485760 bytes)",
        )
    _check_network(env.network, f"{where}.network", rel, problems)
    _check_emr(env.emr, f"{where}.emr", rel, problems)
    _check_sagemaker(env.sagemaker, f"{where}.sagemaker", rel, problems)
    if env.pipeline.schedule is not None and not re.match(r"^cron\(.+\)$", env.pipeline.schedule):
        problems.add(
            rel,
            f"{where}.pipeline.schedule",
            "use an EventBridge cron expression like "
            "cron(0 3 * * ? *), or null to run the pipeline on demand",
        )
    if env.alarm_email is not None and not EMAIL_PATTERN.match(env.alarm_email):
        problems.add(rel, f"{where}.alarm_email", f"{env.alarm_email!r} is not an e-mail address")
    return env


def _check_network(net: NetworkSettings, where: str, rel: str, problems: _Problems) -> None:
    try:
        cidr = ipaddress.ip_network(net.cidr)
    except ValueError:
        problems.add(rel, f"{where}.cidr", f"{net.cidr!r} is not a CIDR block like 10.40.0.0/16")
    else:
        if cidr.version != 4 or not 16 <= cidr.prefixlen <= 20 or not cidr.is_private:
            problems.add(
                rel,
                f"{where}.cidr",
                f"{net.cidr!r}: use a private IPv4 block from /16 "
                "to /20 (each AZ gets a public /24 and a private /22 subnet)",
            )
    if not 2 <= net.max_azs <= 3:
        problems.add(rel, f"{where}.max_azs", "use 2 or 3 availability zones")
    if not 1 <= net.nat_gateways <= net.max_azs:
        problems.add(
            rel,
            f"{where}.nat_gateways",
            f"use 1 (cheaper, one AZ's egress) to "
            f"max_azs={net.max_azs} (one per AZ, resilient); EMR in private subnets "
            "needs at least one",
        )
    if net.flow_logs_traffic not in FLOW_LOG_TRAFFIC:
        problems.add(rel, f"{where}.flow_logs_traffic", f"use one of {', '.join(FLOW_LOG_TRAFFIC)}")


def _check_emr(emr: EmrSettings, where: str, rel: str, problems: _Problems) -> None:
    if not EMR_RELEASE_PATTERN.match(emr.release_label):
        problems.add(
            rel,
            f"{where}.release_label",
            f"{emr.release_label!r}: use an EMR 7.x "
            "release like emr-7.5.0 (Spark 3.5, the version the steps are tested with)",
        )
    unknown = [a for a in emr.applications if a not in EMR_APPLICATIONS]
    if unknown:
        problems.add(
            rel,
            f"{where}.applications",
            f"unknown {', '.join(map(str, unknown))}; use some of {', '.join(EMR_APPLICATIONS)}",
        )
    missing = [a for a in EMR_REQUIRED_APPLICATIONS if a not in emr.applications]
    if missing:
        problems.add(
            rel,
            f"{where}.applications",
            f"add {', '.join(missing)}: the steps are spark-submit jobs",
        )
    for key in ("master_instance_type", "core_instance_type", "task_instance_type"):
        if not INSTANCE_TYPE_PATTERN.match(getattr(emr, key)):
            problems.add(
                rel,
                f"{where}.{key}",
                f"{getattr(emr, key)!r} is not an EC2 instance type like m5.xlarge",
            )
    if emr.core_instance_count < 1:
        problems.add(rel, f"{where}.core_instance_count", "HDFS and YARN need at least 1 core node")
    if emr.task_instance_count < 0:
        problems.add(rel, f"{where}.task_instance_count", "must be 0 or more")
    if not 16 <= emr.core_ebs_gib <= 16384:
        problems.add(rel, f"{where}.core_ebs_gib", "gp3 volumes are 16 to 16384 GiB here")
    # Managed scaling limits count core and task nodes; the master is never scaled.
    initial = emr.core_instance_count + emr.task_instance_count
    if emr.min_capacity < emr.core_instance_count:
        problems.add(
            rel,
            f"{where}.min_capacity",
            f"must cover the core nodes (>= core_instance_count={emr.core_instance_count})",
        )
    if emr.max_capacity < max(initial, emr.min_capacity):
        problems.add(
            rel,
            f"{where}.max_capacity",
            f"must be at least the initial "
            f"{initial} nodes ({emr.core_instance_count} core + "
            f"{emr.task_instance_count} task) and min_capacity",
        )
    if not emr.min_capacity <= emr.max_on_demand_capacity <= emr.max_capacity:
        problems.add(
            rel,
            f"{where}.max_on_demand_capacity",
            "must be between min_capacity and "
            "max_capacity (the rest is scaled with spot task nodes)",
        )
    if not 1 <= emr.idle_timeout_minutes <= 7 * 24 * 60:
        problems.add(
            rel,
            f"{where}.idle_timeout_minutes",
            "EMR auto-termination accepts 1 minute to 7 days (10080)",
        )


def _check_sagemaker(sm: SageMakerSettings, where: str, rel: str, problems: _Problems) -> None:
    if not re.match(r"^ml\.[a-z0-9]+\.[a-z0-9]+$", sm.instance_type):
        problems.add(
            rel,
            f"{where}.instance_type",
            f"{sm.instance_type!r} is not a SageMaker instance type like ml.m5.large",
        )
    if not 1 <= sm.volume_gib <= 16384:
        problems.add(rel, f"{where}.volume_gib", "must be 1 to 16384 GiB")
    if not 1 <= sm.max_runtime_minutes <= 28 * 24 * 60:
        problems.add(rel, f"{where}.max_runtime_minutes", "SageMaker allows 1 minute to 28 days")
    if sm.use_spot_instances and sm.max_wait_minutes < sm.max_runtime_minutes:
        problems.add(
            rel,
            f"{where}.max_wait_minutes",
            "managed spot training needs max_wait_minutes "
            f">= max_runtime_minutes ({sm.max_runtime_minutes})",
        )
    if not re.match(r"^\d+\.\d+-\d+$", sm.sklearn_framework_version):
        problems.add(
            rel,
            f"{where}.sklearn_framework_version",
            "use a SageMaker scikit-learn container version like 1.2-1",
        )


PLATFORM_KEYS = ("project", "description", "defaults", "environments")


def _parse_platform(data: dict, rel: str, problems: _Problems) -> tuple[str, str, dict]:
    _check_keys(data, PLATFORM_KEYS, rel, "", problems)
    project = data.get("project")
    if not isinstance(project, str) or not PROJECT_PATTERN.match(project):
        problems.add(
            rel,
            "project",
            f"invalid project name {project!r}; use 2-12 lower case "
            "letters, digits or '-' starting with a letter (it prefixes bucket names)",
        )
        project = str(project)
    defaults = data.get("defaults", {}) or {}
    if not isinstance(defaults, dict):
        problems.add(rel, "defaults", "must be a mapping of settings")
        defaults = {}
    envs_raw = data.get("environments")
    environments: dict[str, Environment] = {}
    if not isinstance(envs_raw, dict) or not envs_raw:
        problems.add(rel, "environments", "declare at least one environment, e.g. dev and prod")
        envs_raw = {}
    for env_name, overrides in envs_raw.items():
        if not isinstance(overrides, dict):
            overrides = {}
        env = _parse_environment(str(env_name), _merge(defaults, overrides), rel, problems)
        if env is not None:
            environments[str(env_name)] = env
    for env in environments.values():
        # The longest name the platform derives: the athena-results bucket (S3 allows 63).
        longest = f"{project}-{env.name}-athena-results-123456789012-{env.region}"
        if len(longest) > 63:
            problems.add(
                rel,
                f"environments.{env.name}",
                f"bucket names such as {longest!r} "
                f"would be {len(longest)} characters (S3 allows 63); shorten the "
                "project or environment name",
            )
    return project, str(data.get("description", "")).strip(), environments


def load_spec(root: str | Path = "spec") -> Platform:
    """Load and validate the whole spec folder; raise SpecError listing every problem."""
    root = Path(root)
    problems = _Problems()

    def rel(path: Path) -> str:
        try:
            return str(Path("spec") / path.relative_to(root))
        except ValueError:
            return str(path)

    platform_file = root / "platform.yaml"
    if not platform_file.is_file():
        raise SpecError(
            [
                SpecProblem(
                    rel(platform_file),
                    "(file)",
                    f"missing; the spec folder {root} needs a platform.yaml",
                )
            ]
        )
    data = _read_yaml(platform_file, rel(platform_file), problems) or {}
    project, description, environments = _parse_platform(data, rel(platform_file), problems)

    datasets: list[Dataset] = []
    first_file: dict[str, str] = {}
    for path in sorted((root / "datasets").glob("*.y*ml")):
        data = _read_yaml(path, rel(path), problems)
        if data is None:
            continue
        ds = _parse_dataset(data, rel(path), problems)
        if ds is None:
            continue
        if ds.name in first_file:
            problems.add(
                rel(path),
                "name",
                f"duplicate dataset name {ds.name!r}, already "
                f"declared in {first_file[ds.name]}; rename one",
            )
            continue
        first_file[ds.name] = rel(path)
        datasets.append(ds)

    features: dict[str, FeatureTable] = {}
    for path in sorted((root / "features").glob("*.sql")):
        name = path.stem
        if not NAME_PATTERN.match(name):
            problems.add(
                rel(path),
                "(file name)",
                f"invalid feature table name {name!r}; rename "
                "the file to lower case letters, digits and _",
            )
            continue
        if name in first_file:
            problems.add(
                rel(path),
                "(file name)",
                f"feature table {name!r} has the same name as "
                f"dataset {first_file[name]}; rename the file",
            )
        sql = path.read_text(encoding="utf-8")
        try:
            columns = feature_sql_columns(sql)
        except Exception as exc:  # sqlglot's ParseError and our own ValueError
            problems.add(rel(path), "(sql)", f"cannot parse the SQL: {exc}")
            continue
        features[name] = FeatureTable(name=name, sql=sql, columns=columns, source_file=rel(path))

    models: list[Model] = []
    model_files: dict[str, str] = {}
    for path in sorted((root / "models").glob("*.y*ml")):
        data = _read_yaml(path, rel(path), problems)
        if data is None:
            continue
        model = _parse_model(data, rel(path), features, problems)
        if model is None:
            continue
        if model.name in model_files:
            problems.add(
                rel(path),
                "name",
                f"duplicate model name {model.name!r}, already "
                f"declared in {model_files[model.name]}; rename one",
            )
            continue
        model_files[model.name] = rel(path)
        models.append(model)

    problems.raise_if_any()
    return Platform(
        project=project,
        description=description,
        environments=environments,
        datasets=tuple(datasets),
        features=tuple(features.values()),
        models=tuple(models),
        root=str(root),
    )


# ----------------------------------------------------------------------------- compiled JSON


def dataset_from_dict(data: Mapping[str, Any]) -> Dataset:
    """Rebuild a Dataset from `dataclasses.asdict` output (the compiled spec JSON)."""
    columns = tuple(
        Column(**{**c, "allowed": tuple(c["allowed"]) if c.get("allowed") is not None else None})
        for c in data["columns"]
    )
    return Dataset(
        **{
            **data,
            "columns": columns,
            "primary_key": tuple(data["primary_key"]),
            "pii": tuple(data["pii"]),
        }
    )


def load_compiled_dataset(path: str | Path, name: str) -> Dataset:
    """Read one dataset from a compiled spec JSON file (written by `Platform.to_json`)."""
    return compiled_dataset(Path(path).read_text(encoding="utf-8"), name, source=str(path))


def compiled_dataset(text: str, name: str, *, source: str = "the compiled spec") -> Dataset:
    """One dataset from compiled spec JSON text."""
    compiled = json.loads(text)
    for data in compiled["datasets"]:
        if data["name"] == name:
            return dataset_from_dict(data)
    known = ", ".join(d["name"] for d in compiled["datasets"])
    raise KeyError(f"unknown dataset {name!r} in {source}; known datasets: {known}")


def bundled_dataset(name: str) -> Dataset | None:
    """The dataset from the spec.json inside the deployed `dataplatform` library, or None in a
    source checkout. pkgutil reads it from a directory or from the zip Glue and EMR import."""
    import pkgutil

    try:
        data = pkgutil.get_data("dataplatform", "spec.json")
    except (FileNotFoundError, OSError):
        return None
    return compiled_dataset(data.decode("utf-8"), name) if data is not None else None
