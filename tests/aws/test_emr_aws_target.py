"""The `--target aws` EMR runtime (dataplatform.runtime.aws.emr) and `dp emr` against it.

moto keeps EMR steps PENDING/RUNNING forever (docs/moto.md), so: moto (in-process
`mock_aws`) for what it does faithfully -- finding the environment's cluster, recording the
step that `add_job_flow_steps` adds with its exact Args, instance groups, the cluster a
RunJobFlow starts -- and scripted fake clients for the states moto never reaches (COMPLETED,
FAILED, CANCELLED; a cluster that starts, or fails to) and for the deployed pipeline's
definition that a cluster is started from when none is active."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from typer.testing import CliRunner

from dataplatform.cli import app
from dataplatform.jobs.emr_step_args import emr_step, step_arguments
from dataplatform.naming import TRANSIENT_CLUSTER_TAG, Names
from dataplatform.runtime.aws import emr
from dataplatform.runtime.aws.jobs import JobTimedOut
from dataplatform.runtime.errors import JobFailed
from dataplatform.runtime.progress import Notice
from stacks.platform import REPO_ROOT
from tests.contracts.api_model import problems

REGION = "eu-west-1"
NAMES = Names(project="mldp", env="dev", account="123456789012", region=REGION)
ARTIFACTS = NAMES.artifacts_bucket
runner = CliRunner()
SPEC = str(REPO_ROOT / "spec")


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def start_cluster(client, name: str = NAMES.emr_cluster, *, log_uri: str | None = None) -> str:
    return client.run_job_flow(
        Name=name,
        ReleaseLabel="emr-7.12.0",
        Applications=[{"Name": "Spark"}],
        LogUri=log_uri or f"s3://{ARTIFACTS}/logs/emr/",
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Instances={
            "KeepJobFlowAliveWhenNoSteps": True,
            "InstanceGroups": [
                {
                    "Name": "master",
                    "InstanceRole": "MASTER",
                    "Market": "ON_DEMAND",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
                {
                    "Name": "core",
                    "InstanceRole": "CORE",
                    "Market": "ON_DEMAND",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
                {
                    "Name": "task",
                    "InstanceRole": "TASK",
                    "Market": "SPOT",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
            ],
        },
    )["JobFlowId"]


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("emr", region_name=REGION)


# ----------------------------------------------------------------------------- moto


def test_the_environments_active_cluster_is_found_by_name(aws):
    aws.terminate_job_flows(JobFlowIds=[start_cluster(aws)])  # terminated: ignored
    start_cluster(aws, "mldp-prod")  # another environment
    wanted = start_cluster(aws)
    assert emr.find_cluster(aws, NAMES)["Id"] == wanted


def test_no_cluster_tells_how_to_get_one(aws):
    start_cluster(aws, "mldp-prod")
    with pytest.raises(emr.NoCluster) as error:
        emr.find_cluster(aws, NAMES)
    text = str(error.value)
    assert "no active EMR cluster named mldp-dev" in text
    assert (
        "`dp emr run` starts one from the ML pipeline's cluster definition "
        "(mldp-dev-ml-pipeline) unless told --no-start" in text
    )
    assert (
        "`emr: {long_running: true}` for environment dev in spec/platform.yaml and deploy" in text
    )
    assert isinstance(error.value, JobFailed)  # the CLI's one except clause


def test_run_step_adds_the_step_with_its_exact_args(aws):
    cluster = start_cluster(aws)
    clock = FakeClock()
    with pytest.raises(JobTimedOut) as error:  # moto never finishes a step
        emr.run_step(
            aws,
            NAMES,
            "frequent_itemsets",
            ["min-support=0.1", "output-name=orders"],
            poll_seconds=5,
            timeout_seconds=12,
            sleep=clock.sleep,
            clock=clock,
        )
    (step,) = aws.list_steps(ClusterId=cluster)["Steps"]
    assert f"aws emr cancel-steps --cluster-id {cluster} --step-ids {step['Id']}" in str(
        error.value
    )
    assert clock.sleeps == [5, 5, 5]
    described = aws.describe_step(ClusterId=cluster, StepId=step["Id"])["Step"]
    expected = emr_step("frequent_itemsets", NAMES, ["min-support=0.1", "output-name=orders"])
    assert described["Name"] == "mldp-dev frequent_itemsets orders"
    assert described["ActionOnFailure"] == "CONTINUE"
    assert described["Config"]["Jar"] == "command-runner.jar"
    assert described["Config"]["Args"] == expected["HadoopJarStep"]["Args"]
    assert described["Config"]["Args"][:6] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--py-files",
        f"s3://{ARTIFACTS}/code/lib/dataplatform.zip",
        f"s3://{ARTIFACTS}/code/emr_steps/frequent_itemsets.py",
    ]
    assert "--min-support" in described["Config"]["Args"]


def test_bad_arguments_are_refused_before_any_call(aws):
    with pytest.raises(ValueError, match="does not accept colour"):
        emr.run_step(aws, NAMES, "frequent_itemsets", ["colour=red"])
    assert aws.list_clusters()["Clusters"] == []


def test_cluster_status_has_instance_groups_and_steps(aws):
    cluster = start_cluster(aws)
    emr.add_step(aws, cluster, emr_step("features", NAMES, ["name=house_features"]))
    status = emr.cluster_status(aws, NAMES)
    assert status.cluster["Id"] == cluster
    groups = {
        g["InstanceGroupType"]: (g["Market"], g["InstanceType"], g["RequestedInstanceCount"])
        for g in status.instance_groups
    }
    assert groups == {
        "MASTER": ("ON_DEMAND", "m5.xlarge", 1),
        "CORE": ("ON_DEMAND", "m5.xlarge", 1),
        "TASK": ("SPOT", "m5.xlarge", 1),
    }
    assert [s["Name"] for s in status.steps] == ["mldp-dev features house_features"]


# ----------------------------------------------------------------------------- scripted states


class ScriptedEmr:
    """A fake EMR client: one active cluster; describe_step walks through `states`."""

    def __init__(self, states: list[dict], log_uri: str | None = "s3n://logs-bucket/emr/"):
        self.states = list(states)
        self.added: list[dict] = []
        self.log_uri = log_uri

    def get_paginator(self, name):
        assert name == "list_clusters"

        class Paginator:
            def paginate(self, ClusterStates):
                assert set(ClusterStates) == set(emr.CLUSTER_ACTIVE_STATES)
                return [
                    {"Clusters": [{"Id": "j-OTHER", "Name": "someone-else"}]},
                    {
                        "Clusters": [
                            {"Id": "j-1", "Name": NAMES.emr_cluster, "Status": {"State": "WAITING"}}
                        ]
                    },
                ]

        return Paginator()

    def describe_cluster(self, ClusterId):
        cluster = {"Id": ClusterId, "Name": NAMES.emr_cluster}
        if self.log_uri:
            cluster["LogUri"] = self.log_uri
        return {"Cluster": cluster}

    def add_job_flow_steps(self, JobFlowId, Steps):
        assert JobFlowId == "j-1"
        self.added += Steps
        return {"StepIds": ["s-42"]}

    def describe_step(self, ClusterId, StepId):
        assert (ClusterId, StepId) == ("j-1", "s-42")
        status = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"Step": {"Id": StepId, "Status": status}}


def test_polls_to_completion_with_progress():
    fake = ScriptedEmr(
        [{"State": "PENDING"}, {"State": "RUNNING"}, {"State": "RUNNING"}, {"State": "COMPLETED"}]
    )
    clock, lines = FakeClock(), []
    result = emr.run_step(
        fake,
        NAMES,
        "features",
        {"name": "customer_features"},
        poll_seconds=10,
        sleep=clock.sleep,
        clock=clock,
        progress=lines.append,
    )
    assert (result.cluster_id, result.step_id, result.state) == ("j-1", "s-42", "COMPLETED")
    assert result.duration == 30 and clock.sleeps == [10, 10, 10]
    assert result.arguments == step_arguments("features", NAMES, {"name": "customer_features"})
    assert result.log_uri == "s3://logs-bucket/emr/j-1/steps/s-42/"
    assert lines == [
        "mldp-dev features customer_features: added step s-42 to cluster j-1",
        "mldp-dev features customer_features: step s-42 PENDING (0 s)",
        "mldp-dev features customer_features: step s-42 RUNNING (10 s)",
        "mldp-dev features customer_features: step s-42 RUNNING (20 s)",
        "mldp-dev features customer_features: COMPLETED in 30 s",
    ]
    assert fake.added == [emr_step("features", NAMES, {"name": "customer_features"})]


def test_failure_carries_the_reason_message_and_log_file():
    fake = ScriptedEmr(
        [
            {"State": "RUNNING"},
            {
                "State": "FAILED",
                "FailureDetails": {
                    "Reason": "Unknown Error.",
                    "Message": "ValueError: --input-table curated.baskets: no table",
                    "LogFile": "s3n://logs-bucket/emr/j-1/steps/s-42/stderr.gz",
                },
            },
        ]
    )
    clock = FakeClock()
    with pytest.raises(emr.StepFailed) as error:
        emr.run_step(fake, NAMES, "frequent_itemsets", (), sleep=clock.sleep, clock=clock)
    failed = error.value
    assert (failed.state, failed.run_id, failed.reason) == ("FAILED", "s-42", "Unknown Error.")
    assert failed.log_uri == "s3://logs-bucket/emr/j-1/steps/s-42/stderr.gz"
    text = str(failed)
    assert (
        "step s-42 (mldp-dev frequent_itemsets basket) FAILED after 15 s on cluster j-1: Unknown "
        "Error.: ValueError: --input-table curated.baskets: no table" in text
    )
    assert "log: s3://logs-bucket/emr/j-1/steps/s-42/stderr.gz" in text


def test_failure_without_log_file_points_at_the_step_log_folder():
    fake = ScriptedEmr(
        [{"State": "CANCELLED", "StateChangeReason": {"Message": "cancelled by user"}}],
        log_uri=None,
    )
    with pytest.raises(emr.StepFailed) as error:
        emr.run_step(fake, NAMES, "frequent_itemsets", (), sleep=lambda s: None, clock=lambda: 0.0)
    assert "CANCELLED after 0 s on cluster j-1: cancelled by user" in str(error.value)
    assert error.value.log_uri == f"s3://{ARTIFACTS}/logs/emr/j-1/steps/s-42/"


# ----------------------------------------------------------------------------- a cluster on demand

# The deployed dev pipeline's definition as DescribeStateMachine returns it, trimmed to the
# states around CreateCluster; CreateCluster's Parameters are the synthesized ones, resolved
# as the account sees them (tests/infra/test_contracts.py checks the real definition).
CREATE_CLUSTER_PARAMETERS = {
    "Instances": {
        "Ec2SubnetId": "subnet-0a1b2c3d4e5f60718",
        "EmrManagedMasterSecurityGroup": "sg-0c1d2e3f4a5b6c7d8",
        "EmrManagedSlaveSecurityGroup": "sg-09a8b7c6d5e4f3a2b",
        "InstanceGroups": [
            {
                "InstanceCount": 1,
                "InstanceRole": "MASTER",
                "InstanceType": "m5.xlarge",
                "Market": "ON_DEMAND",
                "Name": "master",
            },
            {
                "EbsConfiguration": {
                    "EbsBlockDeviceConfigs": [
                        {
                            "VolumeSpecification": {"SizeInGB": 64, "VolumeType": "gp3"},
                            "VolumesPerInstance": 1,
                        }
                    ],
                    "EbsOptimized": True,
                },
                "InstanceCount": 1,
                "InstanceRole": "CORE",
                "InstanceType": "m5.xlarge",
                "Market": "ON_DEMAND",
                "Name": "core",
            },
            {
                "InstanceCount": 1,
                "InstanceRole": "TASK",
                "InstanceType": "m5.xlarge",
                "Market": "SPOT",
                "Name": "task",
            },
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
        "ServiceAccessSecurityGroup": "sg-0f1e2d3c4b5a69788",
        "TerminationProtected": False,
    },
    "JobFlowRole": NAMES.emr_instance_role,
    "Name": NAMES.transient_emr_cluster,
    "ServiceRole": NAMES.emr_service_role,
    "Applications": [{"Name": "Spark"}, {"Name": "Hadoop"}],
    "AutoScalingRole": "mldp-dev-orchestration-CreateClusterAutoScalingRol-1A2B3C4D5E6F",
    "Configurations": [
        {
            "Classification": "spark-defaults",
            "Properties": {
                "spark.dynamicAllocation.enabled": "true",
                "spark.shuffle.service.enabled": "true",
                "spark.sql.adaptive.enabled": "true",
                "spark.sql.adaptive.coalescePartitions.enabled": "true",
                "spark.sql.adaptive.skewJoin.enabled": "true",
                "spark.sql.session.timeZone": "UTC",
                "spark.sql.sources.partitionOverwriteMode": "dynamic",
            },
        },
        {
            "Classification": "spark-hive-site",
            "Properties": {
                "hive.metastore.client.factory.class": "com.amazonaws.glue.catalog.metastore."
                "AWSGlueDataCatalogHiveClientFactory"
            },
        },
        {
            "Classification": "spark-env",
            "Configurations": [
                {
                    "Classification": "export",
                    "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3.11"},
                }
            ],
        },
    ],
    "LogUri": f"s3://{ARTIFACTS}/logs/emr/",
    "ManagedScalingPolicy": {
        "ComputeLimits": {
            "UnitType": "Instances",
            "MinimumCapacityUnits": 1,
            "MaximumCapacityUnits": 3,
            "MaximumOnDemandCapacityUnits": 1,
            "MaximumCoreCapacityUnits": 1,
        }
    },
    "ReleaseLabel": "emr-7.12.0",
    "SecurityConfiguration": NAMES.emr_security_configuration,
    "Tags": [
        {"Key": "project", "Value": "mldp"},
        {"Key": "environment", "Value": "dev"},
        {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"},
        {"Key": TRANSIENT_CLUSTER_TAG, "Value": NAMES.transient_emr_cluster},
    ],
    "VisibleToAllUsers": True,
    "AutoTerminationPolicy": {"IdleTimeout": 1800},
}


def pipeline_definition(create_cluster: dict | None = None) -> dict:
    """The pipeline's ASL: curate (a Parallel), CreateCluster, a features step, terminate."""
    retry = [{"ErrorEquals": ["ThrottlingException"], "IntervalSeconds": 5, "MaxAttempts": 5}]
    return {
        "StartAt": "CurateDatasets",
        "States": {
            "CurateDatasets": {
                "Type": "Parallel",
                "ResultPath": None,
                "Next": "CreateCluster",
                "Branches": [
                    {
                        "StartAt": "CurateTelecomEvents",
                        "States": {
                            "CurateTelecomEvents": {
                                "Type": "Task",
                                "End": True,
                                "Retry": retry,
                                "ResultPath": None,
                                "Resource": "arn:aws:states:::glue:startJobRun.sync",
                                "Parameters": {"JobName": NAMES.curate_job("telecom_events")},
                            }
                        },
                    }
                ],
            },
            "CreateCluster": {
                "Type": "Task",
                "Next": "FeaturesCustomerFeatures",
                "Retry": retry,
                "ResultSelector": {"ClusterId.$": "$.ClusterId"},
                "ResultPath": "$.cluster",
                "Resource": "arn:aws:states:::elasticmapreduce:createCluster.sync",
                "Parameters": create_cluster or CREATE_CLUSTER_PARAMETERS,
            },
            "FeaturesCustomerFeatures": {
                "Type": "Task",
                "Next": "TerminateCluster",
                "ResultPath": None,
                "Resource": "arn:aws:states:::elasticmapreduce:addStep.sync",
                "Parameters": {
                    "ClusterId.$": "$.cluster.ClusterId",
                    "Step": emr_step("features", NAMES, {"name": "customer_features"}),
                },
            },
            "TerminateCluster": {
                "Type": "Task",
                "End": True,
                "ResultPath": None,
                "Resource": "arn:aws:states:::elasticmapreduce:terminateCluster.sync",
                "Parameters": {"ClusterId.$": "$.cluster.ClusterId"},
            },
        },
        "TimeoutSeconds": 43200,
    }


class FakeStepFunctions:
    """DescribeStateMachine of the environment's pipeline, as AWS answers it (or
    StateMachineDoesNotExist when `definition` is None); records the ARNs asked for."""

    def __init__(self, definition: dict | None):
        self.definition = definition
        self.asked: list[str] = []

    def describe_state_machine(self, stateMachineArn):
        self.asked.append(stateMachineArn)
        if self.definition is None:
            raise ClientError(
                {
                    "Error": {
                        "Code": "StateMachineDoesNotExist",
                        "Message": f"State Machine Does Not Exist: '{stateMachineArn}'",
                    }
                },
                "DescribeStateMachine",
            )
        return {
            "stateMachineArn": stateMachineArn,
            "name": NAMES.ml_pipeline,
            "status": "ACTIVE",
            "definition": json.dumps(self.definition),
            "roleArn": f"arn:aws:iam::123456789012:role/{NAMES.pipeline_role}",
            "type": "STANDARD",
            "creationDate": datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        }


class StartingEmr:
    """A fake EMR client with no active cluster of the environment: RunJobFlow starts
    j-NEW, whose DescribeCluster walks through `cluster_states`; the step added to it
    completes. Every call is recorded, in order."""

    def __init__(self, cluster_states: list[dict]):
        self.cluster_states = list(cluster_states)
        self.requests: list[dict] = []  # RunJobFlow's
        self.added: list[dict] = []
        self.calls: list[str] = []

    def get_paginator(self, name):
        assert name == "list_clusters"
        calls = self.calls

        class Paginator:
            def paginate(self, ClusterStates):
                calls.append("ListClusters")
                assert set(ClusterStates) == set(emr.CLUSTER_ACTIVE_STATES)
                return [{"Clusters": [{"Id": "j-OTHER", "Name": "mldp-prod"}]}]

        return Paginator()

    def run_job_flow(self, **request):
        self.calls.append("RunJobFlow")
        self.requests.append(request)
        return {
            "JobFlowId": "j-NEW",
            "ClusterArn": "arn:aws:elasticmapreduce:eu-west-1:123456789012:cluster/j-NEW",
        }

    def describe_cluster(self, ClusterId):
        assert ClusterId == "j-NEW"
        self.calls.append("DescribeCluster")
        states = self.cluster_states
        status = states.pop(0) if len(states) > 1 else states[0]
        return {
            "Cluster": {
                "Id": "j-NEW",
                "Name": NAMES.emr_cluster,
                "Status": status,
                "LogUri": f"s3n://{ARTIFACTS}/logs/emr/",
            }
        }

    def add_job_flow_steps(self, JobFlowId, Steps):
        assert JobFlowId == "j-NEW"
        self.calls.append("AddJobFlowSteps")
        self.added += Steps
        return {"StepIds": ["s-7"]}

    def describe_step(self, ClusterId, StepId):
        assert (ClusterId, StepId) == ("j-NEW", "s-7")
        self.calls.append("DescribeStep")
        return {"Step": {"Id": StepId, "Status": {"State": "COMPLETED"}}}


STARTING = [
    {"State": "STARTING", "StateChangeReason": {}},
    {"State": "STARTING", "StateChangeReason": {}},
    {"State": "BOOTSTRAPPING", "StateChangeReason": {}},
    {"State": "WAITING", "StateChangeReason": {"Message": "Cluster ready to run steps."}},
]


def expected_request(parameters: dict = CREATE_CLUSTER_PARAMETERS) -> dict:
    """The pipeline's request, with the environment's cluster name and without the tag
    that would let the pipeline role act on it."""
    request = copy.deepcopy(parameters)
    request["Name"] = NAMES.emr_cluster
    request["Tags"] = [
        {"Key": "project", "Value": "mldp"},
        {"Key": "environment", "Value": "dev"},
        {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"},
    ]
    return request


def test_no_cluster_starts_one_from_the_deployed_pipeline_definition_then_runs_the_step():
    fake, sfn = StartingEmr(STARTING), FakeStepFunctions(pipeline_definition())
    clock, lines = FakeClock(), []
    result = emr.run_step(
        fake,
        NAMES,
        "features",
        {"name": "customer_features"},
        stepfunctions=sfn,
        poll_seconds=30,
        sleep=clock.sleep,
        clock=clock,
        progress=lines.append,
    )
    assert sfn.asked == ["arn:aws:states:eu-west-1:123456789012:stateMachine:mldp-dev-ml-pipeline"]
    [request] = fake.requests
    assert request == expected_request()
    assert problems("emr", "RunJobFlow", request) == []  # as EMR's API model takes it
    assert fake.calls == ["ListClusters", "RunJobFlow"] + ["DescribeCluster"] * 4 + [
        "AddJobFlowSteps",
        "DescribeStep",
    ]
    assert fake.added == [emr_step("features", NAMES, {"name": "customer_features"})]
    assert (result.cluster_id, result.step_id, result.state) == ("j-NEW", "s-7", "COMPLETED")
    assert result.started_from == "mldp-dev-ml-pipeline"
    assert result.log_uri == f"s3://{ARTIFACTS}/logs/emr/j-NEW/steps/s-7/"
    assert clock.sleeps == [30, 30, 30]
    assert lines == [
        "no active EMR cluster named mldp-dev: starting cluster j-NEW from "
        "mldp-dev-ml-pipeline's definition (it ends itself after 30 idle minutes)",
        "starting cluster j-NEW: STARTING (0 s)",
        "starting cluster j-NEW: STARTING (30 s)",
        "starting cluster j-NEW: BOOTSTRAPPING (60 s)",
        "cluster j-NEW WAITING after 90 s",
        "mldp-dev features customer_features: added step s-7 to cluster j-NEW",
        "mldp-dev features customer_features: COMPLETED in 0 s",
    ]
    assert isinstance(lines[0], Notice)  # dp prints it above its status bar, to stay
    assert not any(isinstance(line, Notice) for line in lines[1:])


def test_a_computed_name_is_replaced_by_the_environments_cluster_name():
    parameters = {
        **{k: v for k, v in CREATE_CLUSTER_PARAMETERS.items() if k != "Name"},
        "Name.$": "States.Format('{}-pipeline', $$.StateMachine.Name)",
    }
    request = emr.cluster_request(parameters, NAMES)
    assert request == expected_request(CREATE_CLUSTER_PARAMETERS)
    assert parameters["Name.$"]  # the definition itself is left as it was


def test_other_computed_fields_are_refused_by_name_before_anything_starts():
    parameters = copy.deepcopy(CREATE_CLUSTER_PARAMETERS)
    del parameters["Instances"]["Ec2SubnetId"]
    parameters["Instances"]["Ec2SubnetId.$"] = "$.network.subnet"
    parameters["Tags"].append({"Key": "execution", "Value.$": "$$.Execution.Name"})
    fake = StartingEmr(STARTING)
    with pytest.raises(emr.NoCluster) as error:
        emr.run_step(
            fake,
            NAMES,
            "frequent_itemsets",
            (),
            stepfunctions=FakeStepFunctions(pipeline_definition(parameters)),
            sleep=lambda s: None,
            clock=lambda: 0.0,
        )
    assert (
        "none to start from the ML pipeline state machine mldp-dev-ml-pipeline: its "
        "createCluster task computes Instances.Ec2SubnetId.$ ($.network.subnet), "
        "Tags[4].Value.$ ($$.Execution.Name) from the execution" in str(error.value)
    )
    assert "stacks/constructs/emr_cluster.py" in str(error.value)
    assert fake.calls == ["ListClusters"]  # nothing started


def test_an_active_cluster_is_used_and_nothing_is_started():
    fake, sfn = ScriptedEmr([{"State": "COMPLETED"}]), FakeStepFunctions(pipeline_definition())
    result = emr.run_step(
        fake,
        NAMES,
        "frequent_itemsets",
        (),
        stepfunctions=sfn,
        sleep=lambda s: None,
        clock=lambda: 0.0,
    )
    assert (result.cluster_id, result.state, result.started_from) == ("j-1", "COMPLETED", None)
    assert sfn.asked == []  # the definition is not even read (and ScriptedEmr has no RunJobFlow)


def test_a_cluster_that_fails_to_start_says_why_and_adds_no_step():
    fake = StartingEmr(
        [
            {"State": "STARTING", "StateChangeReason": {}},
            {
                "State": "TERMINATED_WITH_ERRORS",
                "StateChangeReason": {
                    "Code": "VALIDATION_ERROR",
                    "Message": "The requested instance type m5.xlarge is not supported in "
                    "the requested availability zone.",
                },
            },
        ]
    )
    clock = FakeClock()
    with pytest.raises(emr.ClusterFailed) as error:
        emr.run_step(
            fake,
            NAMES,
            "frequent_itemsets",
            (),
            stepfunctions=FakeStepFunctions(pipeline_definition()),
            poll_seconds=20,
            sleep=clock.sleep,
            clock=clock,
        )
    failed = error.value
    assert isinstance(failed, JobFailed)  # dp's one except clause: exit 1, the message
    assert (failed.state, failed.run_id) == ("TERMINATED_WITH_ERRORS", "j-NEW")
    assert failed.reason.startswith("VALIDATION_ERROR: The requested instance type m5.xlarge")
    assert failed.log_uri == f"s3://{ARTIFACTS}/logs/emr/j-NEW/"
    assert (
        "cluster j-NEW (mldp-dev), started from mldp-dev-ml-pipeline's definition, "
        "TERMINATED_WITH_ERRORS after 20 s, before it took the step: VALIDATION_ERROR: The "
        "requested instance type m5.xlarge is not supported" in str(failed)
    )
    assert f"log: s3://{ARTIFACTS}/logs/emr/j-NEW/" in str(failed)
    assert "AddJobFlowSteps" not in fake.calls


def test_a_cluster_still_starting_at_the_timeout_is_left_to_start():
    fake, clock = StartingEmr([{"State": "STARTING", "StateChangeReason": {}}]), FakeClock()
    with pytest.raises(JobTimedOut) as error:
        emr.run_step(
            fake,
            NAMES,
            "frequent_itemsets",
            (),
            stepfunctions=FakeStepFunctions(pipeline_definition()),
            poll_seconds=60,
            cluster_timeout_seconds=120,
            sleep=clock.sleep,
            clock=clock,
        )
    assert "cluster j-NEW still STARTING after 120 s (timeout 120 s)" in str(error.value)
    assert "aws emr terminate-clusters --cluster-ids j-NEW" in str(error.value)
    assert clock.sleeps == [60, 60] and "AddJobFlowSteps" not in fake.calls


def test_no_pipeline_state_machine_names_what_to_deploy():
    fake, sfn = StartingEmr(STARTING), FakeStepFunctions(None)
    with pytest.raises(emr.NoCluster) as error:
        emr.run_step(fake, NAMES, "frequent_itemsets", (), stepfunctions=sfn)
    text = str(error.value)
    assert (
        "no active EMR cluster named mldp-dev, and none to start: the ML pipeline state "
        "machine mldp-dev-ml-pipeline (stack mldp-dev-orchestration), whose cluster "
        "definition `dp emr run` starts one from, is not deployed in account 123456789012, "
        "region eu-west-1: deploy it (make deploy ENV=dev)" in text
    )
    assert "long_running: true" in text
    assert fake.calls == ["ListClusters"]


def test_a_definition_without_a_create_cluster_task_names_what_to_deploy():
    definition = pipeline_definition()
    del definition["States"]["CreateCluster"]
    with pytest.raises(emr.NoCluster) as error:
        emr.run_step(
            StartingEmr(STARTING),
            NAMES,
            "frequent_itemsets",
            (),
            stepfunctions=FakeStepFunctions(definition),
        )
    assert (
        "none to start from the ML pipeline state machine mldp-dev-ml-pipeline: its "
        "definition has no elasticmapreduce:createCluster task; deploy the stack "
        "mldp-dev-orchestration of this version" in str(error.value)
    )


def test_without_the_step_functions_client_nothing_is_started():
    fake = StartingEmr(STARTING)
    with pytest.raises(emr.NoCluster) as error:
        emr.run_step(fake, NAMES, "frequent_itemsets", ())
    assert str(error.value) == emr.no_cluster_message(NAMES)
    assert fake.calls == ["ListClusters"]


def test_the_started_cluster_is_the_one_found_next_time(aws):
    """moto's EMR and Step Functions: the pipeline deployed with the definition, a cluster
    started from it carries the environment's name, its groups and its tags."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.create_state_machine(
        name=NAMES.ml_pipeline,
        definition=json.dumps(pipeline_definition()),
        roleArn=f"arn:aws:iam::123456789012:role/{NAMES.pipeline_role}",
    )
    start_cluster(aws, NAMES.transient_emr_cluster)  # a pipeline's cluster: not this one
    clock = FakeClock()
    cluster = emr.start_cluster(aws, sfn, NAMES, sleep=clock.sleep, clock=clock)
    assert emr.find_cluster(aws, NAMES)["Id"] == cluster["Id"]
    described = aws.describe_cluster(ClusterId=cluster["Id"])["Cluster"]
    assert described["Name"] == "mldp-dev"
    assert described["Tags"] == expected_request()["Tags"]
    assert described["ReleaseLabel"] == "emr-7.12.0"
    assert described["SecurityConfiguration"] == NAMES.emr_security_configuration
    assert described["AutoTerminate"] is False
    groups = {
        g["InstanceGroupType"]: (g["Market"], g["InstanceType"], g["RequestedInstanceCount"])
        for g in aws.list_instance_groups(ClusterId=cluster["Id"])["InstanceGroups"]
    }
    assert groups == {
        "MASTER": ("ON_DEMAND", "m5.xlarge", 1),
        "CORE": ("ON_DEMAND", "m5.xlarge", 1),
        "TASK": ("SPOT", "m5.xlarge", 1),
    }


# ----------------------------------------------------------------------------- dp emr --target aws


def invoke(*args: str):
    return runner.invoke(app, [*args, "--spec", SPEC])


def text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_dp_emr_run_without_a_cluster_or_a_pipeline_exits_1_with_the_fix(aws):
    result = runner.invoke(
        app,
        ["--target", "aws", "emr", "run", "frequent_itemsets", "--spec", SPEC],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 1
    assert "no active EMR cluster named mldp-dev, and none to start" in text(result)
    assert "mldp-dev-ml-pipeline" in text(result) and "long_running: true" in text(result)


@pytest.mark.parametrize("flag, starts", [([], True), (["--no-start"], False)])
def test_dp_emr_run_says_it_started_a_cluster_and_which_one_ran_the_step(
    aws, monkeypatch, flag, starts
):
    asked = {}

    def run_step(emr_client, names, step, args, *, stepfunctions, progress, poll_seconds):
        asked["stepfunctions"] = stepfunctions
        if stepfunctions is None:
            raise emr.NoCluster(emr.no_cluster_message(names))
        progress(Notice("no active EMR cluster named mldp-dev: starting cluster j-NEW from ..."))
        progress("starting cluster j-NEW: STARTING (0 s)")
        return emr.StepResult(
            cluster_id="j-NEW",
            step_id="s-7",
            name="mldp-dev frequent_itemsets basket",
            state="COMPLETED",
            duration=42.0,
            log_uri=f"s3://{ARTIFACTS}/logs/emr/j-NEW/steps/s-7/",
            started_from=names.ml_pipeline,
        )

    monkeypatch.setattr(emr, "run_step", run_step)
    result = runner.invoke(
        app,
        ["--target", "aws", "emr", "run", "frequent_itemsets", *flag, "--spec", SPEC],
        env={"COLUMNS": "300"},
    )
    assert (asked["stepfunctions"] is not None) == starts
    if not starts:
        assert result.exit_code == 1 and "unless told --no-start" in text(result)
        return
    assert result.exit_code == 0, result.output
    assert (
        "frequent_itemsets basket: no active EMR cluster named mldp-dev: starting "
        "cluster j-NEW from ..." in text(result)
    )
    assert (
        "COMPLETED in 42.0 s (cluster j-NEW, started for this step from "
        "mldp-dev-ml-pipeline's definition, run s-7" in text(result)
    )


def test_dp_emr_status_shows_the_cluster_its_groups_and_steps(aws):
    cluster = start_cluster(aws)
    emr.add_step(aws, cluster, emr_step("features", NAMES, ["name=house_features"]))
    result = runner.invoke(
        app, ["--target", "aws", "emr", "status", "--spec", SPEC], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert (
        f"cluster mldp-dev {cluster}: WAITING" in result.output
        or f"cluster mldp-dev {cluster}: RUNNING" in result.output
    )
    assert "SPOT" in result.output and "ON_DEMAND" in result.output
    assert "features house_features" in result.output


def test_dp_emr_status_without_a_cluster_says_so_and_that_dp_emr_run_starts_one(aws):
    result = runner.invoke(
        app, ["--target", "aws", "emr", "status", "--spec", SPEC], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 1
    assert "no active EMR cluster named mldp-dev" in text(result)
    assert "`dp emr run` starts one from the ML pipeline's cluster definition" in text(result)
