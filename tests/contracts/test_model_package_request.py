"""The CreateModelPackage request has one source (dataplatform.registry): sent as it is by
the local registration, and as the Register<Model> task's parameters by the state machine.
Both forms have the same fields, and the state machine's, resolved against its state the
way Step Functions resolves it, is the request the local registration sends."""

from __future__ import annotations

from typing import Any

from dataplatform.registry import StateValue, model_package_request
from tests.contracts import asl
from tests.contracts.api_model import problems

JOB = "mldp-dev-churn-1a2b3c4d"
ARTIFACT = f"s3://mldp-dev-models/churn/{JOB}/output/model.tar.gz"
METRICS = "accuracy=0.82 auc=0.861"
SOURCE = "s3://mldp-dev-artifacts/code/training/sourcedir.tar.gz"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2"


def sent_now() -> dict[str, Any]:
    return model_package_request(
        package_group="mldp-dev-churn",
        model_name="churn",
        training_job=JOB,
        model_data_url=ARTIFACT,
        image_uri=IMAGE,
        test_metrics=METRICS,
        inference_source=SOURCE,
    )


def task_parameters() -> dict[str, Any]:
    return model_package_request(
        package_group="mldp-dev-churn",
        model_name="churn",
        training_job=StateValue("$.training.TrainingJobName"),
        model_data_url=StateValue("$.training.ModelArtifacts"),
        image_uri=IMAGE,
        test_metrics=StateValue("$.gate.registry_metrics"),
        inference_source=SOURCE,
    )


def fields(request: Any, at: str = "") -> set[str]:
    """Every field of a request as a dotted path; a parameter's `.$` is not part of its name."""
    if isinstance(request, list):
        return {f for i, item in enumerate(request) for f in fields(item, f"{at}[{i}]")}
    if not isinstance(request, dict):
        return {at}
    return {f for k, v in request.items() for f in fields(v, f"{at}.{k.removesuffix('.$')}")}


def test_the_local_request_and_the_state_machines_parameters_have_the_same_fields():
    assert fields(sent_now()) == fields(task_parameters())
    assert ".CustomerMetadataProperties.test_metrics" in fields(sent_now())


def test_the_state_machines_parameters_resolve_to_the_local_request():
    state = {
        "training": {"TrainingJobName": JOB, "ModelArtifacts": ARTIFACT},
        "gate": {"registry_metrics": METRICS},
    }
    assert asl.evaluate(task_parameters(), state, context={}) == sent_now()


def test_run_time_values_are_read_from_the_state_when_the_state_machine_runs():
    parameters = task_parameters()
    assert parameters["ModelPackageDescription.$"] == (
        "States.Format('{} from training job {}', 'churn', $.training.TrainingJobName)"
    )
    assert parameters["InferenceSpecification"]["Containers"] == [
        {
            "Image": IMAGE,
            "ModelDataUrl.$": "$.training.ModelArtifacts",
            # the sklearn container serves it with training/inference.py, as locally
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": SOURCE,
            },
        }
    ]
    assert parameters["CustomerMetadataProperties"] == {
        "training_job.$": "$.training.TrainingJobName",
        "test_metrics.$": "$.gate.registry_metrics",
    }


def test_the_request_meets_create_model_packages_api_model():
    assert problems("sagemaker", "CreateModelPackage", sent_now()) == []
