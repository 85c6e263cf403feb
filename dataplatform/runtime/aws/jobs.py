"""Run a Glue crawler or a Glue job of a deployed environment and wait for it.

Both functions take a boto3 Glue client, poll at a fixed interval and report each poll
through `progress` (one status line, e.g. for a spinner). `sleep` and `clock` are
injectable so tests run instantly. A run that does not succeed, or that outlives
`timeout_seconds`, raises `JobFailed` with the run's own error message and the
CloudWatch Logs location to read next.

A timeout only stops the waiting: the crawl or job run goes on in AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dataplatform.runtime import errors
from dataplatform.runtime.progress import Progress, say

# Glue job run states (GetJobRun JobRunState) after which nothing changes any more.
JOB_TERMINAL_STATES = ("SUCCEEDED", "FAILED", "ERROR", "TIMEOUT", "STOPPED", "EXPIRED")
# LastCrawl.Status of a successful crawl. AWS documents SUCCEEDED | CANCELLED | FAILED;
# moto (and ListCrawls' CrawlerHistory.State) say COMPLETED for the same thing.
CRAWL_SUCCESS_STATUSES = ("SUCCEEDED", "COMPLETED")
# Where Glue jobs log without continuous logging; the stream is the job run id.
JOB_LOG_GROUP = "/aws-glue/jobs"


@dataclass(frozen=True)
class LogLocation:
    """A CloudWatch Logs place: a group, a stream, and for crawlers the crawl's message
    prefix (all crawls of a crawler share one stream)."""

    group: str
    stream: str | None = None
    message_prefix: str | None = None

    def __str__(self) -> str:
        text = f"CloudWatch Logs group {self.group}"
        if self.stream:
            text += f", stream {self.stream}"
        if self.message_prefix:
            text += f" (messages prefixed {self.message_prefix})"
        return text


class JobFailed(errors.JobFailed):
    """A crawl or job run that did not succeed. `message` is the run's own error message
    (or why we stopped waiting), `log_location` where its log is (None if unknown)."""

    def __init__(
        self,
        message: str,
        log_location: LogLocation | None = None,
        *,
        state: str | None = None,
        run_id: str | None = None,
    ):
        self.message = message
        self.log_location = log_location
        self.state = state
        self.run_id = run_id
        text = message if log_location is None else f"{message}\n  log: {log_location}"
        super().__init__(text)


class JobTimedOut(JobFailed):
    """We stopped waiting after `timeout_seconds`; the run itself is still going on."""


@dataclass(frozen=True)
class CrawlResult:
    crawler: str
    state: str  # the crawler's State when we stopped polling (READY)
    last_crawl_status: str  # LastCrawl.Status
    tables_created: int | None  # from GetCrawlerMetrics; None when not available
    tables_updated: int | None
    tables_deleted: int | None
    partitions_added: int | None  # from the crawl's ListCrawls summary; None when not available
    partitions_updated: int | None
    partitions_deleted: int | None
    duration: float  # seconds we waited, by `clock`
    log_location: LogLocation | None
    joined_running_crawl: bool  # the crawler was already running; we waited for that crawl


@dataclass(frozen=True)
class JobRunResult:
    job_name: str
    run_id: str
    state: str
    execution_time: int | None  # seconds Glue billed the run for (ExecutionTime)
    dpu_seconds: float | None  # DPUSeconds, or MaxCapacity x ExecutionTime
    duration: float  # seconds we waited, by `clock`
    error_message: str | None
    log_location: LogLocation  # the run's error log (stderr)
    output_log_location: LogLocation


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


# ----------------------------------------------------------------------------- crawlers


def run_crawler(
    glue,
    name: str,
    *,
    poll_seconds: float = 10,
    timeout_seconds: float = 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> CrawlResult:
    """Start crawler `name` and wait until its crawl ends; return what it did.

    If the crawler is already running (CrawlerRunningException), wait for that crawl
    instead. Raises JobFailed when the crawl FAILED or was CANCELLED (with LastCrawl's
    ErrorMessage and log group/stream), JobTimedOut (a JobFailed) after
    `timeout_seconds`; other API errors (no such crawler, access denied) propagate.
    """
    started = clock()
    before = glue.get_crawler(Name=name)["Crawler"]
    previous_start = (before.get("LastCrawl") or {}).get("StartTime")
    joined = False
    try:
        glue.start_crawler(Name=name)
        say(progress, f"crawler {name}: started")
    except ClientError as exc:
        if _error_code(exc) != "CrawlerRunningException":
            raise
        joined = True
        say(progress, f"crawler {name}: already running; waiting for that crawl")

    list_crawls = [getattr(glue, "list_crawls", None)]
    # A crawler refusing to start was busy: its next READY ends the crawl we joined.
    seen_busy = joined
    while True:
        _nudge_crawls(glue, name, list_crawls)
        crawler = glue.get_crawler(Name=name)["Crawler"]
        state = crawler.get("State", "")
        last = crawler.get("LastCrawl") or {}
        if state == "READY":
            # READY before we saw it busy, with the previous crawl still in LastCrawl:
            # the new crawl has not registered yet (ours is not the crawl shown).
            if seen_busy or (last and last.get("StartTime") != previous_start):
                break
        else:
            seen_busy = True
        elapsed = clock() - started
        if elapsed >= timeout_seconds:
            raise JobTimedOut(
                f"crawler {name} still {state} after {elapsed:.0f} s (timeout "
                f"{timeout_seconds:.0f} s); the crawl goes on in AWS: check it with "
                f"`aws glue get-crawler --name {name}`",
                _crawl_log(last, name),
                state=state,
            )
        say(progress, f"crawler {name}: {state} ({elapsed:.0f} s)")
        sleep(poll_seconds)

    duration = clock() - started
    status = last.get("Status", "")
    log = _crawl_log(last, name)
    if status not in CRAWL_SUCCESS_STATUSES:
        reason = last.get("ErrorMessage") or "no error message"
        raise JobFailed(
            f"crawler {name}: crawl {status or 'ended without a status'}: {reason}",
            log,
            state=status,
        )
    metrics = _crawler_metrics(glue, name)
    partitions = _crawl_partition_counts(glue, name, last.get("MessagePrefix"), list_crawls)
    say(progress, f"crawler {name}: {status} in {duration:.0f} s")
    return CrawlResult(
        crawler=name,
        state=state,
        last_crawl_status=status,
        tables_created=metrics.get("TablesCreated"),
        tables_updated=metrics.get("TablesUpdated"),
        tables_deleted=metrics.get("TablesDeleted"),
        partitions_added=partitions.get("ADD"),
        partitions_updated=partitions.get("UPDATE"),
        partitions_deleted=partitions.get("DELETE"),
        duration=duration,
        log_location=log,
        joined_running_crawl=joined,
    )


def _nudge_crawls(glue, name: str, list_crawls: list) -> None:
    """Call ListCrawls once per poll. Harmless on AWS; moto's get_crawler stays RUNNING
    until it is called. Dropped for good after the first error (e.g. no
    glue:ListCrawls permission)."""
    if list_crawls[0] is None:
        return
    try:
        list_crawls[0](CrawlerName=name)
    except (ClientError, NotImplementedError):
        list_crawls[0] = None


def _crawl_log(last: dict, name: str) -> LogLocation:
    return LogLocation(
        group=last.get("LogGroup") or "/aws-glue/crawlers",
        stream=last.get("LogStream") or name,
        message_prefix=last.get("MessagePrefix"),
    )


def _crawler_metrics(glue, name: str) -> dict:
    try:
        found = glue.get_crawler_metrics(CrawlerNameList=[name]).get("CrawlerMetricsList", [])
    except (ClientError, NotImplementedError):
        return {}
    return next((m for m in found if m.get("CrawlerName") == name), {})


def _crawl_partition_counts(
    glue, name: str, crawl_id: str | None, list_crawls: list
) -> dict[str, int]:
    """Partitions added/updated/deleted by the crawl, from its ListCrawls Summary (a JSON
    string such as {"PARTITION": {"ADD": {"Count": 3}}}); {} when not available."""
    if list_crawls[0] is None:
        return {}
    try:
        crawls = list_crawls[0](CrawlerName=name).get("Crawls", [])
    except (ClientError, NotImplementedError):
        return {}
    crawl = next(
        (c for c in crawls if crawl_id and c.get("CrawlId") == crawl_id),
        crawls[0] if crawls else None,
    )
    summary = (crawl or {}).get("Summary")
    try:
        parsed: Any = json.loads(summary) if summary else {}
    except ValueError:
        return {}
    section = parsed.get("PARTITION") if isinstance(parsed, dict) else None
    if not isinstance(section, dict):
        return {}
    counts = {}
    for action in ("ADD", "UPDATE", "DELETE"):
        entry = section.get(action)
        if isinstance(entry, dict) and isinstance(entry.get("Count"), int):
            counts[action] = entry["Count"]
    return counts


# ----------------------------------------------------------------------------- Glue jobs


def run_glue_job(
    glue,
    job_name: str,
    *,
    arguments: dict[str, str] | None = None,
    poll_seconds: float = 15,
    timeout_seconds: float = 4 * 3600,
    log_group_suffix: str = "",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    logs=None,
) -> JobRunResult:
    """Start Glue job `job_name` with `arguments` (keys like "--dataset") and wait for
    the run to reach a terminal state.

    Raises JobFailed for FAILED, ERROR, TIMEOUT, STOPPED or EXPIRED, with the run's
    ErrorMessage and its error log (`/aws-glue/jobs/error<log_group_suffix>`, stream =
    run id; Glue appends `-<security configuration name>` to the group when the job
    has a security configuration: pass that as `log_group_suffix`). Raises JobTimedOut
    (a JobFailed) after `timeout_seconds`; the run goes on in AWS.
    """
    started = clock()
    request: dict[str, Any] = {"JobName": job_name}
    if arguments:
        request["Arguments"] = {str(k): str(v) for k, v in arguments.items()}
    try:
        run_id = glue.start_job_run(**request)["JobRunId"]
    except ClientError as exc:
        if _error_code(exc) != "ConcurrentRunsExceededException":
            raise
        raise errors.Refused(
            f"{job_name} is already running (Glue: ConcurrentRunsExceededException: "
            f"{exc.response['Error'].get('Message', '')}): wait for that run to finish, then "
            "run it again"
        ) from None
    say(progress, f"job {job_name}: started run {run_id}")
    max_retries: int | None = None
    while True:
        error_log = LogLocation(f"{JOB_LOG_GROUP}/error{log_group_suffix}", run_id)
        output_log = LogLocation(f"{JOB_LOG_GROUP}/output{log_group_suffix}", run_id)
        tail = _LogTail(logs, output_log) if logs is not None else None
        run = _wait_for_job_run(
            glue,
            job_name,
            run_id,
            started,
            timeout_seconds,
            poll_seconds,
            error_log,
            sleep=sleep,
            clock=clock,
            progress=progress,
            tail=tail,
        )
        state = run.get("JobRunState", "")
        if state != "FAILED":
            break
        if max_retries is None:
            max_retries = int(glue.get_job(JobName=job_name)["Job"].get("MaxRetries") or 0)
        attempt = int(run.get("Attempt") or 0)
        if attempt >= max_retries:
            break
        # Glue's MaxRetries: the failed run is run again as `<first run>_attempt_<n>`
        retry_id = f"{run_id.split('_attempt_', 1)[0]}_attempt_{attempt + 1}"
        say(
            progress,
            f"job {job_name}: run {run_id} FAILED: {run.get('ErrorMessage') or 'no error message'}"
            f"; Glue retries it (attempt {attempt + 1} of {max_retries}) as run {retry_id}",
        )
        run_id = retry_id

    duration = clock() - started
    error_message = run.get("ErrorMessage")
    if state != "SUCCEEDED":
        raise JobFailed(
            f"job {job_name} run {run_id} {state} after {duration:.0f} s: "
            f"{error_message or 'no error message'} (job output: {output_log})",
            error_log,
            state=state,
            run_id=run_id,
        )
    execution_time = run.get("ExecutionTime")
    say(progress, f"job {job_name}: SUCCEEDED in {duration:.0f} s")
    return JobRunResult(
        job_name=job_name,
        run_id=run_id,
        state=state,
        execution_time=execution_time,
        dpu_seconds=_dpu_seconds(run),
        duration=duration,
        error_message=error_message,
        log_location=error_log,
        output_log_location=output_log,
    )


def _wait_for_job_run(
    glue,
    job_name: str,
    run_id: str,
    started: float,
    timeout_seconds: float,
    poll_seconds: float,
    error_log: LogLocation,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    progress: Progress | None,
    tail: _LogTail | None,
) -> dict:
    """Poll one job run until it is terminal, passing its output log on as it grows. A
    retry run Glue has not created yet is waited for like a run that has not started."""
    while True:
        if tail is not None:
            for line in tail.new_lines():
                say(progress, line)
        try:
            run = glue.get_job_run(JobName=job_name, RunId=run_id, PredecessorsIncluded=False)[
                "JobRun"
            ]
        except ClientError as exc:
            if "_attempt_" not in run_id or _error_code(exc) != "EntityNotFoundException":
                raise
            run = {"JobRunState": "STARTING"}
        state = run.get("JobRunState", "")
        elapsed = clock() - started
        if state in JOB_TERMINAL_STATES:
            if tail is not None:  # what the run wrote after the last poll read it
                for line in tail.new_lines():
                    say(progress, line)
            return run
        if elapsed >= timeout_seconds:
            raise JobTimedOut(
                f"job {job_name} run {run_id} still {state} after {elapsed:.0f} s (timeout "
                f"{timeout_seconds:.0f} s); the run goes on in AWS: stop it with `aws glue "
                f"batch-stop-job-run --job-name {job_name} --job-run-ids {run_id}`",
                error_log,
                state=state,
                run_id=run_id,
            )
        say(progress, f"job {job_name}: {state} ({elapsed:.0f} s)")
        sleep(poll_seconds)


class _LogTail:
    """The new lines of a CloudWatch Logs stream at each read (Glue's continuous logging:
    the job's output as it runs). A stream not there yet, or no permission to read it,
    gives no lines."""

    def __init__(self, logs, location: LogLocation):
        self.logs, self.location, self.token = logs, location, None

    def new_lines(self) -> list[str]:
        try:
            kwargs = {
                "logGroupName": self.location.group,
                "logStreamName": self.location.stream,
                "startFromHead": True,
            }
            if self.token:
                kwargs["nextToken"] = self.token
            page = self.logs.get_log_events(**kwargs)
        except (ClientError, NotImplementedError):
            return []
        self.token = page.get("nextForwardToken") or self.token
        return [e["message"] for e in page.get("events", [])]


def _dpu_seconds(run: dict) -> float | None:
    """DPUSeconds when Glue reports it (Flex, auto scaling), else capacity x time."""
    if run.get("DPUSeconds") is not None:
        return float(run["DPUSeconds"])
    capacity, seconds = run.get("MaxCapacity"), run.get("ExecutionTime")
    if capacity is None or seconds is None:
        return None
    return float(capacity) * float(seconds)


def crawl_new_columns(logs, location: LogLocation | None, table: str) -> list[str]:
    """Columns the crawl saw in new files that its table lacks, from the crawl's log lines
    (`Table <db>.<table> has new columns (...): a, b`, as the local crawler logs them under
    the crawl's message prefix); [] where the log says nothing of it."""
    if location is None or not location.stream:
        return []
    found: list[str] = []
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=location.group, logStreamNames=[location.stream]
        )
        for page in pages:
            for event in page.get("events", []):
                message = event.get("message", "")
                if location.message_prefix and location.message_prefix not in message:
                    continue
                if f".{table} has new columns" in message and ": " in message:
                    found += [c.strip() for c in message.rsplit(": ", 1)[1].split(",") if c.strip()]
    except (ClientError, NotImplementedError):
        return []
    return found
