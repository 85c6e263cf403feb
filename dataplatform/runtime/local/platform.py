"""`--target local`: the AWS target's code (runtime/aws/platform.py) with the local
endpoint's session, so whatever `dp` does locally goes through the same AWS APIs any other
client calls, and the real work happens behind them (runtime/local/services/). What differs
is a small set of primitives: the session and account, how fast to poll, and whether a
query costs anything.

Operations not yet behind the local endpoint's APIs are still done here, in this process
(ingestion's Firehose delivery, the crawler, the Glue job and EMR step runs, the endpoint
deployer's rollout, scoring): each goes as its API's service takes over the work. Training
and serving are SageMaker's on the local endpoint (runtime/local/services/sagemaker.py)."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from dataplatform import governance, layout
from dataplatform.bundle import stage_job_code
from dataplatform.paths import REPO_ROOT
from dataplatform.runtime import errors, ingest
from dataplatform.runtime.aws.platform import AwsPlatform
from dataplatform.runtime.local import athena, crawler, firehose, glue_job, locks, server
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY, ServerInfo
from dataplatform.runtime.model_registry import spec_model
from dataplatform.runtime.results import (
    CrawlRun,
    IngestResult,
    JobRun,
    PipelineRun,
    QueryResult,
    ScoringRun,
    Served,
    StepsStatus,
)
from dataplatform.spec import Dataset, Environment, Platform

LOCAL_ACCOUNT = "123456789012"  # moto's account
ENDPOINT_TIMEOUT_S = 600  # a model's endpoint loads in seconds


def _load_transform() -> Callable:
    """The Firehose transform Lambda's plain function, imported from its source folder."""
    folder = REPO_ROOT / "lambdas" / "firehose_transform"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    import firehose_records  # the Lambda's own module, unchanged

    return firehose_records.transform_batch


class LocalPlatform(AwsPlatform):
    # queries run on DuckDB here: counting a table's rows costs nothing
    cheap_queries = True
    POLL_SECONDS = 0.2  # the local services answer within that

    def __init__(self, platform: Platform, env: str, *, state_dir: Path | None = None):
        self.state_dir = state_dir or server.state_dir()
        self.info: ServerInfo = server.require(self.state_dir)
        settings: Environment = platform.environment(env)
        super().__init__(
            platform, env, session=server.session(self.info, settings.region), account=LOCAL_ACCOUNT
        )

    def poll(self, seconds: float) -> float:
        return min(seconds, self.POLL_SECONDS)

    @cached_property
    def s3(self):
        return self.client("s3")

    @cached_property
    def glue(self):
        return self.client("glue")

    # --- ingestion
    def ingest(
        self,
        dataset: Dataset,
        records: Iterable[dict] | None = None,
        *,
        file: Path | None = None,
        progress: Callable[[int], None] | None = None,
        from_line: int = 1,
    ) -> IngestResult:
        """Stream datasets: the file's records (from line `from_line`) or `records` onto
        the stream, then Firehose's delivery of everything on it not yet delivered. Raises
        IngestInterrupted (what was kept, what to send again) if the platform stops
        answering part way. Batch datasets: the file uploaded whole to raw."""
        from botocore.exceptions import BotoCoreError

        if dataset.is_stream:
            kinesis, stream = self.client("kinesis"), self.names.stream(dataset.name)
            lines, count, summary = ingest.send_to_stream(
                kinesis,
                stream,
                dataset,
                file=file,
                records=records,
                from_line=from_line,
                progress=progress,
            )
            result = IngestResult(
                dataset.name, count, summary.sent, summary.retried, summary.failed
            )
            try:
                result.delivery = delivery = self.deliver(dataset)
                result.undelivered = firehose.undelivered(
                    kinesis, stream, self.checkpoint_path(dataset), summary.positions
                )
            except BotoCoreError as exc:  # the server stopped answering: the stream keeps them
                last = lines[-1].line if lines else from_line - 1
                raise errors.IngestInterrupted(
                    dataset.name,
                    file,
                    summary.sent,
                    last + 1,
                    last,
                    exc,
                    during="the delivery to raw",
                ) from exc
            line_numbers: dict[bytes, list[int]] = {}
            for line in lines:
                line_numbers.setdefault(line.data, []).append(line.line)
            for data, reason in delivery.rejected:
                numbers = line_numbers.get(data) or [0]
                result.rejected_lines.append(
                    (numbers.pop(0) if len(numbers) > 1 else numbers[0], reason)
                )
            result.rejected_lines.sort()
            return result
        if file is None:
            raise ValueError(f"{dataset.name} is a batch dataset: give the file to upload")
        key = layout.batch_upload_key(dataset.name, file.name, datetime.now(UTC))
        self.s3.put_object(Bucket=self.names.raw_bucket, Key=key, Body=file.read_bytes())
        rows, rejected = ingest.check_batch_file(file)
        # the whole file is uploaded: its bad lines are the curate job's to quarantine
        total = rows + len(rejected)
        return IngestResult(
            dataset.name, total, total, 0, 0, uploaded_key=key, rejected_lines=rejected
        )

    def checkpoint_path(self, dataset: Dataset) -> Path:
        return self.state_dir / "firehose" / f"{dataset.name}.json"

    def deliver(self, dataset: Dataset) -> firehose.DeliverySummary:
        transform_batch = _load_transform()
        rejected: list[tuple[bytes, str]] = []

        def transform(event: dict) -> dict:
            """The Lambda's function; its reasons are kept (on AWS they go to its log)."""
            result = transform_batch(event, dataset)
            sent = {r["recordId"]: r["data"] for r in event.get("records", [])}
            rejected.extend(
                (base64.b64decode(sent[record_id]), f"{reason}: {detail}" if detail else reason)
                for record_id, reason, detail in result.failures
                if record_id in sent
            )
            return result.response

        # one delivery per stream at a time (as Firehose has one reader per shard): a second
        # ingest's delivery waits, then reads on from the first one's checkpoint
        with locks.exclusive(self.state_dir / "firehose" / f"{dataset.name}.lock"):
            summary = firehose.deliver(
                self.client("kinesis"),
                self.s3,
                stream_name=self.names.stream(dataset.name),
                raw_bucket=self.names.raw_bucket,
                dataset=dataset,
                checkpoint_path=self.checkpoint_path(dataset),
                transform=transform,
                delivery_stream=self.names.delivery_stream(dataset.name),
            )
        summary.rejected = rejected
        return summary

    # --- crawl, curate, query
    def crawl(self, dataset: Dataset, *, progress: Callable[[str], None] | None = None) -> CrawlRun:
        """The crawl itself runs here, synchronously; moto keeps the control plane's record
        of it, which stays RUNNING until stopped (moto never finishes a crawl), so it is
        ended after the crawl, and one left running by a command that died is ended first:
        a rerun is a new crawl, as on AWS once the previous one has finished."""
        name = self.names.crawler(dataset.name)
        try:
            self.glue.start_crawler(Name=name)
        except self.glue.exceptions.CrawlerRunningException:
            self.glue.stop_crawler(Name=name)
            self.glue.start_crawler(Name=name)
        started = time.perf_counter()
        try:
            found = crawler.crawl(self.s3, self.glue, dataset=dataset, names=self.names)
            return CrawlRun(
                crawler=name,
                state="SUCCEEDED",
                seconds=round(time.perf_counter() - started, 1),
                partitions_added=len(found.partitions_added),
                partitions_known=found.partitions_existing,
                files=found.files,
                new_columns=tuple(found.new_columns),
                added=tuple(tuple(values) for values in found.partitions_added),
            )
        finally:
            try:
                self.glue.stop_crawler(Name=name)
            except self.glue.exceptions.CrawlerNotRunningException:
                pass

    def curate(
        self,
        dataset: Dataset,
        *,
        dates: list[str] | None = None,
        progress: Callable[[str], None] = lambda line: None,
    ) -> JobRun:
        job = self.names.curate_job(dataset.name)

        def running() -> Exception:  # Glue's answer to a second run of a job (MaxConcurrentRuns 1)
            return errors.Refused(
                f"{job} is already running (Glue: ConcurrentRunsExceededException, "
                "MaxConcurrentRuns is 1): wait for that run to finish, then run "
                "it again"
            )

        with locks.exclusive(self.state_dir / "runs" / f"{job}.lock", busy=running):
            job_code = stage_job_code(self.platform, self.state_dir / "build")
            extra = {"--dates": ",".join(dates)} if dates else None
            return _job_run(
                glue_job.run_job(
                    self.glue,
                    self.s3,
                    job_name=job,
                    info=self.info,
                    region=self.settings.region,
                    runs_dir=self.state_dir / "runs",
                    library_zip=job_code / "lib" / "dataplatform.zip",
                    extra_arguments=extra,
                    progress=progress,
                )
            )

    def start_spark(self) -> None:
        """Start the Spark driver ahead of the first job (`dp demo` does it while it ingests,
        on the other core); a job would start it anyway."""
        job_code = stage_job_code(self.platform, self.state_dir / "build")
        glue_job.spark_driver(
            info=self.info,
            region=self.settings.region,
            state_dir=self.state_dir,
            library_zip=job_code / "lib" / "dataplatform.zip",
        )

    def emr_run(
        self, step: str, args=(), *, progress: Callable[[str], None] = lambda line: None
    ) -> JobRun:
        """An EMR step (emr_steps/<step>.py, as deployed to the artifacts bucket) on local
        Spark with the arguments an EMR step would get (`emr_step_args`). Raises
        StepArgumentError for bad arguments, KeyError for an unknown feature table."""
        import uuid

        from dataplatform.jobs import emr_step_args

        arguments = emr_step_args.step_arguments(step, self.names, args)
        if step == "features":
            known = {f.name for f in self.platform.features}
            if arguments["--name"] not in known:
                raise KeyError(
                    f"unknown feature table {arguments['--name']!r}; known: "
                    f"{', '.join(sorted(known)) or 'none'}"
                )
        # steps run one at a time, as on a cluster with EMR's default step concurrency of 1:
        # a second one waits for the first
        with locks.exclusive(self.state_dir / "runs" / "emr-steps.lock"):
            job_code = stage_job_code(self.platform, self.state_dir / "build")
            return _job_run(
                glue_job.spark_submit(
                    self.s3,
                    script_uri=emr_step_args.script_uri(step, self.names),
                    name=emr_step_args.step_name(step, arguments).replace(" ", "-"),
                    arguments=arguments,
                    run_id=f"step-{uuid.uuid4().hex[:12]}",
                    info=self.info,
                    region=self.settings.region,
                    runs_dir=self.state_dir / "runs",
                    library_zip=job_code / "lib" / "dataplatform.zip",
                    progress=progress,
                )
            )

    def emr_runs(self, limit: int = 10) -> list[dict]:
        """The most recent local step runs (newest first), as recorded in the runs folder."""
        import json

        records = []
        for path in (self.state_dir / "runs").glob("step-*.json"):
            try:
                record = json.loads(path.read_text())
            except ValueError:
                continue
            record["finished"] = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            records.append(record)
        return sorted(records, key=lambda r: r["finished"], reverse=True)[:limit]

    def run_pipeline(self, *, progress: Callable[[str], None] | None = None) -> PipelineRun:
        """The ML pipeline's steps one by one on the local data plane (local/pipeline.py);
        raises PipelineFailed naming the step."""
        from dataplatform.runtime.local import pipeline

        return pipeline.run_pipeline(self, progress=progress)

    def local_folder(self, name: str) -> Path:
        return Path(self.state_dir) / name

    def serve(self, model: str) -> Served:
        """What the endpoint deployer Lambda does when a package is approved, done now: its
        own `deploy` (lambdas/endpoint_deployer) with the platform's SageMaker client and
        the target the serving stack configures it with, rolling the model's endpoint to
        its latest Approved package through the local SageMaker's API; then the endpoint
        as the AWS target reads it, once it has settled. (On AWS the approval's EventBridge
        rule invokes the Lambda; the local platform has no Lambda runtime to invoke it yet,
        so `dp serve` runs it.)"""
        from dataplatform.runtime.model_registry import deployer_module, latest_approved

        spec = spec_model(self.platform, model)
        if spec.serving is None:
            raise KeyError(f"{model} declares no serving: section in {spec.source_file}")
        sagemaker = self.client("sagemaker")
        latest = latest_approved(sagemaker, self.names, model)
        if latest is None:
            raise errors.Refused(
                f"{model} has no Approved package to serve: `dp models` lists its versions, "
                f"`dp models approve {model} VERSION` approves one"
            )
        deployer = deployer_module()
        try:
            deployer.deploy(
                sagemaker,
                package_arn=latest.arn,
                target=self._deployer_target(spec),
                sleep=lambda seconds: time.sleep(self.poll(seconds)),
            )
        except deployer.DeployError as exc:
            raise errors.Refused(str(exc)) from None
        name = self.names.endpoint(model)
        deadline = time.monotonic() + ENDPOINT_TIMEOUT_S
        while True:
            described = sagemaker.describe_endpoint(EndpointName=name)
            status = described["EndpointStatus"]
            if status not in deployer.BUSY or time.monotonic() > deadline:
                break
            time.sleep(self.poll(30))
        if status != "InService" or described.get("FailureReason"):
            raise errors.Refused(
                f"endpoint {name} is {status}: {described.get('FailureReason', 'still settling')}"
            )
        return super().serve(model)

    def _deployer_target(self, model):
        """The deployer's EndpointTarget, from the environment the serving stack gives the
        Lambda (dataplatform/serving.py), with what is provisioned locally."""
        from dataplatform.runtime.aws.training import find_network
        from dataplatform.runtime.model_registry import deployer_module, lake_key_arn
        from dataplatform.serving import deployer_environment

        ec2 = self.client("ec2")
        subnets, _ = find_network(ec2, self.names)
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [self.names.endpoint_security_group]}]
        )["SecurityGroups"]
        environment = deployer_environment(
            model,
            self.names,
            role_arn=self.client("iam").get_role(RoleName=self.names.sagemaker_role)["Role"]["Arn"],
            subnet_ids=subnets,
            security_group_id=groups[0]["GroupId"] if groups else "",
            models_bucket=self.names.models_bucket,
            key_arn=lake_key_arn(self.client("kms"), self.names),
        )
        return deployer_module().EndpointTarget.from_environment(environment)

    def score(
        self, model: str, *, progress: Callable[[str], None] | None = None, from_start: bool = False
    ) -> ScoringRun:
        """Everything new on the model's stream, through the scorer Lambda's code with the
        local clients; InvokeEndpoint is the local SageMaker's (runtime/local/scoring.py)."""
        from dataplatform.runtime.local import scoring

        spec = spec_model(self.platform, model)
        sagemaker = self.client("sagemaker")
        status: str
        try:
            status = sagemaker.describe_endpoint(EndpointName=self.names.endpoint(model))[
                "EndpointStatus"
            ]
        except sagemaker.exceptions.ClientError:
            status = "not deployed"
        if status not in ("InService", "Updating"):
            raise errors.Refused(
                f"{model} is not served locally (its endpoint is {status}): start its endpoint "
                f"with `dp serve {model}`"
            )
        run = scoring.follow(self, spec, self.client, progress=progress, from_start=from_start)
        if spec.serving and spec.serving.scores_dataset:
            # Firehose delivers the scores stream continuously on AWS; here, after each pass
            run.delivered = self.deliver(self.dataset(spec.serving.scores_dataset)).delivered_ok
        return run

    def emr_status(self) -> StepsStatus:
        """The recent local step runs (local Spark: there is no cluster)."""
        steps = tuple(
            {
                "step": r["run_id"],
                "name": r["job_name"],
                "state": r["state"],
                "created": "",
                "ended": r["finished"].strftime("%Y-%m-%d %H:%M:%S"),
                "detail": f"{r['seconds']} s, log {r['log_path']}",
            }
            for r in self.emr_runs()
        )
        return StepsStatus(
            where=f"recent local step runs (local Spark; no cluster) in {self.state_dir / 'runs'}",
            groups=(),
            steps=steps,
            no_steps="no local step runs yet; try `dp emr run frequent_itemsets` (local steps run "
            "on local Spark: there is no cluster)",
        )

    def query(self, sql: str, *, persona: str | None = None) -> QueryResult:
        if persona is None:
            return super().query(sql)
        import pyarrow.fs

        filesystem = pyarrow.fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=self.settings.region,
            scheme="http",
            endpoint_override=self.info.endpoint.removeprefix("http://"),
        )
        return athena.run_query(
            sql,
            glue=self.glue,
            s3=self.s3,
            s3_filesystem=filesystem,
            workgroup=self.names.workgroup,
            athena_results_bucket=self.names.athena_results_bucket,
            bytes_scanned_cutoff=self.settings.athena.bytes_scanned_cutoff,
            default_database=self.names.curated_database,
            grants=self.grants(persona) if persona else None,
        )

    def grants(self, persona: str) -> athena.Grants:
        """The persona's Lake Formation grants, as the local Athena applies them: the same
        description the GovernanceStack deploys (dataplatform/governance.py)."""
        described = governance.describe(self.platform, self.names)
        access = described.persona(persona)
        return athena.Grants(
            persona=access.name,
            databases=frozenset(access.databases),
            hidden_columns=described.hidden_columns(access.name),
        )


def _job_run(run: glue_job.LocalJobRun) -> JobRun:
    return JobRun(
        name=run.job_name,
        run_id=run.run_id,
        state=run.state,
        seconds=run.seconds,
        log=str(run.log_path),
        where="local Spark",
        report=run.report or {},
    )
