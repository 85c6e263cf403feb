"""Ingest (PutRecords within Kinesis' limits, retrying only rejected entries) and the local
Firehose delivery (stream -> the real transform -> gzip JSON lines under the stack's
prefixes, with checkpoints), against moto's Kinesis and S3 in-process. moto's Kinesis keeps
PutRecords' limits faithfully (docs/moto.md), so a request over them fails here too."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import random
import re
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from dataplatform.naming import Names
from dataplatform.runtime.ingest import (
    MAX_RECORD_BYTES,
    MAX_REQUEST_BYTES,
    partition_key_for,
    put_records,
    read_records,
    serialize,
)
from dataplatform.runtime.local import firehose
from dataplatform.runtime.local.firehose import CheckpointError, TransformContractError, deliver
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "lambdas" / "firehose_transform"))
from firehose_records import transform_batch  # noqa: E402

DATASET = load_spec(REPO_ROOT / "spec").dataset("telecom_events")
REGION = "eu-west-1"
NAMES = Names(project="mldp", env="dev", account="123456789012", region=REGION)
STREAM = NAMES.stream(DATASET.name)
BUCKET = NAMES.raw_bucket
NOW = datetime(2026, 11, 21, 12, 30, tzinfo=UTC)
PK = partition_key_for(DATASET)


def transform(event: dict) -> dict:
    """The deployed transform Lambda's code, in-process."""
    return transform_batch(event, DATASET, NOW).response


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def aws():
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield kinesis, s3


class Recording:
    """Wraps a Kinesis client: records every PutRecords request; `inject(call, entries)`
    returns the indices of the entries to reject with an ErrorCode (they are not sent)."""

    def __init__(self, client, inject=None, code="ProvisionedThroughputExceededException"):
        self.client, self.inject, self.code = client, inject, code
        self.calls: list[list[dict]] = []

    def put_records(self, *, StreamName, Records):
        self.calls.append(list(Records))
        reject = set(self.inject(len(self.calls), Records)) if self.inject else set()
        forwarded = [r for i, r in enumerate(Records) if i not in reject]
        results = iter(
            self.client.put_records(StreamName=StreamName, Records=forwarded)["Records"]
            if forwarded
            else []
        )
        out = [
            {"ErrorCode": self.code, "ErrorMessage": "Rate exceeded for shard"}
            if i in reject
            else next(results)
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": len(reject), "Records": out}

    def __getattr__(self, name):
        return getattr(self.client, name)


def stream_contents(kinesis) -> list[tuple[str, bytes]]:
    """(partition key, data) of every record in the stream."""
    out = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it, Limit=10000)
            out += [(r["PartitionKey"], r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            it = page["NextShardIterator"]
    return out


def request_bytes(entries: list[dict]) -> int:
    return sum(len(e["Data"]) + len(e["PartitionKey"].encode()) for e in entries)


def padded(i: int, size: int) -> dict:
    """A record whose compact JSON plus its partition key is exactly `size` bytes."""
    base = {"event_id": f"e-{i:05d}", "blob": ""}
    overhead = len(serialize(base)) + len(PK(base).encode())
    return {**base, "blob": "x" * (size - overhead)}


# ----------------------------------------------------------------------------- batching limits


def test_600_records_go_in_two_requests_of_at_most_500(aws):
    kinesis, _ = aws
    client = Recording(kinesis)
    records = [{"event_id": f"e-{i}", "n": i} for i in range(600)]
    seen = []
    summary = put_records(client, STREAM, records, partition_key=PK, progress=seen.append)
    assert [len(c) for c in client.calls] == [500, 100]
    assert (summary.sent, summary.retried, summary.failed, summary.requests) == (600, 0, 0, 2)
    assert sum(seen) == 600
    data = sorted(json.loads(d)["n"] for _, d in stream_contents(kinesis))
    assert data == list(range(600))
    # compact JSON, no spaces
    assert client.calls[0][0]["Data"] == b'{"event_id":"e-0","n":0}'


def test_large_records_are_split_by_the_5_mib_request_limit(aws):
    kinesis, _ = aws
    client = Recording(kinesis)
    size = 900 * 1024
    records = [padded(i, size) for i in range(12)]
    summary = put_records(client, STREAM, records, partition_key=PK)
    assert all(request_bytes(c) <= MAX_REQUEST_BYTES for c in client.calls)
    assert [len(c) for c in client.calls] == [5, 5, 2]  # 6 x 900 KiB would be over 5 MiB
    assert (summary.sent, summary.failed) == (12, 0)
    assert len(stream_contents(kinesis)) == 12


def test_a_record_over_1_mib_is_counted_failed_with_its_reason_and_the_rest_are_sent(aws):
    kinesis, _ = aws
    client = Recording(kinesis)
    records = [
        {"event_id": "a"},
        padded(1, MAX_RECORD_BYTES + 1),
        padded(2, MAX_RECORD_BYTES),
        {"event_id": "b"},
    ]
    summary = put_records(client, STREAM, records, partition_key=PK)
    assert (summary.sent, summary.failed) == (3, 1)  # exactly 1 MiB is allowed
    (failure,) = summary.failures
    assert failure.index == 1
    assert "1048577 bytes" in failure.reason and "at most 1048576" in failure.reason
    assert sorted(k for k, _ in stream_contents(kinesis)) == ["a", "b", "e-00002"]


def test_records_that_are_not_json_are_counted_failed_not_sent(aws):
    kinesis, _ = aws
    summary = put_records(
        kinesis,
        STREAM,
        [{"event_id": "a", "x": float("nan")}, {"event_id": "b", "when": NOW}],
        partition_key=PK,
    )
    assert (summary.sent, summary.failed) == (1, 1)
    assert "not serializable" in summary.failures[0].reason
    ((_, data),) = stream_contents(kinesis)
    assert json.loads(data)["when"] == str(NOW)  # datetimes become strings


# ----------------------------------------------------------------------------- retries


class UpperBound(random.Random):
    """Full jitter's largest draw, to read the backoff's ceiling."""

    def uniform(self, a, b):
        return b


def test_only_the_rejected_entries_are_resent_after_a_jittered_backoff(aws):
    kinesis, _ = aws
    rejected = {1, 3, 7}
    client = Recording(kinesis, inject=lambda call, entries: rejected if call == 1 else ())
    sleeps: list[float] = []
    records = [{"event_id": f"e-{i}"} for i in range(10)]
    summary = put_records(
        client,
        STREAM,
        records,
        partition_key=PK,
        sleep=sleeps.append,
        base_delay=0.05,
        rng=random.Random(7),
    )
    first, second = client.calls
    assert [e["Data"] for e in second] == [first[i]["Data"] for i in sorted(rejected)]
    assert (summary.sent, summary.retried, summary.failed, summary.requests) == (10, 3, 0, 2)
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.05
    # every record is in the stream exactly once
    assert Counter(k for k, _ in stream_contents(kinesis)) == Counter(f"e-{i}" for i in range(10))


def test_backoff_doubles_per_attempt_with_full_jitter_and_a_cap(aws):
    kinesis, _ = aws
    client = Recording(kinesis, inject=lambda call, entries: {0} if call <= 5 else ())
    sleeps: list[float] = []
    summary = put_records(
        client,
        STREAM,
        [{"event_id": "a"}, {"event_id": "b"}],
        partition_key=PK,
        sleep=sleeps.append,
        base_delay=0.05,
        max_delay=0.3,
        rng=UpperBound(),
    )
    assert sleeps == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])  # ceilings: doubled, capped
    assert (summary.sent, summary.retried, summary.failed) == (2, 5, 0)
    assert [len(c) for c in client.calls] == [2, 1, 1, 1, 1, 1]

    jittered: list[float] = []
    put_records(
        Recording(kinesis, inject=lambda call, entries: {0} if call <= 5 else ()),
        STREAM,
        [{"event_id": "c"}],
        partition_key=PK,
        sleep=jittered.append,
        base_delay=0.05,
        max_delay=0.3,
        rng=random.Random(1),
    )
    ceilings = [0.05, 0.1, 0.2, 0.3, 0.3]
    assert all(0 <= s <= c for s, c in zip(jittered, ceilings, strict=True)) and len(jittered) == 5
    assert jittered != ceilings  # drawn, not fixed


def test_entries_still_rejected_after_max_attempts_are_failed(aws):
    kinesis, _ = aws
    client = Recording(kinesis, inject=lambda call, entries: {0}, code="InternalFailure")
    sleeps: list[float] = []
    summary = put_records(
        client,
        STREAM,
        [{"event_id": f"e-{i}"} for i in range(4)],
        partition_key=PK,
        max_attempts=3,
        sleep=sleeps.append,
    )
    assert (summary.sent, summary.failed, summary.retried, summary.requests) == (3, 1, 2, 3)
    assert len(sleeps) == 2
    assert "InternalFailure after 3 attempts" in summary.failures[0].reason
    assert summary.failures[0].index == 0
    assert sorted(k for k, _ in stream_contents(kinesis)) == ["e-1", "e-2", "e-3"]


def test_an_unknown_error_code_is_not_retried(aws):
    kinesis, _ = aws
    client = Recording(kinesis, inject=lambda call, entries: {0}, code="KMSAccessDeniedException")
    summary = put_records(
        client,
        STREAM,
        [{"event_id": "a"}, {"event_id": "b"}],
        partition_key=PK,
        sleep=lambda s: None,
    )
    assert (summary.sent, summary.failed, summary.requests) == (1, 1, 1)
    assert summary.failures[0].reason.startswith("KMSAccessDeniedException")


class FakeKinesis:
    """PutRecords with Kinesis' limits and random throttling, without moto (for hypothesis)."""

    def __init__(self, seed: int, reject_rate: float):
        self.rng, self.reject_rate = random.Random(seed), reject_rate
        self.accepted: list[bytes] = []
        self.requests = 0

    def put_records(self, *, StreamName, Records):
        self.requests += 1
        assert 1 <= len(Records) <= 500
        assert request_bytes(Records) <= MAX_REQUEST_BYTES
        out = []
        for r in Records:
            assert len(r["Data"]) + len(r["PartitionKey"].encode()) <= MAX_RECORD_BYTES
            assert 1 <= len(r["PartitionKey"]) <= 256
            if self.rng.random() < self.reject_rate:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException"})
            else:
                self.accepted.append(r["Data"])
                out.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        return {"Records": out}


@pytest.mark.parametrize("failure", ["cut off", "connection lost"])
def test_a_send_stopped_part_way_says_how_many_input_records_were_answered(failure):
    """The third request's answer is cut off (no results) or never comes: the first two
    requests' 1,000 records were answered, the rest are not known to be on the stream."""
    from botocore.exceptions import EndpointConnectionError

    from dataplatform.runtime.errors import SendInterrupted

    class DyingKinesis(FakeKinesis):
        def put_records(self, *, StreamName, Records):
            if self.requests == 2:
                if failure == "cut off":
                    self.requests += 1
                    return {"Records": []}
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")
            return super().put_records(StreamName=StreamName, Records=Records)

    kinesis = DyingKinesis(seed=1, reject_rate=0)
    with pytest.raises(SendInterrupted) as stopped:
        put_records(
            kinesis,
            STREAM,
            [{"event_id": f"e{i}"} for i in range(1_300)],
            partition_key=PK,
            sleep=lambda s: None,
        )
    assert stopped.value.settled == 1_000 == stopped.value.summary.sent == len(kinesis.accepted)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(
        st.sampled_from([40, 300, 200_000, 700_000, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1]),
        max_size=40,
    ),
    small=st.integers(0, 1200),
    seed=st.integers(0, 10),
    reject_rate=st.sampled_from([0, 0.3, 0.9]),
)
def test_every_record_is_sent_once_or_counted_failed_within_the_limits(
    sizes, small, seed, reject_rate
):
    records = [padded(i, s) for i, s in enumerate(sizes)] + [
        {"event_id": f"s-{i}"} for i in range(small)
    ]
    fake = FakeKinesis(seed, reject_rate)
    summary = put_records(
        fake,
        STREAM,
        records,
        partition_key=PK,
        max_attempts=4,
        sleep=lambda s: None,
        rng=random.Random(seed),
    )
    assert summary.sent + summary.failed == len(records)
    assert len(fake.accepted) == summary.sent == len(set(fake.accepted))  # each at most once
    failed = {f.index for f in summary.failures}
    assert len(failed) == summary.failed
    assert {json.loads(d)["event_id"] for d in fake.accepted} | {
        records[i]["event_id"] for i in failed
    } == {r["event_id"] for r in records}
    too_big = {i for i, s in enumerate(sizes) if s > MAX_RECORD_BYTES}
    assert too_big <= failed
    if reject_rate == 0:
        assert failed == too_big


# ----------------------------------------------------------------------------- partition keys


def test_partition_key_comes_from_the_primary_key(aws):
    kinesis, _ = aws
    assert PK({"event_id": "e-42", "customer_id": "c-1"}) == "e-42"
    composite = partition_key_for(
        dataclasses.replace(DATASET, primary_key=("customer_id", "event_id"))
    )
    assert composite({"event_id": "e-42", "customer_id": "c-1"}) == "c-1|e-42"
    # no usable primary key: a stable hash of the record, whatever its key order
    fallback = PK({"customer_id": "c-1", "n": 1})
    assert re.fullmatch(r"[0-9a-f]{32}", fallback)
    assert fallback == PK({"n": 1, "customer_id": "c-1"}) != PK({"customer_id": "c-2", "n": 1})
    assert PK({"event_id": ""}) != ""
    assert len(PK({"event_id": "x" * 300})) <= 256
    no_pk = partition_key_for(dataclasses.replace(DATASET, primary_key=()))
    assert re.fullmatch(r"[0-9a-f]{32}", no_pk({"event_id": "e-1"}))

    put_records(kinesis, STREAM, [{"event_id": "e-1"}, {"event_id": "e-2"}], partition_key=PK)
    assert sorted(k for k, _ in stream_contents(kinesis)) == ["e-1", "e-2"]


# ----------------------------------------------------------------------------- read_records


def test_read_records_reads_json_lines_and_csv_plain_or_gzipped(tmp_path):
    rows = [{"event_id": "e-1", "n": 1}, {"event_id": "e-2", "n": 2}]
    text = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    (tmp_path / "a.jsonl").write_text(text)
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "arr.json").write_text(json.dumps(rows))
    csv_text = "event_id,n,plan\ne-1,1,\ne-2,2,prepaid\n"
    (tmp_path / "a.csv").write_text(csv_text)
    (tmp_path / "a.CSV.gz").write_bytes(gzip.compress(csv_text.encode()))
    for name in ("a.jsonl", "a.json.gz", "arr.json"):
        assert list(read_records(tmp_path / name)) == rows
    expected_csv = [
        {"event_id": "e-1", "n": "1", "plan": None},
        {"event_id": "e-2", "n": "2", "plan": "prepaid"},
    ]
    for name in ("a.csv", "a.CSV.gz"):
        assert list(read_records(tmp_path / name)) == expected_csv


def test_read_records_names_the_file_in_its_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.jsonl"))):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=r"data\.parquet: unknown file type '\.parquet'"):
        read_records(tmp_path / "data.parquet")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        list(read_records(tmp_path / "bad.jsonl"))
    (tmp_path / "list.jsonl").write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"list\.jsonl: line 2 is a JSON list"):
        list(read_records(tmp_path / "list.jsonl"))


# ----------------------------------------------------------------------------- delivery


def telecom_events(n: int, seed: int, start: int = 0) -> list[dict]:
    """Valid events over ~2 days before NOW, with assorted UTC offsets."""
    rng = random.Random(seed)
    offsets = ["Z", "+00:00", "+02:00", "-05:00", "+05:30"]
    events = []
    for i in range(start, start + n):
        when = NOW - timedelta(seconds=rng.randint(0, 2 * 86400))
        offset = rng.choice(offsets)
        tz = UTC if offset == "Z" else datetime.strptime(offset, "%z").tzinfo
        stamp = when.astimezone(tz).isoformat(timespec="seconds")
        stamp = stamp.replace("+00:00", "Z") if offset == "Z" else stamp
        kind = rng.choice(["call", "data_session", "support_ticket", "payment"])
        event = {
            "event_id": f"ev-{i:06d}",
            "customer_id": f"c-{rng.randint(1, 50)}",
            "msisdn": f"+3161{rng.randint(0, 9999999):07d}",
            "event_type": kind,
            "event_time": stamp,
            "plan": rng.choice(["prepaid", "postpaid", None]),
            "cell_id": f"cell-{rng.randint(1, 9)}",
            "note": "caf\u00e9",
        }
        if kind == "call":
            event.update(duration_s=round(rng.uniform(0, 3600), 1), call_dropped=rng.random() < 0.1)
        elif kind == "data_session":
            event.update(data_mb=round(rng.uniform(0, 500), 2))
        events.append(event)
    return events


def broken_events() -> list[dict]:
    return [
        {
            "event_id": "bad-1",
            "event_type": "call",
            "event_time": "2026-11-20T10:00:00Z",
        },  # no customer
        {
            "event_id": "bad-2",
            "customer_id": "c-1",
            "event_type": "call",
            "event_time": "1970-01-01T00:00:00Z",
        },  # absurd: too old
        {
            "event_id": "bad-3",
            "customer_id": "c-1",
            "event_type": "call",
            "event_time": "2999-01-01T00:00:00Z",
        },  # absurd: future
        {
            "event_id": "bad-4",
            "customer_id": "c-1",
            "event_type": "call",
            "event_time": "yesterday",
        },  # unparseable
    ]


def expected_partitions(events: list[dict]) -> dict[tuple[str, str], set[str]]:
    """dt/hour of each event from its event_time in UTC, computed independently with pandas."""
    df = pd.DataFrame(events)
    ts = pd.to_datetime(df["event_time"], utc=True, format="ISO8601")
    df["dt"], df["hour"] = ts.dt.strftime("%Y-%m-%d"), ts.dt.strftime("%H")
    return {k: set(g["event_id"]) for k, g in df.groupby(["dt", "hour"])}


DATA_KEY = re.compile(
    rf"^telecom_events/dt=(\d{{4}}-\d\d-\d\d)/hour=(\d\d)/{re.escape(NAMES.delivery_stream('telecom_events'))}"
    r"-(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-[0-9a-f-]{36}\.json\.gz$"
)
ERROR_KEY = re.compile(
    r"^_errors/telecom_events/processing-failed/dt=(\d{4}-\d\d-\d\d)/hour=(\d\d)/"
    rf"{re.escape(NAMES.delivery_stream('telecom_events'))}"
    r"-(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-[0-9a-f-]{36}\.json\.gz$"
)


def lake(s3) -> tuple[dict[tuple[str, str], list[dict]], list[dict], list[str]]:
    """Rows per (dt, hour), error lines, and every key, read back from the raw bucket."""
    rows: dict[tuple[str, str], list[dict]] = {}
    errors, keys = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            keys.append(key)
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert body[:2] == b"\x1f\x8b", f"{key} is not gzip"
            lines = gzip.decompress(body).decode("utf-8").splitlines()
            if ERROR_KEY.match(key):
                errors += [json.loads(line) for line in lines]
                continue
            match = DATA_KEY.match(key)
            assert match, f"unexpected key {key}"
            rows.setdefault(match.groups()[:2], []).extend(json.loads(line) for line in lines)
    return rows, errors, keys


def run(kinesis, s3, checkpoint, **kwargs):
    return deliver(
        kinesis,
        s3,
        stream_name=STREAM,
        raw_bucket=BUCKET,
        dataset=DATASET,
        checkpoint_path=checkpoint,
        transform=kwargs.pop("transform", transform),
        now=NOW,
        **kwargs,
    )


def test_delivery_partitions_ok_records_errors_the_rest_and_resumes_from_checkpoints(aws, tmp_path):
    kinesis, s3 = aws
    checkpoint = tmp_path / "state" / "telecom_events.json"
    good, bad = telecom_events(300, seed=1), broken_events()
    mixed = good[:150] + bad + good[150:]
    sent = put_records(kinesis, STREAM, mixed, partition_key=PK)
    assert sent.sent == len(mixed)
    kinesis.put_record(StreamName=STREAM, Data=b"not json at all", PartitionKey="junk")
    raw_bad = [serialize(b) for b in bad] + [b"not json at all"]

    summary = run(kinesis, s3, checkpoint)
    assert (
        summary.records_read == len(mixed) + 1 == summary.delivered_ok + summary.processing_failed
    )
    assert (summary.delivered_ok, summary.processing_failed) == (len(good), len(raw_bad))

    rows, errors, keys = lake(s3)
    assert sorted(keys) == sorted(summary.keys) and summary.objects_written == len(keys)
    assert {k: {r["event_id"] for r in v} for k, v in rows.items()} == expected_partitions(good)
    delivered = [r for v in rows.values() for r in v]
    assert len(delivered) == len(good)  # every record once
    assert sorted(delivered, key=lambda r: r["event_id"]) == good  # rows equal the inputs
    # one object per (dt, hour) with the default 64 MiB buffer
    assert len([k for k in keys if not k.startswith("_errors/")]) == len(rows)

    assert Counter(base64.b64decode(e["rawData"]) for e in errors) == Counter(raw_bad)
    for e in errors:
        assert (e["attemptsMade"], e["errorCode"], e["lambdaArn"]) == (
            1,
            "Lambda.ProcessingFailed",
            "local",
        )
        assert isinstance(e["arrivalTimestamp"], int) and isinstance(
            e["attemptEndingTimestamp"], int
        )
        assert e["errorMessage"]

    state = json.loads(checkpoint.read_text())
    assert state["stream"] == STREAM and len(state["shards"]) == 2

    # nothing new: nothing read, nothing written
    again = run(kinesis, s3, checkpoint)
    assert (again.records_read, again.objects_written, again.keys) == (0, 0, [])
    assert sorted(lake(s3)[2]) == sorted(keys)

    # new records are delivered once
    more = telecom_events(40, seed=2, start=1000)
    put_records(kinesis, STREAM, more, partition_key=PK)
    third = run(kinesis, s3, checkpoint)
    assert (third.records_read, third.delivered_ok, third.processing_failed) == (40, 40, 0)
    rows, errors, _ = lake(s3)
    delivered = sorted((r for v in rows.values() for r in v), key=lambda r: r["event_id"])
    assert delivered == sorted(good + more, key=lambda r: r["event_id"])
    assert {k: {r["event_id"] for r in v} for k, v in rows.items()} == expected_partitions(
        good + more
    )
    assert len(errors) == len(raw_bad)


def test_small_buffer_and_big_records_make_more_objects_and_invocations_of_at_most_1_mb(
    aws, tmp_path
):
    kinesis, s3 = aws
    events = telecom_events(60, seed=3)
    for i, e in enumerate(events):
        e["debug_blob"] = "d" * (150_000 if i % 3 == 0 else 10)
    put_records(kinesis, STREAM, events, partition_key=PK)
    invocations = []

    def watching(event):
        invocations.append(sum(len(base64.b64decode(r["data"])) for r in event["records"]))
        assert set(event) >= {"invocationId", "deliveryStreamArn", "region", "records"}
        assert event["deliveryStreamArn"].endswith(
            f":deliverystream/{NAMES.delivery_stream(DATASET.name)}"
        )
        return transform(event)

    summary = run(
        kinesis, s3, tmp_path / "cp.json", transform=watching, buffer_bytes=400_000, read_limit=7
    )  # small pages: the reader follows NextShardIterator
    assert summary.records_read == 60 == summary.delivered_ok
    assert len(invocations) == summary.invocations > 3
    assert all(size <= firehose.INVOCATION_MAX_BYTES for size in invocations)
    rows, errors, keys = lake(s3)
    assert errors == []
    assert len(keys) > len(rows)  # several flushes, several objects per partition
    assert sorted((r for v in rows.values() for r in v), key=lambda r: r["event_id"]) == events
    assert {k: {r["event_id"] for r in v} for k, v in rows.items()} == expected_partitions(events)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda out: out[1:], "no output for 1 record"),
        (lambda out: out + [{**out[0], "recordId": "made-up"}], "'made-up', which was not in"),
        (lambda out: out + [out[0]], "twice"),
        (lambda out: [{**out[0], "result": "Dropped"}] + out[1:], "result 'Dropped'"),
        (lambda out: [{**out[0], "metadata": {}}] + out[1:], "partitionKeys"),
    ],
)
def test_a_transform_that_breaks_the_contract_stops_delivery_without_moving_the_checkpoint(
    aws, tmp_path, breakage, message
):
    kinesis, s3 = aws
    events = telecom_events(10, seed=4)
    put_records(kinesis, STREAM, events, partition_key=PK)
    checkpoint = tmp_path / "cp.json"

    def broken(event):
        response = transform(event)
        return {"records": breakage(response["records"])}

    with pytest.raises(TransformContractError, match=re.escape(message)):
        run(kinesis, s3, checkpoint, transform=broken)
    assert not checkpoint.exists()
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    # fixed transform: everything is delivered, once
    assert run(kinesis, s3, checkpoint).delivered_ok == 10
    assert sorted(r["event_id"] for v in lake(s3)[0].values() for r in v) == [
        e["event_id"] for e in events
    ]


def test_a_failed_write_leaves_the_checkpoint_so_the_records_are_delivered_on_the_next_run(
    aws, tmp_path
):
    kinesis, s3 = aws
    events = telecom_events(30, seed=5)
    put_records(kinesis, STREAM, events, partition_key=PK)
    checkpoint = tmp_path / "cp.json"

    class FailingS3:
        def put_object(self, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        deliver(
            kinesis,
            FailingS3(),
            stream_name=STREAM,
            raw_bucket=BUCKET,
            dataset=DATASET,
            checkpoint_path=checkpoint,
            transform=transform,
            now=NOW,
        )
    assert not checkpoint.exists()
    summary = run(kinesis, s3, checkpoint)
    assert summary.delivered_ok == 30
    assert (
        sorted((r for v in lake(s3)[0].values() for r in v), key=lambda r: r["event_id"]) == events
    )


def test_a_checkpoint_lost_after_the_write_redelivers_onto_the_same_keys(aws, tmp_path):
    """A crash between writing the objects and moving the checkpoint hands the same records
    to the next run: it writes the same keys again (nothing twice), and each name carries
    the arrival time of its object's oldest record, read here from the stream itself."""
    kinesis, s3 = aws
    events = telecom_events(200, seed=6)
    put_records(kinesis, STREAM, events + broken_events(), partition_key=PK)
    checkpoint = tmp_path / "cp.json"
    first = run(kinesis, s3, checkpoint, buffer_bytes=8_000)
    assert first.objects_written > 3  # several flushes, each with its own first record
    checkpoint.unlink()  # as if the run had died before moving it
    second = run(kinesis, s3, checkpoint, buffer_bytes=8_000)
    assert sorted(second.keys) == sorted(first.keys)
    rows, errors, keys = lake(s3)
    assert sorted(keys) == sorted(first.keys)
    assert sorted((r for v in rows.values() for r in v), key=lambda r: r["event_id"]) == events
    assert len(errors) == len(broken_events())

    arrival = {}  # event_id (or raw bytes) -> arrival ms, from the stream
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
            ms = int(record["ApproximateArrivalTimestamp"].timestamp() * 1000)
            arrival[json.loads(record["Data"])["event_id"]] = ms
    for key in keys:
        body = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        lines = [json.loads(line) for line in body.decode().splitlines()]
        ids = (
            [json.loads(base64.b64decode(e["rawData"]))["event_id"] for e in lines]
            if ERROR_KEY.match(key)
            else [r["event_id"] for r in lines]
        )
        oldest = datetime.fromtimestamp(min(arrival[i] for i in ids) / 1000, UTC)
        stamp = (ERROR_KEY.match(key) or DATA_KEY.match(key)).group(3)
        assert stamp == oldest.strftime("%Y-%m-%d-%H-%M-%S"), key
        if ERROR_KEY.match(key):
            assert ERROR_KEY.match(key).groups()[:2] == (
                oldest.strftime("%Y-%m-%d"),
                oldest.strftime("%H"),
            )


def test_a_checkpoint_of_another_stream_or_garbage_is_refused(aws, tmp_path):
    kinesis, s3 = aws
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text(json.dumps({"stream": "other", "shards": {}}))
    with pytest.raises(CheckpointError, match="checkpoint of stream 'other'"):
        run(kinesis, s3, checkpoint)
    checkpoint.write_text("{half")
    with pytest.raises(CheckpointError, match="cannot read the delivery checkpoint"):
        run(kinesis, s3, checkpoint)


def test_the_buffer_is_due_at_its_size_or_its_interval_since_its_first_record(aws, tmp_path):
    """Firehose's buffering hints, as the local Firehose service applies them in the
    background: a buffer is written once it holds SizeInMBs, or IntervalInSeconds after its
    first record arrived, whichever comes first (a fake clock: no waiting)."""
    kinesis, s3 = aws
    now = [1000.0]
    config = dataclasses.replace(
        firehose.dataset_config(
            DATASET,
            stream_name=STREAM,
            raw_bucket=BUCKET,
            delivery_stream=NAMES.delivery_stream(DATASET.name),
            region=REGION,
            account=NAMES.account,
        ),
        buffer_seconds=60,
    )
    delivery = firehose.Delivery(
        kinesis,
        s3,
        config,
        checkpoint_path=tmp_path / "cp.json",
        transform=transform,
        clock=lambda: now[0],
    )
    assert delivery.read() == 0 and not delivery.due()  # an empty buffer is never due
    put_records(kinesis, STREAM, telecom_events(20, seed=3), partition_key=PK)
    assert delivery.read() == 20
    now[0] += 59
    assert not delivery.due()
    assert not s3.list_objects_v2(Bucket=BUCKET).get("Contents")
    now[0] += 1
    assert delivery.due()
    delivery.flush()
    assert not delivery.due() and s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] > 0
    # the size: a buffer over SizeInMBs is written as it fills, whatever the interval
    small = dataclasses.replace(config, buffer_bytes=2_000, buffer_seconds=900)
    filling = firehose.Delivery(
        kinesis,
        s3,
        small,
        checkpoint_path=tmp_path / "cp2.json",
        transform=transform,
        clock=lambda: now[0],
    )
    put_records(kinesis, STREAM, telecom_events(20, seed=4), partition_key=PK)
    before = s3.list_objects_v2(Bucket=BUCKET)["KeyCount"]
    filling.read()
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] > before
