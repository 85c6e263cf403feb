"""The platform interface: what the `dp` command, the demo and the Python API call, the same
on both targets. `runtime/aws/platform.py` implements it on the AWS APIs, for a deployed
environment and, with the local endpoint's session and a few primitives of its own
(`runtime/local/platform.py`), for the embedded platform; a third target, or a fake one in
tests, is one more class. Callers hold a `Platform` and never ask which one it is. What differs between the targets is said by
a capability (`cheap_queries`), not by a name.

Every operation returns a shared result type (runtime/results.py) and fails with a shared
error (runtime/errors.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from dataplatform import spec
from dataplatform.naming import Names
from dataplatform.runtime.model_registry import TrainingRun
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

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_sts import STSClient

LineProgress = Callable[[str], None]  # a job's latest line
CountProgress = Callable[[int], None]  # records sent so far (added)


class Platform(ABC):
    platform: spec.Platform  # the spec it was made from
    settings: spec.Environment  # the environment's settings
    names: Names  # the environment's physical names
    # whether a query costs nothing (DuckDB) or is billed by the bytes it scans (Athena):
    # callers count rows after a step only where it is free
    cheap_queries: bool

    # The services the code calls through client(), typed by boto3-stubs (the extras in
    # pyproject.toml); a name not listed here gives an untyped client.
    @overload
    def client(self, service: Literal["ec2"]) -> EC2Client: ...
    @overload
    def client(self, service: Literal["emr"]) -> EMRClient: ...
    @overload
    def client(self, service: Literal["glue"]) -> GlueClient: ...
    @overload
    def client(self, service: Literal["iam"]) -> IAMClient: ...
    @overload
    def client(self, service: Literal["kinesis"]) -> KinesisClient: ...
    @overload
    def client(self, service: Literal["kms"]) -> KMSClient: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["sagemaker"]) -> SageMakerClient: ...
    @overload
    def client(self, service: Literal["sns"]) -> SNSClient: ...
    @overload
    def client(self, service: Literal["stepfunctions"]) -> SFNClient: ...
    @overload
    def client(self, service: Literal["sts"]) -> STSClient: ...
    @overload
    def client(self, service: str) -> Any: ...
    def client(self, service: str) -> Any:
        """A boto3 client of the target (moto's endpoint locally)."""
        return self.make_client(service)

    @abstractmethod
    def make_client(self, service: str) -> Any:
        """The target's own way to make a client: moto's endpoint, or the session."""

    def dataset(self, name: str) -> spec.Dataset:
        """The spec's dataset NAME; KeyError lists the known ones."""
        return self.platform.dataset(name)

    @abstractmethod
    def ingest(
        self,
        dataset: spec.Dataset,
        records: Iterable[dict] | None = None,
        *,
        file: Path | None = None,
        progress: CountProgress | None = None,
        from_line: int = 1,
    ) -> IngestResult:
        """Records or a file onto the dataset's stream, or a batch file into raw."""

    @abstractmethod
    def crawl(self, dataset: spec.Dataset, *, progress: LineProgress | None = None) -> CrawlRun:
        """The dataset's raw-zone crawler, to its end."""

    @abstractmethod
    def curate(
        self,
        dataset: spec.Dataset,
        *,
        dates: list[str] | None = None,
        progress: LineProgress = lambda line: None,
    ) -> JobRun:
        """The dataset's curate Glue job (incremental unless `dates`); its counts in
        `.report`."""

    @abstractmethod
    def emr_run(
        self,
        step: str,
        args=(),
        *,
        progress: LineProgress = lambda line: None,
        start_cluster: bool = True,
    ) -> JobRun:
        """An EMR step (emr_steps/) with its arguments, to its end; with no active cluster,
        one is started for it unless `start_cluster` is False."""

    def features(
        self, name: str, *, as_of: str | None = None, progress: LineProgress = lambda line: None
    ) -> JobRun:
        """The feature table spec/features/NAME.sql (the features EMR step)."""
        return self.emr_run(
            "features", {"name": name, **({"as-of": as_of} if as_of else {})}, progress=progress
        )

    @abstractmethod
    def emr_status(self) -> StepsStatus:
        """Where steps run and the latest ones."""

    @abstractmethod
    def query(self, sql: str, *, persona: str | None = None) -> QueryResult:
        """Athena SQL in the environment's workgroup (default database: curated); with a
        persona (spec/personas.yaml), as that persona's grants allow."""

    @abstractmethod
    def train(
        self, model: spec.Model | str, *, progress: LineProgress | None = None
    ) -> TrainingRun:
        """Train, gate and (if it passes) register the model."""

    def approve(self, model: str, version: int) -> str:
        """Approve a registered model version (AWS: its endpoint rolls to it); its ARN."""
        from dataplatform.runtime.model_registry import approve_package

        return approve_package(self.client("sagemaker"), self.names, model, version)

    def flagged(self, model: str, *, limit: int = 50) -> list[dict]:
        """The latest scores at or above the model's threshold (the scores table), newest
        first."""
        from dataplatform.online.scorer import flagged_scores

        return flagged_scores(self.client("dynamodb"), self.names.scores_table, model, limit=limit)

    @abstractmethod
    def serve(self, model: str) -> Served:
        """The model's endpoint for its latest Approved package (locally: deployed now on
        the local SageMaker with the deployer Lambda's code; on AWS: as the deployer left
        it after the approval)."""

    @abstractmethod
    def score(
        self,
        model: str,
        *,
        progress: LineProgress | None = None,
        from_start: bool = False,
        since: datetime | None = None,
    ) -> ScoringRun:
        """The stream scorer's work since `since`: its Lambda scores continuously (locally
        it is first let catch up with the stream); with `from_start` the stream is
        replayed where the target can."""

    @abstractmethod
    def run_pipeline(
        self, *, as_of: Mapping[str, str] | None = None, progress: LineProgress | None = None
    ) -> PipelineRun:
        """The ML pipeline, to its end, building the feature tables named in `as_of` with
        those cutoffs (the others with their SQL's default); PipelineFailed names the step
        that failed, ValueError a bad `as_of` (before anything runs)."""
