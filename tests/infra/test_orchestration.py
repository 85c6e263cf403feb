"""OrchestrationStack: the ML pipeline state machine. The definition is read from the
synthesized template: the order of states follows `pipeline_plan`, tasks use the `.sync`
integrations, every task retries throttling, and every catch path terminates the EMR
cluster (when one was started) and notifies before failing."""

from __future__ import annotations

import json
import time

from dataplatform.naming import pascal_case
from dataplatform.pipeline import as_of_key, pipeline_plan
from stacks.constructs.ml_pipeline import THROTTLING_ERRORS
from tests.infra.conftest import Synth, lake_key, resolve


def _flat(value) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_flat(p) for p in parts)
    return "<token>"


def definition(synth: Synth) -> dict:
    (machine,) = synth.resources("orchestration", "AWS::StepFunctions::StateMachine").values()
    return json.loads(_flat(machine["Properties"]["DefinitionString"]))


def walk(states: dict):
    """Every state, branches of parallel states included, as (name, state)."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from walk(branch["States"])


def main_path(doc: dict) -> list[str]:
    order, name = [], doc["StartAt"]
    while name:
        order.append(name)
        state = doc["States"][name]
        name = state.get("Next") or state.get("Default")
    return order


def test_state_order_follows_the_pipeline_plan(each_env):
    plan = pipeline_plan(each_env.platform)
    assert plan.features == ("customer_features", "customer_value_features", "house_features")
    assert main_path(definition(each_env)) == (
        ["InputDefaults", "Inputs", "CurateDatasets", "CreateCluster"]
        + [
            s
            for t in plan.features
            for s in (f"FeatureArguments{pascal_case(t)}", f"Features{pascal_case(t)}")
        ]
        + ["TerminateCluster", "TrainModels", "NotifySuccess", "PipelineSucceeded"]
    )


def test_curate_branches_run_every_datasets_glue_job_synchronously(each_env):
    doc = definition(each_env)
    branches = doc["States"]["CurateDatasets"]["Branches"]
    jobs = sorted(b["States"][b["StartAt"]]["Parameters"]["JobName"] for b in branches)
    assert jobs == sorted(each_env.names.curate_job(d.name) for d in each_env.platform.datasets)
    for b in branches:
        assert b["States"][b["StartAt"]]["Resource"].endswith(":states:::glue:startJobRun.sync")


def test_emr_tasks_use_sync_integrations_on_the_started_cluster(each_env):
    states = definition(each_env)["States"]
    assert states["CreateCluster"]["Resource"].endswith(":elasticmapreduce:createCluster.sync")
    assert states["CreateCluster"]["ResultPath"] == "$.cluster"
    assert states["CreateCluster"]["Parameters"]["Name"] == each_env.names.transient_emr_cluster
    for table in pipeline_plan(each_env.platform).features:
        step = states[f"Features{pascal_case(table)}"]
        assert step["Resource"].endswith(":elasticmapreduce:addStep.sync")
        assert step["Parameters"]["ClusterId.$"] == "$.cluster.ClusterId"
        assert step["Parameters"]["Step"]["Name"] == each_env.names.emr_step("features", table)
        assert step["Parameters"]["Step"]["HadoopJarStep"]["Args.$"] == "$.step.args"
        computed = states[f"FeatureArguments{pascal_case(table)}"]
        assert (computed["Type"], computed["ResultPath"]) == ("Pass", "$.step")
        args = computed["Parameters"]["args.$"]
        assert args.startswith("States.Array('spark-submit', '--deploy-mode', 'cluster', ")
        assert f"'--name', '{table}'" in args and "code/emr_steps/features.py'" in args
        assert args.endswith(f"'--as-of', $.{as_of_key(table)})")
    for name in ("TerminateCluster", "TerminateClusterAfterFailure"):
        assert states[name]["Resource"].endswith(":elasticmapreduce:terminateCluster.sync")
        assert states[name]["Parameters"]["ClusterId.$"] == "$.cluster.ClusterId"


def test_each_model_trains_synchronously_then_is_gated_then_registered_for_approval(each_env):
    doc = definition(each_env)
    branches = {b["StartAt"]: b for b in doc["States"]["TrainModels"]["Branches"]}
    assert sorted(branches) == sorted(
        f"Train{pascal_case(m.name)}" for m in each_env.platform.models
    )
    for model in each_env.platform.models:
        sid = pascal_case(model.name)
        states = branches[f"Train{sid}"]["States"]
        train = states[f"Train{sid}"]
        assert train["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
        assert (
            each_env.names.training_job_prefix(model.name)
            in train["Parameters"]["TrainingJobName.$"]
        )
        assert train["Next"] == f"QualityGate{sid}"
        gate = states[f"QualityGate{sid}"]
        assert gate["Resource"].endswith(":states:::lambda:invoke")
        assert gate["Parameters"]["Payload"]["quality_gate"] == dict(model.quality_gate)
        assert gate["Parameters"]["Payload"]["model_artifacts_uri.$"] == "$.training.ModelArtifacts"
        decide = states[gate["Next"]]
        assert decide["Type"] == "Choice"
        (rule,) = decide["Choices"]
        assert rule == {
            "Variable": "$.gate.passed",
            "BooleanEquals": True,
            "Next": f"Register{sid}",
        }
        failed = states[decide["Default"]]
        assert failed["Type"] == "Fail" and failed["Error"] == "QualityGateFailed"
        register = states[f"Register{sid}"]
        assert register["Resource"].endswith(":states:::aws-sdk:sagemaker:createModelPackage")
        assert register["Parameters"]["ModelApprovalStatus"] == "PendingManualApproval"
        assert register["Parameters"][
            "ModelPackageGroupName"
        ] == each_env.names.model_package_group(model.name)


def test_every_task_retries_throttling(each_env):
    for name, state in walk(definition(each_env)["States"]):
        if state["Type"] != "Task":
            continue
        retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert set(THROTTLING_ERRORS) <= retried, name


def test_every_catch_terminates_a_started_cluster_and_notifies_before_failing(each_env):
    doc = definition(each_env)
    states = doc["States"]
    catchers = [name for name, s in states.items() if s.get("Catch")]
    # Pass states cannot catch (ASL): the input states and each step's arguments, which
    # do no work; an input that is not a JSON object fails the execution at Inputs.
    passes = {name for name, s in states.items() if s["Type"] == "Pass"}
    main = set(main_path(doc)) - {"PipelineSucceeded"} - passes
    assert set(catchers) >= main  # every other state of the main path (parallels included)
    for name in main:
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
        assert catch["Next"] == "ClusterStarted"
    started = states["ClusterStarted"]
    (rule,) = started["Choices"]
    assert rule == {
        "Variable": "$.cluster.ClusterId",
        "IsPresent": True,
        "Next": "TerminateClusterAfterFailure",
    }
    assert started["Default"] == "NotifyFailure"
    terminate = states["TerminateClusterAfterFailure"]
    assert terminate["Next"] == "NotifyFailure"
    assert [c["Next"] for c in terminate["Catch"]] == ["NotifyFailure"]  # notify even then
    notify = states["NotifyFailure"]
    assert notify["Resource"].endswith(":states:::sns:publish")
    assert notify["Next"] == "PipelineFailed" and states["PipelineFailed"]["Type"] == "Fail"


def test_notifications_go_to_the_alerts_topic(each_env):
    states = definition(each_env)["States"]
    for name in ("NotifyFailure", "NotifySuccess"):
        topic = states[name]["Parameters"]["TopicArn"]
        assert topic == "<token>"  # an import of the monitoring stack's topic
    (machine,) = each_env.resources("orchestration", "AWS::StepFunctions::StateMachine").values()
    imports = json.dumps(machine["Properties"]["DefinitionString"])
    assert each_env.names.stack("monitoring") in imports


def test_state_machine_is_logged_traced_and_scheduled_where_asked(dev, prod):
    for synth in (dev, prod):
        (machine,) = synth.resources("orchestration", "AWS::StepFunctions::StateMachine").values()
        props = machine["Properties"]
        assert props["StateMachineName"] == synth.names.ml_pipeline
        assert props["TracingConfiguration"] == {"Enabled": True}
        assert props["LoggingConfiguration"]["Level"] == "ALL"
        assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
        (group,) = [
            r
            for r in synth.resources("orchestration", "AWS::Logs::LogGroup").values()
            if r["Properties"]["LogGroupName"] == synth.names.pipeline_log_group
        ]
        assert resolve(synth, group["Properties"]["KmsKeyId"]) == lake_key(synth)
    rules = [r["Properties"] for r in prod.resources("orchestration", "AWS::Events::Rule").values()]
    assert [r["ScheduleExpression"] for r in rules if "ScheduleExpression" in r] == [
        "cron(0 3 * * ? *)"
    ]
    dev_rules = dev.resources("orchestration", "AWS::Events::Rule").values()
    assert [r for r in dev_rules if "ScheduleExpression" in r["Properties"]] == []


def test_a_monitored_models_breach_alarm_starts_the_pipeline_with_its_reason(each_env):
    """The rule on the default bus: the model's breach alarm changing to ALARM (only that
    change: AWS sends one event per change) starts the state machine; the input names the
    model, the alarm and its reason."""
    names = each_env.names
    (machine_lid,) = each_env.resources("orchestration", "AWS::StepFunctions::StateMachine")
    rules = {
        r["Properties"]["Name"]: r["Properties"]
        for r in each_env.resources("orchestration", "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    }
    retrained = [
        m for m in each_env.platform.models if m.monitoring and m.monitoring.retrain_on_breach
    ]
    assert retrained and set(rules) == {names.retrain_rule(m.name) for m in retrained}
    for model in retrained:
        rule = rules[names.retrain_rule(model.name)]
        pattern = rule["EventPattern"]
        assert pattern["source"] == ["aws.cloudwatch"]
        assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
        assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
        (resource,) = pattern["resources"]
        assert _flat(resource).endswith(f":alarm:{names.monitor_alarm(model.name, 'breach')}")
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": machine_lid}
        transformer = target["InputTransformer"]
        assert transformer["InputPathsMap"] == {
            "detail-alarmName": "$.detail.alarmName",
            "detail-state-reason": "$.detail.state.reason",
        }
        template = json.loads(
            transformer["InputTemplate"]
            .replace("<detail-alarmName>", '"A"')
            .replace("<detail-state-reason>", '"R"')
        )
        assert template == {
            "trigger": "monitoring breach",
            "model": model.name,
            "alarm": "A",
            "reason": "R",
        }


def test_pipeline_role_may_run_only_its_models_training_jobs(each_env):
    (role_lid,) = [
        lid
        for lid, r in each_env.resources("orchestration", "AWS::IAM::Role").items()
        if r["Properties"].get("RoleName") == each_env.names.pipeline_role
    ]
    statements = [
        s
        for p in each_env.resources("orchestration", "AWS::IAM::Policy").values()
        if {"Ref": role_lid} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (training,) = [s for s in statements if s.get("Sid") == "RunTrainingJobs"]
    resources = sorted(resolve(each_env, r) for r in training["Resource"])
    assert resources == sorted(
        f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:training-job/"
        f"{each_env.names.training_job_prefix(m.name)}-*"
        for m in each_env.platform.models
    )
    (pass_role,) = [s for s in statements if s.get("Sid") == "PassTheTrainingRole"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def test_quality_gate_function_reads_only_model_artifacts(each_env):
    (function,) = each_env.resources("orchestration", "AWS::Lambda::Function").values()
    assert function["Properties"]["FunctionName"] == each_env.names.quality_gate_function
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_the_input_states_give_each_features_step_its_cutoff_on_an_interpreter(dev, tmp_path):
    """The definition's own input states (InputDefaults, Inputs, FeatureArguments<table>),
    cut out of the synthesized machine and run by the local Step Functions interpreter:
    `{}` builds every table with `--as-of ""` (the SQL's default), a given cutoff reaches
    its table only, and other input keys pass through."""
    from dataplatform.runtime.local import server

    doc = definition(dev)
    tables = pipeline_plan(dev.platform).features
    names = ["InputDefaults", "Inputs"] + [f"FeatureArguments{pascal_case(t)}" for t in tables]
    states = {}
    for name, following in zip(names, names[1:] + [None], strict=True):
        state = {k: v for k, v in doc["States"][name].items() if k != "Next"}
        states[name] = {**state, "Next": following} if following else {**state, "End": True}
        if name.startswith("FeatureArguments"):  # keep each table's arguments
            states[name]["ResultPath"] = f"$.args_{name}"
    machine = {"StartAt": "InputDefaults", "States": states}

    info, _ = server.up(tmp_path)
    try:
        sfn = server.client("stepfunctions", info, "eu-west-1")
        arn = sfn.create_state_machine(
            name="inputs",
            definition=json.dumps(machine),
            roleArn="arn:aws:iam::123456789012:role/inputs",
        )["stateMachineArn"]

        def as_of_arguments(execution_input: dict) -> dict[str, str]:
            execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))
            for _ in range(100):
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                if described["status"] != "RUNNING":
                    break
                time.sleep(0.05)
            assert described["status"] == "SUCCEEDED", described.get("cause")
            output = json.loads(described["output"])
            found = {}
            for table in tables:
                args = output[f"args_FeatureArguments{pascal_case(table)}"]["args"]
                assert args[args.index("--name") + 1] == table
                found[table] = args[args.index("--as-of") + 1]
            return found | {"other": output.get("other")}

        assert as_of_arguments({}) == {t: "" for t in tables} | {"other": None}
        given = {as_of_key("customer_features"): "2026-11-20", "other": "kept"}
        assert as_of_arguments(given) == {
            "customer_features": "2026-11-20",
            "customer_value_features": "",
            "house_features": "",
            "other": "kept",
        }
    finally:
        server.down(tmp_path, wipe=True)
