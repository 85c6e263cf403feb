"""The stream scorer of one served model: a batch of stream records in, for every customer
it touches the online features updated, the model's endpoint asked with the model's own
inputs, the score kept (a classifier's `probability`, a regression's `prediction`) and, at
or above the threshold, the model's event put (its detail-type from the spec: churn's
HighChurnRisk, clv's HighValueCustomer). The Lambda (lambdas/stream_scorer) and the local
platform's consumer call `score_batch` with their own clients; nothing here knows which,
nor which model it scores beyond its ScorerConfig.

Exactly-once effect: events are kept by id (a redelivered batch rewrites the same items),
the score of a model, customer and day is one item (rewritten with the same values), and
the event of a model, customer and day is put once: a marker item is written after the
event was put, and an event whose marker exists is not put again (a crash between the two
puts it twice, with the same `intervention_id`, for the CRM to drop the copy).

The day scored is the customer's latest event day: event time, not the clock, so a replay
scores as the first pass did."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from dataplatform.online import features as online
from dataplatform.online.records import curated_row
from dataplatform.spec import SCORE_FIELDS, Dataset

# The event source mapping's batch and retries (the serving stack) and the local consumer's
BATCH_SIZE = 500
MAX_RETRIES = 3
# What the scorer asks of DynamoDB, on its two tables: the scorer role's actions are these
# (tests/online checks the scorer makes exactly these calls)
DYNAMODB_CALLS = ("BatchGetItem", "BatchWriteItem", "PutItem")
# And of SageMaker, on its endpoint: InvokeEndpoint (sagemaker-runtime) and DescribeEndpoint
# (which version it serves)
SAGEMAKER_CALLS = ("InvokeEndpoint", "DescribeEndpoint")
EVENT_SOURCE = "dataplatform.scoring"
SCORE_RETENTION_DAYS = 400


@dataclass(frozen=True)
class ScorerConfig:
    model: str
    endpoint: str
    features_table: str
    scores_table: str
    event_bus: str
    threshold: float  # a probability, or a predicted value (regression)
    action: str
    dataset: Dataset  # the stream dataset the records belong to
    problem: str  # the model's: binary_classification or regression
    feature_columns: tuple[str, ...]  # the model's inputs, sent to its endpoint
    event: str  # the detail-type of the events put at or above the threshold
    scores_stream: str | None = None  # the scores dataset's Kinesis stream, if any

    @property
    def score_field(self) -> str:
        """The endpoint's answer field the scorer reads and keeps."""
        return SCORE_FIELDS[self.problem]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], dataset: Dataset) -> ScorerConfig:
        """As the serving stack configures the scorer Lambda (dataplatform/serving.py's
        scorer_environment writes these variables)."""
        return cls(
            model=environ["MODEL_NAME"],
            endpoint=environ["ENDPOINT_NAME"],
            features_table=environ["FEATURES_TABLE"],
            scores_table=environ["SCORES_TABLE"],
            event_bus=environ["EVENT_BUS_NAME"],
            threshold=float(environ["THRESHOLD"]),
            action=environ["ACTION"],
            dataset=dataset,
            problem=environ["PROBLEM"],
            feature_columns=tuple(environ["FEATURE_COLUMNS"].split(",")),
            event=environ["EVENT_TYPE"],
            scores_stream=environ.get("SCORES_STREAM") or None,
        )


@dataclass
class BatchResult:
    records: int = 0
    events_kept: int = 0
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> records (the quarantine's)
    scored: list[dict] = field(default_factory=list)  # the score items written
    flagged: list[dict] = field(default_factory=list)  # the events put (their details)
    failed_from: str | None = None  # the first record (its id) not done, when a step failed
    error: str | None = None
    invoke_seconds: float = 0.0


@dataclass(frozen=True)
class StreamRecord:
    record_id: str  # the Kinesis sequence number (partial batch responses name it)
    data: bytes
    arrived: float | None = None  # when it was put on the stream (approximate arrival), s


def _decode(record: StreamRecord) -> dict | None:
    try:
        value = json.loads(record.data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def score_batch(
    records: list[StreamRecord],
    clients: Callable[[str], Any],
    config: ScorerConfig,
    *,
    progress: Callable[[str], None] | None = None,
) -> BatchResult:
    """See the module doc. Never raises for a step that failed: `failed_from` names the
    first record to retry from (a Lambda returns it as its batchItemFailures)."""
    result = BatchResult(records=len(records))
    kept, touched = checked_events(records, config.dataset, result.left_out)
    dynamodb = clients("dynamodb")
    done: set[str] = set()
    try:
        after = keep_events(dynamodb, config.features_table, kept, scorer=config.model)
        result.events_kept = len(kept)
        rows = [r for r in (_features_now(c, after[c]) for c in sorted(after)) if r is not None]
        started = time.perf_counter()
        values, variant = _invoke(clients("sagemaker-runtime"), config, rows)
        result.invoke_seconds = time.perf_counter() - started
        if rows:
            variant = served_version(clients("sagemaker"), config.endpoint) or variant
        scores = [
            _score_item(config, row, value, variant)
            for row, value in zip(rows, values, strict=True)
        ]
        _write_items(dynamodb, config.scores_table, scores)
        result.scored += scores
        done.update(s["customer_id"] for s in scores if not s["flagged"])
        flagged = [s for s in scores if s["flagged"]]
        flagged_before = _flagged_before(dynamodb, config, flagged)
        for score in flagged:
            if score["score_id"] not in flagged_before:
                event_detail = _intervention(config, score)
                answer = clients("events").put_events(Entries=[event_detail])
                if answer.get("FailedEntryCount"):
                    raise RuntimeError(f"PutEvents refused: {answer['Entries']}")
                _mark_flagged(dynamodb, config, score)
                result.flagged.append(json.loads(event_detail["Detail"]))
            done.add(score["customer_id"])
        if config.scores_stream and scores:
            _send_scores(clients("kinesis"), config.scores_stream, scores)
    except Exception as exc:  # noqa: BLE001 - reported as a partial batch failure
        pending = [record_id for customer, record_id in touched.items() if customer not in done]
        order = {r.record_id: i for i, r in enumerate(records)}
        result.failed_from = (
            min(pending, key=order.__getitem__) if pending else records[0].record_id
        )
        result.error = f"{type(exc).__name__}: {exc}"
    if progress is not None:
        progress(
            f"{len(records)} records, {len(result.scored)} scored, {len(result.flagged)} flagged"
        )
    return result


def checked_events(
    records: list[StreamRecord], dataset: Dataset, left_out: dict[str, int]
) -> tuple[list[online.Event], dict[str, str]]:
    """The records that pass the curate rules, as events, and each customer's first record
    (the others counted in `left_out` by reason)."""
    touched: dict[str, str] = {}
    kept: list[online.Event] = []
    for record in records:
        value = _decode(record)
        row, reason = (
            curated_row(value, dataset) if value is not None else (None, "_line:malformed_json")
        )
        if row is None:
            left_out[reason] = left_out.get(reason, 0) + 1
            continue
        event = online.event_of(row)
        kept.append(event)
        touched.setdefault(event.customer_id, record.record_id)
    return kept, touched


def keep_events(
    dynamodb, table: str, events: Iterable[online.Event], *, scorer: str = ""
) -> dict[str, list]:
    """The events into their customers' items of `scorer` (idempotent); each customer's
    events after. An item the events leave as it is stored is not written again: a retried
    or replayed batch (Kinesis delivers at least once) costs reads, not writes."""
    by_customer: dict[str, list[online.Event]] = {}
    for event in events:
        by_customer.setdefault(event.customer_id, []).append(event)
    stored = _get_items(dynamodb, table, sorted(by_customer), scorer)
    after = {
        customer: online.merged(
            online.events_of_item(stored[customer]) if customer in stored else [], new
        )
        for customer, new in by_customer.items()
    }
    items = [online.customer_item(c, evs, scorer) for c, evs in sorted(after.items())]
    # compared as DynamoDB gives them back (numbers as Decimal)
    changed = [i for i in items if stored.get(i["customer_id"]) != plain_item(_typed(i))]
    _write_items(dynamodb, table, changed)
    return after


# ----------------------------------------------------------------------------- the store


def _typed(item: dict) -> dict:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in item.items() if v is not None}


def plain_item(item: dict) -> dict:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


def _batch_get(dynamodb, table: str, keys: list[dict]) -> list[dict]:
    """BatchGetItem of typed keys, consistent (100 keys a call; unprocessed keys asked
    again): the items found, typed."""
    found: list[dict] = []
    for start in range(0, len(keys), 100):
        request = {table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            found += answer.get("Responses", {}).get(table, [])
            request = answer.get("UnprocessedKeys") or {}
    return found


def _get_items(dynamodb, table: str, customers: list[str], scorer: str = "") -> dict[str, dict]:
    """The customers' items of `scorer`, by customer."""
    keys = [_typed(online.item_key(c, scorer)) for c in customers]
    items = (plain_item(item) for item in _batch_get(dynamodb, table, keys))
    return {item["customer_id"]: item for item in items}


def _write_items(dynamodb, table: str, items: list[dict]) -> None:
    """BatchWriteItem (25 items a call; unprocessed items written again)."""
    for start in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": _typed(i)}} for i in items[start : start + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def customer_events(dynamodb, table: str, customer: str, *, scorer: str = "") -> list[online.Event]:
    found = _get_items(dynamodb, table, [customer], scorer)
    return online.events_of_item(found[customer]) if customer in found else []


def online_features(
    dynamodb, table: str, customer: str, as_of: date, *, scorer: str = ""
) -> dict | None:
    """The customer's features as of a day, from the online store (`scorer`'s items)."""
    return online.features_at(customer_events(dynamodb, table, customer, scorer=scorer), as_of)


def _features_now(customer: str, events: list[online.Event]) -> dict | None:
    """As of the customer's latest event day (event time: a replay scores as before)."""
    if not events:
        return None
    latest = max(e.event_time for e in events)
    row = online.features_at(events, latest.date())
    if row is not None:
        row["scored_at"] = latest
    return row


# ----------------------------------------------------------------------------- the endpoint


def _inputs(config: ScorerConfig, row: dict) -> dict:
    """The model's own inputs of a customer's online features."""
    return {c: row[c] for c in config.feature_columns}


def _invoke(runtime, config: ScorerConfig, rows: list[dict]) -> tuple[list[float], str | None]:
    """The endpoint's score of each row: its `probability` or `prediction` field."""
    if not rows:
        return [], None
    endpoint, field_ = config.endpoint, config.score_field
    body = json.dumps([_inputs(config, r) for r in rows])
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="application/json", Accept="application/json"
    )
    predictions = json.loads(answer["Body"].read())["predictions"]
    if len(predictions) != len(rows):
        raise RuntimeError(
            f"{endpoint} answered {len(predictions)} predictions for {len(rows)} rows"
        )
    missing = [p for p in predictions if field_ not in p]
    if missing:
        raise RuntimeError(
            f"{endpoint} answered {missing[0]} without `{field_}`, the score of a "
            f"{config.problem} model: is the model's package of another problem?"
        )
    return [float(p[field_]) for p in predictions], answer.get("InvokedProductionVariant")


def served_version(sagemaker, endpoint: str) -> str | None:
    """The model package version the endpoint serves (its configuration's name, which the
    deployer makes `<endpoint>-v<version>`), asked once per batch: the scores are labelled
    with it, so realized performance can be judged per version (the production variant's
    name, "AllTraffic", is the same for every version). While an update is rolling out,
    the configuration named is the one serving until the switch."""
    from dataplatform.serving import deployed_version

    config_name = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    version = deployed_version(endpoint, config_name)
    return str(version) if version is not None else None


# ----------------------------------------------------------------------------- scores and events


def score_id(model: str, customer: str, as_of: date) -> str:
    return f"{model}#{customer}#{as_of.isoformat()}"


def _score_item(config: ScorerConfig, row: dict, value: float, variant: str | None) -> dict:
    as_of: date = row["as_of"]
    scored_at: datetime = row["scored_at"]
    return {
        "customer_id": row["customer_id"],
        "sk": f"score#{config.model}#{as_of.isoformat()}",
        "score_id": score_id(config.model, row["customer_id"], as_of),
        "model": config.model,
        "model_version": variant,
        "as_of": as_of.isoformat(),
        "scored_at": scored_at.isoformat(),
        config.score_field: repr(value),
        "threshold": repr(config.threshold),
        "flagged": value >= config.threshold,
        "action": config.action,
        "features": json.dumps(_inputs(config, row)),
        "expires_at": int((scored_at + timedelta(days=SCORE_RETENTION_DAYS)).timestamp()),
    }


def _marker_key(score: dict) -> dict:
    return {"customer_id": {"S": score["customer_id"]}, "sk": {"S": f"flagged#{score['score_id']}"}}


def _flagged_before(dynamodb, config: ScorerConfig, scores: list[dict]) -> set[str]:
    """The scores (their ids) whose event was already put: their markers,
    read in one BatchGetItem per 100 (a GetItem each made a replay of the stream's history
    spend a fifth of its time on these lookups). A batch scores a customer once, so its
    markers' keys are distinct, as BatchGetItem requires."""
    markers = _batch_get(dynamodb, config.scores_table, [_marker_key(s) for s in scores])
    return {item["sk"]["S"].removeprefix("flagged#") for item in markers}


def _mark_flagged(dynamodb, config: ScorerConfig, score: dict) -> None:
    dynamodb.put_item(
        TableName=config.scores_table,
        Item={**_marker_key(score), "expires_at": {"N": str(score["expires_at"])}},
    )


def _intervention(config: ScorerConfig, score: dict) -> dict:
    detail = {
        "intervention_id": score["score_id"],
        "customer_id": score["customer_id"],
        "model": config.model,
        "model_version": score["model_version"],
        config.score_field: float(score[config.score_field]),
        "threshold": config.threshold,
        "action": config.action,
        "as_of": score["as_of"],
        "scored_at": score["scored_at"],
    }
    return {
        "Source": EVENT_SOURCE,
        "DetailType": config.event,
        "Detail": json.dumps(detail),
        "EventBusName": config.event_bus,
    }


def score_field_of(score: dict) -> str:
    """Which score a score item holds: `probability` or `prediction`."""
    (found,) = [f for f in SCORE_FIELDS.values() if f in score]
    return found


def lake_record(score: dict) -> dict:
    """A score as the model's scores dataset has it (spec/datasets/churn_scores.yaml,
    clv_scores.yaml): SCORE_RECORD_FIELDS and the score's own field, which the spec loader
    checks the dataset declares."""
    field_ = score_field_of(score)
    return {
        "score_id": score["score_id"],
        "customer_id": score["customer_id"],
        "model": score["model"],
        "model_version": score["model_version"],
        "as_of": score["as_of"],
        "scored_at": score["scored_at"],
        field_: float(score[field_]),
        "threshold": float(score["threshold"]),
        "flagged": score["flagged"],
        "action": score["action"],
        # the served inputs, as the endpoint got them: `dp monitor` compares their
        # distribution with the training data's (drift of what the model sees)
        "features": score["features"],
    }


def _send_scores(kinesis, stream: str, scores: Iterable[dict]) -> None:
    entries = [
        {"Data": (json.dumps(lake_record(s)) + "\n").encode(), "PartitionKey": s["customer_id"]}
        for s in scores
    ]
    for start in range(0, len(entries), 500):  # PutRecords takes up to 500
        answer = kinesis.put_records(StreamName=stream, Records=entries[start : start + 500])
        if answer.get("FailedRecordCount"):
            raise RuntimeError(f"{answer['FailedRecordCount']} score(s) not put on {stream}")


def flagged_scores(dynamodb, table: str, model: str, *, limit: int = 50) -> list[dict]:
    """The flagged scores of a model, newest first (a scan: the table holds one score per
    customer and day; a real CRM reads the interventions queue instead)."""
    found = []
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="#m = :m AND flagged = :t",
        ExpressionAttributeNames={"#m": "model"},
        ExpressionAttributeValues={":m": {"S": model}, ":t": {"BOOL": True}},
    ):
        found += [plain_item(i) for i in page.get("Items", [])]
    found.sort(key=lambda s: (s["scored_at"], s["customer_id"]), reverse=True)
    return found[:limit]
