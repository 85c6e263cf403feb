"""`dp train MODEL` on the local platform: SageMaker script-mode training, done here.

moto "completes" a training job without running anything (../shared/FACTS.md), so the
data plane runs locally, as SageMaker would run it:

  1. the features table's Parquet objects (s3://<features>/<table>/, minus `_*`/`.*` files)
     are downloaded to the `train` channel, `<state_dir>/training/<job>/input/data/train/`
  2. `training/train.py` runs in a subprocess with SageMaker's SM_* environment and the
     model's hyperparameters as `--name value` (dataplatform.training_job.hyperparameters);
     its output is streamed to `progress` and to `<state_dir>/training/<job>/train.log`
  3. the model directory's files are packed as SageMaker packs them (files at the archive
     root) and uploaded to s3://<models>/<model>/<job>/output/model.tar.gz
  4. the job is recorded in moto with the same CreateTrainingJob request the state machine
     sends (dataplatform.training_job.training_job_request)
  5. the quality gate Lambda's own code (lambdas/quality_gate/gate.py) reads metrics.json
     from the uploaded model.tar.gz, and only when it passes is a model package created in
     the model's package group (PendingManualApproval), with the request the state machine
     sends (dataplatform.registry.model_package_request)

`register_if_passed` (steps 5) is shared with the aws target (runtime/aws/training.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplatform import layout, registry, training_job
from dataplatform.naming import Names
from dataplatform.paths import REPO_ROOT
from dataplatform.runtime import errors
from dataplatform.spec import Environment, Model

Progress = Callable[[str], None]

TRAIN_SCRIPT = REPO_ROOT / "training" / "train.py"
GATE_SOURCE = REPO_ROOT / "lambdas" / "quality_gate" / "gate.py"
METRICS_CONTRACT = REPO_ROOT / "training" / "metrics_contract.py"
LOCAL_HOST = "algo-1"  # SageMaker's name for the first (here: only) training host


class TrainingFailed(errors.JobFailed):
    """A training run that did not produce a model, or whose gate could not decide.
    `log_path` is the run's log (a local file, or a CloudWatch location for aws)."""

    def __init__(
        self, message: str, log_path: str | Path | None = None, *, job_name: str | None = None
    ):
        self.message = message
        self.log_path = str(log_path) if log_path else None
        self.job_name = job_name
        super().__init__(message + (f"\n  log: {log_path}" if log_path else ""))


@dataclass
class TrainingRun:
    model: str
    job_name: str
    metrics: dict  # metrics.json as train.py wrote it
    gate: dict  # gate.run_gate's answer: passed, checks, metrics (test)
    package_arn: str | None  # the registered model package; None when the gate failed
    artifact_uri: str  # s3://<models>/<model>/<job>/output/model.tar.gz
    model_dir: str | None  # where model.joblib, metrics.json and the plots are (local)
    seconds: float
    log_path: str | None = None  # local log file, or the CloudWatch location (aws)
    reported_metrics: dict = field(default_factory=dict)  # `name=value;` lines (metric definitions)

    @property
    def passed(self) -> bool:
        return bool(self.gate.get("passed"))


def _load_by_path(name: str, path: Path):
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def gate_module():
    """The quality gate Lambda's own module (lambdas/quality_gate/gate.py), imported by path."""
    return _load_by_path("dp_quality_gate", GATE_SOURCE)


def metric_definitions(problem: str) -> list[dict]:
    """The training job's MetricDefinitions (training/metrics_contract.py, by path: the
    `training` folder is not part of the installed package)."""
    return _load_by_path("dp_metrics_contract", METRICS_CONTRACT).metric_definitions(problem)


def parse_metric_lines(lines, definitions: list[dict]) -> dict[str, float]:
    """What SageMaker would extract from the log with the metric definitions (last value wins)."""
    found: dict[str, float] = {}
    patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
    for line in lines:
        for name, pattern in patterns:
            for match in pattern.finditer(line):
                found[name] = float(match.group(1))
    return found


def new_job_name(names: Names, model: str) -> str:
    return f"{names.training_job_prefix(model)}-{uuid.uuid4().hex[:8]}"


def _say(progress: Progress | None, line: str) -> None:
    if progress is not None:
        progress(line)


def spec_model(platform, model: Model | str) -> Model:
    if isinstance(model, Model):
        return model
    known = {m.name: m for m in platform.models}
    if model not in known:
        raise KeyError(
            f"unknown model {model!r}; known (spec/models/*.yaml): "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    return known[model]


def lake_key_arn(kms, names: Names) -> str:
    return kms.describe_key(KeyId=names.lake_key_alias)["KeyMetadata"]["Arn"]


# ----------------------------------------------------------------------------- gate and registry


def run_gate(model: Model, artifact_uri: str, s3) -> dict:
    """The gate Lambda's run_gate on the artifact; TrainingFailed when it cannot decide."""
    gate = gate_module()
    event = {
        "model": model.name,
        "model_artifacts_uri": artifact_uri,
        "quality_gate": dict(model.quality_gate),
    }
    try:
        return gate.run_gate(event, s3)
    except gate.GateError as exc:
        raise TrainingFailed(f"{model.name}: the quality gate cannot decide: {exc}") from exc


def ensure_package_group(sagemaker, names: Names, model: Model) -> str:
    group = names.model_package_group(model.name)
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except sagemaker.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "ValidationException",
            "ResourceNotFound",
        ):
            raise
        sagemaker.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=(model.description or model.name)[:1024],
        )
    return group


def register_if_passed(
    sagemaker,
    names: Names,
    model: Model,
    gate_result: dict,
    *,
    job_name: str,
    artifact_uri: str,
    image_uri: str,
    progress: Progress | None = None,
) -> str | None:
    """Create the model package (PendingManualApproval) only when the gate passed; its ARN."""
    if not gate_result.get("passed"):
        _say(progress, f"{model.name}: quality gate failed; not registered")
        return None
    ensure_package_group(sagemaker, names, model)
    request = registry.model_package_request(
        package_group=names.model_package_group(model.name),
        model_name=model.name,
        training_job=job_name,
        model_data_url=artifact_uri,
        image_uri=image_uri,
        test_metrics=gate_module().registry_metrics(gate_result["metrics"]),
    )
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    _say(progress, f"{model.name}: registered {arn} ({registry.APPROVAL_STATUS})")
    return arn


# ----------------------------------------------------------------------------- local training


def download_channel(s3, bucket: str, prefix: str, channel: Path) -> list[Path]:
    """Every data object below s3://bucket/prefix into `channel`, keeping the relative paths
    (Hive partition folders); `_*` and `.*` names (Spark's _SUCCESS, _temporary/) skipped."""
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            parts = [p for p in relative.split("/") if p]
            if not parts or any(p.startswith(("_", ".")) for p in parts) or relative.endswith("/"):
                continue
            target = channel.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            files.append(target)
    return files


def pack_model(model_dir: Path, archive: Path) -> Path:
    """model.tar.gz as SageMaker writes it: the model directory's contents at the root."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return archive


def sagemaker_environment(job_dir: Path, hyperparameters: dict[str, str]) -> dict[str, str]:
    """The SM_* variables the SageMaker training toolkit sets for script mode."""
    channel = job_dir / "input" / "data" / training_job.TRAIN_CHANNEL
    args = [part for name, value in hyperparameters.items() for part in (f"--{name}", value)]
    return {
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_CHANNELS": json.dumps([training_job.TRAIN_CHANNEL]),
        "SM_INPUT_DIR": str(job_dir / "input"),
        "SM_INPUT_DATA_DIR": str(job_dir / "input" / "data"),
        "SM_INPUT_CONFIG_DIR": str(job_dir / "input" / "config"),
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DIR": str(job_dir / "output"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_HPS": json.dumps(hyperparameters),
        "SM_USER_ARGS": json.dumps(args),
        "SM_CURRENT_HOST": LOCAL_HOST,
        "SM_HOSTS": json.dumps([LOCAL_HOST]),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_MODULE_NAME": "train",
        "SM_FRAMEWORK_MODULE": "sagemaker_sklearn_container.training:main",
    }


def _failure_line(tail) -> str:
    lines = [ln for ln in tail if ln.strip()]
    for line in reversed(lines):
        if line.startswith("training failed:"):
            return line
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else "no output"


def run_script(
    job_dir: Path,
    hyperparameters: dict[str, str],
    *,
    log_path: Path,
    progress: Progress | None = None,
) -> tuple[int, list[str], deque]:
    """train.py in a subprocess with SageMaker's environment: (exit code, stdout+stderr
    lines, last lines)."""
    for sub in ("model", "output/data", "input/config"):
        (job_dir / sub).mkdir(parents=True, exist_ok=True)
    (job_dir / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    env = {
        **os.environ,
        **sagemaker_environment(job_dir, hyperparameters),
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
    }
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        *[part for name, value in hyperparameters.items() for part in (f"--{name}", value)],
    ]
    lines: list[str] = []
    tail: deque = deque(maxlen=40)
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=job_dir,
            stdin=subprocess.DEVNULL,
        ) as process,
    ):
        for raw in process.stdout:
            log.write(raw)
            line = raw.rstrip()
            lines.append(line)
            tail.append(line)
            _say(progress, line)
        code = process.wait()
    return code, lines, tail


def train_model(
    local, model: Model | str, *, progress: Progress | None = None, job_name: str | None = None
) -> TrainingRun:
    """Train `model` (a spec Model or its name) on the local platform; see the module doc.
    Raises KeyError (unknown model), TrainingFailed (no data, train.py failed, the gate
    cannot decide). A failed gate is not an error: the run comes back with passed False
    and no package."""
    model = spec_model(local.platform, model)
    names: Names = local.names
    settings: Environment = local.settings
    started = time.perf_counter()
    job_name = job_name or new_job_name(names, model.name)
    job_dir = Path(local.state_dir) / "training" / job_name
    channel = job_dir / "input" / "data" / training_job.TRAIN_CHANNEL
    channel.mkdir(parents=True, exist_ok=True)
    log_path = job_dir / "train.log"

    prefix = layout.features_prefix(model.features_table)
    _say(
        progress,
        f"{job_name}: downloading s3://{names.features_bucket}/{prefix} to the train channel",
    )
    files = download_channel(local.s3, names.features_bucket, prefix, channel)
    if not files:
        raise TrainingFailed(
            f"{model.name}: the features table {model.features_table} has no data at "
            f"s3://{names.features_bucket}/{prefix}; build it first with "
            f"`dp features {model.features_table}`",
            job_name=job_name,
        )

    hps = training_job.hyperparameters(model)
    _say(
        progress,
        f"{job_name}: training/train.py ({model.problem}, {model.algorithm}) on "
        f"{len(files)} file(s)",
    )
    code, lines, tail = run_script(job_dir, hps, log_path=log_path, progress=progress)
    if code != 0:
        raise TrainingFailed(
            f"{model.name}: training job {job_name} failed (exit {code}): {_failure_line(tail)}",
            log_path,
            job_name=job_name,
        )
    model_dir = job_dir / "model"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    definitions = metric_definitions(model.problem)

    archive = pack_model(model_dir, job_dir / "output" / "model.tar.gz")
    key = layout.model_artifact_key(model.name, job_name)
    key_arn = lake_key_arn(local.client("kms"), names)
    local.s3.upload_file(
        str(archive),
        names.models_bucket,
        key,
        ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn},
    )
    artifact_uri = f"s3://{names.models_bucket}/{key}"
    _say(progress, f"{job_name}: uploaded {artifact_uri}")

    image = training_job.image_uri(settings)
    sagemaker = local.client("sagemaker")
    # Recorded once the model exists, so moto's (always) "Completed" is true. Without a VPC
    # in the local platform there are no subnets or security groups to name, so VpcConfig
    # is left out (moto would accept made-up ids, which would only mislead).
    request = training_job.training_job_request(
        model,
        names,
        settings,
        job_name=job_name,
        image_uri=image,
        role_arn=f"arn:aws:iam::{names.account}:role/{names.sagemaker_role}",
        subnet_ids=[],
        security_group_ids=[],
        key_arn=key_arn,
        metric_definitions=definitions,
    )
    request.pop("VpcConfig", None)
    sagemaker.create_training_job(**request)

    gate_result = run_gate(model, artifact_uri, local.s3)
    package_arn = register_if_passed(
        sagemaker,
        names,
        model,
        gate_result,
        job_name=job_name,
        artifact_uri=artifact_uri,
        image_uri=image,
        progress=progress,
    )
    return TrainingRun(
        model=model.name,
        job_name=job_name,
        metrics=metrics,
        gate=gate_result,
        package_arn=package_arn,
        artifact_uri=artifact_uri,
        model_dir=str(model_dir),
        seconds=round(time.perf_counter() - started, 1),
        log_path=str(log_path),
        reported_metrics=parse_metric_lines(lines, definitions),
    )


# ----------------------------------------------------------------------------- the registry


@dataclass
class PackageInfo:
    group: str
    version: int | None
    arn: str
    status: str
    created: Any
    training_job: str | None
    test_metrics: dict


@dataclass
class ModelRegistry:
    model: str
    group: str
    exists: bool
    packages: list[PackageInfo]


def _packages(sagemaker, group: str) -> list[PackageInfo]:
    """A group's packages, newest first, with the metadata the pipeline records."""
    packages = []
    for page in sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group
    ):
        for summary in page.get("ModelPackageSummaryList", []):
            detail = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            props = detail.get("CustomerMetadataProperties") or {}
            test_metrics = gate_module().parse_registry_metrics(props.get("test_metrics", ""))
            packages.append(
                PackageInfo(
                    group=group,
                    version=summary.get("ModelPackageVersion"),
                    arn=summary["ModelPackageArn"],
                    status=summary.get("ModelApprovalStatus", ""),
                    created=summary.get("CreationTime"),
                    training_job=props.get("training_job"),
                    test_metrics=test_metrics,
                )
            )
    packages.sort(key=lambda p: p.version or 0, reverse=True)
    return packages


def list_models(sagemaker, platform, names: Names) -> list[ModelRegistry]:
    """Every model of the spec with its package group and packages (newest first)."""
    result = []
    for m in platform.models:
        group = names.model_package_group(m.name)
        try:
            sagemaker.describe_model_package_group(ModelPackageGroupName=group)
            exists = True
        except sagemaker.exceptions.ClientError:
            result.append(ModelRegistry(m.name, group, False, []))
            continue
        packages = _packages(sagemaker, group)
        result.append(ModelRegistry(m.name, group, exists, packages))
    # groups of this environment that no spec model owns any more (a removed model)
    known = {r.group for r in result}
    for page in sagemaker.get_paginator("list_model_package_groups").paginate():
        for g in page.get("ModelPackageGroupSummaryList", []):
            name = g["ModelPackageGroupName"]
            if name.startswith(f"{names.prefix}-") and name not in known:
                result.append(
                    ModelRegistry(f"(not in spec) {name}", name, True, _packages(sagemaker, name))
                )
    return result
