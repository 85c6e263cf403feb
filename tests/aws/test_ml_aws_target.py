"""`dp train` and `dp pipeline run` against a deployed environment: the control flow.
moto never trains and runs no `.sync` integrations, so SageMaker's job states and the state
machine's execution history are scripted; everything else is moto in-process (the IAM role,
the lake key alias, the VPC with CDK's tags, the model artifact in S3, the model registry)."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from dataplatform import layout
from dataplatform.naming import BUCKET_ZONES, Names
from dataplatform.runtime.aws import pipeline as aws_pipeline
from dataplatform.runtime.aws import training as aws_training
from dataplatform.runtime.errors import JobFailed
from dataplatform.runtime.model_registry import gate_module
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

ACCOUNT = "123456789012"
PLATFORM = load_spec(REPO_ROOT / "spec")
SETTINGS = PLATFORM.environment("dev")
NAMES = Names.for_environment(PLATFORM, SETTINGS, account=ACCOUNT)
METRICS = {
    "problem": "binary_classification",
    "threshold": 0.4,
    "test": {"auc": 0.91, "accuracy": 0.85, "precision": 0.7, "recall": 0.6, "f1": 0.65},
    "train": {"auc": 0.93},
    "cv": {},
    "gap": {"auc": 0.02},
    "fit": "ok",
    "confusion_matrix": [[50, 5], [8, 12]],
}


class FakeSageMaker:
    """create/describe_training_job scripted; the registry calls go to moto."""

    def __init__(self, real, states: list[dict]):
        self._real, self.states, self.requests, self.polls = real, list(states), [], 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def create_training_job(self, **request):
        self.requests.append(request)
        return {
            "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/"
            f"{request['TrainingJobName']}"
        }

    def describe_training_job(self, TrainingJobName):
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        job = {"TrainingJobName": TrainingJobName, **state}
        if state["TrainingJobStatus"] == "Completed":
            job["ModelArtifacts"] = {
                "S3ModelArtifacts": f"s3://{NAMES.models_bucket}/"
                f"{layout.model_artifact_key('churn', TrainingJobName)}"
            }
            job["FinalMetricDataList"] = [{"MetricName": "test_auc", "Value": 0.91}]
        return job


class FakeAws:
    def __init__(self, sagemaker_states):
        self.platform, self.settings, self.names = PLATFORM, SETTINGS, NAMES
        self.sagemaker = FakeSageMaker(self.client("sagemaker", real=True), sagemaker_states)

    def client(self, service, real=False):
        if service == "sagemaker" and not real:
            return self.sagemaker
        return boto3.client(service, region_name=SETTINGS.region)


def running(secondary, message=""):
    return {
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": secondary,
        "SecondaryStatusTransitions": [{"Status": secondary, "StatusMessage": message}],
    }


@pytest.fixture
def deployed():
    """What the stacks deploy and dp train looks up, in moto."""
    with mock_aws():
        clients = lambda s: boto3.client(s, region_name=SETTINGS.region)  # noqa: E731
        key = clients("kms").create_key()["KeyMetadata"]
        key_arn = key["Arn"]
        clients("kms").create_alias(AliasName=NAMES.lake_key_alias, TargetKeyId=key["KeyId"])
        s3 = clients("s3")
        for zone in BUCKET_ZONES:  # the lake's buckets, SSE-KMS by default as deployed
            s3.create_bucket(
                Bucket=NAMES.bucket(zone),
                CreateBucketConfiguration={"LocationConstraint": SETTINGS.region},
            )
            s3.put_bucket_encryption(
                Bucket=NAMES.bucket(zone),
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": key_arn,
                            }
                        }
                    ]
                },
            )
        iam = clients("iam")
        iam.create_role(RoleName=NAMES.sagemaker_role, AssumeRolePolicyDocument="{}")
        ec2 = clients("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": NAMES.vpc}])
        subnets = {}
        for cidr, kind in (
            ("10.0.0.0/22", "Private"),
            ("10.0.4.0/22", "Private"),
            ("10.0.8.0/24", "Public"),
        ):
            sid = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
            ec2.create_tags(Resources=[sid], Tags=[{"Key": "aws-cdk:subnet-type", "Value": kind}])
            subnets[sid] = kind
        sg = ec2.create_security_group(
            GroupName=NAMES.training_security_group, Description="training", VpcId=vpc
        )["GroupId"]
        ec2.create_security_group(GroupName="something-else", Description="x", VpcId=vpc)
        yield {"private": sorted(s for s, k in subnets.items() if k == "Private"), "sg": sg}


def put_artifact(job_name: str, metrics: dict) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in (
            ("metrics.json", json.dumps(metrics).encode()),
            ("roc_curve.png", b"png"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    boto3.client("s3", region_name=SETTINGS.region).put_object(
        Bucket=NAMES.models_bucket,
        Key=layout.model_artifact_key("churn", job_name),
        Body=buffer.getvalue(),
    )


def test_train_creates_the_shared_request_follows_it_gates_and_registers(deployed, tmp_path):
    job = "mldp-dev-churn-0badcafe"
    put_artifact(job, METRICS)
    aws = FakeAws(
        [
            running("Starting", "Preparing the instances"),
            running("Starting"),
            running("Downloading"),
            running("Training", "Training image download completed"),
            running("Uploading"),
            {"TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"},
        ]
    )
    lines, sleeps = [], []
    run = aws_training.train_model(
        aws,
        "churn",
        progress=lines.append,
        job_name=job,
        sleep=sleeps.append,
        download_dir=tmp_path,
    )
    [request] = aws.sagemaker.requests
    assert request["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{NAMES.sagemaker_role}"
    assert request["VpcConfig"] == {
        "Subnets": deployed["private"],
        "SecurityGroupIds": [deployed["sg"]],
    }
    key_arn = boto3.client("kms", region_name=SETTINGS.region).describe_key(
        KeyId=NAMES.lake_key_alias
    )["KeyMetadata"]["Arn"]
    assert request["OutputDataConfig"]["KmsKeyId"] == key_arn
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == key_arn
    # each secondary status once, in order; one sleep per poll that was not the last
    said = [
        ln.split(": ", 1)[1] for ln in lines if ln.startswith(job + ": ") and "created" not in ln
    ]
    assert [s.split(" - ")[0] for s in said] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert len(sleeps) == 5
    assert run.metrics == METRICS and run.passed and run.reported_metrics == {"test_auc": 0.91}
    assert (tmp_path / job / "model" / "roc_curve.png").read_bytes() == b"png"
    package = boto3.client("sagemaker", region_name=SETTINGS.region).describe_model_package(
        ModelPackageName=run.package_arn
    )
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == run.artifact_uri
    assert gate_module().parse_registry_metrics(
        package["CustomerMetadataProperties"]["test_metrics"]
    ) == pytest.approx(METRICS["test"], rel=1e-5)


def test_a_failed_job_raises_its_failure_reason_and_log_location(deployed):
    aws = FakeAws(
        [
            running("Training"),
            {
                "TrainingJobStatus": "Failed",
                "SecondaryStatus": "Failed",
                "FailureReason": "AlgorithmError: training failed: target column 'churned' "
                "is not in the data",
            },
        ]
    )
    with pytest.raises(JobFailed) as failure:
        aws_training.train_model(
            aws, "churn", job_name="mldp-dev-churn-deadbeef", sleep=lambda s: None
        )
    message = str(failure.value)
    assert "Failed" in message and "target column 'churned'" in message
    assert "/aws/sagemaker/TrainingJobs" in message and "mldp-dev-churn-deadbeef/algo-" in message
    registry = boto3.client("sagemaker", region_name=SETTINGS.region)
    groups = registry.list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert groups == []  # nothing registered


def test_a_job_below_the_gate_is_not_registered(deployed):
    job = "mldp-dev-churn-00000001"
    put_artifact(job, {**METRICS, "test": {**METRICS["test"], "auc": 0.6}})
    aws = FakeAws([{"TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"}])
    run = aws_training.train_model(aws, "churn", job_name=job, sleep=lambda s: None)
    assert not run.passed and run.package_arn is None
    assert run.gate["checks"] == [
        {"metric": "auc", "value": 0.6, "threshold": 0.75, "direction": "min", "passed": False}
    ]


def test_missing_network_says_what_to_deploy():
    with mock_aws():
        with pytest.raises(aws_training.MissingResource, match="deploy the network stack"):
            aws_training.find_network(boto3.client("ec2", region_name=SETTINGS.region), NAMES)


def test_serve_reads_the_version_the_deployer_named_and_the_invocation_url():
    """The one reading of an endpoint, both targets': the deployer names each endpoint
    configuration `<endpoint>-v<version>` (its variant is AllTraffic), and InvokeEndpoint
    answers at the runtime's URL."""
    from dataplatform.runtime.aws.platform import AwsPlatform

    with mock_aws():
        aws = AwsPlatform(PLATFORM, "dev", session=boto3.Session(), account=ACCOUNT)
        endpoint = NAMES.endpoint("churn")
        assert aws.serve("churn").status == "NotDeployed"
        sagemaker = boto3.client("sagemaker", region_name=SETTINGS.region)
        sagemaker.create_model(
            ModelName=f"{endpoint}-v3",
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{NAMES.sagemaker_role}",
            PrimaryContainer={"Image": "image"},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=f"{endpoint}-v3",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": f"{endpoint}-v3",
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-v3")
        served = aws.serve("churn")
    assert (served.endpoint, served.version) == (endpoint, 3)
    assert served.where == (
        f"https://runtime.sagemaker.{SETTINGS.region}.amazonaws.com/endpoints/{endpoint}/invocations"
    )


# ----------------------------------------------------------------------------- the pipeline


def event(i, kind, prev=None, **details):
    e = {"id": i, "type": kind, "timestamp": datetime(2026, 11, 20, 15, 30, i, tzinfo=UTC)}
    if prev is not None:
        e["previousEventId"] = prev
    if details:
        key = {"StateEntered": "stateEnteredEventDetails", "StateExited": "stateExitedEventDetails"}
        suffix = next((k for k in key if kind.endswith(k)), None)
        field = key[suffix] if suffix else kind[0].lower() + kind[1:] + "EventDetails"
        e[field] = details
    return e


class FakeStepFunctions:
    """The history grows by one batch per describe_execution poll."""

    def __init__(self, batches, final):
        self.batches, self.final, self.visible, self.started = batches, final, [], []
        self.polls = 0

    def start_execution(self, **kwargs):
        self.started.append(kwargs)
        return {
            "executionArn": kwargs["stateMachineArn"].replace("stateMachine", "execution")
            + ":"
            + kwargs["name"]
        }

    def get_execution_history(self, executionArn, maxResults, reverseOrder, nextToken=None):
        # two events per page, to exercise the paging
        start = int(nextToken or 0)
        page = self.visible[start : start + 2]
        more = start + 2 < len(self.visible)
        return {"events": page, **({"nextToken": str(start + 2)} if more else {})}

    def describe_execution(self, executionArn):
        if self.polls < len(self.batches):
            self.visible += self.batches[self.polls]
        self.polls += 1
        done = self.polls >= len(self.batches)
        return {
            "status": self.final["status"] if done else "RUNNING",
            **(self.final if done else {}),
        }


class FakeSts:
    def get_caller_identity(self):
        return {"Account": ACCOUNT}


class PipelineAws:
    def __init__(self, sfn):
        self.names, self.sfn, self.platform = NAMES, sfn, PLATFORM

    def client(self, service):
        return {"stepfunctions": self.sfn, "sts": FakeSts()}[service]


def history_until_training():
    return [
        [
            event(1, "ExecutionStarted"),
            event(2, "ParallelStateEntered", 1, name="CurateDatasets"),
            event(3, "TaskStateEntered", 2, name="CurateTelecomEvents"),
        ],
        [
            event(4, "TaskScheduled", 3),
            event(5, "TaskSucceeded", 4),
            event(6, "TaskStateExited", 5, name="CurateTelecomEvents"),
            event(7, "ParallelStateExited", 6, name="CurateDatasets"),
        ],
    ]


def test_pipeline_success_follows_states_in_order():
    sfn = FakeStepFunctions(
        history_until_training()
        + [
            [
                event(8, "TaskStateEntered", 7, name="NotifySuccess"),
                event(9, "TaskStateExited", 8, name="NotifySuccess"),
                event(10, "SucceedStateEntered", 9, name="PipelineSucceeded"),
                event(11, "ExecutionSucceeded", 10),
            ]
        ],
        {"status": "SUCCEEDED", "output": "{}"},
    )
    lines = []
    result = aws_pipeline.run_pipeline(
        PipelineAws(sfn), progress=lines.append, sleep=lambda s: None, execution_name="test-1"
    )
    assert (
        sfn.started[0]["stateMachineArn"]
        == f"arn:aws:states:{NAMES.region}:{ACCOUNT}:stateMachine:{NAMES.ml_pipeline}"
    )
    assert json.loads(sfn.started[0]["input"]) == {}  # every table at its SQL's cutoff
    assert result.status == "SUCCEEDED"
    assert result.states == [
        ("CurateDatasets", "entered"),
        ("CurateTelecomEvents", "entered"),
        ("CurateTelecomEvents", "exited"),
        ("CurateDatasets", "exited"),
        ("NotifySuccess", "entered"),
        ("NotifySuccess", "exited"),
        ("PipelineSucceeded", "entered"),
    ]
    assert "CurateTelecomEvents: entered" in lines


def test_pipeline_gate_failure_names_the_fail_state_error_and_cause():
    cause = 'churn did not pass its quality gate: [{"metric":"auc","value":0.6}]'
    sfn = FakeStepFunctions(
        history_until_training()
        + [
            [
                event(8, "ParallelStateEntered", 7, name="TrainModels"),
                event(9, "ChoiceStateEntered", 8, name="PassedChurn"),
                event(10, "FailStateEntered", 9, name="QualityGateFailedChurn"),
                event(11, "ParallelStateFailed", 10, error="QualityGateFailed", cause=cause),
                event(12, "TaskStateEntered", 11, name="NotifyFailure"),
                event(13, "FailStateEntered", 12, name="PipelineFailed"),
                event(14, "ExecutionFailed", 13, error="QualityGateFailed", cause=cause),
            ]
        ],
        {"status": "FAILED", "error": "QualityGateFailed", "cause": cause},
    )
    with pytest.raises(JobFailed) as failure:
        aws_pipeline.run_pipeline(PipelineAws(sfn), sleep=lambda s: None, execution_name="t2")
    assert failure.value.state == "QualityGateFailedChurn"
    assert failure.value.error == "QualityGateFailed" and failure.value.cause == cause
    assert "in state QualityGateFailedChurn: QualityGateFailed: churn did not pass" in str(
        failure.value
    )


def test_pipeline_task_failure_after_a_retried_throttle_names_the_failing_task():
    sfn = FakeStepFunctions(
        history_until_training()
        + [
            [
                event(8, "TaskStateEntered", 7, name="CreateCluster"),
                event(9, "TaskScheduled", 8),
                event(10, "TaskFailed", 9, error="EMR.ThrottlingException", cause="Rate exceeded"),
                event(11, "TaskScheduled", 10),
                event(12, "TaskSucceeded", 11),
                event(13, "TaskStateExited", 12, name="CreateCluster"),
                event(14, "TaskStateEntered", 13, name="FeaturesCustomerFeatures"),
                event(15, "TaskScheduled", 14),
                event(
                    16,
                    "TaskFailed",
                    15,
                    error="States.TaskFailed",
                    cause="Step failed: AnalysisException: column churned not found",
                ),
                event(17, "TaskStateExited", 16, name="FeaturesCustomerFeatures"),
                event(18, "TaskStateEntered", 17, name="TerminateClusterAfterFailure"),
                event(19, "FailStateEntered", 18, name="PipelineFailed"),
                event(
                    20,
                    "ExecutionFailed",
                    19,
                    error="States.TaskFailed",
                    cause="Step failed: AnalysisException: column churned not found",
                ),
            ]
        ],
        {
            "status": "FAILED",
            "error": "States.TaskFailed",
            "cause": "Step failed: AnalysisException: column churned not found",
        },
    )
    with pytest.raises(JobFailed) as failure:
        aws_pipeline.run_pipeline(PipelineAws(sfn), sleep=lambda s: None, execution_name="t3")
    assert failure.value.state == "FeaturesCustomerFeatures"
    assert "column churned not found" in str(failure.value)
    assert "console.aws.amazon.com/states" in str(failure.value)


def test_the_cutoffs_are_the_executions_input_and_a_bad_one_starts_nothing():
    sfn = FakeStepFunctions(
        [[event(1, "ExecutionStarted"), event(2, "ExecutionSucceeded", 1)]],
        {"status": "SUCCEEDED", "output": "{}"},
    )
    aws_pipeline.run_pipeline(
        PipelineAws(sfn),
        sleep=lambda s: None,
        execution_name="cutoff",
        as_of={"customer_features": "2026-11-01"},
    )
    assert json.loads(sfn.started[0]["input"]) == {"as_of_customer_features": "2026-11-01"}
    for bad, says in (
        ({"no_such_table": "2026-11-01"}, "builds no feature table 'no_such_table'"),
        ({"customer_features": "yesterday"}, "customer_features=yesterday: not a date"),
        ({"customer_features": "2026-02-30"}, "no such day"),
    ):
        with pytest.raises(ValueError, match=says):
            aws_pipeline.run_pipeline(PipelineAws(sfn), sleep=lambda s: None, as_of=bad)
    assert len(sfn.started) == 1  # the bad ones started nothing
