"""The platform on the AWS APIs: a deployed environment (`--target aws`), or, given the
local endpoint's session, the embedded local platform (`--target local`,
runtime/local/platform.py: this code with a few primitives of its own). Names come from
`naming`; credentials and region from the session, by default the usual AWS configuration
(the region of the spec's environment wins)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataplatform import layout, paths
from dataplatform.naming import Names
from dataplatform.runtime import errors, ingest, interface
from dataplatform.runtime.aws import athena, jobs
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
from dataplatform.spec import Dataset, Platform


class AwsPlatform(interface.Platform):
    # Athena bills each query by the bytes it scans: no query the user did not ask for
    cheap_queries = False

    def __init__(self, platform: Platform, env: str, *, session=None, account: str | None = None):
        import boto3

        self.platform = platform
        self.settings = platform.environment(env)
        self.session = session or boto3.Session(region_name=self.settings.region)
        account = (
            account
            or self.settings.resolved_account()
            or self.session.client("sts").get_caller_identity()["Account"]
        )
        self.names = Names.for_environment(platform, self.settings, account=account)

    def make_client(self, service: str) -> Any:
        # boto3-stubs types client() for literal service names only; any name is passed on here
        return self.session.client(service, region_name=self.settings.region)  # type: ignore[call-overload]

    def poll(self, seconds: float) -> float:
        """How long to wait between two polls of something that takes `seconds`' order on
        AWS (a Glue job: 15 s); the local platform answers in a fraction of that."""
        return seconds

    def ingest(
        self,
        dataset: Dataset,
        records: Iterable[dict] | None = None,
        *,
        file: Path | None = None,
        progress: Callable[[int], None] | None = None,
        from_line: int = 1,
    ):

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
            # Firehose delivers on its own, within its buffering interval.
            return IngestResult(dataset.name, count, summary.sent, summary.retried, summary.failed)
        if file is None:
            raise ValueError(f"{dataset.name} is a batch dataset: give the file to upload")
        rows, rejected = ingest.check_batch_file(file)
        key = layout.batch_upload_key(dataset.name, file.name, datetime.now(UTC))
        self.client("s3").upload_file(str(file), self.names.raw_bucket, key)
        # the whole file is uploaded: its bad lines are the curate job's to quarantine
        total = rows + len(rejected)
        return IngestResult(
            dataset.name, total, total, 0, 0, uploaded_key=key, rejected_lines=rejected
        )

    def crawl(self, dataset: Dataset, *, progress: Callable[[str], None] | None = None) -> CrawlRun:
        result = jobs.run_crawler(
            self.client("glue"), self.names.crawler(dataset.name), progress=progress
        )
        return CrawlRun(
            crawler=result.crawler,
            state=result.last_crawl_status,
            seconds=round(result.duration, 1),
            partitions_added=result.partitions_added,
        )

    def curate(
        self,
        dataset: Dataset,
        *,
        dates: list[str] | None = None,
        progress: Callable[[str], None] = lambda line: None,
    ) -> JobRun:
        run = jobs.run_glue_job(
            self.client("glue"),
            self.names.curate_job(dataset.name),
            arguments={"--dates": ",".join(dates)} if dates else None,
            progress=progress,
            log_group_suffix=f"-{self.names.security_configuration}",
        )
        return JobRun(
            name=run.job_name,
            run_id=run.run_id,
            state=run.state,
            seconds=round(run.duration, 1),
            log=str(run.log_location),
            where="Glue",
            report=self._curate_report(dataset, run.run_id),
        )

    def _curate_report(self, dataset: Dataset, run_id: str) -> dict:
        """The report a deployed curate run wrote next to its job code (artifacts bucket)."""
        import json

        key = f"{layout.curate_report_prefix(dataset.name)}{run_id}.json"
        try:
            body = self.client("s3").get_object(Bucket=self.names.artifacts_bucket, Key=key)["Body"]
            return json.loads(body.read())
        except Exception:  # the run succeeded; its report is a convenience
            return {}

    def emr_run(
        self, step: str, args=(), *, progress: Callable[[str], None] | None = None
    ) -> JobRun:
        """Add the step to the environment's long-running cluster and wait for it."""
        from dataplatform.runtime.aws import emr

        result = emr.run_step(self.client("emr"), self.names, step, args, progress=progress)
        return JobRun(
            name=result.name,
            run_id=result.step_id,
            state=result.state,
            seconds=round(result.duration, 1),
            log=result.log_uri,
            where=f"cluster {result.cluster_id}",
        )

    def run_pipeline(self, *, progress: Callable[[str], None] | None = None) -> PipelineRun:
        """An execution of the deployed state machine, followed to its end; raises
        PipelineFailed (ExecutionFailed) naming the state that failed."""
        from dataplatform.runtime.aws import pipeline

        return pipeline.run_pipeline(self, progress=progress).run()

    def local_folder(self, name: str) -> Path:
        """A folder of this machine for what a command keeps (a training run's plots)."""
        return paths.state_dir() / name

    def serve(self, model: str) -> Served:
        """The model's endpoint as the deployer left it (an approval rolls it): its status,
        the package version it serves (the deployer names each endpoint configuration
        `<endpoint>-v<version>`) and the URL InvokeEndpoint answers at."""
        from dataplatform.runtime.model_registry import deployer_module

        sagemaker = self.client("sagemaker")
        name = self.names.endpoint(model)
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
        except sagemaker.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            return Served(
                model,
                name,
                None,
                "NotDeployed",
                f"approve a version (`dp models approve {model} VERSION`): the approval "
                "deploys the endpoint",
            )
        version = deployer_module().deployed_version(name, described["EndpointConfigName"])
        runtime = self.client("sagemaker-runtime").meta.endpoint_url
        return Served(
            model,
            name,
            version,
            described["EndpointStatus"],
            f"{runtime}/endpoints/{name}/invocations",
        )

    def score(
        self, model: str, *, progress: Callable[[str], None] | None = None, from_start: bool = False
    ) -> ScoringRun:
        """On AWS the scorer Lambda scores every batch as it arrives: its event source
        mapping's state and last result (`from_start` would be a replay: not from here)."""
        if from_start:
            raise errors.Refused(
                "a replay on AWS is a new event source mapping at TRIM_HORIZON (or the "
                "stream's records put again): not done from dp; scores and features are "
                "idempotent, so a replay changes nothing but the time it takes"
            )
        function = self.names.scorer_function(model)
        mappings = self.client("lambda").list_event_source_mappings(FunctionName=function)
        states = [
            f"{m.get('State')} ({m.get('LastProcessingResult', 'no batch yet')})"
            for m in mappings.get("EventSourceMappings", [])
        ]
        return ScoringRun(
            model=model,
            where=f"Lambda {function}: " + ("; ".join(states) or "no event source mapping"),
        )

    def emr_status(self) -> StepsStatus:
        """The long-running cluster, its instance groups and recent steps (JobFailed when
        there is no such cluster)."""
        from dataplatform.runtime.aws import emr

        status = emr.cluster_status(self.client("emr"), self.names)
        c = status.cluster
        groups = tuple(
            {
                "group": g.get("Name", ""),
                "role": g.get("InstanceGroupType", ""),
                "market": g.get("Market", ""),
                "type": g.get("InstanceType", ""),
                "requested": str(g.get("RequestedInstanceCount", "")),
                "running": str(g.get("RunningInstanceCount", "")),
                "state": g.get("Status", {}).get("State", ""),
            }
            for g in status.instance_groups
        )
        steps = []
        for step in status.steps:
            st = step.get("Status", {})
            timeline, failure = st.get("Timeline", {}), st.get("FailureDetails") or {}
            steps.append(
                {
                    "step": step["Id"],
                    "name": step.get("Name", ""),
                    "state": st.get("State", ""),
                    "created": str(timeline.get("CreationDateTime", ""))[:19],
                    "ended": str(timeline.get("EndDateTime", "") or "")[:19],
                    "detail": ": ".join(
                        x for x in (failure.get("Reason"), failure.get("Message")) if x
                    ),
                }
            )
        return StepsStatus(
            where=(
                f"cluster {c.get('Name')} {c['Id']}: {c.get('Status', {}).get('State')}, "
                f"{c.get('ReleaseLabel', '?')}, logs {c.get('LogUri', '-')}"
            ),
            groups=groups,
            steps=tuple(steps),
            no_steps="no steps yet",
        )

    def query(self, sql: str, *, persona: str | None = None) -> QueryResult:
        if persona is not None:
            raise errors.Refused(
                "--as on AWS: Lake Formation applies a persona's grants to the persona's own "
                "role; run dp with that role's credentials (AWS_PROFILE) instead"
            )
        return athena.run_query(
            sql,
            session=self.session,
            workgroup=self.names.workgroup,
            database=self.names.curated_database,
        )

    def train(self, model, *, progress: Callable[[str], None] | None = None, download_dir=None):
        """A SageMaker training job, gated and registered if it passes; the artifact is
        downloaded to `download_dir` (default .dp/training) for its plots."""
        from dataplatform.runtime.aws.training import train_model

        return train_model(
            self,
            model,
            progress=progress,
            poll_seconds=self.poll(30),
            download_dir=download_dir or self.local_folder("training"),
        )
