"""The local data plane against a real moto server: the crawler registers what is in raw,
and the curate Glue job really runs (spark-submit of glue_jobs/curate.py over s3a://)."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from dataplatform.bundle import stage_job_code
from dataplatform.naming import Names
from dataplatform.runtime.local import crawler, glue_job, provision, server
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

PLATFORM = load_spec(REPO_ROOT / "spec")
SETTINGS = PLATFORM.environment("dev")
NAMES = Names.for_environment(PLATFORM, SETTINGS, account="123456789012")
DATASET = PLATFORM.dataset("telecom_events")


def event(i: int, day: str, hour: str, **extra) -> dict:
    record = {
        "event_id": f"e{i}",
        "customer_id": f"c{i % 5}",
        "event_type": "call",
        "event_time": f"{day}T{hour}:{i % 60:02d}:00Z",
        "duration_s": 30 + i,
    }
    record.update(extra)
    return record


@pytest.fixture(scope="module")
def platform(empty_platform):
    state, info = empty_platform  # the session's platform, emptied for this module
    clients = lambda service: server.client(service, info, SETTINGS.region)  # noqa: E731
    job_code = stage_job_code(PLATFORM, state / "build")
    provision.provision(PLATFORM, SETTINGS, NAMES, clients, job_code_dir=job_code)
    s3 = clients("s3")
    events = {
        ("2026-11-19", "08"): [event(i, "2026-11-19", "08") for i in range(6)],
        ("2026-11-19", "09"): [
            event(10, "2026-11-19", "09", surprise="x"),
            event(11, "2026-11-19", "09", duration_s="N/A"),
        ],
        ("2026-11-20", "00"): [event(20, "2026-11-20", "00"), event(3, "2026-11-20", "00")],
    }
    for (dt, hour), records in events.items():
        body = "".join(json.dumps(r) + "\n" for r in records)
        s3.put_object(
            Bucket=NAMES.raw_bucket,
            Key=f"telecom_events/dt={dt}/hour={hour}/part-0.json.gz",
            Body=gzip.compress(body.encode()),
        )
    yield info, clients, state, events


def test_crawler_registers_raw_partitions_once_and_logs_new_columns(platform):
    info, clients, _, events = platform
    glue, s3 = clients("glue"), clients("s3")

    first = crawler.crawl(s3, glue, dataset=DATASET, names=NAMES)
    second = crawler.crawl(s3, glue, dataset=DATASET, names=NAMES)

    assert first.partitions_added == sorted(events)
    assert first.new_columns == ["surprise"]  # logged, not added to the table
    assert second.partitions_added == [] and second.partitions_existing == len(events)
    table = glue.get_table(DatabaseName=NAMES.raw_database, Name="telecom_events")["Table"]
    assert "surprise" not in [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    partitions = glue.get_partitions(DatabaseName=NAMES.raw_database, TableName="telecom_events")[
        "Partitions"
    ]
    assert {p["StorageDescriptor"]["Location"] for p in partitions} == {
        f"s3://{NAMES.raw_bucket}/telecom_events/dt={dt}/hour={hour}/" for dt, hour in events
    }


def test_dp_crawl_twice_in_a_row_is_two_crawls_not_a_traceback(platform):
    from dataplatform.runtime.local.platform import LocalPlatform

    _, clients, state, events = platform
    local = LocalPlatform(PLATFORM, "dev", state_dir=state)
    first = local.crawl(DATASET)
    second = local.crawl(DATASET)  # moto alone: CrawlerRunningException
    assert first.partitions_known + first.partitions_added == len(events)
    assert second.partitions_added == 0 and second.partitions_known == len(events)
    # a crawl left RUNNING by a command that died is ended, and the rerun goes ahead
    clients("glue").start_crawler(Name=NAMES.crawler(DATASET.name))
    assert local.crawl(DATASET).partitions_known == len(events)


@pytest.mark.slow
def test_curate_job_really_runs_with_spark_submit_over_s3a(platform):
    info, clients, state, events = platform
    glue, s3 = clients("glue"), clients("s3")
    lines = []

    run = glue_job.run_job(
        glue,
        s3,
        job_name=NAMES.curate_job("telecom_events"),
        info=info,
        region=SETTINGS.region,
        runs_dir=state / "runs",
        library_zip=state / "build" / "job_code" / "lib" / "dataplatform.zip",
        progress=lines.append,
    )

    inputs = pd.DataFrame([r for records in events.values() for r in records])
    # e3 arrives twice (2026-11-19 and, later, 2026-11-20): one duplicate; e11's duration is bad.
    assert run.state == "SUCCEEDED"
    assert run.report["rows_in"] == len(inputs) == 10
    assert run.report["rows_quarantined"] == 1
    assert run.report["duplicates_removed"] == 1
    assert run.report["rows_curated"] == inputs.event_id.nunique() - 1 == 8
    assert run.report["extra_columns"] == ["surprise"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=NAMES.curated_bucket)["Contents"]]
    assert any(
        k.startswith("telecom_events/dt=2026-11-20/") and k.endswith(".parquet") for k in keys
    )
    assert any(k.startswith("_quarantine/telecom_events/") for k in keys)
    partitions = glue.get_partitions(
        DatabaseName=NAMES.curated_database, TableName="telecom_events"
    )["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-11-19", "2026-11-20"]
    recorded = json.loads((state / "runs" / f"{run.run_id}.json").read_text())
    assert recorded["report"]["rows_curated"] == 8
    assert any("curate telecom_events" in line for line in lines)  # the job's own progress
