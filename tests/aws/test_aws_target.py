"""The `--target aws` runtime (dataplatform.runtime.aws): crawler and Glue job runners,
and the Athena query runner.

moto reports crawls and job runs as succeeded without running anything and answers
every Athena query with no rows (see docs/moto.md). So these tests check control
flow only: which calls are made with which arguments, how often we poll and sleep,
what is reported, and how failures, timeouts and already-running crawlers are handled.
moto is used to exercise the calls against real request validation; scripted stub
clients supply the states moto cannot (RUNNING, FAILED, ...)."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from dataplatform.naming import Names
from dataplatform.runtime.aws import athena
from dataplatform.runtime.aws.jobs import (
    JobFailed,
    JobTimedOut,
    LogLocation,
    run_crawler,
    run_glue_job,
)

REGION = "eu-west-1"
NAMES = Names(project="mldp", env="test", account="123456789012", region=REGION)
DATASET = "events"
CRAWLER = NAMES.crawler(DATASET)
JOB = NAMES.curate_job(DATASET)


# ----------------------------------------------------------------------------- helpers


class Recording:
    """Wraps a boto3 client; records (method, kwargs) of every call made through it."""

    def __init__(self, client):
        self._client = client
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            self.calls.append((name, kwargs))
            return target(*args, **kwargs)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def kwargs_of(self, name: str) -> list[dict]:
        return [kwargs for called, kwargs in self.calls if called == name]


class FakeClock:
    """`clock` and `sleep` for the runners: sleeping advances the clock."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def instant() -> dict:
    """sleep/clock keyword arguments that never wait (and bound any loop by the timeout)."""
    clock = FakeClock()
    return {"sleep": clock.sleep, "clock": clock}


def client_error(code: str, operation: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


class ScriptedGlue:
    """A Glue client stand-in: each poll returns the next scripted answer; the last
    one repeats. Records every call like `Recording`."""

    def __init__(
        self,
        *,
        job_runs=(),
        crawlers=(),
        start_crawler_error=None,
        list_crawls=None,
        list_crawls_error=None,
        metrics=None,
        run_id="jr_123",
        max_retries=0,
    ):
        self.job_runs = list(job_runs)
        self.max_retries = max_retries
        self.crawlers = list(crawlers)
        self.start_crawler_error = start_crawler_error
        self.list_crawls_answer = list_crawls if list_crawls is not None else {"Crawls": []}
        self.list_crawls_error = list_crawls_error
        self.metrics = metrics
        self.run_id = run_id
        self.calls: list[tuple[str, dict]] = []

    def _next(self, script: list):
        return script.pop(0) if len(script) > 1 else script[0]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def kwargs_of(self, name: str) -> list[dict]:
        return [kwargs for called, kwargs in self.calls if called == name]

    # --- jobs
    def start_job_run(self, **kwargs):
        self.calls.append(("start_job_run", kwargs))
        return {"JobRunId": self.run_id}

    def get_job_run(self, **kwargs):
        self.calls.append(("get_job_run", kwargs))
        return {
            "JobRun": {
                "Id": kwargs["RunId"],
                "JobName": kwargs["JobName"],
                **self._next(self.job_runs),
            }
        }

    def get_job(self, **kwargs):
        self.calls.append(("get_job", kwargs))
        return {"Job": {"Name": kwargs["JobName"], "MaxRetries": self.max_retries}}

    # --- crawlers
    def get_crawler(self, **kwargs):
        self.calls.append(("get_crawler", kwargs))
        return {"Crawler": {"Name": kwargs["Name"], **self._next(self.crawlers)}}

    def start_crawler(self, **kwargs):
        self.calls.append(("start_crawler", kwargs))
        if self.start_crawler_error is not None:
            raise self.start_crawler_error

    def list_crawls(self, **kwargs):
        self.calls.append(("list_crawls", kwargs))
        if self.list_crawls_error is not None:
            raise self.list_crawls_error
        return self.list_crawls_answer

    def get_crawler_metrics(self, **kwargs):
        self.calls.append(("get_crawler_metrics", kwargs))
        if self.metrics is None:
            raise client_error("AccessDeniedException", "GetCrawlerMetrics")
        return {"CrawlerMetricsList": [self.metrics]}


T0 = dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2024, 3, 2, 10, 0, tzinfo=dt.UTC)


def last_crawl(status: str, start=T1, **extra) -> dict:
    return {
        "Status": status,
        "StartTime": start,
        "LogGroup": "/aws-glue/crawlers",
        "LogStream": CRAWLER,
        "MessagePrefix": "crawl-1",
        **extra,
    }


# ----------------------------------------------------------------------------- moto


@pytest.fixture
def glue():
    with mock_aws():
        client = boto3.client("glue", region_name=REGION)
        client.create_database(DatabaseInput={"Name": NAMES.raw_database})
        client.create_crawler(
            Name=CRAWLER,
            Role=f"arn:aws:iam::{NAMES.account}:role/{NAMES.crawler_role(DATASET)}",
            DatabaseName=NAMES.raw_database,
            Targets={"S3Targets": [{"Path": f"s3://{NAMES.raw_bucket}/{DATASET}/"}]},
        )
        client.create_job(
            Name=JOB,
            Role=f"arn:aws:iam::{NAMES.account}:role/{NAMES.curate_job_role(DATASET)}",
            Command={
                "Name": "glueetl",
                "PythonVersion": "3",
                "ScriptLocation": f"s3://{NAMES.artifacts_bucket}/jobs/curate.py",
            },
            GlueVersion="5.0",
        )
        yield client


def test_run_crawler_starts_the_named_crawler_then_polls_get_crawler_until_ready(glue):
    recorded = Recording(glue)
    clock = FakeClock()
    lines: list[str] = []

    result = run_crawler(
        recorded, CRAWLER, poll_seconds=7, sleep=clock.sleep, clock=clock, progress=lines.append
    )

    assert recorded.kwargs_of("start_crawler") == [{"Name": CRAWLER}]
    # state read before starting (to tell a new crawl from the previous one), then polled
    assert recorded.names()[:2] == ["get_crawler", "start_crawler"]
    assert all(kw == {"Name": CRAWLER} for kw in recorded.kwargs_of("get_crawler"))
    assert {"CrawlerName": CRAWLER} in recorded.kwargs_of("list_crawls")
    assert result.crawler == CRAWLER and result.state == "READY"
    assert result.joined_running_crawl is False
    assert result.log_location.group == "/aws-glue/crawlers"
    assert result.log_location.stream == CRAWLER
    assert lines[0] == f"crawler {CRAWLER}: started"


def test_run_crawler_waits_for_a_crawl_already_running_instead_of_failing(glue):
    glue.start_crawler(Name=CRAWLER)  # someone else's crawl
    recorded = Recording(glue)
    clock = FakeClock()
    lines: list[str] = []

    result = run_crawler(
        recorded, CRAWLER, timeout_seconds=60, sleep=clock.sleep, clock=clock, progress=lines.append
    )

    assert result.joined_running_crawl is True
    assert recorded.kwargs_of("start_crawler") == [{"Name": CRAWLER}]
    assert any("already running" in line for line in lines)


def test_run_glue_job_starts_the_job_with_its_arguments_and_polls_that_run(glue):
    recorded = Recording(glue)
    arguments = {"--dataset": DATASET, "--dt": "2024-03-01"}

    result = run_glue_job(recorded, JOB, arguments=arguments, **instant())

    assert recorded.kwargs_of("start_job_run") == [{"JobName": JOB, "Arguments": arguments}]
    polls = recorded.kwargs_of("get_job_run")
    assert polls and all(p["JobName"] == JOB and p["RunId"] == result.run_id for p in polls)
    # moto stores what it was sent: the run carries our arguments
    stored = glue.get_job_run(JobName=JOB, RunId=result.run_id)["JobRun"]
    assert stored["Arguments"] == arguments
    assert result.log_location == LogLocation("/aws-glue/jobs/error", result.run_id)


def test_run_glue_job_without_arguments_sends_no_arguments_key(glue):
    recorded = Recording(glue)
    run_glue_job(recorded, JOB, **instant())
    assert recorded.kwargs_of("start_job_run") == [{"JobName": JOB}]


def test_run_glue_job_lets_an_unknown_job_error_through(glue):
    with pytest.raises(ClientError) as caught:
        run_glue_job(glue, NAMES.curate_job("nope"), **instant())
    assert caught.value.response["Error"]["Code"] == "EntityNotFoundException"


# ----------------------------------------------------------------------------- Glue job stubs


def test_failed_job_run_raises_job_failed_with_its_error_message_and_log_after_polling():
    glue = ScriptedGlue(
        job_runs=[
            {"JobRunState": "RUNNING"},
            {"JobRunState": "RUNNING"},
            {"JobRunState": "FAILED", "ErrorMessage": "boom"},
        ]
    )
    clock = FakeClock()
    lines: list[str] = []

    with pytest.raises(JobFailed) as caught:
        run_glue_job(
            glue, JOB, poll_seconds=15, sleep=clock.sleep, clock=clock, progress=lines.append
        )

    assert glue.names().count("get_job_run") == 3
    assert clock.sleeps == [15, 15]
    assert lines == [
        f"job {JOB}: started run jr_123",
        f"job {JOB}: RUNNING (0 s)",
        f"job {JOB}: RUNNING (15 s)",
    ]
    failure = caught.value
    assert "boom" in failure.message and "FAILED" in failure.message
    assert failure.state == "FAILED" and failure.run_id == "jr_123"
    assert failure.log_location == LogLocation("/aws-glue/jobs/error", "jr_123")
    assert "/aws-glue/jobs/error" in str(failure) and "jr_123" in str(failure)
    assert "/aws-glue/jobs/output" in failure.message


def test_a_failed_run_is_followed_into_glues_retry_of_it_up_to_max_retries():
    glue = ScriptedGlue(
        max_retries=2,
        job_runs=[
            {"JobRunState": "FAILED", "ErrorMessage": "first", "Attempt": 0},
            {"JobRunState": "RUNNING", "Attempt": 1},
            {"JobRunState": "FAILED", "ErrorMessage": "second", "Attempt": 1},
            {"JobRunState": "SUCCEEDED", "Attempt": 2, "ExecutionTime": 30},
        ],
    )
    lines: list[str] = []
    result = run_glue_job(glue, JOB, progress=lines.append, **instant())
    assert [kw["RunId"] for kw in glue.kwargs_of("get_job_run")] == [
        "jr_123", "jr_123_attempt_1", "jr_123_attempt_1", "jr_123_attempt_2",
    ]  # fmt: skip
    assert result.run_id == "jr_123_attempt_2" and result.state == "SUCCEEDED"
    assert result.log_location == LogLocation("/aws-glue/jobs/error", "jr_123_attempt_2")
    assert any("run jr_123 FAILED: first; Glue retries it (attempt 1 of 2)" in x for x in lines)
    assert glue.names().count("get_job") == 1


def test_a_run_failing_its_last_retry_raises_with_that_runs_error():
    glue = ScriptedGlue(
        max_retries=1,
        job_runs=[
            {"JobRunState": "FAILED", "ErrorMessage": "first", "Attempt": 0},
            {"JobRunState": "FAILED", "ErrorMessage": "again", "Attempt": 1},
        ],
    )
    with pytest.raises(JobFailed) as caught:
        run_glue_job(glue, JOB, **instant())
    assert caught.value.run_id == "jr_123_attempt_1" and "again" in caught.value.message


def test_job_log_location_carries_the_security_configuration_suffix():
    glue = ScriptedGlue(job_runs=[{"JobRunState": "ERROR", "ErrorMessage": "no role"}])
    suffix = f"-{NAMES.security_configuration}"
    with pytest.raises(JobFailed) as caught:
        run_glue_job(glue, JOB, log_group_suffix=suffix, **instant())
    assert caught.value.log_location == LogLocation(f"/aws-glue/jobs/error{suffix}", "jr_123")
    assert f"/aws-glue/jobs/output{suffix}" in caught.value.message


@pytest.mark.parametrize("state", ["ERROR", "TIMEOUT", "STOPPED", "EXPIRED"])
def test_every_unsuccessful_terminal_state_raises_job_failed(state):
    glue = ScriptedGlue(job_runs=[{"JobRunState": "STARTING"}, {"JobRunState": state}])
    clock = FakeClock()
    with pytest.raises(JobFailed) as caught:
        run_glue_job(glue, JOB, sleep=clock.sleep, clock=clock)
    assert caught.value.state == state
    assert "no error message" in caught.value.message
    assert len(clock.sleeps) == 1


def test_succeeded_job_run_returns_billing_figures_without_sleeping_after_the_end():
    glue = ScriptedGlue(
        job_runs=[
            {"JobRunState": "RUNNING"},
            {"JobRunState": "SUCCEEDED", "ExecutionTime": 95, "MaxCapacity": 2.0},
        ]
    )
    clock = FakeClock()
    result = run_glue_job(glue, JOB, poll_seconds=10, sleep=clock.sleep, clock=clock)
    assert (result.state, result.run_id, result.execution_time) == ("SUCCEEDED", "jr_123", 95)
    assert result.dpu_seconds == 190.0
    assert result.duration == 10
    assert clock.sleeps == [10]


def test_dpu_seconds_prefers_what_glue_reports():
    glue = ScriptedGlue(
        job_runs=[
            {
                "JobRunState": "SUCCEEDED",
                "ExecutionTime": 95,
                "MaxCapacity": 2.0,
                "DPUSeconds": 61.5,
            }
        ]
    )
    assert run_glue_job(glue, JOB, **instant()).dpu_seconds == 61.5


def test_job_still_running_at_the_timeout_raises_job_timed_out_naming_the_run():
    glue = ScriptedGlue(job_runs=[{"JobRunState": "RUNNING"}])
    clock = FakeClock()

    with pytest.raises(JobFailed) as caught:
        run_glue_job(glue, JOB, poll_seconds=15, timeout_seconds=60, sleep=clock.sleep, clock=clock)

    assert isinstance(caught.value, JobTimedOut)
    # polls at 0, 15, 30, 45, 60 s; gives up at the poll that reaches 60 s
    assert glue.names().count("get_job_run") == 5
    assert clock.sleeps == [15, 15, 15, 15]
    assert caught.value.run_id == "jr_123" and caught.value.state == "RUNNING"
    assert "batch-stop-job-run" in caught.value.message
    assert "start_job_run" not in glue.names()[1:]  # never restarted


# ----------------------------------------------------------------------------- crawler stubs


def test_failed_crawl_raises_job_failed_with_last_crawl_error_and_log_stream():
    glue = ScriptedGlue(
        crawlers=[
            {"State": "READY", "LastCrawl": last_crawl("SUCCEEDED", start=T0)},  # before start
            {"State": "RUNNING", "LastCrawl": last_crawl("SUCCEEDED", start=T0)},
            {"State": "STOPPING", "LastCrawl": last_crawl("SUCCEEDED", start=T0)},
            {
                "State": "READY",
                "LastCrawl": last_crawl("FAILED", ErrorMessage="boom: access denied"),
            },
        ]
    )
    clock = FakeClock()
    lines: list[str] = []

    with pytest.raises(JobFailed) as caught:
        run_crawler(
            glue, CRAWLER, poll_seconds=10, sleep=clock.sleep, clock=clock, progress=lines.append
        )

    assert glue.names().count("get_crawler") == 4
    assert clock.sleeps == [10, 10]
    assert lines[1:] == [f"crawler {CRAWLER}: RUNNING (0 s)", f"crawler {CRAWLER}: STOPPING (10 s)"]
    failure = caught.value
    assert "boom: access denied" in failure.message and failure.state == "FAILED"
    assert failure.log_location == LogLocation("/aws-glue/crawlers", CRAWLER, "crawl-1")
    assert "crawl-1" in str(failure)


def test_cancelled_crawl_raises_job_failed():
    glue = ScriptedGlue(
        crawlers=[
            {"State": "READY"},
            {"State": "RUNNING"},
            {"State": "READY", "LastCrawl": last_crawl("CANCELLED")},
        ]
    )
    with pytest.raises(JobFailed, match="CANCELLED"):
        run_crawler(glue, CRAWLER, **instant())


def test_crawler_running_exception_makes_run_crawler_wait_for_the_running_crawl():
    glue = ScriptedGlue(
        crawlers=[
            {"State": "RUNNING", "LastCrawl": last_crawl("SUCCEEDED", start=T0)},
            {"State": "RUNNING", "LastCrawl": last_crawl("SUCCEEDED", start=T0)},
            {"State": "READY", "LastCrawl": last_crawl("SUCCEEDED")},
        ],
        start_crawler_error=client_error("CrawlerRunningException", "StartCrawler"),
        metrics={
            "CrawlerName": CRAWLER,
            "TablesCreated": 1,
            "TablesUpdated": 0,
            "TablesDeleted": 0,
        },
    )
    clock = FakeClock()
    lines: list[str] = []

    result = run_crawler(glue, CRAWLER, sleep=clock.sleep, clock=clock, progress=lines.append)

    assert result.joined_running_crawl is True
    assert result.last_crawl_status == "SUCCEEDED"
    assert glue.names().count("start_crawler") == 1  # not retried
    assert lines[0] == f"crawler {CRAWLER}: already running; waiting for that crawl"
    assert len(clock.sleeps) == 1


def test_other_start_crawler_errors_propagate():
    glue = ScriptedGlue(
        crawlers=[{"State": "READY"}],
        start_crawler_error=client_error("AccessDeniedException", "StartCrawler"),
    )
    with pytest.raises(ClientError, match="AccessDeniedException"):
        run_crawler(glue, CRAWLER, **instant())
    assert "list_crawls" not in glue.names()


def test_ready_crawler_still_showing_the_previous_crawl_is_polled_again():
    previous = last_crawl("FAILED", start=T0, ErrorMessage="yesterday's failure")
    glue = ScriptedGlue(
        crawlers=[
            {"State": "READY", "LastCrawl": previous},  # before start
            {"State": "READY", "LastCrawl": previous},  # our crawl not registered yet
            {"State": "RUNNING", "LastCrawl": previous},
            {"State": "READY", "LastCrawl": last_crawl("SUCCEEDED")},
        ]
    )
    clock = FakeClock()

    result = run_crawler(glue, CRAWLER, sleep=clock.sleep, clock=clock)

    assert result.last_crawl_status == "SUCCEEDED"
    assert glue.names().count("get_crawler") == 4
    assert len(clock.sleeps) == 2


def test_successful_crawl_reports_table_metrics_and_partition_counts_from_its_summary():
    summary = {
        "TABLE": {"ADD": {"Count": 1}},
        "PARTITION": {"ADD": {"Count": 24}, "UPDATE": {"Count": 2}},
    }
    glue = ScriptedGlue(
        crawlers=[
            {"State": "READY"},
            {"State": "RUNNING"},
            {"State": "READY", "LastCrawl": last_crawl("SUCCEEDED")},
        ],
        metrics={
            "CrawlerName": CRAWLER,
            "TablesCreated": 1,
            "TablesUpdated": 3,
            "TablesDeleted": 0,
        },
        list_crawls={
            "Crawls": [
                {"CrawlId": "other", "Summary": "{}"},
                {"CrawlId": "crawl-1", "State": "COMPLETED", "Summary": json.dumps(summary)},
            ]
        },
    )

    result = run_crawler(glue, CRAWLER, **instant())

    assert (result.tables_created, result.tables_updated, result.tables_deleted) == (1, 3, 0)
    assert (result.partitions_added, result.partitions_updated, result.partitions_deleted) == (
        24,
        2,
        None,
    )
    assert glue.kwargs_of("get_crawler_metrics") == [{"CrawlerNameList": [CRAWLER]}]


def test_crawl_figures_are_none_when_metrics_and_crawl_history_are_not_readable():
    glue = ScriptedGlue(
        crawlers=[
            {"State": "READY"},
            {"State": "RUNNING"},
            {"State": "READY", "LastCrawl": last_crawl("SUCCEEDED")},
        ],
        list_crawls_error=client_error("AccessDeniedException", "ListCrawls"),
    )

    result = run_crawler(glue, CRAWLER, **instant())

    assert result.tables_created is None and result.partitions_added is None
    # ListCrawls is tried once, then dropped for the rest of the wait
    assert glue.names().count("list_crawls") == 1


def test_crawler_still_running_at_the_timeout_raises_job_timed_out():
    glue = ScriptedGlue(crawlers=[{"State": "READY"}, {"State": "RUNNING"}])
    clock = FakeClock()

    with pytest.raises(JobTimedOut) as caught:
        run_crawler(
            glue, CRAWLER, poll_seconds=10, timeout_seconds=30, sleep=clock.sleep, clock=clock
        )

    assert clock.sleeps == [10, 10, 10]
    assert caught.value.state == "RUNNING"
    assert "get-crawler" in caught.value.message
    assert isinstance(caught.value, JobFailed)


# ----------------------------------------------------------------------------- Athena


@pytest.fixture
def fake_read_sql_query(monkeypatch):
    import awswrangler as wr

    calls: list[dict] = []
    behaviour: dict = {}

    def fake(sql, **kwargs):
        calls.append({"sql": sql, **kwargs})
        if "raise" in behaviour:
            raise behaviour["raise"]
        frame = pd.DataFrame({"n": [3]})
        if "metadata" in behaviour:  # as awswrangler attaches it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                frame.query_metadata = behaviour["metadata"]
        return frame

    monkeypatch.setattr(wr.athena, "read_sql_query", fake)
    return calls, behaviour


def test_run_query_runs_in_the_workgroup_and_database_with_the_given_session(fake_read_sql_query):
    calls, behaviour = fake_read_sql_query
    behaviour["metadata"] = {
        "QueryExecutionId": "q-1",
        "ResultConfiguration": {"OutputLocation": f"s3://{NAMES.athena_results_bucket}/q-1.csv"},
        "Statistics": {"DataScannedInBytes": 4096, "EngineExecutionTimeInMillis": 812},
    }
    session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")

    result = athena.run_query(
        "SELECT count(*) AS n FROM events",
        session=session,
        workgroup=NAMES.workgroup,
        database=NAMES.curated_database,
    )

    assert calls == [
        {
            "sql": "SELECT count(*) AS n FROM events",
            "database": NAMES.curated_database,
            "workgroup": NAMES.workgroup,
            "boto3_session": session,
            "ctas_approach": False,
            "athena_query_wait_polling_delay": 1.0,
        }
    ]
    assert result.bytes_scanned == 4096
    assert result.query_id == "q-1"
    assert result.output_location == f"s3://{NAMES.athena_results_bucket}/q-1.csv"
    assert result.engine_execution_ms == 812
    assert list(result.frame.columns) == ["n"]


def test_run_query_passes_params_only_when_given(fake_read_sql_query):
    calls, _ = fake_read_sql_query
    athena.run_query(
        "SELECT 1 WHERE dt = :dt",
        session=None,
        workgroup="wg",
        database="db",
        params={"dt": "2024-03-01"},
    )
    assert calls[0]["params"] == {"dt": "2024-03-01"}


def test_run_query_without_query_metadata_reports_unknown_statistics(fake_read_sql_query):
    result = athena.run_query("SELECT 1", session=None, workgroup="wg", database="db")
    assert (result.bytes_scanned, result.query_id, result.output_location) == (None, None, None)


def test_failed_query_becomes_query_error_with_athenas_message_and_position(fake_read_sql_query):
    import awswrangler as wr

    _, behaviour = fake_read_sql_query
    reason = "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved"
    behaviour["raise"] = wr.exceptions.QueryFailed(reason)

    with pytest.raises(athena.QueryError) as caught:
        athena.run_query("SELECT nope FROM events", session=None, workgroup="wg", database="db")

    assert str(caught.value) == reason
    assert (caught.value.line, caught.value.column) == (1, 8)
    assert isinstance(caught.value.__cause__, wr.exceptions.QueryFailed)


def test_query_error_drops_awswranglers_prefix_and_tolerates_no_position(fake_read_sql_query):
    import awswrangler as wr

    _, behaviour = fake_read_sql_query
    behaviour["raise"] = wr.exceptions.QueryFailed("Query error: Access denied on s3://x")
    with pytest.raises(athena.QueryError) as caught:
        athena.run_query("SELECT 1", session=None, workgroup="wg", database="db")
    assert str(caught.value) == "Access denied on s3://x"
    assert caught.value.line is None and caught.value.column is None


def test_cancelled_query_becomes_query_error(fake_read_sql_query):
    import awswrangler as wr

    _, behaviour = fake_read_sql_query
    behaviour["raise"] = wr.exceptions.QueryCancelled("Query was cancelled by user")
    with pytest.raises(athena.QueryError, match="cancelled by user"):
        athena.run_query("SELECT 1", session=None, workgroup="wg", database="db")


def test_joined_crawl_that_ends_before_the_first_poll_is_not_waited_for_again():
    # AWS keeps the previous crawl in LastCrawl while a crawl runs, so READY right after
    # CrawlerRunningException is the end of the crawl we joined, whatever LastCrawl says.
    glue = ScriptedGlue(
        crawlers=[
            {"State": "RUNNING", "LastCrawl": last_crawl("SUCCEEDED", start=T0)},
            {"State": "READY", "LastCrawl": last_crawl("SUCCEEDED")},
        ],
        start_crawler_error=client_error("CrawlerRunningException", "StartCrawler"),
    )
    timing = instant()

    result = run_crawler(glue, CRAWLER, **timing)

    assert result.joined_running_crawl is True
    assert timing["clock"].sleeps == []
