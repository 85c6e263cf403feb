"""PNG plots of a training run, drawn with matplotlib's Agg backend (no display needed).
Each function writes one file and returns its path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import auc as area_under_curve  # noqa: E402
from sklearn.metrics import roc_curve

DPI = 100
TOP_FEATURES = 25


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(str(path), format="png", dpi=DPI)
    return path


def roc_curve_plot(path: Path, curves: dict[str, tuple], threshold: float) -> Path:
    """`curves`: label -> (y_true, proba), e.g. {"test": ..., "train": ...}. Marks the point
    of the decision threshold on the first curve."""
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot(1, 1, 1)
    for index, (label, (y_true, proba)) in enumerate(curves.items()):
        if len(np.unique(y_true)) < 2:
            continue
        fpr, tpr, thresholds = roc_curve(y_true, proba)
        axes.plot(fpr, tpr, label=f"{label} (AUC = {area_under_curve(fpr, tpr):.3f})")
        if index == 0:
            predicted = np.asarray(proba) >= threshold
            y = np.asarray(y_true).astype(bool)
            tp_rate = (predicted & y).sum() / max(y.sum(), 1)
            fp_rate = (predicted & ~y).sum() / max((~y).sum(), 1)
            axes.scatter(
                [fp_rate], [tp_rate], color="black", zorder=3, label=f"threshold {threshold:.3f}"
            )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set_xlabel("False positive rate")
    axes.set_ylabel("True positive rate")
    axes.set_title("ROC curve")
    axes.legend(loc="lower right")
    return _save(figure, path)


def confusion_matrix_plot(path: Path, matrix: list[list[int]], threshold: float) -> Path:
    figure = Figure(figsize=(5, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    values = np.asarray(matrix)
    image = axes.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=axes)
    limit = values.max() / 2 if values.size else 0
    for i in range(2):
        for j in range(2):
            axes.text(
                j,
                i,
                str(values[i, j]),
                ha="center",
                va="center",
                color="white" if values[i, j] > limit else "black",
                fontsize=14,
            )
    axes.set_xticks([0, 1])
    axes.set_xticklabels(["0", "1"])
    axes.set_yticks([0, 1])
    axes.set_yticklabels(["0", "1"])
    axes.set_xlabel("Predicted")
    axes.set_ylabel("Actual")
    axes.set_title(f"Confusion matrix (test, threshold {threshold:.3f})")
    return _save(figure, path)


def predicted_vs_actual_plot(
    path: Path, y_true: Sequence[float], predicted: Sequence[float], target: str
) -> Path:
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot(1, 1, 1)
    y_true = np.asarray(y_true, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    axes.scatter(y_true, predicted, s=12, alpha=0.6)
    low = float(min(y_true.min(), predicted.min()))
    high = float(max(y_true.max(), predicted.max()))
    axes.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    axes.set_xlabel(f"Actual {target}")
    axes.set_ylabel(f"Predicted {target}")
    axes.set_title("Predicted vs actual (test)")
    axes.legend(loc="upper left")
    return _save(figure, path)


def residuals_plot(path: Path, y_true: Sequence[float], predicted: Sequence[float]) -> Path:
    figure = Figure(figsize=(10, 4.5))
    y_true = np.asarray(y_true, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    residuals = y_true - predicted
    scatter = figure.add_subplot(1, 2, 1)
    scatter.scatter(predicted, residuals, s=12, alpha=0.6)
    scatter.axhline(0, linestyle="--", color="grey")
    scatter.set_xlabel("Predicted")
    scatter.set_ylabel("Residual (actual - predicted)")
    scatter.set_title("Residuals vs predicted (test)")
    histogram = figure.add_subplot(1, 2, 2)
    histogram.hist(residuals, bins=30)
    histogram.set_xlabel("Residual")
    histogram.set_ylabel("Count")
    histogram.set_title("Residual distribution (test)")
    return _save(figure, path)


def feature_importance_plot(path: Path, importance: dict[str, float], algorithm: str) -> Path:
    top = list(importance.items())[:TOP_FEATURES]
    names = [name for name, _ in top][::-1]
    values = [value for _, value in top][::-1]
    figure = Figure(figsize=(7, max(3.0, 0.3 * len(top) + 1.2)))
    axes = figure.add_subplot(1, 1, 1)
    axes.barh(range(len(names)), values)
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names)
    kind = {
        "linear": "|coefficient| (standardized features)",
        "logistic": "|coefficient| (standardized features)",
        "random_forest": "impurity importance",
        "xgboost": "gain importance",
    }.get(algorithm, "importance")
    axes.set_xlabel(kind)
    shown = f", top {len(top)} of {len(importance)}" if len(top) < len(importance) else ""
    axes.set_title(f"Feature importance ({algorithm}{shown})")
    return _save(figure, path)
