"""EMR steps on a deployed environment's long-running cluster: find the cluster, add a
step, wait for it; and the cluster's status for `dp emr status`.

The step definition comes from `dataplatform.jobs.emr_step_args.emr_step` (the same one
Step Functions will use). Polling reports each poll through `progress`; `sleep` and
`clock` are injectable so tests run instantly. A step that ends FAILED, CANCELLED or
INTERRUPTED raises `StepFailed` with EMR's FailureDetails (Reason, Message) and the log
location (FailureDetails.LogFile, else `<cluster LogUri><cluster-id>/steps/<step-id>/`,
else the platform's `s3://<artifacts>/logs/emr/<cluster-id>/steps/<step-id>/`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataplatform import layout
from dataplatform.jobs import emr_step_args
from dataplatform.naming import Names
from dataplatform.runtime import errors
from dataplatform.runtime.aws.jobs import JobFailed, JobTimedOut
from dataplatform.runtime.progress import Progress, say

# A cluster in these states accepts steps.
CLUSTER_ACTIVE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
STEP_SUCCESS = "COMPLETED"
STEP_FAILURE_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")


class NoCluster(errors.JobFailed):
    """The environment has no active long-running cluster to add a step to."""


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
    duration: float  # seconds we waited, by `clock`
    log_uri: str
    arguments: dict[str, str] = field(default_factory=dict)  # the step's full argument dict


def find_cluster(emr, names: Names) -> dict:
    """The environment's active long-running cluster (ListClusters' summary: Id, Name,
    Status); the newest when there are several. Raises NoCluster with what to do."""
    found = []
    for page in emr.get_paginator("list_clusters").paginate(
        ClusterStates=list(CLUSTER_ACTIVE_STATES)
    ):
        found += [c for c in page.get("Clusters", []) if c.get("Name") == names.emr_cluster]
    if not found:
        raise NoCluster(
            f"no active EMR cluster named {names.emr_cluster} (states "
            f"{', '.join(CLUSTER_ACTIVE_STATES)}): set `emr: {{long_running: true}}` for "
            f"environment {names.env} in spec/platform.yaml and deploy (make deploy "
            f"ENV={names.env}), or run the step through the pipeline (transient cluster)"
        )
    return max(
        found,
        key=lambda c: str(c.get("Status", {}).get("Timeline", {}).get("CreationDateTime", "")),
    )


def step_log_uri(names: Names, cluster: dict, step_id: str) -> str:
    """Where EMR puts a step's logs: `<LogUri><cluster-id>/steps/<step-id>/`."""
    log_uri = cluster.get("LogUri") or f"s3://{names.artifacts_bucket}/{layout.EMR_LOG_PREFIX}"
    if log_uri.startswith("s3n://"):
        log_uri = "s3://" + log_uri[len("s3n://") :]
    return f"{log_uri.rstrip('/')}/{cluster['Id']}/steps/{step_id}/"


def add_step(emr, cluster_id: str, step: dict) -> str:
    return emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]


def run_step(
    emr,
    names: Names,
    step: str,
    args: Any = (),
    *,
    poll_seconds: float = 15,
    timeout_seconds: float = 4 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> StepResult:
    """Add `step` (with the user's `args`, K=V strings or a dict) to the environment's
    long-running cluster and wait until it ends. Raises StepArgumentError (bad arguments,
    before any call), NoCluster, StepFailed, or JobTimedOut (the step goes on in EMR)."""
    definition = emr_step_args.emr_step(step, names, args)
    arguments = emr_step_args.step_arguments(step, names, args)
    summary = find_cluster(emr, names)
    cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
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
