"""Estimators, preprocessing, metrics, decision threshold and feature importance for train.py.

Runs in the SageMaker scikit-learn 1.2-1 container (Python 3.9, scikit-learn 1.2) and
locally (Python 3.11, scikit-learn 1.9): only APIs present in both. The fitted pipeline
holds scikit-learn and xgboost classes only, so model.joblib loads without this module.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from metrics_contract import HIGHER_IS_BETTER
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_curve,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

# A copy of dataplatform.spec's ALGORITHMS (this folder runs in SageMaker's container without
# the dataplatform package); tests/training/test_contract_parity.py keeps them equal.
ALGORITHMS = {
    "linear": ("regression",),
    "logistic": ("binary_classification",),
    "random_forest": ("regression", "binary_classification"),
    "xgboost": ("regression", "binary_classification"),
}

# Fit diagnosis (metrics.json "fit"), on the main metric (AUC, or R² for regression):
#   "underfitting" when the model does not even fit its training split: train AUC < 0.70,
#                  train R² < 0.30;
#   "overfitting"  when the test split is much worse than the training split: train AUC -
#                  test AUC > 0.05, train R² - test R² > 0.10;
#   "ok"           otherwise.
FIT_METRIC = {"binary_classification": "auc", "regression": "r2"}
UNDERFIT_FLOOR = {"auc": 0.70, "r2": 0.30}
OVERFIT_TOLERANCE = {"auc": 0.05, "r2": 0.10}
# A string column with more distinct values than this is refused (one-hot encoding it would
# be huge, and it is usually an identifier that belongs in id_columns).
MAX_CATEGORIES = 1000


class TrainingError(ValueError):
    """A problem with the data or the configuration; the message says what and how to fix it."""


class HyperparameterError(TrainingError):
    pass


class FeatureError(TrainingError):
    pass


# ----------------------------------------------------------------------------- hyperparameters

_INT = re.compile(r"^[+-]?\d+$")


def coerce_value(value: Any) -> Any:
    """A hyperparameter value as SageMaker passes it (a string) to its Python value:
    "5" -> 5, "0.1"/"1e-3" -> float, "true"/"false" -> bool, "none"/"null" -> None, else the
    string. Non-strings are returned unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    lower = text.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower in ("none", "null"):
        return None
    if _INT.match(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _estimator_class(problem: str, algorithm: str):
    if algorithm == "linear":
        from sklearn.linear_model import LinearRegression

        return LinearRegression
    if algorithm == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        return (
            RandomForestClassifier if problem == "binary_classification" else RandomForestRegressor
        )
    if algorithm == "xgboost":
        try:
            from xgboost import XGBClassifier, XGBRegressor
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise TrainingError(
                "algorithm xgboost needs the xgboost package; install training/requirements.txt"
            ) from e
        return XGBClassifier if problem == "binary_classification" else XGBRegressor
    raise TrainingError(f"unknown algorithm {algorithm!r}; use one of: {', '.join(ALGORITHMS)}")


def default_parameters(
    problem: str, algorithm: str, seed: int, y_train: np.ndarray | None = None
) -> dict[str, Any]:
    """Our defaults (the user's hyperparameters override them): seeded, class-weighted for
    classification (scale_pos_weight = negatives / positives of the training split for
    xgboost)."""
    classification = problem == "binary_classification"
    if algorithm == "linear":
        return {}
    if algorithm == "logistic":
        return {"max_iter": 1000, "class_weight": "balanced"}
    if algorithm == "random_forest":
        params: dict[str, Any] = {"n_estimators": 200, "random_state": seed, "n_jobs": -1}
        if classification:
            params["class_weight"] = "balanced"
        return params
    if algorithm == "xgboost":
        params = {
            "n_estimators": 200,
            "learning_rate": 0.1,
            "max_depth": 4,
            "random_state": seed,
            "n_jobs": -1,
            "tree_method": "hist",
        }
        if classification:
            params["eval_metric"] = "auc"
            if y_train is not None:
                positives = int(np.sum(y_train == 1))
                negatives = int(np.sum(y_train == 0))
                params["scale_pos_weight"] = negatives / positives if positives else 1.0
        return params
    raise TrainingError(f"unknown algorithm {algorithm!r}; use one of: {', '.join(ALGORITHMS)}")


def valid_hyperparameters(problem: str, algorithm: str) -> list[str]:
    return sorted(_estimator_class(problem, algorithm)().get_params(deep=False))


def make_estimator(
    problem: str,
    algorithm: str,
    hyperparameters: dict[str, Any],
    seed: int,
    y_train: np.ndarray | None = None,
):
    cls = _estimator_class(problem, algorithm)
    valid = set(cls().get_params(deep=False))
    unknown = sorted(set(hyperparameters) - valid)
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for {algorithm} "
            f"({cls.__name__}); valid: {', '.join(sorted(valid))}"
        )
    params = default_parameters(problem, algorithm, seed, y_train)
    params.update({k: coerce_value(v) for k, v in hyperparameters.items()})
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise HyperparameterError(f"invalid hyperparameters for {algorithm}: {e}") from e


# ----------------------------------------------------------------------------- features


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))


def _checked_categories(column: str, series: pd.Series) -> str:
    distinct = series.nunique(dropna=True)
    if distinct > MAX_CATEGORIES:
        raise FeatureError(
            f"feature column {column!r} has {distinct} distinct values (more than "
            f"{MAX_CATEGORIES}) to one-hot encode; if it identifies rows add it to id_columns, "
            f"else to exclude_columns, or group its values in the feature SQL"
        )
    return column


def classify_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns. Numbers and booleans are numeric (booleans
    become 0/1); strings, categories and object columns of strings (or of booleans with
    nulls) are categorical. Anything else (dates, lists, mixed types) is an error naming the
    column."""
    numeric: list[str] = []
    categorical: list[str] = []
    for column in frame.columns:
        series = frame[column]
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
        ):
            if not pd.api.types.is_bool_dtype(dtype):
                infinite = int(np.isinf(series.to_numpy(dtype=float, na_value=np.nan)).sum())
                if infinite:
                    raise FeatureError(
                        f"feature column {column!r} has {infinite} infinite value(s); replace "
                        f"them (e.g. NULLIF the divisor in the feature SQL) or exclude the column"
                    )
            numeric.append(column)
            continue
        if isinstance(dtype, pd.CategoricalDtype):
            categorical.append(_checked_categories(column, series))
            continue
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise FeatureError(
                f"feature column {column!r} holds dates/times ({dtype}), which the model cannot "
                f"use as is; add it to exclude_columns, or derive a number from it (e.g. days "
                f"since) in the feature SQL"
            )
        if isinstance(dtype, pd.StringDtype) and series.isna().any():
            raise FeatureError(
                f"feature column {column!r} has pandas' {dtype} dtype with missing values, "
                f"which the one-hot encoder cannot take; use object strings (read_parquet's "
                f"default), e.g. frame[{column!r}].astype(object)"
            )
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            values = series.dropna()
            kinds = set()
            for value in values:
                if isinstance(value, str):
                    kinds.add("str")
                elif isinstance(value, (bool, np.bool_)):
                    kinds.add("bool")
                elif _is_number(value):
                    kinds.add("number")
                else:
                    kinds.add(type(value).__name__)
            if kinds <= {"str"} or kinds == {"bool"}:
                categorical.append(_checked_categories(column, series))
                continue
            if kinds == {"number"}:
                if len(values) != len(series):
                    raise FeatureError(
                        f"feature column {column!r} holds number objects (e.g. decimals) with "
                        f"nulls; cast it to double in the feature SQL"
                    )
                numeric.append(column)
                continue
            raise FeatureError(
                f"feature column {column!r} cannot be encoded: it holds "
                f"{', '.join(sorted(kinds))} values; a feature must be numeric, boolean or "
                f"string. Add it to exclude_columns or fix its type in the feature SQL"
            )
        raise FeatureError(
            f"feature column {column!r} has type {dtype}, which the model cannot encode; add it "
            f"to exclude_columns or cast it to a number or a string in the feature SQL"
        )
    return numeric, categorical


def build_pipeline(
    numeric: Sequence[str], categorical: Sequence[str], estimator, scale: bool
) -> Pipeline:
    """Raw frame -> [median-imputed (and standardized) numbers, one-hot categories] ->
    estimator. Missing categories are a category of their own; unseen ones encode to zeros."""
    numeric_steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    transformers = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), list(numeric)))
    if categorical:
        transformers.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(categorical),
            )
        )
    if not transformers:
        raise FeatureError(
            "no feature columns are left after dropping the target, id_columns and exclude_columns"
        )
    return Pipeline(
        [("features", ColumnTransformer(transformers, remainder="drop")), ("model", estimator)]
    )


def feature_importance(
    pipeline: Pipeline, numeric: Sequence[str], categorical: Sequence[str]
) -> dict[str, float]:
    """Importance per ORIGINAL feature, sorted descending: |coefficient| (of standardized
    numbers, so comparable) for linear models, impurity (random forest) or gain (xgboost,
    its default `feature_importances_`) for trees. One-hot columns of a category are summed."""
    model = pipeline.named_steps["model"]
    if hasattr(model, "coef_"):
        raw = np.abs(np.ravel(model.coef_))
    elif hasattr(model, "feature_importances_"):
        raw = np.asarray(model.feature_importances_, dtype=float)
    else:  # pragma: no cover - every algorithm has one of the two
        return {}
    owners: list[str] = list(numeric)
    if categorical:
        encoder = pipeline.named_steps["features"].named_transformers_["categorical"]
        for column, categories in zip(categorical, encoder.categories_):
            owners.extend([column] * len(categories))
    if len(owners) != len(raw):  # pragma: no cover - defensive
        raise TrainingError(f"internal error: {len(raw)} importances for {len(owners)} columns")
    totals: dict[str, float] = {c: 0.0 for c in list(numeric) + list(categorical)}
    for owner, value in zip(owners, raw):
        totals[owner] += float(value) if math.isfinite(float(value)) else 0.0
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


# ----------------------------------------------------------------------------- metrics


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float
) -> tuple[dict[str, float], list[list[int]]]:
    """AUC from probabilities; the rest at `proba >= threshold`. AUC is NaN when y_true has
    one class only."""
    y_true = np.asarray(y_true).astype(int)
    predicted = (np.asarray(proba) >= threshold).astype(int)
    auc = float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) == 2 else float("nan")
    metrics = {
        "auc": auc,
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
    }
    matrix = confusion_matrix(y_true, predicted, labels=[0, 1])
    return metrics, [[int(v) for v in row] for row in matrix]


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(math.sqrt(mean_squared_error(y_true, predicted))),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
    }


def best_f1_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold (predict positive when proba >= threshold) that maximizes F1
    on these (out-of-fold) predictions; 0.5 when there is no positive example."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0 or y_true.sum() == len(y_true):
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denominator = precision + recall
    f1 = np.where(
        denominator > 0, 2 * precision * recall / np.where(denominator > 0, denominator, 1), 0.0
    )
    return float(thresholds[int(np.argmax(f1))])


def gaps(problem: str, train: dict[str, float], test: dict[str, float]) -> dict[str, float]:
    """How much worse test is than train, per metric (positive = worse on test)."""
    result = {}
    for metric in test:
        if HIGHER_IS_BETTER[metric]:
            result[metric] = train[metric] - test[metric]
        else:
            result[metric] = test[metric] - train[metric]
    return result


def diagnose_fit(problem: str, train: dict[str, float], test: dict[str, float]) -> str:
    metric = FIT_METRIC[problem]
    train_value, test_value = train[metric], test[metric]
    if not (math.isfinite(train_value) and math.isfinite(test_value)):
        return "ok"
    if train_value < UNDERFIT_FLOOR[metric]:
        return "underfitting"
    if train_value - test_value > OVERFIT_TOLERANCE[metric]:
        return "overfitting"
    return "ok"
