"""`dp ingest` of a messy JSON-lines file to a stream dataset: every line is sent as the
producer wrote it, the Firehose transform routes the bad ones to the error prefix with
their original bytes, and the command accounts for every line (which lines, and why)."""

from __future__ import annotations

import base64
import gzip
import json
import random

import pytest
from typer.testing import CliRunner

from dataplatform import layout
from dataplatform.cli import app
from dataplatform.naming import Names
from dataplatform.runtime.local import server
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

SPEC = str(REPO_ROOT / "spec")
PLATFORM = load_spec(REPO_ROOT / "spec")
SETTINGS = PLATFORM.environment("dev")
NAMES = Names.for_environment(PLATFORM, SETTINGS, account="123456789012")
runner = CliRunner()

BAD_LINES = [  # (bytes, the transform's reason)
    (b"not json at all", "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (b"42", "not_object"),
    (b'"just a string"', "not_object"),
    (b"null", "not_object"),
    (b'{"event_id": "e-trunc", "customer_id": "c1"', "not_json"),
    (b"{'event_id': 'single quotes'}", "not_json"),
    (b'{"event_id": "e-missing"}', "missing_required"),
    (b"\xff\xfe not utf-8", "not_utf8"),
    (
        b'{"event_id": "e-old", "customer_id": "c", "event_type": "call", "event_time": "1899-01-01T00:00:00Z"}',
        "event_time_absurd",
    ),
]


def event(i: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"m{i}",
            "customer_id": f"c{i % 7}",
            "event_type": "call",
            "event_time": f"2026-11-20T{i % 24:02d}:{i % 60:02d}:00Z",
            "duration_s": i,
        }
    ).encode()


@pytest.fixture(scope="module")
def messy(empty_platform, tmp_path_factory):
    home, _ = empty_platform
    rng = random.Random(12)
    lines: list[bytes] = [event(i) for i in range(300)]
    for data, _ in BAD_LINES * 2:  # each bad line twice, at seeded positions
        lines.insert(rng.randrange(len(lines) + 1), data)
    path = tmp_path_factory.mktemp("messy") / "events.jsonl"
    body = (
        b"\n".join(lines[:150]) + b"\r\n\n" + b"\n".join(lines[150:]) + b"\n"
    )  # a CRLF, a blank line
    path.write_bytes(body)
    numbers = {}
    for number, line in enumerate(body.split(b"\n"), start=1):
        if line.rstrip(b"\r").strip():
            numbers.setdefault(line.rstrip(b"\r"), []).append(number)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DP_HOME", str(home))
        assert runner.invoke(app, ["local", "up", "--spec", SPEC]).exit_code == 0
        result = runner.invoke(
            app,
            ["ingest", "telecom_events", "--file", str(path), "--spec", SPEC],
            terminal_width=200,
        )
    return result, lines, numbers, home


def test_every_line_is_sent_and_accounted_for(messy):
    result, lines, _, _ = messy
    assert result.exit_code == 0, result.output
    bad = len(BAD_LINES) * 2
    assert f"{len(lines):,} records, sent {len(lines):,}" in result.output
    assert f"delivered {len(lines) - bad:,} to raw" in result.output
    assert f"{bad:,} to the error prefix" in result.output
    assert "Traceback" not in result.output


def test_the_error_prefix_holds_exactly_the_bad_lines_original_bytes(messy):
    _, lines, _, home = messy
    s3 = server.client("s3", server.status(home), SETTINGS.region)
    errored = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=NAMES.raw_bucket, Prefix=layout.errors_prefix("telecom_events")
    ):
        for obj in page.get("Contents", []):
            body = gzip.decompress(
                s3.get_object(Bucket=NAMES.raw_bucket, Key=obj["Key"])["Body"].read()
            )
            errored += [
                base64.b64decode(json.loads(ln)["rawData"]) for ln in body.splitlines() if ln
            ]
    assert sorted(errored) == sorted(data for data, _ in BAD_LINES * 2)
    delivered = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=NAMES.raw_bucket, Prefix=layout.raw_prefix("telecom_events")
    ):
        for obj in page.get("Contents", []):
            body = gzip.decompress(
                s3.get_object(Bucket=NAMES.raw_bucket, Key=obj["Key"])["Body"].read()
            )
            delivered += [json.loads(ln)["event_id"] for ln in body.splitlines() if ln]
    assert sorted(delivered) == sorted(f"m{i}" for i in range(300))


def test_the_command_names_the_bad_lines_and_their_reasons(messy):
    result, _, numbers, _ = messy
    assert f"{len(BAD_LINES) * 2} line(s) of " in result.output
    expected = sorted((n, reason) for data, reason in BAD_LINES for n in numbers[data])
    for number, reason in expected[:10]:
        assert f"line {number}: {reason}" in result.output, (number, reason, result.output)
    assert f"... and {len(expected) - 10} more" in result.output


def test_records_sent_but_not_delivered_fail_the_command_with_the_count(
    messy, tmp_path, monkeypatch
):
    """Sent means delivered: records no delivery has passed (here the delivery answers
    nothing, its position before them) fail the command with their count."""
    from dataplatform.runtime.local import firehose
    from dataplatform.runtime.local.platform import LocalPlatform

    _, _, _, home = messy
    monkeypatch.setattr(
        LocalPlatform, "delivered", lambda self, dataset: firehose.DeliverySummary()
    )
    path = tmp_path / "more.jsonl"
    path.write_bytes(b"\n".join(event(1000 + i) for i in range(5)) + b"\n")
    monkeypatch.setenv("DP_HOME", str(home))
    result = runner.invoke(
        app, ["ingest", "telecom_events", "--file", str(path), "--spec", SPEC], terminal_width=200
    )
    assert result.exit_code == 1
    assert "5 of the 5 records sent to the stream were not delivered" in result.output
    assert "Traceback" not in result.output
    monkeypatch.undo()
    monkeypatch.setenv("DP_HOME", str(home))
    # they are kept on the stream: the next delivery takes them, sending nothing again
    again = runner.invoke(
        app,
        ["ingest", "telecom_events", "--file", str(path), "--from-line", "99", "--spec", SPEC],
        terminal_width=200,
    )
    assert again.exit_code == 0, again.output
    assert "0 records, sent 0" in again.output and "delivered 5 to raw" in again.output


def test_a_checkpoint_of_an_earlier_stream_of_the_same_name_is_not_used(
    messy, tmp_path, monkeypatch
):
    """Issue 5's silent loss: positions of an earlier stream (deleted and created again,
    numbering from 1) would skip the new stream's records; the delivery starts over."""
    _, _, _, home = messy
    kinesis = server.client("kinesis", server.status(home), SETTINGS.region)
    stream = NAMES.stream("telecom_events")
    kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    kinesis.create_stream(StreamName=stream, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    path = tmp_path / "after.jsonl"
    path.write_bytes(b"\n".join(event(2000 + i) for i in range(7)) + b"\n")
    monkeypatch.setenv("DP_HOME", str(home))
    result = runner.invoke(
        app, ["ingest", "telecom_events", "--file", str(path), "--spec", SPEC], terminal_width=200
    )
    assert result.exit_code == 0, result.output  # nothing skipped: the new stream is read
    assert "sent 7" in result.output and "delivered 7 to raw" in result.output


def test_a_batch_file_with_bad_lines_is_uploaded_whole_and_its_bad_lines_are_named(
    messy, tmp_path, monkeypatch
):
    _, _, _, home = messy
    path = tmp_path / "baskets.csv"
    path.write_text(
        "basket_id,purchased_at,store_id,item,quantity\n"
        "b1,2026-11-20T10:00:00Z,s1,milk,1\n"
        "b1,2026-11-20T10:00:00Z,s1,bread,2,EXTRA\n"
        "b2,2026-11-20T11:00:00Z,s2,eggs,12\n"
    )
    monkeypatch.setenv("DP_HOME", str(home))
    result = runner.invoke(
        app, ["ingest", "baskets", "--file", str(path), "--spec", SPEC], terminal_width=200
    )
    assert result.exit_code == 0, result.output  # before: the whole file was refused
    assert "1 line(s) of" in result.output
    assert "line 3: 6 cells, the header has 5" in result.output
    s3 = server.client("s3", server.status(home), SETTINGS.region)
    [key] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=NAMES.raw_bucket, Prefix=layout.raw_prefix("baskets"))[
            "Contents"
        ]
    ]
    assert s3.get_object(Bucket=NAMES.raw_bucket, Key=key)["Body"].read() == path.read_bytes()
