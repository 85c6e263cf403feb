"""`--target local`: the AWS target's code (runtime/aws/platform.py) with the local
endpoint's session, so whatever `dp` does locally goes through the same AWS APIs any other
client calls, and the real work happens behind them (runtime/local/services/). What this
class adds are the primitives that must differ: the session and account, how fast to
poll, a flush of Firehose's buffer after an ingest (AWS delivers within its interval),
letting the deployer's invocation and the scorer's mapping catch up before reporting, a
replay as a new mapping, warming the Spark driver. `dp pipeline run` too is the AWS
target's: StartExecution of the deployed state machine, which the local Step Functions
executes (runtime/local/services/states.py)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from dataplatform.runtime.aws.platform import AwsPlatform
from dataplatform.runtime.local import firehose, server
from dataplatform.runtime.local.server import ServerInfo
from dataplatform.spec import Dataset, Environment, Platform

LOCAL_ACCOUNT = "123456789012"  # moto's account
ENDPOINT_TIMEOUT_S = 600  # a model's endpoint loads in seconds


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

    def local_folder(self, name: str) -> Path:
        return Path(self.state_dir) / name

    def deployments_settled(self, model: str) -> None:
        """The deployer Lambda an approval invoked (the serving stack's rule) has finished."""
        self._settle(self.names.deployer_function(model))

    def serving_started(self, model) -> None:
        from dataplatform.runtime.local.provision import scorer_mapping

        scorer_mapping(self.client, self.names, model)

    def _settle(self, function: str) -> list[dict]:
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.info.endpoint}/_dp/lambda/settle",
            data=json.dumps({"FunctionName": function, "Region": self.settings.region}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=3600) as response:
            return json.loads(response.read())["EventSourceMappings"]

    def scoring_caught_up(self, function: str) -> list[dict]:
        """The local Lambda service polls the function's mappings until they have caught
        up with their streams (on AWS they are only reported)."""
        return self._settle(function)

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
