"""The contract between the spec, the training-job request and train.py: what the state
machine and `dp train` pass is exactly what train.py understands, for every shipped model."""

from __future__ import annotations

import json
import sys

import pytest

from dataplatform import training_job
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import load_spec

sys.path.insert(0, str(REPO_ROOT / "training"))
import train as T  # noqa: E402

PLATFORM = load_spec(REPO_ROOT / "spec")


@pytest.mark.parametrize("model", PLATFORM.models, ids=lambda m: m.name)
def test_hyperparameters_of_every_shipped_model_configure_train_py_as_the_spec_says(model):
    """Through the job: JSON-encoded in the request, decoded and passed on the command line
    as the framework containers do (a one-letter name such as logistic's C as `-C`)."""
    from dataplatform.runtime.local.services.sagemaker_training import (
        command_line_arguments,
        decoded,
    )

    encoded = training_job.sagemaker_hyperparameters(model, "s3://b/sourcedir.tar.gz", "eu-west-1")
    argv = command_line_arguments(
        {k: v for k, v in decoded(encoded).items() if not k.startswith("sagemaker_")}
    )
    config = T.TrainConfig.from_hyperparameters(T.parse_hyperparameters(argv))
    assert (config.problem, config.algorithm, config.target) == (
        model.problem,
        model.algorithm,
        model.target,
    )
    assert config.id_columns == model.id_columns
    assert config.exclude_columns == model.exclude_columns
    assert (config.test_fraction, config.seed, config.stratify, config.cv_folds) == (
        model.split.test_fraction,
        model.split.seed,
        model.split.stratify,
        model.cv_folds,
    )
    assert config.hyperparameters == dict(model.hyperparameters)


def test_sagemaker_hyperparameters_are_json_encoded_as_the_framework_containers_expect():
    model = PLATFORM.models[0]
    encoded = training_job.sagemaker_hyperparameters(
        model, "s3://bucket/code/training/x.tar.gz", "eu-west-1"
    )
    decoded = {k: json.loads(v) for k, v in encoded.items()}
    assert decoded["sagemaker_program"] == "train.py"
    assert decoded["sagemaker_submit_directory"] == "s3://bucket/code/training/x.tar.gz"
    assert {
        k: v for k, v in decoded.items() if not k.startswith("sagemaker_")
    } == training_job.hyperparameters(model)


def test_reserved_names_in_a_models_hyperparameters_are_refused():
    import dataclasses

    model = dataclasses.replace(PLATFORM.models[0], hyperparameters={"target": "x"})
    with pytest.raises(ValueError, match="reserved by train.py"):
        training_job.hyperparameters(model)
