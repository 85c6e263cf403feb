"""The spec's training contract and training/'s copy of it agree.

training/ runs in SageMaker's scikit-learn container with its own files only (the
sourcedir.tar.gz of dataplatform/bundle.py's training_source_bytes), so it cannot import
dataplatform.spec, the single source of the problems, algorithms, quality-gate metrics and
reserved hyperparameters: these tests fail when training/'s copies differ from it."""

from __future__ import annotations

import dataclasses
import sys

from dataplatform import training_job
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import (
    ALGORITHMS,
    GATE_METRICS,
    PROBLEMS,
    RESERVED_HYPERPARAMETERS,
    load_spec,
)

sys.path.insert(0, str(REPO_ROOT / "training"))
import metrics_contract  # noqa: E402
import modeling  # noqa: E402
import train as T  # noqa: E402


def test_training_solves_the_problems_of_the_spec():
    assert metrics_contract.PROBLEMS == PROBLEMS


def test_training_reports_on_each_split_exactly_the_gate_metrics_in_their_direction():
    reported = {
        metric: (problem, metrics_contract.HIGHER_IS_BETTER[metric])
        for problem, metrics in metrics_contract.SPLIT_METRICS.items()
        for metric in metrics
    }
    assert reported == GATE_METRICS
    assert set(metrics_contract.HIGHER_IS_BETTER) == set(GATE_METRICS)


def test_training_fits_the_algorithms_of_the_spec_in_the_same_order():
    # both list them, in this order, in their error messages
    assert list(modeling.ALGORITHMS.items()) == list(ALGORITHMS.items())


def test_train_py_reserves_the_hyperparameters_the_spec_reserves():
    assert T.RESERVED == RESERVED_HYPERPARAMETERS


def test_the_training_job_passes_train_py_every_reserved_hyperparameter():
    model = load_spec(REPO_ROOT / "spec").models[0]
    reserved = training_job.hyperparameters(dataclasses.replace(model, hyperparameters={}))
    assert tuple(reserved) == RESERVED_HYPERPARAMETERS
