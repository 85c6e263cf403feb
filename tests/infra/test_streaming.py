"""StreamingStack: per stream dataset, Kinesis -> Firehose (transform Lambda, dynamic
partitioning) -> raw zone; and the transform bundle really runs."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys

import pytest

from dataplatform import layout
from dataplatform.bundle import stage_lambda
from stacks.constructs.stream_to_lake import TRANSFORM_RUNTIME
from tests.infra.conftest import dumps


def stream_datasets(synth):
    return synth.platform.stream_datasets


def delivery_stream(synth, dataset: str) -> dict:
    (res,) = [
        r
        for r in synth.resources("streaming", "AWS::KinesisFirehose::DeliveryStream").values()
        if r["Properties"]["DeliveryStreamName"] == synth.names.delivery_stream(dataset)
    ]
    return res["Properties"]


def role_policy(synth, role_name: str) -> list[dict]:
    roles = {
        lid: r
        for lid, r in synth.resources("streaming", "AWS::IAM::Role").items()
        if r["Properties"].get("RoleName") == role_name
    }
    (role_lid,) = roles
    statements = []
    for policy in synth.resources("streaming", "AWS::IAM::Policy").values():
        if {"Ref": role_lid} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_only_stream_datasets_get_streams(each_env):
    streams = {
        r["Properties"]["Name"]
        for r in each_env.resources("streaming", "AWS::Kinesis::Stream").values()
    }
    assert streams == {each_env.names.stream(d.name) for d in stream_datasets(each_env)}
    assert each_env.names.stream("house_sales") not in streams  # a batch dataset


def test_stream_is_kms_encrypted_and_sized_per_environment(each_env):
    kinesis = each_env.platform.environment(each_env.env).kinesis
    for ds in stream_datasets(each_env):
        (res,) = [
            r
            for r in each_env.resources("streaming", "AWS::Kinesis::Stream").values()
            if r["Properties"]["Name"] == each_env.names.stream(ds.name)
        ]
        props = res["Properties"]
        assert props["StreamEncryption"]["EncryptionType"] == "KMS"
        assert "LakeKey" in dumps(props["StreamEncryption"]["KeyId"])
        assert props["RetentionPeriodHours"] == kinesis.retention_hours
        if kinesis.capacity_mode == "provisioned":
            assert props["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
            assert props["ShardCount"] == kinesis.shard_count
        else:
            assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
            assert "ShardCount" not in props


def test_dev_streams_on_demand_and_prod_provisioned(dev, prod):
    dev_modes = {
        r["Properties"]["StreamModeDetails"]["StreamMode"]
        for r in dev.resources("streaming", "AWS::Kinesis::Stream").values()
    }
    prod_modes = {
        r["Properties"]["StreamModeDetails"]["StreamMode"]
        for r in prod.resources("streaming", "AWS::Kinesis::Stream").values()
    }
    assert dev_modes == {"ON_DEMAND"} and prod_modes == {"PROVISIONED"}


def test_firehose_reads_the_stream_and_partitions_raw_by_event_time(each_env):
    settings = each_env.platform.environment(each_env.env)
    for ds in stream_datasets(each_env):
        props = delivery_stream(each_env, ds.name)
        assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
        assert "Stream" in dumps(props["KinesisStreamSourceConfiguration"]["KinesisStreamARN"])
        s3 = props["ExtendedS3DestinationConfiguration"]
        assert (
            s3["Prefix"]
            == layout.firehose_prefix(ds.name)
            == f"{ds.name}/dt=!{{partitionKeyFromLambda:dt}}/hour=!{{partitionKeyFromLambda:hour}}/"
        )
        assert s3["ErrorOutputPrefix"] == layout.firehose_error_prefix(ds.name)
        assert s3["ErrorOutputPrefix"].startswith(f"_errors/{ds.name}/")
        assert s3["CompressionFormat"] == "GZIP"
        assert s3["FileExtension"] == layout.RAW_STREAM_FILE_EXTENSION == ".json.gz"
        assert s3["BufferingHints"] == {
            "SizeInMBs": settings.firehose.buffer_mib,
            "IntervalInSeconds": settings.firehose.buffer_seconds,
        }
        assert s3["BufferingHints"]["SizeInMBs"] >= 64  # dynamic partitioning's minimum
        assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
        assert "LakeKey" in dumps(s3["EncryptionConfiguration"]["KMSEncryptionConfig"])
        assert s3["CloudWatchLoggingOptions"]["Enabled"] is True
        (processor,) = s3["ProcessingConfiguration"]["Processors"]
        assert processor["Type"] == "Lambda"
        params = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
        assert "Transform" in dumps(params["LambdaArn"])


def test_prefix_templates_render_like_firehose_for_the_local_platform(dev):
    ds = stream_datasets(dev)[0].name
    props = delivery_stream(dev, ds)["ExtendedS3DestinationConfiguration"]
    rendered = layout.render_firehose_prefix(
        props["Prefix"], partition_keys={"dt": "2026-11-21", "hour": "07"}
    )
    assert rendered == f"{ds}/dt=2026-11-21/hour=07/"


def test_transform_lambda_runs_the_latest_python_with_its_dataset(each_env):
    for ds in stream_datasets(each_env):
        (fn,) = [
            r["Properties"]
            for r in each_env.resources("streaming", "AWS::Lambda::Function").values()
            if r["Properties"]["FunctionName"] == each_env.names.transform_function(ds.name)
        ]
        assert fn["Runtime"] == TRANSFORM_RUNTIME.name == "python3.14"
        assert fn["Handler"] == "handler.handler"
        assert fn["Environment"]["Variables"] == {"DATASET": ds.name}
        assert "LakeKey" in dumps(fn["KmsKeyArn"])
        assert fn["LoggingConfig"]["LogGroup"]


def test_log_groups_are_encrypted_and_kept_per_environment(each_env):
    days = each_env.platform.environment(each_env.env).log_retention_days
    groups = each_env.resources("streaming", "AWS::Logs::LogGroup")
    assert groups
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == days
        assert "LakeKey" in dumps(group["Properties"]["KmsKeyId"])


def test_firehose_role_writes_only_its_datasets_raw_and_error_prefixes(each_env):
    for ds in stream_datasets(each_env):
        statements = role_policy(each_env, each_env.names.firehose_role(ds.name))
        (write,) = [s for s in statements if s.get("Sid") == "WriteRawPrefixes"]
        resources = dumps(write["Resource"])
        assert f'"/{layout.raw_prefix(ds.name)}*"' in resources
        assert f'"/{layout.errors_prefix(ds.name)}*"' in resources
        assert len(write["Resource"]) == 2
        for statement in statements:  # nothing else writes objects, no action wildcards
            assert statement["Resource"] != "*"
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert not [a for a in actions if a.endswith("*")], statement
            if statement.get("Sid") != "WriteRawPrefixes":
                assert "s3:PutObject" not in actions


def test_transform_role_may_only_write_its_logs_and_traces(each_env):
    for ds in stream_datasets(each_env):
        statements = role_policy(each_env, each_env.names.transform_role(ds.name))
        actions = {
            a
            for s in statements
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        }
        assert actions == {
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
        }


def test_transform_is_traced_and_its_concurrency_bounded(each_env):
    functions = each_env.resources("streaming", "AWS::Lambda::Function")
    transforms = [
        f
        for f in functions.values()
        if f["Properties"].get("FunctionName")
        in {each_env.names.transform_function(ds.name) for ds in stream_datasets(each_env)}
    ]
    assert transforms
    for function in transforms:
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
        assert (
            function["Properties"]["ReservedConcurrentExecutions"]
            == each_env.platform.environment(each_env.env).firehose.transform_reserved_concurrency
        )


# --- the staged Lambda bundle is real code: load it from the bundle and invoke it


@pytest.fixture(scope="module")
def staged_handler(tmp_path_factory, dev):
    bundle = stage_lambda("firehose_transform", dev.platform, tmp_path_factory.mktemp("bundle"))
    assert {p.name for p in bundle.iterdir()} >= {"handler.py", "spec.json", "dataplatform"}
    sys.path.insert(0, str(bundle))
    try:
        spec = importlib.util.spec_from_file_location("staged_handler", bundle / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(bundle))


def firehose_record(record_id: str, payload: bytes) -> dict:
    return {"recordId": record_id, "data": base64.b64encode(payload).decode()}


def test_staged_transform_returns_partition_keys_and_marks_bad_records_failed(
    staged_handler, monkeypatch
):
    monkeypatch.setenv("DATASET", "telecom_events")
    required = {"customer_id": "c1", "event_type": "call"}
    event = {
        "records": [
            firehose_record(
                "ok",
                json.dumps(
                    {"event_id": "e1", "event_time": "2026-03-01T07:59:59+02:00", **required}
                ).encode(),
            ),
            firehose_record(
                "epoch-ms",
                json.dumps({"event_id": "e2", "event_time": 1772348400000, **required}).encode(),
            ),
            firehose_record("not-json", b"{nope"),
            firehose_record("array", b"[1, 2]"),
        ]
    }

    result = staged_handler.handler(event, None)

    by_id = {r["recordId"]: r for r in result["records"]}
    assert list(by_id) == ["ok", "epoch-ms", "not-json", "array"]
    assert by_id["ok"]["result"] == "Ok"
    assert by_id["ok"]["metadata"]["partitionKeys"] == {"dt": "2026-03-01", "hour": "05"}
    assert base64.b64decode(by_id["ok"]["data"]).decode().endswith("\n")
    assert by_id["epoch-ms"]["metadata"]["partitionKeys"] == {"dt": "2026-03-01", "hour": "07"}
    assert by_id["not-json"]["result"] == by_id["array"]["result"] == "ProcessingFailed"
