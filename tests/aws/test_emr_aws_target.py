"""The `--target aws` EMR runtime (dataplatform.runtime.aws.emr) and `dp emr` against it.

moto keeps EMR steps PENDING/RUNNING forever (docs/moto.md), so: moto (in-process
`mock_aws`) for what it does faithfully -- finding the environment's cluster, recording the
step that `add_job_flow_steps` adds with its exact Args, instance groups -- and a scripted
fake client for the states moto never reaches (COMPLETED, FAILED, CANCELLED)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from dataplatform.cli import app
from dataplatform.jobs.emr_step_args import emr_step, step_arguments
from dataplatform.naming import Names
from dataplatform.runtime.aws import emr
from dataplatform.runtime.aws.jobs import JobTimedOut
from dataplatform.runtime.errors import JobFailed
from stacks.platform import REPO_ROOT

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
        "`emr: {long_running: true}` for environment dev in spec/platform.yaml and deploy" in text
    )
    assert "pipeline" in text
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


# ----------------------------------------------------------------------------- dp emr --target aws


def invoke(*args: str):
    return runner.invoke(app, [*args, "--spec", SPEC])


def test_dp_emr_run_without_a_cluster_exits_1_with_the_fix(aws):
    result = runner.invoke(
        app, ["--target", "aws", "emr", "run", "frequent_itemsets", "--spec", SPEC]
    )
    assert result.exit_code == 1
    assert "no active EMR cluster named mldp-dev" in result.output
    assert "long_running: true" in result.output


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


def test_dp_emr_status_without_a_cluster_exits_1(aws):
    result = runner.invoke(app, ["--target", "aws", "emr", "status", "--spec", SPEC])
    assert result.exit_code == 1 and "long_running: true" in result.output
