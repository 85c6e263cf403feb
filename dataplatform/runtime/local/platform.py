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
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from dataplatform.runtime import errors
from dataplatform.runtime.aws.platform import AwsPlatform
from dataplatform.runtime.local import firehose, server
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY, ServerInfo
from dataplatform.runtime.model_registry import spec_model
from dataplatform.runtime.results import PipelineRun, ScoringRun, Served
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
    def start_spark(self) -> None:
        """Ask the local platform to start its Spark driver ahead of the first job (`dp
        demo` does it while it ingests, on the other core); a job would start it anyway."""
        import json
        import urllib.request

        from dataplatform import layout

        request = urllib.request.Request(
            f"{self.info.endpoint}/_dp/spark/warm",
            data=json.dumps(
                {
                    "Region": self.settings.region,
                    "Library": f"s3://{self.names.artifacts_bucket}/{layout.LIBRARY_KEY}",
                }
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=600):
            pass

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
