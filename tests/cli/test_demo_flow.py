"""`dp demo`'s flow as data (dataplatform/demo_flow.py): its plan from the spec and the
reconciliation arithmetic, without a platform."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dataplatform import demo, demo_flow
from dataplatform.naming import Names
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

PLATFORM = load_spec(REPO_ROOT / "spec")
NAMES = Names.for_environment(PLATFORM, PLATFORM.environment("dev"), account="123456789012")
FILES = {name: Path(f"/tmp/{name}") for name in ("telecom_events", "house_sales", "baskets")}


def test_the_plan_follows_the_spec():
    plan = demo_flow.plan(PLATFORM, NAMES, FILES)
    assert plan.streams == [d.name for d in PLATFORM.datasets if d.is_stream and d.name in FILES]
    assert plan.models == [m.name for m in PLATFORM.models]
    assert [name for name, _ in plan.features] == [f.name for f in PLATFORM.features]
    assert plan.steps == [("frequent_itemsets", demo.BASKET_MINING)]
    stages = plan.stages()
    assert len(stages) == 7 and stages[0].startswith("1/7") and stages[-1].startswith("7/7")
    assert "(telecom_events), upload to raw (house_sales, baskets)" in stages[1]
    assert plan.queries[-1].title.startswith("Association rules")
    assert all(f'"{NAMES.curated_database}"' in q.sql for q in plan.queries[:3])


def ingest_result(records: int, processing_failed: int | None):
    delivery = (
        None if processing_failed is None else SimpleNamespace(processing_failed=processing_failed)
    )
    return SimpleNamespace(records=records, delivery=delivery)


REPORT = {"rows_curated": 90, "rows_quarantined": 6, "duplicates_removed": 2}


def test_a_stream_dataset_reconciles_with_its_firehose_errors():
    r = demo_flow.reconcile("telecom_events", ingest_result(100, 2), REPORT)
    assert (r.accounted, r.balanced) == (100, True)
    assert r.line() == (
        "[green]OK[/green] telecom_events: ingested 100 = curated 90 + quarantined 6 + "
        "duplicates 2 + Firehose errors 2"
    )


def test_a_record_missing_anywhere_is_a_mismatch_and_fails_the_demo():
    batch = demo_flow.reconcile("house_sales", ingest_result(99, None), REPORT)
    assert (batch.firehose_errors, batch.accounted, batch.balanced) == (0, 98, False)
    assert batch.line().startswith("[red]MISMATCH[/red] house_sales: ingested 99")
    registered = demo_flow.ModelOutcome("churn", "arn:aws:sagemaker:x", "/m")
    outcome = demo_flow.DemoOutcome([batch], [registered])
    assert not outcome.succeeded
    balanced = demo_flow.reconcile("house_sales", ingest_result(98, None), REPORT)
    assert demo_flow.DemoOutcome([balanced], [registered]).succeeded
    refused = demo_flow.ModelOutcome("churn", None, "/m")
    assert not demo_flow.DemoOutcome([balanced], [refused]).succeeded
    assert "NOT registered" in refused.line()


def test_the_demo_builds_both_telecom_tables_at_its_cutoff():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    cutoffs = dict(demo.feature_builds(PLATFORM, now))
    assert cutoffs["customer_features"] == cutoffs["customer_value_features"] == "2026-11-05"
    assert cutoffs["house_features"] is None
    assert demo.pipeline_as_of(PLATFORM, now) == {
        "customer_features": "2026-11-05",
        "customer_value_features": "2026-11-05",
    }


def test_the_planted_truth_of_each_served_model_is_its_own():
    """churn's flags against the generator's churn probability, clv's against its expected
    value, each of the features the score carries, at the model's threshold."""
    import json
    import random

    rng = random.Random(3)
    scores = []
    for i in range(60):
        features = {
            "dropped_calls_30d": rng.randrange(8),
            "support_tickets_30d": rng.randrange(4),
            "late_payments_30d": rng.randrange(3),
            "amount_eur_30d": round(rng.uniform(0, 400), 2),
        }
        scores.append(
            {
                "customer_id": f"c{i}",
                "features": json.dumps(features),
                "flagged": rng.random() < 0.3,
            }
        )
    for model, threshold, truth_of in (
        ("churn", 0.8, demo.churn_probability),
        ("clv", 150.0, demo.expected_value),
    ):
        truth = demo_flow.planted_truth(scores, threshold, model)
        above = {
            s["customer_id"] for s in scores if truth_of(json.loads(s["features"])) >= threshold
        }
        flagged = {s["customer_id"] for s in scores if s["flagged"]}
        assert (truth.scored, truth.flagged, truth.truly_at_risk) == (60, len(flagged), len(above))
        assert truth.precision == len(flagged & above) / len(flagged)
        assert truth.recall == len(flagged & above) / len(above)
        assert demo_flow.PLANTED[model][0] in truth.line()
