"""Glue's job runs, crawls and Iceberg tables on the local endpoint, for real (moto's job
runs SUCCEED without running, its crawlers crawl nothing and its Iceberg tables have no
metadata).

- StartJobRun runs the job's deployed script (its ScriptLocation, DefaultArguments with the
  run's Arguments over them, Glue's own --JOB_NAME and --JOB_RUN_ID) on the local Spark
  driver (runtime/local/spark_service.py, s3a:// to this server), the `--extra-py-files`
  library fetched from S3 as Glue fetches it. GetJobRun / GetJobRuns report the run's real
  state (STARTING, RUNNING, then SUCCEEDED, FAILED, STOPPED or TIMEOUT), its times and
  ExecutionTime, and a failed run's ErrorMessage (the script's last error line). The job's
  MaxConcurrentRuns is enforced (ConcurrentRunsExceededException) and its Timeout ends the
  run. The driver's output goes to CloudWatch Logs, `/aws-glue/jobs/output` (and
  `/aws-glue/jobs/error` for a failure), the run id as the stream, as Glue's continuous
  logging does.
- StartCrawler crawls by the crawler's definition (runtime/local/crawler.py) in the
  background; GetCrawler(s) answer moto's definition with the crawl's state (RUNNING,
  STOPPING, READY) and LastCrawl; StopCrawler cancels; GetCrawlerMetrics and ListCrawls
  (each crawl's Summary, as `runtime/aws/jobs.py` reads it) are the crawls' own. The crawl
  writes its log lines to `/aws-glue/crawlers`, the crawler's stream, prefixed with the
  crawl's id.
- CreateTable with `OpenTableFormatInput.IcebergInput` makes the Iceberg table as Glue does:
  the input checked and the first metadata file built (services/glue_iceberg.py), written
  to `<location>/metadata/` through this server's S3 (the bucket's default encryption
  applies), then the table given to moto with table_type ICEBERG, metadata_location and
  the schema's columns. Any other CreateTable goes to moto unchanged.
- UpdateTable with a VersionId that is not the table's current one (GetTable's, moto's
  count of updates) is a ConcurrentModificationException, as Glue answers Iceberg's
  optimistic commits; otherwise moto applies it.

The records (runs, crawls) are kept across restarts; what was running when the server
stopped ends FAILED, saying so.
"""

from __future__ import annotations

import json
import secrets
import statistics
import threading
import time
import uuid

from botocore.exceptions import ClientError

from dataplatform.runtime.local.services import glue_iceberg
from dataplatform.runtime.local.services.base import (
    AwsError,
    Call,
    LogStream,
    Records,
    Service,
    epoch,
    now,
)
from dataplatform.runtime.local.services.dispatch import RawResponse

ACTIVE_RUN_STATES = ("STARTING", "RUNNING", "STOPPING", "WAITING")
JOB_LOG_GROUP = "/aws-glue/jobs"
CRAWLER_LOG_GROUP = "/aws-glue/crawlers"
STOPPED_BY_RESTART = (
    "the local platform stopped while this ran (dp local down, or a crash): run it again"
)
STOPPING_S = 0.2  # how long a finished crawl says STOPPING before READY
WARM_PATH = "/_dp/spark/warm"


def _not_found(what: str) -> AwsError:
    return AwsError("EntityNotFoundException", what)


class Glue(Service):
    signing_name = "glue"
    target_prefix = "AWSGlue"
    operations = (
        "WarmSpark",
        "StartJobRun",
        "GetJobRun",
        "GetJobRuns",
        "BatchStopJobRun",
        "StartCrawler",
        "StopCrawler",
        "GetCrawler",
        "GetCrawlers",
        "GetCrawlerMetrics",
        "ListCrawls",
        "CreateTable",
        "UpdateTable",
    )

    def __init__(self, server, spark):
        super().__init__(server)
        self.spark = spark  # the local Spark (services/spark.py), shared with EMR
        self.runs = Records(server.folder("glue", "runs"))
        self.crawlers = Records(server.folder("glue", "crawlers"))
        self._lock = threading.Lock()
        # a table's check and its change, one request at a time (per table: the checks ask
        # this server, so a lock of all tables could hold every one of its threads)
        self._tables: dict[tuple[str, str, str], threading.Lock] = {}
        self._stopping: dict[str, threading.Event] = {}
        for run in self.runs.values():
            if run["JobRunState"] in ACTIVE_RUN_STATES:
                self.runs.update(
                    run["Id"],
                    JobRunState="FAILED",
                    ErrorMessage=STOPPED_BY_RESTART,
                    CompletedOn=epoch(now()),
                )
        for crawler in self.crawlers.values():
            if crawler.get("State") != "READY":
                self._end_crawl(crawler["Name"], "FAILED", STOPPED_BY_RESTART, None)

    def route(self, environ) -> str | None:
        if environ.get("PATH_INFO") == WARM_PATH and environ.get("REQUEST_METHOD") == "POST":
            return "WarmSpark"
        return None

    def warm_spark(self, call: Call) -> RawResponse:
        """`POST /_dp/spark/warm {"Region", "Library"}`: the local platform's primitive that
        starts the Spark driver before the first job needs it (`dp demo` overlaps it with
        ingestion). AWS has nothing to warm."""
        body = json.loads(call.raw or b"{}")
        region = body.get("Region") or call.region
        self.spark.warm(region, self.spark.libraries(body.get("Library") or "", region))
        return RawResponse(200, b"{}", [("Content-Type", "application/json")])

    # ----------------------------------------------------------------------- job runs
    def start_job_run(self, call: Call) -> dict:
        name = call.body.get("JobName") or ""
        glue = self.server.client("glue", call.region)
        try:
            job = glue.get_job(JobName=name)["Job"]
        except glue.exceptions.EntityNotFoundException:
            raise _not_found(f"Job with name: {name} not found") from None
        limit = int((job.get("ExecutionProperty") or {}).get("MaxConcurrentRuns") or 1)
        with self._lock:
            active = [
                r
                for r in self.runs.values()
                if r["JobName"] == name and r["JobRunState"] in ACTIVE_RUN_STATES
            ]
            if len(active) >= limit:
                raise AwsError(
                    "ConcurrentRunsExceededException",
                    f"Concurrent runs exceeded for {name}: MaxConcurrentRuns is {limit} and "
                    f"{len(active)} run(s) are active ({', '.join(r['Id'] for r in active)})",
                )
            run_id = "jr_" + secrets.token_hex(32)
            arguments = {str(k): str(v) for k, v in (call.body.get("Arguments") or {}).items()}
            timeout = int(call.body.get("Timeout") or job.get("Timeout") or 2880)
            record = {
                "Id": run_id,
                "Attempt": 0,
                "JobName": name,
                "JobMode": "SCRIPT",
                "StartedOn": epoch(now()),
                "LastModifiedOn": epoch(now()),
                "JobRunState": "STARTING",
                "Arguments": arguments,
                "PredecessorRuns": [],
                "ExecutionTime": 0,
                "Timeout": timeout,
                "MaxCapacity": job.get("MaxCapacity"),
                "WorkerType": job.get("WorkerType"),
                "NumberOfWorkers": job.get("NumberOfWorkers"),
                "SecurityConfiguration": job.get("SecurityConfiguration"),
                "LogGroupName": JOB_LOG_GROUP,
                "GlueVersion": job.get("GlueVersion"),
                "Region": call.region,
            }
            self.runs.put(run_id, record)
            self._stopping[run_id] = threading.Event()
        threading.Thread(
            target=self._run, args=(run_id, job), name=f"glue-{run_id[:12]}", daemon=True
        ).start()
        return {"JobRunId": run_id}

    def get_job_run(self, call: Call) -> dict:
        run = self.runs.get(call.body.get("RunId") or "")
        if run is None or run["JobName"] != call.body.get("JobName"):
            raise _not_found(f"Job Run with id: {call.body.get('RunId')} not found")
        return {"JobRun": _described(run)}

    def get_job_runs(self, call: Call) -> dict:
        name = call.body.get("JobName")
        runs = sorted(
            (r for r in self.runs.values() if r["JobName"] == name),
            key=lambda r: r["StartedOn"],
            reverse=True,
        )
        start = int(call.body.get("NextToken") or 0)
        size = int(call.body.get("MaxResults") or 100)
        answer: dict = {"JobRuns": [_described(r) for r in runs[start : start + size]]}
        if start + size < len(runs):
            answer["NextToken"] = str(start + size)
        return answer

    def batch_stop_job_run(self, call: Call) -> dict:
        name = call.body.get("JobName")
        stopped, errors = [], []
        for run_id in call.body.get("JobRunIds") or []:
            run = self.runs.get(run_id)
            if run is None or run["JobName"] != name:
                errors.append(
                    {
                        "JobName": name,
                        "JobRunId": run_id,
                        "ErrorDetail": {
                            "ErrorCode": "EntityNotFoundException",
                            "ErrorMessage": f"Job Run with id: {run_id} not found",
                        },
                    }
                )
                continue
            if run["JobRunState"] in ("STARTING", "RUNNING", "WAITING"):
                self.runs.update(run_id, JobRunState="STOPPING", LastModifiedOn=epoch(now()))
                event = self._stopping.get(run_id)
                if event is not None:
                    event.set()
                if run["JobRunState"] == "RUNNING":
                    self.spark.cancel()  # the driver's job cannot be stopped halfway
            stopped.append({"JobName": name, "JobRunId": run_id})
        return {"SuccessfulSubmissions": stopped, "Errors": errors}

    def _run(self, run_id: str, job: dict) -> None:
        record = self.runs.get(run_id)
        assert record is not None
        region = record["Region"]
        # Glue's groups, with `-<security configuration>` when the job has one
        suffix = f"-{job['SecurityConfiguration']}" if job.get("SecurityConfiguration") else ""
        logs = LogStream(
            self.server.client("logs", region), f"{JOB_LOG_GROUP}/output{suffix}", run_id
        )
        arguments = {
            **{str(k): str(v) for k, v in (job.get("DefaultArguments") or {}).items()},
            **record["Arguments"],
            "--JOB_NAME": job["Name"],
            "--JOB_RUN_ID": run_id,
        }
        started = time.monotonic()
        deadline = started + record["Timeout"] * 60
        stop = self._stopping.get(run_id) or threading.Event()
        state, message = "SUCCEEDED", None
        try:
            libraries = self.spark.libraries(arguments.get("--extra-py-files", ""), region)
            if stop.is_set():
                raise _Stopped()
            self.runs.update(run_id, JobRunState="RUNNING", LastModifiedOn=epoch(now()))
            self.spark.submit(
                script_uri=job["Command"]["ScriptLocation"],
                name=job["Name"],
                arguments=arguments,
                run_id=run_id,
                region=region,
                libraries=libraries,
                progress=logs.add,
                deadline=deadline,
            )
            if stop.is_set():
                raise _Stopped()
        except _Stopped:
            state, message = "STOPPED", None
        except TimeoutError:
            state, message = (
                "TIMEOUT",
                f"the job ran longer than its timeout of {record['Timeout']} minutes",
            )
        except Exception as exc:  # noqa: BLE001 - the run fails, the server goes on
            state, message = ("STOPPED", None) if stop.is_set() else ("FAILED", str(exc))
        logs.flush()
        if message:
            LogStream(
                self.server.client("logs", region), f"{JOB_LOG_GROUP}/error{suffix}", run_id
            ).add(message).flush()
        elapsed = time.monotonic() - started
        self.runs.update(
            run_id,
            JobRunState=state,
            ErrorMessage=message,
            CompletedOn=epoch(now()),
            LastModifiedOn=epoch(now()),
            ExecutionTime=int(round(elapsed)),
        )
        self._stopping.pop(run_id, None)
        if state == "FAILED" and record["Attempt"] < int(job.get("MaxRetries") or 0):
            self._retry(record, job)

    def _retry(self, failed: dict, job: dict) -> None:
        """Glue's MaxRetries: a FAILED run (not a stopped or timed-out one) is run again as
        `<first run id>_attempt_<n>`, with the same arguments and PreviousRunId set."""
        attempt = failed["Attempt"] + 1
        first = failed["Id"].split("_attempt_", 1)[0]
        run_id = f"{first}_attempt_{attempt}"
        record = {
            **{k: v for k, v in failed.items() if k not in _RUN_OUTCOME},
            "Id": run_id,
            "Attempt": attempt,
            "PreviousRunId": failed["Id"],
            "StartedOn": epoch(now()),
            "LastModifiedOn": epoch(now()),
            "JobRunState": "STARTING",
            "ExecutionTime": 0,
        }
        with self._lock:
            self.runs.put(run_id, record)
            self._stopping[run_id] = threading.Event()
        threading.Thread(
            target=self._run, args=(run_id, job), name=f"glue-{run_id[:12]}", daemon=True
        ).start()

    # ------------------------------------------------------------------------- tables
    def create_table(self, call: Call) -> dict:
        iceberg = (call.body.get("OpenTableFormatInput") or {}).get("IcebergInput")
        if iceberg is None:
            return call.moto_json()
        database = call.body.get("DatabaseName") or ""
        table_input = dict(call.body.get("TableInput") or {})
        name = table_input.get("Name") or call.body.get("Name") or ""
        if not name:
            raise glue_iceberg.invalid("The table needs a name: TableInput.Name")
        table_input["Name"] = name
        table = glue_iceberg.new_table(iceberg, table_input)
        glue, s3 = self.server.client("glue", call.region), self.server.client("s3", call.region)
        with self._table_lock(call.region, database, name):
            try:
                glue.get_database(Name=database)
            except glue.exceptions.EntityNotFoundException as exc:
                raise _not_found(exc.response["Error"].get("Message", "")) from None
            try:
                glue.get_table(DatabaseName=database, Name=name)
                raise AwsError("AlreadyExistsException", "Table already exists.")
            except glue.exceptions.EntityNotFoundException:
                pass
            try:
                s3.put_object(
                    Bucket=table.bucket,
                    Key=table.key,
                    Body=table.metadata_json(),
                    ContentType="application/json",
                )
            except ClientError as exc:
                raise glue_iceberg.invalid(
                    f"Cannot write the Iceberg table's metadata to {table.metadata_location}: "
                    f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}"
                ) from None
            forwarded = {k: v for k, v in call.body.items() if k != "OpenTableFormatInput"}
            try:
                call.moto_json({**forwarded, "TableInput": table.table_input})
            except AwsError:
                s3.delete_object(Bucket=table.bucket, Key=table.key)
                raise
        return {}

    def update_table(self, call: Call) -> dict:
        wanted = call.body.get("VersionId")
        database = call.body.get("DatabaseName") or ""
        name = (call.body.get("TableInput") or {}).get("Name") or call.body.get("Name") or ""
        with self._table_lock(call.region, database, name):
            if wanted is not None:
                glue = self.server.client("glue", call.region)
                try:
                    current = glue.get_table(DatabaseName=database, Name=name)["Table"].get(
                        "VersionId"
                    )
                except glue.exceptions.EntityNotFoundException:
                    current = None  # moto's answer says so
                if current is not None and str(wanted) != str(current):
                    raise AwsError(
                        "ConcurrentModificationException",
                        f"Update table failed due to concurrent modifications: version "
                        f"{wanted} is not the table's current version {current}",
                    )
            return call.moto_json()

    def _table_lock(self, region: str, database: str, name: str) -> threading.Lock:
        with self._lock:
            return self._tables.setdefault((region, database, name), threading.Lock())

    # ----------------------------------------------------------------------- crawlers
    def _definition(self, call: Call, name: str) -> dict:
        glue = self.server.client("glue", call.region)
        try:
            return glue.get_crawler(Name=name)["Crawler"]
        except glue.exceptions.EntityNotFoundException:
            raise _not_found(f"Crawler with name {name} has not been found.") from None

    def start_crawler(self, call: Call) -> dict:
        name = call.body.get("Name") or ""
        definition = self._definition(call, name)
        with self._lock:
            current = self.crawlers.get(name) or {"Name": name, "Crawls": []}
            if current.get("State") in ("RUNNING", "STOPPING"):
                raise AwsError(
                    "CrawlerRunningException", f"Crawler with name {name} has already started"
                )
            crawl_id = str(uuid.uuid4())
            crawl = {
                "CrawlId": crawl_id,
                "State": "RUNNING",
                "StartTime": epoch(now()),
                "LogGroup": CRAWLER_LOG_GROUP,
                "LogStream": name,
                "MessagePrefix": crawl_id,
            }
            current.update(State="RUNNING", Region=call.region, Current=crawl)
            self.crawlers.put(name, current)
            self._stopping[f"crawler:{name}"] = threading.Event()
        threading.Thread(
            target=self._crawl, args=(name, definition, call.region), daemon=True
        ).start()
        return {}

    def stop_crawler(self, call: Call) -> dict:
        name = call.body.get("Name") or ""
        self._definition(call, name)
        current = self.crawlers.get(name)
        if current is None or current.get("State") != "RUNNING":
            raise AwsError("CrawlerNotRunningException", f"Crawler with name {name} isn't running")
        self.crawlers.update(name, State="STOPPING")
        event = self._stopping.get(f"crawler:{name}")
        if event is not None:
            event.set()
        return {}

    def get_crawler(self, call: Call) -> dict:
        answer = call.moto_json()
        answer["Crawler"] = self._overlaid(answer["Crawler"])
        return answer

    def get_crawlers(self, call: Call) -> dict:
        answer = call.moto_json()
        answer["Crawlers"] = [self._overlaid(c) for c in answer.get("Crawlers", [])]
        return answer

    def get_crawler_metrics(self, call: Call) -> dict:
        wanted = call.body.get("CrawlerNameList")
        found = []
        for record in self.crawlers.values():
            if wanted and record["Name"] not in wanted:
                continue
            crawls = [c for c in record.get("Crawls", []) if c.get("EndTime")]
            runtimes = [c["EndTime"] - c["StartTime"] for c in crawls]
            last = crawls[-1] if crawls else {}
            found.append(
                {
                    "CrawlerName": record["Name"],
                    "TimeLeftSeconds": 0.0,
                    "StillEstimating": False,
                    "LastRuntimeSeconds": runtimes[-1] if runtimes else 0.0,
                    "MedianRuntimeSeconds": statistics.median(runtimes) if runtimes else 0.0,
                    "TablesCreated": last.get("TablesCreated", 0),
                    "TablesUpdated": last.get("TablesUpdated", 0),
                    "TablesDeleted": 0,
                }
            )
        return {"CrawlerMetricsList": found}

    def list_crawls(self, call: Call) -> dict:
        name = call.body.get("CrawlerName") or ""
        call.moto_json()  # moto's validation: the crawler, the filters (its messages are AWS's)
        record = self.crawlers.get(name) or {"Crawls": []}
        crawls = list(record.get("Crawls", []))
        if record.get("Current"):
            crawls.append(record["Current"])
        for condition in call.body.get("Filters") or []:
            crawls = [c for c in crawls if _crawl_matches(c, condition)]
        keep = (
            "CrawlId",
            "State",
            "StartTime",
            "EndTime",
            "Summary",
            "ErrorMessage",
            "LogGroup",
            "LogStream",
            "MessagePrefix",
            "DPUHour",
        )
        return {"Crawls": [{k: c[k] for k in keep if k in c} for c in reversed(crawls)]}

    def _overlaid(self, crawler: dict) -> dict:
        record = self.crawlers.get(crawler.get("Name", ""))
        if record is None:
            return {**crawler, "State": "READY"}
        crawler = {**crawler, "State": record.get("State", "READY")}
        current = record.get("Current")
        if current:
            crawler["CrawlElapsedTime"] = int((time.time() - current["StartTime"]) * 1000)
        if record.get("LastCrawl"):
            crawler["LastCrawl"] = record["LastCrawl"]
        return crawler

    def _crawl(self, name: str, definition: dict, region: str) -> None:
        from dataplatform.runtime.local import crawler

        record = self.crawlers.get(name)
        assert record is not None
        crawl = record["Current"]
        prefix = crawl["MessagePrefix"]
        logs = LogStream(self.server.client("logs", region), CRAWLER_LOG_GROUP, name)
        glue, s3 = self.server.client("glue", region), self.server.client("s3", region)
        update = ((definition.get("SchemaChangePolicy") or {}).get("UpdateBehavior")) == (
            "UPDATE_IN_DATABASE"
        )
        stop = self._stopping.get(f"crawler:{name}") or threading.Event()
        logs.add(f"[{prefix}] BENCHMARK : Running Start Crawl for Crawler {name}")
        totals = {"ADD": 0, "created": 0, "updated": 0}
        try:
            for target in (definition.get("Targets") or {}).get("S3Targets") or []:
                if stop.is_set():
                    break
                found = crawler.crawl_target(
                    s3,
                    glue,
                    database=definition["DatabaseName"],
                    path=target["Path"],
                    table_prefix=definition.get("TablePrefix") or "",
                    update_columns=update,
                )
                totals["ADD"] += len(found.partitions_added)
                totals["created"] += int(found.created)
                totals["updated"] += int(found.updated)
                table = f"{found.database}.{found.table}"
                logs.add(
                    f"[{prefix}] INFO : {table}: {len(found.partitions_added)} new partition(s), "
                    f"{found.partitions_existing} already in the catalog, {found.files} file(s)"
                )
                if found.new_columns:
                    verb = "added" if found.columns_added else "logged, not applied"
                    logs.add(
                        f"[{prefix}] INFO : Table {table} has new columns ({verb}): "
                        f"{', '.join(found.new_columns)}"
                    )
        except Exception as exc:  # noqa: BLE001 - the crawl fails, the server goes on
            logs.add(f"[{prefix}] ERROR : {type(exc).__name__}: {exc}").flush()
            self._end_crawl(name, "FAILED", f"{type(exc).__name__}: {exc}", totals)
            return
        logs.add(f"[{prefix}] BENCHMARK : Crawler has finished running").flush()
        # as Glue's crawlers do: STOPPING while the crawl winds down, then READY
        self.crawlers.update(name, State="STOPPING")
        time.sleep(STOPPING_S)
        self._end_crawl(name, "CANCELLED" if stop.is_set() else "SUCCEEDED", None, totals)

    def _end_crawl(self, name: str, status: str, error: str | None, totals: dict | None) -> None:
        record = self.crawlers.get(name)
        if record is None:
            return
        crawl = dict(record.get("Current") or {})
        ended = epoch(now())
        summary = {
            "TABLE": {"ADD": {"Count": (totals or {}).get("created", 0)}},
            "PARTITION": {"ADD": {"Count": (totals or {}).get("ADD", 0)}},
        }
        crawl.update(
            State={"SUCCEEDED": "COMPLETED", "CANCELLED": "STOPPED"}.get(status, "FAILED"),
            EndTime=ended,
            Summary=json.dumps(summary),
            TablesCreated=(totals or {}).get("created", 0),
            TablesUpdated=(totals or {}).get("updated", 0),
            **({"ErrorMessage": error} if error else {}),
        )
        last = {
            "Status": status,
            "LogGroup": CRAWLER_LOG_GROUP,
            "LogStream": name,
            "MessagePrefix": crawl.get("MessagePrefix"),
            "StartTime": crawl.get("StartTime"),
        }
        if error:
            last["ErrorMessage"] = error
        crawls = [*record.get("Crawls", []), crawl][-50:]
        self.crawlers.put(
            name, {**record, "State": "READY", "Current": None, "Crawls": crawls, "LastCrawl": last}
        )

    def reset(self) -> None:
        for event in self._stopping.values():
            event.set()
        self.runs.clear()
        self.crawlers.clear()


def _crawl_matches(crawl: dict, condition: dict) -> bool:
    """ListCrawls' filter, as Glue compares: ids and states as text, times as ISO text."""
    from datetime import UTC, datetime

    field, operator = condition.get("FieldName"), condition.get("FilterOperator")
    wanted = condition.get("FieldValue")

    def iso(stamp: float | None) -> str | None:
        if stamp is None:
            return None
        return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None).isoformat()

    value = {
        "CRAWL_ID": crawl.get("CrawlId"),
        "STATE": crawl.get("State"),
        "START_TIME": iso(crawl.get("StartTime")),
        "END_TIME": iso(crawl.get("EndTime")),
        "DPU_HOUR": str(crawl.get("DPUHour")) if crawl.get("DPUHour") is not None else None,
    }.get(field or "")
    if operator == "EQ":
        return value == wanted
    if operator == "NE":
        return value != wanted
    if value is None or wanted is None:
        return False
    return {
        "GT": value > wanted,
        "GE": value >= wanted,
        "LT": value < wanted,
        "LE": value <= wanted,
    }.get(operator or "", False)


class _Stopped(Exception):
    pass


_RUN_OUTCOME = ("ErrorMessage", "CompletedOn", "PreviousRunId")


def _described(run: dict) -> dict:
    keep = {k: v for k, v in run.items() if k not in ("Region",) and v is not None}
    return keep
