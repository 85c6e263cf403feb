"""`dp train` on the local platform, without Spark: a known dataset (scikit-learn's breast
cancer rows, shaped like customer_features) is written as Parquet where the features EMR
step writes customer_features, then the AWS target's training code creates the SageMaker
training job on the local SageMaker, which really runs training/train.py as script mode
runs it. Asserted on what real code produced: the model.tar.gz in the models bucket (its
metrics.json equals the run's and the job's FinalMetricDataList), the package in moto's
(faithful) model registry only when the gate passed, the job described with the shared
request, its log in CloudWatch Logs, and its description the same after a restart."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from dataplatform import layout
from dataplatform.runtime.errors import JobFailed
from dataplatform.runtime.local import provision, server
from dataplatform.runtime.local.platform import LocalPlatform
from dataplatform.runtime.model_registry import TrainingFailed, gate_module, list_models
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.local.ml_tables import churn_table

ENV = "dev"


def put_table(local, table: str, frame: pd.DataFrame) -> None:
    prefix = layout.features_prefix(table)
    half = len(frame) // 2
    for i, part in enumerate((frame.iloc[:half], frame.iloc[half:])):
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        local.s3.put_object(
            Bucket=local.names.features_bucket,
            Key=f"{prefix}part-{i:05d}.snappy.parquet",
            Body=buffer.getvalue(),
        )
    # what Spark leaves next to the data: never read as training data
    local.s3.put_object(Bucket=local.names.features_bucket, Key=f"{prefix}_SUCCESS", Body=b"")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    home = tmp_path_factory.mktemp("dp-train")
    info, _ = server.up(home)
    try:
        platform = load_spec(REPO_ROOT / "spec")
        lp = LocalPlatform(platform, ENV, state_dir=home)
        provision.provision(platform, lp.settings, lp.names, lp.client)
        put_table(lp, "customer_features", churn_table(10))
        put_table(lp, "noise_features", churn_table(10, noise_labels=True))
        yield lp
    finally:
        server.down(home)


@pytest.fixture(scope="module")
def churn(local):
    return next(m for m in local.platform.models if m.name == "churn")


@pytest.fixture(scope="module")
def passing(local, churn):
    lines = []
    run = local.train(churn, progress=lines.append)
    return run, lines


def artifact(local, uri: str) -> dict[str, bytes]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    data = local.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_training_uploads_sagemakers_model_tar_with_the_runs_metrics(local, passing):
    run, lines = passing
    assert (
        run.job_name.startswith("mldp-dev-churn-")
        and len(run.job_name) == len("mldp-dev-churn-") + 8
    )
    assert run.artifact_uri == (
        f"s3://{local.names.models_bucket}/{layout.model_artifact_key('churn', run.job_name)}"
    )
    files = artifact(local, run.artifact_uri)
    # files at the archive root, as SageMaker packs /opt/ml/model
    assert {
        "model.joblib",
        "metrics.json",
        "roc_curve.png",
        "confusion_matrix.png",
        "feature_importance.png",
    } <= set(files)
    assert json.loads(files["metrics.json"]) == run.metrics
    # the known answer: logistic regression on breast cancer ranks almost perfectly
    assert run.metrics["test"]["auc"] >= 0.97
    assert run.metrics["n_train"] + run.metrics["n_test"] == 569
    assert "customer_id" not in run.metrics["features"] and "as_of" not in run.metrics["features"]
    # the job's metric definitions read train.py's printed lines: they match metrics.json
    assert run.reported_metrics["test_auc"] == run.metrics["test"]["auc"]
    assert run.reported_metrics["threshold"] == run.metrics["threshold"]
    assert run.reported_metrics["cv_auc_mean"] == run.metrics["cv"]["auc"]["mean"]
    # progress: the job's SecondaryStatus transitions as polled, in SageMaker's order
    order = ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    reported = [line.split(": ", 1)[1].split(" - ")[0] for line in lines[1:] if " - " in line]
    assert reported[-1] == "Completed" and reported == sorted(reported, key=order.index)
    # the plots are on disk where the run says (the artifact unpacked)
    assert Path(run.model_dir, "roc_curve.png").is_file()
    assert Path(run.model_dir).parent.parent == local.state_dir / "training"


def test_a_passing_gate_registers_a_package_with_the_state_machines_metadata(local, passing):
    run, _ = passing
    assert run.passed and run.gate["checks"][0]["metric"] == "auc"
    sm = local.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=run.package_arn)
    assert package["ModelPackageGroupName"] == local.names.model_package_group("churn")
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == run.artifact_uri
    assert "sagemaker-scikit-learn" in container["Image"]
    props = package["CustomerMetadataProperties"]
    assert props["training_job"] == run.job_name
    assert gate_module().parse_registry_metrics(props["test_metrics"]) == pytest.approx(
        run.metrics["test"], rel=1e-5
    )


def test_the_training_job_is_recorded_with_the_shared_request(local, passing):
    run, _ = passing
    job = local.client("sagemaker").describe_training_job(TrainingJobName=run.job_name)
    hps = {k: json.loads(v) for k, v in job["HyperParameters"].items()}
    assert hps["target"] == "churned" and hps["algorithm"] == "logistic"
    assert (
        job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{local.names.features_bucket}/customer_features/"
    )
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{local.names.models_bucket}/churn/"


def test_a_failing_gate_trains_but_registers_nothing(local, churn):
    sm = local.client("sagemaker")
    group = local.names.model_package_group("churn")
    before = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    noise = dataclasses.replace(churn, features_table="noise_features")
    run = local.train(noise)
    assert not run.passed and run.package_arn is None
    assert run.gate["checks"][0]["value"] < 0.75  # chance level on permuted labels
    assert json.loads(artifact(local, run.artifact_uri)["metrics.json"]) == run.metrics
    after = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert after == before
    models = {m.model: m for m in list_models(sm, local.platform, local.names)}
    assert run.job_name not in [p.training_job for p in models["churn"].packages]
    assert models["house_prices"].packages == []


def log_lines(local, job: str) -> list[str]:
    """The job's log, as SageMaker keeps it: CloudWatch Logs, /aws/sagemaker/TrainingJobs."""
    logs = local.client("logs")
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{job}/algo-1-"
    )["events"]
    return [e["message"] for e in events]


def test_the_jobs_log_is_in_cloudwatch_logs_with_the_metric_lines(local, passing):
    run, _ = passing
    lines = log_lines(local, run.job_name)
    assert f"test_auc={run.metrics['test']['auc']};" in lines
    assert run.log_path == (
        f"CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams {run.job_name}/algo-*"
    )


def test_a_bad_target_fails_naming_the_column_and_the_log(local, churn):
    bad = dataclasses.replace(churn, target="churned_next_month")
    with pytest.raises(JobFailed) as failure:
        local.train(bad)
    message = str(failure.value)
    assert isinstance(failure.value, TrainingFailed)
    assert "Failed" in message and "AlgorithmError" in message
    assert "training failed:" in message and "churned_next_month" in message
    assert failure.value.log_path and failure.value.log_path in message
    assert any("churned_next_month" in line for line in log_lines(local, failure.value.job_name))


def test_a_missing_features_table_says_how_to_build_it(local, churn):
    with pytest.raises(TrainingFailed, match="dp features house_features") as failure:
        local.train("house_prices")
    # SageMaker's own reason, from the job's download of its train channel
    assert "ClientError: No S3 objects found under S3 URL" in str(failure.value)


def test_a_restart_keeps_the_finished_jobs_description(local, passing):
    """The server stopped and started again: the job is described as before (the service's
    records), and its artifact is where it was (the journal)."""
    run, _ = passing
    sagemaker = local.client("sagemaker")
    before = sagemaker.describe_training_job(TrainingJobName=run.job_name)
    server.down(local.state_dir)
    info, started = server.up(local.state_dir)
    assert started
    again = LocalPlatform(local.platform, ENV, state_dir=local.state_dir)
    after = again.client("sagemaker").describe_training_job(TrainingJobName=run.job_name)
    for meta in (before, after):
        meta.pop("ResponseMetadata")
    assert after == before
    assert json.loads(artifact(again, run.artifact_uri)["metrics.json"]) == run.metrics
