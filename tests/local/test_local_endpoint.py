"""The local SageMaker endpoint (runtime/local/endpoint.py) answering a plain boto3
sagemaker-runtime client, on a model.tar.gz that training/train.py really made: the same
probabilities as the pipeline's predict_proba, SageMaker's headers and error codes, bound to
127.0.0.1 only, closed after stop(); the background server's start and stop; and the model
registry's latest Approved package (moto) fetched and served."""

from __future__ import annotations

import json
import os
import socket
import threading

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from dataplatform import layout, registry
from dataplatform.naming import Names
from dataplatform.runtime.local import endpoint
from dataplatform.runtime.local.platform import LOCAL_ACCOUNT
from tests.training.tiny_model import records, train_tiny

REGION = "eu-west-1"
NAMES = Names(project="mldp", env="dev", account=LOCAL_ACCOUNT, region=REGION)
CHURN = NAMES.endpoint("churn")
HOUSES = NAMES.endpoint("house_prices")


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("churn"))


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("houses"), algorithm="linear", problem="regression")


@pytest.fixture(scope="module")
def running(churn, houses):
    with endpoint.serve({CHURN: churn.model_dir, HOUSES: houses.model_dir}, region=REGION) as r:
        yield r


def runtime(url: str):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def invoke(url, name, body, content_type="application/json", accept="application/json"):
    return runtime(url).invoke_endpoint(
        EndpointName=name, Body=body, ContentType=content_type, Accept=accept
    )


def scores(response) -> tuple[list[float], list[int]]:
    predictions = json.loads(response["Body"].read())["predictions"]
    return [p["probability"] for p in predictions], [p["label"] for p in predictions]


def refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
    return False


# ----------------------------------------------------------------------------- InvokeEndpoint


def test_invoke_endpoint_answers_the_pipelines_own_probabilities(running, churn):
    rows = churn.frame
    response = invoke(running.url, CHURN, json.dumps(records(rows)).encode())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ResponseMetadata"]["RequestId"]
    probability, label = scores(response)
    expected = churn.expected_probability(rows)
    assert np.array_equal(np.asarray(probability), expected)  # exactly
    assert label == [int(p >= churn.metrics["threshold"]) for p in expected]


def test_csv_in_and_out(running, churn):
    rows = churn.frame.iloc[:25]
    response = invoke(running.url, CHURN, rows.to_csv(index=False), "text/csv", "text/csv")
    assert response["ContentType"] == "text/csv"
    lines = response["Body"].read().decode().splitlines()
    assert lines[0] == "probability,label"
    assert [float(line.split(",")[0]) for line in lines[1:]] == (
        churn.expected_probability(rows).tolist()
    )


def test_each_endpoint_serves_its_own_model(running, houses):
    rows = houses.frame.iloc[:10]
    response = invoke(running.url, HOUSES, json.dumps(records(rows)))
    predictions = json.loads(response["Body"].read())["predictions"]
    assert [p["prediction"] for p in predictions] == (
        houses.pipeline.predict(rows[houses.features]).tolist()
    )


def test_it_knows_its_endpoints_and_the_local_platforms_account(running, churn, houses):
    assert running.endpoints == {CHURN: str(churn.model_dir), HOUSES: str(houses.model_dir)}
    assert running.account == endpoint.ACCOUNT == LOCAL_ACCOUNT


def test_concurrent_requests_get_their_own_answers(running, churn):
    answers: dict[int, list[float]] = {}

    def call(i: int) -> None:
        rows = churn.frame.iloc[i * 10 : i * 10 + 10]
        answers[i] = scores(invoke(running.url, CHURN, json.dumps(records(rows))))[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(6):
        rows = churn.frame.iloc[i * 10 : i * 10 + 10]
        assert answers[i] == churn.expected_probability(rows).tolist()


def test_an_unknown_endpoint_is_a_validation_error_as_sagemaker_words_it(running):
    with pytest.raises(ClientError) as error:
        invoke(running.url, "mldp-dev-nope", b"{}")
    response = error.value.response
    assert response["Error"]["Code"] == "ValidationError"
    assert response["Error"]["Message"] == (
        f"Endpoint mldp-dev-nope of account {LOCAL_ACCOUNT} not found."
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    client = runtime(running.url)
    with pytest.raises(client.exceptions.ValidationError):  # the modeled exception class
        client.invoke_endpoint(EndpointName="mldp-dev-nope", Body=b"{}")


def test_a_request_the_model_refuses_is_a_model_error_with_its_message(running, churn):
    rows = records(churn.frame.iloc[:2])
    for row in rows:
        del row["plan"]
    client = runtime(running.url)
    with pytest.raises(client.exceptions.ModelError) as error:
        client.invoke_endpoint(
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
    body = json.dumps(records(churn.frame.iloc[:1]))
    with pytest.raises(ClientError) as error:
        invoke(running.url, CHURN, body, "application/x-parquet")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["OriginalStatusCode"] == 415
    with pytest.raises(ClientError) as error:
        invoke(running.url, CHURN, body, "application/json", "application/x-npy")
    assert error.value.response["OriginalStatusCode"] == 406


def test_it_binds_127_0_0_1_only(running):
    assert running.url == f"http://127.0.0.1:{running.port}"
    assert running.host == "127.0.0.1"
    assert not refused("127.0.0.1", running.port)
    # another loopback address reaches a server bound to 0.0.0.0, not one bound to 127.0.0.1
    assert refused("127.0.0.2", running.port)


def test_after_stop_the_port_is_closed_and_pooled_connections_too(churn):
    r = endpoint.serve({CHURN: churn.model_dir})
    client = runtime(r.url)
    body = json.dumps(records(churn.frame.iloc[:1]))
    assert client.invoke_endpoint(EndpointName=CHURN, Body=body)["Body"].read()
    r.stop()
    assert refused("127.0.0.1", r.port)
    with pytest.raises(Exception) as error:  # the kept-alive connection was ended too
        client.invoke_endpoint(EndpointName=CHURN, Body=body)
    assert not isinstance(error.value, ClientError)
    r.stop()  # twice is fine


def test_a_model_directory_that_does_not_load_fails_at_start(tmp_path):
    with pytest.raises(ValueError, match=f"endpoint {CHURN}: cannot load the model"):
        endpoint.serve({CHURN: tmp_path})
    with pytest.raises(ValueError, match="invalid endpoint name"):
        endpoint.serve({"not_valid": tmp_path})


# ----------------------------------------------------------------------------- background


def test_the_background_server_writes_its_port_and_stops_on_sigterm(tmp_path, churn):
    info, started = endpoint.up({CHURN: churn.model_dir}, tmp_path)
    try:
        assert started
        state = json.loads((tmp_path / "endpoint.json").read_text())
        assert state["pid"] == info.pid != os.getpid()
        assert state["port"] == info.port
        assert state["endpoints"] == {CHURN: str(churn.model_dir.resolve())}
        assert endpoint.status(tmp_path) == info
        assert endpoint.up({CHURN: churn.model_dir}, tmp_path) == (info, False)  # reused
        rows = churn.frame.iloc[:5]
        probability, _ = scores(invoke(info.url, CHURN, json.dumps(records(rows))))
        assert probability == churn.expected_probability(rows).tolist()
        assert refused("127.0.0.2", info.port)
    finally:
        assert endpoint.down(tmp_path)
    assert not (tmp_path / "endpoint.json").exists()
    assert refused("127.0.0.1", info.port)
    with pytest.raises(ProcessLookupError):
        os.kill(info.pid, 0)
    assert endpoint.status(tmp_path) is None
    assert not endpoint.down(tmp_path)


# ----------------------------------------------------------------------------- registry


def register(sagemaker, url: str) -> str:
    request = registry.model_package_request(
        package_group=NAMES.model_package_group("churn"),
        model_name="churn",
        training_job="mldp-dev-churn-0000abcd",
        model_data_url=url,
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1",
        test_metrics="auc=0.9",
        inference_source="s3://mldp-dev-artifacts/code/training/sourcedir.tar.gz",
    )
    return sagemaker.create_model_package(**request)["ModelPackageArn"]


@pytest.fixture
def sagemaker():
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model_package_group(ModelPackageGroupName=NAMES.model_package_group("churn"))
        yield client


def model_url(version: int) -> str:
    return f"s3://{NAMES.models_bucket}/{layout.model_artifact_key('churn', f'job-{version}')}"


def test_the_latest_approved_package_is_the_highest_approved_version(sagemaker):
    assert endpoint.latest_approved_package(sagemaker, NAMES, "churn") is None  # no package
    first, second = register(sagemaker, model_url(1)), register(sagemaker, model_url(2))
    assert endpoint.latest_approved_package(sagemaker, NAMES, "churn") is None  # none approved
    sagemaker.update_model_package(ModelPackageArn=first, ModelApprovalStatus="Approved")
    assert endpoint.latest_approved_package(sagemaker, NAMES, "churn") == (1, model_url(1))
    sagemaker.update_model_package(ModelPackageArn=second, ModelApprovalStatus="Approved")
    assert endpoint.latest_approved_package(sagemaker, NAMES, "churn") == (2, model_url(2))
    sagemaker.update_model_package(ModelPackageArn=second, ModelApprovalStatus="Rejected")
    assert endpoint.latest_approved_package(sagemaker, NAMES, "churn") == (1, model_url(1))
    assert endpoint.latest_approved_package(sagemaker, NAMES, "house_prices") is None  # no group


def test_the_approved_package_is_fetched_and_served(sagemaker, churn, tmp_path):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(
        Bucket=NAMES.models_bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    url = model_url(1)
    bucket, key = url[len("s3://") :].split("/", 1)
    s3.upload_file(str(churn.archive), bucket, key)
    sagemaker.update_model_package(
        ModelPackageArn=register(sagemaker, url), ModelApprovalStatus="Approved"
    )
    version, found = endpoint.latest_approved_package(sagemaker, NAMES, "churn")
    model_dir = endpoint.fetch_model(s3, found, tmp_path / CHURN / f"v{version}")
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        p.name for p in churn.model_dir.iterdir()
    )
    with pytest.raises(ValueError, match="not an S3 URL"):
        endpoint.fetch_model(s3, "https://example.com/model.tar.gz", tmp_path / "x")
    with endpoint.serve({CHURN: model_dir}) as r:
        rows = churn.frame.iloc[:30]
        probability, _ = scores(invoke(r.url, CHURN, json.dumps(records(rows))))
    assert probability == churn.expected_probability(rows).tolist()
