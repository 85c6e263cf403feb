"""The stream scorer's effects on moto's DynamoDB and EventBridge (in-process): a
redelivered batch and a replay change nothing, events out of order land on their own day,
records the curate job would quarantine are left out, and a failing endpoint is a partial
batch failure from the right record. A regression model (clv) is scored on the same path:
its prediction is kept and compared with its value threshold, its own event is put, and two
models served from one stream keep their own online items. The endpoint here is scripted
(its answer is a fixed function of the features): what is checked is what the scorer
wrote, not the model."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
from datetime import UTC, date, datetime, timedelta

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from dataplatform.naming import Names
from dataplatform.online import features as online
from dataplatform.online.scorer import (
    ScorerConfig,
    StreamRecord,
    customer_events,
    lake_record,
    score_batch,
)
from dataplatform.paths import REPO_ROOT
from dataplatform.serving import scorer_environment
from dataplatform.spec import SCORE_RECORD_FIELDS, load_spec
from tests.online.serving_resources import ensure_serving

PLATFORM = load_spec(REPO_ROOT / "spec")
NAMES = Names.for_environment(PLATFORM, PLATFORM.environment("dev"), account="123456789012")
REGION = NAMES.region
DAY = date(2026, 11, 20)


class ScriptedEndpoint:
    """InvokeEndpoint's shape; probability = a fixed function of the dropped calls."""

    def __init__(self, fail: bool = False, config_name: str = "{endpoint}-v1"):
        self.calls, self.fail, self.config_name = [], fail, config_name

    def describe_endpoint(self, EndpointName: str):  # noqa: N803 (the API's name)
        return {
            "EndpointName": EndpointName,
            "EndpointConfigName": self.config_name.format(endpoint=EndpointName),
        }

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


def config(model: str = "churn", scores_stream: str | None = None, **overrides) -> ScorerConfig:
    """The scorer of a shipped model, configured as the serving stack configures its Lambda."""
    spec = next(m for m in PLATFORM.models if m.name == model)
    environment = scorer_environment(
        spec,
        NAMES,
        features_table=NAMES.online_features_table,
        scores_table=NAMES.scores_table,
        event_bus=NAMES.event_bus,
        scores_stream=scores_stream,
    )
    configured = ScorerConfig.from_environment(environment, PLATFORM.dataset("telecom_events"))
    return dataclasses.replace(configured, **overrides)


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
    return lambda service: (
        endpoint if service in ("sagemaker-runtime", "sagemaker") else aws[service]
    )


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


@pytest.mark.parametrize("config_name, version", [("{endpoint}-v12", "12"), ("made-by-hand", "v1")])
def test_scores_carry_the_package_version_the_endpoint_serves(aws, config_name, version):
    """The endpoint configuration the deployer made for package version N is named
    `<endpoint>-vN`: the scores (and the lake's) carry N, so realized performance is per
    version; a configuration of another name leaves the production variant's name."""
    endpoint = ScriptedEndpoint(config_name=config_name)
    result = score_batch(records(sample()), clients_of(aws, endpoint), config())
    assert result.scored and {s["model_version"] for s in result.scored} == {version}
    assert {lake_record(s)["model_version"] for s in result.scored} == {version}
    assert {f["model_version"] for f in result.flagged} == {version}


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
        stored = customer_events(
            aws["dynamodb"], NAMES.online_features_table, customer, scorer="churn"
        )
        expected = [online.event_of(_typed(e)) for e in events if e["customer_id"] == customer]
        for as_of in (DAY - timedelta(days=3), DAY):
            assert online.features_at(stored, as_of) == online.features_at(expected, as_of)
    # a late event of an earlier day counts in that day's window only
    late = event(50, "cust-a", DAY - timedelta(days=20), call_dropped=True)
    score_batch(records([late]), clients_of(aws, ScriptedEndpoint()), config())
    stored = customer_events(aws["dynamodb"], NAMES.online_features_table, "cust-a", scorer="churn")
    assert online.features_at(stored, DAY)["dropped_calls_30d"] == 7
    assert online.features_at(stored, DAY)["dropped_calls_7d"] == 6


def test_a_resent_event_keeps_its_latest_copy(aws):
    original = event(1, "cust-a", DAY - timedelta(days=2), call_dropped=False)
    resent = {**original, "event_time": event(1, "cust-a", DAY)["event_time"], "call_dropped": True}
    score_batch(records([resent, original]), clients_of(aws, ScriptedEndpoint()), config())
    stored = customer_events(aws["dynamodb"], NAMES.online_features_table, "cust-a", scorer="churn")
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


# ----------------------------------------------------------------------------- a regression model

CLV = next(m for m in PLATFORM.models if m.name == "clv")
VALUE_WEIGHTS = {"amount_eur_30d": 2.0, "payments_30d": 3.0, "late_payments_30d": -10.0}


def scripted_value(inputs: dict) -> float:
    return sum(w * inputs[c] for c, w in VALUE_WEIGHTS.items())


class ScriptedValueEndpoint:
    """A regression endpoint's shape (training/inference.py: {"prediction": y}); the
    prediction is a fixed linear function of its inputs."""

    def __init__(self):
        self.calls = []

    def describe_endpoint(self, EndpointName: str):  # noqa: N803 (the API's name)
        return {"EndpointName": EndpointName, "EndpointConfigName": f"{EndpointName}-v3"}

    def invoke_endpoint(self, **request):
        rows = json.loads(request["Body"])
        self.calls.append(rows)
        answers = [{"prediction": scripted_value(r)} for r in rows]
        return {
            "Body": io.BytesIO(json.dumps({"predictions": answers}).encode()),
            "InvokedProductionVariant": "v3",
        }


def purchase_history(seed: int, customers: int = 14) -> list[dict]:
    """Random telecom events of 40 days up to DAY: payments (each customer its own spend,
    some late), calls (some dropped), support tickets and data sessions."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for c in range(customers):
        customer, spend = f"cust-{c:02d}", rng.uniform(2, 45)
        for _ in range(rng.randrange(2, 14)):
            day = DAY - timedelta(days=rng.randrange(40))
            kind = rng.choice(["payment", "payment", "call", "support_ticket", "data_session"])
            fields: dict = {
                "payment": {
                    "amount_eur": round(spend * rng.uniform(0.5, 1.5), 2),
                    "payment_days_late": rng.choice([0, 0, 0, 4]),
                },
                "call": {"call_dropped": rng.random() < 0.3, "duration_s": 60.0},
                "data_session": {"data_mb": round(rng.uniform(1, 90), 2)},
                "support_ticket": {},
            }[kind]
            rows.append(event(len(rows), customer, day, kind, **fields))
    return rows


def expected_value_inputs(rows: list[dict]) -> tuple[pd.DataFrame, pd.Series]:
    """customer_value_features.sql's inputs with pandas, per customer as of its latest event
    day (the day the scorer scores), from the SQL file's header; and that day."""
    frame = pd.DataFrame(rows)
    frame["day"] = pd.to_datetime(frame.event_time).dt.tz_localize(None).dt.normalize()
    frame["as_of"] = frame.groupby("customer_id").day.transform("max")
    window = frame[frame.day > frame.as_of - pd.Timedelta(days=30)]
    by = "customer_id"
    payments = window[window.event_type == "payment"]
    expected = pd.DataFrame(
        {
            "payments_30d": payments.groupby(by).size(),
            "amount_eur_30d": payments.groupby(by).amount_eur.sum(),
            "late_payments_30d": payments[payments.payment_days_late > 0].groupby(by).size(),
            "dropped_calls_30d": window[
                (window.event_type == "call") & window.call_dropped.eq(True)
            ]
            .groupby(by)
            .size(),
            "support_tickets_30d": window[window.event_type == "support_ticket"].groupby(by).size(),
        },
        index=sorted(frame.customer_id.unique()),
    ).fillna(0)
    expected["days_since_last_activity"] = 0  # scored as of its latest event day
    return expected[list(CLV.feature_columns)], frame.groupby(by).as_of.max().dt.date


def stream_lines(kinesis, stream: str) -> list[dict]:
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]


def queued_events(aws) -> list[dict]:
    queue = aws["sqs"].get_queue_url(QueueName=NAMES.interventions_queue)["QueueUrl"]
    bodies = []
    while True:
        messages = aws["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        if not messages.get("Messages"):
            return bodies
        for m in messages["Messages"]:
            bodies.append(json.loads(m["Body"]))
            aws["sqs"].delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


def test_a_regression_model_keeps_its_prediction_flags_at_its_value_and_puts_its_event(aws):
    """clv (regression): the endpoint gets exactly the model's inputs, computed as pandas
    computes customer_value_features.sql's over the same events; the score kept is the
    prediction, flagged at or above the spec's threshold in EUR; each flagged customer is
    one HighValueCustomer event; the lake record carries the prediction."""
    scores_stream = NAMES.stream("clv_scores")
    aws["kinesis"].create_stream(StreamName=scores_stream, ShardCount=1)
    rows = purchase_history(seed=5)
    endpoint = ScriptedValueEndpoint()
    settings = config("clv", scores_stream=scores_stream)
    assert (settings.problem, settings.score_field, settings.event) == (
        "regression",
        "prediction",
        "HighValueCustomer",
    )

    result = score_batch(records(rows), clients_of(aws, endpoint), settings)

    assert result.error is None and result.failed_from is None
    expected, as_of = expected_value_inputs(rows)
    threshold = CLV.serving.threshold
    predicted = {c: scripted_value(r) for c, r in expected.iterrows()}
    flagged = {c for c, value in predicted.items() if value >= threshold}
    assert 0 < len(flagged) < len(predicted)  # the data has customers on both sides
    (sent,) = endpoint.calls
    assert all(list(r) == list(CLV.feature_columns) for r in sent)  # its inputs, no others
    scores = {s["customer_id"]: s for s in result.scored}
    assert set(scores) == set(expected.index)
    for customer, want in expected.iterrows():
        score = scores[customer]
        assert json.loads(score["features"]) == pytest.approx(want.to_dict())
        assert "probability" not in score
        assert float(score["prediction"]) == pytest.approx(predicted[customer])
        assert score["flagged"] is (customer in flagged)
        assert score["sk"] == f"score#clv#{as_of[customer].isoformat()}"
    events = queued_events(aws)
    assert {e["detail-type"] for e in events} == {"HighValueCustomer"}
    assert {e["detail"]["customer_id"] for e in events} == flagged
    for e in events:
        detail = e["detail"]
        assert (detail["model"], detail["action"], detail["threshold"]) == (
            "clv",
            "loyalty_offer",
            threshold,
        )
        assert detail["prediction"] == pytest.approx(predicted[detail["customer_id"]])
    lines = stream_lines(aws["kinesis"], scores_stream)
    assert {line["customer_id"] for line in lines} == set(expected.index)
    assert all(set(line) == {*SCORE_RECORD_FIELDS, "prediction"} for line in lines)
    assert [lake_record(s) for s in result.scored] == lines


def test_two_models_served_from_one_stream_keep_their_own_items_scores_and_events(aws):
    """churn and clv score the same records (two consumers of the stream): each keeps its
    own online item per customer (one writer per item), its own scores and its own events,
    and a replay of either changes nothing of the other's."""
    rows = purchase_history(seed=8, customers=10) + sample()
    batch = records(rows)
    churn = score_batch(batch, clients_of(aws, ScriptedEndpoint()), config())
    clv = score_batch(batch, clients_of(aws, ScriptedValueEndpoint()), config("clv"))
    assert churn.error is None and clv.error is None
    customers = {s["customer_id"] for s in churn.scored}
    assert customers == {s["customer_id"] for s in clv.scored}
    items = table_items(aws["dynamodb"], NAMES.online_features_table)
    assert {(i["customer_id"]["S"], i["sk"]["S"]) for i in items} == {
        (c, f"events#{m}") for c in customers for m in ("churn", "clv")
    }
    for customer in customers:
        kept = [
            customer_events(aws["dynamodb"], NAMES.online_features_table, customer, scorer=m)
            for m in ("churn", "clv")
        ]
        assert kept[0] == kept[1]
    scores = table_items(aws["dynamodb"], NAMES.scores_table)
    assert {i["sk"]["S"].split("#")[1] for i in scores if i["sk"]["S"].startswith("score#")} == {
        "churn",
        "clv",
    }
    events = queued_events(aws)
    by_type = {
        kind: {e["detail"]["customer_id"] for e in events if e["detail-type"] == kind}
        for kind in ("HighChurnRisk", "HighValueCustomer")
    }
    assert by_type == {
        "HighChurnRisk": {f["customer_id"] for f in churn.flagged},
        "HighValueCustomer": {f["customer_id"] for f in clv.flagged},
    }
    assert by_type["HighChurnRisk"] and by_type["HighValueCustomer"]
    stored = [
        table_items(aws["dynamodb"], t) for t in (NAMES.online_features_table, NAMES.scores_table)
    ]
    again = score_batch(batch, clients_of(aws, ScriptedValueEndpoint()), config("clv"))
    assert again.flagged == [] and queued_events(aws) == []
    assert [
        table_items(aws["dynamodb"], t) for t in (NAMES.online_features_table, NAMES.scores_table)
    ] == stored


def test_an_endpoint_answering_another_problems_score_is_a_partial_failure(aws):
    """clv's scorer reads `prediction`: a classifier's answer (a package of another
    problem behind the endpoint) fails the batch from its first record, naming the field."""
    result = score_batch(records(sample()), clients_of(aws, ScriptedEndpoint()), config("clv"))
    assert result.failed_from == "00000"
    assert "without `prediction`" in result.error and "regression" in result.error
    assert result.scored == []
