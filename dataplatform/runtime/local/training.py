"""`dp train MODEL` on the local platform: SageMaker script-mode training, done here.

moto "completes" a training job without running anything (docs/moto.md), so the
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

The gate and the registration (step 5) are the target-neutral runtime/model_registry.py,
which the aws target (runtime/aws/training.py) uses too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections import deque
from pathlib import Path

from dataplatform import layout, training_job
from dataplatform.naming import Names
from dataplatform.paths import REPO_ROOT
from dataplatform.runtime.model_registry import (
    TrainingFailed,
    TrainingRun,
    lake_key_arn,
    metric_definitions,
    new_job_name,
    parse_metric_lines,
    register_if_passed,
    run_gate,
    spec_model,
)
from dataplatform.runtime.progress import Progress, say
from dataplatform.spec import Environment, Model

TRAIN_SCRIPT = REPO_ROOT / "training" / "train.py"
LOCAL_HOST = "algo-1"  # SageMaker's name for the first (here: only) training host


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
        if process.stdout is None:  # stdout=PIPE: Popen always opens it
            raise RuntimeError("train.py's subprocess has no stdout pipe")
        for raw in process.stdout:
            log.write(raw)
            line = raw.rstrip()
            lines.append(line)
            tail.append(line)
            say(progress, line)
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
    say(
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
    say(
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
    say(progress, f"{job_name}: uploaded {artifact_uri}")

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
