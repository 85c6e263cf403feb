"""InvokeEndpoint on the local platform's SageMaker (runtime/local/services/sagemaker.py and
sagemaker_serving.py), as a plain boto3 sagemaker-runtime client sees it, on models that
training/train.py really made, served by training/inference.py from the same
sourcedir.tar.gz the training jobs run: the same probabilities as the pipeline's
predict_proba, SageMaker Runtime's headers and error codes, each endpoint its own model and
its own serving code; an endpoint whose model cannot load is Failed, saying why; a deleted
one is not found. Its own server (no Spark): the models are made in-process."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from dataplatform.bundle import training_source_bytes
from dataplatform.runtime.local import server
from dataplatform.runtime.local.platform import LOCAL_ACCOUNT
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY
from tests.training.tiny_model import records, train_tiny

REGION = "eu-west-1"
BUCKET = "models-bucket"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/sagemaker"
CHURN, HOUSES = "mldp-dev-churn", "mldp-dev-house-prices"


def client(service: str, info):
    return boto3.client(
        service,
        endpoint_url=info.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def code_archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wait_settled(sagemaker, name: str) -> dict:
    for _ in range(600):
        described = sagemaker.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            return described
        time.sleep(0.1)
    raise AssertionError(f"{name} still {described['EndpointStatus']}")


def deploy(sagemaker, name: str, model_data: str, code: str, program: str = "inference.py"):
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": model_data,
            "Environment": {"SAGEMAKER_PROGRAM": program, "SAGEMAKER_SUBMIT_DIRECTORY": code},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_settled(sagemaker, name)


# Two serving programs with the same file names, each importing its own helper.py: an
# endpoint answers with its own helper's constant, whatever the other endpoint loaded.
SERVING = """
import helper

def model_fn(model_dir):
    return helper.ANSWER

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return {"answer": model, "helper": helper.ANSWER}

def output_fn(prediction, accept):
    import json
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("churn"))


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("houses"), algorithm="linear", problem="regression")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("dp-endpoint")


@pytest.fixture(scope="module")
def running(home, churn, houses):
    info, _ = server.up(home)
    try:
        s3, sagemaker = client("s3", info), client("sagemaker", info)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        objects = {
            "churn/model.tar.gz": churn.archive.read_bytes(),
            "houses/model.tar.gz": houses.archive.read_bytes(),
            "code/sourcedir.tar.gz": training_source_bytes(),
            "code/a.tar.gz": code_archive({"inference.py": SERVING, "helper.py": "ANSWER = 'a'"}),
            "code/b.tar.gz": code_archive({"inference.py": SERVING, "helper.py": "ANSWER = 'b'"}),
            "broken/model.tar.gz": code_archive({"metrics.json": "{}"}),  # no model.joblib
        }
        for key, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        source = f"s3://{BUCKET}/code/sourcedir.tar.gz"
        described = {
            CHURN: deploy(sagemaker, CHURN, f"s3://{BUCKET}/churn/model.tar.gz", source),
            HOUSES: deploy(sagemaker, HOUSES, f"s3://{BUCKET}/houses/model.tar.gz", source),
        }
        yield info, described
    finally:
        server.down(home)


def invoke(info, name, body, content_type="application/json", accept="application/json"):
    return client("sagemaker-runtime", info).invoke_endpoint(
        EndpointName=name, Body=body, ContentType=content_type, Accept=accept
    )


def scores(response) -> tuple[list[float], list[int]]:
    predictions = json.loads(response["Body"].read())["predictions"]
    return [p["probability"] for p in predictions], [p["label"] for p in predictions]


# ----------------------------------------------------------------------------- InvokeEndpoint


def test_invoke_endpoint_answers_the_pipelines_own_probabilities(running, churn):
    info, _ = running
    rows = churn.frame
    response = invoke(info, CHURN, json.dumps(records(rows)).encode())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ResponseMetadata"]["RequestId"]
    probability, label = scores(response)
    expected = churn.expected_probability(rows)
    assert np.array_equal(np.asarray(probability), expected)  # exactly
    assert label == [int(p >= churn.metrics["threshold"]) for p in expected]


def test_csv_in_and_out(running, churn):
    info, _ = running
    rows = churn.frame.iloc[:25]
    response = invoke(info, CHURN, rows.to_csv(index=False), "text/csv", "text/csv")
    assert response["ContentType"] == "text/csv"
    lines = response["Body"].read().decode().splitlines()
    assert lines[0] == "probability,label"
    assert [float(line.split(",")[0]) for line in lines[1:]] == (
        churn.expected_probability(rows).tolist()
    )


def test_each_endpoint_serves_its_own_model(running, houses):
    info, _ = running
    rows = houses.frame.iloc[:10]
    response = invoke(info, HOUSES, json.dumps(records(rows)))
    predictions = json.loads(response["Body"].read())["predictions"]
    assert [p["prediction"] for p in predictions] == (
        houses.pipeline.predict(rows[houses.features]).tolist()
    )


def test_the_endpoints_are_described_and_listed_as_sagemaker_does(running):
    info, described = running
    churn = described[CHURN]
    assert churn["EndpointStatus"] == "InService" and "FailureReason" not in churn
    assert churn["EndpointArn"] == f"arn:aws:sagemaker:{REGION}:{LOCAL_ACCOUNT}:endpoint/{CHURN}"
    (variant,) = churn["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert churn["CreationTime"] <= churn["LastModifiedTime"]
    listed = client("sagemaker", info).list_endpoints(SortBy="Name", SortOrder="Ascending")
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed["Endpoints"]] == [
        (CHURN, "InService"),
        (HOUSES, "InService"),
    ]


def test_concurrent_requests_get_their_own_answers(running, churn):
    info, _ = running
    answers: dict[int, list[float]] = {}

    def call(i: int) -> None:
        rows = churn.frame.iloc[i * 10 : i * 10 + 10]
        answers[i] = scores(invoke(info, CHURN, json.dumps(records(rows))))[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(6):
        rows = churn.frame.iloc[i * 10 : i * 10 + 10]
        assert answers[i] == churn.expected_probability(rows).tolist()


def test_an_unknown_endpoint_is_a_validation_error_as_sagemaker_words_it(running):
    info, _ = running
    with pytest.raises(ClientError) as error:
        invoke(info, "mldp-dev-nope", b"{}")
    response = error.value.response
    assert response["Error"]["Code"] == "ValidationError"
    assert response["Error"]["Message"] == (
        f"Endpoint mldp-dev-nope of account {LOCAL_ACCOUNT} not found."
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    runtime = client("sagemaker-runtime", info)
    with pytest.raises(runtime.exceptions.ValidationError):  # the modeled exception class
        runtime.invoke_endpoint(EndpointName="mldp-dev-nope", Body=b"{}")


def test_a_request_the_model_refuses_is_a_model_error_with_its_message(running, churn):
    info, _ = running
    rows = records(churn.frame.iloc[:2])
    for row in rows:
        del row["plan"]
    runtime = client("sagemaker-runtime", info)
    with pytest.raises(runtime.exceptions.ModelError) as error:
        runtime.invoke_endpoint(
            EndpointName=CHURN, Body=json.dumps(rows), ContentType="application/json"
        )
    response = error.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "missing feature(s) plan" in response["Error"]["Message"]
    assert response["OriginalStatusCode"] == 400
    assert response["OriginalMessage"].startswith("missing feature(s) plan: the model needs")
    assert response["LogStreamArn"].endswith(f":log-group:/aws/sagemaker/Endpoints/{CHURN}")


def test_unsupported_content_type_and_accept_are_model_errors(running, churn):
    info, _ = running
    body = json.dumps(records(churn.frame.iloc[:1]))
    with pytest.raises(ClientError) as error:
        invoke(info, CHURN, body, "application/x-parquet")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["OriginalStatusCode"] == 415
    with pytest.raises(ClientError) as error:
        invoke(info, CHURN, body, "application/json", "application/x-npy")
    assert error.value.response["OriginalStatusCode"] == 406


def test_two_endpoints_serving_code_of_the_same_names_do_not_share_modules(running):
    info, _ = running
    sagemaker = client("sagemaker", info)
    model = f"s3://{BUCKET}/churn/model.tar.gz"
    for name in ("code-a", "code-b"):
        assert (
            deploy(sagemaker, name, model, f"s3://{BUCKET}/code/{name[-1]}.tar.gz")[
                "EndpointStatus"
            ]
            == "InService"
        )
    for name in ("code-a", "code-b", "code-a"):
        answer = json.loads(invoke(info, name, b"{}")["Body"].read())
        assert answer == {"answer": name[-1], "helper": name[-1]}


def test_a_model_that_cannot_load_fails_the_endpoint_saying_why(running):
    info, _ = running
    sagemaker = client("sagemaker", info)
    described = deploy(
        sagemaker,
        "broken",
        f"s3://{BUCKET}/broken/model.tar.gz",
        f"s3://{BUCKET}/code/sourcedir.tar.gz",
    )
    assert described["EndpointStatus"] == "Failed"
    assert "model_fn could not load" in described["FailureReason"]
    assert "no model.joblib" in described["FailureReason"]
    with pytest.raises(ClientError) as error:
        invoke(info, "broken", b"{}")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "is Failed" in error.value.response["Error"]["Message"]


def test_a_deleted_endpoint_is_not_found(running, churn):
    info, _ = running
    sagemaker = client("sagemaker", info)
    deploy(
        sagemaker,
        "short-lived",
        f"s3://{BUCKET}/churn/model.tar.gz",
        f"s3://{BUCKET}/code/sourcedir.tar.gz",
    )
    body = json.dumps(records(churn.frame.iloc[:3]))
    assert scores(invoke(info, "short-lived", body))[0] == (
        churn.expected_probability(churn.frame.iloc[:3]).tolist()
    )
    sagemaker.delete_endpoint(EndpointName="short-lived")
    with pytest.raises(ClientError) as error:
        sagemaker.describe_endpoint(EndpointName="short-lived")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "Could not find endpoint" in error.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as error:
        invoke(info, "short-lived", body)
    assert error.value.response["Error"]["Message"] == (
        f"Endpoint short-lived of account {LOCAL_ACCOUNT} not found."
    )


def test_after_a_restart_an_endpoint_in_service_answers_again(home, running, churn):
    """The endpoint's record outlives the server, and its model is loaded again (from S3,
    by its serving code) on the first request after the restart. (Last: the server moves.)"""
    info, _ = running
    rows = churn.frame.iloc[:20]
    before = scores(invoke(info, CHURN, json.dumps(records(rows))))[0]
    server.down(home)
    again, started = server.up(home)
    assert started
    described = client("sagemaker", again).describe_endpoint(EndpointName=CHURN)
    assert described["EndpointStatus"] == "InService"
    assert scores(invoke(again, CHURN, json.dumps(records(rows))))[0] == before
