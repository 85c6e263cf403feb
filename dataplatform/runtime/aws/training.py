"""`dp train MODEL --target aws`: a SageMaker training job of a deployed environment,
followed to its end, then gated and registered like the local run (and like the state
machine: same request, same gate code, same CreateModelPackage parameters).

What the request needs is found from the deployed stacks by name (naming.py), nothing is
configured by hand:
  - execution role: IAM role `names.sagemaker_role` (MlStack)
  - key: the lake key, by its alias `names.lake_key_alias` (StorageStack)
  - subnets: the private subnets of the VPC tagged Name=`names.vpc` (NetworkStack; CDK tags
    PRIVATE_WITH_EGRESS subnets `aws-cdk:subnet-type=Private`)
  - security group: in that VPC, the one CloudFormation named after the MlStack's
    training security group (`names.training_security_group`)
  - image: the scikit-learn container for the region (sagemaker SDK, offline)
The source (training/) is what the stacks deployed to the artifacts bucket.

Polling reports SecondaryStatus transitions through `progress`; `sleep` and `clock` are
injectable so tests run instantly. A job that ends Failed or Stopped raises TrainingFailed
with SageMaker's FailureReason and the CloudWatch Logs location of its log.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from dataplatform import training_job
from dataplatform.naming import Names
from dataplatform.runtime.model_registry import (
    TrainingFailed,
    TrainingRun,
    lake_key_arn,
    metric_definitions,
    new_job_name,
    register_if_passed,
    run_gate,
    spec_model,
)
from dataplatform.runtime.progress import Progress, say
from dataplatform.spec import Model

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
PRIVATE_SUBNET_TAG = ("aws-cdk:subnet-type", "Private")
# SageMaker's FailureReason for a channel whose prefix holds no object
NO_INPUT = "No S3 objects found under S3 URL"


class MissingResource(TrainingFailed):
    """Something the training job needs is not deployed."""


def log_location(job_name: str) -> str:
    return f"CloudWatch Logs group {TRAINING_LOG_GROUP}, streams {job_name}/algo-*"


def find_network(ec2, names: Names) -> tuple[list[str], list[str]]:
    """(private subnet ids, [training security group id]) of the deployed network."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [names.vpc]}])["Vpcs"]
    if not vpcs:
        raise MissingResource(
            f"no VPC tagged Name={names.vpc}: deploy the network stack "
            f"({names.stack('network')}) with `make deploy ENV={names.env}`"
        )
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": f"tag:{PRIVATE_SUBNET_TAG[0]}", "Values": [PRIVATE_SUBNET_TAG[1]]},
        ]
    )["Subnets"]
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": [names.training_security_group]},
        ]
    )["SecurityGroups"]
    if not subnets:
        raise MissingResource(
            f"VPC {vpc_id} ({names.vpc}) has no private subnets tagged "
            f"{PRIVATE_SUBNET_TAG[0]}={PRIVATE_SUBNET_TAG[1]}"
        )
    if not groups:
        raise MissingResource(
            f"no training security group in VPC {vpc_id}: deploy the ML stack ({names.stack('ml')})"
        )
    return sorted(s["SubnetId"] for s in subnets), [groups[0]["GroupId"]]


def training_request(aws, model: Model, job_name: str) -> dict:
    """The CreateTrainingJob request, with the deployed role, key, subnets and group."""
    names: Names = aws.names
    try:
        role_arn = aws.client("iam").get_role(RoleName=names.sagemaker_role)["Role"]["Arn"]
    except Exception as exc:  # NoSuchEntity, AccessDenied
        raise MissingResource(
            f"cannot read the SageMaker execution role {names.sagemaker_role}"
            f" ({exc}); deploy the ML stack ({names.stack('ml')})"
        ) from exc
    subnets, groups = find_network(aws.client("ec2"), names)
    return training_job.training_job_request(
        model,
        names,
        aws.settings,
        job_name=job_name,
        image_uri=training_job.image_uri(aws.settings),
        role_arn=role_arn,
        subnet_ids=subnets,
        security_group_ids=groups,
        key_arn=lake_key_arn(aws.client("kms"), names),
        metric_definitions=metric_definitions(model.problem),
    )


def wait_for_job(
    sagemaker,
    job_name: str,
    *,
    poll_seconds: float = 30,
    timeout_seconds: float = 24 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> dict:
    """DescribeTrainingJob until the job ends; each SecondaryStatus change is reported once
    (with SageMaker's StatusMessage). Returns the last description when Completed."""
    started = clock()
    last_secondary = None
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=job_name)
        status = job.get("TrainingJobStatus", "")
        secondary = job.get("SecondaryStatus", "")
        if secondary != last_secondary:
            transitions = job.get("SecondaryStatusTransitions") or []
            message = transitions[-1].get("StatusMessage", "") if transitions else ""
            say(progress, f"{job_name}: {secondary}" + (f" - {message}" if message else ""))
            last_secondary = secondary
        if status in TERMINAL:
            break
        elapsed = clock() - started
        if elapsed >= timeout_seconds:
            raise TrainingFailed(
                f"training job {job_name} still {status} ({secondary}) after {elapsed:.0f} s; "
                f"it goes on in SageMaker: stop it with `aws sagemaker stop-training-job "
                f"--training-job-name {job_name}`",
                log_location(job_name),
                job_name=job_name,
            )
        sleep(poll_seconds)
    if status != "Completed":
        reason = job.get("FailureReason") or "no failure reason"
        raise TrainingFailed(
            f"training job {job_name} {status} ({secondary}): {reason}",
            log_location(job_name),
            job_name=job_name,
        )
    return job


def read_metrics(s3, artifact_uri: str, extract_to: Path | None = None) -> dict:
    """metrics.json from model.tar.gz (at its root); with `extract_to`, the whole archive
    (model, metrics, plots) is unpacked there too."""
    bucket, key = artifact_uri[len("s3://") :].split("/", 1)
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        if extract_to is not None:
            extract_to.mkdir(parents=True, exist_ok=True)
            tar.extractall(extract_to, filter="data")
        member = tar.extractfile("metrics.json")
        if member is None:
            raise TrainingFailed(f"{artifact_uri} has no metrics.json at its root")
        return json.loads(member.read())


def train_model(
    aws,
    model: Model | str,
    *,
    progress: Progress | None = None,
    poll_seconds: float = 30,
    timeout_seconds: float = 24 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    job_name: str | None = None,
    download_dir: Path | None = None,
) -> TrainingRun:
    """Create the training job, wait for it, gate and register (PendingManualApproval).
    With `download_dir`, model.tar.gz is unpacked to `<download_dir>/<job>/model/` (plots)."""
    model = spec_model(aws.platform, model)
    names: Names = aws.names
    job_name = job_name or new_job_name(names, model.name)
    request = training_request(aws, model, job_name)
    sagemaker = aws.client("sagemaker")
    started = clock()
    sagemaker.create_training_job(**request)
    say(
        progress,
        f"{job_name}: created ({request['ResourceConfig']['InstanceType']}"
        f"{', spot' if request.get('EnableManagedSpotTraining') else ''})",
    )
    try:
        job = wait_for_job(
            sagemaker,
            job_name,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
            sleep=sleep,
            clock=clock,
            progress=progress,
        )
    except TrainingFailed as failed:
        channel = training_job.train_channel_uri(names, model)
        if NO_INPUT in failed.message and channel in failed.message:
            raise TrainingFailed(
                f"{model.name}: the features table {model.features_table} has no data at "
                f"{channel}; build it first with `dp features {model.features_table}` "
                f"({failed.message})",
                failed.log_path,
                job_name=job_name,
            ) from None
        raise
    artifact_uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    s3 = aws.client("s3")
    model_dir = download_dir / job_name / "model" if download_dir is not None else None
    metrics = read_metrics(s3, artifact_uri, model_dir)
    gate_result = run_gate(model, artifact_uri, s3)
    package_arn = register_if_passed(
        sagemaker,
        names,
        model,
        gate_result,
        job_name=job_name,
        artifact_uri=artifact_uri,
        image_uri=request["AlgorithmSpecification"]["TrainingImage"],
        progress=progress,
    )
    reported = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList") or []}
    return TrainingRun(
        model=model.name,
        job_name=job_name,
        metrics=metrics,
        gate=gate_result,
        package_arn=package_arn,
        artifact_uri=artifact_uri,
        model_dir=str(model_dir) if model_dir is not None else None,
        seconds=round(clock() - started, 1),
        log_path=log_location(job_name),
        reported_metrics=reported,
    )
