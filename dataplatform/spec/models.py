"""spec/features/*.sql and spec/models/*.yaml: feature tables and ML models, with the
algorithms, quality-gate metrics and reserved hyperparameters that training/ agrees with
(tests/training/test_contract_parity.py)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dataplatform.spec.core import NAME_PATTERN, SpecProblems, check_keys, is_number

# The training contract's single source. The quality-gate Lambda imports GATE_METRICS (its
# bundle carries this package); training/ runs in SageMaker's container without it and keeps
# copies that tests/training/test_contract_parity.py holds equal to these.
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


SERVING_MODES = ("serverless", "instance")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)  # what SageMaker accepts
# What a served model's score at or above its threshold asks the CRM to do, and the
# EventBridge detail-type the scorer puts for it unless the model names its own (`event`).
SERVING_ACTIONS = {
    "offer": "HighChurnRisk",  # a retention offer to a customer about to leave
    "escalate_to_support": "HighChurnRisk",
    "loyalty_offer": "HighValueCustomer",  # a loyalty offer to a customer worth keeping
}
# A detail-type as the platform's rules and the scorers' IAM condition name it.
EVENT_NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9]{2,63}$")
# What a served model's score is, by its problem: the field of the endpoint's answer
# (training/inference.py) that the scorer reads, keeps, compares with the threshold and
# sends to the scores dataset and in the event.
SCORE_FIELDS = {"binary_classification": "probability", "regression": "prediction"}
# A score as the scorer sends it to the model's scores dataset (online/scorer.lake_record),
# besides its SCORE_FIELDS field: the scores dataset declares every one of them.
SCORE_RECORD_FIELDS = (
    "score_id",
    "customer_id",
    "model",
    "model_version",
    "as_of",
    "scored_at",
    "threshold",
    "flagged",
    "action",
    "features",
)
SERVING_KEYS = (
    "mode",
    "memory_mb",
    "max_concurrency",
    "instance_type",
    "instances",
    "stream",
    "threshold",
    "action",
    "event",
    "scores_dataset",
)


@dataclass(frozen=True)
class Serving:
    """How a model is served in real time: a SageMaker endpoint for its latest approved
    package, scoring every change of a customer's online features computed from `stream`;
    a score (a classifier's probability, a regression's predicted value) at or above
    `threshold` triggers `action`: an `event` on the platform's bus for the CRM."""

    stream: str  # the stream dataset whose events it scores
    threshold: float
    action: str = "offer"
    event: str = SERVING_ACTIONS["offer"]  # the detail-type (default: the action's)
    scores_dataset: str | None = None  # a stream dataset the scores also go to (the lake)
    mode: str = "serverless"
    memory_mb: int = 2048  # serverless
    max_concurrency: int = 5  # serverless
    instance_type: str = "ml.m5.large"  # instance
    instances: int = 1  # instance


MONITORING_KEYS = ("outcomes", "drift", "performance", "retrain_on_breach")
OUTCOMES_KEYS = ("dataset", "column", "treated_column", "retained_column")
DRIFT_KEYS = ("psi", "p_value", "min_rows")
PERFORMANCE_KEYS = ("auc", "min_outcomes")


@dataclass(frozen=True)
class Monitoring:
    """What watching a served model means (`dp monitor`, the alarms, retraining): the
    dataset of what happened (`outcomes`: one row per customer and outcome, joined to the
    scores by the model's id columns), the drift thresholds (PSI per feature, a test's
    p-value, the rows below which nothing is judged), the realized-performance floor (AUC
    once `min_outcomes` outcomes are known), and whether a breach starts the ML pipeline
    (whose new package waits for approval, as always)."""

    outcomes_dataset: str | None = None
    outcome_column: str = ""  # 1/true: the predicted event happened (the model's target)
    treated_column: str | None = None  # true: the action reached the customer (an offer)
    retained_column: str | None = None  # true: the customer stayed (intervention effect)
    psi: float = 0.25  # "significant" in the usual bands (0.1 moderate)
    p_value: float = 0.01
    min_rows: int = 100
    auc: float | None = None  # default: the model's quality_gate auc
    min_outcomes: int = 50
    retrain_on_breach: bool = True


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
    serving: Serving | None = None  # only models that declare it are served
    monitoring: Monitoring | None = None  # only served models are monitored
    # The model's inputs: the features table's output columns that are neither the target,
    # an id nor excluded, in the table's order (what training fits on, and what a scorer
    # sends its endpoint); empty when the table's columns cannot be known (SELECT *).
    feature_columns: tuple[str, ...] = ()

    @property
    def score_field(self) -> str:
        """What a served score of this model is: `probability` or `prediction`."""
        return SCORE_FIELDS.get(self.problem, "prediction")


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
    "serving",
    "monitoring",
)


def parse_model(
    data: dict, rel: str, features: Mapping[str, FeatureTable], problems: SpecProblems
) -> Model | None:
    check_keys(data, MODEL_KEYS, rel, "", problems)
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
        check_keys(split_raw, ("test_fraction", "seed", "stratify"), rel, "split.", problems)
        fraction = split_raw.get("test_fraction", 0.2)
        if not is_number(fraction) or not 0 < fraction < 1:
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
        if not is_number(threshold):
            problems.add(rel, f"quality_gate.{metric}", f"must be a number, not {threshold!r}")

    dropped = {c for c in (target, *id_columns, *exclude_columns) if isinstance(c, str)}
    inputs = (
        tuple(c for c in table.columns if c not in dropped)
        if table is not None and table.columns is not None
        else ()
    )
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
        serving=parse_serving(data.get("serving"), rel, problem, problems),
        monitoring=parse_monitoring(
            data.get("monitoring"), rel, served="serving" in data, gate=gate, problems=problems
        ),
        feature_columns=inputs,
    )


def _section(raw: Any, where: str, keys: tuple[str, ...], rel: str, problems: SpecProblems) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(rel, where, f"must be a mapping with: {', '.join(keys)}")
        return {}
    check_keys(raw, keys, rel, f"{where}.", problems)
    return raw


def parse_monitoring(
    raw: Any, rel: str, *, served: bool, gate: Any, problems: SpecProblems
) -> Monitoring | None:
    """The model's `monitoring:` section (None when absent). The outcomes dataset and its
    columns are checked by the loader, which knows the datasets."""
    if raw is None:
        return None
    section = _section(raw, "monitoring", MONITORING_KEYS, rel, problems)
    if not served:
        problems.add(
            rel,
            "monitoring",
            "only a served model is monitored (its scores are what is compared with what "
            "happened): add a `serving:` section or remove `monitoring:`",
        )
    outcomes = _section(
        section.get("outcomes"), "monitoring.outcomes", OUTCOMES_KEYS, rel, problems
    )
    dataset = outcomes.get("dataset")
    column = outcomes.get("column")
    if outcomes and (not isinstance(dataset, str) or not isinstance(column, str)):
        problems.add(
            rel,
            "monitoring.outcomes",
            "name the dataset of what happened and its outcome column, e.g. "
            "{dataset: churn_outcomes, column: churned}",
        )
    defaults = Monitoring()
    numbers: dict[str, Any] = {}
    for where, part, keys in (
        ("monitoring.drift", section.get("drift"), DRIFT_KEYS),
        ("monitoring.performance", section.get("performance"), PERFORMANCE_KEYS),
    ):
        values = _section(part, where, keys, rel, problems)
        for key in keys:
            if key not in values:
                continue
            value = values[key]
            fraction = key in ("psi", "p_value", "auc")
            ok = (
                is_number(value) and 0 < float(value) < (10 if key == "psi" else 1)
                if fraction
                else _whole(value) and value >= 1
            )
            if not ok:
                problems.add(
                    rel,
                    f"{where}.{key}",
                    (
                        f"must be a number between 0 and 1, not {value!r}"
                        if fraction and key != "psi"
                        else f"must be a positive number (0.25 is the usual 'significant' PSI), "
                        f"not {value!r}"
                        if key == "psi"
                        else f"must be a whole number >= 1, not {value!r}"
                    ),
                )
                continue
            numbers[key] = float(value) if fraction else value
    retrain = section.get("retrain_on_breach", defaults.retrain_on_breach)
    if not isinstance(retrain, bool):
        problems.add(rel, "monitoring.retrain_on_breach", f"must be true or false, not {retrain!r}")
        retrain = defaults.retrain_on_breach
    gate_auc = gate.get("auc") if isinstance(gate, dict) and is_number(gate.get("auc")) else None
    return Monitoring(
        outcomes_dataset=dataset if isinstance(dataset, str) else None,
        outcome_column=column if isinstance(column, str) else "",
        treated_column=outcomes.get("treated_column"),
        retained_column=outcomes.get("retained_column"),
        psi=numbers.get("psi", defaults.psi),
        p_value=numbers.get("p_value", defaults.p_value),
        min_rows=numbers.get("min_rows", defaults.min_rows),
        auc=numbers.get("auc", float(gate_auc) if gate_auc is not None else None),
        min_outcomes=numbers.get("min_outcomes", defaults.min_outcomes),
        retrain_on_breach=retrain,
    )


def parse_serving(raw: Any, rel: str, problem: Any, problems: SpecProblems) -> Serving | None:
    """The model's `serving:` section (None when absent). The stream, the online features
    and the scores dataset are checked by the loader, which knows the datasets."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add(
            rel, "serving", "must be a mapping like {stream: telecom_events, threshold: 0.8}"
        )
        return None
    check_keys(raw, SERVING_KEYS, rel, "serving.", problems)
    if problem in PROBLEMS and problem not in SCORE_FIELDS:
        problems.add(
            rel,
            "serving",
            f"real-time serving acts on a probability or a predicted value: "
            f"{' or '.join(SCORE_FIELDS)} models can declare it, not {problem}; "
            "remove the section",
        )
    stream = raw.get("stream")
    if not isinstance(stream, str) or not stream:
        problems.add(
            rel, "serving.stream", "name the stream dataset it scores, e.g. telecom_events"
        )
        stream = ""
    threshold: Any = raw.get("threshold")
    if problem == "regression":
        # a predicted value (e.g. EUR): flagged when the prediction is at or above it
        if not is_number(threshold) or not math.isfinite(float(threshold)):
            problems.add(
                rel,
                "serving.threshold",
                f"must be a number in the target's unit, the predicted value at or above "
                f"which the action is taken (e.g. 150), not {threshold!r}",
            )
            threshold = 0.0
    elif not is_number(threshold) or not 0 < float(threshold) < 1:
        problems.add(
            rel,
            "serving.threshold",
            f"must be a probability between 0 and 1 (e.g. 0.8), not {threshold!r}",
        )
        threshold = 0.5
    defaults = Serving(stream="", threshold=0.5)
    action = raw.get("action", defaults.action)
    if action not in SERVING_ACTIONS:
        problems.add(
            rel,
            "serving.action",
            f"unknown action {action!r}; use one of: {', '.join(SERVING_ACTIONS)}",
        )
        action = defaults.action
    event = raw.get("event", SERVING_ACTIONS[action])
    if not isinstance(event, str) or not EVENT_NAME_PATTERN.match(event):
        problems.add(
            rel,
            "serving.event",
            f"the event's detail-type is a PascalCase name of 3 to 64 letters and digits "
            f"(e.g. {SERVING_ACTIONS[action]}, the default for {action}), not {event!r}",
        )
        event = SERVING_ACTIONS[action]
    mode = raw.get("mode", defaults.mode)
    if mode not in SERVING_MODES:
        problems.add(
            rel, "serving.mode", f"unknown mode {mode!r}; use {' or '.join(SERVING_MODES)}"
        )
    memory = raw.get("memory_mb", defaults.memory_mb)
    if memory not in SERVERLESS_MEMORY_MB:
        problems.add(
            rel,
            "serving.memory_mb",
            f"SageMaker serverless memory is one of {', '.join(map(str, SERVERLESS_MEMORY_MB))} "
            f"MB, not {memory!r}",
        )
    concurrency = raw.get("max_concurrency", defaults.max_concurrency)
    if not _whole(concurrency) or not 1 <= concurrency <= 200:
        problems.add(
            rel, "serving.max_concurrency", f"must be an integer from 1 to 200, not {concurrency!r}"
        )
    instance_type = raw.get("instance_type", defaults.instance_type)
    if not isinstance(instance_type, str) or not instance_type.startswith("ml."):
        problems.add(
            rel,
            "serving.instance_type",
            f"must be a SageMaker instance type like ml.m5.large, not {instance_type!r}",
        )
    instances = raw.get("instances", defaults.instances)
    if not _whole(instances) or instances < 1:
        problems.add(rel, "serving.instances", f"must be an integer >= 1, not {instances!r}")
    scores = raw.get("scores_dataset")
    if scores is not None and (not isinstance(scores, str) or not scores):
        problems.add(rel, "serving.scores_dataset", f"name a stream dataset, not {scores!r}")
        scores = None
    return Serving(
        stream=str(stream),
        scores_dataset=scores,
        threshold=float(threshold),
        action=str(action),
        event=str(event),
        mode=str(mode),
        memory_mb=memory if memory in SERVERLESS_MEMORY_MB else defaults.memory_mb,
        max_concurrency=concurrency if _whole(concurrency) else defaults.max_concurrency,
        instance_type=str(instance_type),
        instances=instances if _whole(instances) else defaults.instances,
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
