"""The statistics of monitoring a served model: pure functions over pandas frames and numpy
arrays (no I/O beyond the plots' PNG files, no AWS, no Spark, no randomness) for `dp monitor`,
its alarms and retraining triggers to call.

- Drift: is what the model sees now (online features, served inputs, its own scores) still
  distributed as what it was trained on? `psi`, `psi_band`, `feature_drift`, `score_drift`.
- Realized performance: once outcomes are known (did the customer churn?), how good were the
  scores, per day and model version? `performance_metrics`, `realized_performance`,
  `calibration_table`, `expected_calibration_error`.
- Intervention effect: did the action taken at the threshold (an offer) change what the
  customers did? `intervention_effect`, `wilson_interval`.
- Plots: `plot_feature_drift`, `plot_realized_auc`, `plot_calibration` (PNG, Agg backend).

The drift rule (`is_drifted`): a feature drifted when its PSI is at least `psi_threshold`
(0.25, the "significant" band) and the chi-squared test on the PSI's own bins says the
difference is not sampling noise, or when its PSI is at least 0.1 (the "moderate" band) and
the distribution test beside it (Kolmogorov-Smirnov for numbers, chi-squared for categories)
is significant at `p_value`. PSI is the effect size and a test alone never flags: on large
samples every tiny shift is "significant" (a 0.02 sd shift over a million rows has p < 1e-9),
so below PSI 0.1 nothing is flagged whatever the p-value. The test is the guard against luck:
PSI has no sampling-noise model of its own, and on a few dozen rows an empty bin alone (its
share replaced by PSI_EPSILON) adds ~0.7, so a PSI over the threshold must also be
significant. Fewer than `min_rows` rows on either side are not judged at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# PSI's usual bands (Siddiqi, "Credit Risk Scorecards"): < 0.1 stable, 0.1 to 0.25 moderate,
# >= 0.25 significant.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
# The share given to a bin that is empty in one sample, so that its log ratio stays finite.
# It is not renormalised: an empty bin that held p of the other sample adds about
# p * ln(p / 1e-4) (0.69 for p = 0.1), so a value appearing or disappearing counts heavily.
PSI_EPSILON = 1e-4
DEFAULT_BINS = 10
MIN_ROWS = 30  # fewer rows on either side: drift is not judged (see `feature_drift`)
MIN_COMPARABLE = 20  # fewer customers on either side of the threshold: no conclusion
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals

MISSING = "<missing>"  # the label of the missing-values bin
_NUMERIC_INFERRED = {"integer", "floating", "mixed-integer-float", "decimal"}

DRIFT_COLUMNS = [
    "feature",
    "kind",
    "n_train",
    "n_recent",
    "missing_train",
    "missing_recent",
    "psi",
    "band",
    "test",
    "statistic",
    "p_value",
    "bins_p_value",
    "drifted",
    "note",
]
PERFORMANCE_COLUMNS = [
    "n",
    "positives",
    "observed_rate",
    "mean_predicted",
    "flagged",
    "auc",
    "precision_at_threshold",
    "recall_at_threshold",
    "brier",
    "ece",
    "note",
]


# ---------------------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------------------


def _series(values: Any) -> pd.Series:
    """Any one-dimensional sample as a Series with a fresh index (None stays missing)."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return pd.Series(list(values) if not isinstance(values, np.ndarray) else values)


def sample_kind(*samples: Any) -> str:
    """ "numeric" when every sample's non-missing values are numbers (bools excluded),
    otherwise "categorical" (strings, bools, pandas categories, mixtures). A sample with no
    value at all does not vote, so a feature that went entirely missing keeps its kind."""
    for values in samples:
        present = _series(values).dropna()
        if len(present) == 0:
            continue
        if pd.api.types.infer_dtype(present, skipna=True) not in _NUMERIC_INFERRED:
            return "categorical"
    return "numeric"


def _category_key(value: Any) -> tuple[str, str]:
    return (type(value).__name__, str(value))


def binned_counts(
    expected: Any, actual: Any, bins: int = DEFAULT_BINS, kind: str | None = None
) -> tuple[str, list[str], np.ndarray, np.ndarray]:
    """The bins PSI compares and each sample's count in them: (kind, labels, expected
    counts, actual counts); the last bin is always the missing values (None, NaN).

    Numeric: the inner edges are the expected sample's quantiles at 1/bins .. (bins-1)/bins,
    deduplicated (a discrete feature has fewer distinct quantiles), the bins closed on the
    right, and the outer bins open to -inf and +inf, so values beyond the training range
    count in the outer bins instead of falling out. Categorical: one bin per value seen in
    either sample, in a stable order."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    e, a = _series(expected), _series(actual)
    kind = kind or sample_kind(e, a)
    e_missing, a_missing = int(e.isna().sum()), int(a.isna().sum())
    e_present, a_present = e.dropna(), a.dropna()
    if kind == "numeric":
        e_values = pd.to_numeric(e_present).to_numpy(dtype=float)
        a_values = pd.to_numeric(a_present).to_numpy(dtype=float)
        if e_values.size:
            quantiles = np.quantile(e_values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
            inner = np.unique(quantiles)
        else:
            inner = np.array([], dtype=float)
        # searchsorted(left) = how many edges lie strictly below x: bin i is (edge[i-1], edge[i]]
        e_counts = np.bincount(
            np.searchsorted(inner, e_values, side="left"), minlength=inner.size + 1
        )
        a_counts = np.bincount(
            np.searchsorted(inner, a_values, side="left"), minlength=inner.size + 1
        )
        bounds = [-math.inf, *inner.tolist(), math.inf]
        labels = [f"({lo:g}, {hi:g}]" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    elif kind == "categorical":
        categories = sorted(set(e_present.tolist()) | set(a_present.tolist()), key=_category_key)
        e_freq, a_freq = e_present.value_counts(), a_present.value_counts()
        e_counts = np.array([int(e_freq.get(c, 0)) for c in categories], dtype=np.int64)
        a_counts = np.array([int(a_freq.get(c, 0)) for c in categories], dtype=np.int64)
        labels = [str(c) for c in categories]
    else:
        raise ValueError(f"kind must be numeric or categorical, not {kind!r}")
    return (
        kind,
        [*labels, MISSING],
        np.append(e_counts, e_missing).astype(np.int64),
        np.append(a_counts, a_missing).astype(np.int64),
    )


def psi_from_counts(expected_counts: Any, actual_counts: Any) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e), e and a each sample's share of its rows in
    the bin; a share of 0 is replaced by PSI_EPSILON. NaN when a sample is empty."""
    e = np.asarray(expected_counts, dtype=float)
    a = np.asarray(actual_counts, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return math.nan
    pe, pa = e / e.sum(), a / a.sum()
    pe = np.where(pe > 0, pe, PSI_EPSILON)
    pa = np.where(pa > 0, pa, PSI_EPSILON)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def psi(expected: Any, actual: Any, bins: int = DEFAULT_BINS) -> float:
    """The Population Stability Index of `actual` (recent values) against `expected` (the
    training values): how far the recent distribution moved, over the bins of
    `binned_counts` (the training deciles for numbers, one bin per value for categories,
    and missing values as a bin of their own, since a feature going missing is drift too).
    0 for identical distributions; symmetric in the shares; read with `psi_band`."""
    _, _, e_counts, a_counts = binned_counts(expected, actual, bins)
    return psi_from_counts(e_counts, a_counts)


def psi_band(value: float) -> str:
    """ "stable" (PSI < 0.1), "moderate" (0.1 <= PSI < 0.25) or "significant" (>= 0.25);
    "unknown" for NaN (an empty sample)."""
    if value is None or math.isnan(value):
        return "unknown"
    if value < PSI_MODERATE:
        return "stable"
    if value < PSI_SIGNIFICANT:
        return "moderate"
    return "significant"


def _scipy_stats() -> Any:
    """scipy.stats, imported when a test first runs (scipy ships no type information)."""
    import scipy.stats  # type: ignore[import-untyped]

    return scipy.stats


def chi2_homogeneity(expected_counts: Any, actual_counts: Any) -> tuple[float, float]:
    """(statistic, p-value) of the chi-squared test that two samples' counts over the same
    categories come from one distribution (scipy's chi2_contingency on the 2 x k table,
    Yates-corrected when k = 2). Categories empty in both are dropped; one category left
    means nothing to tell apart (0, 1); an empty sample gives (NaN, NaN)."""
    table = np.vstack([np.asarray(expected_counts), np.asarray(actual_counts)]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if (table.sum(axis=1) == 0).any():
        return math.nan, math.nan
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = _scipy_stats().chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def ks_test(expected: Any, actual: Any) -> tuple[float, float]:
    """(statistic, p-value) of scipy's two-sample Kolmogorov-Smirnov test on the
    non-missing numeric values; (NaN, NaN) when a sample has none."""
    e = pd.to_numeric(_series(expected).dropna()).to_numpy(dtype=float)
    a = pd.to_numeric(_series(actual).dropna()).to_numpy(dtype=float)
    if e.size == 0 or a.size == 0:
        return math.nan, math.nan
    result = _scipy_stats().ks_2samp(e, a)
    return float(result.statistic), float(result.pvalue)


def is_drifted(
    psi_value: float,
    test_p: float,
    bins_p: float,
    *,
    psi_threshold: float = PSI_SIGNIFICANT,
    p_value: float = 0.01,
) -> bool:
    """The drift rule (the module's docstring says why):
    (PSI >= psi_threshold and the chi-squared test on the PSI's bins has p < p_value) or
    (PSI >= 0.1 and the distribution test has p < p_value). NaN never flags."""

    def below(p: float) -> bool:
        return not math.isnan(p) and p < p_value

    if math.isnan(psi_value):
        return False
    if psi_value >= psi_threshold and below(bins_p):
        return True
    return psi_value >= PSI_MODERATE and below(test_p)


def drift_measures(
    train: Any,
    recent: Any,
    *,
    name: str = "",
    bins: int = DEFAULT_BINS,
    psi_threshold: float = PSI_SIGNIFICANT,
    p_value: float = 0.01,
    min_rows: int = MIN_ROWS,
) -> dict[str, Any]:
    """One row of `feature_drift` for two samples of one variable (its columns:
    DRIFT_COLUMNS). The distribution test is KS for numbers and chi-squared on the category
    counts (missing values a category) for categories; bins_p_value is the chi-squared test
    on the PSI's own bins (for categories the same test)."""
    e, a = _series(train), _series(recent)
    kind, _, e_counts, a_counts = binned_counts(e, a, bins)
    value = psi_from_counts(e_counts, a_counts)
    bins_stat, bins_p = chi2_homogeneity(e_counts, a_counts)
    if kind == "numeric":
        test = "ks"
        statistic, test_p = ks_test(e, a)
    else:
        test, statistic, test_p = "chi2", bins_stat, bins_p
    notes = []
    if len(a) < min_rows:
        notes.append(f"too few recent rows ({len(a)} < {min_rows}): not judged")
    if len(e) < min_rows:
        notes.append(f"too few training rows ({len(e)} < {min_rows}): not judged")
    drifted = not notes and is_drifted(
        value, test_p, bins_p, psi_threshold=psi_threshold, p_value=p_value
    )
    return {
        "feature": name,
        "kind": kind,
        "n_train": len(e),
        "n_recent": len(a),
        "missing_train": float(e.isna().mean()) if len(e) else math.nan,
        "missing_recent": float(a.isna().mean()) if len(a) else math.nan,
        "psi": value,
        "band": psi_band(value),
        "test": test,
        "statistic": statistic,
        "p_value": test_p,
        "bins_p_value": bins_p,
        "drifted": bool(drifted),
        "note": "; ".join(notes),
    }


def feature_drift(
    train: pd.DataFrame,
    recent: pd.DataFrame,
    features: Sequence[str],
    *,
    bins: int = DEFAULT_BINS,
    psi_threshold: float = PSI_SIGNIFICANT,
    p_value: float = 0.01,
    min_rows: int = MIN_ROWS,
) -> pd.DataFrame:
    """Drift of each feature from its training distribution (`train`) to a recent one
    (`recent`: online features or served inputs), one row per feature sorted by PSI
    descending: feature, kind (numeric/categorical), n_train, n_recent, missing_train and
    missing_recent (shares), psi, band, test (ks/chi2), statistic, p_value, bins_p_value,
    drifted and note. `drifted` follows `is_drifted` (the module's docstring says why); with
    fewer than `min_rows` rows on either side it is False and `note` says so: on a few rows
    PSI is mostly noise, and a flag then would be luck."""
    absent = [f for f in features if f not in train.columns or f not in recent.columns]
    if absent:
        raise KeyError(f"features missing from the training or the recent frame: {absent}")
    rows = [
        drift_measures(
            train[f],
            recent[f],
            name=f,
            bins=bins,
            psi_threshold=psi_threshold,
            p_value=p_value,
            min_rows=min_rows,
        )
        for f in features
    ]
    frame = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    frame = frame.sort_values("psi", ascending=False, na_position="last", kind="mergesort")
    return frame.reset_index(drop=True)


def score_drift(
    train_scores: Any,
    served_scores: Any,
    *,
    bins: int = DEFAULT_BINS,
    psi_threshold: float = PSI_SIGNIFICANT,
    p_value: float = 0.01,
    min_rows: int = MIN_ROWS,
) -> dict[str, Any]:
    """The same measures as `feature_drift` for the model's own score distribution: the
    probabilities it gave the training (or test) rows against those it served (the
    probability column of its scores dataset). A moved score distribution with stable
    features points at a changed relation or an unmonitored input; it also moves how many
    customers cross the threshold (the action's volume)."""
    return drift_measures(
        train_scores,
        served_scores,
        name="score",
        bins=bins,
        psi_threshold=psi_threshold,
        p_value=p_value,
        min_rows=min_rows,
    )


# ---------------------------------------------------------------------------------------
# Realized performance
# ---------------------------------------------------------------------------------------


def _probabilities_and_outcomes(probability: Any, outcome: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays without the rows whose probability or outcome is missing (an outcome not
    known yet); checks probabilities lie in [0, 1] and outcomes are 0/1."""
    p = pd.to_numeric(_series(probability)).to_numpy(dtype=float)
    y = pd.to_numeric(_series(outcome).astype("float64")).to_numpy(dtype=float)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} outcomes")
    keep = ~(np.isnan(p) | np.isnan(y))
    p, y = p[keep], y[keep]
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0 or 1")
    return p, y


def calibration_table(probability: Any, outcome: Any, bins: int = DEFAULT_BINS) -> pd.DataFrame:
    """Reliability of the probabilities: `bins` equal-width bins of [0, 1] (the last one
    closed, so 1.0 is in it), each with bin (0-based), lower, upper, n, mean_predicted and
    observed_rate (NaN for an empty bin). A calibrated model's points lie on the diagonal:
    of the customers given 0.3, 30% churn. Rows with a missing outcome are left out."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    p, y = _probabilities_and_outcomes(probability, outcome)
    index = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)
    n = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(n > 0, sum_p / n, np.nan)
        observed = np.where(n > 0, sum_y / n, np.nan)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "n": n.astype(np.int64),
            "mean_predicted": mean_predicted,
            "observed_rate": observed,
        }
    )


def expected_calibration_error(probability: Any, outcome: Any, bins: int = DEFAULT_BINS) -> float:
    """ECE = sum over the `calibration_table` bins of (n_b / n) * |mean_predicted_b -
    observed_rate_b|: the average gap between the probability given and the rate seen,
    weighted by where the customers are. 0 when calibrated; NaN with no rows."""
    table = calibration_table(probability, outcome, bins)
    total = int(table["n"].sum())
    if total == 0:
        return math.nan
    filled = table[table["n"] > 0]
    gaps = (filled["mean_predicted"] - filled["observed_rate"]).abs()
    return float((filled["n"] * gaps).sum() / total)


def performance_metrics(
    probability: Any, outcome: Any, *, threshold: float, bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """How good the scores were, once the outcomes are known (PERFORMANCE_COLUMNS): n,
    positives, observed_rate, mean_predicted (against the observed rate: the calibration in
    the large), flagged (probability >= threshold), auc (scikit-learn's roc_auc_score: the
    ranking; NaN with a note when one class only), precision_at_threshold and
    recall_at_threshold (of the flagged customers, how many churned; of those who churned,
    how many were flagged; NaN with a note when undefined), brier (mean squared error of the
    probability) and ece (`expected_calibration_error`). Rows with a missing outcome are
    left out."""
    from sklearn.metrics import roc_auc_score

    p, y = _probabilities_and_outcomes(probability, outcome)
    n, positives = int(p.size), int(y.sum())
    flag = p >= threshold
    flagged, true_positives = int(flag.sum()), int((flag & (y == 1)).sum())
    notes = []
    if n == 0:
        notes.append("no rows with a known outcome")
    elif positives in (0, n):
        notes.append(
            f"one class only ({'all positive' if positives else 'no positive'}): AUC undefined"
        )
    if n and flagged == 0:
        notes.append("nothing flagged: precision undefined")
    if n and positives == 0:
        notes.append("no positive: recall undefined")
    return {
        "n": n,
        "positives": positives,
        "observed_rate": positives / n if n else math.nan,
        "mean_predicted": float(p.mean()) if n else math.nan,
        "flagged": flagged,
        "auc": float(roc_auc_score(y, p)) if 0 < positives < n else math.nan,
        "precision_at_threshold": true_positives / flagged if flagged else math.nan,
        "recall_at_threshold": true_positives / positives if positives else math.nan,
        "brier": float(np.mean((p - y) ** 2)) if n else math.nan,
        "ece": expected_calibration_error(p, y, bins) if n else math.nan,
        "note": "; ".join(notes),
    }


def realized_performance(
    joined: pd.DataFrame,
    *,
    threshold: float,
    by: Sequence[str] = ("day", "model_version"),
    bins: int = DEFAULT_BINS,
) -> pd.DataFrame:
    """`performance_metrics` per group of `by` (default: per day and model version) of
    `joined`: the served scores joined with what happened (columns probability, outcome 0/1
    and the `by` columns). One row per group, sorted by the group, with the `by` columns
    first. by=() gives the one overall row."""
    needed = ["probability", "outcome", *by]
    absent = [c for c in needed if c not in joined.columns]
    if absent:
        raise KeyError(f"columns missing from the joined frame: {absent}")
    rows: list[dict[str, Any]] = []
    if not by:
        rows.append(
            performance_metrics(
                joined["probability"], joined["outcome"], threshold=threshold, bins=bins
            )
        )
    else:
        for key, group in joined.groupby(list(by), sort=True, dropna=False):
            keys = key if isinstance(key, tuple) else (key,)
            metrics = performance_metrics(
                group["probability"], group["outcome"], threshold=threshold, bins=bins
            )
            rows.append({**dict(zip(by, keys, strict=True)), **metrics})
    return pd.DataFrame(rows, columns=[*by, *PERFORMANCE_COLUMNS])


# ---------------------------------------------------------------------------------------
# Intervention effect
# ---------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): unlike the normal
    approximation it stays inside [0, 1] and is honest for small n or rates near 0 or 1.
    (NaN, NaN) when n = 0."""
    if n <= 0:
        return math.nan, math.nan
    rate = successes / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(
    successes_1: int, n_1: int, successes_2: int, n_2: int, z: float = Z_95
) -> tuple[float, float, float]:
    """(difference, low, high): rate 1 - rate 2 and its 95% interval by the normal
    approximation (Wald: difference +- z * sqrt(p1(1-p1)/n1 + p2(1-p2)/n2))."""
    if n_1 <= 0 or n_2 <= 0:
        return math.nan, math.nan, math.nan
    p_1, p_2 = successes_1 / n_1, successes_2 / n_2
    difference = p_1 - p_2
    half = z * math.sqrt(p_1 * (1 - p_1) / n_1 + p_2 * (1 - p_2) / n_2)
    return difference, difference - half, difference + half


def intervention_effect(
    joined: pd.DataFrame,
    *,
    threshold: float,
    band: float = 0.1,
    min_comparable: int = MIN_COMPARABLE,
) -> dict[str, Any]:
    """Did the action change retention? `joined` has probability, treated (or flagged: an
    offer was sent, bool) and retained (0/1: the customer stayed) per scored customer.

    Treated and untreated customers overall are not comparable (the treated were chosen for
    their high churn risk), so this compares only customers near the threshold (a
    regression-discontinuity design): treated customers with threshold <= probability <=
    threshold + band against untreated ones with threshold - band <= probability <
    threshold. The assumption: customers just either side of the threshold are alike but
    for the offer. Their risk still differs a little (mean_probability_* shows by how much;
    the treated are riskier, so a positive difference is if anything understated); the
    narrower the band, the truer the assumption and the fewer the customers. Customers on the
    wrong side (treated below the threshold, untreated above it: a manual offer, a failed
    send) are left out and counted in `excluded`; rows with a missing retained are dropped.

    Returns n_treated, n_untreated, retained_treated, retained_untreated, rate_treated and
    rate_untreated with Wilson 95% intervals (wilson_*_low/high), difference (treated -
    untreated) with its normal-approximation 95% interval (ci_low, ci_high), and a plain-words
    `conclusion`: too few comparable customers (< min_comparable on either side), no evidence
    of an effect (the interval includes 0), or the effect's direction and size."""
    treated_column = "treated" if "treated" in joined.columns else "flagged"
    needed = ["probability", treated_column, "retained"]
    absent = [c for c in needed if c not in joined.columns]
    if absent:
        raise KeyError(f"columns missing from the joined frame: {absent} (treated or flagged)")
    frame = joined[needed].dropna(subset=["probability", "retained"])
    p = frame["probability"].to_numpy(dtype=float)
    treated = frame[treated_column].astype("boolean").fillna(False).to_numpy(dtype=bool)
    retained = frame["retained"].to_numpy(dtype=float)
    above = (p >= threshold) & (p <= threshold + band)
    below = (p >= threshold - band) & (p < threshold)
    treated_side = above & treated
    untreated_side = below & ~treated
    excluded = int(((above & ~treated) | (below & treated)).sum())

    n_t, n_u = int(treated_side.sum()), int(untreated_side.sum())
    kept_t, kept_u = int(retained[treated_side].sum()), int(retained[untreated_side].sum())
    difference, low, high = difference_interval(kept_t, n_t, kept_u, n_u)
    wilson_t, wilson_u = wilson_interval(kept_t, n_t), wilson_interval(kept_u, n_u)
    if n_t < min_comparable or n_u < min_comparable:
        conclusion = (
            f"too few comparable customers ({n_t} treated, {n_u} untreated within {band:g} "
            f"of the threshold; {min_comparable} needed on each side)"
        )
    elif low <= 0 <= high:
        conclusion = (
            f"no evidence of an effect: retention {kept_t / n_t:.1%} treated vs "
            f"{kept_u / n_u:.1%} untreated (difference {difference:+.1%}, 95% CI "
            f"{low:+.1%} to {high:+.1%})"
        )
    else:
        direction = "raised" if difference > 0 else "lowered"
        conclusion = (
            f"the action {direction} retention by {abs(difference) * 100:.1f} percentage points near the "
            f"threshold ({kept_t / n_t:.1%} treated vs {kept_u / n_u:.1%} untreated; 95% CI "
            f"{low:+.1%} to {high:+.1%})"
        )
    return {
        "threshold": threshold,
        "band": band,
        "n_treated": n_t,
        "n_untreated": n_u,
        "excluded": excluded,
        "retained_treated": kept_t,
        "retained_untreated": kept_u,
        "rate_treated": kept_t / n_t if n_t else math.nan,
        "rate_untreated": kept_u / n_u if n_u else math.nan,
        "wilson_treated_low": wilson_t[0],
        "wilson_treated_high": wilson_t[1],
        "wilson_untreated_low": wilson_u[0],
        "wilson_untreated_high": wilson_u[1],
        "mean_probability_treated": float(p[treated_side].mean()) if n_t else math.nan,
        "mean_probability_untreated": float(p[untreated_side].mean()) if n_u else math.nan,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "conclusion": conclusion,
    }


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------

BAND_COLOURS = {
    "stable": "tab:green",
    "moderate": "tab:orange",
    "significant": "tab:red",
    "unknown": "tab:grey",
}


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(str(path), format="png", dpi=100)
    return path


def plot_feature_drift(drift_frame: pd.DataFrame, path: str | Path) -> Path:
    """A horizontal bar per feature of `feature_drift`'s frame, its PSI coloured by band
    (drifted features' names starred), with the 0.1 and 0.25 band lines. Writes a PNG."""
    frame = drift_frame.iloc[::-1]  # the largest PSI on top
    figure = _figure(7, max(3.0, 0.35 * len(frame) + 1.5))
    axes = figure.add_subplot(1, 1, 1)
    names = [
        f"{f} *" if bool(d) else str(f)
        for f, d in zip(frame["feature"], frame["drifted"], strict=True)
    ]
    values = frame["psi"].fillna(0.0).to_numpy(dtype=float)
    colours = [BAND_COLOURS.get(str(b), "tab:grey") for b in frame["band"]]
    axes.barh(np.arange(len(frame)), values, color=colours)
    axes.set_yticks(np.arange(len(frame)))
    axes.set_yticklabels(names)
    axes.axvline(PSI_MODERATE, color="tab:orange", linestyle="--", label="0.1 moderate")
    axes.axvline(PSI_SIGNIFICANT, color="tab:red", linestyle="--", label="0.25 significant")
    axes.set_xlabel("PSI (training vs recent)")
    axes.set_title("Feature drift (* drifted)")
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_realized_auc(
    performance_frame: pd.DataFrame,
    path: str | Path,
    *,
    gate: float | None = None,
    x: str = "day",
    series: str = "model_version",
) -> Path:
    """Realized AUC of `realized_performance`'s frame per `x` (day), one line per `series`
    (model version), with the model's quality gate (e.g. auc: 0.75) as a line when given.
    Days with an undefined AUC leave a gap. Writes a PNG."""
    frame = performance_frame
    days = sorted({str(d) for d in frame[x]})
    position = {d: i for i, d in enumerate(days)}
    figure = _figure(max(6.0, 0.5 * len(days) + 2), 4.5)
    axes = figure.add_subplot(1, 1, 1)
    groups = (
        frame.groupby(series, sort=True, dropna=False) if series in frame.columns else [("", frame)]
    )
    for name, group in groups:
        xs = np.array([position[str(d)] for d in group[x]], dtype=float)
        order = np.argsort(xs, kind="stable")
        ys = group["auc"].to_numpy(dtype=float)[order]
        axes.plot(xs[order], ys, marker="o", label=f"{series} {name}" if series else "auc")
    if gate is not None:
        axes.axhline(gate, color="tab:red", linestyle="--", label=f"quality gate {gate:g}")
    axes.set_xticks(np.arange(len(days)))
    axes.set_xticklabels(days, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("Realized AUC")
    axes.set_title("Realized AUC")
    axes.legend(loc="lower left")
    return _save(figure, path)


def plot_calibration(table: pd.DataFrame, path: str | Path) -> Path:
    """`calibration_table`'s bins: observed rate against mean predicted probability (the
    point's size by its customers), with the diagonal a calibrated model lies on. Writes a
    PNG."""
    filled = table[table["n"] > 0]
    figure = _figure(5.5, 5.5)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
    counts = filled["n"].to_numpy(dtype=float)
    sizes = 20 + 180 * counts / max(float(counts.max()) if counts.size else 1.0, 1.0)
    axes.plot(filled["mean_predicted"], filled["observed_rate"], color="tab:blue")
    axes.scatter(filled["mean_predicted"], filled["observed_rate"], s=sizes, label="bins")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("Mean predicted probability")
    axes.set_ylabel("Observed rate")
    axes.set_title("Calibration")
    axes.legend(loc="upper left")
    return _save(figure, path)
