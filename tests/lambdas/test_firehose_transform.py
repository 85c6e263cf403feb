"""The Firehose transform: Firehose's contract, each failure class, arbitrary input, and
the size of a maximal batch's response."""

from __future__ import annotations

import base64
import json
import random
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "lambdas" / "firehose_transform"))
from firehose_records import transform_batch  # noqa: E402

DATASET = load_spec(REPO_ROOT / "spec").dataset("telecom_events")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
FIREHOSE_MAX_LAMBDA_BATCH = 3 * 1024 * 1024  # BufferSizeInMBs may be at most 3


def encode(payload) -> str:
    raw = (
        payload
        if isinstance(payload, bytes)
        else (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
    )
    return base64.b64encode(raw).decode()


def event(*payloads) -> dict:
    return {"records": [{"recordId": f"r{i}", "data": encode(p)} for i, p in enumerate(payloads)]}


def good(**overrides) -> dict:
    record = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "event_type": "call",
        "event_time": "2026-11-20T08:15:00Z",
        "duration_s": 61.5,
    }
    record.update(overrides)
    return record


def single(payload) -> tuple[dict, list]:
    result = transform_batch(event(payload), DATASET, NOW)
    (output,) = result.response["records"]
    return output, result.failures


# --- Ok records


@pytest.mark.parametrize(
    "event_time, dt, hour",
    [
        ("2026-11-20T08:15:00Z", "2026-11-20", "08"),
        ("2026-11-20T08:15:00", "2026-11-20", "08"),  # naive means UTC
        ("2026-11-20T01:30:00+02:00", "2026-11-19", "23"),  # offset -> UTC, day before
        ("2026-11-20 08:15:00.123-05:00", "2026-11-20", "13"),
        (1763626500, "2025-11-20", "08"),  # epoch seconds
        (1763626500123, "2025-11-20", "08"),  # epoch milliseconds
        ("1763626500", "2025-11-20", "08"),  # epoch as a string
    ],
)
def test_ok_record_gets_utc_partition_keys_from_its_event_time(event_time, dt, hour):
    output, failures = single(good(event_time=event_time))
    assert failures == []
    assert output["result"] == "Ok"
    assert output["metadata"] == {"partitionKeys": {"dt": dt, "hour": hour}}


def test_ok_record_is_one_normalized_json_line_with_every_field_kept():
    payload = good(note="café ☕", extra_field={"nested": [1, 2]})
    raw = json.dumps(payload, indent=4, ensure_ascii=True)  # pretty and escaped on input

    output, _ = single(raw)

    line = base64.b64decode(output["data"]).decode("utf-8")
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == payload
    assert "café ☕" in line  # unescaped UTF-8, compact


# --- each failure class


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'\xff\xfe{"event_id": 1}', "not_utf8"),
        ("{not json", "not_json"),
        ("[1, 2, 3]", "not_object"),
        ('"just a string"', "not_object"),
        (good(customer_id=None), "missing_required"),
        ({k: v for k, v in good().items() if k != "event_type"}, "missing_required"),
        (good(event_id=""), "missing_required"),
        (good(event_time="yesterday"), "event_time_unparseable"),
        (good(event_time=True), "event_time_unparseable"),
        (good(event_time="1999-12-31T23:59:59Z"), "event_time_absurd"),
        (good(event_time=(NOW + timedelta(days=1, minutes=1)).isoformat()), "event_time_absurd"),
        (good(event_time=1e30), "event_time_absurd"),
    ],
)
def test_undeliverable_record_is_processing_failed_with_its_original_data(payload, reason):
    batch = event(payload)

    result = transform_batch(batch, DATASET, NOW)

    (output,) = result.response["records"]
    assert output == {
        "recordId": "r0",
        "result": "ProcessingFailed",
        "data": batch["records"][0]["data"],
    }
    assert [(r, code) for r, code, _ in result.failures] == [("r0", reason)]


def test_missing_required_names_every_missing_field():
    _, failures = single({"event_time": "2026-11-20T08:15:00Z"})
    assert failures[0][2] == "missing_required: event_id, customer_id, event_type"


def test_bad_base64_and_missing_data_still_yield_one_result_each():
    batch = {
        "records": [
            {"recordId": "a", "data": "%%%not-base64"},
            {"recordId": "b"},
            {"recordId": "c", "data": 42},
        ]
    }
    result = transform_batch(batch, DATASET, NOW)
    assert [(o["recordId"], o["result"]) for o in result.response["records"]] == [
        ("a", "ProcessingFailed"),
        ("b", "ProcessingFailed"),
        ("c", "ProcessingFailed"),
    ]
    assert all(isinstance(o["data"], str) for o in result.response["records"])


def test_type_and_range_checks_are_left_to_the_curate_job():
    output, failures = single(good(duration_s="N/A", event_type="carrier_pigeon"))
    assert output["result"] == "Ok" and failures == []


def test_no_record_is_ever_dropped():
    payloads = [good(), "{bad", good(event_time="1990-01-01T00:00:00Z"), [1]]
    results = {
        o["result"] for o in transform_batch(event(*payloads), DATASET, NOW).response["records"]
    }
    assert results <= {"Ok", "ProcessingFailed"}


# --- arbitrary input (hypothesis)

record_data = st.one_of(
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=50),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=10,
    ).map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
    st.fixed_dictionaries(
        {
            "event_id": st.text(max_size=8),
            "customer_id": st.text(max_size=8),
            "event_type": st.text(max_size=8),
            "event_time": st.one_of(
                st.text(max_size=30),
                st.integers(),
                st.floats(),
                st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
            ),
        }
    ).map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
    st.integers(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.uuids().map(str), record_data), max_size=30, unique_by=lambda t: t[0]))
def test_any_batch_yields_exactly_one_result_per_record_id_and_never_raises(records):
    batch = {"records": [{"recordId": rid, "data": data} for rid, data in records]}

    result = transform_batch(batch, DATASET, NOW)

    outputs = result.response["records"]
    assert [o["recordId"] for o in outputs] == [rid for rid, _ in records]
    assert all(o["result"] in ("Ok", "ProcessingFailed") for o in outputs)
    assert len(result.failures) == sum(o["result"] == "ProcessingFailed" for o in outputs)
    for o in outputs:
        if o["result"] == "Ok":
            assert set(o["metadata"]["partitionKeys"]) == {"dt", "hour"}
    json.dumps(result.response)  # serializable as Lambda must return it


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2026, 11, 22),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_partition_keys_are_the_event_time_in_utc(moment):
    output, _ = single(good(event_time=moment.isoformat()))
    utc = moment.astimezone(UTC)
    if output["result"] == "Ok":
        assert output["metadata"]["partitionKeys"] == {
            "dt": utc.strftime("%Y-%m-%d"),
            "hour": utc.strftime("%H"),
        }
    else:  # only possible at the window's edges
        assert utc < datetime(2000, 1, 1, tzinfo=UTC) or utc > NOW + timedelta(days=1)


# --- volume and size


def realistic_events(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    kinds = ["call", "data_session", "support_ticket", "payment"]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    for i in range(n):
        kind = rng.choice(kinds)
        events.append(
            {
                "event_id": f"evt-{i:08d}-{rng.getrandbits(32):08x}",
                "customer_id": f"cust-{rng.randrange(50_000):06d}",
                "msisdn": f"+3161{rng.randrange(10**7):07d}",
                "event_type": kind,
                "event_time": (start + timedelta(seconds=rng.randrange(20 * 86400))).isoformat(),
                "plan": rng.choice(["prepaid", "postpaid", "family", "business"]),
                "duration_s": round(rng.expovariate(1 / 180), 1) if kind == "call" else None,
                "call_dropped": rng.random() < 0.03 if kind == "call" else None,
                "data_mb": round(rng.expovariate(1 / 50), 2) if kind == "data_session" else None,
                "cell_id": f"cell-{rng.randrange(4000)}",
            }
        )
    return events


def test_a_10000_record_batch_is_fully_accounted_for():
    events = realistic_events(10_000)
    events[17]["event_time"] = "not a time"
    events[4242] = "{broken"
    result = transform_batch(event(*events), DATASET, NOW)
    outputs = result.response["records"]
    assert len(outputs) == 10_000
    assert len({o["recordId"] for o in outputs}) == 10_000
    assert result.failure_counts == {"event_time_unparseable": 1, "not_json": 1}
    assert sum(o["result"] == "Ok" for o in outputs) == 9_998


def request_size(batch: dict) -> int:
    return len(json.dumps(batch).encode())


def maximal_batch(make_payload) -> dict:
    """Records appended until the invocation payload reaches Firehose's 3 MB maximum."""
    records, size, i = [], 0, 0
    while True:
        record = {
            "recordId": f"{49546986683135544286507457936321625675700192471156785154 + i}",
            "approximateArrivalTimestamp": 1763626500000,
            "data": encode(make_payload(i)),
        }
        record_size = len(json.dumps(record).encode()) + 2
        if size + record_size > FIREHOSE_MAX_LAMBDA_BATCH:
            return {
                "invocationId": "x",
                "deliveryStreamArn": "arn",
                "region": "eu-west-1",
                "records": records,
            }
        records.append(record)
        size += record_size
        i += 1


@pytest.mark.parametrize("shape", ["realistic", "minimal"])
def test_response_to_a_maximal_batch_stays_within_lambdas_6_mb(shape):
    realistic = realistic_events(20_000)
    make = (
        (lambda i: realistic[i % len(realistic)])
        if shape == "realistic"
        else (
            lambda i: {
                "event_id": str(i),
                "customer_id": "c",
                "event_type": "call",
                "event_time": 1763626500,
            }
        )
    )
    batch = maximal_batch(make)

    result = transform_batch(batch, DATASET, NOW)

    response_bytes = len(json.dumps(result.response).encode())
    print(
        f"{shape}: {len(batch['records'])} records, request {request_size(batch):,} B, "
        f"response {response_bytes:,} B"
    )
    assert all(o["result"] == "Ok" for o in result.response["records"])
    assert response_bytes < LAMBDA_RESPONSE_LIMIT


def test_handler_reads_its_dataset_from_the_environment(monkeypatch, capsys, tmp_path):
    import handler

    compiled = tmp_path / "spec.json"  # what dataplatform.bundle puts next to the handler
    compiled.write_text(load_spec(REPO_ROOT / "spec").to_json())
    monkeypatch.setattr(handler, "SPEC_PATH", compiled)
    handler.dataset_for.cache_clear()
    monkeypatch.setenv("DATASET", "telecom_events")
    response = handler.handler(event(good(), "{bad"), None)
    assert [o["result"] for o in response["records"]] == ["Ok", "ProcessingFailed"]
    logged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert logged["processing_failed"] == {"not_json": 1}
    assert logged["examples"][0]["recordId"] == "r1"
