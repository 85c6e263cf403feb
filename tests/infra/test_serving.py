"""ServingStack: per served model (churn, a classifier, and clv, a regression, both from
telecom_events) a stream scorer (its own enhanced fan-out consumer, the event source mapping,
the Lambda in the VPC, a role that may put only its model's events) and an endpoint rolled on
approval (the rule, the deployer); the shared tables, event bus, interventions rule and
queue (both models' events), key, alarms and dashboard (per model).

Values are read as the account would see them (tests/contracts/template_values.py resolves
every reference across stacks), and the roles are checked the way AWS decides: each call the
scorer and the deployer make is allowed (the deployer's calls are those it really makes,
driven by the synthesized environment against a stubbed client), and what they must not
touch is refused (AWS's action, resource and condition-key tables, tests/contracts/iam.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import sys

import boto3
import pytest
from botocore.stub import Stubber

from dataplatform import layout
from dataplatform.naming import pascal_case
from dataplatform.online.scorer import DYNAMODB_CALLS, SAGEMAKER_CALLS
from dataplatform.paths import REPO_ROOT
from stacks.constructs.stream_scorer import BATCH_SIZE, EVENT_SOURCE, RETRY_ATTEMPTS, SCORER_RUNTIME
from stacks.serving import ITERATOR_AGE_ALARM_MS, MODEL_LATENCY_P99_ALARM_US
from tests.contracts import iam
from tests.contracts.template_values import ACCOUNT, Assembly
from tests.infra.conftest import Synth, synthesize
from tests.infra.test_contracts import key_policy_admits

_spec = importlib.util.spec_from_file_location(
    "endpoint_deployer_handler", REPO_ROOT / "lambdas" / "endpoint_deployer" / "handler.py"
)
deployer = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = deployer
_spec.loader.exec_module(deployer)

KIND = "serving"
MODEL = "churn"
SERVED = ("churn", "clv")  # the shipped spec's served models, from the same stream
# what each may put on the platform's bus, and where its scores go
EVENTS = {"churn": "HighChurnRisk", "clv": "HighValueCustomer"}
SCORES = {"churn": "churn_scores", "clv": "clv_scores"}


# ----------------------------------------------------------------------------- variants


def _variant(platform, **serving_changes):
    """The shipped platform with the served models' serving sections changed (remove: none
    served)."""
    models = []
    for m in platform.models:
        if m.serving is not None:
            serving = (
                None
                if serving_changes.get("remove")
                else dataclasses.replace(m.serving, **serving_changes)
            )
            m = dataclasses.replace(m, serving=serving)
        models.append(m)
    return dataclasses.replace(platform, models=tuple(models))


@pytest.fixture(scope="module")
def instance_dev(dev, tmp_path_factory) -> Synth:
    """dev with churn and clv served by two ml.m5.xlarge instances each."""
    platform = _variant(dev.platform, mode="instance", instance_type="ml.m5.xlarge", instances=2)
    return synthesize("dev", False, tmp_path_factory.mktemp("cdk-serving-instance"), platform)


@pytest.fixture(scope="module")
def unserved_dev(dev, tmp_path_factory) -> Synth:
    """dev with no model that declares serving."""
    return synthesize(
        "dev",
        False,
        tmp_path_factory.mktemp("cdk-serving-none"),
        _variant(dev.platform, remove=True),
    )


# ----------------------------------------------------------------------------- reading


def assembly(synth: Synth) -> Assembly:
    return Assembly(synth.templates, synth.names.region)


def resources(synth: Synth, type_: str) -> dict[str, dict]:
    return synth.resources(KIND, type_)


def props(synth: Synth, lid: str) -> dict:
    return assembly(synth).props(KIND, lid)


def named(synth: Synth, type_: str, name_property: str, name: str) -> tuple[str, dict]:
    matches = [
        (lid, r)
        for lid, r in resources(synth, type_).items()
        if r["Properties"].get(name_property) == name
    ]
    assert len(matches) == 1, (type_, name, matches)
    return matches[0]


def arn_of(synth: Synth, lid: str, kind: str = KIND) -> str:
    return assembly(synth).resolve(kind, {"Fn::GetAtt": [lid, "Arn"]})


def lake_key_arn(synth: Synth) -> str:
    (alias,) = [
        r
        for r in synth.resources("storage", "AWS::KMS::Alias").values()
        if r["Properties"]["AliasName"] == synth.names.lake_key_alias
    ]
    return arn_of(synth, alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0], "storage")


def serving_key_arn(synth: Synth) -> str:
    (alias,) = resources(synth, "AWS::KMS::Alias").values()
    assert alias["Properties"]["AliasName"] == synth.names.serving_key_alias
    return arn_of(synth, alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0])


def region_arn(synth: Synth, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{synth.names.region}:{ACCOUNT}:{resource}"


def stream_arn(synth: Synth, dataset: str) -> str:
    return region_arn(synth, "kinesis", f"stream/{synth.names.stream(dataset)}")


def queue_arn(synth: Synth, name: str) -> str:
    return region_arn(synth, "sqs", name)


def table_arns(synth: Synth) -> list[str]:
    n = synth.names
    return sorted(
        region_arn(synth, "dynamodb", f"table/{t}")
        for t in (n.online_features_table, n.scores_table)
    )


def role_statements(synth: Synth, role_name: str) -> list[dict]:
    """The role's identity statements, resolved (every policy of the assembly naming it)."""
    a = assembly(synth)
    found = []
    for kind, lid, _ in a.resources("AWS::IAM::Policy"):
        policy = a.props(kind, lid)
        if role_name in policy["Roles"]:
            found += policy["PolicyDocument"]["Statement"]
    return found


def normalized(statements: list[dict]) -> set[tuple]:
    def listed(value):
        return tuple(sorted(value if isinstance(value, list) else [value]))

    return {
        (
            s.get("Sid", ""),
            listed(s["Action"]),
            listed(s["Resource"]),
            json.dumps(s.get("Condition", {}), sort_keys=True),
        )
        for s in statements
    }


def allowed(synth: Synth, role_name: str, call: iam.Call) -> bool:
    statements, _ = iam.role_policies(assembly(synth), role_name)
    return iam.verdict(statements, call)[0]


def refusals(synth: Synth, role_name: str, calls: list[iam.Call]) -> list[str]:
    statements, managed = iam.role_policies(assembly(synth), role_name)
    assert managed == [], managed
    return [
        f"{call} ({call.why}): {why}"
        for call in calls
        for ok, why in [iam.verdict(statements, call)]
        if not ok
    ]


def function(synth: Synth, name: str) -> tuple[str, dict]:
    return named(synth, "AWS::Lambda::Function", "FunctionName", name)


# ----------------------------------------------------------------------------- who is served


def test_only_models_that_declare_serving_get_a_scorer_and_a_deployer(each_env):
    n = each_env.names
    served = [m.name for m in each_env.platform.models if m.serving]
    assert served == list(SERVED)
    functions = {
        r["Properties"]["FunctionName"]
        for r in resources(each_env, "AWS::Lambda::Function").values()
    }
    assert functions == {f(m) for m in served for f in (n.scorer_function, n.deployer_function)}
    consumers = sorted(
        r["Properties"]["ConsumerName"]
        for r in resources(each_env, "AWS::Kinesis::StreamConsumer").values()
    )
    assert consumers == sorted(n.stream_consumer(m) for m in SERVED)
    assert len(set(consumers)) == len(SERVED)  # each scorer reads the stream on its own


def test_without_served_models_only_the_shared_resources_remain(unserved_dev):
    types = {r["Type"] for r in unserved_dev.templates[KIND]["Resources"].values()}
    for absent in (
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Kinesis::StreamConsumer",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
    ):
        assert absent not in types, absent
    assert {"AWS::DynamoDB::Table", "AWS::Events::EventBus", "AWS::Events::Rule"} <= types
    alarm_names = {
        r["Properties"]["AlarmName"]
        for r in unserved_dev.resources(KIND, "AWS::CloudWatch::Alarm").values()
    }
    assert alarm_names == {f"{unserved_dev.names.prefix} InterventionsUndelivered"}


# ----------------------------------------------------------------------------- the tables


def test_tables_are_on_demand_with_the_lake_key_pitr_and_ttl(each_env):
    n = each_env.names
    for name in (n.online_features_table, n.scores_table):
        lid, table = named(each_env, "AWS::DynamoDB::Table", "TableName", name)
        p = props(each_env, lid)
        assert p["KeySchema"] == [
            {"AttributeName": "customer_id", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert p["AttributeDefinitions"] == [
            {"AttributeName": "customer_id", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ]
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": lake_key_arn(each_env),
        }
        assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
        assert p["DeletionProtectionEnabled"] is True


@pytest.mark.parametrize("env, destroyed", [("dev", True), ("prod", False)])
def test_tables_follow_the_environments_removal_policy(synth_variant, env, destroyed):
    synth = synth_variant(env, True)  # -c destroy_data=true
    for table in resources(synth, "AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == ("Delete" if destroyed else "Retain")
        assert table["Properties"]["DeletionProtectionEnabled"] is (not destroyed)
    for queue in resources(synth, "AWS::SQS::Queue").values():
        assert queue["DeletionPolicy"] == ("Delete" if destroyed else "Retain")


# ----------------------------------------------------------------------------- the consumer


def consumer(synth: Synth, model: str = MODEL) -> tuple[str, dict]:
    return named(
        synth, "AWS::Kinesis::StreamConsumer", "ConsumerName", synth.names.stream_consumer(model)
    )


def mapping_of(synth: Synth, model: str) -> dict:
    fn_lid, _ = function(synth, synth.names.scorer_function(model))
    (mapping,) = [
        m
        for m in resources(synth, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": fn_lid}
    ]
    return mapping


@pytest.mark.parametrize("model", SERVED)
def test_each_scorer_reads_telecom_events_through_its_own_consumer(each_env, model):
    lid, _ = consumer(each_env, model)
    assert props(each_env, lid)["StreamARN"] == stream_arn(each_env, "telecom_events")
    assert len(resources(each_env, "AWS::Lambda::EventSourceMapping")) == len(SERVED)
    mapping = mapping_of(each_env, model)
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [lid, "ConsumerARN"]}


@pytest.mark.parametrize("model", SERVED)
def test_the_mapping_reports_partial_failures_bisects_and_gives_up_to_an_encrypted_queue(
    each_env, model
):
    mapping = mapping_of(each_env, model)
    p = mapping["Properties"]
    assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert p["BisectBatchOnFunctionError"] is True
    assert p["MaximumRetryAttempts"] == RETRY_ATTEMPTS == 3
    # given up only when the stream is about to trim them (dev 24 h, prod 7 days)
    retention_hours = each_env.platform.environment(each_env.env).kinesis.retention_hours
    assert p["MaximumRecordAgeInSeconds"] == retention_hours * 3600 <= 604800
    assert p["StartingPosition"] == "TRIM_HORIZON"
    assert (p["BatchSize"], p["MaximumBatchingWindowInSeconds"]) == (BATCH_SIZE, 1)
    # Lambda checks the role when it creates the mapping: the policy exists first
    role_policy = [
        lid
        for lid, r in resources(each_env, "AWS::IAM::Policy").items()
        if lid.startswith(f"{pascal_case(model)}ScorerRoleDefaultPolicy")
    ]
    assert mapping["DependsOn"] == role_policy
    queue_lid = p["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    queue = props(each_env, queue_lid)
    assert queue["QueueName"] == each_env.names.scorer_failures_queue(model)
    assert queue["KmsMasterKeyId"] == serving_key_arn(each_env)
    assert_tls_only(each_env, queue_lid)


def assert_tls_only(synth: Synth, queue_lid: str) -> list[dict]:
    (policy,) = [
        r["Properties"]
        for r in resources(synth, "AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_lid} in r["Properties"]["Queues"]
    ]
    statements = policy["PolicyDocument"]["Statement"]
    assert {
        "Action": "sqs:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": {"Fn::GetAtt": [queue_lid, "Arn"]},
    } in statements
    return statements


# ----------------------------------------------------------------------------- the scorer


@pytest.mark.parametrize("model", SERVED)
def test_the_scorer_runs_in_the_private_subnets_traced_bounded_and_configured(each_env, model):
    n = each_env.names
    lid, _ = function(each_env, n.scorer_function(model))
    p = props(each_env, lid)
    spec = next(m for m in each_env.platform.models if m.name == model)
    serving = spec.serving
    assert p["Runtime"] == SCORER_RUNTIME.name == "python3.14"  # the other functions' runtime
    assert p["Handler"] == "handler.handler"
    assert p["TracingConfig"] == {"Mode": "Active"}
    assert p["ReservedConcurrentExecutions"] == serving.max_concurrency == 5
    assert p["KmsKeyArn"] == lake_key_arn(each_env)
    assert p["Environment"]["Variables"] == {
        "MODEL_NAME": model,
        "ENDPOINT_NAME": n.endpoint(model),
        "FEATURES_TABLE": n.online_features_table,
        "SCORES_TABLE": n.scores_table,
        "EVENT_BUS_NAME": n.event_bus,
        "PROBLEM": spec.problem,
        "FEATURE_COLUMNS": ",".join(spec.feature_columns),
        "THRESHOLD": str(serving.threshold),
        "ACTION": serving.action,
        "EVENT_TYPE": EVENTS[model],
        "DATASET": "telecom_events",
        "SCORES_STREAM": n.stream(SCORES[model]),
    }
    # churn: a probability and its 11 inputs; clv: a value in EUR and its own 6 inputs
    assert (spec.problem, len(spec.feature_columns)) == {
        "churn": ("binary_classification", 11),
        "clv": ("regression", 6),
    }[model]
    # the private subnets of the platform VPC, with its own security group: HTTPS out only
    raw = each_env.templates[KIND]["Resources"][lid]["Properties"]["VpcConfig"]
    imported = [s["Fn::ImportValue"] for s in raw["SubnetIds"]]
    assert len(imported) == each_env.platform.environment(each_env.env).network.max_azs
    assert all("privateSubnet" in name for name in imported), imported
    (group,) = raw["SecurityGroupIds"]
    group_props = props(each_env, group["Fn::GetAtt"][0])
    assert group_props["GroupName"] == n.scorer_security_group
    assert group_props["SecurityGroupEgress"] == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "HTTPS to AWS APIs only",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]
    assert "SecurityGroupIngress" not in group_props


def test_the_instance_endpoints_scorer_may_run_five_per_instance(instance_dev):
    for model in SERVED:
        lid, _ = function(instance_dev, instance_dev.names.scorer_function(model))
        assert props(instance_dev, lid)["ReservedConcurrentExecutions"] == 2 * 5


def test_log_groups_are_encrypted_and_kept_per_environment(each_env):
    n = each_env.names
    days = each_env.platform.environment(each_env.env).log_retention_days
    groups = {
        r["Properties"]["LogGroupName"]: r
        for r in resources(each_env, "AWS::Logs::LogGroup").values()
    }
    assert set(groups) == {
        group
        for m in SERVED
        for group in (n.scorer_log_group(m), n.deployer_log_group(m), n.endpoint_log_group(m))
    }
    assert n.endpoint_log_group(MODEL) == "/aws/sagemaker/Endpoints/" + n.endpoint(MODEL)
    for lid in resources(each_env, "AWS::Logs::LogGroup"):
        p = props(each_env, lid)
        assert p["RetentionInDays"] == days
        assert p["KmsKeyId"] == lake_key_arn(each_env)


def scorer_expected(synth: Synth, model: str = MODEL) -> set[tuple]:
    n = synth.names
    region = synth.names.region
    lid, _ = consumer(synth, model)
    consumer_arn = assembly(synth).resolve(KIND, {"Fn::GetAtt": [lid, "ConsumerARN"]})
    ec2 = f"arn:aws:ec2:{region}:{ACCOUNT}"
    vpc_lid = next(
        lid_
        for lid_, r in synth.templates["network"]["Resources"].items()
        if r["Type"] == "AWS::EC2::VPC"
    )
    vpc = f"{ec2}:vpc/{assembly(synth).resolve('network', {'Ref': vpc_lid})}"
    in_vpc = json.dumps({"ArnEquals": {"ec2:Vpc": vpc}})
    log_group = region_arn(synth, "logs", f"log-group:{n.scorer_log_group(model)}:*")
    return {
        (
            "ReadTheStreamThroughItsConsumer",
            ("kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"),
            (consumer_arn,),
            "{}",
        ),
        (
            "DescribeTheStream",
            (
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ),
            (stream_arn(synth, "telecom_events"),),
            "{}",
        ),
        (
            "OnlineFeaturesAndScores",
            tuple(sorted(f"dynamodb:{call}" for call in DYNAMODB_CALLS)),
            tuple(table_arns(synth)),
            "{}",
        ),
        (
            "InvokeAndDescribeTheEndpoint",
            tuple(sorted(f"sagemaker:{call}" for call in SAGEMAKER_CALLS)),
            (region_arn(synth, "sagemaker", f"endpoint/{n.endpoint(model)}"),),
            "{}",
        ),
        (
            f"Put{EVENTS[model]}Events",
            ("events:PutEvents",),
            (region_arn(synth, "events", f"event-bus/{n.event_bus}"),),
            json.dumps(
                {
                    "StringEquals": {
                        "events:detail-type": EVENTS[model],
                        "events:source": EVENT_SOURCE,
                    }
                }
            ),
        ),
        (
            "PutScores",
            ("kinesis:PutRecord", "kinesis:PutRecords"),
            (stream_arn(synth, SCORES[model]),),
            "{}",
        ),
        (
            "SendGivenUpBatches",
            ("sqs:SendMessage",),
            (queue_arn(synth, n.scorer_failures_queue(model)),),
            "{}",
        ),
        (
            "UseTheLakeKey",
            ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"),
            (lake_key_arn(synth),),
            json.dumps(
                {
                    "StringEquals": {
                        "kms:ViaService": [
                            f"kinesis.{region}.amazonaws.com",
                            f"dynamodb.{region}.amazonaws.com",
                        ]
                    }
                }
            ),
        ),
        (
            "UseTheQueueKey",
            ("kms:Decrypt", "kms:GenerateDataKey"),
            (serving_key_arn(synth),),
            json.dumps({"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}}),
        ),
        ("WriteLogs", ("logs:CreateLogStream", "logs:PutLogEvents"), (log_group,), "{}"),
        ("", ("xray:PutTelemetryRecords", "xray:PutTraceSegments"), ("*",), "{}"),
        (
            "DescribeNetworkInterfaces",
            ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"),
            ("*",),
            "{}",
        ),
        (
            "CreateNetworkInterfacesInThePlatformVpc",
            ("ec2:CreateNetworkInterface",),
            (f"{ec2}:network-interface/*",),
            "{}",
        ),
        (
            "InSubnetsAndSecurityGroupsOfThePlatformVpc",
            ("ec2:CreateNetworkInterface",),
            (f"{ec2}:security-group/*", f"{ec2}:subnet/*"),
            in_vpc,
        ),
        (
            "ManageNetworkInterfacesOfThePlatformVpc",
            (
                "ec2:AssignPrivateIpAddresses",
                "ec2:DeleteNetworkInterface",
                "ec2:UnassignPrivateIpAddresses",
            ),
            (f"{ec2}:network-interface/*",),
            in_vpc,
        ),
    }


@pytest.mark.parametrize("model", SERVED)
def test_the_scorer_role_holds_exactly_these_statements(each_env, model):
    role = each_env.names.scorer_role(model)
    named(each_env, "AWS::IAM::Role", "RoleName", role)
    assert normalized(role_statements(each_env, role)) == scorer_expected(each_env, model)


@pytest.mark.parametrize("model", SERVED)
def test_the_scorer_may_make_its_calls_and_nothing_beside(each_env, model):
    n = each_env.names
    role = n.scorer_role(model)
    region = n.region
    lid, _ = consumer(each_env, model)
    consumer_arn = assembly(each_env).resolve(KIND, {"Fn::GetAtt": [lid, "ConsumerARN"]})
    endpoint = region_arn(each_env, "sagemaker", f"endpoint/{n.endpoint(model)}")
    bus = region_arn(each_env, "events", f"event-bus/{n.event_bus}")
    high_risk = {"events:source": EVENT_SOURCE, "events:detail-type": EVENTS[model]}
    (other,) = [m for m in SERVED if m != model]
    via = {
        s: {"kms:ViaService": f"{s}.{region}.amazonaws.com"} for s in ("kinesis", "dynamodb", "sqs")
    }
    log_stream = region_arn(
        each_env, "logs", f"log-group:{n.scorer_log_group(model)}:log-stream:2026/12/01/x"
    )
    calls = [
        *[
            iam.Call(f"kinesis:{a}", {"consumer": consumer_arn})
            for a in ("SubscribeToShard", "DescribeStreamConsumer")
        ],
        *[
            iam.Call(f"kinesis:{a}", {"stream": stream_arn(each_env, "telecom_events")})
            for a in (
                "DescribeStream",
                "DescribeStreamSummary",
                "ListShards",
                "GetShardIterator",
                "GetRecords",
            )
        ],
        *[
            iam.Call(f"dynamodb:{a}", {"table": t})
            for a in DYNAMODB_CALLS
            for t in table_arns(each_env)
        ],
        *[iam.Call(f"sagemaker:{a}", {"endpoint": endpoint}) for a in SAGEMAKER_CALLS],
        iam.Call("events:PutEvents", {"event-bus": bus}, high_risk),
        *[
            iam.Call(f"kinesis:{a}", {"stream": stream_arn(each_env, SCORES[model])})
            for a in ("PutRecord", "PutRecords")
        ],
        iam.Call("sqs:SendMessage", {"queue": queue_arn(each_env, n.scorer_failures_queue(model))}),
        *[
            iam.Call(f"kms:{a}", {"key": lake_key_arn(each_env)}, via[s])
            for a in ("Decrypt", "GenerateDataKey")
            for s in ("kinesis", "dynamodb")
        ],
        *[
            iam.Call(f"kms:{a}", {"key": serving_key_arn(each_env)}, via["sqs"])
            for a in ("Decrypt", "GenerateDataKey")
        ],
        *[
            iam.Call(f"logs:{a}", {"log-stream": log_stream})
            for a in ("CreateLogStream", "PutLogEvents")
        ],
    ]
    assert refusals(each_env, role, calls) == []
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    for call in calls:
        if call.action.startswith("kms:"):
            assert key_policy_admits(
                assembly(each_env), call.resources["key"], role_arn, call.action
            ), call

    refused = [
        iam.Call(
            "sagemaker:InvokeEndpoint",
            {
                "endpoint": region_arn(
                    each_env, "sagemaker", f"endpoint/{n.endpoint('house_prices')}"
                )
            },
        ),
        iam.Call(
            "dynamodb:PutItem", {"table": region_arn(each_env, "dynamodb", "table/another-table")}
        ),
        iam.Call("dynamodb:Scan", {"table": table_arns(each_env)[0]}),
        iam.Call("dynamodb:DeleteItem", {"table": table_arns(each_env)[0]}),
        iam.Call("kinesis:PutRecord", {"stream": stream_arn(each_env, "telecom_events")}),
        iam.Call(
            "events:PutEvents", {"event-bus": bus}, {**high_risk, "events:detail-type": "Other"}
        ),
        iam.Call(
            "events:PutEvents",
            {"event-bus": region_arn(each_env, "events", "event-bus/default")},
            high_risk,
        ),
        iam.Call("kms:Decrypt", {"key": lake_key_arn(each_env)}),  # directly, not through a service
        iam.Call("sqs:SendMessage", {"queue": queue_arn(each_env, n.interventions_queue)}),
        # nothing of the other model served from the same stream: its events, its endpoint,
        # its scores stream, its consumer
        iam.Call(
            "events:PutEvents",
            {"event-bus": bus},
            {**high_risk, "events:detail-type": EVENTS[other]},
        ),
        iam.Call(
            "sagemaker:InvokeEndpoint",
            {"endpoint": region_arn(each_env, "sagemaker", f"endpoint/{n.endpoint(other)}")},
        ),
        iam.Call("kinesis:PutRecords", {"stream": stream_arn(each_env, SCORES[other])}),
        iam.Call(
            "kinesis:SubscribeToShard",
            {
                "consumer": assembly(each_env).resolve(
                    KIND, {"Fn::GetAtt": [consumer(each_env, other)[0], "ConsumerARN"]}
                )
            },
        ),
    ]
    assert [str(c) for c in refused if allowed(each_env, role, c)] == []


def test_no_statement_is_on_every_resource_but_where_aws_has_no_resource_types(each_env):
    """`*` only for actions without resource types (X-Ray, ec2:Describe*, PutMetricData):
    each such action in AWS's own table has no resource type to name."""
    for lid, policy in resources(each_env, "AWS::IAM::Policy").items():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "*" in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]):
                actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                for action in actions:
                    types = set(iam.action_table(action)["resource_types"])
                    assert types <= {""}, (lid, s.get("Sid"), action, types)


# ----------------------------------------------------------------------------- events


def test_every_served_models_event_goes_to_the_interventions_queue_and_the_alerts_topic(each_env):
    n = each_env.names
    bus_lid, _ = named(each_env, "AWS::Events::EventBus", "Name", n.event_bus)
    lid, rule = named(each_env, "AWS::Events::Rule", "Name", n.interventions_rule)
    p = rule["Properties"]
    assert p["EventBusName"] == {"Ref": bus_lid}
    assert p["EventPattern"] == {
        "source": [EVENT_SOURCE],
        "detail-type": sorted(EVENTS.values()),  # HighChurnRisk (churn), HighValueCustomer (clv)
    }
    targets = props(each_env, lid)["Targets"]
    dlq = queue_arn(each_env, n.interventions_dlq)
    by_arn = {t["Arn"]: t for t in targets}
    alerts = region_arn(each_env, "sns", n.alerts_topic)
    assert set(by_arn) == {queue_arn(each_env, n.interventions_queue), alerts}
    for target in targets:
        assert target["DeadLetterConfig"] == {"Arn": dlq}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
        assert "RoleArn" not in target  # queues and topics take events by resource policy
    transformer = by_arn[alerts]["InputTransformer"]
    assert transformer["InputPathsMap"] == {"detail-type": "$.detail-type", "detail": "$.detail"}
    assert transformer["InputTemplate"].startswith('"<detail-type> on ')  # which model's event
    assert "<detail>" in transformer["InputTemplate"]

    # the queue: KMS with the serving key, TLS only, a dead-letter queue, and only this rule
    q_lid, _ = named(each_env, "AWS::SQS::Queue", "QueueName", n.interventions_queue)
    dlq_lid, _ = named(each_env, "AWS::SQS::Queue", "QueueName", n.interventions_dlq)
    q = props(each_env, q_lid)
    assert q["KmsMasterKeyId"] == serving_key_arn(each_env)
    assert q["RedrivePolicy"] == {"deadLetterTargetArn": dlq, "maxReceiveCount": 5}
    assert props(each_env, dlq_lid)["KmsMasterKeyId"] == serving_key_arn(each_env)
    for queue in (q_lid, dlq_lid):
        statements = assert_tls_only(each_env, queue)
        (allow,) = [s for s in statements if s["Effect"] == "Allow"]
        assert allow["Principal"] == {"Service": "events.amazonaws.com"}
        assert allow["Action"] == "sqs:SendMessage"
        assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [lid, "Arn"]}}}


def test_the_serving_key_rotates_and_admits_eventbridge_of_this_account_only(each_env):
    (key_lid,) = resources(each_env, "AWS::KMS::Key")
    key = props(each_env, key_lid)
    assert key["EnableKeyRotation"] is True
    services = [s for s in key["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    assert services == [
        {
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Resource": "*",
            "Sid": "EventBridgeRulesOfThisAccount",
        }
    ]
    for queue in resources(each_env, "AWS::SQS::Queue").values():
        assert queue["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_lid, "Arn"]}


@pytest.mark.parametrize("model", SERVED)
def test_approval_of_a_models_package_invokes_its_deployer(each_env, model):
    n = each_env.names
    lid, rule = named(each_env, "AWS::Events::Rule", "Name", n.approval_rule(model))
    p = rule["Properties"]
    assert "EventBusName" not in p  # the default bus, where SageMaker puts its events
    assert p["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": [n.model_package_group(model)],
            "ModelApprovalStatus": ["Approved"],
        },
    }
    fn_lid, _ = function(each_env, n.deployer_function(model))
    (target,) = props(each_env, lid)["Targets"]
    assert target["Arn"] == region_arn(each_env, "lambda", f"function:{n.deployer_function(model)}")
    assert target["DeadLetterConfig"] == {"Arn": queue_arn(each_env, n.deployer_dlq(model))}
    assert len(resources(each_env, "AWS::Lambda::Permission")) == len(SERVED)
    (permission,) = [
        r
        for r in resources(each_env, "AWS::Lambda::Permission").values()
        if r["Properties"]["SourceArn"] == {"Fn::GetAtt": [lid, "Arn"]}
    ]
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [lid, "Arn"]}
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": [fn_lid, "Arn"]}


# ----------------------------------------------------------------------------- the deployer


def test_the_deployer_is_configured_from_the_spec_one_rollout_at_a_time(each_env):
    n = each_env.names
    lid, _ = function(each_env, n.deployer_function(MODEL))
    p = props(each_env, lid)
    env = p["Environment"]["Variables"]
    target = deployer.EndpointTarget.from_environment(env)
    assert target == deployer.EndpointTarget(
        endpoint_name=n.endpoint(MODEL),
        package_group=n.model_package_group(MODEL),
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/{n.sagemaker_role}",
        mode="serverless",
        memory_mb=2048,
        max_concurrency=5,
        instance_type="ml.m5.large",
        instances=1,
        subnet_ids=target.subnet_ids,
        security_group_ids=target.security_group_ids,
        data_capture_uri=f"s3://{n.models_bucket}/{layout.data_capture_prefix(MODEL)}",
        kms_key_arn=lake_key_arn(each_env),
        data_capture_percent=100,
        tags={"project": n.project, "environment": n.env, "model": MODEL},
    )
    assert len(target.subnet_ids) == 2 and all(s.startswith("subnet-") for s in target.subnet_ids)
    (group,) = target.security_group_ids
    sg_lid, _ = named(each_env, "AWS::EC2::SecurityGroup", "GroupName", n.endpoint_security_group)
    assert group == assembly(each_env).resolve(KIND, {"Fn::GetAtt": [sg_lid, "GroupId"]})
    assert p["ReservedConcurrentExecutions"] == 1
    assert p["DeadLetterConfig"] == {"TargetArn": queue_arn(each_env, n.deployer_dlq(MODEL))}
    assert p["Timeout"] == 900 and p["TracingConfig"] == {"Mode": "Active"}
    assert p["KmsKeyArn"] == lake_key_arn(each_env)


def recorded_requests(target, region: str, *, endpoint_exists: bool) -> list[tuple[str, dict]]:
    """The SageMaker requests the deployer makes for an approval of version 3, on an
    endpoint serving version 2 or on none, as (operation, parameters)."""
    client = boto3.client(
        "sagemaker",
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    found: list[tuple[str, dict]] = []
    client.meta.events.register(
        "before-parameter-build.sagemaker",
        lambda params, model, **_: found.append((model.name, dict(params))),
    )
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    sm = f"arn:aws:sagemaker:{region}:{ACCOUNT}"
    name, package = f"{target.endpoint_name}-v3", f"{sm}:model-package/{target.package_group}/3"
    with Stubber(client) as stub:
        stub.add_response(
            "describe_model_package",
            {
                "ModelPackageName": target.package_group,
                "ModelPackageGroupName": target.package_group,
                "ModelPackageVersion": 3,
                "ModelPackageArn": package,
                "CreationTime": now,
                "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": []},
                "ModelApprovalStatus": "Approved",
            },
        )
        if endpoint_exists:
            stub.add_response(
                "describe_endpoint",
                {
                    "EndpointName": target.endpoint_name,
                    "EndpointArn": f"{sm}:endpoint/{target.endpoint_name}",
                    "EndpointConfigName": f"{target.endpoint_name}-v2",
                    "EndpointStatus": "InService",
                    "CreationTime": now,
                    "LastModifiedTime": now,
                },
            )
        else:
            stub.add_client_error(
                "describe_endpoint", "ValidationException", "Could not find endpoint"
            )
        stub.add_client_error("describe_model", "ValidationException", "Could not find model")
        stub.add_response("create_model", {"ModelArn": f"{sm}:model/{name}"})
        stub.add_client_error(
            "describe_endpoint_config",
            "ValidationException",
            "Could not find endpoint configuration",
        )
        stub.add_response(
            "create_endpoint_config", {"EndpointConfigArn": f"{sm}:endpoint-config/{name}"}
        )
        stub.add_response(
            "update_endpoint" if endpoint_exists else "create_endpoint",
            {"EndpointArn": f"{sm}:endpoint/{target.endpoint_name}"},
        )
        deployer.deploy(client, package_arn=package, target=target)
        stub.assert_no_pending_responses()
    return found


def deployer_calls(synth: Synth, requests: list[tuple[str, dict]], target) -> list[iam.Call]:
    """The IAM calls behind the deployer's requests (as AWS's Service Authorization
    Reference lists them for each operation), and its dead-letter queue's."""
    region = synth.names.region
    sm = f"arn:aws:sagemaker:{region}:{ACCOUNT}"
    endpoint = f"{sm}:endpoint/{target.endpoint_name}"
    calls: list[iam.Call] = []
    for operation, p in requests:
        action = f"sagemaker:{operation}"
        if operation == "DescribeModelPackage":
            calls.append(iam.Call(action, {"model-package": p["ModelPackageName"]}))
        elif operation in ("DescribeModel", "CreateModel"):
            calls.append(iam.Call(action, {"model": f"{sm}:model/{p['ModelName']}"}))
            if operation == "CreateModel":
                calls.append(
                    iam.Call(
                        "iam:PassRole",
                        {"role": p["ExecutionRoleArn"]},
                        {"iam:PassedToService": "sagemaker.amazonaws.com"},
                    )
                )
                calls.append(
                    iam.Call("sagemaker:AddTags", {"model": f"{sm}:model/{p['ModelName']}"})
                )
        elif operation in ("DescribeEndpointConfig", "CreateEndpointConfig"):
            config = f"{sm}:endpoint-config/{p['EndpointConfigName']}"
            calls.append(iam.Call(action, {"endpoint-config": config}))
            if operation == "CreateEndpointConfig":
                calls.append(iam.Call("sagemaker:AddTags", {"endpoint-config": config}))
                if "KmsKeyId" in p:
                    calls.append(iam.Call("kms:DescribeKey", {"key": p["KmsKeyId"]}))
        elif operation == "DescribeEndpoint":
            calls.append(iam.Call(action, {"endpoint": endpoint}))
        elif operation in ("CreateEndpoint", "UpdateEndpoint"):
            config = f"{sm}:endpoint-config/{p['EndpointConfigName']}"
            calls.append(iam.Call(action, {"endpoint": endpoint, "endpoint-config": config}))
            if operation == "CreateEndpoint":
                calls.append(iam.Call("sagemaker:AddTags", {"endpoint": endpoint}))
            if not target.serverless:  # SageMaker grants the endpoint the volume key as its caller
                calls.append(
                    iam.Call(
                        "kms:CreateGrant",
                        {"key": target.kms_key_arn},
                        {"kms:GrantIsForAWSResource": "true"},
                    )
                )
        else:
            raise AssertionError(f"which IAM calls does {operation} make?")
    n = synth.names
    calls.append(iam.Call("sqs:SendMessage", {"queue": queue_arn(synth, n.deployer_dlq(MODEL))}))
    calls += [
        iam.Call(
            f"kms:{a}",
            {"key": serving_key_arn(synth)},
            {"kms:ViaService": f"sqs.{region}.amazonaws.com"},
        )
        for a in ("GenerateDataKey", "Decrypt")
    ]
    log_stream = region_arn(synth, "logs", f"log-group:{n.deployer_log_group(MODEL)}:log-stream:x")
    calls += [
        iam.Call(f"logs:{a}", {"log-stream": log_stream})
        for a in ("CreateLogStream", "PutLogEvents")
    ]
    return calls


@pytest.mark.parametrize("endpoint_exists", [False, True], ids=["create", "update"])
def test_the_deployer_may_make_every_call_it_makes(dev, instance_dev, endpoint_exists):
    for synth in (dev, instance_dev):
        n = synth.names
        lid, _ = function(synth, n.deployer_function(MODEL))
        target = deployer.EndpointTarget.from_environment(
            props(synth, lid)["Environment"]["Variables"]
        )
        assert target.serverless is (synth is dev)
        requests = recorded_requests(target, n.region, endpoint_exists=endpoint_exists)
        operations = [op for op, _ in requests]
        assert operations[-1] == ("UpdateEndpoint" if endpoint_exists else "CreateEndpoint")
        role = n.deployer_role(MODEL)
        calls = deployer_calls(synth, requests, target)
        assert refusals(synth, role, calls) == []
        role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        for call in calls:
            if call.action.startswith("kms:"):
                assert key_policy_admits(
                    assembly(synth), call.resources["key"], role_arn, call.action
                ), call


def test_the_deployer_may_not_touch_other_endpoints_roles_or_keys(dev, instance_dev):
    n = dev.names
    role = n.deployer_role(MODEL)
    sm = f"arn:aws:sagemaker:{n.region}:{ACCOUNT}"
    other = n.endpoint("house_prices")
    refused = [
        iam.Call(
            "sagemaker:UpdateEndpoint",
            {
                "endpoint": f"{sm}:endpoint/{other}",
                "endpoint-config": f"{sm}:endpoint-config/{other}-v1",
            },
        ),
        iam.Call("sagemaker:CreateModel", {"model": f"{sm}:model/{other}-v1"}),
        iam.Call("sagemaker:DeleteEndpoint", {"endpoint": f"{sm}:endpoint/{n.endpoint(MODEL)}"}),
        iam.Call(
            "sagemaker:DescribeModelPackage",
            {"model-package": f"{sm}:model-package/{n.model_package_group('house_prices')}/1"},
        ),
        iam.Call(
            "iam:PassRole",
            {"role": f"arn:aws:iam::{ACCOUNT}:role/{n.sagemaker_role}"},
            {"iam:PassedToService": "lambda.amazonaws.com"},
        ),
        iam.Call(
            "iam:PassRole",
            {"role": f"arn:aws:iam::{ACCOUNT}:role/{n.pipeline_role}"},
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
    ]
    assert [str(c) for c in refused if allowed(dev, role, c)] == []
    # a serverless endpoint has no volume key: no grant on the lake key but for instances
    grant = iam.Call(
        "kms:CreateGrant", {"key": lake_key_arn(dev)}, {"kms:GrantIsForAWSResource": "true"}
    )
    assert not allowed(dev, role, grant)
    assert allowed(instance_dev, role, grant)
    assert not allowed(
        instance_dev, role, dataclasses.replace(grant, context={})
    )  # only for AWS resources


def test_the_execution_role_may_log_publish_metrics_and_capture_for_the_endpoint(each_env):
    n = each_env.names
    statements = [
        s
        for s in role_statements(each_env, n.sagemaker_role)
        if s.get("Sid") in ("WriteEndpointLogs", "PublishEndpointMetrics", "CaptureData")
    ]
    models = f"arn:aws:s3:::{n.models_bucket}"
    per_model = {
        statement
        for model in SERVED
        for statement in (
            (
                "WriteEndpointLogs",
                (
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ),
                (region_arn(each_env, "logs", f"log-group:{n.endpoint_log_group(model)}:*"),),
                "{}",
            ),
            ("CaptureData", ("s3:PutObject",), (f"{models}/data-capture/{model}/*",), "{}"),
        )
    }
    assert normalized(statements) == per_model | {
        (
            "PublishEndpointMetrics",
            ("cloudwatch:PutMetricData",),
            ("*",),
            json.dumps({"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}),
        )
    }
    # attached from the serving stack: the ML stack itself is unchanged
    for model in SERVED:
        (policy,) = [
            r
            for lid, r in resources(each_env, "AWS::IAM::Policy").items()
            if lid.startswith(f"{pascal_case(model)}EndpointExecutionRoleServes")
        ]
        (role,) = assembly(each_env).resolve(KIND, policy["Properties"]["Roles"])
        assert role == n.sagemaker_role


# ----------------------------------------------------------------------------- alarms


def alarms(synth: Synth) -> dict[str, dict]:
    return {
        r["Properties"]["AlarmName"].removeprefix(f"{synth.names.prefix} "): props(synth, lid)
        for lid, r in resources(synth, "AWS::CloudWatch::Alarm").items()
    }


PER_MODEL_ALARMS = (
    "ScorerIteratorAge",
    "ScorerErrors",
    "ScorerThrottles",
    "Endpoint5XXErrors",
    "EndpointModelLatencyP99",
    "ScorerFailedBatches",
    "DeployerFailures",
)


def test_alarms_watch_lag_failures_and_the_endpoint_and_page_the_alerts_topic(each_env):
    n = each_env.names
    found = alarms(each_env)
    assert set(found) == {
        f"{pascal_case(m)}{kind}" for m in SERVED for kind in PER_MODEL_ALARMS
    } | {"InterventionsUndelivered"}
    alerts = region_arn(each_env, "sns", n.alerts_topic)
    for name, a in found.items():
        assert a["AlarmActions"] == [alerts], name
        assert a["ComparisonOperator"] == "GreaterThanThreshold", name
        assert a["TreatMissingData"] == "notBreaching", name

    def watches(name, namespace, metric, dimensions, threshold, statistic="Sum"):
        a = found[name]
        assert (a["Namespace"], a["MetricName"]) == (namespace, metric), name
        assert {d["Name"]: d["Value"] for d in a["Dimensions"]} == dimensions, name
        assert a["Threshold"] == threshold, name
        assert a.get("Statistic", a.get("ExtendedStatistic")) == statistic, name

    for model in SERVED:  # each model's own scorer, endpoint and queues
        cid = pascal_case(model)
        scorer = {"FunctionName": n.scorer_function(model)}
        endpoint = {"EndpointName": n.endpoint(model), "VariantName": "AllTraffic"}
        watches(
            f"{cid}ScorerIteratorAge",
            "AWS/Lambda",
            "IteratorAge",
            scorer,
            ITERATOR_AGE_ALARM_MS,
            "Maximum",
        )
        watches(f"{cid}ScorerErrors", "AWS/Lambda", "Errors", scorer, 0)
        watches(f"{cid}ScorerThrottles", "AWS/Lambda", "Throttles", scorer, 0)
        watches(f"{cid}Endpoint5XXErrors", "AWS/SageMaker", "Invocation5XXErrors", endpoint, 0)
        watches(
            f"{cid}EndpointModelLatencyP99",
            "AWS/SageMaker",
            "ModelLatency",
            endpoint,
            MODEL_LATENCY_P99_ALARM_US,
            "p99",
        )
        for name, queue in (
            (f"{cid}ScorerFailedBatches", n.scorer_failures_queue(model)),
            (f"{cid}DeployerFailures", n.deployer_dlq(model)),
        ):
            watches(
                name,
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": queue},
                0,
                "Maximum",
            )
    watches(
        "InterventionsUndelivered",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": n.interventions_dlq},
        0,
        "Maximum",
    )


def test_the_serving_dashboard_shows_each_models_consumer_lag_and_every_alarm(each_env):
    n = each_env.names
    lid, _ = named(each_env, "AWS::CloudWatch::Dashboard", "DashboardName", n.serving_dashboard)
    body = props(each_env, lid)["DashboardBody"]
    assert "SubscribeToShardEvent.MillisBehindLatest" in body
    widgets = json.loads(body)["widgets"]
    titles = [w["properties"].get("title", "") for w in widgets]
    for model in SERVED:
        assert n.stream_consumer(model) in body
        assert f"{model}: scorer lag (ms)" in titles
    (status,) = [w for w in widgets if w["properties"].get("alarms")]
    assert len(status["properties"]["alarms"]) == len(resources(each_env, "AWS::CloudWatch::Alarm"))
