"""The stream scorer's effects on moto's DynamoDB and EventBridge (in-process): a
redelivered batch and a replay change nothing, events out of order land on their own day,
records the curate job would quarantine are left out, and a failing endpoint is a partial
batch failure from the right record. The endpoint here is scripted (its answer is a fixed
function of the features): what is checked is what the scorer wrote, not the model."""

from __future__ import annotations

import io
import json
import math
import random
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from dataplatform.naming import Names
from dataplatform.online import features as online
from dataplatform.online.scorer import ScorerConfig, StreamRecord, customer_events, score_batch
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import load_spec
from tests.online.serving_resources import ensure_serving

PLATFORM = load_spec(REPO_ROOT / "spec")
NAMES = Names.for_environment(PLATFORM, PLATFORM.environment("dev"), account="123456789012")
REGION = NAMES.region
DAY = date(2026, 11, 20)


class ScriptedEndpoint:
    """InvokeEndpoint's shape; probability = a fixed function of the dropped calls."""

    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def invoke_endpoint(self, **request):
        if self.fail:
            raise RuntimeError("endpoint down")
        rows = json.loads(request["Body"])
        self.calls.append(rows)
        answers = [
            {"probability": 1 / (1 + math.exp(-(r["dropped_calls_30d"] - 2))), "label": 0}
            for r in rows
        ]
        return {
            "Body": io.BytesIO(json.dumps({"predictions": answers}).encode()),
            "InvokedProductionVariant": "v1",
        }


@pytest.fixture
def aws():
    with mock_aws():
        clients = {
            s: boto3.client(s, region_name=REGION)
            for s in ("dynamodb", "events", "sqs", "kms", "kinesis")
        }
        key = clients["kms"].create_key()["KeyMetadata"]["Arn"]
        ensure_serving(lambda s: clients[s], NAMES, key)
        yield clients


def config(**overrides) -> ScorerConfig:
    values = dict(
        model="churn",
        endpoint=NAMES.endpoint("churn"),
        features_table=NAMES.online_features_table,
        scores_table=NAMES.scores_table,
        event_bus=NAMES.event_bus,
        threshold=0.8,
        action="offer",
        dataset=PLATFORM.dataset("telecom_events"),
    )
    values.update(overrides)
    return ScorerConfig(**values)


def event(i: int, customer: str, day: date, kind: str = "call", **fields) -> dict:
    moment = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(minutes=i)
    return {
        "event_id": f"e{i}",
        "customer_id": customer,
        "event_type": kind,
        "event_time": moment.isoformat().replace("+00:00", "Z"),
        **fields,
    }


def records(events: list[dict]) -> list[StreamRecord]:
    return [StreamRecord(f"{i:05d}", json.dumps(e).encode()) for i, e in enumerate(events)]


def sample() -> list[dict]:
    rows = []
    for i in range(6):
        rows.append(event(i, "cust-a", DAY - timedelta(days=i), call_dropped=True))
    rows.append(event(10, "cust-b", DAY, "data_session", data_mb=12.5))
    rows.append(
        event(
            11, "cust-b", DAY - timedelta(days=10), "payment", amount_eur=20.0, payment_days_late=5
        )
    )
    rows.append(event(12, "cust-c", DAY, "fax"))  # curate: event_type:allowed
    rows.append(event(13, "cust-c", DAY, "call", duration_s="N/A"))  # curate: duration_s:type
    return rows


def table_items(dynamodb, table: str) -> list[dict]:
    return sorted(
        (i for p in dynamodb.get_paginator("scan").paginate(TableName=table) for i in p["Items"]),
        key=lambda i: (i["customer_id"]["S"], i["sk"]["S"]),
    )


def clients_of(aws, endpoint):
    return lambda service: endpoint if service == "sagemaker-runtime" else aws[service]


def test_features_flags_and_left_out_records(aws):
    result = score_batch(records(sample()), clients_of(aws, ScriptedEndpoint()), config())
    assert result.error is None and result.failed_from is None
    assert result.left_out == {"event_type:allowed": 1, "duration_s:type": 1}
    assert result.events_kept == 8
    scores = {s["customer_id"]: s for s in result.scored}
    assert set(scores) == {"cust-a", "cust-b"}  # cust-c had no valid event
    a = json.loads(scores["cust-a"]["features"])
    assert (a["calls_7d"], a["dropped_calls_30d"], a["days_since_last_activity"]) == (6, 6, 0)
    b = json.loads(scores["cust-b"]["features"])
    assert (b["data_mb_7d"], b["late_payments_30d"], b["amount_eur_30d"]) == (12.5, 1, 20.0)
    assert b["usage_trend"] == pytest.approx(30 / 7)
    assert [f["customer_id"] for f in result.flagged] == ["cust-a"]  # sigmoid(6-2) >= 0.8
    assert result.flagged[0]["intervention_id"] == f"churn#cust-a#{DAY.isoformat()}"


def test_a_redelivered_batch_and_a_replay_change_nothing(aws):
    endpoint = ScriptedEndpoint()
    batch = records(sample())
    first = score_batch(batch, clients_of(aws, endpoint), config())
    stored = [
        table_items(aws["dynamodb"], t) for t in (NAMES.online_features_table, NAMES.scores_table)
    ]
    again = score_batch(batch, clients_of(aws, endpoint), config())  # a Lambda retry
    replay = score_batch(batch[:3] + batch, clients_of(aws, endpoint), config())  # overlapping
    assert [
        table_items(aws["dynamodb"], t) for t in (NAMES.online_features_table, NAMES.scores_table)
    ] == stored
    assert len(first.flagged) == 1 and again.flagged == [] and replay.flagged == []
    assert [s["probability"] for s in again.scored] == [s["probability"] for s in first.scored]


def test_a_replayed_batch_writes_no_feature_item_and_a_new_event_only_its_customers(aws):
    """Customer items the batch leaves as they are stored are not written again (a retry
    or a replay costs reads, not writes); an item with a new event is."""
    endpoint = ScriptedEndpoint()
    batch = records(sample())
    score_batch(batch, clients_of(aws, endpoint), config())
    written: list[str] = []

    def count_feature_items(params, **_):
        for request in params["RequestItems"].get(NAMES.online_features_table, []):
            written.append(request["PutRequest"]["Item"]["customer_id"]["S"])

    dynamodb = aws["dynamodb"]
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.BatchWriteItem", count_feature_items
    )
    score_batch(batch, clients_of(aws, endpoint), config())
    assert written == []
    news = records([*sample(), event(20, "cust-b", DAY, "call")])
    score_batch(news, clients_of(aws, endpoint), config())
    assert written == ["cust-b"]
    after = {i["customer_id"]["S"]: i for i in table_items(dynamodb, NAMES.online_features_table)}
    assert "e20" in json.loads(after["cust-b"]["events"]["S"])


def test_out_of_order_events_land_on_their_own_day(aws):
    events = sample()[:8]
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    score_batch(records(shuffled), clients_of(aws, ScriptedEndpoint()), config())
    for customer in ("cust-a", "cust-b"):
        stored = customer_events(aws["dynamodb"], NAMES.online_features_table, customer)
        expected = [online.event_of(_typed(e)) for e in events if e["customer_id"] == customer]
        for as_of in (DAY - timedelta(days=3), DAY):
            assert online.features_at(stored, as_of) == online.features_at(expected, as_of)
    # a late event of an earlier day counts in that day's window only
    late = event(50, "cust-a", DAY - timedelta(days=20), call_dropped=True)
    score_batch(records([late]), clients_of(aws, ScriptedEndpoint()), config())
    stored = customer_events(aws["dynamodb"], NAMES.online_features_table, "cust-a")
    assert online.features_at(stored, DAY)["dropped_calls_30d"] == 7
    assert online.features_at(stored, DAY)["dropped_calls_7d"] == 6


def test_a_resent_event_keeps_its_latest_copy(aws):
    original = event(1, "cust-a", DAY - timedelta(days=2), call_dropped=False)
    resent = {**original, "event_time": event(1, "cust-a", DAY)["event_time"], "call_dropped": True}
    score_batch(records([resent, original]), clients_of(aws, ScriptedEndpoint()), config())
    stored = customer_events(aws["dynamodb"], NAMES.online_features_table, "cust-a")
    assert len(stored) == 1 and stored[0].day == DAY and stored[0].call_dropped is True


def test_a_failing_endpoint_is_a_partial_failure_from_the_first_unscored_record(aws):
    result = score_batch(records(sample()), clients_of(aws, ScriptedEndpoint(fail=True)), config())
    assert result.failed_from == "00000" and "endpoint down" in result.error
    assert result.scored == [] and result.flagged == []
    assert table_items(aws["dynamodb"], NAMES.scores_table) == []


def test_the_interventions_queue_gets_the_high_risk_event(aws):
    score_batch(records(sample()), clients_of(aws, ScriptedEndpoint()), config())
    queue = aws["sqs"].get_queue_url(QueueName=NAMES.interventions_queue)["QueueUrl"]
    messages = aws["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert [(b["detail-type"], b["detail"]["customer_id"]) for b in bodies] == [
        ("HighChurnRisk", "cust-a")
    ]


def _typed(record: dict) -> dict:
    from dataplatform.online.records import curated_row

    row, reason = curated_row(record, PLATFORM.dataset("telecom_events"))
    assert row is not None, reason
    return row


def test_the_scorer_asks_dynamodb_exactly_what_its_role_allows(aws):
    """The serving stack grants the scorer DYNAMODB_CALLS on its tables, no more: a scorer
    run (flags included) makes those calls and no others."""
    from dataplatform.online.scorer import DYNAMODB_CALLS

    made: set[str] = set()
    dynamodb = aws["dynamodb"]
    dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: made.add(model.name))
    score_batch(records(sample()), clients_of(aws, ScriptedEndpoint()), config())
    assert made == set(DYNAMODB_CALLS)
