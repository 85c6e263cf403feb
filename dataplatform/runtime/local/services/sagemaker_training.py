"""One SageMaker training job run as SageMaker's framework containers run script mode,
with the local platform's compute: what CreateTrainingJob starts (services/sagemaker.py).

In a job folder laid out as /opt/ml is on a training instance:
  1. Downloading: each InputDataConfig channel's S3Prefix into `input/data/<channel>/`,
     keeping the paths below the prefix; `_*` and `.*` names are skipped (Spark's
     _SUCCESS, and the part files of a write left in _temporary/ that train.py would
     otherwise read as data). A channel with no object fails the job as SageMaker does
     ("ClientError: No S3 objects found under S3 URL ...").
  2. Training: the source (`sagemaker_submit_directory`, a sourcedir.tar.gz on S3)
     extracted into `code/`, and `sagemaker_program` run there with the server's Python
     (the image is not run: its packages are the server's), SageMaker's SM_* environment,
     the job's Environment, and the other hyperparameters JSON-decoded and passed as the
     framework containers pass them (sorted, `--name value`). Its output (stdout and
     stderr) goes to `train.log` and to CloudWatch Logs, group /aws/sagemaker/TrainingJobs,
     stream `<job>/algo-1-<epoch>`, and the job's MetricDefinitions are matched on each
     line (the last value of each is in FinalMetricDataList). MaxRuntimeInSeconds is
     enforced; a stop (StopTrainingJob, or the runtime exceeded) sends SIGTERM, then
     SIGKILL after SageMaker's 120 s, and what the script saved is still uploaded.
  3. Uploading: the model folder packed as SageMaker packs /opt/ml/model (its files at the
     archive's root) to `<S3OutputPath>/<job>/output/model.tar.gz`, and output/data to
     output.tar.gz beside it, with OutputDataConfig's KmsKeyId.

A script that exits non-zero fails the job with its own last error line (the
`/opt/ml/output/failure` file the script wrote, else the last line that names an error).
Requirements files are not installed. The folder keeps train.log; the data, code and model
copies are removed once the job ends (its instance would be gone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY
from dataplatform.runtime.local.services.base import LogStream
from dataplatform.runtime.local.services.sagemaker_serving import LoadFailed, fetch_archive
from dataplatform.runtime.model_registry import parse_metric_lines

HOST = "algo-1"  # SageMaker's name for the first (here: only) training host
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STOP_GRACE_S = 120.0  # SageMaker's time between SIGTERM and SIGKILL on a stop
LOG_BATCH = 500  # log events per PutLogEvents
TAIL = 40  # the last lines kept to find the error in


class JobFailed(Exception):
    """The job fails with this FailureReason (SageMaker's form: `ClientError: ...` for what
    the request got wrong, `AlgorithmError: ...` for what the script did)."""


class JobStopped(Exception):
    """The job was stopped (`secondary`: Stopped or MaxRuntimeExceeded)."""

    def __init__(self, secondary: str):
        super().__init__(secondary)
        self.secondary = secondary


def decoded(hyperparameters: dict[str, str]) -> dict[str, Any]:
    """Hyperparameters as the framework containers read them: each value JSON-decoded,
    or the string itself when it is not JSON."""
    values: dict[str, Any] = {}
    for name, value in hyperparameters.items():
        try:
            values[name] = json.loads(value)
        except (TypeError, ValueError):
            values[name] = value
    return values


def _argument(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def command_line_arguments(user_hyperparameters: dict[str, Any]) -> list[str]:
    """The script's arguments as sagemaker-training's `to_cmd_args` makes them: sorted by
    name, `--name` (`-n` for a one-letter name) then the value as Python prints it."""
    args: list[str] = []
    for name in sorted(user_hyperparameters):
        args += [f"--{name}" if len(name) > 1 else f"-{name}"]
        args += [_argument(user_hyperparameters[name])]
    return args


def pack(folder: Path, archive: Path) -> Path:
    """A tar.gz of the folder's files at the archive's root, as SageMaker packs
    /opt/ml/model into model.tar.gz."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(folder).as_posix())
    return archive


def _s3_parts(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise JobFailed(f"ClientError: {uri!r} is not an S3 URI (s3://bucket/prefix)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


@dataclass
class Paths:
    """The job's /opt/ml."""

    root: Path

    def __post_init__(self) -> None:
        for folder in (self.config, self.data, self.code, self.model, self.output_data):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data(self) -> Path:
        return self.root / "input" / "data"

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def log(self) -> Path:
        return self.root / "train.log"


@dataclass
class Outcome:
    """What a run left for the job's description."""

    model_artifacts: str | None = None
    metrics: list[dict] = field(default_factory=list)
    training_started: float | None = None
    training_ended: float | None = None


def job_log(logs, job: str, started: float) -> LogStream:
    """The job's stream in SageMaker's group, `<job>/algo-1-<epoch>`."""
    return LogStream(logs, LOG_GROUP, f"{job}/{HOST}-{int(started)}", batch=LOG_BATCH)


class TrainingRun:
    """Runs one job (`request`: CreateTrainingJob's body) in `folder`; `phase(secondary,
    message)` reports each SecondaryStatus; `stopping()` says whether a stop was asked."""

    def __init__(
        self,
        request: dict,
        *,
        folder: Path,
        region: str,
        endpoint: str,
        s3,
        logs,
        phase: Callable[[str, str], None],
        stopping: Callable[[], bool],
        created: float,
    ):
        self.request, self.region, self.endpoint = request, region, endpoint
        self.s3, self.logs, self.phase, self.stopping = s3, logs, phase, stopping
        self.paths = Paths(folder)
        self.created = created
        self.name = request["TrainingJobName"]
        self.outcome = Outcome()
        self.process: subprocess.Popen | None = None

    # ------------------------------------------------------------------ the job's phases
    def run(self) -> Outcome:
        try:
            self.phase("Downloading", "Downloading input data")
            self.outcome.training_started = time.time()
            channels = self.download_channels()
            self.check_stop()
            self.phase("Training", "Training image download completed. Training in progress.")
            self.train(channels)
            self.phase("Uploading", "Uploading generated training model")
            self.upload()
        except JobStopped as stopped:
            self.outcome.training_ended = time.time()
            self.upload_if_any()
            raise stopped from None
        finally:
            if self.outcome.training_ended is None:
                self.outcome.training_ended = time.time()
        return self.outcome

    def check_stop(self) -> None:
        if self.stopping():
            raise JobStopped("Stopped")

    def download_channels(self) -> dict[str, Path]:
        channels: dict[str, Path] = {}
        for channel in self.request.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if not source:
                raise JobFailed(
                    f"ClientError: channel {name}: only S3DataSource channels run locally"
                )
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise JobFailed(
                    f"ClientError: channel {name}: S3DataType {source['S3DataType']} is not "
                    "run locally; use S3Prefix"
                )
            target = self.paths.data / name
            target.mkdir(parents=True, exist_ok=True)
            if not self.download_prefix(source["S3Uri"], target):
                bucket, _ = _s3_parts(source["S3Uri"])
                raise JobFailed(
                    f'ClientError: No S3 objects found under S3 URL "{source["S3Uri"]}" given '
                    f"in input data source. Please ensure that the bucket exists in the "
                    f"selected region ({self.region}), that objects exist under that S3 "
                    f'prefix, and that the role "{self.request.get("RoleArn")}" has '
                    f'"s3:ListBucket" permissions on bucket "{bucket}".'
                )
            channels[name] = target
        return channels

    def download_prefix(self, uri: str, target: Path) -> int:
        bucket, prefix = _s3_parts(uri)
        count = 0
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    relative = item["Key"][len(prefix) :]
                    parts = [p for p in relative.split("/") if p]
                    if not parts or relative.endswith("/"):
                        continue
                    if any(p.startswith(("_", ".")) for p in parts):
                        continue
                    path = target.joinpath(*parts)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self.s3.download_file(bucket, item["Key"], str(path))
                    count += 1
        except self.s3.exceptions.NoSuchBucket:
            return 0
        return count

    def user_hyperparameters(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in decoded(self.request.get("HyperParameters") or {}).items()
            if not k.startswith("sagemaker_")
        }

    def environment(self, channels: dict[str, Path], program: str) -> dict[str, str]:
        """What the sagemaker-training toolkit sets for script mode, and the job's own
        Environment; AWS clients in the script reach the local platform."""
        paths = self.paths
        hps = self.user_hyperparameters()
        framework = decoded(self.request.get("HyperParameters") or {})
        resource = self.request.get("ResourceConfig") or {}
        instance_type = str(resource.get("InstanceType", "local"))
        resource_config = {
            "current_host": HOST,
            "current_instance_type": instance_type,
            "hosts": [HOST],
            "network_interface_name": "eth0",
        }
        data_config = {
            c["ChannelName"]: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
            for c in self.request.get("InputDataConfig") or []
        }
        env = {
            "SM_MODEL_DIR": str(paths.model),
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(hps),
            "SM_USER_ARGS": json.dumps(command_line_arguments(hps)),
            "SM_INPUT_DIR": str(paths.root / "input"),
            "SM_INPUT_DATA_DIR": str(paths.data),
            "SM_INPUT_CONFIG_DIR": str(paths.config),
            "SM_OUTPUT_DIR": str(paths.output),
            "SM_OUTPUT_DATA_DIR": str(paths.output_data),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(paths.output / "intermediate"),
            "SM_CURRENT_HOST": HOST,
            "SM_CURRENT_INSTANCE_TYPE": instance_type,
            "SM_HOSTS": json.dumps([HOST]),
            "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_NUM_GPUS": "0",
            "SM_MODULE_NAME": Path(program).stem,
            "SM_USER_ENTRY_POINT": program,
            "SM_MODULE_DIR": str(framework.get("sagemaker_submit_directory", "")),
            "SM_LOG_LEVEL": str(framework.get("sagemaker_container_log_level", 20)),
            "SM_FRAMEWORK_MODULE": "sagemaker_sklearn_container.training:main",
            "SM_RESOURCE_CONFIG": json.dumps(resource_config),
            "SM_INPUT_DATA_CONFIG": json.dumps(data_config),
            "SM_TRAINING_ENV": json.dumps(
                {
                    "job_name": self.name,
                    "hyperparameters": hps,
                    "channel_input_dirs": {k: str(v) for k, v in channels.items()},
                    "model_dir": str(paths.model),
                    "output_data_dir": str(paths.output_data),
                    "current_host": HOST,
                    "hosts": [HOST],
                    "user_entry_point": program,
                }
            ),
        }
        for name, folder in channels.items():
            env[f"SM_CHANNEL_{name.upper()}"] = str(folder)
        for name, value in hps.items():
            env[f"SM_HP_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        (paths.config / "hyperparameters.json").write_text(
            json.dumps(self.request.get("HyperParameters") or {})
        )
        (paths.config / "resourceconfig.json").write_text(json.dumps(resource_config))
        (paths.config / "inputdataconfig.json").write_text(json.dumps(data_config))
        return {
            **os.environ,
            **env,
            **(self.request.get("Environment") or {}),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "TRAINING_JOB_NAME": self.name,
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
        }

    def source(self) -> str:
        """The program, with the source extracted into code/."""
        framework = decoded(self.request.get("HyperParameters") or {})
        program = framework.get("sagemaker_program")
        submitted = framework.get("sagemaker_submit_directory")
        if not program or not submitted:
            raise JobFailed(
                "AlgorithmError: the job has no sagemaker_program and "
                "sagemaker_submit_directory hyperparameters: the local platform runs "
                "script mode only (the image is not run)"
            )
        try:
            fetch_archive(self.s3, str(submitted), self.paths.code, "source")
        except LoadFailed as exc:
            raise JobFailed(f"ClientError: {exc}") from None
        if not (self.paths.code / str(program)).is_file():
            raise JobFailed(f"AlgorithmError: ExecuteUserScriptError: no {program} in {submitted}")
        return str(program)

    def train(self, channels: dict[str, Path]) -> None:
        program = self.source()
        env = self.environment(channels, program)
        definitions = (self.request.get("AlgorithmSpecification") or {}).get(
            "MetricDefinitions"
        ) or []
        last: dict[str, dict] = {}
        tail: deque[str] = deque(maxlen=TAIL)
        limit = (self.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        started = self.outcome.training_started or time.time()
        log = job_log(self.logs, self.name, started)
        deadline = None if not limit else started + float(limit)
        command = [sys.executable, program, *command_line_arguments(self.user_hyperparameters())]
        with self.paths.log.open("w") as file:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=self.paths.code,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a stop ends all of it
            )
            reader = threading.Thread(
                target=self._read,
                args=(self.process, file, log, tail, definitions, last),
                daemon=True,
            )
            reader.start()
            stopped = None
            while self.process.poll() is None:
                if self.stopping():
                    stopped = "Stopped"
                elif deadline is not None and time.time() >= deadline:
                    stopped = "MaxRuntimeExceeded"
                if stopped:
                    self.phase("Stopping", "Stopping the training job")
                    self._end_process()
                    break
                log.flush_if_due()
                time.sleep(0.1)
            reader.join(timeout=STOP_GRACE_S)
            code = self.process.wait()
        log.flush()
        self.outcome.training_ended = time.time()
        self.outcome.metrics = [last[d["Name"]] for d in definitions if d["Name"] in last]
        if stopped:
            raise JobStopped(stopped)
        if code != 0:
            raise JobFailed(
                f"AlgorithmError: ExecuteUserScriptError: ExitCode {code} ErrorMessage "
                f'"{self._error_line(tail)}" Command "{" ".join(["python", program])}"'
            )

    def _read(self, process, file, log: LogStream, tail, definitions, last) -> None:
        for raw in process.stdout:
            file.write(raw)
            file.flush()
            line = raw.rstrip("\n")
            tail.append(line)
            log.add(line)
            stamp = time.time()
            for name, value in parse_metric_lines([line], definitions).items():
                last[name] = {"MetricName": name, "Value": value, "Timestamp": stamp}

    def _end_process(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """At once (the server resets or stops)."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _error_line(self, tail) -> str:
        failure = self.paths.output / "failure"
        if failure.is_file():
            text = " ".join(failure.read_text().split())
            if text:
                return text
        lines = [line for line in tail if line.strip()]
        for line in reversed(lines):
            if "Error" in line or "Exception" in line or "failed" in line:
                return line.strip()
        return lines[-1].strip() if lines else "no output"

    # ------------------------------------------------------------------ uploading
    def _output_prefix(self) -> tuple[str, str]:
        output = self.request["OutputDataConfig"]
        bucket, prefix = _s3_parts(output["S3OutputPath"])
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        return bucket, f"{prefix}{self.name}/output/"

    def _put(self, archive: Path, key_name: str) -> str:
        bucket, prefix = self._output_prefix()
        extra: dict[str, str] = {}
        key_id = self.request["OutputDataConfig"].get("KmsKeyId")
        if key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
        try:
            self.s3.upload_file(str(archive), bucket, prefix + key_name, ExtraArgs=extra)
        except Exception as exc:  # noqa: BLE001 - the bucket is the request's
            raise JobFailed(
                f"ClientError: could not upload to s3://{bucket}/{prefix}{key_name}: {exc}"
            ) from None
        return f"s3://{bucket}/{prefix}{key_name}"

    def upload(self) -> None:
        scratch = self.paths.root / "upload"
        scratch.mkdir(exist_ok=True)
        self.outcome.model_artifacts = self._put(
            pack(self.paths.model, scratch / "model.tar.gz"), "model.tar.gz"
        )
        if any(p.is_file() for p in self.paths.output_data.rglob("*")):
            self._put(pack(self.paths.output_data, scratch / "output.tar.gz"), "output.tar.gz")

    def upload_if_any(self) -> None:
        """After a stop: what the script saved in its model folder, as SageMaker keeps it."""
        if any(p.is_file() for p in self.paths.model.rglob("*")):
            try:
                self.upload()
            except JobFailed:
                pass

    def clean_up(self) -> None:
        import shutil

        for folder in (
            self.paths.root / "input",
            self.paths.code,
            self.paths.model,
            self.paths.root / "upload",
            self.paths.output,
        ):
            shutil.rmtree(folder, ignore_errors=True)
