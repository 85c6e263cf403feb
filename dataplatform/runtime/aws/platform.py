"""The platform on the AWS APIs: a deployed environment (`--target aws`), or, given the
local endpoint's session, the embedded local platform (`--target local`,
runtime/local/platform.py: this code with a few primitives of its own). Names come from
`naming`; credentials and region from the session, by default the usual AWS configuration
(the region of the spec's environment wins)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
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

# what `dp score` reports when not told since when
SCORING_WINDOW = timedelta(minutes=15)
# how long `dp serve` waits for an endpoint that is being created or updated
ENDPOINT_WAIT_S = 1800


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

    def delivered(self, dataset: Dataset):
        """What Firehose has delivered of the dataset's stream, where the target can say at
        once (the local platform flushes its delivery); None on AWS, where Firehose
        delivers on its own within its buffering interval."""
        return None

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
            result = IngestResult(
                dataset.name, count, summary.sent, summary.retried, summary.failed
            )
            try:
                result.delivery = self.delivered(dataset)
            except OSError as exc:  # the platform stopped answering: the stream keeps them
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
            if result.delivery is not None:
                result.rejected_lines = ingest.rejected_lines(
                    lines, result.delivery.failed_records, dataset
                )
                # sent means delivered: a record past the delivery's position was not
                reached = result.delivery.checkpoint
                result.undelivered = sum(
                    1
                    for shard, sequence in summary.positions
                    if int(sequence) > int(reached.get(shard) or 0)
                )
            return result
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
        glue = self.client("glue")
        name = self.names.crawler(dataset.name)
        result = jobs.run_crawler(glue, name, progress=progress, poll_seconds=self.poll(10))
        database, table = self.names.raw_database, self.names.table(dataset.name)
        partitions = sum(
            len(page["Partitions"])
            for page in glue.get_paginator("get_partitions").paginate(
                DatabaseName=database, TableName=table
            )
        )
        added = result.partitions_added
        return CrawlRun(
            crawler=result.crawler,
            state=result.last_crawl_status,
            seconds=round(result.duration, 1),
            partitions_added=added,
            partitions_known=partitions - added if added is not None else None,
            new_columns=tuple(
                jobs.crawl_new_columns(self.client("logs"), result.log_location, table)
            ),
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
            poll_seconds=self.poll(15),
            logs=self.client("logs"),
        )
        return JobRun(
            name=run.job_name,
            run_id=run.run_id,
            state=run.state,
            seconds=round(run.duration, 1),
            log=str(run.output_log_location),
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
        self,
        step: str,
        args=(),
        *,
        progress: Callable[[str], None] | None = None,
        start_cluster: bool = True,
    ) -> JobRun:
        """Add the step to the environment's cluster and wait for it; with no active
        cluster, start one from the deployed ML pipeline's cluster definition first (unless
        `start_cluster` is False: then NoCluster)."""
        from dataplatform.runtime.aws import emr

        result = emr.run_step(
            self.client("emr"),
            self.names,
            step,
            args,
            stepfunctions=self.client("stepfunctions") if start_cluster else None,
            progress=progress,
            poll_seconds=self.poll(15),
        )
        where = f"cluster {result.cluster_id}"
        if result.started_from:
            where += f", started for this step from {result.started_from}'s definition"
        return JobRun(
            name=result.name,
            run_id=result.step_id,
            state=result.state,
            seconds=round(result.duration, 1),
            log=result.log_uri,
            where=where,
        )

    def run_pipeline(
        self,
        *,
        as_of: Mapping[str, str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PipelineRun:
        """An execution of the deployed state machine with the cutoffs as its input,
        followed to its end; raises PipelineFailed (ExecutionFailed) naming the state that
        failed."""
        from dataplatform.runtime.aws import pipeline

        return pipeline.run_pipeline(
            self, as_of=as_of, progress=progress, poll_seconds=self.poll(15)
        ).run()

    def local_folder(self, name: str) -> Path:
        """A folder of this machine for what a command keeps (a training run's plots)."""
        return paths.state_dir() / name

    def serve(self, model: str) -> Served:
        """The model's endpoint as the deployer left it (an approval rolls it): its status,
        the package version it serves (the deployer names each endpoint configuration
        `<endpoint>-v<version>`) and the URL InvokeEndpoint answers at."""
        from dataplatform.runtime.model_registry import deployer_module, spec_model

        spec = spec_model(self.platform, model)
        if spec.serving is None:
            raise KeyError(f"{model} declares no serving: section in {spec.source_file}")
        sagemaker = self.client("sagemaker")
        name = self.names.endpoint(model)
        self.deployments_settled(model)
        try:
            described = self._settled_endpoint(sagemaker, name)
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
        if described["EndpointStatus"] == "InService":
            self.serving_started(spec)
        return Served(
            model,
            name,
            version,
            described["EndpointStatus"],
            f"{runtime}/endpoints/{name}/invocations",
        )

    def _settled_endpoint(self, sagemaker, name: str) -> dict:
        """DescribeEndpoint once the endpoint is no longer being created or updated (or
        after ENDPOINT_WAIT_S): `dp serve` right after an approval shows where it landed."""
        from dataplatform.runtime.model_registry import deployer_module

        busy = deployer_module().BUSY
        deadline = time.monotonic() + ENDPOINT_WAIT_S
        while True:
            described = sagemaker.describe_endpoint(EndpointName=name)
            if described["EndpointStatus"] not in busy or time.monotonic() > deadline:
                return described
            time.sleep(self.poll(30))

    def deployments_settled(self, model: str) -> None:
        """On AWS the approval's deployer runs on its own; the local platform first lets
        the deployer's invocation finish."""

    def serving_started(self, model) -> None:
        """What the target does once the model's endpoint is in service: on AWS nothing
        (the serving stack made the scorer's event source mapping); the local platform
        makes the mapping then, so the stream is not scored before a model answers."""

    def score(
        self,
        model: str,
        *,
        progress: Callable[[str], None] | None = None,
        from_start: bool = False,
        since: datetime | None = None,
    ) -> ScoringRun:
        """What the model's scorer Lambda did since `since` (default: the last quarter of an
        hour), read from its log lines and the scores table (runtime/scoring.py); where the
        target can, its event source mapping is first let catch up with the stream, and
        with `from_start` the stream is replayed (a new mapping from TRIM_HORIZON)."""
        from dataplatform.runtime import scoring
        from dataplatform.runtime.model_registry import spec_model

        spec = spec_model(self.platform, model)
        if spec.serving is None:
            raise KeyError(f"{model} declares no serving: section in {spec.source_file}")
        started = datetime.now(UTC)
        since = since or started - SCORING_WINDOW
        if from_start:
            self.replay_scoring(spec)
            since = min(since, started)
        function = self.names.scorer_function(model)
        if progress is not None:
            progress(f"waiting for {function} to catch up with {spec.serving.stream}")
        mappings = self.scoring_caught_up(function)
        if not mappings:
            raise errors.Refused(
                f"{model} is not scored: its scorer {function} has no event source mapping "
                f"(it starts once the model is served: approve a version, then `dp serve "
                f"{model}`)"
            )
        run = scoring.activity(self, model, since=since)
        if spec.serving.scores_dataset:
            delivered = self.delivered(self.dataset(spec.serving.scores_dataset))
            run.delivered = delivered.delivered_ok if delivered is not None else 0
        states = [
            f"{m.get('State')} ({m.get('LastProcessingResult', 'no batch yet')})" for m in mappings
        ]
        run.where = f"Lambda {function}: " + ("; ".join(states) or "no event source mapping")
        run.seconds = (datetime.now(UTC) - started).total_seconds()
        return run

    def scoring_caught_up(self, function: str) -> list[dict]:
        """The function's event source mappings. On AWS they run on their own: reported as
        they are (the local platform first lets them catch up with their streams)."""
        return self.client("lambda").list_event_source_mappings(FunctionName=function)[
            "EventSourceMappings"
        ]

    def replay_scoring(self, model) -> None:
        raise errors.Refused(
            "a replay on AWS is a new event source mapping at TRIM_HORIZON (or the "
            "stream's records put again): not done from dp, as the serving stack owns the "
            "mapping; scores and features are idempotent, so a replay changes nothing but "
            "the time it takes"
        )

    def emr_status(self) -> StepsStatus:
        """The environment's cluster, its instance groups and recent steps (NoCluster, a
        JobFailed, when none is active: it says that `dp emr run` starts one)."""
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
        """Athena SQL in the workgroup; with `persona`, signed with the persona role's
        credentials, so Lake Formation applies that role's grants."""
        return athena.run_query(
            sql,
            session=self.session_as(persona) if persona else self.session,
            workgroup=self.names.workgroup,
            database=self.names.curated_database,
            poll_seconds=self.poll(1.0),
        )

    def session_as(self, persona: str):
        """A session with the persona role's AssumeRole credentials (governance.py names the
        role; the caller must be allowed to assume it: spec/personas.yaml's principals)."""
        from botocore.exceptions import ClientError

        from dataplatform.governance import persona_role

        role = f"arn:aws:iam::{self.names.account}:role/{persona_role(self.names, persona)}"
        try:
            credentials = self.client("sts").assume_role(
                RoleArn=role, RoleSessionName=f"dp-{persona.replace('_', '-')}"
            )["Credentials"]
        except ClientError as exc:
            raise errors.Refused(
                f"--as {persona}: cannot assume {role} ({exc.response['Error'].get('Message')}): "
                "spec/personas.yaml's principals (or the dataplatform-persona tag) say who may"
            ) from None
        return self.session_with(credentials)

    def session_with(self, credentials: Mapping[str, Any]):
        """A session of this target signed with these (temporary) credentials."""
        import boto3

        return boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials.get("SessionToken"),
            region_name=self.settings.region,
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
