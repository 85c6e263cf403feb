"""The local platform as a SageMaker endpoint, driven as a stranger would drive AWS: plain
boto3 clients whose endpoint_url is the running server, nothing of `dp` but the request
the AWS target builds for a model of the spec (runtime/aws/training.training_request).

A known table (scikit-learn's breast cancer rows, shaped like customer_features) is where
the features step writes it. Training jobs run training/train.py from the deployed
sourcedir.tar.gz; their model.tar.gz is read back and loaded, and the endpoints made of
it answer what the model loaded here answers for the same rows."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import boto3
import joblib
import pytest
from botocore.exceptions import ClientError

from dataplatform import layout, training_job
from dataplatform.runtime.aws.training import training_request
from dataplatform.runtime.local import provision
from dataplatform.runtime.local.platform import LOCAL_ACCOUNT, LocalPlatform
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.local.ml_tables import churn_table
from tests.training.tiny_model import records

TRAINING = REPO_ROOT / "training"
if str(TRAINING) not in sys.path:
    sys.path.insert(0, str(TRAINING))
import inference  # noqa: E402

TERMINAL = ("Completed", "Failed", "Stopped")
SECONDARY = ["Starting", "Downloading", "Training", "Uploading", "Completed"]
ROWS = churn_table(8)


@pytest.fixture(scope="module")
def platform(empty_platform, tmp_path_factory):
    """The session's platform, emptied and provisioned as `dp local up` provisions it, with
    the known table; (LocalPlatform, a boto3 client factory on the server's URL)."""
    home, info = empty_platform
    spec = load_spec(REPO_ROOT / "spec")
    local = LocalPlatform(spec, "dev", state_dir=home)
    provision.provision(spec, local.settings, local.names, local.client)
    buffer = io.BytesIO()
    ROWS.to_parquet(buffer, index=False)
    local.s3.put_object(
        Bucket=local.names.features_bucket,
        Key=f"{layout.features_prefix('customer_features')}part-00000.snappy.parquet",
        Body=buffer.getvalue(),
    )

    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=info.endpoint,
            region_name=local.settings.region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    return local, client


def request_for(local, job: str, **model_changes) -> dict:
    """CreateTrainingJob's request of spec/models/churn.yaml (changed as given), with the
    role, subnets, security group and key the platform provisioned."""
    churn = next(m for m in local.platform.models if m.name == "churn")
    return training_request(local, dataclasses.replace(churn, **model_changes), job)


def wait_for(sagemaker, job: str) -> dict:
    for _ in range(1200):
        described = sagemaker.describe_training_job(TrainingJobName=job)
        if described["TrainingJobStatus"] in TERMINAL:
            return described
        time.sleep(0.1)
    raise AssertionError(f"{job} still {described['TrainingJobStatus']}")


def wait_settled(sagemaker, name: str) -> dict:
    for _ in range(600):
        described = sagemaker.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            return described
        time.sleep(0.1)
    raise AssertionError(f"{name} still {described['EndpointStatus']}")


def read_artifact(s3, uri: str, into: Path) -> Path:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        tar.extractall(into, filter="data")
    return into


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """Two versions of churn trained at once (the service runs two jobs at a time): C=1 and
    a random forest; {version: (description, the model.tar.gz extracted here)}."""
    local, client = platform
    sagemaker = client("sagemaker")
    jobs = {
        1: request_for(local, "churn-v1"),
        2: request_for(
            local,
            "churn-v2",
            algorithm="random_forest",
            hyperparameters={"n_estimators": 30, "max_depth": 3},
        ),
    }
    arns = {
        v: sagemaker.create_training_job(**request)["TrainingJobArn"] for v, request in jobs.items()
    }
    assert (
        arns[1]
        == f"arn:aws:sagemaker:{local.settings.region}:{LOCAL_ACCOUNT}:training-job/churn-v1"
    )
    found = {}
    for version, request in jobs.items():
        described = wait_for(sagemaker, request["TrainingJobName"])
        folder = tmp_path_factory.mktemp(f"v{version}")
        if described["TrainingJobStatus"] == "Completed":
            read_artifact(client("s3"), described["ModelArtifacts"]["S3ModelArtifacts"], folder)
        found[version] = (described, folder)
    return found


# ----------------------------------------------------------------------------- training


def test_a_training_job_runs_the_script_and_leaves_model_tar_gz_where_sagemaker_puts_it(
    platform, trained
):
    local, _ = platform
    described, folder = trained[1]
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == (
        f"s3://{local.names.models_bucket}/{layout.model_artifact_key('churn', 'churn-v1')}"
    )
    # the model loads, as joblib and as the serving code's model_fn, and predicts the rows
    pipeline = joblib.load(folder / "model.joblib")
    metrics = json.loads((folder / "metrics.json").read_text())
    probability = pipeline.predict_proba(ROWS[metrics["features"]])[:, 1]
    assert probability.shape == (len(ROWS),)
    served = inference.model_fn(str(folder))
    assert inference.predict_fn(ROWS, served)["probability"] == probability.tolist()
    # the job's own metric definitions over its output: the last value of each
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    names = [d["Name"] for d in described["AlgorithmSpecification"]["MetricDefinitions"]]
    assert sorted(final) == sorted(names)
    assert final["test_auc"] == metrics["test"]["auc"] >= 0.97  # the known answer
    assert final["threshold"] == metrics["threshold"]
    assert final["cv_auc_mean"] == metrics["cv"]["auc"]["mean"]
    assert metrics["n_train"] + metrics["n_test"] == len(ROWS)
    # SageMaker's bookkeeping
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert statuses == SECONDARY
    assert all(t["StatusMessage"] and t["EndTime"] for t in described["SecondaryStatusTransitions"])
    assert described["TrainingTimeInSeconds"] >= 1
    assert described["BillableTimeInSeconds"] == described["TrainingTimeInSeconds"]
    assert (
        described["CreationTime"] <= described["TrainingStartTime"] < described["TrainingEndTime"]
    )


def test_the_artifact_is_encrypted_with_the_jobs_output_key(platform, trained):
    local, client = platform
    described, _ = trained[1]
    bucket, key = (
        described["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    )
    head = client("s3").head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == described["OutputDataConfig"]["KmsKeyId"]


def test_a_name_already_used_is_resource_in_use(platform, trained):
    local, client = platform
    sagemaker = client("sagemaker")
    with pytest.raises(sagemaker.exceptions.ResourceInUse):
        sagemaker.create_training_job(**request_for(local, "churn-v1"))


def test_a_job_whose_script_fails_is_failed_with_the_scripts_error(platform, trained):
    local, client = platform
    sagemaker = client("sagemaker")
    sagemaker.create_training_job(**request_for(local, "churn-bad-target", target="no_such_column"))
    described = wait_for(sagemaker, "churn-bad-target")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["SecondaryStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError: ")
    assert "training failed:" in described["FailureReason"]
    assert "no_such_column" in described["FailureReason"]
    assert "ModelArtifacts" not in described
    listed = sagemaker.list_training_jobs(StatusEquals="Failed", NameContains="BAD")
    assert [s["TrainingJobName"] for s in listed["TrainingJobSummaries"]] == ["churn-bad-target"]
    first = sagemaker.list_training_jobs(MaxResults=1, SortBy="Name", SortOrder="Ascending")
    assert [s["TrainingJobName"] for s in first["TrainingJobSummaries"]] == ["churn-bad-target"]
    second = sagemaker.list_training_jobs(
        MaxResults=1, SortBy="Name", SortOrder="Ascending", NextToken=first["NextToken"]
    )
    assert [s["TrainingJobName"] for s in second["TrainingJobSummaries"]] == ["churn-v1"]


def test_stop_training_job_and_max_runtime_stop_a_script_that_never_ends(platform, trained):
    """A script that saves a model and then waits forever: StopTrainingJob stops it, and
    so does its MaxRuntimeInSeconds; what it saved is uploaded, as SageMaker keeps it."""
    local, client = platform
    sagemaker, s3 = client("sagemaker"), client("s3")
    script = (
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['SM_MODEL_DIR'], 'saved.txt').write_text('kept')\n"
        "print('saved', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("forever.py")
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script.encode()))
    s3.put_object(
        Bucket=local.names.artifacts_bucket, Key="code/forever.tar.gz", Body=buffer.getvalue()
    )
    request = request_for(local, "forever-stopped")
    request["HyperParameters"] = {
        "sagemaker_program": json.dumps("forever.py"),
        "sagemaker_submit_directory": json.dumps(
            f"s3://{local.names.artifacts_bucket}/code/forever.tar.gz"
        ),
    }
    sagemaker.create_training_job(**request)
    logs = client("logs")
    for _ in range(600):  # until the script says it saved its model (its log, as on AWS)
        streams = (
            logs.describe_log_streams(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="forever-stopped/"
            )["logStreams"]
            if "/aws/sagemaker/TrainingJobs"
            in [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]]
            else []
        )
        if streams and any(
            e["message"] == "saved"
            for e in logs.get_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs",
                logStreamName=streams[0]["logStreamName"],
            )["events"]
        ):
            break
        time.sleep(0.1)
    sagemaker.stop_training_job(TrainingJobName="forever-stopped")
    stopped = wait_for(sagemaker, "forever-stopped")
    assert (stopped["TrainingJobStatus"], stopped["SecondaryStatus"]) == ("Stopped", "Stopped")
    artifact = stopped["ModelArtifacts"]["S3ModelArtifacts"]
    with tarfile.open(
        fileobj=io.BytesIO(
            s3.get_object(Bucket=local.names.models_bucket, Key=artifact.split("/", 3)[3])[
                "Body"
            ].read()
        ),
        mode="r:gz",
    ) as tar:
        assert tar.extractfile("saved.txt").read() == b"kept"
    with pytest.raises(ClientError, match="in status Stopped"):
        sagemaker.stop_training_job(TrainingJobName="forever-stopped")

    request = {**request, "TrainingJobName": "forever-timed-out"}
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 1}
    request.pop("CheckpointConfig", None)
    request["EnableManagedSpotTraining"] = False
    sagemaker.create_training_job(**request)
    timed_out = wait_for(sagemaker, "forever-timed-out")
    assert (timed_out["TrainingJobStatus"], timed_out["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    )


def test_a_job_nobody_may_run_is_refused_as_sagemaker_refuses_it(platform):
    local, client = platform
    sagemaker = client("sagemaker")
    request = request_for(local, "churn-no-role")
    request["RoleArn"] = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/no-such-role"
    with pytest.raises(ClientError, match="Could not assume role"):
        sagemaker.create_training_job(**request)
    with pytest.raises(ClientError) as error:
        sagemaker.describe_training_job(TrainingJobName="churn-no-role")
    assert error.value.response["Error"]["Code"] == "ValidationException"


# ----------------------------------------------------------------------------- endpoints


def create_model(sagemaker, local, name: str, described: dict) -> None:
    """A model of the job's artifact, served by training/'s inference.py, as a SageMaker
    user creates one (the deployer Lambda names a model package instead: tests/e2e)."""
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=described["RoleArn"],
        PrimaryContainer={
            "Image": described["AlgorithmSpecification"]["TrainingImage"],
            "ModelDataUrl": described["ModelArtifacts"]["S3ModelArtifacts"],
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": training_job.source_uri(local.names),
            },
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )


def expected(folder: Path, rows) -> list[float]:
    pipeline = joblib.load(folder / "model.joblib")
    features = json.loads((folder / "metrics.json").read_text())["features"]
    return pipeline.predict_proba(rows[features])[:, 1].tolist()


def probabilities(runtime, name: str, rows) -> list[float]:
    response = runtime.invoke_endpoint(
        EndpointName=name,
        Body=json.dumps(records(rows)),
        ContentType="application/json",
        Accept="application/json",
    )
    assert response["InvokedProductionVariant"] == "AllTraffic"
    return [p["probability"] for p in json.loads(response["Body"].read())["predictions"]]


def test_an_endpoint_answers_the_models_predictions_and_rolls_to_a_new_version(platform, trained):
    local, client = platform
    sagemaker, runtime = client("sagemaker"), client("sagemaker-runtime")
    (v1, folder1), (v2, folder2) = trained[1], trained[2]
    assert v2["TrainingJobStatus"] == "Completed", v2.get("FailureReason")
    create_model(sagemaker, local, "churn-model-v1", v1)
    create_model(sagemaker, local, "churn-model-v2", v2)
    rows = ROWS.iloc[::7]
    first, second = expected(folder1, rows), expected(folder2, rows)
    assert first != second  # two different models

    sagemaker.create_endpoint(EndpointName="churn-endpoint", EndpointConfigName="churn-model-v1")
    described = wait_settled(sagemaker, "churn-endpoint")
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert described["EndpointConfigName"] == "churn-model-v1"
    (variant,) = described["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic" and variant["CurrentInstanceCount"] == 1
    assert (
        variant["DeployedImages"][0]["SpecifiedImage"]
        == v1["AlgorithmSpecification"]["TrainingImage"]
    )
    assert probabilities(runtime, "churn-endpoint", rows) == first  # exactly
    listed = sagemaker.list_endpoints(NameContains="churn", StatusEquals="InService")
    assert [e["EndpointName"] for e in listed["Endpoints"]] == ["churn-endpoint"]

    with pytest.raises(runtime.exceptions.ValidationError, match="not found"):
        runtime.invoke_endpoint(EndpointName="churn-nope", Body=b"{}")

    sagemaker.update_endpoint(EndpointName="churn-endpoint", EndpointConfigName="churn-model-v2")
    updating = sagemaker.describe_endpoint(EndpointName="churn-endpoint")
    if updating["EndpointStatus"] == "Updating":  # blue/green: the old model still answers
        assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "churn-model-v2"
        answered = probabilities(runtime, "churn-endpoint", rows)
        assert answered == first or answered == pytest.approx(second, rel=1e-12)
    rolled = wait_settled(sagemaker, "churn-endpoint")
    assert rolled["EndpointStatus"] == "InService", rolled.get("FailureReason")
    assert rolled["EndpointConfigName"] == "churn-model-v2"
    assert rolled["LastModifiedTime"] > described["LastModifiedTime"]
    # a forest sums its trees' probabilities on threads: equal to the last bits
    assert probabilities(runtime, "churn-endpoint", rows) == pytest.approx(second, rel=1e-12)

    sagemaker.delete_endpoint(EndpointName="churn-endpoint")
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName="churn-endpoint")
    with pytest.raises(runtime.exceptions.ValidationError, match="not found"):
        probabilities(runtime, "churn-endpoint", rows)
    assert sagemaker.list_endpoints()["Endpoints"] == []
