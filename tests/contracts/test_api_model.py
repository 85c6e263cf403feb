"""The API-model checker itself: it refuses what the services refuse and botocore lets
through, and every boto3 client of the test session applies it."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from moto import mock_aws

from tests.contracts.api_model import problems


def test_patterns_lengths_and_enums_are_checked_where_botocore_does_not():
    json_metadata = {
        "ModelPackageGroupName": "churn",
        "CustomerMetadataProperties": {"test_metrics": '{"auc":0.81}'},
    }
    [found] = problems("sagemaker", "CreateModelPackage", json_metadata)
    assert "test_metrics" in found and "does not match" in found
    assert (
        problems(
            "sagemaker",
            "CreateModelPackage",
            {
                "ModelPackageGroupName": "churn",
                "CustomerMetadataProperties": {"test_metrics": "auc=0.81 r2=-1e-05"},
            },
        )
        == []
    )
    [too_long] = problems(
        "sagemaker",
        "CreateModelPackage",
        {"ModelPackageGroupName": "churn", "ModelPackageDescription": "d" * 1025},
    )
    assert "ModelPackageDescription: length 1025 > max 1024" in too_long
    [not_an_enum] = problems(
        "sagemaker",
        "CreateModelPackage",
        {"ModelPackageGroupName": "churn", "ModelApprovalStatus": "Pending"},
    )
    assert "ModelApprovalStatus" in not_an_enum
    # what botocore checks itself is reported too
    assert any("JobName" in p for p in problems("glue", "StartJobRun", {"Arguments": {}}))


@mock_aws
def test_every_client_in_the_test_session_refuses_such_a_request_before_sending_it():
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    sagemaker.create_model_package_group(ModelPackageGroupName="churn")
    with pytest.raises(ParamValidationError, match="test_metrics"):
        sagemaker.create_model_package(
            ModelPackageGroupName="churn",
            CustomerMetadataProperties={"test_metrics": '{"auc":0.81}'},
        )
    # moto alone would have taken it
    assert (
        sagemaker.list_model_packages(ModelPackageGroupName="churn")["ModelPackageSummaryList"]
        == []
    )
