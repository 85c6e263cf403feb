"""The monitor's judgement (dataplatform/model_monitor.py) on planted truth.

The drift: dataplatform/demo_drift.py's activity stays the same day after day until a
producer release sends data_mb in kilobytes. The churn model's monitor, given the training
features and the served inputs as the scorer sends them (the online features' JSON), flags
on each day exactly the features whose values the release changed (computed by comparing
with the same events without it) and none before the release. The breaches and the figures
published follow from the report; a realized AUC under the floor is a breach only with
enough outcomes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dataplatform import demo_drift, model_monitor
from dataplatform.online import features as online
from dataplatform.spec import load_spec

SPEC = load_spec("spec")
CHURN = next(m for m in SPEC.models if m.name == "churn")


@pytest.fixture(scope="module")
def scenario():
    planted = demo_drift.drift_scenario()
    unplanted = demo_drift.drift_scenario(planted=False)
    days = [planted.training_day, *planted.served_days]
    return (
        planted,
        demo_drift.online_features(planted.events, days),
        demo_drift.online_features(unplanted.events, days),
    )


def served_scores(rows_by_day: dict, days) -> pd.DataFrame:
    return pd.DataFrame(demo_drift.served_scores(rows_by_day, list(days)))


def inputs_of(scores: pd.DataFrame, reference: pd.DataFrame, joined=None):
    return model_monitor.MonitorInputs(
        reference=reference,
        scores=scores,
        joined=joined
        if joined is not None
        else pd.DataFrame(columns=["probability", "outcome", "day", "model_version"]),
        reference_scores=None,
        features=model_monitor.model_features(CHURN, list(reference.columns)),
        window=(scores.day.min(), scores.day.max()) if len(scores) else None,
    )


def test_the_monitor_flags_the_planted_features_on_their_days_and_nothing_else(scenario):
    planted, with_release, without = scenario
    assert model_monitor.model_features(CHURN, list(online.ONLINE_COLUMNS)) == list(
        online.FEATURE_COLUMNS
    )  # churn's inputs, not the other served model's
    reference = pd.DataFrame(with_release[planted.training_day])
    report = model_monitor.judge(
        CHURN, inputs_of(served_scores(with_release, planted.served_days), reference)
    )
    flagged = report.drift_by_day[report.drift_by_day.drifted]
    truth_days = 0
    for day in planted.served_days:
        truth = demo_drift.drifted_features(with_release[day], without[day])
        found = set(flagged.loc[flagged.day == day.isoformat(), "feature"])
        assert found == truth, day
        truth_days += bool(truth)
        assert bool(truth) == (day >= planted.drift_day)
    assert truth_days == sum(d >= planted.drift_day for d in planted.served_days) > 1
    assert set(report.drifted_features) == {"data_mb_7d", "data_mb_30d", "usage_trend"}
    assert report.breaches and report.breaches[0].startswith(
        "drift: data_mb_30d, data_mb_7d, usage_trend"
    )
    metrics = report.metrics()
    assert metrics[model_monitor.METRIC_DRIFTED_FEATURES] == 3.0
    assert metrics[model_monitor.METRIC_BREACH] == 1.0


def test_before_the_release_nothing_is_flagged_and_nothing_is_breached(scenario):
    planted, with_release, _ = scenario
    reference = pd.DataFrame(with_release[planted.training_day])
    before = [d for d in planted.served_days if d < planted.drift_day]
    report = model_monitor.judge(CHURN, inputs_of(served_scores(with_release, before), reference))
    assert len(report.drift_by_day) == len(before) * len(report.drift)
    assert not report.drift.drifted.any() and not report.drift_by_day.drifted.any()
    assert report.drift.psi.max() < 0.1  # stable band: the same activity, sampled again
    assert report.breaches == []
    assert report.metrics()[model_monitor.METRIC_BREACH] == 0.0


def test_the_served_inputs_are_the_scores_features_json_column_for_column(scenario):
    planted, with_release, _ = scenario
    day = planted.served_days[0]
    scores = served_scores(with_release, [day])
    served = model_monitor.served_inputs(scores, list(online.FEATURE_COLUMNS))
    expected = pd.DataFrame(with_release[day])[list(online.FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(
        served[list(online.FEATURE_COLUMNS)].astype(float),
        expected.astype(float),
        check_names=False,
    )
    assert set(served.day) == {day.isoformat()}


def joined_outcomes(n: int, *, informative: bool, seed: int = 3) -> pd.DataFrame:
    """Scores with what happened: churn drawn from the score (informative) or from a coin."""
    rng = np.random.default_rng(seed)
    probability = rng.uniform(0, 1, n)
    churned = rng.uniform(0, 1, n) < (probability if informative else 0.5)
    return pd.DataFrame(
        {
            "day": ["2026-11-01"] * n,
            "model_version": ["1"] * n,
            "probability": probability,
            "outcome": churned.astype(float),
            "treated": probability >= CHURN.serving.threshold,
        }
    )


@pytest.mark.parametrize(
    "n, informative, breach", [(400, True, False), (400, False, True), (30, False, False)]
)
def test_a_realized_auc_under_the_floor_is_a_breach_with_enough_outcomes(
    n, informative, breach, scenario
):
    planted, with_release, _ = scenario
    reference = pd.DataFrame(with_release[planted.training_day])
    scores = served_scores(with_release, [planted.served_days[0]])
    joined = joined_outcomes(n, informative=informative)
    report = model_monitor.judge(CHURN, inputs_of(scores, reference, joined))
    expected_auc = roc_auc_score(joined.outcome, joined.probability)
    assert report.overall["auc"] == pytest.approx(expected_auc)
    assert report.overall["n"] == n
    floor = CHURN.monitoring.auc
    assert (expected_auc < floor) == (not informative)  # the data is what the case says
    assert any(b.startswith("realized AUC") for b in report.breaches) == breach
    if n < CHURN.monitoring.min_outcomes:
        assert any("not judged" in note for note in report.notes)
    assert report.metrics()[model_monitor.METRIC_REALIZED_AUC] == pytest.approx(expected_auc)
    assert (
        not math.isnan(report.intervention["difference"]) or report.intervention["n_treated"] < 20
    )
