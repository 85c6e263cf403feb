"""The curate job on an Apache Iceberg curated table (`table_format: iceberg`): MERGE by
primary key into a table in the moto server's Glue catalog and S3, through Iceberg's
GlueCatalog and S3FileIO as on Glue. Known answers: after runs with overlapping, updated and
late records the table equals pandas' "latest event per key" over every record sent; time
travel to the first snapshot equals the first run; a rerun changes no row; the spec's schema
changes (new column, rename, int -> bigint) apply without rewriting, and an incompatible one
is refused naming the file, field and fix."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from dataplatform.jobs import iceberg
from dataplatform.jobs.curate_run import parse_args, run
from dataplatform.spec import Column
from tests.jobs.conftest import aws_client
from tests.jobs.test_curate_job import event, write_raw

DATASET = "telecom_events"


@pytest.fixture
def table(spark, moto_endpoint, telecom, tmp_path):
    """An empty Iceberg curated table (the CatalogStack's shape) in a database of its own."""
    database = f"curated_{uuid.uuid4().hex[:8]}"
    bucket = f"lake-{database.replace('_', '-')}"
    s3, glue = aws_client("s3", moto_endpoint), aws_client("glue", moto_endpoint)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    glue.create_database(DatabaseInput={"Name": database})
    dataset = dataclasses.replace(telecom, table_format="iceberg")
    name = iceberg.table_name(database, DATASET)
    iceberg.configure_catalog(spark, f"s3://{bucket}/")
    spark.sql(iceberg.create_table_sql(dataset, name, f"s3://{bucket}/{DATASET}/"))
    return {"dataset": dataset, "database": database, "bucket": bucket, "name": name}


def spec_json(tmp_path: Path, dataset) -> str:
    path = tmp_path / f"spec-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"datasets": [dataclasses.asdict(dataset)]}, default=str))
    return str(path)


def job(root: Path, table: dict, dataset, *extra: str):
    uri = root.as_uri()
    return parse_args(
        [
            "--dataset",
            DATASET,
            "--raw-path",
            f"{uri}/raw/{DATASET}/",
            "--curated-path",
            f"s3://{table['bucket']}/{DATASET}/",
            "--quarantine-path",
            f"{uri}/curated/_quarantine/{DATASET}/",
            "--state-path",
            f"{uri}/curated/_state/curate/{DATASET}.json",
            "--reports-path",
            f"{uri}/artifacts/reports/curate/{DATASET}/",
            "--raw-database",
            "raw",
            "--curated-database",
            table["database"],
            "--table",
            DATASET,
            "--spec-json",
            spec_json(root, dataset),
            *extra,
        ]
    )


def latest_per_key(records: list[dict]) -> pd.DataFrame:
    """pandas' answer: every record typed, the latest event_time per event_id kept."""
    frame = pd.DataFrame(records)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame = frame.sort_values("event_time").groupby("event_id", as_index=False).last()
    frame["duration_s"] = frame["duration_s"].astype(float)
    frame["dt"] = frame["event_time"].dt.strftime("%Y-%m-%d")
    return frame[["event_id", "customer_id", "event_time", "duration_s", "plan", "dt"]]


def table_rows(spark, name: str, version: int | None = None) -> pd.DataFrame:
    clause = f" VERSION AS OF {version}" if version is not None else ""
    frame = spark.sql(
        f"SELECT event_id, customer_id, event_time, duration_s, plan, dt FROM {name}{clause}"
    ).toPandas()
    frame["event_time"] = pd.to_datetime(frame["event_time"]).dt.tz_localize("UTC")
    return frame.sort_values("event_id").reset_index(drop=True)


def expected(records: list[dict]) -> pd.DataFrame:
    return latest_per_key(records).sort_values("event_id").reset_index(drop=True)


def snapshots(spark, name: str) -> list[int]:
    rows = spark.sql(f"SELECT snapshot_id FROM {name}.snapshots ORDER BY committed_at").collect()
    return [r["snapshot_id"] for r in rows]


def test_merge_keeps_the_latest_event_per_key_and_time_travel_finds_the_first_run(
    spark, table, tmp_path
):
    dataset, name = table["dataset"], table["name"]
    first = [event(i, "2026-11-19") for i in range(6)]
    write_raw(tmp_path, DATASET, "2026-11-19", "08", first)
    report = run(job(tmp_path, table, dataset), spark, log=lambda line: None)
    assert report["table_format"] == "iceberg" and report["rows_curated"] == 6
    first_snapshot = report["iceberg"]["snapshot"]["snapshot_id"]
    pd.testing.assert_frame_equal(table_rows(spark, name), expected(first), check_dtype=False)

    second = [
        event(1, "2026-11-20", "03", duration_s="500"),  # updated: later, moves to 11-20
        # late: an older version of e2 arrives after the newer one, and changes nothing
        {**event(2, "2026-11-18", "23", duration_s="1"), "event_time": "2026-11-18T23:00:00Z"},
        event(7, "2026-11-20", "04"),  # new
        event(8, "2026-11-20", "04"),  # new
    ]
    write_raw(tmp_path, DATASET, "2026-11-20", "05", second)
    report = run(job(tmp_path, table, dataset), spark, log=lambda line: None)
    pd.testing.assert_frame_equal(
        table_rows(spark, name), expected(first + second), check_dtype=False
    )
    # time travel: the first snapshot is exactly the first run's table
    pd.testing.assert_frame_equal(
        table_rows(spark, name, first_snapshot), expected(first), check_dtype=False
    )
    assert snapshots(spark, name)[0] == first_snapshot

    # MERGE was given only what changes the table: e1 updated, e7 and e8 new (not the late e2)
    assert (report["iceberg"]["rows_inserted"], report["iceberg"]["rows_updated"]) == (2, 1)
    # a rerun of every day: the same rows, and no snapshot (no MERGE: nothing changes)
    before, history = table_rows(spark, name), snapshots(spark, name)
    rerun = run(job(tmp_path, table, dataset, "--dates", "2026-11-19,2026-11-20"), spark, log=print)
    pd.testing.assert_frame_equal(table_rows(spark, name), before)
    assert rerun["iceberg"]["snapshot"] is None and snapshots(spark, name) == history
    # Iceberg keeps no Glue partitions: the job registered none
    assert "catalog" not in report


def test_spec_schema_changes_apply_in_place_and_old_rows_read_null(spark, table, tmp_path):
    dataset, name = table["dataset"], table["name"]
    write_raw(tmp_path, DATASET, "2026-11-19", "08", [event(i, "2026-11-19") for i in range(3)])
    run(job(tmp_path, table, dataset), spark, log=lambda line: None)
    files_before = spark.sql(f"SELECT file_path FROM {name}.files").count()

    # the spec: plan renamed to tariff, payment_days_late int -> bigint, a new column channel
    columns = []
    for c in dataset.columns:
        if c.name == "plan":
            c = dataclasses.replace(c, name="tariff", renamed_from="plan")
        elif c.name == "payment_days_late":
            c = dataclasses.replace(c, type="bigint")
        columns.append(c)
    columns.append(Column(name="channel", type="string"))
    evolved = dataclasses.replace(dataset, columns=tuple(columns))
    statements = iceberg.schema_changes(iceberg.current_columns(spark, name), evolved, name)
    assert statements == [
        f"ALTER TABLE {name} RENAME COLUMN `plan` TO `tariff`",
        f"ALTER TABLE {name} ALTER COLUMN `payment_days_late` TYPE BIGINT",
        f"ALTER TABLE {name} ADD COLUMN `channel` STRING",
    ]
    new = {**event(50, "2026-11-21"), "channel": "app", "payment_days_late": "3"}
    new["tariff"] = new.pop("plan")
    write_raw(tmp_path, DATASET, "2026-11-21", "00", [new])
    report = run(job(tmp_path, table, evolved), spark, log=lambda line: None)
    assert report["iceberg"]["schema_changes"] == statements

    rows = spark.sql(f"SELECT event_id, tariff, channel, payment_days_late FROM {name}").toPandas()
    rows = rows.set_index("event_id").sort_index()
    assert rows.loc["e0", "tariff"] == "prepaid"  # the renamed column kept its data
    assert rows.loc[["e0", "e1", "e2"], "channel"].isna().all()  # old rows: NULL
    assert rows.loc["e50", "channel"] == "app" and rows.loc["e50", "payment_days_late"] == 3
    types = {f.name: f.dataType.simpleString() for f in spark.table(name).schema.fields}
    assert types["payment_days_late"] == "bigint" and "plan" not in types
    # metadata-only: the old data files are still the table's (one new file, for e50)
    assert spark.sql(f"SELECT file_path FROM {name}.files").count() == files_before + 1


def test_an_incompatible_spec_change_is_refused_naming_file_field_and_fix(spark, table, tmp_path):
    dataset, name = table["dataset"], table["name"]
    narrowed = dataclasses.replace(
        dataset,
        columns=tuple(
            dataclasses.replace(c, type="string") if c.name == "duration_s" else c
            for c in dataset.columns
        ),
        source_file="spec/datasets/telecom_events.yaml",
    )
    write_raw(tmp_path, DATASET, "2026-11-19", "08", [event(1, "2026-11-19")])
    with pytest.raises(iceberg.SchemaChangeRefused) as refused:
        run(job(tmp_path, table, narrowed), spark, log=lambda line: None)
    message = str(refused.value)
    assert "spec/datasets/telecom_events.yaml: columns[6].type" in message
    assert "double in the Iceberg table" in message and "Keep type double" in message
    assert spark.sql(f"SELECT * FROM {name}").count() == 0  # nothing written

    removed = dataclasses.replace(
        dataset, columns=tuple(c for c in dataset.columns if c.name != "cell_id")
    )
    with pytest.raises(iceberg.SchemaChangeRefused, match=r"\['cell_id'\]"):
        iceberg.schema_changes(iceberg.current_columns(spark, name), removed, name)


def test_merge_statement_matches_null_keys_only_on_equal_rows(telecom):
    dataset = dataclasses.replace(telecom, table_format="iceberg")
    sql = iceberg.merge_sql(dataset, "glue_catalog.`c`.`t`", "batch")
    assert "ON (t.`event_id` <=> s.`event_id`) AND (NOT (s.`event_id` IS NULL) OR (" in sql
    assert "WHEN MATCHED AND (s.`event_time` > t.`event_time`" in sql
    assert "WHEN NOT MATCHED THEN INSERT (`event_id`," in sql
    assert "debug_blob" not in sql  # dropped columns are not the table's
