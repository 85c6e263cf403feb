"""What a platform's operations return, the same on both targets (runtime/local and
runtime/aws), so that callers (the `dp` command, the Python API) never ask which target
they are on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dataplatform.runtime.errors import JobFailed

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class IngestResult:
    """What an ingest did: records put on the stream (or uploaded), and, where the platform
    delivers them itself (local Firehose), what the delivery wrote."""

    dataset: str
    records: int
    sent: int
    retried: int
    failed: int
    delivery: Any = None  # the Firehose delivery's summary (local); None on AWS and for batch
    uploaded_key: str | None = None  # for batch datasets
    # lines of the file the Firehose transform sent to the error prefix: (line, reason)
    rejected_lines: list[tuple[int, str]] = field(default_factory=list)
    # records sent that no delivery has passed (this command's or a concurrent one's)
    undelivered: int = 0


@dataclass(frozen=True)
class JobRun:
    """A finished Glue job run or EMR step."""

    name: str  # the job's name, or the step's
    run_id: str  # Glue's JobRunId, the EMR step id, or the local run's id
    state: str  # SUCCEEDED / COMPLETED, or the failed state
    seconds: float  # how long it took, as waited for
    log: str  # where its log is: a local file, or the CloudWatch / S3 location
    where: str  # "local Spark", "Glue", or "cluster j-..."
    report: dict = field(default_factory=dict)  # a curate run's counts (rows_in, ...)

    def line(self) -> str:
        return f"{self.state} in {self.seconds:.1f} s ({self.where}, run {self.run_id}, log {self.log})"


@dataclass(frozen=True)
class CrawlRun:
    """A finished crawl of a dataset's raw zone."""

    crawler: str
    state: str  # the last crawl's status (SUCCEEDED)
    seconds: float
    partitions_added: int | None  # None when the service does not say
    partitions_known: int | None = None  # already registered before this crawl
    files: int | None = None
    new_columns: tuple[str, ...] = ()  # seen in the data, logged, not applied
    added: tuple[tuple[str, ...], ...] = ()  # the new partitions' values, where known

    def line(self) -> str:
        parts = [
            f"crawl {self.state} in {self.seconds:.0f} s",
            f"{'?' if self.partitions_added is None else self.partitions_added} new raw "
            "partition(s)",
        ]
        if self.partitions_known is not None:
            parts.append(f"{self.partitions_known} known")
        if self.files is not None:
            parts.append(f"{self.files} file(s)")
        line = ", ".join(parts)
        if self.new_columns:
            line += f"; new columns logged (not applied): {', '.join(self.new_columns)}"
        return line


@dataclass(frozen=True)
class StepsStatus:
    """Where EMR steps run and the latest ones: the long-running cluster with its instance
    groups on AWS; local Spark (no cluster, no groups) locally."""

    where: str  # one line: the cluster, its state, release and logs; or local Spark
    groups: tuple[dict, ...]  # {group, role, market, type, requested, running, state}
    steps: tuple[dict, ...]  # {step, name, state, created, ended, detail}, newest first
    no_steps: str  # what to say (and suggest) when there are none


@dataclass(frozen=True)
class QueryResult:
    """A finished query, the same from Athena and from the local Athena (DuckDB): its
    answer (`frame`, a pandas DataFrame; `columns` and `rows` as the engine gave them) and
    what it cost."""

    columns: list[str]
    rows: list[tuple]
    bytes_scanned: int | None  # what Athena bills; None when it does not say
    query_id: str | None
    output_location: str | None  # s3:// of the result CSV
    # The tables read and, for each, the S3 objects read after pruning (where known: local)
    files_read: dict[str, list[str]] = field(default_factory=dict)
    engine_execution_ms: int | None = None
    # the answer as the engine built it (Athena: awswrangler's typed frame), else from rows
    answer: Any = field(default=None, repr=False, compare=False)

    @property
    def frame(self) -> pd.DataFrame:
        if self.answer is not None:
            return self.answer
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, **statistics: Any) -> QueryResult:
        return cls(
            columns=[str(c) for c in frame.columns],
            rows=list(frame.itertuples(index=False, name=None)),
            answer=frame,
            **statistics,
        )


@dataclass
class PipelineStep:
    """One state of an ML pipeline run, as it ended."""

    name: str  # the state machine's state name, e.g. CurateTelecomEvents
    state: str  # SUCCEEDED | FAILED
    seconds: float
    detail: str = ""


@dataclass
class PipelineRun:
    """An ML pipeline run: an execution of the deployed state machine (on AWS, or on the
    local platform's Step Functions). Filled in as the run goes, so that a
    failure carries what happened up to it."""

    execution: str  # the execution's ARN, or the local run's id
    steps: list[PipelineStep] = field(default_factory=list)
    trainings: dict = field(default_factory=dict)  # model -> its training run, where known
    succeeded: bool = False
    status: str = "RUNNING"  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    failed_step: str | None = None
    error: str | None = None
    cause: str | None = None
    topic_arn: str | None = None  # where the outcome was published, where known
    notification_id: str | None = None
    console_url: str | None = None  # the execution in the Step Functions console (AWS)
    seconds: float = 0.0

    def line(self) -> str:
        published = f"; notified {self.topic_arn}" if self.topic_arn else ""
        return f"pipeline {self.execution} {self.status} in {self.seconds:.0f} s{published}"


class PipelineFailed(JobFailed):
    """A pipeline run that ended in failure; `run` says where (failed_step, error, cause)."""

    def __init__(self, run: PipelineRun, message: str | None = None):
        self.run = run
        super().__init__(
            message
            or f"ML pipeline {run.execution} failed at step {run.failed_step}: "
            f"{run.error}: {run.cause}"
        )


@dataclass(frozen=True)
class Served:
    """A model's endpoint: what it serves and where."""

    model: str
    endpoint: str
    version: int | None  # the package version served; None when nothing is approved yet
    status: str  # InService, Creating, Updating, Failed, ... or NotDeployed
    where: str  # the URL InvokeEndpoint answers at (or what to do when not deployed)


@dataclass
class ScoringRun:
    """What a scoring pass did (locally), or what the scorer did lately (AWS)."""

    model: str
    records: int = 0
    scored: int = 0
    flagged: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)  # every score item written
    left_out: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # batches given up on: shard:sequence, error
    errors: list[str] = field(default_factory=list)  # batch errors the mapping retried
    seconds: float = 0.0
    # (put on the stream, score written) per scored record: end-to-end latency
    latencies: list[float] = field(default_factory=list)
    where: str = ""  # AWS: the scorer's event source mapping and its state
    delivered: int = 0  # scores delivered to the lake's raw zone by this pass (local)
