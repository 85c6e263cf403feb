"""Athena's Iceberg maintenance on the local endpoint, started as any client starts it
(boto3's StartQueryExecution): OPTIMIZE ... REWRITE DATA USING BIN_PACK leaves the rows
identical with fewer files, in one `replace` snapshot, and only in the partitions its WHERE
keeps; VACUUM expires the snapshots older than the table's retention (keeping the newest it
must) and deletes the files nothing refers to any more; neither takes a Hive table."""

from __future__ import annotations

import time

import boto3
import pyarrow as pa
import pytest

from dataplatform.runtime.local import server
from dataplatform.runtime.local.athena import maintenance

REGION = "eu-west-1"
BUCKET = "lake-maintenance"
DATABASE = "curated_maintenance"


def client(service: str, info):
    return boto3.client(
        service,
        endpoint_url=info.endpoint,
        region_name=REGION,
        aws_access_key_id=server.ACCESS_KEY,
        aws_secret_access_key=server.SECRET_KEY,
    )


@pytest.fixture(scope="module")
def info(tmp_path_factory):
    home = tmp_path_factory.mktemp("dp-maintenance")
    running, _ = server.up(home)
    try:
        s3, glue = client("s3", running), client("glue", running)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        glue.create_database(DatabaseInput={"Name": DATABASE})
        yield running
    finally:
        server.down(home)


def catalog(info):
    return maintenance.catalog(info.endpoint, REGION, server.ACCESS_KEY, server.SECRET_KEY)


def batch(ids: list[int], day: str) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([f"k{i}" for i in ids], pa.string()),
            "amount": pa.array([float(i) * 1.5 for i in ids], pa.float64()),
            "dt": pa.array([day] * len(ids), pa.string()),
        }
    )


def make_table(info, name: str, properties: dict[str, str] | None = None):
    """An Iceberg table partitioned by dt with several small files per partition: three
    appends to 2026-12-01, two to 2026-12-02, one to 2026-12-03."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import DoubleType, NestedField, StringType

    schema = Schema(
        NestedField(1, "id", StringType(), required=False),
        NestedField(2, "amount", DoubleType(), required=False),
        NestedField(3, "dt", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(3, 1000, IdentityTransform(), "dt"))
    table = catalog(info).create_table(
        (DATABASE, name),
        schema=schema,
        partition_spec=spec,
        location=f"s3://{BUCKET}/{name}/",
        properties=properties or {},
    )
    for ids, day in (
        ([1, 2], "2026-12-01"),
        ([3], "2026-12-01"),
        ([4, 5], "2026-12-01"),
        ([6], "2026-12-02"),
        ([7, 8], "2026-12-02"),
        ([9], "2026-12-03"),
    ):
        table.append(batch(ids, day))
    return table.refresh()


def rows(table) -> list[tuple]:
    data = table.refresh().scan().to_arrow().to_pylist()
    return sorted((r["id"], r["amount"], r["dt"]) for r in data)


def files_per_partition(table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in table.refresh().scan().plan_files():
        day = task.file.partition[0]
        counts[day] = counts.get(day, 0) + 1
    return counts


def athena(info, sql: str) -> dict:
    client_ = client("athena", info)
    query_id = client_.start_query_execution(
        QueryString=sql,
        QueryExecutionContext={"Database": DATABASE},
        ResultConfiguration={"OutputLocation": f"s3://{BUCKET}/athena-results/"},
    )["QueryExecutionId"]
    for _ in range(1200):
        execution = client_.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] not in ("QUEUED", "RUNNING"):
            return execution
        time.sleep(0.05)
    raise AssertionError(f"{sql} did not finish")


def test_optimize_bin_packs_each_partition_into_one_file_with_the_same_rows(info):
    table = make_table(info, "sales_optimize")
    before_rows, snapshots_before = rows(table), len(table.snapshots())
    assert files_per_partition(table) == {"2026-12-01": 3, "2026-12-02": 2, "2026-12-03": 1}

    # WHERE on the partition column: only that partition is rewritten
    done = athena(
        info,
        f"OPTIMIZE {DATABASE}.sales_optimize REWRITE DATA USING BIN_PACK WHERE dt = '2026-12-02'",
    )
    assert done["Status"]["State"] == "SUCCEEDED", done["Status"]
    assert files_per_partition(table) == {"2026-12-01": 3, "2026-12-02": 1, "2026-12-03": 1}

    done = athena(info, "OPTIMIZE sales_optimize REWRITE DATA USING BIN_PACK")
    assert done["Status"]["State"] == "SUCCEEDED", done["Status"]
    table = table.refresh()
    assert files_per_partition(table) == {"2026-12-01": 1, "2026-12-02": 1, "2026-12-03": 1}
    assert rows(table) == before_rows
    assert len(table.snapshots()) == snapshots_before + 2  # one snapshot per OPTIMIZE
    summary = table.current_snapshot().summary
    assert summary["deleted-data-files"] == "3" and summary["added-data-files"] == "1"

    # nothing left to pack: no new snapshot
    athena(info, "OPTIMIZE sales_optimize REWRITE DATA USING BIN_PACK")
    assert len(table.refresh().snapshots()) == snapshots_before + 2


def test_optimize_refuses_a_where_on_a_data_column(info):
    make_table(info, "sales_where")
    done = athena(info, "OPTIMIZE sales_where REWRITE DATA USING BIN_PACK WHERE amount > 3")
    assert done["Status"]["State"] == "FAILED"
    assert "partition columns only (dt)" in done["Status"]["StateChangeReason"]


def test_vacuum_expires_old_snapshots_and_deletes_the_files_they_alone_held(info):
    table = make_table(
        info,
        "sales_vacuum",
        # retention 0 s: every snapshot but the newest is older than it (no clock games)
        {"vacuum_max_snapshot_age_seconds": "0", "vacuum_min_snapshots_to_keep": "1"},
    )
    athena(info, "OPTIMIZE sales_vacuum REWRITE DATA USING BIN_PACK")
    table = table.refresh()
    before_rows = rows(table)
    s3 = client("s3", info)

    def data_objects() -> set[str]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="sales_vacuum/data/")
        return {o["Key"] for o in listed.get("Contents", [])}

    # the six appended files and the two packed ones (12-03 had one file: left as it was)
    assert len(data_objects()) == 6 + 2
    done = athena(info, f"VACUUM {DATABASE}.sales_vacuum")
    assert done["Status"]["State"] == "SUCCEEDED", done["Status"]
    table = table.refresh()
    assert [s.snapshot_id for s in table.snapshots()] == [table.current_snapshot().snapshot_id]
    assert len(data_objects()) == 3  # only the current snapshot's files are left
    assert rows(table) == before_rows


def test_maintenance_of_a_hive_table_fails_as_athena_does(info):
    client("glue", info).create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": "hive_sales",
            "StorageDescriptor": {
                "Location": f"s3://{BUCKET}/hive_sales/",
                "Columns": [{"Name": "id", "Type": "string"}],
            },
        },
    )
    for sql in ("OPTIMIZE hive_sales REWRITE DATA USING BIN_PACK", "VACUUM hive_sales"):
        done = athena(info, sql)
        assert done["Status"]["State"] == "FAILED"
        assert "NOT_SUPPORTED" in done["Status"]["StateChangeReason"]


def test_a_scheduled_optimize_fires_when_its_cron_comes_due(info):
    """The CatalogStack's kind of schedule: Scheduler's universal target calling Athena's
    StartQueryExecution with OPTIMIZE. The local Scheduler fires it once its cron comes due
    (the tick's time is given, so no wall clock decides the outcome)."""
    import json
    import urllib.request
    from datetime import UTC, datetime, timedelta

    table = make_table(info, "sales_scheduled")
    assert files_per_partition(table)["2026-12-01"] == 3
    scheduler = client("scheduler", info)
    scheduler.create_schedule(
        Name="optimize-sales",
        ScheduleExpression="cron(0 3 * * ? *)",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": "arn:aws:scheduler:::aws-sdk:athena:startQueryExecution",
            "RoleArn": "arn:aws:iam::123456789012:role/maintain",
            "Input": json.dumps(
                {
                    "QueryString": "OPTIMIZE sales_scheduled REWRITE DATA USING BIN_PACK",
                    "QueryExecutionContext": {"Database": DATABASE},
                    "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"},
                }
            ),
        },
    )

    def tick(now: datetime) -> list[dict]:
        request = urllib.request.Request(
            info.endpoint + "/_dp/scheduler/tick",
            data=json.dumps({"Now": now.isoformat(), "Region": REGION}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["Fired"]

    # the first 03:00 after the schedule was made (its creation time, not the test's clock)
    created = scheduler.get_schedule(Name="optimize-sales")["CreationDate"].astimezone(UTC)
    first = created.replace(hour=3, minute=0, second=0, microsecond=0)
    first += timedelta(days=1) if first <= created else timedelta()
    assert tick(first - timedelta(minutes=1)) == []  # 02:59: not yet
    fired = tick(first + timedelta(minutes=1))
    assert [f["Schedule"] for f in fired] == ["optimize-sales"]
    assert fired[0]["Time"] == first.isoformat()
    query_id = fired[0]["Answer"]["QueryExecutionId"]
    athena_ = client("athena", info)
    for _ in range(1200):
        state = athena_.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if state["Status"]["State"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.05)
    assert state["Status"]["State"] == "SUCCEEDED", state["Status"]
    assert files_per_partition(table) == {"2026-12-01": 1, "2026-12-02": 1, "2026-12-03": 1}
    assert tick(first + timedelta(minutes=30)) == []  # fired once for 03:00
