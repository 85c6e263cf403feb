"""The quality-gate Lambda against moto S3: pass, fail, lower-is-better metrics, explicit
bounds, metrics.json inside SageMaker's model.tar.gz, and every way it cannot decide."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile

import boto3
import pytest
from moto import mock_aws

from dataplatform.bundle import stage_lambda
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import GATE_METRICS, load_spec

# appended, not prepended: tests/lambdas/test_firehose_transform.py imports its own `handler`
sys.path.append(str(REPO_ROOT / "lambdas" / "quality_gate"))
import gate  # noqa: E402
from gate import GateError  # noqa: E402

# Under a name of its own: every Lambda has a handler.py.
_spec = importlib.util.spec_from_file_location(
    "quality_gate_handler", REPO_ROOT / "lambdas" / "quality_gate" / "handler.py"
)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
handler = _module.handler

BUCKET = "ml-artifacts"
CLASSIFIER_METRICS = {
    "problem": "binary_classification",
    "algorithm": "xgboost",
    "target": "churned",
    "features": ["calls_7d"],
    "n_train": 80,
    "n_test": 20,
    "threshold": 0.42,
    "test": {"auc": 0.81, "accuracy": 0.77, "precision": 0.5, "recall": 0.66, "f1": 0.57},
    "train": {"auc": 0.9, "accuracy": 0.8, "precision": 0.6, "recall": 0.7, "f1": 0.65},
    "cv": {},
    "gap": {},
    "fit": "ok",
    "confusion_matrix": [[12, 2], [2, 4]],
    "feature_importance": {"calls_7d": 1.0},
    "hyperparameters": {},
}
REGRESSOR_TEST = {"rmse": 41000.0, "mae": 30000.0, "r2": 0.71}


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield client


def put_metrics(s3, metrics, key="models/churn/run-1/metrics.json") -> str:
    body = metrics if isinstance(metrics, bytes) else json.dumps(metrics).encode()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def put_model_tar(s3, files: dict, key="models/churn/run-1/output/model.tar.gz") -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def test_passes_when_every_metric_meets_its_threshold(s3):
    uri = put_metrics(s3, CLASSIFIER_METRICS)
    result = handler(
        {"model": "churn", "metrics_uri": uri, "quality_gate": {"auc": 0.75, "recall": 0.6}},
        None,
        s3=s3,
    )
    assert result["passed"] is True
    assert result["model"] == "churn"
    assert result["metrics"] == CLASSIFIER_METRICS["test"]
    assert result["checks"] == [
        {"metric": "auc", "value": 0.81, "threshold": 0.75, "direction": "min", "passed": True},
        {"metric": "recall", "value": 0.66, "threshold": 0.6, "direction": "min", "passed": True},
    ]
    json.dumps(result)  # Step Functions needs JSON


def test_fails_when_one_metric_misses_and_the_threshold_is_inclusive(s3):
    uri = put_metrics(s3, CLASSIFIER_METRICS)
    result = handler(
        {"model": "churn", "metrics_uri": uri, "quality_gate": {"auc": 0.81, "f1": 0.6}},
        None,
        s3=s3,
    )
    assert result["passed"] is False
    assert [(c["metric"], c["passed"]) for c in result["checks"]] == [("auc", True), ("f1", False)]


def test_lower_is_better_metrics_must_stay_at_or_below_the_threshold(s3):
    uri = put_metrics(s3, {**CLASSIFIER_METRICS, "problem": "regression", "test": REGRESSOR_TEST})
    passing = handler(
        {"model": "house", "metrics_uri": uri, "quality_gate": {"rmse": 50000, "r2": 0.7}},
        None,
        s3=s3,
    )
    assert passing["passed"] is True
    assert passing["checks"][0] == {
        "metric": "rmse",
        "value": 41000.0,
        "threshold": 50000.0,
        "direction": "max",
        "passed": True,
    }
    failing = handler(
        {"model": "house", "metrics_uri": uri, "quality_gate": {"mae": 25000}}, None, s3=s3
    )
    assert failing["passed"] is False
    assert failing["checks"][0]["direction"] == "max"


def test_explicit_min_and_max_bounds(s3):
    uri = put_metrics(s3, {**CLASSIFIER_METRICS, "test": REGRESSOR_TEST})
    result = handler(
        {
            "model": "house",
            "metrics_uri": uri,
            "quality_gate": {"rmse": {"max": 50000}, "r2": {"min": 0.5, "max": 0.7}},
        },
        None,
        s3=s3,
    )
    assert [(c["metric"], c["direction"], c["passed"]) for c in result["checks"]] == [
        ("rmse", "max", True),
        ("r2", "min", True),
        ("r2", "max", False),
    ]
    assert result["passed"] is False


def test_reads_metrics_json_inside_sagemakers_model_tar_gz(s3):
    uri = put_model_tar(
        s3,
        {
            "model.joblib": b"not really a model",
            "metrics.json": json.dumps(CLASSIFIER_METRICS).encode(),
            "roc_curve.png": b"\x89PNG",
        },
    )
    result = handler(
        {"model": "churn", "model_artifacts_uri": uri, "quality_gate": {"auc": 0.9}}, None, s3=s3
    )
    assert result["passed"] is False
    assert result["checks"][0]["value"] == 0.81


def test_missing_metrics_file_is_an_error_not_a_pass(s3):
    with pytest.raises(GateError, match="NoSuchKey"):
        handler(
            {
                "model": "churn",
                "metrics_uri": f"s3://{BUCKET}/models/none/metrics.json",
                "quality_gate": {"auc": 0.75},
            },
            None,
            s3=s3,
        )


def test_model_tar_without_metrics_json_is_an_error(s3):
    uri = put_model_tar(s3, {"model.joblib": b"x"})
    with pytest.raises(GateError, match="has no metrics.json"):
        handler(
            {"model": "churn", "model_artifacts_uri": uri, "quality_gate": {"auc": 0.75}},
            None,
            s3=s3,
        )


def test_metric_absent_from_metrics_is_an_error_naming_it(s3):
    uri = put_metrics(s3, CLASSIFIER_METRICS)
    with pytest.raises(GateError, match="'rmse' is not in .*test metrics"):
        handler({"model": "churn", "metrics_uri": uri, "quality_gate": {"rmse": 10}}, None, s3=s3)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "not valid JSON"),
        (b'{"train": {"auc": 0.9}}', "no 'test' metrics section"),
        (json.dumps({"test": {"auc": None}}).encode(), "not a finite number"),
    ],
)
def test_unusable_metrics_are_errors(s3, body, message):
    uri = put_metrics(s3, body)
    with pytest.raises(GateError, match=message):
        handler({"model": "churn", "metrics_uri": uri, "quality_gate": {"auc": 0.75}}, None, s3=s3)


@pytest.mark.parametrize(
    "event, message",
    [
        ({"model": "churn", "quality_gate": {"auc": 0.75}}, "names no metrics"),
        (
            {"model": "churn", "metrics_uri": "metrics.json", "quality_gate": {"auc": 0.7}},
            "not an S3 URI",
        ),
        ({"model": "churn", "metrics_uri": "s3://b/k"}, "no quality_gate"),
        (
            {"model": "churn", "metrics_uri": "s3://b/k", "quality_gate": {"auc": "high"}},
            "finite number",
        ),
        (
            {"model": "churn", "metrics_uri": "s3://b/k", "quality_gate": {"auc": {"above": 1}}},
            "{min: x}",
        ),
    ],
)
def test_malformed_events_are_errors(s3, event, message):
    with pytest.raises(GateError, match=re.escape(message)):
        handler(event, None, s3=s3)


def test_unknown_metric_without_explicit_direction_is_an_error():
    with pytest.raises(GateError, match="direction is unknown"):
        gate.evaluate({"logloss": 0.3}, {"logloss": 0.5})
    passed, checks = gate.evaluate({"logloss": 0.3}, {"logloss": {"max": 0.5}})
    assert passed and checks[0]["direction"] == "max"


def test_handler_creates_its_client_only_when_none_is_given(s3):
    uri = put_metrics(s3, CLASSIFIER_METRICS)
    result = handler({"model": "churn", "metrics_uri": uri, "quality_gate": {"auc": 0.75}}, None)
    assert result["passed"] is True


def test_gates_the_metrics_json_that_training_writes(s3, tmp_path):
    """End to end with the real producer: training/train.py's model dir, tarred the way
    SageMaker uploads it, gated on its test AUC."""
    from sklearn.datasets import load_breast_cancer

    sys.path.insert(0, str(REPO_ROOT / "training"))
    import train

    frame = load_breast_cancer(as_frame=True).frame
    metrics = train.train(
        frame,
        train.TrainConfig(
            problem="binary_classification", algorithm="logistic", target="target", cv_folds=0
        ),
        tmp_path / "model",
        log=lambda _: None,
    )
    files = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}
    uri = put_model_tar(s3, files)
    auc = metrics["test"]["auc"]
    result = handler(
        {
            "model": "cancer",
            "model_artifacts_uri": uri,
            "quality_gate": {"auc": auc, "f1": {"min": 0.0}},
        },
        None,
        s3=s3,
    )
    assert result["passed"] is True and result["metrics"] == metrics["test"]
    result = handler(
        {"model": "cancer", "model_artifacts_uri": uri, "quality_gate": {"auc": auc + 1e-9}},
        None,
        s3=s3,
    )
    assert result["passed"] is False


def test_the_deployed_bundle_imports_the_gate_with_the_standard_library_only(tmp_path):
    """The Lambda runtime has no PyYAML or sqlglot: the staged bundle (the gate's modules and
    the `dataplatform` package) imports with nothing else on sys.path, and the gate's metric
    directions are the spec's quality-gate metrics, their single source."""
    bundle = stage_lambda("quality_gate", load_spec(REPO_ROOT / "spec"), tmp_path)
    code = (
        f"import sys; sys.path[:0] = [{str(bundle)!r}]; import json, gate, handler; "
        "print(json.dumps(gate.HIGHER_IS_BETTER))"
    )
    # -I: no PYTHONPATH, no current folder; -S: no site-packages
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == {m: higher for m, (_, higher) in GATE_METRICS.items()}
