"""Step Functions on the local endpoint runs what it is given, with plain boto3: the state
machines here use the ML pipeline's integrations in the forms the synthesized definition
uses them (elasticmapreduce createCluster/addStep/terminateCluster `.sync`, sagemaker
createTrainingJob `.sync`, sns publish, Catch to a cleanup path, a Fail state), and each
assertion is on what the work produced: rows a step's Spark wrote (against pandas), the
model.tar.gz a training state left, the alert on the queue, the cluster terminated."""

from __future__ import annotations

import io
import json
import tarfile
import time

import joblib
import pandas as pd
import pytest

from dataplatform.runtime.local import server
from dataplatform.runtime.local.platform import LOCAL_ACCOUNT
from tests.local.test_sagemaker_endpoint import platform as sagemaker_platform  # noqa: F401
from tests.local.test_sagemaker_endpoint import request_for

ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/state-machine-test"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

# A step script: n rows of (id, id squared) as CSV where it is told, with Spark.
SQUARES = """
import sys
from pyspark.sql import SparkSession
n, out = int(sys.argv[1]), sys.argv[2]
spark = SparkSession.builder.getOrCreate()
spark.range(n).selectExpr("id", "id * id AS square").coalesce(1).write.mode("overwrite").csv(out)
"""
FAILS = """
raise SystemExit("the step's own reason for failing")
"""


@pytest.fixture(scope="module")
def platform(sagemaker_platform):  # noqa: F811
    return sagemaker_platform


@pytest.fixture(scope="module")
def bucket(platform):
    local, client = platform
    s3 = client("s3")
    name = local.names.artifacts_bucket
    s3.put_object(Bucket=name, Key="sfn-tests/squares.py", Body=SQUARES.encode())
    s3.put_object(Bucket=name, Key="sfn-tests/fails.py", Body=FAILS.encode())
    return name


def cluster_definition(bucket: str) -> dict:
    return {
        "Name": "sfn-test-cluster",
        "ReleaseLabel": "emr-7.5.0",
        "Applications": [{"Name": "Spark"}],
        "LogUri": f"s3://{bucket}/sfn-tests/emr-logs/",
        "ServiceRole": "EMR_DefaultRole",
        "JobFlowRole": "EMR_EC2_DefaultRole",
        "Instances": {
            "KeepJobFlowAliveWhenNoSteps": True,
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1},
                {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 1},
            ],
        },
    }


def emr_machine(bucket: str, topic_arn: str) -> dict:
    """Create a cluster, run one step, terminate the cluster; on a failure, terminate the
    cluster, publish the alert and fail with PipelineFailed (the pipeline's cleanup)."""
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cleanup"}]
    return {
        "StartAt": "CreateCluster",
        "States": {
            "CreateCluster": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:createCluster.sync",
                "Parameters": cluster_definition(bucket),
                "ResultSelector": {"ClusterId.$": "$.ClusterId"},
                "ResultPath": "$.cluster",
                "Next": "RunStep",
            },
            "RunStep": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:addStep.sync",
                "Parameters": {
                    "ClusterId.$": "$.cluster.ClusterId",
                    "Step": {
                        "Name.$": "$.step_name",
                        "ActionOnFailure": "CONTINUE",
                        "HadoopJarStep": {"Jar": "command-runner.jar", "Args.$": "$.args"},
                    },
                },
                "ResultSelector": {"StepId.$": "$.Step.Id", "State.$": "$.Step.Status.State"},
                "ResultPath": "$.step",
                "Catch": catch,
                "Next": "Terminate",
            },
            "Terminate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:terminateCluster.sync",
                "Parameters": {"ClusterId.$": "$.cluster.ClusterId"},
                "ResultPath": None,
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
            "Cleanup": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:terminateCluster.sync",
                "Parameters": {"ClusterId.$": "$.cluster.ClusterId"},
                "ResultPath": None,
                "Next": "NotifyFailure",
            },
            "NotifyFailure": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {
                    "TopicArn": topic_arn,
                    "Message.$": "States.Format('pipeline {} failed: {}', "
                    "$$.Execution.Name, $.error.Error)",
                },
                "ResultPath": None,
                "Next": "PipelineFailed",
            },
            "PipelineFailed": {
                "Type": "Fail",
                "Error": "PipelineFailed",
                "CausePath": "$.error.Cause",
            },
        },
    }


def run(sfn, machine_arn: str, name: str, execution_input: dict) -> dict:
    arn = sfn.start_execution(
        stateMachineArn=machine_arn, name=name, input=json.dumps(execution_input)
    )["executionArn"]
    for _ in range(1200):
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] in TERMINAL:
            return described
        time.sleep(0.1)
    events = sfn.get_execution_history(executionArn=arn)["events"]
    raise AssertionError(f"{name} still {described['status']}; the last events: {events[-3:]}")


@pytest.fixture(scope="module")
def alerts(platform):
    """A topic with a queue subscribed: what the failure path publishes, read back."""
    _, client = platform
    sns, sqs = client("sns"), client("sqs")
    topic = sns.create_topic(Name="sfn-test-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="sfn-test-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return topic, queue


@pytest.fixture(scope="module")
def emr_pipeline(platform, bucket, alerts):
    _, client = platform
    topic, _ = alerts
    return client("stepfunctions").create_state_machine(
        name="sfn-test-emr", definition=json.dumps(emr_machine(bucket, topic)), roleArn=ROLE
    )["stateMachineArn"]


def test_an_emr_step_runs_on_a_cluster_the_execution_creates_and_terminates(
    platform, bucket, emr_pipeline
):
    _, client = platform
    sfn, s3, emr = client("stepfunctions"), client("s3"), client("emr")
    out = f"s3://{bucket}/sfn-tests/squares/"
    args = ["spark-submit", f"s3://{bucket}/sfn-tests/squares.py", "7", out]
    described = run(sfn, emr_pipeline, "squares", {"step_name": "squares", "args": args})
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="sfn-tests/squares/part-")["Contents"]
    body = s3.get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read()
    written = pd.read_csv(io.BytesIO(body), header=None, names=["id", "square"])
    expected = pd.DataFrame({"id": range(7)}).assign(square=lambda f: f.id**2)
    pd.testing.assert_frame_equal(written.sort_values("id", ignore_index=True), expected)

    output = json.loads(described["output"])
    assert output["step"]["State"] == "COMPLETED"
    cluster = emr.describe_cluster(ClusterId=output["cluster"]["ClusterId"])["Cluster"]
    assert cluster["Status"]["State"] in ("TERMINATING", "TERMINATED")
    step = emr.describe_step(ClusterId=cluster["Id"], StepId=output["step"]["StepId"])["Step"]
    assert step["Config"]["Args"] == args  # the step the execution added, as it gave it

    history = sfn.get_execution_history(executionArn=described["executionArn"])["events"]
    succeeded = [e for e in history if e["type"] == "TaskSucceeded"]
    assert [e["taskSucceededEventDetails"]["resource"] for e in succeeded] == [
        "createCluster.sync",
        "addStep.sync",
        "terminateCluster.sync",
    ]


def test_a_failing_step_takes_the_catch_path_terminates_and_alerts(
    platform, bucket, emr_pipeline, alerts
):
    _, client = platform
    sfn, emr, sqs = client("stepfunctions"), client("emr"), client("sqs")
    _, queue = alerts
    args = ["spark-submit", f"s3://{bucket}/sfn-tests/fails.py"]
    described = run(sfn, emr_pipeline, "fails", {"step_name": "fails", "args": args})
    assert described["status"] == "FAILED"
    assert described["error"] == "PipelineFailed"
    cause = json.loads(described["cause"])  # the failed step, as DescribeStep gives it
    assert cause["Status"]["State"] == "FAILED"
    assert "the step's own reason for failing" in json.dumps(cause["Status"]["FailureDetails"])

    clusters = emr.list_clusters()["Clusters"]
    ours = [c for c in clusters if c["Name"] == "sfn-test-cluster"]
    assert ours and all(c["Status"]["State"] in ("TERMINATING", "TERMINATED") for c in ours)
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
    assert messages[0]["Body"] == "pipeline fails failed: States.TaskFailed"


def glue_machine(job: str) -> dict:
    """The pipeline's curate state: glue:startJobRun.sync, retried once by its Retry."""
    return {
        "StartAt": "Curate",
        "States": {
            "Curate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::glue:startJobRun.sync",
                "Parameters": {"JobName": job, "Arguments": {"--n.$": "$.n", "--out.$": "$.out"}},
                "ResultSelector": {"Id.$": "$.Id", "State.$": "$.JobRunState"},
                "ResultPath": "$.run",
                "End": True,
            }
        },
    }


GLUE_SQUARES = """
import sys
from pyspark.sql import SparkSession
arguments = dict(zip(sys.argv[1::2], sys.argv[2::2]))
n, out = int(arguments["--n"]), arguments["--out"]
if n < 0:
    raise ValueError(f"--n must not be negative, got {n}")
spark = SparkSession.builder.getOrCreate()
spark.range(n).selectExpr("id", "id * id AS square").coalesce(1).write.mode("overwrite").csv(out)
"""


@pytest.fixture(scope="module")
def glue_pipeline(platform, bucket):
    local, client = platform
    client("s3").put_object(
        Bucket=bucket, Key="sfn-tests/glue_squares.py", Body=GLUE_SQUARES.encode()
    )
    client("glue").create_job(
        Name="sfn-test-squares",
        Role=f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{local.names.curate_job_role('house_sales')}",
        Command={"Name": "glueetl", "ScriptLocation": f"s3://{bucket}/sfn-tests/glue_squares.py"},
    )
    return client("stepfunctions").create_state_machine(
        name="sfn-test-glue", definition=json.dumps(glue_machine("sfn-test-squares")), roleArn=ROLE
    )["stateMachineArn"]


def test_a_glue_state_waits_for_the_job_run_and_its_rows(platform, bucket, glue_pipeline):
    _, client = platform
    sfn, s3, glue = client("stepfunctions"), client("s3"), client("glue")
    out = f"s3://{bucket}/sfn-tests/glue-squares/"
    described = run(sfn, glue_pipeline, "glue-squares", {"n": "5", "out": out})
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    run_id = json.loads(described["output"])["run"]["Id"]
    job_run = glue.get_job_run(JobName="sfn-test-squares", RunId=run_id)["JobRun"]
    assert job_run["JobRunState"] == "SUCCEEDED" and job_run["Arguments"]["--n"] == "5"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="sfn-tests/glue-squares/part-")["Contents"]
    body = s3.get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read()
    written = pd.read_csv(io.BytesIO(body), header=None, names=["id", "square"])
    expected = pd.DataFrame({"id": range(5)}).assign(square=lambda f: f.id**2)
    pd.testing.assert_frame_equal(written.sort_values("id", ignore_index=True), expected)


def test_a_failing_glue_run_fails_the_state_with_the_runs_error(platform, glue_pipeline):
    _, client = platform
    sfn = client("stepfunctions")
    described = run(sfn, glue_pipeline, "glue-negative", {"n": "-1", "out": "s3://nowhere/x/"})
    assert (described["status"], described["error"]) == ("FAILED", "States.TaskFailed")
    cause = json.loads(described["cause"])  # the job run, as GetJobRun gives it
    assert cause["JobRunState"] == "FAILED" and cause["JobName"] == "sfn-test-squares"
    assert "--n must not be negative, got -1" in cause["ErrorMessage"]


def training_machine(request: dict) -> dict:
    """The pipeline's training state: createTrainingJob.sync and its ResultSelector."""
    return {
        "StartAt": "Train",
        "States": {
            "Train": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                "Parameters": request,
                "ResultSelector": {
                    "TrainingJobName.$": "$.TrainingJobName",
                    "ModelArtifacts.$": "$.ModelArtifacts.S3ModelArtifacts",
                    "FinalMetricDataList.$": "$.FinalMetricDataList",
                },
                "ResultPath": "$.training",
                "End": True,
            }
        },
    }


def test_a_training_state_waits_for_the_job_and_passes_its_real_model_on(platform, tmp_path):
    local, client = platform
    sfn, s3 = client("stepfunctions"), client("s3")
    request = request_for(local, "churn-from-sfn")
    machine = sfn.create_state_machine(
        name="sfn-test-training", definition=json.dumps(training_machine(request)), roleArn=ROLE
    )["stateMachineArn"]
    described = run(sfn, machine, "train", {})
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    training = json.loads(described["output"])["training"]
    assert training["TrainingJobName"] == "churn-from-sfn"

    bucket, key = training["ModelArtifacts"].removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    model_files = [p for p in tmp_path.rglob("*.joblib")]
    assert model_files and joblib.load(model_files[0]) is not None
    job = client("sagemaker").describe_training_job(TrainingJobName="churn-from-sfn")
    assert {m["MetricName"]: m["Value"] for m in training["FinalMetricDataList"]} == {
        m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]
    }
    assert training["FinalMetricDataList"], "the job reported no final metrics"


def test_a_failing_training_job_fails_the_state_with_the_jobs_reason(platform):
    local, client = platform
    sfn = client("stepfunctions")
    request = request_for(local, "churn-bad-target", target="no_such_column")
    machine = sfn.create_state_machine(
        name="sfn-test-bad-training", definition=json.dumps(training_machine(request)), roleArn=ROLE
    )["stateMachineArn"]
    described = run(sfn, machine, "bad", {})
    assert (described["status"], described["error"]) == ("FAILED", "States.TaskFailed")
    cause = json.loads(described["cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert "no_such_column" in cause["FailureReason"]


def test_an_unknown_integration_action_is_refused_when_the_machine_is_created(platform):
    _, client = platform
    sfn = client("stepfunctions")
    definition = {
        "StartAt": "X",
        "States": {
            "X": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:modifyInstanceFleet.sync",
                "Parameters": {},
                "End": True,
            }
        },
    }
    with pytest.raises(sfn.exceptions.InvalidDefinition, match="modifyInstanceFleet"):
        sfn.create_state_machine(
            name="sfn-test-unknown", definition=json.dumps(definition), roleArn=ROLE
        )


def test_an_ended_execution_is_restored_not_rerun_after_a_restart(tmp_path):
    """The journal replays StartExecution at start: the execution's end and history come
    back, and its work is not done again (one message on the queue, not two). One still
    running when the server stopped is ABORTED, not resumed halfway."""
    region = "eu-west-1"
    info, _ = server.up(tmp_path)
    try:
        sqs, sfn = server.client("sqs", info, region), server.client("stepfunctions", info, region)
        queue = sqs.create_queue(QueueName="once")["QueueUrl"]
        definition = {
            "StartAt": "Send",
            "States": {
                "Send": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage",
                    "Parameters": {"QueueUrl": queue, "MessageBody.$": "$.body"},
                    "ResultSelector": {"MessageId.$": "$.MessageId"},
                    "End": True,
                }
            },
        }
        machine = sfn.create_state_machine(
            name="once", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        waits = sfn.create_state_machine(
            name="waits",
            definition=json.dumps(
                {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
            ),
            roleArn=ROLE,
        )["stateMachineArn"]
        before = run(sfn, machine, "first", {"body": "hello"})
        assert before["status"] == "SUCCEEDED"
        waiting = sfn.start_execution(stateMachineArn=waits, name="still-waiting")["executionArn"]
        history = sfn.get_execution_history(executionArn=before["executionArn"])["events"]

        server.down(tmp_path)
        info, _ = server.up(tmp_path)
        sqs, sfn = server.client("sqs", info, region), server.client("stepfunctions", info, region)
        after = sfn.describe_execution(executionArn=before["executionArn"])
        assert (after["status"], after["output"]) == ("SUCCEEDED", before["output"])
        assert after["stopDate"] == before["stopDate"]
        again = sfn.get_execution_history(executionArn=before["executionArn"])["events"]
        assert [e["type"] for e in again] == [e["type"] for e in history]
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in messages] == ["hello"]
        stopped = sfn.describe_execution(executionArn=waiting)
        assert stopped["status"] == "ABORTED"
        assert "stopped while this execution ran" in stopped["cause"]
    finally:
        server.down(tmp_path, wipe=True)


# A step that waits for the test's go-ahead (an S3 object), so that the next step is surely
# still pending when it is cancelled: no timing in the test.
WAITS_FOR_GO = """
import sys, time
import boto3
bucket, key = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
for _ in range(1200):
    if s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"):
        break
    time.sleep(0.1)
else:
    raise SystemExit("no go-ahead")
"""


def test_emr_steps_through_boto3_run_in_order_cancel_and_terminate(platform, bucket):
    """RunJobFlow, AddJobFlowSteps, DescribeStep, ListSteps, CancelSteps, TerminateJobFlows
    as a stranger calls them: the clusters and steps say what really happened."""
    _, client = platform
    emr, s3 = client("emr"), client("s3")
    s3.put_object(Bucket=bucket, Key="sfn-tests/waits.py", Body=WAITS_FOR_GO.encode())
    started = emr.run_job_flow(**cluster_definition(bucket))
    cluster = started["JobFlowId"]
    described = emr.describe_cluster(ClusterId=cluster)["Cluster"]
    assert described["Status"]["State"] == "WAITING"
    region = emr.meta.region_name  # the signed region, not moto's us-east-1 default
    assert started["ClusterArn"].startswith(f"arn:aws:elasticmapreduce:{region}:")
    assert described["Ec2InstanceAttributes"]["Ec2AvailabilityZone"].startswith(region)

    def step(name: str, *args: str) -> dict:
        return {
            "Name": name,
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", *args]},
        }

    go = "sfn-tests/go"
    waits, squares = emr.add_job_flow_steps(
        JobFlowId=cluster,
        Steps=[
            step("waits", f"s3://{bucket}/sfn-tests/waits.py", bucket, go),
            step("squares", f"s3://{bucket}/sfn-tests/squares.py", "3", f"s3://{bucket}/x/"),
        ],
    )["StepIds"]
    cancelled = emr.cancel_steps(ClusterId=cluster, StepIds=[squares])["CancelStepsInfoList"]
    assert [(c["StepId"], c["Status"]) for c in cancelled] == [(squares, "SUBMITTED")]
    s3.put_object(Bucket=bucket, Key=go, Body=b"go")
    for _ in range(1200):
        state = emr.describe_step(ClusterId=cluster, StepId=waits)["Step"]["Status"]["State"]
        if state not in ("PENDING", "RUNNING"):
            break
        time.sleep(0.1)
    assert state == "COMPLETED"
    listed = emr.list_steps(ClusterId=cluster)["Steps"]
    assert [(s["Id"], s["Status"]["State"]) for s in listed] == [
        (squares, "CANCELLED"),
        (waits, "COMPLETED"),
    ]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="x/")  # never ran
    emr.terminate_job_flows(JobFlowIds=[cluster])
    assert emr.describe_cluster(ClusterId=cluster)["Cluster"]["Status"]["State"] in (
        "TERMINATING",
        "TERMINATED",
    )


def test_nameless_executions_get_their_own_uuid_names(platform):
    _, client = platform
    sfn = client("stepfunctions")
    definition = {
        "StartAt": "Name",
        "States": {
            "Name": {"Type": "Pass", "Parameters": {"name.$": "$$.Execution.Name"}, "End": True}
        },
    }
    machine = sfn.create_state_machine(
        name="sfn-test-nameless", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    arns = [sfn.start_execution(stateMachineArn=machine)["executionArn"] for _ in range(2)]
    names = []
    for arn in arns:
        for _ in range(100):
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            time.sleep(0.1)
        assert described["status"] == "SUCCEEDED"
        assert json.loads(described["output"]) == {"name": described["name"]}
        assert arn.endswith(":" + described["name"])
        names.append(described["name"])
    assert len(set(names)) == 2 and all(len(n) == 36 for n in names)  # UUIDs
