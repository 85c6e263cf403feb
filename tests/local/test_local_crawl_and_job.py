"""Glue on the local endpoint, driven with plain boto3: StartCrawler registers what is in
raw, and StartJobRun of the curate job really runs glue_jobs/curate.py on the local Spark
over s3a:// (moto alone: a crawl that crawls nothing, a run that SUCCEEDS without running)."""

from __future__ import annotations

import gzip
import io
import json
import time
import zipfile

import pandas as pd
import pytest

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.runtime.aws.jobs import JOB_LOG_GROUP
from dataplatform.runtime.local import provision, server
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
    provision.provision(PLATFORM, SETTINGS, NAMES, clients)
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


def crawl(glue, name: str) -> dict:
    """StartCrawler, then GetCrawler until it is READY again; the crawl's ListCrawls entry."""
    glue.start_crawler(Name=name)
    for _ in range(600):
        crawler = glue.get_crawler(Name=name)["Crawler"]
        if crawler["State"] == "READY":
            break
        time.sleep(0.05)
    assert crawler["LastCrawl"]["Status"] == "SUCCEEDED", crawler["LastCrawl"]
    [last] = [
        c
        for c in glue.list_crawls(CrawlerName=name)["Crawls"]
        if c["CrawlId"] == crawler["LastCrawl"]["MessagePrefix"]
    ]
    return last


def test_crawler_registers_raw_partitions_once_and_logs_new_columns(platform):
    info, clients, _, events = platform
    glue, logs = clients("glue"), clients("logs")
    name = NAMES.crawler(DATASET.name)

    first = crawl(glue, name)
    second = crawl(glue, name)

    assert json.loads(first["Summary"])["PARTITION"]["ADD"]["Count"] == len(events)
    assert json.loads(second["Summary"])["PARTITION"]["ADD"]["Count"] == 0
    logged = [
        e["message"]
        for e in logs.filter_log_events(logGroupName="/aws-glue/crawlers", logStreamNames=[name])[
            "events"
        ]
        if first["CrawlId"] in e["message"]
    ]
    assert any("has new columns (logged, not applied): surprise" in line for line in logged)
    table = glue.get_table(DatabaseName=NAMES.raw_database, Name="telecom_events")["Table"]
    assert "surprise" not in [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    partitions = glue.get_partitions(DatabaseName=NAMES.raw_database, TableName="telecom_events")[
        "Partitions"
    ]
    assert {p["StorageDescriptor"]["Location"] for p in partitions} == {
        f"s3://{NAMES.raw_bucket}/telecom_events/dt={dt}/hour={hour}/" for dt, hour in events
    }
    metrics = glue.get_crawler_metrics(CrawlerNameList=[name])["CrawlerMetricsList"][0]
    assert metrics["CrawlerName"] == name and metrics["TablesCreated"] == 0


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
def test_curate_job_really_runs_on_local_spark_over_s3a(platform):
    info, clients, state, events = platform
    glue, s3, logs = clients("glue"), clients("s3"), clients("logs")
    job = NAMES.curate_job("telecom_events")

    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    with pytest.raises(glue.exceptions.ConcurrentRunsExceededException):
        glue.start_job_run(JobName=job)  # MaxConcurrentRuns 1, as deployed
    for _ in range(1200):
        run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        if run["JobRunState"] not in ("STARTING", "RUNNING"):
            break
        time.sleep(0.1)

    inputs = pd.DataFrame([r for records in events.values() for r in records])
    # e3 arrives twice (2026-11-19 and, later, 2026-11-20): one duplicate; e11's duration is bad.
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert run["CompletedOn"] >= run["StartedOn"] and run["ExecutionTime"] >= 0
    report = json.loads(
        s3.get_object(
            Bucket=NAMES.artifacts_bucket,
            Key=f"{layout.curate_report_prefix('telecom_events')}{run_id}.json",
        )["Body"].read()
    )
    assert report["run_id"] == run_id  # Glue's --JOB_RUN_ID reached the script
    assert report["rows_in"] == len(inputs) == 10
    assert report["rows_quarantined"] == 1
    assert report["duplicates_removed"] == 1
    assert report["rows_curated"] == inputs.event_id.nunique() - 1 == 8
    assert report["extra_columns"] == ["surprise"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=NAMES.curated_bucket)["Contents"]]
    assert any(
        k.startswith("telecom_events/dt=2026-11-20/") and k.endswith(".parquet") for k in keys
    )
    assert any(k.startswith("_quarantine/telecom_events/") for k in keys)
    partitions = glue.get_partitions(
        DatabaseName=NAMES.curated_database, TableName="telecom_events"
    )["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-11-19", "2026-11-20"]
    # the driver's output, in the job's continuous log as Glue keeps it
    output = logs.get_log_events(
        logGroupName=f"/aws-glue/jobs/output-{NAMES.security_configuration}",
        logStreamName=run_id,
        startFromHead=True,
    )["events"]
    assert any("curate telecom_events" in e["message"] for e in output)


def test_a_failing_run_is_failed_with_the_scripts_error(platform):
    """A run whose arguments the script refuses ends FAILED, its ErrorMessage saying why."""
    _, clients, _, _ = platform
    glue = clients("glue")
    job = NAMES.curate_job("house_sales")
    run_id = glue.start_job_run(JobName=job, Arguments={"--dates": "yesterday"})["JobRunId"]
    for _ in range(1200):
        run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        if run["JobRunState"] not in ("STARTING", "RUNNING"):
            break
        time.sleep(0.1)
    assert run["JobRunState"] == "FAILED"
    assert "--dates" in run["ErrorMessage"] and "yesterday" in run["ErrorMessage"]
    # the curate job's MaxRetries is 1: Glue runs it once more, which fails the same way
    retry = wait_for_run(glue, job, f"{run_id}_attempt_1")
    assert (retry["Attempt"], retry["PreviousRunId"]) == (1, run_id)
    assert retry["JobRunState"] == "FAILED" and "yesterday" in retry["ErrorMessage"]
    runs = glue.get_job_runs(JobName=job)["JobRuns"]
    assert not [r for r in runs if r["Id"].startswith(run_id) and r["Attempt"] > 1]


def wait_for_run(glue, job: str, run_id: str) -> dict:
    for _ in range(1200):
        try:
            run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        except glue.exceptions.EntityNotFoundException:
            run = {"JobRunState": "STARTING"}
        if run["JobRunState"] not in ("STARTING", "RUNNING"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"{job} run {run_id} did not end: {run}")


FAILS_ON_FIRST_ATTEMPT = """
import sys
arguments = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if "_attempt_" not in arguments["--JOB_RUN_ID"]:
    raise RuntimeError("the first attempt fails")
print("ran as", arguments["--JOB_RUN_ID"])
"""


def test_glue_retries_a_failed_run_and_the_aws_code_follows_the_retry(platform):
    """MaxRetries as on AWS: the failed run is run again as `<run>_attempt_1`, and the
    AWS target's run_glue_job reports the retry's success rather than the first failure."""
    from dataplatform.runtime.aws.jobs import run_glue_job

    _, clients, _, _ = platform
    glue, s3 = clients("glue"), clients("s3")
    s3.put_object(
        Bucket=NAMES.artifacts_bucket, Key="tests/flaky.py", Body=FAILS_ON_FIRST_ATTEMPT.encode()
    )
    glue.create_job(
        Name="flaky",
        Role=f"arn:aws:iam::123456789012:role/{NAMES.curate_job_role('house_sales')}",
        Command={
            "Name": "glueetl",
            "ScriptLocation": f"s3://{NAMES.artifacts_bucket}/tests/flaky.py",
        },
        MaxRetries=1,
    )
    lines: list[str] = []
    result = run_glue_job(
        glue, "flaky", poll_seconds=0.1, progress=lines.append, logs=clients("logs")
    )
    assert result.state == "SUCCEEDED" and result.run_id.endswith("_attempt_1")
    first = glue.get_job_run(JobName="flaky", RunId=result.run_id.split("_attempt_")[0])["JobRun"]
    assert first["JobRunState"] == "FAILED" and "first attempt fails" in first["ErrorMessage"]
    assert any(f"ran as {result.run_id}" in line for line in lines)
    assert any("Glue retries it (attempt 1 of 1)" in line for line in lines)


IMPORTS_ITS_LIBRARY = """
import sys
import marker_library
arguments = dict(zip(sys.argv[1::2], sys.argv[2::2]))
print("library", marker_library.VERSION, "in", arguments["--JOB_RUN_ID"])
"""


def library_zip(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("marker_library.py", f"VERSION = {version!r}\n")
    return buffer.getvalue()


def test_runs_started_together_after_their_library_changed_all_succeed(platform):
    """A spec change deploys a new job library, and the pipeline's Parallel state then
    starts every curate at once: each run needs the driver restarted with the new library,
    and none may restart it under another's job. Three jobs on a library the running driver
    does not have, started together, all succeed, each having imported that library."""
    _, clients, _, _ = platform
    glue, s3 = clients("glue"), clients("s3")
    bucket = NAMES.artifacts_bucket
    s3.put_object(Bucket=bucket, Key="tests/imports.py", Body=IMPORTS_ITS_LIBRARY.encode())
    s3.put_object(Bucket=bucket, Key="tests/lib/marker_library.zip", Body=library_zip("v2"))
    jobs = [f"together-{i}" for i in range(3)]
    for job in jobs:
        glue.create_job(
            Name=job,
            Role=f"arn:aws:iam::123456789012:role/{NAMES.curate_job_role('house_sales')}",
            Command={"Name": "glueetl", "ScriptLocation": f"s3://{bucket}/tests/imports.py"},
            DefaultArguments={"--extra-py-files": f"s3://{bucket}/tests/lib/marker_library.zip"},
        )
    runs = {job: glue.start_job_run(JobName=job)["JobRunId"] for job in jobs}
    ended = {}
    for _ in range(3000):  # a bound, not a timing: the runs take seconds each
        for job, run_id in runs.items():
            state = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
            if state["JobRunState"] not in ("STARTING", "RUNNING", "WAITING"):
                ended[job] = state
        if len(ended) == len(runs):
            break
        time.sleep(0.1)
    assert {job: s["JobRunState"] for job, s in ended.items()} == dict.fromkeys(
        jobs, "SUCCEEDED"
    ), {job: s.get("ErrorMessage") for job, s in ended.items()}
    logs = clients("logs")
    for job, run_id in runs.items():
        events = logs.get_log_events(logGroupName=f"{JOB_LOG_GROUP}/output", logStreamName=run_id)[
            "events"
        ]
        assert any(f"library v2 in {run_id}" in e["message"] for e in events), job
