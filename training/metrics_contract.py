"""The metrics a training run reports, and how it prints them: the contract between
train.py, SageMaker's metric definitions and the quality gate.

Standard library only: the infrastructure code imports it (`from
training.metrics_contract import metric_definitions`) without scikit-learn or pandas.

train.py prints one line per metric, `name=value;`, e.g. `test_auc=0.9931;`. Names:
  test_<m>, train_<m>   metric m on the test split / on the training split
  cv_<m>_mean, cv_<m>_std   k-fold cross-validation of the main metric(s) on the training split
  gap_<m>               how much worse the test split is than the training split (positive =
                        worse on test): train - test for higher-is-better metrics, test - train
                        for rmse and mae
  threshold             the decision threshold (classification)
No name is a suffix of another, so the regexes `<name>=([0-9.\\-eE]+);` cannot match the
wrong line. Values that are not finite (an undefined AUC) are not printed.
"""

from __future__ import annotations

import math
import re

# PROBLEMS, and the split metrics with their direction, are copies of dataplatform.spec's
# PROBLEMS and GATE_METRICS (training/ runs in SageMaker's container without the
# dataplatform package); tests/training/test_contract_parity.py keeps them equal.
PROBLEMS = ("regression", "binary_classification")

# metric -> higher is better
HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "r2": True,
    "rmse": False,
    "mae": False,
}

# metrics computed on the test and the training split
SPLIT_METRICS: dict[str, tuple] = {
    "binary_classification": ("auc", "accuracy", "precision", "recall", "f1"),
    "regression": ("rmse", "mae", "r2"),
}

# metrics reported by cross-validation (mean and std over the folds)
CV_METRICS: dict[str, tuple] = {"binary_classification": ("auc",), "regression": ("rmse", "r2")}

VALUE_PATTERN = r"([0-9.\-eE]+)"


def metric_names(problem: str) -> list[str]:
    """Every metric name train.py prints for `problem`, in printing order."""
    if problem not in PROBLEMS:
        raise ValueError(f"unknown problem {problem!r}; use {' or '.join(PROBLEMS)}")
    names = [f"{split}_{m}" for split in ("test", "train") for m in SPLIT_METRICS[problem]]
    names += [f"cv_{m}_{stat}" for m in CV_METRICS[problem] for stat in ("mean", "std")]
    names += [f"gap_{m}" for m in SPLIT_METRICS[problem]]
    if problem == "binary_classification":
        names.append("threshold")
    return names


def metric_definitions(problem: str) -> list[dict[str, str]]:
    """SageMaker training-job MetricDefinitions: [{"Name": ..., "Regex": ...}] for every metric
    train.py prints for `problem` (SageMaker allows 40; this is at most 18)."""
    return [
        {"Name": name, "Regex": f"{re.escape(name)}={VALUE_PATTERN};"}
        for name in metric_names(problem)
    ]


def format_metric_line(name: str, value: float) -> str:
    """`name=value;` with the value's exact repr (so the printed number equals metrics.json's)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite ({value}); it cannot be printed as a metric")
    return f"{name}={value!r};"
