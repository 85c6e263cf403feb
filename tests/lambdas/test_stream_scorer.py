"""The stream scorer Lambda as deployed: its staged bundle's handler, given a Kinesis
event (base64 records with sequence numbers) and the environment the serving stack sets,
keeps the online features, writes scores and answers a partial batch response."""

from __future__ import annotations

import base64
import importlib.util
import json

import boto3
import pytest
from moto import mock_aws

from dataplatform.bundle import stage_lambda
from dataplatform.serving import scorer_environment
from tests.online.serving_resources import ensure_serving
from tests.online.test_scorer import NAMES, PLATFORM, REGION, ScriptedEndpoint, sample


@pytest.fixture
def handler_module(tmp_path, monkeypatch):
    bundle = stage_lambda("stream_scorer", PLATFORM, tmp_path)
    assert (bundle / "spec.json").is_file() and (bundle / "dataplatform").is_dir()
    spec = importlib.util.spec_from_file_location("stream_scorer_handler", bundle / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    churn = next(m for m in PLATFORM.models if m.name == "churn")
    for name, value in scorer_environment(  # as the serving stack sets it
        churn,
        NAMES,
        features_table=NAMES.online_features_table,
        scores_table=NAMES.scores_table,
        event_bus=NAMES.event_bus,
        scores_stream=None,
    ).items():
        monkeypatch.setenv(name, value)
    module.config.cache_clear()
    return module


def kinesis_event(rows: list[dict]) -> dict:
    return {
        "Records": [
            {
                "kinesis": {
                    "sequenceNumber": f"4960{i:05d}",
                    "data": base64.b64encode(json.dumps(r).encode()).decode(),
                    "approximateArrivalTimestamp": 1_796_000_000.0 + i,
                },
                "eventSource": "aws:kinesis",
            }
            for i, r in enumerate(rows)
        ]
    }


def test_the_deployed_handler_scores_a_kinesis_batch(handler_module):
    with mock_aws():
        clients = {
            s: boto3.client(s, region_name=REGION) for s in ("dynamodb", "events", "sqs", "kms")
        }
        ensure_serving(
            lambda s: clients[s], NAMES, clients["kms"].create_key()["KeyMetadata"]["Arn"]
        )
        endpoint = ScriptedEndpoint()
        answer = handler_module.handler(
            kinesis_event(sample()),
            None,
            clients=lambda s: endpoint if s in ("sagemaker-runtime", "sagemaker") else clients[s],
        )
        assert answer == {"batchItemFailures": []}
        assert [len(rows) for rows in endpoint.calls] == [2]  # one call, the 2 customers
        scores = clients["dynamodb"].scan(TableName=NAMES.scores_table)["Items"]
        assert {i["customer_id"]["S"] for i in scores} == {"cust-a", "cust-b"}

        failing = handler_module.handler(
            kinesis_event(sample()),
            None,
            clients=lambda s: (
                ScriptedEndpoint(fail=True)
                if s in ("sagemaker-runtime", "sagemaker")
                else clients[s]
            ),
        )
        assert failing == {"batchItemFailures": [{"itemIdentifier": "496000000"}]}
