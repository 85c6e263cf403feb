"""The quality gate and the model registry, the same for both targets: what a training
run is, the gate Lambda's own code run on a model artifact, the model package created
only when the gate passed (with the request the state machine sends,
dataplatform/registry.py), the registry as `dp models` lists it, and the endpoint
deployer Lambda's code that an approval runs. SageMaker training (runtime/aws/training.py,
on AWS or on the local platform's SageMaker) ends here.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplatform import registry, training_job
from dataplatform.naming import Names
from dataplatform.paths import REPO_ROOT
from dataplatform.runtime import errors
from dataplatform.runtime.progress import Progress, say
from dataplatform.spec import Model

GATE_SOURCE = REPO_ROOT / "lambdas" / "quality_gate" / "gate.py"
DEPLOYER_SOURCE = REPO_ROOT / "lambdas" / "endpoint_deployer" / "handler.py"
METRICS_CONTRACT = REPO_ROOT / "training" / "metrics_contract.py"


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
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {name} from {path}: not a Python source file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def gate_module():
    """The quality gate Lambda's own module (lambdas/quality_gate/gate.py), imported by path."""
    return _load_by_path("dp_quality_gate", GATE_SOURCE)


def deployer_module():
    """The endpoint deployer Lambda's own module (lambdas/endpoint_deployer/handler.py)."""
    return _load_by_path("dp_endpoint_deployer", DEPLOYER_SOURCE)


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
        say(progress, f"{model.name}: quality gate failed; not registered")
        return None
    ensure_package_group(sagemaker, names, model)
    request = registry.model_package_request(
        package_group=names.model_package_group(model.name),
        model_name=model.name,
        training_job=job_name,
        model_data_url=artifact_uri,
        image_uri=image_uri,
        test_metrics=gate_module().registry_metrics(gate_result["metrics"]),
        inference_source=training_job.source_uri(names),
    )
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    say(progress, f"{model.name}: registered {arn} ({registry.APPROVAL_STATUS})")
    return arn


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


def approve_package(sagemaker, names: Names, model: str, version: int) -> str:
    """Approve version VERSION of the model's package group (on AWS, the approval rolls the
    model's endpoint to it); its ARN. KeyError names the versions there are."""
    group = names.model_package_group(model)
    packages = _packages(sagemaker, group)
    chosen = next((p for p in packages if p.version == version), None)
    if chosen is None:
        raise KeyError(
            f"{group} has no version {version}; its versions: "
            f"{', '.join(str(p.version) for p in packages) or 'none (train the model first)'}"
        )
    sagemaker.update_model_package(ModelPackageArn=chosen.arn, ModelApprovalStatus="Approved")
    return chosen.arn


def latest_approved(sagemaker, names: Names, model: str) -> PackageInfo | None:
    """The newest Approved package of the model, or None."""
    return next(
        (
            p
            for p in _packages(sagemaker, names.model_package_group(model))
            if p.status == "Approved"
        ),
        None,
    )
