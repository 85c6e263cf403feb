"""A model of spec/models/*.yaml as a SageMaker training job: one pure function builds the
CreateTrainingJob request, so the state machine (its `.sync` task takes the API's
parameters as they are), `dp train --target aws` and the local run cannot disagree.

train.py's contract (training/README.md): SageMaker passes hyperparameters as
`--name value`; the reserved ones describe the model, the rest go to the estimator.
"""

from __future__ import annotations

import json
from typing import Any

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.spec import Environment, Model

TRAINING_SCRIPT = "train.py"
TRAIN_CHANNEL = "train"


def hyperparameters(model: Model) -> dict[str, str]:
    """train.py's arguments for `model`, as the strings it receives on the command line."""
    reserved = {
        "problem": model.problem,
        "algorithm": model.algorithm,
        "target": model.target,
        "id_columns": ",".join(model.id_columns),
        "exclude_columns": ",".join(model.exclude_columns),
        "test_fraction": str(model.split.test_fraction),
        "seed": str(model.split.seed),
        "stratify": "true" if model.split.stratify else "false",
        "cv_folds": str(model.cv_folds),
    }
    clash = sorted(set(reserved) & set(model.hyperparameters))
    if clash:
        raise ValueError(
            f"{model.source_file}: hyperparameters {', '.join(clash)} are reserved "
            "by train.py; set them with the model's own fields"
        )
    estimator = {name: _as_argument(value) for name, value in model.hyperparameters.items()}
    return {**reserved, **estimator}


def _as_argument(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def sagemaker_hyperparameters(model: Model, source_uri: str, region: str) -> dict[str, str]:
    """What the training job is given: the framework containers JSON-decode every value (the
    SageMaker SDK JSON-encodes them the same way) and run `sagemaker_program` from
    `sagemaker_submit_directory` with the rest as `--name value`."""
    values = {
        **hyperparameters(model),
        "sagemaker_program": TRAINING_SCRIPT,
        "sagemaker_submit_directory": source_uri,
        "sagemaker_region": region,
        "sagemaker_container_log_level": "20",
    }
    return {name: json.dumps(value) for name, value in values.items()}


def output_path(names: Names, model: Model) -> str:
    """SageMaker writes s3://<models>/<model>/<job>/output/model.tar.gz below this."""
    return f"s3://{names.models_bucket}/{layout.model_prefix(model.name)}"


def checkpoint_uri(names: Names, model: Model) -> str:
    return f"s3://{names.models_bucket}/{layout.model_checkpoint_prefix(model.name)}"


def train_channel_uri(names: Names, model: Model) -> str:
    return f"s3://{names.features_bucket}/{layout.features_prefix(model.features_table)}"


def source_uri(names: Names) -> str:
    return f"s3://{names.artifacts_bucket}/{layout.TRAINING_SOURCE_KEY}"


def training_job_request(
    model: Model,
    names: Names,
    settings: Environment,
    *,
    job_name: str,
    image_uri: str,
    role_arn: str,
    subnet_ids: list[str],
    security_group_ids: list[str],
    key_arn: str,
    metric_definitions: list[dict],
) -> dict[str, Any]:
    """The CreateTrainingJob request (API shape) of one run of `model`."""
    sm = settings.sagemaker
    stopping = {"MaxRuntimeInSeconds": sm.max_runtime_minutes * 60}
    if sm.use_spot_instances:
        stopping["MaxWaitTimeInSeconds"] = sm.max_wait_minutes * 60
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions,
        },
        "RoleArn": role_arn,
        "HyperParameters": sagemaker_hyperparameters(model, source_uri(names), settings.region),
        "InputDataConfig": [
            {
                "ChannelName": TRAIN_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": train_channel_uri(names, model),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": output_path(names, model), "KmsKeyId": key_arn},
        "ResourceConfig": {
            "InstanceType": sm.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": sm.volume_gib,
            "VolumeKmsKeyId": key_arn,
        },
        "StoppingCondition": stopping,
        "VpcConfig": {"Subnets": list(subnet_ids), "SecurityGroupIds": list(security_group_ids)},
        "EnableInterContainerTrafficEncryption": True,
        "EnableNetworkIsolation": False,  # script mode downloads its source from S3
        "EnableManagedSpotTraining": sm.use_spot_instances,
        "Tags": [{"Key": "model", "Value": model.name}],
    }
    if sm.use_spot_instances:
        request["CheckpointConfig"] = {"S3Uri": checkpoint_uri(names, model)}
    return request


def image_uri(settings: Environment) -> str:
    """The SageMaker scikit-learn container for the environment's region (resolved offline by
    the sagemaker SDK from its bundled image tables)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(
        "sklearn",
        region=settings.region,
        version=settings.sagemaker.sklearn_framework_version,
        instance_type=settings.sagemaker.instance_type,
    )
