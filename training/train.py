"""SageMaker script-mode training entry point (scikit-learn 1.2-1 container, xgboost from
requirements.txt), also run locally with SageMaker's environment variables.

Input: every *.parquet and *.csv file under SM_CHANNEL_TRAIN (default
/opt/ml/input/data/train), recursively (files whose name starts with "." or "_" are skipped).
Output in SM_MODEL_DIR (default /opt/ml/model): model.joblib (a scikit-learn Pipeline that
predicts from raw frames), metrics.json, PNG plots. metrics.json is also copied to
SM_OUTPUT_DATA_DIR when that is set.

Hyperparameters arrive as `--name value` pairs (strings). Reserved names:
  problem          regression | binary_classification                          (required)
  algorithm        linear (regression) | logistic (classification) | random_forest | xgboost
  target           the column to predict; for classification its values must be 0/1 (or
                   booleans)                                                  (required)
  id_columns       comma-separated, dropped from the features (may be empty)
  exclude_columns  comma-separated, also dropped (e.g. as_of)
  test_fraction    float in (0, 1), default 0.2
  seed             int, default 42
  stratify         true/false, default true for classification (must be false for regression)
  cv_folds         int, default 5; 0 or 1 = no cross-validation
Every other name is a hyperparameter of the estimator, with "5" -> 5, "0.1" -> 0.1,
"true"/"false" -> bool, "none" -> None. Names starting with "sagemaker_" are ignored.

Classification: the model is fitted with class weights and the decision threshold is the
one maximizing F1 on out-of-fold predictions of the training split (cv_folds folds, or 5 when
cross-validation is off); metrics.json's "threshold" is part of the model: predict positive
when `model.predict_proba(frame)[:, 1] >= threshold` (model.predict uses 0.5).

The final model is fitted on the training split only, so the test metrics are honest.
Errors in the data or the configuration exit with status 2 and a one-line message (also
written to /opt/ml/output/failure when that directory exists, for SageMaker's FailureReason).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, also when imported

import joblib  # noqa: E402
import modeling  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plots  # noqa: E402
from metrics_contract import (  # noqa: E402
    CV_METRICS,
    PROBLEMS,
    format_metric_line,
    metric_definitions,
    metric_names,
)
from modeling import FeatureError, HyperparameterError, TrainingError  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split  # noqa: E402

__all__ = [
    "TrainConfig",
    "TrainingError",
    "FeatureError",
    "HyperparameterError",
    "train",
    "main",
    "load_channel",
    "parse_hyperparameters",
    "metric_definitions",
    "metric_lines",
]

DEFAULT_CHANNEL = "/opt/ml/input/data/train"
DEFAULT_MODEL_DIR = "/opt/ml/model"
FAILURE_DIR = "/opt/ml/output"
THRESHOLD_FOLDS_WITHOUT_CV = 5
# A copy of dataplatform.spec's RESERVED_HYPERPARAMETERS (this folder runs in SageMaker's
# container without the dataplatform package); tests/training/test_contract_parity.py
# keeps them equal.
RESERVED = (
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
SCALED_ALGORITHMS = ("linear", "logistic")


# ----------------------------------------------------------------------------- configuration


def _split_names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part) for part in value)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise TrainingError(f"{name} must be true or false, not {value!r}")


def _as_number(name: str, value: Any, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise TrainingError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, not {value!r}"
        ) from None
    return number


@dataclass
class TrainConfig:
    problem: str
    algorithm: str
    target: str
    id_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    test_fraction: float = 0.2
    seed: int = 42
    stratify: bool | None = None  # None: true for classification, false for regression
    cv_folds: int = 5
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id_columns = _split_names(self.id_columns)
        self.exclude_columns = _split_names(self.exclude_columns)
        if self.problem not in PROBLEMS:
            raise TrainingError(f"unknown problem {self.problem!r}; use {' or '.join(PROBLEMS)}")
        if self.algorithm not in modeling.ALGORITHMS:
            raise TrainingError(
                f"unknown algorithm {self.algorithm!r}; use one of: "
                f"{', '.join(modeling.ALGORITHMS)}"
            )
        if self.problem not in modeling.ALGORITHMS[self.algorithm]:
            fits = [a for a, p in modeling.ALGORITHMS.items() if self.problem in p]
            raise TrainingError(
                f"algorithm {self.algorithm} does not solve {self.problem}; "
                f"use one of: {', '.join(fits)}"
            )
        if not self.target:
            raise TrainingError("no target: pass --target COLUMN")
        self.test_fraction = _as_number("test_fraction", self.test_fraction, float)
        if not 0 < self.test_fraction < 1:
            raise TrainingError(f"test_fraction must be between 0 and 1, not {self.test_fraction}")
        self.seed = _as_number("seed", self.seed, int)
        self.cv_folds = _as_number("cv_folds", self.cv_folds, int)
        if self.cv_folds < 0:
            raise TrainingError(
                f"cv_folds must be 0 or 1 (no cross-validation) or >= 2, not {self.cv_folds}"
            )
        classification = self.problem == "binary_classification"
        if self.stratify is None:
            self.stratify = classification
        self.stratify = _as_bool("stratify", self.stratify)
        if self.stratify and not classification:
            raise TrainingError(
                "stratify needs class labels; set stratify to false for a regression model"
            )
        self.hyperparameters = {
            k: modeling.coerce_value(v) for k, v in dict(self.hyperparameters).items()
        }

    @property
    def classification(self) -> bool:
        return self.problem == "binary_classification"

    @classmethod
    def from_hyperparameters(cls, params: dict[str, str]) -> TrainConfig:
        """From SageMaker's hyperparameters (all strings): the reserved names configure the
        run, the others go to the estimator."""
        params = {k: v for k, v in params.items() if not k.startswith("sagemaker_")}
        for required in ("problem", "algorithm", "target"):
            if required not in params:
                raise TrainingError(f"missing hyperparameter {required}: pass --{required} VALUE")
        reserved = {k: params[k] for k in RESERVED if k in params}
        estimator = {k: v for k, v in params.items() if k not in RESERVED}
        return cls(hyperparameters=estimator, **reserved)


def parse_hyperparameters(argv: Sequence[str]) -> dict[str, str]:
    """`--name value` (or `--name=value`) pairs -> {name: value}; values stay strings. A
    one-letter name comes as `-C value`: SageMaker's training toolkit passes it so."""
    params: dict[str, str] = {}
    index = 0
    argv = list(argv)
    while index < len(argv):
        token = argv[index]
        if token.startswith("--") and len(token) > 2:
            name = token[2:]
        elif len(token) == 2 and token[0] == "-" and token[1].isalpha():
            name = token[1:]
        else:
            raise TrainingError(
                f"unexpected argument {token!r}; pass hyperparameters as --name value"
            )
        if "=" in name:
            name, value = name.split("=", 1)
            index += 1
        else:
            if index + 1 >= len(argv):
                raise TrainingError(f"hyperparameter --{name} has no value")
            value = argv[index + 1]
            index += 2
        name = name.replace("-", "_")
        if name in params:
            raise TrainingError(f"hyperparameter --{name} is given twice")
        params[name] = value
    return params


# ----------------------------------------------------------------------------- input


def load_channel(channel: Path) -> pd.DataFrame:
    """Every *.parquet and *.csv file under `channel` (recursively), concatenated."""
    channel = Path(channel)
    if not channel.is_dir():
        raise TrainingError(
            f"training channel {channel} does not exist; give the training "
            "job a 'train' input channel (SM_CHANNEL_TRAIN)"
        )
    files = sorted(
        p
        for p in channel.rglob("*")
        if p.is_file()
        and p.suffix.lower() in (".parquet", ".csv")
        and not p.name.startswith((".", "_"))
    )
    if not files:
        raise TrainingError(
            f"training channel {channel} has no *.parquet or *.csv file; "
            "point the train channel at the features table's S3 prefix"
        )
    frames = []
    for path in files:
        try:
            if path.suffix.lower() == ".parquet":
                frames.append(pd.read_parquet(path))
            else:
                frames.append(pd.read_csv(path))
        except Exception as e:  # noqa: BLE001 - any reader failure names the file
            raise TrainingError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    frames = [f for f in frames if len(f.columns)]
    frame = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    if frame.empty:
        raise TrainingError(
            f"training channel {channel} has no rows "
            f"({len(files)} file(s): {', '.join(p.name for p in files[:5])})"
        )
    return frame


# ----------------------------------------------------------------------------- training


def _target(frame: pd.DataFrame, config: TrainConfig) -> np.ndarray:
    values = frame[config.target]
    if config.classification:
        distinct = pd.unique(values)
        if pd.api.types.is_bool_dtype(values.dtype) or set(distinct) <= {True, False}:
            as_int = values.astype(int).to_numpy()
        elif pd.api.types.is_numeric_dtype(values.dtype) and set(distinct) <= {0, 1}:
            as_int = values.astype(int).to_numpy()
        else:
            shown = ", ".join(repr(v) for v in list(distinct)[:10])
            raise TrainingError(
                f"target {config.target!r} is not binary 0/1: it holds "
                f"{len(distinct)} distinct value(s) ({shown}); encode the "
                "positive class as 1 and the other as 0"
            )
        if len(np.unique(as_int)) < 2:
            raise TrainingError(
                f"target {config.target!r} has only the value {as_int[0]}; a "
                "classifier needs examples of both classes (0 and 1)"
            )
        return as_int
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        raise TrainingError(
            f"target {config.target!r} has type {values.dtype}; a regression target must be numeric"
        )
    return values.astype(float).to_numpy()


def _folds(config: TrainConfig, y: np.ndarray, requested: int):
    if config.classification:
        smallest = int(min(np.sum(y == 0), np.sum(y == 1)))
        folds = min(requested, smallest)
        if folds < 2:
            return None
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    folds = min(requested, len(y))
    if folds < 2:
        return None
    return KFold(n_splits=folds, shuffle=True, random_state=config.seed)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return _finite_or_none(float(value))
    if value is None or isinstance(value, (int, str)):
        return value
    return str(value)


def metric_lines(metrics: dict[str, Any]) -> list[str]:
    """The `name=value;` lines for a metrics.json dict (see metrics_contract); non-finite or
    missing values are left out."""
    flat: dict[str, Any] = {}
    for split in ("test", "train"):
        for metric, value in metrics[split].items():
            flat[f"{split}_{metric}"] = value
    for metric, summary in metrics["cv"].items():
        flat[f"cv_{metric}_mean"] = summary["mean"]
        flat[f"cv_{metric}_std"] = summary["std"]
    for metric, value in metrics["gap"].items():
        flat[f"gap_{metric}"] = value
    if metrics.get("threshold") is not None:
        flat["threshold"] = metrics["threshold"]
    lines = []
    for name in metric_names(metrics["problem"]):
        value = flat.get(name)
        if value is not None and math.isfinite(float(value)):
            lines.append(format_metric_line(name, value))
    return lines


def train(
    frame: pd.DataFrame,
    config: TrainConfig,
    model_dir: Path,
    output_data_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit, evaluate and save a model of `frame`; returns the metrics.json dict (also printed
    as `name=value;` lines through `log`)."""
    model_dir = Path(model_dir)
    if frame is None or frame.empty:
        raise TrainingError("the training data has no rows")
    columns = list(frame.columns)
    if config.target not in columns:
        raise TrainingError(
            f"target column {config.target!r} is not in the training data; "
            f"its columns: {', '.join(map(str, columns))}. Fix --target or the "
            "features table"
        )
    for kind, names in (
        ("id_columns", config.id_columns),
        ("exclude_columns", config.exclude_columns),
    ):
        missing = [n for n in names if n not in columns]
        if missing:
            raise TrainingError(
                f"{kind} {', '.join(map(repr, missing))} not in the training "
                f"data; its columns: {', '.join(map(str, columns))}"
            )
        if config.target in names:
            raise TrainingError(
                f"the target {config.target!r} is also in {kind}; remove it from there"
            )

    if config.id_columns:
        # Rows in the order of their ids, not of the files Spark happened to write: the same
        # table always gives the same split, folds and model, however its files are cut.
        frame = frame.sort_values(list(config.id_columns), kind="stable").reset_index(drop=True)
    missing_target = frame[config.target].isna()
    if missing_target.all():
        raise TrainingError(f"target column {config.target!r} is empty (all null)")
    if missing_target.any():
        log(f"dropping {int(missing_target.sum())} row(s) without a {config.target}")
        frame = frame.loc[~missing_target].reset_index(drop=True)
    y = _target(frame, config)
    dropped = {config.target, *config.id_columns, *config.exclude_columns}
    features = frame[[c for c in columns if c not in dropped]]
    numeric, categorical = modeling.classify_columns(features)
    feature_names = [c for c in features.columns if c in set(numeric) | set(categorical)]
    if not feature_names:
        raise FeatureError(
            "no feature columns are left after dropping the target, id_columns and exclude_columns"
        )

    stratify = y if config.stratify else None
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            features, y, test_size=config.test_fraction, random_state=config.seed, stratify=stratify
        )
    except ValueError as e:
        raise TrainingError(
            f"cannot split {len(y)} row(s) with test_fraction {config.test_fraction}: {e}"
        ) from e
    if config.classification and (len(np.unique(y_train)) < 2):
        raise TrainingError("the training split has one class only; use more rows or stratify=true")

    estimator = modeling.make_estimator(
        config.problem, config.algorithm, config.hyperparameters, config.seed, y_train
    )
    pipeline = modeling.build_pipeline(
        numeric, categorical, estimator, scale=config.algorithm in SCALED_ALGORITHMS
    )

    # Cross-validation on the training split; its out-of-fold predictions choose the threshold.
    requested = (
        config.cv_folds
        if config.cv_folds >= 2
        else (THRESHOLD_FOLDS_WITHOUT_CV if config.classification else 0)
    )
    splitter = _folds(config, y_train, requested) if requested >= 2 else None
    cv: dict[str, dict[str, Any]] = {}
    oof = np.full(len(y_train), np.nan)
    if splitter is not None:
        per_fold: dict[str, list[float]] = {m: [] for m in CV_METRICS[config.problem]}
        for fold_train, fold_valid in splitter.split(x_train, y_train):
            fold_model = clone(pipeline).fit(x_train.iloc[fold_train], y_train[fold_train])
            if config.classification:
                scores = fold_model.predict_proba(x_train.iloc[fold_valid])[:, 1]
                fold_metrics, _ = modeling.classification_metrics(y_train[fold_valid], scores, 0.5)
            else:
                scores = fold_model.predict(x_train.iloc[fold_valid])
                fold_metrics = modeling.regression_metrics(y_train[fold_valid], scores)
            oof[fold_valid] = scores
            for metric in per_fold:
                per_fold[metric].append(fold_metrics[metric])
        if config.cv_folds >= 2:
            cv = {
                m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}
                for m, v in per_fold.items()
            }

    pipeline.fit(x_train, y_train)
    threshold: float | None = None
    if config.classification:
        threshold = modeling.best_f1_threshold(y_train, oof) if splitter is not None else 0.5
        train_scores = pipeline.predict_proba(x_train)[:, 1]
        test_scores = pipeline.predict_proba(x_test)[:, 1]
        train_metrics, _ = modeling.classification_metrics(y_train, train_scores, threshold)
        test_metrics, matrix = modeling.classification_metrics(y_test, test_scores, threshold)
    else:
        train_scores = pipeline.predict(x_train)
        test_scores = pipeline.predict(x_test)
        train_metrics = modeling.regression_metrics(y_train, train_scores)
        test_metrics = modeling.regression_metrics(y_test, test_scores)
        matrix = None

    importance = modeling.feature_importance(pipeline, numeric, categorical)
    effective = modeling.default_parameters(config.problem, config.algorithm, config.seed, y_train)
    effective.update(config.hyperparameters)
    metrics = _json_safe(
        {
            "problem": config.problem,
            "algorithm": config.algorithm,
            "target": config.target,
            "features": feature_names,
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
            "threshold": threshold,
            "test": test_metrics,
            "train": train_metrics,
            "cv": cv,
            "gap": modeling.gaps(config.problem, train_metrics, test_metrics),
            "fit": modeling.diagnose_fit(config.problem, train_metrics, test_metrics),
            "confusion_matrix": matrix,
            "feature_importance": importance,
            "hyperparameters": effective,
        }
    )

    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, model_dir / "model.joblib")
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if config.classification:
        plots.roc_curve_plot(
            model_dir / "roc_curve.png",
            {"test": (y_test, test_scores), "train": (y_train, train_scores)},
            threshold,
        )
        plots.confusion_matrix_plot(model_dir / "confusion_matrix.png", matrix, threshold)
    else:
        plots.predicted_vs_actual_plot(
            model_dir / "predicted_vs_actual.png", y_test, test_scores, config.target
        )
        plots.residuals_plot(model_dir / "residuals.png", y_test, test_scores)
    plots.feature_importance_plot(
        model_dir / "feature_importance.png", importance, config.algorithm
    )
    # The test rows' scores, by id: for error analysis (and to compare with other scorers on
    # exactly the rows the test metrics come from).
    scored = frame.loc[x_test.index, list(config.id_columns)].copy()
    scored[config.target] = y_test
    scored["score"] = test_scores
    scored.to_csv(model_dir / "test_predictions.csv", index=False)
    if output_data_dir is not None:
        Path(output_data_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_data_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    log(
        f"trained {config.algorithm} {config.problem} on {metrics['n_train']} rows, tested on "
        f"{metrics['n_test']}; {len(feature_names)} features; fit: {metrics['fit']}"
    )
    for line in metric_lines(metrics):
        log(line)
    return metrics


# ----------------------------------------------------------------------------- CLI


def _write_failure(message: str) -> None:
    directory = Path(os.environ.get("SM_OUTPUT_DIR", FAILURE_DIR))
    if directory.is_dir():
        try:
            (directory / "failure").write_text(message + "\n")
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config = TrainConfig.from_hyperparameters(parse_hyperparameters(argv))
        channel = Path(os.environ.get("SM_CHANNEL_TRAIN", DEFAULT_CHANNEL))
        model_dir = Path(os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR))
        output = os.environ.get("SM_OUTPUT_DATA_DIR")
        train(
            load_channel(channel),
            config,
            model_dir,
            output_data_dir=Path(output) if output else None,
        )
    except TrainingError as e:
        message = "training failed: " + " ".join(str(e).split())
        print(message, file=sys.stderr, flush=True)
        _write_failure(message)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
