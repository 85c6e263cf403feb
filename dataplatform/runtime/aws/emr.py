"""EMR steps on a deployed environment's cluster: find the cluster (or start one), add a
step, wait for it; and the cluster's status for `dp emr status`.

The step definition comes from `dataplatform.jobs.emr_step_args.emr_step` (the same one
Step Functions will use). Polling reports each poll through `progress`; `sleep` and
`clock` are injectable so tests run instantly. A step that ends FAILED, CANCELLED or
INTERRUPTED raises `StepFailed` with EMR's FailureDetails (Reason, Message) and the log
location (FailureDetails.LogFile, else `<cluster LogUri><cluster-id>/steps/<step-id>/`,
else the platform's `s3://<artifacts>/logs/emr/<cluster-id>/steps/<step-id>/`).

The environment's cluster is the one named `names.emr_cluster`. The long-running one ends
itself after its idle minutes (auto-termination), and an environment without
`emr.long_running` has none, so when no such cluster is active `run_step` starts one, on demand, from the cluster definition that was deployed:
the ML pipeline state machine's createCluster task holds the whole RunJobFlow request
(roles, instance groups, security configuration, subnet, security groups, log URI,
auto-termination, tags). `deployed_cluster_request` reads it (DescribeStateMachine),
`cluster_request` turns it into this environment's cluster (pure), `start_cluster` sends
it and waits until the cluster takes steps; a cluster that ends before that raises
`ClusterFailed` with EMR's StateChangeReason. No second description of the cluster here.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dataplatform import layout
from dataplatform.jobs import emr_step_args
from dataplatform.naming import TRANSIENT_CLUSTER_TAG, Names
from dataplatform.runtime import errors
from dataplatform.runtime.aws.jobs import JobFailed, JobTimedOut
from dataplatform.runtime.progress import Notice, Progress, say

# A cluster in these states accepts steps; a started one is waited for until it is ready.
CLUSTER_STARTING_STATES = ("STARTING", "BOOTSTRAPPING")
CLUSTER_READY_STATES = ("WAITING", "RUNNING")
CLUSTER_ACTIVE_STATES = CLUSTER_STARTING_STATES + CLUSTER_READY_STATES
# Step Functions' EMR integration that creates a cluster (`arn:<partition>:states:::` + this,
# with `.sync` or not).
CREATE_CLUSTER_INTEGRATION = "elasticmapreduce:createCluster"
STEP_SUCCESS = "COMPLETED"
STEP_FAILURE_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")


class NoCluster(errors.JobFailed):
    """The environment has no active cluster to add a step to, and none was started (not
    asked to, or nothing deployed to start one from)."""


class ClusterFailed(JobFailed):
    """A cluster started for a step that ended before it took the step. `reason` is EMR's
    StateChangeReason (`Code: Message`); `log_uri` the cluster's log folder."""

    def __init__(self, message: str, *, cluster_id: str, state: str, reason: str, log_uri: str):
        self.reason = reason
        self.log_uri = log_uri
        super().__init__(f"{message}\n  log: {log_uri}", None, state=state, run_id=cluster_id)


class StepFailed(JobFailed):
    """A step that ended FAILED, CANCELLED or INTERRUPTED. `reason` and `failure_message`
    are EMR's FailureDetails; `log_uri` where the step's logs are (an s3:// prefix or file)."""

    def __init__(
        self,
        message: str,
        *,
        log_uri: str,
        state: str,
        step_id: str,
        reason: str | None = None,
        failure_message: str | None = None,
    ):
        self.log_uri = log_uri
        self.reason = reason
        self.failure_message = failure_message
        super().__init__(message, None, state=state, run_id=step_id)
        self.args = (f"{message}\n  log: {log_uri}",)

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class StepResult:
    cluster_id: str
    step_id: str
    name: str
    state: str
    duration: float  # seconds we waited for the step, by `clock`
    log_uri: str
    arguments: dict[str, str] = field(default_factory=dict)  # the step's full argument dict
    # The state machine whose cluster definition started `cluster_id` for this step; None
    # when the cluster was already there.
    started_from: str | None = None


def active_cluster(emr, names: Names) -> dict | None:
    """The environment's active cluster (ListClusters' summary: Id, Name, Status); the
    newest when there are several, None when there is none."""
    found = []
    for page in emr.get_paginator("list_clusters").paginate(
        ClusterStates=list(CLUSTER_ACTIVE_STATES)
    ):
        found += [c for c in page.get("Clusters", []) if c.get("Name") == names.emr_cluster]
    if not found:
        return None
    return max(
        found,
        key=lambda c: str(c.get("Status", {}).get("Timeline", {}).get("CreationDateTime", "")),
    )


def no_cluster_message(names: Names) -> str:
    return (
        f"no active EMR cluster named {names.emr_cluster} (states "
        f"{', '.join(CLUSTER_ACTIVE_STATES)}): `dp emr run` starts one from the ML pipeline's "
        f"cluster definition ({names.ml_pipeline}) unless told --no-start; or set `emr: "
        f"{{long_running: true}}` for environment {names.env} in spec/platform.yaml and deploy "
        f"(make deploy ENV={names.env})"
    )


def find_cluster(emr, names: Names) -> dict:
    """The environment's active cluster (ListClusters' summary), the newest when there are
    several. Raises NoCluster with what to do."""
    cluster = active_cluster(emr, names)
    if cluster is None:
        raise NoCluster(no_cluster_message(names))
    return cluster


def cluster_log_uri(names: Names, cluster: dict) -> str:
    """Where EMR puts a cluster's logs: `<LogUri><cluster-id>/`."""
    log_uri = cluster.get("LogUri") or f"s3://{names.artifacts_bucket}/{layout.EMR_LOG_PREFIX}"
    if log_uri.startswith("s3n://"):
        log_uri = "s3://" + log_uri[len("s3n://") :]
    return f"{log_uri.rstrip('/')}/{cluster['Id']}/"


def step_log_uri(names: Names, cluster: dict, step_id: str) -> str:
    """Where EMR puts a step's logs: `<LogUri><cluster-id>/steps/<step-id>/`."""
    return f"{cluster_log_uri(names, cluster)}steps/{step_id}/"


def add_step(emr, cluster_id: str, step: dict) -> str:
    return emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]


# ----------------------------------------------------------------------------- a cluster on demand


def _states(machine: dict) -> Iterator[tuple[str, dict]]:
    """Every state of an ASL definition, those inside Parallel and Map states too."""
    for name, state in machine.get("States", {}).items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch)
        for inner in (state.get("ItemProcessor"), state.get("Iterator")):
            if inner:
                yield from _states(inner)


def create_cluster_parameters(definition: dict) -> dict:
    """The Parameters of the ASL definition's EMR createCluster task. Raises ValueError
    saying what is wrong when it has no such task, several, or one without Parameters."""
    tasks = [
        (name, state)
        for name, state in _states(definition)
        if state.get("Type") == "Task"
        and state.get("Resource", "").split(":::")[-1].removesuffix(".sync")
        == CREATE_CLUSTER_INTEGRATION
    ]
    if not tasks:
        raise ValueError(f"its definition has no {CREATE_CLUSTER_INTEGRATION} task")
    if len(tasks) > 1:
        raise ValueError(
            f"its definition has {len(tasks)} {CREATE_CLUSTER_INTEGRATION} tasks "
            f"({', '.join(name for name, _ in tasks)}): which cluster to start is not clear"
        )
    [(name, state)] = tasks
    if "Parameters" not in state:
        # A JSONata task has Arguments, expressions this module does not evaluate.
        raise ValueError(f"its {name} task has no Parameters (JSONPath) to read")
    return state["Parameters"]


def _computed_fields(value, path: str = "") -> Iterator[str]:
    """The fields under `value` that the execution computes (JsonPath: `Key.$`), by path."""
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else key
            if key.endswith(".$"):
                yield f"{where} ({inner})"
            else:
                yield from _computed_fields(inner, where)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _computed_fields(inner, f"{path}[{i}]")


def cluster_request(parameters: dict, names: Names) -> dict:
    """The RunJobFlow request that starts the environment's cluster, from the pipeline's
    createCluster Parameters (Step Functions sends those to RunJobFlow as they are). Raises
    ValueError naming any other field an execution computes (`Key.$`): there is no
    execution here to compute it from.

    What differs from the long-running cluster (EmrClusterDefinition.long_running_cluster,
    CloudFormation), all because the pipeline's definition is CDK's EmrCreateCluster:
    AutoScalingRole is there (CDK always adds the legacy automatic-scaling role; managed
    scaling never uses it, but the caller needs iam:PassRole on it); LogEncryptionKmsKeyId
    and Instances.UnhealthyNodeReplacement are not (EmrCreateCluster cannot set them: the
    logs are still encrypted with the lake key, the artifacts bucket's default, and an
    unhealthy node is not replaced); the groups are one InstanceGroups list, not
    Master/Core/TaskInstanceGroups. Release, applications, configurations, roles, security
    configuration, subnet, security groups, log URI, managed scaling, auto-termination,
    KeepJobFlowAliveWhenNoSteps come from the same two objects (EmrSecurity, EmrCompute) in
    both, and the tags are the same (the platform's and the EMR-managed one);
    tests/infra/test_contracts.py holds them to that.
    """
    request = copy.deepcopy(parameters)
    # find_cluster knows the environment's cluster by this name: the pipeline's own
    # (`<prefix>-pipeline`) would leave this one unfound, and the next run would start another.
    request.pop("Name.$", None)
    request["Name"] = names.emr_cluster
    # The transient tag lets the pipeline role step, describe and terminate a cluster, and
    # this one is not the pipeline's. The other tags stay: the platform's (cost allocation),
    # and the EMR-managed one, without which AmazonEMRServicePolicy_v2 launches no instance
    # (EMR copies the cluster's tags to them).
    tags = [t for t in request.pop("Tags", []) if t.get("Key") != TRANSIENT_CLUSTER_TAG]
    if tags:
        request["Tags"] = tags
    # Paths as the definition has them (the one place to change); the name is replaced above.
    computed = list(_computed_fields({k: v for k, v in parameters.items() if k != "Name.$"}))
    if computed:
        raise ValueError(
            "its createCluster task computes "
            + ", ".join(computed)
            + " from the execution, and there is no execution here: give those fields "
            "fixed values in stacks/constructs/emr_cluster.py"
        )
    return request


def deployed_cluster_request(stepfunctions, names: Names) -> dict:
    """The RunJobFlow request for the environment's cluster, from the createCluster task of
    the deployed ML pipeline state machine. Raises NoCluster naming what to deploy when
    the state machine is not there or its definition cannot start a cluster."""
    from botocore.exceptions import ClientError

    fix = (
        f"deploy it (make deploy ENV={names.env}), or set `emr: {{long_running: true}}` for "
        f"environment {names.env} in spec/platform.yaml and deploy"
    )
    try:
        described = stepfunctions.describe_state_machine(stateMachineArn=names.ml_pipeline_arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "StateMachineDoesNotExist":
            raise
        raise NoCluster(
            f"no active EMR cluster named {names.emr_cluster}, and none to start: the ML "
            f"pipeline state machine {names.ml_pipeline} (stack "
            f"{names.stack('orchestration')}), whose cluster definition `dp emr run` starts "
            f"one from, is not deployed in account {names.account}, region {names.region}: "
            f"{fix}"
        ) from None
    try:
        parameters = create_cluster_parameters(json.loads(described["definition"]))
        return cluster_request(parameters, names)
    except ValueError as exc:
        raise NoCluster(
            f"no active EMR cluster named {names.emr_cluster}, and none to start from the ML "
            f"pipeline state machine {names.ml_pipeline}: {exc}; deploy the stack "
            f"{names.stack('orchestration')} of this version, or set `emr: {{long_running: "
            f"true}}` for environment {names.env} in spec/platform.yaml and deploy"
        ) from None


def _ends_itself(request: dict, cluster_id: str) -> str:
    idle = request.get("AutoTerminationPolicy", {}).get("IdleTimeout")
    if idle:
        return f"it ends itself after {idle / 60:g} idle minutes"
    return f"it runs until ended: aws emr terminate-clusters --cluster-ids {cluster_id}"


def start_cluster(
    emr,
    stepfunctions,
    names: Names,
    *,
    poll_seconds: float = 15,
    timeout_seconds: float = 30 * 60,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> dict:
    """Start the environment's cluster from the deployed pipeline's definition and wait until
    it takes steps (WAITING or RUNNING); its DescribeCluster. Raises NoCluster (nothing to
    start it from), ClusterFailed (it ended first), or JobTimedOut (it goes on starting)."""
    request = deployed_cluster_request(stepfunctions, names)
    # Two runs at once may each start one; find_cluster then takes the newest, and the
    # other ends itself when idle.
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]
    say(
        progress,
        Notice(
            f"no active EMR cluster named {names.emr_cluster}: starting cluster {cluster_id} "
            f"from {names.ml_pipeline}'s definition ({_ends_itself(request, cluster_id)})"
        ),
    )
    started = clock()
    while True:
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        status = cluster.get("Status", {})
        state = status.get("State", "")
        elapsed = clock() - started
        if state in CLUSTER_READY_STATES:
            say(progress, f"cluster {cluster_id} {state} after {elapsed:.0f} s")
            return cluster
        if state not in CLUSTER_STARTING_STATES:  # TERMINATING, TERMINATED(_WITH_ERRORS)
            change = status.get("StateChangeReason") or {}
            reason = ": ".join(x for x in (change.get("Code"), change.get("Message")) if x)
            raise ClusterFailed(
                f"cluster {cluster_id} ({names.emr_cluster}), started from "
                f"{names.ml_pipeline}'s definition, {state} after {elapsed:.0f} s, before it "
                f"took the step: {reason or 'EMR gives no reason'}",
                cluster_id=cluster_id,
                state=state,
                reason=reason,
                log_uri=cluster_log_uri(
                    names,
                    {"Id": cluster_id, "LogUri": cluster.get("LogUri", request.get("LogUri"))},
                ),
            )
        if elapsed >= timeout_seconds:
            raise JobTimedOut(
                f"cluster {cluster_id} still {state} after {elapsed:.0f} s (timeout "
                f"{timeout_seconds:.0f} s); it goes on starting in EMR: run the step again once "
                f"`dp emr status` says WAITING, or end it with `aws emr terminate-clusters "
                f"--cluster-ids {cluster_id}`",
                None,
                state=state,
                run_id=cluster_id,
            )
        say(progress, f"starting cluster {cluster_id}: {state} ({elapsed:.0f} s)")
        sleep(poll_seconds)


# ----------------------------------------------------------------------------- steps


def run_step(
    emr,
    names: Names,
    step: str,
    args: Any = (),
    *,
    stepfunctions=None,
    poll_seconds: float = 15,
    cluster_timeout_seconds: float = 30 * 60,
    timeout_seconds: float = 4 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> StepResult:
    """Add `step` (with the user's `args`, K=V strings or a dict) to the environment's
    active cluster and wait until it ends. With no active cluster, first start one from the
    deployed pipeline's definition (`start_cluster`), read with `stepfunctions`; without that
    client, raise NoCluster. Raises StepArgumentError (bad arguments, before any call),
    NoCluster, ClusterFailed, StepFailed, or JobTimedOut (the cluster or the step goes on in
    EMR)."""
    definition = emr_step_args.emr_step(step, names, args)
    arguments = emr_step_args.step_arguments(step, names, args)
    summary = active_cluster(emr, names)
    started_from = None
    if summary is not None:
        cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
    elif stepfunctions is None:
        raise NoCluster(no_cluster_message(names))
    else:
        cluster = start_cluster(
            emr,
            stepfunctions,
            names,
            poll_seconds=poll_seconds,
            timeout_seconds=cluster_timeout_seconds,
            sleep=sleep,
            clock=clock,
            progress=progress,
        )
        started_from = names.ml_pipeline
    started = clock()
    step_id = add_step(emr, cluster["Id"], definition)
    log_uri = step_log_uri(names, cluster, step_id)
    say(progress, f"{definition['Name']}: added step {step_id} to cluster {cluster['Id']}")
    while True:
        described = emr.describe_step(ClusterId=cluster["Id"], StepId=step_id)["Step"]
        status = described.get("Status", {})
        state = status.get("State", "")
        elapsed = clock() - started
        if state == STEP_SUCCESS or state in STEP_FAILURE_STATES:
            break
        if elapsed >= timeout_seconds:
            raise JobTimedOut(
                f"step {step_id} ({definition['Name']}) still {state} after {elapsed:.0f} s "
                f"(timeout {timeout_seconds:.0f} s); it goes on in EMR: cancel it with `aws emr "
                f"cancel-steps --cluster-id {cluster['Id']} --step-ids {step_id}`",
                None,
                state=state,
                run_id=step_id,
            )
        say(progress, f"{definition['Name']}: step {step_id} {state} ({elapsed:.0f} s)")
        sleep(poll_seconds)
    duration = clock() - started
    if state != STEP_SUCCESS:
        details = status.get("FailureDetails") or {}
        reason, message = details.get("Reason"), details.get("Message")
        log = details.get("LogFile") or log_uri
        if log.startswith("s3n://"):
            log = "s3://" + log[len("s3n://") :]
        what = (
            ": ".join(x for x in (reason, message) if x)
            or (status.get("StateChangeReason") or {}).get("Message")
            or "no failure details"
        )
        raise StepFailed(
            f"step {step_id} ({definition['Name']}) {state} after {duration:.0f} s "
            f"on cluster {cluster['Id']}: {what}",
            log_uri=log,
            state=state,
            step_id=step_id,
            reason=reason,
            failure_message=message,
        )
    say(progress, f"{definition['Name']}: COMPLETED in {duration:.0f} s")
    return StepResult(
        cluster_id=cluster["Id"],
        step_id=step_id,
        name=definition["Name"],
        state=state,
        duration=duration,
        log_uri=log_uri,
        arguments=arguments,
        started_from=started_from,
    )


@dataclass(frozen=True)
class ClusterStatus:
    cluster: dict  # DescribeCluster's Cluster
    instance_groups: list[dict]  # ListInstanceGroups' InstanceGroups
    steps: list[dict]  # ListSteps' Steps, newest first


def cluster_status(emr, names: Names, *, max_steps: int = 10) -> ClusterStatus:
    """The long-running cluster, its instance groups and its most recent steps."""
    summary = find_cluster(emr, names)
    cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
    groups = emr.list_instance_groups(ClusterId=cluster["Id"]).get("InstanceGroups", [])
    steps = emr.list_steps(ClusterId=cluster["Id"]).get("Steps", [])[:max_steps]
    return ClusterStatus(cluster=cluster, instance_groups=groups, steps=steps)
