"""Where things live inside the lake's buckets (the key layout), for every zone.

The Firehose prefix templates are defined here once: the StreamingStack gives them
to Firehose, and the local platform renders them with `render_firehose_prefix` the
way Firehose does, so raw data lands under the same keys in both places.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# --- raw zone: s3://<raw>/<dataset>/dt=YYYY-MM-DD/hour=HH/...


def raw_prefix(dataset: str) -> str:
    return f"{dataset}/"


def raw_partition_prefix(dataset: str, dt: str, hour: str) -> str:
    return f"{dataset}/dt={dt}/hour={hour}/"


def batch_upload_key(dataset: str, file_name: str, at: datetime) -> str:
    """Where a batch file uploaded at `at` (UTC) lands in raw: the hour's partition."""
    at = at.astimezone(UTC)
    return raw_partition_prefix(dataset, at.strftime("%Y-%m-%d"), at.strftime("%H")) + file_name


def firehose_prefix(dataset: str) -> str:
    """Firehose S3 prefix: dt and hour are the partition keys the transform Lambda returns."""
    return f"{dataset}/dt=!{{partitionKeyFromLambda:dt}}/hour=!{{partitionKeyFromLambda:hour}}/"


def firehose_error_prefix(dataset: str) -> str:
    """Firehose error prefix: records the Lambda marks ProcessingFailed (or that fail delivery)."""
    return (
        f"_errors/{dataset}/!{{firehose:error-output-type}}/"
        f"dt=!{{timestamp:yyyy-MM-dd}}/hour=!{{timestamp:HH}}/"
    )


# Firehose's objects: gzip JSON lines, named with this extension.
RAW_STREAM_FILE_EXTENSION = ".json.gz"


def errors_prefix(dataset: str) -> str:
    return f"_errors/{dataset}/"


# Firehose's `!{timestamp:...}` uses Java DateTimeFormatter patterns; these are the ones
# the platform's templates use.
_JAVA_TO_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_NAMESPACE = re.compile(r"!\{(?P<ns>[a-zA-Z-]+):(?P<arg>[^}]*)\}")


def render_firehose_prefix(
    template: str,
    *,
    partition_keys: dict[str, str] | None = None,
    arrival: datetime | None = None,
    error_output_type: str | None = None,
) -> str:
    """Render a Firehose prefix template as Firehose does at delivery time.

    `arrival` is the approximate arrival time used by `!{timestamp:...}`; a naive datetime
    is taken as UTC, an aware one is converted to UTC.
    """
    arrival = arrival or datetime.now(UTC)
    arrival = arrival.replace(tzinfo=UTC) if arrival.tzinfo is None else arrival.astimezone(UTC)
    partition_keys = partition_keys or {}

    def substitute(match: re.Match) -> str:
        namespace, arg = match.group("ns"), match.group("arg")
        if namespace == "partitionKeyFromLambda":
            if arg not in partition_keys:
                raise KeyError(
                    f"the prefix needs partition key {arg!r} from the transform "
                    f"Lambda; it returned {sorted(partition_keys)}"
                )
            return str(partition_keys[arg])
        if namespace == "timestamp":
            pattern = arg
            for java, py in _JAVA_TO_STRFTIME.items():
                pattern = pattern.replace(java, py)
            return arrival.strftime(pattern)
        if namespace == "firehose" and arg == "error-output-type":
            if error_output_type is None:
                raise KeyError("an error prefix needs error_output_type (processing-failed, ...)")
            return error_output_type
        raise ValueError(f"unsupported Firehose prefix expression {match.group(0)!r}")

    return _NAMESPACE.sub(substitute, template)


# --- curated zone: s3://<curated>/<dataset>/dt=YYYY-MM-DD/


def curated_prefix(dataset: str) -> str:
    return f"{dataset}/"


def quarantine_prefix(dataset: str) -> str:
    return f"_quarantine/{dataset}/"


def curate_state_key(dataset: str) -> str:
    """The curate job's incremental watermark, kept next to the curated data."""
    return f"_state/curate/{dataset}.json"


# --- features zone: s3://<features>/<table>/


def features_prefix(table: str) -> str:
    return f"{table}/"


# --- artifacts bucket: job code and run reports

CODE_PREFIX = "code/"
LIBRARY_KEY = "code/lib/dataplatform.zip"


def job_script_key(folder: str, script: str) -> str:
    """e.g. job_script_key("glue_jobs", "curate.py") -> code/glue_jobs/curate.py"""
    return f"{CODE_PREFIX}{folder}/{script}"


# EMR: cluster and step logs, and the TLS certificates for in-transit encryption (a zip
# of PEM files the operator uploads; EMR reads it when a cluster starts).
EMR_LOG_PREFIX = "logs/emr/"
EMR_TLS_CERTIFICATES_KEY = "emr/tls/certificates.zip"
EMR_STEPS = ("features", "frequent_itemsets")


def emr_step_key(step: str) -> str:
    """e.g. emr_step_key("features") -> code/emr_steps/features.py"""
    return job_script_key("emr_steps", f"{step}.py")


def curate_report_prefix(dataset: str) -> str:
    return f"reports/curate/{dataset}/"


# --- models bucket: s3://<models>/<model>/<training job>/output/model.tar.gz (SageMaker's)


def model_prefix(model: str) -> str:
    return f"{model}/"


def model_checkpoint_prefix(model: str) -> str:
    """Managed spot training resumes from here."""
    return f"_checkpoints/{model}/"


def model_artifact_key(model: str, job: str) -> str:
    return f"{model_prefix(model)}{job}/output/model.tar.gz"


def data_capture_prefix(model: str) -> str:
    """Where the model's endpoint captures its requests and responses (instance endpoints:
    SageMaker Serverless Inference has no data capture)."""
    return f"data-capture/{model}/"


# The training script's source, as SageMaker script mode wants it (a tar.gz of training/).
TRAINING_SOURCE_KEY = "code/training/sourcedir.tar.gz"


# --- athena-results bucket

ATHENA_RESULTS_PREFIX = "results/"
