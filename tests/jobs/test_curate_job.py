"""The curate job end to end on local files (file://), as Glue would run it: partitions
chosen by the watermark, real Spark reads and writes, report and state files; and the
catalog registration against moto's Glue (which is faithful for partitions)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from dataplatform.jobs import curate_run
from dataplatform.jobs.curate_run import parse_args, plan_partitions, register_partitions, run


def write_raw(root: Path, dataset: str, dt: str, hour: str, lines: list, name="part-0") -> None:
    folder = root / "raw" / dataset / f"dt={dt}" / f"hour={hour}"
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
    with gzip.open(folder / f"{name}.json.gz", "wt", encoding="utf-8") as f:
        f.write(text)


def event(i: int, day: str, hour: str = "08", **extra) -> dict:
    record = {
        "event_id": f"e{i}",
        "customer_id": f"c{i % 7}",
        "event_type": "call",
        "event_time": f"{day}T{hour}:{i % 60:02d}:00Z",
        "duration_s": str(10 + i),
        "plan": "prepaid",
    }
    record.update(extra)
    return record


def job_args(root: Path, dataset: str = "telecom_events", *extra: str):
    uri = root.as_uri()
    return parse_args(
        [
            "--dataset",
            dataset,
            "--raw-path",
            f"{uri}/raw/{dataset}/",
            "--curated-path",
            f"{uri}/curated/{dataset}/",
            "--quarantine-path",
            f"{uri}/curated/_quarantine/{dataset}/",
            "--state-path",
            f"{uri}/curated/_state/curate/{dataset}.json",
            "--reports-path",
            f"{uri}/artifacts/reports/curate/{dataset}/",
            "--raw-database",
            "raw",
            "--curated-database",
            "curated",
            "--table",
            dataset,
            "--no-catalog",
            "--JOB_NAME",
            "curate-x",
            *extra,
        ]
    )


def curated(spark, root: Path, dataset: str = "telecom_events") -> pd.DataFrame:
    frame = spark.read.parquet(str(root / "curated" / dataset)).toPandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def state(root: Path, dataset: str = "telecom_events") -> dict | None:
    path = root / "curated" / "_state" / "curate" / f"{dataset}.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def lake(tmp_path):
    write_raw(
        tmp_path, "telecom_events", "2026-11-19", "08", [event(i, "2026-11-19") for i in range(5)]
    )
    write_raw(
        tmp_path,
        "telecom_events",
        "2026-11-19",
        "09",
        [
            event(10, "2026-11-19", "09"),
            event(11, "2026-11-19", "09", duration_s="N/A"),
            "{not json at all",
            event(2, "2026-11-19", "09", duration_s="99"),
        ],
    )  # e2 again, later
    write_raw(tmp_path, "telecom_events", "2026-11-20", "00", [event(20, "2026-11-20", "00")])
    return tmp_path


def test_job_arguments_tolerate_glue_extras_and_use_its_run_id():
    args = parse_args(
        [
            "--dataset",
            "d",
            "--raw-path",
            "s3://r/d",
            "--curated-path",
            "s3://c/d",
            "--quarantine-path",
            "s3://c/_q/d",
            "--state-path",
            "s3://c/_s/d.json",
            "--reports-path",
            "s3://a/r/d",
            "--raw-database",
            "r",
            "--curated-database",
            "c",
            "--table",
            "d",
            "--JOB_NAME",
            "j",
            "--JOB_RUN_ID",
            "jr_123",
            "--TempDir",
            "s3://a/tmp/",
            "--enable-metrics",
            "true",
        ]
    )
    assert args.run_id == "jr_123"
    assert args.raw_path == "s3://r/d/"  # normalized to a prefix


def test_bad_dates_argument_is_refused_with_the_value(capsys):
    with pytest.raises(SystemExit):
        parse_args(
            [
                "--dataset",
                "d",
                "--raw-path",
                "x",
                "--curated-path",
                "x",
                "--quarantine-path",
                "x",
                "--state-path",
                "x",
                "--reports-path",
                "x",
                "--raw-database",
                "r",
                "--curated-database",
                "c",
                "--table",
                "d",
                "--dates",
                "2026-11-20,yesterday",
            ]
        )
    assert "'yesterday' is not a date" in capsys.readouterr().err


def test_first_run_curates_quarantines_and_reconciles(spark, lake):
    report = run(job_args(lake), spark, log=lambda _: None)

    rows = curated(spark, lake)
    # 5 + 4 + 1 lines in: e2 twice (later one wins), e11 bad duration, one malformed line.
    assert report["rows_in"] == 10
    assert report["rows_quarantined"] == 2
    assert report["quarantined_by_reason"] == {"duration_s:type": 1, "_line:malformed_json": 1}
    assert report["duplicates_removed"] == 1
    assert report["rows_curated"] == len(rows) == 7
    assert rows.loc[rows.event_id == "e2", "duration_s"].tolist() == [99.0]
    assert sorted(rows.dt.unique()) == ["2026-11-19", "2026-11-20"]
    quarantine = spark.read.parquet(str(lake / "curated/_quarantine/telecom_events")).toPandas()
    assert sorted(quarantine.reason) == ["_line:malformed_json", "duration_s:type"]
    assert quarantine.loc[quarantine.reason == "_line:malformed_json", "_raw_line"].tolist() == [
        "{not json at all"
    ]
    saved = json.loads(
        (lake / f"artifacts/reports/curate/telecom_events/{report['run_id']}.json").read_text()
    )
    assert saved["rows_curated"] == 7
    assert state(lake)["processed_through"] == "dt=2026-11-20/hour=00"


def test_rerunning_the_same_input_gives_identical_curated_output(spark, lake):
    run(
        job_args(lake, "telecom_events", "--dates", "2026-11-19,2026-11-20"),
        spark,
        log=lambda _: None,
    )
    first = curated(spark, lake)
    run(
        job_args(lake, "telecom_events", "--dates", "2026-11-19,2026-11-20"),
        spark,
        log=lambda _: None,
    )
    second = curated(spark, lake)
    pd.testing.assert_frame_equal(first, second)
    assert state(lake) is None  # a backfill does not move the watermark


def test_incremental_run_reads_only_days_with_new_partitions(spark, lake):
    run(job_args(lake), spark, log=lambda _: None)
    write_raw(lake, "telecom_events", "2026-11-20", "05", [event(30, "2026-11-20", "05")])

    report = run(job_args(lake), spark, log=lambda _: None)

    # The new hour belongs to 2026-11-20: that whole day is rebuilt, 2026-11-19 is not read.
    assert report["raw_partitions"] == ["dt=2026-11-20/hour=00", "dt=2026-11-20/hour=05"]
    assert report["rows_in"] == 2
    rows = curated(spark, lake)
    assert len(rows) == 8  # the 7 from the first run (2026-11-19 untouched) + e30
    assert state(lake)["processed_through"] == "dt=2026-11-20/hour=05"

    nothing_new = run(job_args(lake), spark, log=lambda _: None)
    assert nothing_new["raw_partitions"] == [] and nothing_new["rows_in"] == 0


def test_a_run_failing_midway_leaves_the_watermark_and_a_rerun_recovers(spark, lake, monkeypatch):
    run(job_args(lake), spark, log=lambda _: None)
    before = curated(spark, lake)
    write_raw(lake, "telecom_events", "2026-11-21", "03", [event(40, "2026-11-21", "03")])

    def crash(*args, **kwargs):
        raise RuntimeError("injected: the catalog is unreachable")

    args = job_args(lake)
    args.no_catalog = False
    monkeypatch.setattr(curate_run, "register_partitions", crash)
    with pytest.raises(RuntimeError, match="injected"):
        run(args, spark, glue_factory=lambda: None, log=lambda _: None)
    assert state(lake)["processed_through"] == "dt=2026-11-20/hour=00"  # unmoved

    monkeypatch.undo()
    report = run(job_args(lake), spark, log=lambda _: None)

    assert report["raw_partitions"] == ["dt=2026-11-21/hour=03"]
    after = curated(spark, lake)
    assert len(after) == len(before) + 1
    assert state(lake)["processed_through"] == "dt=2026-11-21/hour=03"


def test_batch_csv_dataset_reports_extra_columns_and_keeps_raw_rows(spark, tmp_path, platform):
    folder = tmp_path / "raw" / "house_sales" / "dt=2026-11-20" / "hour=10"
    folder.mkdir(parents=True)
    (folder / "upload.csv").write_text(
        "sale_id,sale_date,price,bedrooms,zipcode,surprise\n"
        "s1,2026-11-01T10:00:00Z,350000,3,98101,x\n"
        "s2,2026-10-05,N/A,2,98102,y\n"
        "s3,2026-10-06,420000,,98103,z\n"
    )

    # the Hive-table variant (the shipped spec's house_sales is an Iceberg table, whose
    # MERGE tests/jobs/test_curate_iceberg.py covers): this is about reading CSV
    hive = dataclasses.replace(platform.dataset("house_sales"), table_format="hive")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"datasets": [dataclasses.asdict(hive)]}, default=str))
    report = run(
        job_args(tmp_path, "house_sales", "--spec-json", str(spec)), spark, log=lambda _: None
    )

    assert (
        report["rows_in"] == 3 and report["rows_curated"] == 2 and report["rows_quarantined"] == 1
    )
    assert report["extra_columns"] == ["surprise"]
    rows = curated(spark, tmp_path, "house_sales")
    assert "surprise" not in rows.columns
    assert sorted(rows.dt) == ["2026-10-06", "2026-11-01"]  # from sale_date, not the upload day


# --- partition planning (pure)


def test_plan_for_a_stream_dataset_rebuilds_whole_days_of_new_partitions(platform):
    available = [
        "dt=2026-11-19/hour=08",
        "dt=2026-11-19/hour=09",
        "dt=2026-11-20/hour=00",
        "dt=2026-11-20/hour=01",
    ]
    plan = plan_partitions(
        available, platform.dataset("telecom_events"), dates=[], watermark="dt=2026-11-20/hour=00"
    )
    assert plan.partitions == ["dt=2026-11-20/hour=00", "dt=2026-11-20/hour=01"]
    assert plan.new_watermark == "dt=2026-11-20/hour=01"


def test_plan_for_a_batch_dataset_with_event_time_reads_everything(platform):
    available = ["dt=2026-11-19/hour=08", "dt=2026-11-20/hour=00"]
    plan = plan_partitions(
        available, platform.dataset("house_sales"), dates=[], watermark="dt=2026-11-19/hour=08"
    )
    assert plan.partitions == available and plan.new_watermark == "dt=2026-11-20/hour=00"
    assert plan.complete
    # a backfill of some upload days rebuilds all too (those uploads' events lie on any day)
    backfill = plan_partitions(
        available, platform.dataset("house_sales"), dates=["2026-11-20"], watermark=None
    )
    assert backfill.partitions == available and backfill.complete
    assert backfill.new_watermark is None


def test_raw_read_paths_are_one_glob_per_day_of_exactly_the_planned_hours():
    paths = curate_run.raw_read_paths(
        "s3://raw/ds/",
        [
            "dt=2026-11-20/hour=01",
            "dt=2026-11-19/hour=23",
            "dt=2026-11-20/hour=00",
            "dt=2026-11-18",
            "dt=2026-11-17",
        ],
    )
    assert paths == [
        "s3://raw/ds/dt=2026-11-19/hour={23}/",
        "s3://raw/ds/dt=2026-11-20/hour={00,01}/",
        "s3://raw/ds/dt={2026-11-17,2026-11-18}/",
    ]
    # a day planned whole is not read a second time through its hours
    assert curate_run.raw_read_paths(
        "s3://raw/ds/", ["dt=2026-11-20", "dt=2026-11-20/hour=00"]
    ) == ["s3://raw/ds/dt={2026-11-20}/"]


def test_read_raw_reads_the_planned_hours_and_no_others(spark, tmp_path, platform):
    raw = tmp_path / "raw"
    for day, hour in (
        ("2026-11-19", "23"),
        ("2026-11-20", "00"),
        ("2026-11-20", "01"),
        ("2026-11-20", "02"),
    ):
        folder = raw / f"dt={day}" / f"hour={hour}"
        folder.mkdir(parents=True)
        (folder / "part.json").write_text(json.dumps({"at": f"{day}T{hour}"}) + "\n")
    rows, lines = curate_run.read_raw(
        spark,
        platform.dataset("telecom_events"),
        raw.as_uri() + "/",
        ["dt=2026-11-19/hour=23", "dt=2026-11-20/hour=00", "dt=2026-11-20/hour=02"],
    )
    try:
        got = sorted((r["at"], r["dt"], r["hour"]) for r in rows.collect())
    finally:
        rows.unpersist()
        lines.unpersist()
    assert got == [
        ("2026-11-19T23", "2026-11-19", "23"),
        ("2026-11-20T00", "2026-11-20", "00"),
        ("2026-11-20T02", "2026-11-20", "02"),
    ]


# --- the catalog (moto's Glue is faithful for databases, tables and partitions)


@mock_aws
def test_register_partitions_creates_new_days_and_updates_existing_ones():
    glue = boto3.client("glue", region_name="eu-west-1")
    glue.create_database(DatabaseInput={"Name": "curated"})
    glue.create_table(
        DatabaseName="curated",
        TableInput={
            "Name": "telecom_events",
            "StorageDescriptor": {
                "Columns": [{"Name": "event_id", "Type": "string"}],
                "Location": "s3://curated-bucket/telecom_events/",
                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "SerdeInfo": {
                    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                },
            },
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        },
    )

    first = register_partitions(
        glue, database="curated", table="telecom_events", days=["2026-11-19", "2026-11-20"]
    )
    second = register_partitions(
        glue, database="curated", table="telecom_events", days=["2026-11-20", "2026-11-21"]
    )

    assert first == {"created": ["2026-11-19", "2026-11-20"], "updated": []}
    assert second == {"created": ["2026-11-21"], "updated": ["2026-11-20"]}
    partitions = glue.get_partitions(DatabaseName="curated", TableName="telecom_events")[
        "Partitions"
    ]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-11-19", "2026-11-20", "2026-11-21"]
    locations = {p["Values"][0]: p["StorageDescriptor"]["Location"] for p in partitions}
    assert locations["2026-11-21"] == "s3://curated-bucket/telecom_events/dt=2026-11-21/"


# --- s3a:// against a moto server, with catalog registration: the local platform's path


def test_job_reads_and_writes_s3a_on_moto_and_registers_curated_partitions(spark, moto_endpoint):
    from tests.jobs.conftest import aws_client

    s3, glue = aws_client("s3", moto_endpoint), aws_client("glue", moto_endpoint)
    buckets = {zone: f"s3a-test-{zone}" for zone in ("raw", "curated", "artifacts")}
    for bucket in buckets.values():
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    for hour, ids in (("08", range(0, 4)), ("09", range(4, 6))):
        body = "".join(json.dumps(event(i, "2026-11-19", hour)) + "\n" for i in ids)
        s3.put_object(
            Bucket=buckets["raw"],
            Key=f"telecom_events/dt=2026-11-19/hour={hour}/f.json.gz",
            Body=gzip.compress(body.encode()),
        )
    s3.put_object(
        Bucket=buckets["raw"],
        Key="telecom_events/dt=2026-11-20/hour=00/f.json.gz",
        Body=gzip.compress((json.dumps(event(9, "2026-11-20", "00")) + "\n").encode()),
    )
    glue.create_database(DatabaseInput={"Name": "s3a_curated"})
    glue.create_table(
        DatabaseName="s3a_curated",
        TableInput={
            "Name": "telecom_events",
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
            "StorageDescriptor": {
                "Columns": [{"Name": "event_id", "Type": "string"}],
                "Location": f"s3://{buckets['curated']}/telecom_events/",
                "SerdeInfo": {
                    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                },
            },
        },
    )
    args = parse_args(
        [
            "--dataset",
            "telecom_events",
            "--raw-path",
            f"s3a://{buckets['raw']}/telecom_events/",
            "--curated-path",
            f"s3a://{buckets['curated']}/telecom_events/",
            "--quarantine-path",
            f"s3a://{buckets['curated']}/_quarantine/telecom_events/",
            "--state-path",
            f"s3a://{buckets['curated']}/_state/curate/telecom_events.json",
            "--reports-path",
            f"s3a://{buckets['artifacts']}/reports/curate/telecom_events/",
            "--raw-database",
            "s3a_raw",
            "--curated-database",
            "s3a_curated",
            "--table",
            "telecom_events",
            "--run-id",
            "run-1",
        ]
    )

    report = run(args, spark, glue_factory=lambda: glue, log=lambda _: None)

    assert report["rows_in"] == report["rows_curated"] == 7
    back = spark.read.parquet(f"s3a://{buckets['curated']}/telecom_events/")
    assert back.count() == 7
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets["curated"])["Contents"]]
    assert any(
        k.startswith("telecom_events/dt=2026-11-20/") and k.endswith(".parquet") for k in keys
    )
    saved = json.loads(
        s3.get_object(Bucket=buckets["artifacts"], Key="reports/curate/telecom_events/run-1.json")[
            "Body"
        ].read()
    )
    assert saved["rows_curated"] == 7
    state_obj = json.loads(
        s3.get_object(Bucket=buckets["curated"], Key="_state/curate/telecom_events.json")[
            "Body"
        ].read()
    )
    assert state_obj["processed_through"] == "dt=2026-11-20/hour=00"
    partitions = glue.get_partitions(DatabaseName="s3a_curated", TableName="telecom_events")[
        "Partitions"
    ]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-11-19", "2026-11-20"]
    assert report["catalog"] == {"created": ["2026-11-19", "2026-11-20"], "updated": []}


def test_job_finds_its_dataset_inside_the_library_zip_as_glue_imports_it(tmp_path, platform):
    """Glue and EMR import --extra-py-files zips with zipimport: no spec/ folder, no files."""
    import subprocess
    import sys

    from dataplatform.bundle import library_zip_bytes

    library = tmp_path / "dataplatform.zip"
    library.write_bytes(library_zip_bytes(platform))
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from dataplatform.jobs.curate_run import load_dataset, parse_args;"
        "import dataplatform; assert dataplatform.__file__.startswith(sys.argv[1]);"
        "args = parse_args(['--dataset', 'house_sales'] + [a for k in ('raw-path', 'curated-path',"
        " 'quarantine-path', 'state-path', 'reports-path', 'raw-database', 'curated-database',"
        " 'table') for a in ('--' + k, 'x')]);"
        "print(load_dataset(args).primary_key)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(library)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('sale_id',)"


def test_a_complete_rebuild_removes_the_days_whose_rows_moved_away(spark, tmp_path, platform):
    """A batch dataset with an event time is rebuilt from every upload; when a correction
    moves a day's only row to another day, the old day goes (it held only the stale copy),
    so the table has each sale once. (bench/curate_iceberg.py found 7 such duplicates.)"""
    hive = dataclasses.replace(platform.dataset("house_sales"), table_format="hive")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"datasets": [dataclasses.asdict(hive)]}, default=str))
    header = "sale_id,sale_date,price,zipcode\n"
    first = tmp_path / "raw" / "house_sales" / "dt=2026-11-20" / "hour=10"
    first.mkdir(parents=True)
    (first / "upload.csv").write_text(
        header + "s1,2026-10-05,300000,98101\ns2,2026-10-06,400000,98102\n"
    )
    arguments = ("--spec-json", str(spec))
    report = run(job_args(tmp_path, "house_sales", *arguments), spark, log=lambda _: None)
    assert report["partitions"] == ["2026-10-05", "2026-10-06"]

    second = tmp_path / "raw" / "house_sales" / "dt=2026-11-21" / "hour=09"
    second.mkdir(parents=True)
    (second / "upload.csv").write_text(header + "s1,2026-10-07,310000,98101\n")  # s1 corrected
    report = run(job_args(tmp_path, "house_sales", *arguments), spark, log=lambda _: None)
    assert report["partitions_removed"] == ["2026-10-05"]
    rows = curated(spark, tmp_path, "house_sales")
    assert sorted(zip(rows.sale_id, rows.dt, rows.price, strict=True)) == [
        ("s1", "2026-10-07", 310000.0),
        ("s2", "2026-10-06", 400000.0),
    ]
    assert not (tmp_path / "curated" / "house_sales" / "dt=2026-10-05").exists()


def test_removed_days_leave_the_catalog_too():
    from dataplatform.jobs.curate_run import deregister_partitions

    with mock_aws():
        glue = boto3.client("glue", region_name="eu-west-1")
        glue.create_database(DatabaseInput={"Name": "c"})
        glue.create_table(
            DatabaseName="c",
            TableInput={
                "Name": "t",
                "StorageDescriptor": {"Location": "s3://b/t/", "Columns": []},
                "PartitionKeys": [{"Name": "dt", "Type": "string"}],
            },
        )
        days = [f"2026-10-{d:02d}" for d in range(1, 31)]
        register_partitions(glue, database="c", table="t", days=days)
        assert deregister_partitions(glue, database="c", table="t", days=days[:27]) == days[:27]
        left = glue.get_partitions(DatabaseName="c", TableName="t")["Partitions"]
        assert sorted(p["Values"][0] for p in left) == days[27:]
