"""`dp`'s error messages and exit codes against a running (provisioned) local platform,
and the AWS target's calls against moto in-process (control flow only)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from dataplatform.cli import app
from stacks.platform import REPO_ROOT

runner = CliRunner()
SPEC = str(REPO_ROOT / "spec")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    home = tmp_path_factory.mktemp("dp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DP_HOME", str(home))
        up = runner.invoke(app, ["local", "up", "--spec", SPEC])
        assert up.exit_code == 0, up.output
        yield home
        runner.invoke(app, ["local", "down"])


def invoke(*args: str):
    return runner.invoke(app, [*args, "--spec", SPEC])


def test_unknown_dataset_lists_the_known_ones(running, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(running))
    result = invoke("crawl", "telecom")
    assert result.exit_code == 2
    assert (
        "unknown dataset 'telecom'; known datasets: baskets, churn_outcomes, churn_scores, clv_scores, house_sales, telecom_events"
        in result.output
    )


def test_missing_file_is_named(running, monkeypatch, tmp_path):
    monkeypatch.setenv("DP_HOME", str(running))
    result = invoke("ingest", "telecom_events", "--file", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "nope.jsonl: no such file" in result.output


def test_file_of_the_wrong_format_is_refused(running, monkeypatch, tmp_path):
    monkeypatch.setenv("DP_HOME", str(running))
    bad = tmp_path / "events.parquet"
    bad.write_bytes(b"PAR1")
    result = invoke("ingest", "telecom_events", "--file", str(bad))
    assert result.exit_code == 2
    assert "events.parquet" in result.output


def test_sql_error_gives_the_message_and_position(running, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(running))
    result = invoke("query", "SELECT event_type,\nFROM telecom_events WHERE")
    assert result.exit_code == 1
    assert "query failed" in result.output and "line" in result.output


def test_query_of_an_unknown_table_lists_the_tables(running, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(running))
    result = invoke("query", "SELECT * FROM nope")
    assert result.exit_code == 1
    assert "telecom_events" in result.output


def test_ingest_then_query_on_the_local_platform(running, monkeypatch, tmp_path):
    monkeypatch.setenv("DP_HOME", str(running))
    events = tmp_path / "e.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"x{i}",
                    "customer_id": "c1",
                    "event_type": "call",
                    "event_time": "2026-11-20T10:00:00Z",
                }
            )
            + "\n"
            for i in range(7)
        )
        + '{"broken": \n'
    )
    result = invoke("ingest", "telecom_events", "--file", str(events))
    # the line that is not JSON is sent too, and the transform sends it to the error prefix
    assert result.exit_code == 0, result.output
    assert "sent 8" in result.output and "delivered 7 to raw" in result.output
    assert "1 to the error prefix" in result.output and "line 8: not_json" in result.output
    query = invoke(
        "query",
        "SELECT count(*) AS n FROM mldp_dev_raw.telecom_events WHERE dt = '2026-11-20'",
        "--output",
        "json",
    )
    assert query.exit_code == 0, query.output
    assert json.loads(query.output) == [{"n": 7}]


def test_dp_table_on_the_iceberg_table_and_its_refusals(running, monkeypatch):
    """house_sales is an Iceberg table: `dp table` lists its (no) snapshots and maintains
    it; telecom_events is a Hive table and is refused naming the setting; a WHERE that is
    not a partition predicate and time travel to a snapshot that is not there fail."""
    monkeypatch.setenv("DP_HOME", str(running))
    snapshots = invoke("table", "snapshots", "house_sales", "--output", "json")
    assert snapshots.exit_code == 0, snapshots.output
    assert json.loads(snapshots.output) == []  # created by the deployment, never written
    vacuum = invoke("table", "vacuum", "house_sales")
    assert vacuum.exit_code == 0, vacuum.output
    assert (
        invoke("table", "optimize", "house_sales", "--where", "dt >= '2026-01-01'").exit_code == 0
    )

    hive = invoke("table", "snapshots", "telecom_events")
    assert hive.exit_code == 2
    assert "Hive (Parquet) table" in hive.output and "table_format: iceberg" in hive.output
    injected = invoke("table", "optimize", "house_sales", "--where", "dt = '1'; DROP TABLE x")
    assert injected.exit_code == 2 and "--where" in injected.output
    data_column = invoke("table", "optimize", "house_sales", "--where", "price > 3")
    assert data_column.exit_code == 1 and "partition columns only (dt)" in data_column.output
    travel = invoke("query", "SELECT * FROM house_sales FOR VERSION AS OF 42")
    assert travel.exit_code == 1 and "snapshot" in travel.output.lower()


def test_commands_say_how_to_start_the_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(tmp_path / "empty"))
    result = invoke("query", "SELECT 1")
    assert result.exit_code == 1
    assert "dp local up" in result.output


@mock_aws
def test_aws_target_puts_records_into_the_deployed_stream(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    kinesis = boto3.client("kinesis", region_name="eu-west-1")
    kinesis.create_stream(StreamName="mldp-dev-telecom_events", ShardCount=1)
    events = tmp_path / "e.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"a{i}",
                    "customer_id": "c",
                    "event_type": "call",
                    "event_time": 1763626500,
                }
            )
            + "\n"
            for i in range(3)
        )
    )

    result = runner.invoke(
        app, ["--target", "aws", "ingest", "telecom_events", "--file", str(events), "--spec", SPEC]
    )

    assert result.exit_code == 0, result.output
    assert "sent 3" in result.output
    iterator = kinesis.get_shard_iterator(
        StreamName="mldp-dev-telecom_events",
        ShardId="shardId-000000000000",
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert sorted(json.loads(r["Data"])["event_id"] for r in records) == ["a0", "a1", "a2"]
    assert {r["PartitionKey"] for r in records} == {"a0", "a1", "a2"}  # the primary key
