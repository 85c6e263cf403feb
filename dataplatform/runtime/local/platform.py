"""`--target local`: the AWS target's code (runtime/aws/platform.py) with the local
endpoint's session, so whatever `dp` does locally goes through the same AWS APIs any other
client calls, and the real work happens behind them (runtime/local/services/). What differs
is a small set of primitives: the session and account, how fast to poll, and whether a
query costs anything.

Operations not yet behind the local endpoint's APIs are still done here, in this process
(ingestion's Firehose delivery, the crawler, the Glue job and EMR step runs, training,
serving and scoring): each goes as its API's service takes over the work."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from dataplatform.bundle import stage_job_code
from dataplatform.runtime import errors
from dataplatform.runtime.aws.platform import AwsPlatform
from dataplatform.runtime.local import crawler, firehose, glue_job, locks, server
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY, ServerInfo
from dataplatform.runtime.model_registry import spec_model
from dataplatform.runtime.results import (
    CrawlRun,
    JobRun,
    PipelineRun,
    ScoringRun,
    Served,
    StepsStatus,
)
from dataplatform.spec import Dataset, Environment, Platform

LOCAL_ACCOUNT = "123456789012"  # moto's account


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
    def delivered(self, dataset: Dataset) -> firehose.DeliverySummary:
        """Ask the local Firehose to deliver what is on the dataset's stream now (its
        buffering interval is minutes): what it wrote since the last time it was asked."""
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.info.endpoint}/_dp/firehose/flush",
            data=json.dumps(
                {
                    "DeliveryStreamName": self.names.delivery_stream(dataset.name),
                    "Region": self.settings.region,
                }
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
        answer["failed_records"] = [base64.b64decode(r) for r in answer["failed_records"]]
        return firehose.DeliverySummary(**answer)

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
        self, step: str, args=(), *, progress: Callable[[str], None] | None = None
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
                    progress=progress or (lambda line: None),
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

    def train(self, model, *, progress: Callable[[str], None] | None = None, download_dir=None):
        """training/train.py as SageMaker runs it, gated and registered if it passes."""
        from dataplatform.runtime.local.training import train_model

        return train_model(self, model, progress=progress)

    def run_pipeline(self, *, progress: Callable[[str], None] | None = None) -> PipelineRun:
        """The ML pipeline's steps one by one on the local data plane (local/pipeline.py);
        raises PipelineFailed naming the step."""
        from dataplatform.runtime.local import pipeline

        return pipeline.run_pipeline(self, progress=progress)

    def serve(self, model: str) -> Served:
        """The local endpoint (127.0.0.1) for the model's latest Approved package, started
        in the background beside the other served models; its model fetched from S3."""
        from dataplatform.runtime import errors
        from dataplatform.runtime.local import endpoint

        spec = spec_model(self.platform, model)
        if spec.serving is None:
            raise KeyError(f"{model} declares no serving: section in {spec.source_file}")
        latest = endpoint.latest_approved_package(self.client("sagemaker"), self.names, spec)
        if latest is None:
            raise errors.Refused(
                f"{model} has no Approved package to serve: `dp models` lists its versions, "
                f"`dp models approve {model} VERSION` approves one"
            )
        version, url = latest
        model_dir = self.state_dir / "serving" / model / f"v{version}"
        if not (model_dir / "model.joblib").is_file():
            endpoint.fetch_model(self.s3, url, model_dir)
        running = endpoint.status(self.state_dir)
        models = {k: Path(v) for k, v in (running.endpoints if running else {}).items()}
        models[self.names.endpoint(model)] = model_dir
        info, _ = endpoint.up(models, self.state_dir, region=self.settings.region)
        return Served(model, self.names.endpoint(model), version, "InService", info.url)

    def score(
        self,
        model: str,
        *,
        progress: Callable[[str], None] | None = None,
        from_start: bool = False,
        since: datetime | None = None,
    ) -> ScoringRun:
        """Everything new on the model's stream, through the scorer Lambda's code with the
        local clients and the local endpoint (runtime/local/scoring.py)."""
        import boto3

        from dataplatform.runtime import errors
        from dataplatform.runtime.local import endpoint, scoring

        spec = spec_model(self.platform, model)
        info = endpoint.status(self.state_dir)
        if info is None or self.names.endpoint(model) not in info.endpoints:
            raise errors.Refused(
                f"{model} is not served locally: start its endpoint with `dp serve {model}`"
            )
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=info.url,
            region_name=self.settings.region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

        def clients(service: str):
            return runtime if service == "sagemaker-runtime" else self.client(service)

        run = scoring.follow(self, spec, clients, progress=progress, from_start=from_start)
        if spec.serving and spec.serving.scores_dataset:
            # Firehose delivers the scores stream continuously on AWS; here, after each pass
            run.delivered = self.delivered(self.dataset(spec.serving.scores_dataset)).delivered_ok
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

    def scoring_caught_up(self, function: str) -> list[dict]:
        """The local Lambda service polls the function's mappings until they have caught
        up with their streams (on AWS they are only reported)."""
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.info.endpoint}/_dp/lambda/settle",
            data=json.dumps({"FunctionName": function, "Region": self.settings.region}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=3600) as response:
            return json.loads(response.read())["EventSourceMappings"]

    def replay_scoring(self, model) -> None:
        """A replay, as it is done on AWS: the scorer's mapping made again from the stream's
        start (scores and features are idempotent: only the time it takes changes)."""
        from dataplatform.runtime.local.provision import scorer_mapping

        lambdas = self.client("lambda")
        function = self.names.scorer_function(model.name)
        for mapping in lambdas.list_event_source_mappings(FunctionName=function)[
            "EventSourceMappings"
        ]:
            lambdas.delete_event_source_mapping(UUID=mapping["UUID"])
        scorer_mapping(self.client, self.names, model)

    def session_with(self, credentials: Mapping[str, Any]):
        return server.session(self.info, self.settings.region, credentials=credentials)


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
