"""EMR's steps on the local endpoint, for real (moto's steps stay PENDING or RUNNING
forever).

moto keeps the clusters (RunJobFlow, their instance groups, TerminateJobFlows); the steps
are this service's. AddJobFlowSteps (and RunJobFlow's Steps) queue the steps of a cluster,
which run one after the other on the local Spark (services/spark.py): a command-runner.jar
`spark-submit [options] s3://script.py args...` runs the script with its `--py-files`
library. DescribeStep and ListSteps (newest first, by state and id) report PENDING,
RUNNING, COMPLETED, FAILED (with FailureDetails: Reason, Message, LogFile) and CANCELLED;
CancelSteps cancels pending steps; ActionOnFailure CONTINUE, CANCEL_AND_WAIT (the pending
steps cancelled) and TERMINATE_CLUSTER (and its old name TERMINATE_JOB_FLOW) are honoured.
DescribeCluster and ListClusters say RUNNING while a step runs, as EMR does. A step's log
goes where EMR puts it, `<LogUri><cluster id>/steps/<step id>/stdout.gz` and `stderr.gz`.
A cluster made with steps and without KeepJobFlowAliveWhenNoSteps terminates after them.
"""

from __future__ import annotations

import gzip
import random
import string
import threading
import time

from dataplatform.runtime.local.services.base import AwsError, Call, Records, Service, epoch, now

ACTIVE_CLUSTER = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
STOPPED_BY_RESTART = "the local platform stopped while this step ran (dp local down, or a crash)"
_ALPHABET = string.ascii_uppercase + string.digits


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message)


class Emr(Service):
    signing_name = "elasticmapreduce"
    target_prefix = "ElasticMapReduce"
    operations = (
        "RunJobFlow",
        "AddJobFlowSteps",
        "DescribeStep",
        "ListSteps",
        "CancelSteps",
        "TerminateJobFlows",
        "DescribeCluster",
        "ListClusters",
    )

    def __init__(self, server, spark):
        super().__init__(server)
        self.spark = spark
        self.steps = Records(server.folder("emr", "steps"))
        self.clusters = Records(server.folder("emr", "clusters"))  # the ones to end after steps
        self._lock = threading.Lock()
        self._wake: dict[str, threading.Event] = {}
        for step in self.steps.values():
            if step["Status"]["State"] in ("RUNNING", "PENDING"):
                self._end(
                    step["Id"],
                    "FAILED" if step["Status"]["State"] == "RUNNING" else "CANCELLED",
                    STOPPED_BY_RESTART,
                )

    # ----------------------------------------------------------------------- clusters
    def run_job_flow(self, call: Call) -> dict:
        body = dict(call.body)
        steps = body.pop("Steps", None) or []
        instances = dict(body.get("Instances") or {})
        keep_alive = bool(instances.get("KeepJobFlowAliveWhenNoSteps"))
        if steps and not keep_alive:  # alive until our steps end; then terminated here
            instances["KeepJobFlowAliveWhenNoSteps"] = True
            body["Instances"] = instances
        answer = call.moto_json(body)
        cluster_id = answer["JobFlowId"]
        if steps:
            if not keep_alive:
                self.clusters.put(cluster_id, {"Id": cluster_id, "EndAfterSteps": True})
            self._add(cluster_id, call.region, steps)
        return answer

    def describe_cluster(self, call: Call) -> dict:
        answer = call.moto_json()
        cluster = answer["Cluster"]
        cluster["Status"] = self._status(cluster["Id"], cluster.get("Status") or {})
        return answer

    def list_clusters(self, call: Call) -> dict:
        answer = call.moto_json()
        for cluster in answer.get("Clusters", []):
            cluster["Status"] = self._status(cluster["Id"], cluster.get("Status") or {})
        return answer

    def terminate_job_flows(self, call: Call) -> dict:
        answer = call.moto_json()
        for cluster_id in call.body.get("JobFlowIds") or []:
            for step in self._of(cluster_id):
                if step["Status"]["State"] == "PENDING":
                    self._end(step["Id"], "CANCELLED", "the cluster was terminated")
            self._wake_up(cluster_id)
        return answer

    def _status(self, cluster_id: str, status: dict) -> dict:
        if status.get("State") == "WAITING" and any(
            s["Status"]["State"] == "RUNNING" for s in self._of(cluster_id)
        ):
            return {
                **status,
                "State": "RUNNING",
                "StateChangeReason": {"Message": "running a step"},
            }
        return status

    def _cluster(self, region: str, cluster_id: str) -> dict:
        emr = self.server.client("emr", region)
        try:
            return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        except emr.exceptions.ClientError:
            raise _invalid(f"Cluster id '{cluster_id}' is not valid.") from None

    # ----------------------------------------------------------------------- steps
    def add_job_flow_steps(self, call: Call) -> dict:
        cluster_id = call.body.get("JobFlowId") or ""
        cluster = self._cluster(call.region, cluster_id)
        if cluster["Status"]["State"] not in ACTIVE_CLUSTER:
            raise AwsError(
                "ValidationException",
                f"A job flow that is shutting down, terminated, or finished may not be modified "
                f"(cluster {cluster_id} is {cluster['Status']['State']})",
            )
        return {"StepIds": self._add(cluster_id, call.region, call.body.get("Steps") or [])}

    def _add(self, cluster_id: str, region: str, steps: list[dict]) -> list[str]:
        ids = []
        with self._lock:
            for step in steps:
                step_id = "s-" + "".join(random.choices(_ALPHABET, k=13))
                jar = step.get("HadoopJarStep") or {}
                self.steps.put(
                    step_id,
                    {
                        "Id": step_id,
                        "ClusterId": cluster_id,
                        "Region": region,
                        "Name": step.get("Name", ""),
                        "Config": {
                            "Jar": jar.get("Jar", ""),
                            "Args": list(jar.get("Args") or []),
                            "Properties": {
                                p["Key"]: p["Value"] for p in jar.get("Properties") or []
                            },
                            **({"MainClass": jar["MainClass"]} if jar.get("MainClass") else {}),
                        },
                        "ActionOnFailure": step.get("ActionOnFailure", "CONTINUE"),
                        "Status": {
                            "State": "PENDING",
                            "StateChangeReason": {},
                            "Timeline": {"CreationDateTime": epoch(now())},
                        },
                        "Order": time.time_ns(),
                    },
                )
                ids.append(step_id)
            if cluster_id not in self._wake:
                self._wake[cluster_id] = threading.Event()
                threading.Thread(
                    target=self._worker, args=(cluster_id,), name=f"emr-{cluster_id}", daemon=True
                ).start()
        self._wake_up(cluster_id)
        return ids

    def describe_step(self, call: Call) -> dict:
        step = self.steps.get(call.body.get("StepId") or "")
        if step is None or step["ClusterId"] != call.body.get("ClusterId"):
            raise _invalid(f"Step id '{call.body.get('StepId')}' is not valid.")
        return {"Step": _described(step)}

    def list_steps(self, call: Call) -> dict:
        states = call.body.get("StepStates")
        ids = call.body.get("StepIds")
        found = [
            s
            for s in sorted(
                self._of(call.body.get("ClusterId") or ""), key=lambda s: s["Order"], reverse=True
            )
            if (not states or s["Status"]["State"] in states) and (not ids or s["Id"] in ids)
        ]
        start = int(call.body.get("Marker") or 0)
        answer: dict = {
            "Steps": [
                {k: v for k, v in _described(s).items() if k != "ExecutionRoleArn"}
                for s in found[start : start + 50]
            ]
        }
        if start + 50 < len(found):
            answer["Marker"] = str(start + 50)
        return answer

    def cancel_steps(self, call: Call) -> dict:
        cluster_id = call.body.get("ClusterId") or ""
        answers = []
        for step_id in call.body.get("StepIds") or []:
            step = self.steps.get(step_id)
            if step is None or step["ClusterId"] != cluster_id:
                answers.append(
                    {"StepId": step_id, "Status": "FAILED", "Reason": "the step does not exist"}
                )
            elif step["Status"]["State"] == "PENDING":
                self._end(step_id, "CANCELLED", "cancelled by the user (CancelSteps)")
                answers.append({"StepId": step_id, "Status": "SUBMITTED", "Reason": ""})
            else:
                answers.append(
                    {
                        "StepId": step_id,
                        "Status": "FAILED",
                        "Reason": f"the step is {step['Status']['State']}; only pending steps are "
                        "cancelled",
                    }
                )
        return {"CancelStepsInfoList": answers}

    # ----------------------------------------------------------------------- running
    def _of(self, cluster_id: str) -> list[dict]:
        return [s for s in self.steps.values() if s["ClusterId"] == cluster_id]

    def _wake_up(self, cluster_id: str) -> None:
        event = self._wake.get(cluster_id)
        if event is not None:
            event.set()

    def _worker(self, cluster_id: str) -> None:
        """The cluster's steps, one after the other, as EMR's default step concurrency."""
        event = self._wake[cluster_id]
        while True:
            event.wait(5)
            event.clear()
            pending = sorted(
                (s for s in self._of(cluster_id) if s["Status"]["State"] == "PENDING"),
                key=lambda s: s["Order"],
            )
            for step in pending:
                current = self.steps.get(step["Id"])
                if current is None or current["Status"]["State"] != "PENDING":
                    continue
                self._run(current)
            if not pending and self.clusters.get(cluster_id):
                if not [s for s in self._of(cluster_id) if s["Status"]["State"] == "PENDING"]:
                    self.clusters.delete(cluster_id)
                    region = next((s["Region"] for s in self._of(cluster_id)), "us-east-1")
                    self.server.client("emr", region).terminate_job_flows(JobFlowIds=[cluster_id])

    def _run(self, step: dict) -> None:
        step_id, region = step["Id"], step["Region"]
        self._state(step_id, "RUNNING", StartDateTime=epoch(now()))
        lines: list[str] = []
        try:
            script, argv, libraries = _spark_submit(step["Config"])
            self.spark.submit(
                script_uri=script,
                name=step["Name"] or step_id,
                arguments={},
                argv=argv,
                run_id=f"step-{step_id}",
                region=region,
                libraries=self.spark.libraries(",".join(libraries), region),
                progress=lines.append,
            )
            self._end(step_id, "COMPLETED", None)
        except Exception as exc:  # noqa: BLE001 - the step fails, the cluster goes on
            log = self._upload_log(step, lines)
            self._end(step_id, "FAILED", str(exc), log_file=log)
            self._after_failure(step)
            return
        self._upload_log(step, lines)

    def _after_failure(self, step: dict) -> None:
        action = step.get("ActionOnFailure", "CONTINUE")
        if action in ("CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
            for other in self._of(step["ClusterId"]):
                if other["Status"]["State"] == "PENDING":
                    self._end(other["Id"], "CANCELLED", f"step {step['Id']} failed ({action})")
        if action in ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
            self.server.client("emr", step["Region"]).terminate_job_flows(
                JobFlowIds=[step["ClusterId"]]
            )

    def _upload_log(self, step: dict, lines: list[str]) -> str | None:
        """The step's output where EMR puts it, below the cluster's LogUri."""
        try:
            cluster = self._cluster(step["Region"], step["ClusterId"])
        except AwsError:
            return None
        log_uri = (cluster.get("LogUri") or "").replace("s3n://", "s3://")
        if not log_uri.startswith("s3://"):
            return None
        bucket, _, prefix = log_uri[len("s3://") :].partition("/")
        folder = f"{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}{step['ClusterId']}/steps/{step['Id']}/"
        s3 = self.server.client("s3", step["Region"])
        body = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
        for name in ("stdout.gz", "stderr.gz"):
            s3.put_object(Bucket=bucket, Key=folder + name, Body=body)
        return f"s3://{bucket}/{folder}"

    def _state(self, step_id: str, state: str, **timeline) -> None:
        step = self.steps.get(step_id)
        if step is None:
            return
        status = dict(step["Status"])
        status["State"] = state
        status["Timeline"] = {**status["Timeline"], **timeline}
        self.steps.update(step_id, Status=status)

    def _end(self, step_id: str, state: str, message: str | None, log_file: str | None = None):
        step = self.steps.get(step_id)
        if step is None:
            return
        status = dict(step["Status"])
        status["State"] = state
        status["Timeline"] = {**status["Timeline"], "EndDateTime": epoch(now())}
        if message:
            status["StateChangeReason"] = {"Message": message[:1000]}
        if state == "FAILED":
            status["FailureDetails"] = {
                "Reason": "the step's script failed" if log_file or message else "unknown",
                "Message": (message or "")[:1000],
                **({"LogFile": log_file} if log_file else {}),
            }
        self.steps.update(step_id, Status=status)

    def reset(self) -> None:
        self.steps.clear()
        self.clusters.clear()
        for event in self._wake.values():
            event.set()


def _spark_submit(config: dict) -> tuple[str, list[str], list[str]]:
    """(script, its arguments, --py-files) of a command-runner.jar spark-submit step."""
    args = list(config.get("Args") or [])
    if config.get("Jar") not in ("command-runner.jar",) or not args or args[0] != "spark-submit":
        raise ValueError(
            f"the local platform runs command-runner.jar spark-submit steps (not {config.get('Jar')} "
            f"{' '.join(args[:2])})"
        )
    libraries: list[str] = []
    at = 1
    while at < len(args) and args[at].startswith("--"):
        option = args[at]
        value = args[at + 1] if at + 1 < len(args) else ""
        if option == "--py-files":
            libraries += [v for v in value.split(",") if v]
        at += 2
    if at >= len(args):
        raise ValueError("spark-submit without a script")
    return args[at], args[at + 1 :], libraries


def _described(step: dict) -> dict:
    return {k: v for k, v in step.items() if k not in ("ClusterId", "Region", "Order")}
