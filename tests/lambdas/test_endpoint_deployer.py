"""The endpoint deployer Lambda against botocore's Stubber: the exact SageMaker requests for
a serverless and an instance endpoint, created or updated, and what it does with repeated,
older, retried and unroutable approvals and with busy or failed endpoints. Every request
is also held to the botocore model's patterns and lengths (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import sys

import boto3
import pytest
from botocore.stub import Stubber

from dataplatform.paths import REPO_ROOT

# Under a name of its own: every Lambda has a handler.py.
_spec = importlib.util.spec_from_file_location(
    "endpoint_deployer_handler", REPO_ROOT / "lambdas" / "endpoint_deployer" / "handler.py"
)
deployer = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = deployer  # its dataclasses look their module up
_spec.loader.exec_module(deployer)

REGION, ACCOUNT = "eu-west-1", "123456789012"
GROUP = ENDPOINT = "mldp-dev-churn"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mldp-dev-sagemaker-{REGION}"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CAPTURE = f"s3://mldp-dev-models-{ACCOUNT}-{REGION}/data-capture/churn/"
SUBNETS = ("subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788")
GROUPS = ("sg-0123456789abcdef0",)
TAGS = [
    {"Key": "environment", "Value": "dev"},
    {"Key": "model", "Value": "churn"},
    {"Key": "project", "Value": "mldp"},
]
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)

SERVERLESS = deployer.EndpointTarget(
    endpoint_name=ENDPOINT,
    package_group=GROUP,
    role_arn=ROLE,
    mode="serverless",
    memory_mb=2048,
    max_concurrency=5,
    subnet_ids=SUBNETS,
    security_group_ids=GROUPS,
    data_capture_uri=CAPTURE,
    kms_key_arn=KEY,
    tags={"project": "mldp", "environment": "dev", "model": "churn"},
)
INSTANCE = dataclasses.replace(
    SERVERLESS, mode="instance", instance_type="ml.m5.xlarge", instances=2, data_capture_percent=20
)


def package_arn(version: int, group: str = GROUP) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"


def sagemaker_arn(resource: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}"


@pytest.fixture
def sagemaker():
    client = boto3.client(
        "sagemaker",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client
        stubber.assert_no_pending_responses()


# ----------------------------------------------------------------------------- the answers


def package(stub: Stubber, version: int, status: str = "Approved", group: str = GROUP) -> None:
    stub.add_response(
        "describe_model_package",
        {
            "ModelPackageName": group,
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": package_arn(version, group),
            "CreationTime": NOW,
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "ModelApprovalStatus": status,
        },
        {"ModelPackageName": package_arn(version, group)},
    )


def endpoint(stub: Stubber, status: str | None, version: int = 0, reason: str = "") -> None:
    """DescribeEndpoint: absent (None), or `status` serving `<endpoint>-v<version>`."""
    if status is None:
        stub.add_client_error(
            "describe_endpoint",
            service_error_code="ValidationException",
            service_message=f'Could not find endpoint "{ENDPOINT}".',
            http_status_code=400,
            expected_params={"EndpointName": ENDPOINT},
        )
        return
    answer = {
        "EndpointName": ENDPOINT,
        "EndpointArn": sagemaker_arn(f"endpoint/{ENDPOINT}"),
        "EndpointConfigName": f"{ENDPOINT}-v{version}",
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }
    if reason:
        answer["FailureReason"] = reason
    stub.add_response("describe_endpoint", answer, {"EndpointName": ENDPOINT})


def model_absent(stub: Stubber, name: str) -> None:
    stub.add_client_error(
        "describe_model",
        service_error_code="ValidationException",
        service_message=f'Could not find model "{sagemaker_arn(f"model/{name}")}".',
        http_status_code=400,
        expected_params={"ModelName": name},
    )


def model_present(stub: Stubber, name: str) -> None:
    stub.add_response(
        "describe_model",
        {"ModelName": name, "CreationTime": NOW, "ModelArn": sagemaker_arn(f"model/{name}")},
        {"ModelName": name},
    )


def config_absent(stub: Stubber, name: str) -> None:
    stub.add_client_error(
        "describe_endpoint_config",
        service_error_code="ValidationException",
        service_message=f'Could not find endpoint configuration "{sagemaker_arn(f"endpoint-config/{name}")}".',
        http_status_code=400,
        expected_params={"EndpointConfigName": name},
    )


def config_present(stub: Stubber, name: str) -> None:
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": name,
            "EndpointConfigArn": sagemaker_arn(f"endpoint-config/{name}"),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name}],
            "CreationTime": NOW,
        },
        {"EndpointConfigName": name},
    )


def creates_model(stub: Stubber, name: str, request: dict) -> None:
    stub.add_response("create_model", {"ModelArn": sagemaker_arn(f"model/{name}")}, request)


def creates_config(stub: Stubber, name: str, request: dict) -> None:
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": sagemaker_arn(f"endpoint-config/{name}")},
        request,
    )


def rolls(stub: Stubber, operation: str, name: str) -> None:
    request = {"EndpointName": ENDPOINT, "EndpointConfigName": name}
    if operation == "create_endpoint":
        request["Tags"] = TAGS
    stub.add_response(operation, {"EndpointArn": sagemaker_arn(f"endpoint/{ENDPOINT}")}, request)


# ----------------------------------------------------------------------------- the requests

SERVERLESS_MODEL = {
    "ModelName": f"{ENDPOINT}-v3",
    "PrimaryContainer": {"ModelPackageName": package_arn(3)},
    "ExecutionRoleArn": ROLE,
    "Tags": TAGS,
}
SERVERLESS_CONFIG = {
    "EndpointConfigName": f"{ENDPOINT}-v3",
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "ModelName": f"{ENDPOINT}-v3",
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
        }
    ],
    "Tags": TAGS,
}
INSTANCE_MODEL = {
    **SERVERLESS_MODEL,
    "VpcConfig": {"Subnets": list(SUBNETS), "SecurityGroupIds": list(GROUPS)},
}
INSTANCE_CONFIG = {
    "EndpointConfigName": f"{ENDPOINT}-v3",
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "ModelName": f"{ENDPOINT}-v3",
            "InstanceType": "ml.m5.xlarge",
            "InitialInstanceCount": 2,
            "InitialVariantWeight": 1.0,
        }
    ],
    "KmsKeyId": KEY,
    "DataCaptureConfig": {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": CAPTURE,
        "KmsKeyId": KEY,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    },
    "Tags": TAGS,
}


def test_serverless_first_approval_creates_model_config_and_endpoint(sagemaker):
    stub, name = sagemaker.stubber, f"{ENDPOINT}-v3"
    package(stub, 3)
    endpoint(stub, None)
    model_absent(stub, name)
    creates_model(stub, name, SERVERLESS_MODEL)
    config_absent(stub, name)
    creates_config(stub, name, SERVERLESS_CONFIG)
    rolls(stub, "create_endpoint", name)

    result = deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)

    assert result == {"endpoint": ENDPOINT, "version": 3, "action": "created"}


def test_serverless_endpoints_get_no_vpc_no_data_capture_and_no_volume_key():
    """SageMaker Serverless Inference takes none of the three (its feature exclusions)."""
    model = deployer.model_request("m-v1", package_arn(1), SERVERLESS, [])
    config = deployer.endpoint_config_request("m-v1", SERVERLESS, [])
    assert "VpcConfig" not in model
    assert "DataCaptureConfig" not in config and "KmsKeyId" not in config
    assert "InstanceType" not in config["ProductionVariants"][0]


def test_instance_approval_of_a_newer_version_updates_the_endpoint(sagemaker):
    stub, name = sagemaker.stubber, f"{ENDPOINT}-v3"
    package(stub, 3)
    endpoint(stub, "InService", version=2)
    model_absent(stub, name)
    creates_model(stub, name, INSTANCE_MODEL)
    config_absent(stub, name)
    creates_config(stub, name, INSTANCE_CONFIG)
    rolls(stub, "update_endpoint", name)

    result = deployer.deploy(sagemaker, package_arn=package_arn(3), target=INSTANCE)

    assert result == {"endpoint": ENDPOINT, "version": 3, "action": "updated"}


def test_instance_first_approval_creates_the_endpoint_in_the_vpc_with_capture(sagemaker):
    stub, name = sagemaker.stubber, f"{ENDPOINT}-v3"
    package(stub, 3)
    endpoint(stub, None)
    model_absent(stub, name)
    creates_model(stub, name, INSTANCE_MODEL)
    config_absent(stub, name)
    creates_config(stub, name, INSTANCE_CONFIG)
    rolls(stub, "create_endpoint", name)

    assert deployer.deploy(sagemaker, package_arn=package_arn(3), target=INSTANCE)["action"] == (
        "created"
    )


def test_serverless_update_after_an_instance_version(sagemaker):
    """Switching the spec's mode takes effect with the next approval."""
    stub, name = sagemaker.stubber, f"{ENDPOINT}-v3"
    package(stub, 3)
    endpoint(stub, "InService", version=2)
    model_absent(stub, name)
    creates_model(stub, name, SERVERLESS_MODEL)
    config_absent(stub, name)
    creates_config(stub, name, SERVERLESS_CONFIG)
    rolls(stub, "update_endpoint", name)

    assert deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)["action"] == (
        "updated"
    )


def test_a_retried_event_reuses_what_the_first_attempt_created(sagemaker):
    stub, name = sagemaker.stubber, f"{ENDPOINT}-v3"
    package(stub, 3)
    endpoint(stub, "InService", version=2)
    model_present(stub, name)
    config_present(stub, name)
    rolls(stub, "update_endpoint", name)

    assert deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)["action"] == (
        "updated"
    )


def test_a_repeated_event_changes_nothing(sagemaker):
    stub = sagemaker.stubber
    package(stub, 3)
    endpoint(stub, "InService", version=3)

    result = deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)

    assert result["action"] == "unchanged"


def test_an_older_package_approved_later_leaves_the_latest_serving(sagemaker):
    stub = sagemaker.stubber
    package(stub, 3)
    endpoint(stub, "InService", version=4)

    result = deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)

    assert result["action"] == "skipped"
    assert "version 4" in result["reason"]


def test_a_package_no_longer_approved_is_skipped(sagemaker):
    package(sagemaker.stubber, 3, status="Rejected")

    result = deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)

    assert result == {
        "endpoint": ENDPOINT,
        "version": 3,
        "action": "skipped",
        "reason": "the package is Rejected now",
    }


def test_a_package_of_another_group_is_refused(sagemaker):
    package(sagemaker.stubber, 1, group="mldp-dev-house-prices")

    with pytest.raises(deployer.DeployError, match="not of 'mldp-dev-churn'"):
        deployer.deploy(
            sagemaker, package_arn=package_arn(1, "mldp-dev-house-prices"), target=SERVERLESS
        )


def test_an_updating_endpoint_is_waited_for_before_the_update(sagemaker):
    stub, name = sagemaker.stubber, f"{ENDPOINT}-v3"
    package(stub, 3)
    endpoint(stub, "Updating", version=2)
    endpoint(stub, "Updating", version=2)
    endpoint(stub, "InService", version=2)
    model_absent(stub, name)
    creates_model(stub, name, SERVERLESS_MODEL)
    config_absent(stub, name)
    creates_config(stub, name, SERVERLESS_CONFIG)
    rolls(stub, "update_endpoint", name)
    slept: list[float] = []

    result = deployer.deploy(
        sagemaker, package_arn=package_arn(3), target=SERVERLESS, sleep=slept.append
    )

    assert result["action"] == "updated"
    assert slept == [deployer.WAIT_SECONDS] * 2


def test_an_endpoint_busy_for_too_long_fails_for_a_retry(sagemaker):
    stub = sagemaker.stubber
    package(stub, 3)
    endpoint(stub, "Creating", version=2)
    endpoint(stub, "Creating", version=2)

    with pytest.raises(deployer.DeployError, match="still Creating after 30 s"):
        deployer.deploy(
            sagemaker,
            package_arn=package_arn(3),
            target=SERVERLESS,
            sleep=lambda _: None,
            max_wait_seconds=deployer.WAIT_SECONDS,
        )


def test_a_failed_endpoint_is_an_error_that_says_what_to_do(sagemaker):
    stub = sagemaker.stubber
    package(stub, 3)
    endpoint(stub, "Failed", version=2, reason="The image could not be pulled")

    with pytest.raises(deployer.DeployError, match="Failed .*image could not be pulled.*delete"):
        deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)


def test_other_sagemaker_errors_are_not_taken_for_absence(sagemaker):
    stub = sagemaker.stubber
    package(stub, 3)
    stub.add_client_error(
        "describe_endpoint",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
        expected_params={"EndpointName": ENDPOINT},
    )

    with pytest.raises(Exception, match="Rate exceeded"):
        deployer.deploy(sagemaker, package_arn=package_arn(3), target=SERVERLESS)


def test_names_carry_the_version_and_fit_sagemaker():
    assert deployer.resource_name(ENDPOINT, 12) == "mldp-dev-churn-v12"
    assert deployer.deployed_version(ENDPOINT, "mldp-dev-churn-v12") == 12
    assert deployer.deployed_version(ENDPOINT, "hand-made-config") is None
    assert deployer.deployed_version(ENDPOINT, "mldp-dev-churn-v12-old") is None
    with pytest.raises(deployer.DeployError, match="longer than SageMaker's 63"):
        deployer.resource_name("x" * 60, 100)


def test_the_handler_reads_its_settings_and_the_events_package(sagemaker, monkeypatch):
    env = {
        "ENDPOINT_NAME": ENDPOINT,
        "PACKAGE_GROUP": GROUP,
        "ROLE_ARN": ROLE,
        "MODE": "serverless",
        "MEMORY_MB": "2048",
        "MAX_CONCURRENCY": "5",
        "INSTANCE_TYPE": "ml.m5.large",
        "INSTANCES": "1",
        "SUBNET_IDS": ",".join(SUBNETS),
        "SECURITY_GROUP_IDS": ",".join(GROUPS),
        "DATA_CAPTURE_URI": CAPTURE,
        "DATA_CAPTURE_PERCENT": "100",
        "KMS_KEY_ARN": KEY,
        "TAGS": json.dumps({"project": "mldp", "environment": "dev", "model": "churn"}),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert deployer.EndpointTarget.from_environment(env) == SERVERLESS
    stub = sagemaker.stubber
    package(stub, 3)
    endpoint(stub, "InService", version=3)
    event = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "resources": [package_arn(3)],
        "detail": {
            "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": 3,
            "ModelPackageArn": package_arn(3),
            "ModelApprovalStatus": "Approved",
        },
    }

    assert deployer.handler(event, None, sagemaker=sagemaker)["action"] == "unchanged"
