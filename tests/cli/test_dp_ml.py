"""`dp train`, `dp models` and `dp pipeline run` through the `dp` app. Training really runs
(train.py in a subprocess on a known table put where the features step writes
customer_features); the pipeline's own behaviour is tested in tests/e2e/test_local_pipeline
(here only its command: exit codes and what it prints)."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from dataplatform.cli import app
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.local.ml_tables import churn_table

runner = CliRunner()
SPEC = str(REPO_ROOT / "spec")


def invoke(*args: str, target: str = "local"):
    return runner.invoke(app, ["--target", target, *args, "--spec", SPEC], env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("dp-ml-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DP_HOME", str(home))
        assert invoke("local", "up").exit_code == 0
        from dataplatform.runtime.local.platform import LocalPlatform
        from dataplatform.spec import load_spec

        local = LocalPlatform(load_spec(REPO_ROOT / "spec"), "dev", state_dir=home)
        frame = churn_table(6)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        local.s3.put_object(
            Bucket=local.names.features_bucket,
            Key="customer_features/part-00000.parquet",
            Body=buffer.getvalue(),
        )
        yield home
        from dataplatform.runtime.local import server

        server.down(home)


def test_train_prints_metrics_gate_registry_and_plots(platform):
    result = invoke("train", "churn")
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "metric",
        "CV mean ± std",
        "gap (train vs test)",
        "auc",
        "f1",
        "decision threshold",
        "confusion matrix",
        "predicted 1",
        "fit diagnosis",
        "quality gate",
        ">= 0.75",
        "pass",
        "registered: arn:aws:sagemaker:",
        "PendingManualApproval",
        "plots, metrics.json and model.joblib: ",
    ):
        assert text in out, text
    assert str(platform / "training" / "mldp-dev-churn-") in out

    models = invoke("models")
    assert models.exit_code == 0, models.output
    assert "mldp-dev-churn" in models.output and "PendingManualApproval" in models.output
    assert "auc=" in models.output
    # house_prices has a group but no package yet
    assert "house_prices" in models.output and "no package yet" in models.output


def test_train_without_the_features_table_exits_1_and_says_how_to_build_it(platform):
    result = invoke("train", "house_prices")
    assert result.exit_code == 1
    assert "dp features house_features" in result.output


@pytest.mark.parametrize("target", ["local", "aws"])
def test_an_unknown_model_exits_2_before_any_platform(target, tmp_path, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(tmp_path))
    result = invoke("train", "churnn", target=target)
    assert result.exit_code == 2
    assert (
        "unknown model 'churnn'; known (spec/models/*.yaml): churn, clv, house_prices"
        in result.output
    )


def test_pipeline_run_reports_the_failed_step_and_exits_1(platform, monkeypatch):
    """Locally too, `dp pipeline run` is the AWS target's execution follower (the state
    machine runs on the local Step Functions): its failure is printed the same way."""
    from dataplatform.runtime.aws import pipeline
    from dataplatform.runtime.results import PipelineStep

    def failing(local, *, as_of=None, progress=None, **_):
        raise pipeline.ExecutionFailed(
            "arn:aws:states:eu-west-1:123456789012:execution:mldp-dev-ml-pipeline:x",
            "FAILED",
            "QualityGateFailedChurn",
            "QualityGateFailed",
            "churn did not pass",
            "https://c",
            [PipelineStep("CurateTelecomEvents", "SUCCEEDED", 1.0)],
        )

    monkeypatch.setattr(pipeline, "run_pipeline", failing)
    result = invoke("pipeline", "run")
    assert result.exit_code == 1
    assert "pipeline failed in state QualityGateFailedChurn" in result.output
    assert "error: QualityGateFailed" in result.output
    assert "cause: churn did not pass" in result.output
    assert "CurateTelecomEvents" in result.output


def test_pipeline_run_aws_prints_the_failing_state(monkeypatch):
    from dataplatform.cli import context
    from dataplatform.runtime.aws import pipeline
    from dataplatform.runtime.aws.platform import AwsPlatform

    def failing(aws, *, as_of=None, progress=None, **_):
        progress("started arn:aws:states:eu-west-1:1:execution:mldp-dev-ml-pipeline:x")
        progress("CurateDatasets: exited")
        raise pipeline.ExecutionFailed(
            "arn:x",
            "FAILED",
            "FeaturesCustomerFeatures",
            "States.TaskFailed",
            "column churned not found",
            "https://c",
        )

    monkeypatch.setattr(pipeline, "run_pipeline", failing)

    # an AwsPlatform that never reached AWS: its run_pipeline calls the patched follower
    def never_reached_aws(ctx, spec):
        aws = AwsPlatform.__new__(AwsPlatform)
        aws.platform = load_spec(spec)  # what the command checks --as-of against
        return aws

    monkeypatch.setitem(context.PLATFORMS, "aws", never_reached_aws)
    result = invoke("pipeline", "run", target="aws")
    assert result.exit_code == 1
    for text in (
        "CurateDatasets: exited",
        "pipeline failed in state FeaturesCustomerFeatures",
        "error: States.TaskFailed",
        "cause: column churned not found",
    ):
        assert text in result.output, text
