"""Endpoint deployer Lambda: rolls a served model's SageMaker endpoint to a newly approved
model package.

EventBridge invokes it (asynchronously) for `SageMaker Model Package State Change` events
of the model's package group whose status is Approved (the serving stack's rule). The event
names the package; `deploy` does the rest with the SageMaker client it is given:

1. DescribeModelPackage: the package must be of the model's group and still Approved;
2. the endpoint's current package version (from its endpoint configuration's name, which
   ends in `-v<version>`): the same version means nothing to do (a repeated event), and a
   newer one means an older package was approved after it (the endpoint keeps serving the
   latest approved package);
3. a Model from the package (`ModelPackageName`) and an EndpointConfig, both named
   `<endpoint>-v<version>` and created only if absent, so a retried event re-uses them:
   serverless (MemorySizeInMB, MaxConcurrency), or instances (InstanceType,
   InitialInstanceCount) with the storage volume's KmsKeyId, data capture to the models
   bucket with the lake key, and the Model in the VPC's private subnets. SageMaker
   Serverless Inference takes neither a VPC configuration nor data capture (nor a volume
   key), so a serverless endpoint has none of the three;
4. CreateEndpoint if there is none, else UpdateEndpoint (SageMaker's blue/green: the old
   configuration serves until the new one is in service). An endpoint still creating or
   updating is waited for first; a failed one is an error that says what to do.

Settings come from the function's environment (the stack writes them from the spec):
ENDPOINT_NAME, PACKAGE_GROUP, ROLE_ARN, MODE, MEMORY_MB, MAX_CONCURRENCY, INSTANCE_TYPE,
INSTANCES, SUBNET_IDS, SECURITY_GROUP_IDS (comma-separated), DATA_CAPTURE_URI, KMS_KEY_ARN,
DATA_CAPTURE_PERCENT, TAGS (JSON object).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# the package version an endpoint configuration was made for (`resource_name`'s rule), shared
# with the stream scorer, which labels each score with the version that served it
from dataplatform.serving import deployed_version  # noqa: F401 (re-exported)

VARIANT = "AllTraffic"
NAME_MAX = 63  # SageMaker model, endpoint configuration and endpoint names
# Endpoint states in which SageMaker refuses UpdateEndpoint until they end.
BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
FAILED = ("Failed", "UpdateRollbackFailed")
WAIT_SECONDS = 30
MAX_WAIT_SECONDS = 600  # the function's timeout is 15 minutes


class DeployError(Exception):
    """The approval cannot be rolled out; the message says why and what to do."""


@dataclass(frozen=True)
class EndpointTarget:
    """What the endpoint of one served model is made of."""

    endpoint_name: str
    package_group: str
    role_arn: str
    mode: str  # serverless | instance
    memory_mb: int = 2048
    max_concurrency: int = 5
    instance_type: str = "ml.m5.large"
    instances: int = 1
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    data_capture_uri: str = ""
    kms_key_arn: str = ""
    data_capture_percent: int = 100
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> EndpointTarget:
        def listed(name: str) -> tuple[str, ...]:
            return tuple(v for v in env.get(name, "").split(",") if v)

        return cls(
            endpoint_name=env["ENDPOINT_NAME"],
            package_group=env["PACKAGE_GROUP"],
            role_arn=env["ROLE_ARN"],
            mode=env["MODE"],
            memory_mb=int(env.get("MEMORY_MB", "2048")),
            max_concurrency=int(env.get("MAX_CONCURRENCY", "5")),
            instance_type=env.get("INSTANCE_TYPE", "ml.m5.large"),
            instances=int(env.get("INSTANCES", "1")),
            subnet_ids=listed("SUBNET_IDS"),
            security_group_ids=listed("SECURITY_GROUP_IDS"),
            data_capture_uri=env.get("DATA_CAPTURE_URI", ""),
            kms_key_arn=env.get("KMS_KEY_ARN", ""),
            data_capture_percent=int(env.get("DATA_CAPTURE_PERCENT", "100")),
            tags=json.loads(env.get("TAGS", "{}")),
        )

    @property
    def serverless(self) -> bool:
        return self.mode == "serverless"


def resource_name(endpoint_name: str, version: int) -> str:
    """The Model's and the EndpointConfig's name for one package version."""
    name = f"{endpoint_name}-v{version}"
    if len(name) > NAME_MAX:
        raise DeployError(f"{name!r} is longer than SageMaker's {NAME_MAX} characters")
    return name


def deploy(
    sagemaker: Any,
    *,
    package_arn: str,
    target: EndpointTarget,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_seconds: float = MAX_WAIT_SECONDS,
) -> dict[str, Any]:
    """Roll `target`'s endpoint to the approved package `package_arn`. Returns
    {"action": "created" | "updated" | "unchanged" | "skipped", "endpoint", "version",
    "reason"?}."""
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    group = package.get("ModelPackageGroupName")
    if group != target.package_group:
        raise DeployError(
            f"{package_arn} is a package of {group!r}, not of {target.package_group!r}: "
            "the approval rule routed another group's event"
        )
    version = int(package["ModelPackageVersion"])
    result: dict[str, Any] = {"endpoint": target.endpoint_name, "version": version}
    status = package.get("ModelApprovalStatus")
    if status != "Approved":
        return {**result, "action": "skipped", "reason": f"the package is {status} now"}

    endpoint = _wait_until_settled(sagemaker, target.endpoint_name, sleep, max_wait_seconds)
    if endpoint is not None:
        current = deployed_version(target.endpoint_name, endpoint["EndpointConfigName"])
        if current == version:
            return {**result, "action": "unchanged", "reason": "the endpoint serves it already"}
        if current is not None and current > version:
            return {
                **result,
                "action": "skipped",
                "reason": f"the endpoint serves version {current}, approved later",
            }

    name = resource_name(target.endpoint_name, version)
    tags = [{"Key": k, "Value": v} for k, v in sorted(target.tags.items())]
    if not _exists(sagemaker.describe_model, ModelName=name):
        sagemaker.create_model(**model_request(name, package_arn, target, tags))
    if not _exists(sagemaker.describe_endpoint_config, EndpointConfigName=name):
        sagemaker.create_endpoint_config(**endpoint_config_request(name, target, tags))
    if endpoint is None:
        sagemaker.create_endpoint(
            EndpointName=target.endpoint_name, EndpointConfigName=name, **_tagged(tags)
        )
        return {**result, "action": "created"}
    sagemaker.update_endpoint(EndpointName=target.endpoint_name, EndpointConfigName=name)
    return {**result, "action": "updated"}


def model_request(
    name: str, package_arn: str, target: EndpointTarget, tags: list[dict[str, str]]
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ModelName": name,
        "PrimaryContainer": {"ModelPackageName": package_arn},
        "ExecutionRoleArn": target.role_arn,
        **_tagged(tags),
    }
    if not target.serverless:
        request["VpcConfig"] = {
            "Subnets": list(target.subnet_ids),
            "SecurityGroupIds": list(target.security_group_ids),
        }
    return request


def endpoint_config_request(
    name: str, target: EndpointTarget, tags: list[dict[str, str]]
) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": name}
    if target.serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": target.memory_mb,
            "MaxConcurrency": target.max_concurrency,
        }
        return {"EndpointConfigName": name, "ProductionVariants": [variant], **_tagged(tags)}
    variant.update(
        InstanceType=target.instance_type,
        InitialInstanceCount=target.instances,
        InitialVariantWeight=1.0,
    )
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [variant],
        "KmsKeyId": target.kms_key_arn,
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": target.data_capture_percent,
            "DestinationS3Uri": target.data_capture_uri,
            "KmsKeyId": target.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        },
        **_tagged(tags),
    }


def _tagged(tags: list[dict[str, str]]) -> dict[str, Any]:
    return {"Tags": tags} if tags else {}


def _missing(error: Exception) -> bool:
    """SageMaker answers Describe* of an absent resource with a ValidationException."""
    response = getattr(error, "response", None) or {}
    err = response.get("Error", {})
    return err.get("Code") == "ValidationException" and "Could not find" in err.get("Message", "")


def _exists(describe: Callable[..., Any], **name: str) -> bool:
    try:
        describe(**name)
    except Exception as error:
        if _missing(error):
            return False
        raise
    return True


def _wait_until_settled(
    sagemaker: Any, endpoint_name: str, sleep: Callable[[float], None], max_wait: float
) -> dict[str, Any] | None:
    """DescribeEndpoint once it is neither creating nor updating (None: there is none)."""
    waited = 0.0
    while True:
        try:
            endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        except Exception as error:
            if _missing(error):
                return None
            raise
        status = endpoint["EndpointStatus"]
        if status in FAILED:
            raise DeployError(
                f"endpoint {endpoint_name} is {status} ({endpoint.get('FailureReason', '')}): "
                "delete it (aws sagemaker delete-endpoint) and approve the package again"
            )
        if status not in BUSY:
            return endpoint
        if waited >= max_wait:
            raise DeployError(
                f"endpoint {endpoint_name} is still {status} after {int(waited)} s; the "
                "invocation is retried (then lands in the deployer's dead-letter queue)"
            )
        sleep(WAIT_SECONDS)
        waited += WAIT_SECONDS


def handler(event: dict, context: object, sagemaker: Any = None) -> dict[str, Any]:
    if sagemaker is None:
        import boto3

        sagemaker = boto3.client("sagemaker")
    target = EndpointTarget.from_environment(os.environ)
    # the package's ARN is the event's resource, and in its detail
    package_arn = event.get("detail", {}).get("ModelPackageArn") or event["resources"][0]
    result = deploy(sagemaker, package_arn=package_arn, target=target)
    print(json.dumps({"endpoint_deployer": result, "package": package_arn}))
    return result
