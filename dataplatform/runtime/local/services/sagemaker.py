"""SageMaker's training jobs and endpoints on the local endpoint, run for real: whoever calls
CreateTrainingJob (the AWS CLI, boto3, the SageMaker SDK, `dp train`) gets the training
script run and its model.tar.gz where SageMaker puts it, and whoever creates an endpoint
gets one that answers InvokeEndpoint with the model, where moto only pretends (its jobs
are Completed at once with no model, its InvokeEndpoint answers b'body' for any name).

Training jobs (CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob)
are this service's own records. A job is checked as SageMaker checks it (a unique name,
else ResourceInUse; an IAM role SageMaker may assume; the VpcConfig's subnets and security
groups exist), then runs in the background, two at a time (this machine's cores), as
script mode runs it (sagemaker_training.py): InProgress with the SecondaryStatus
transitions Starting, Downloading, Training, Uploading and their StatusMessages, then
Completed (ModelArtifacts.S3ModelArtifacts, FinalMetricDataList from the job's own
MetricDefinitions, TrainingTimeInSeconds, BillableTimeInSeconds), Failed (FailureReason:
the script's last error line) or Stopped (StopTrainingJob, or MaxRuntimeInSeconds).

Endpoints (CreateEndpoint, UpdateEndpoint, DeleteEndpoint, DescribeEndpoint, ListEndpoints)
are this service's too; their configurations and models are moto's (faithful). An
endpoint is Creating until each production variant's model is loaded by its own serving
code (sagemaker_serving.py: the model's container, or its model package's), then
InService, or Failed with the FailureReason. UpdateEndpoint is blue/green: the endpoint is
Updating while the new configuration loads and the old one answers; if the new one cannot
load, the old one stays InService and FailureReason says why. DescribeEndpoint reports the
production variants (name, deployed image, weights, instance count or serverless
configuration); the model a variant serves is its endpoint configuration's.

InvokeEndpoint (sagemaker-runtime: `POST /endpoints/<name>/invocations`, signed as
"sagemaker") is answered in the server process by the endpoint's model, its body as
sent, its ContentType and Accept as the serving code's input_fn and output_fn take them,
with SageMaker Runtime's answers and errors (sagemaker_serving.py). An unknown endpoint is
SageMaker's ValidationError; one that is not InService (nor Updating, when the old model
answers) is a ValidationError that says its status (our wording).

Records persist in the platform's state folder: after a restart a job that was running
ends Failed saying the local platform stopped during it, an endpoint being created ends
Failed, one being updated stays on its old configuration, and an InService endpoint is
InService again, its model loaded again on its first invocation. moto's reset clears
everything. Not done: tags of jobs and endpoints (ListTags is moto's, which knows neither),
data capture, asynchronous and streaming invocations (moto's), pipe and fast-file input
modes (run as File), requirements.txt installs, spot savings (billable time is training
time).
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from dataplatform.runtime.local.services import sagemaker_serving as serving
from dataplatform.runtime.local.services.base import ACCOUNT, AwsError, Call, Records, Service
from dataplatform.runtime.local.services.sagemaker_training import (
    JobFailed,
    JobStopped,
    TrainingRun,
)

TRAINING_WORKERS = 2  # the machine's cores
DEPLOY_WORKERS = 2
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # jobs' and endpoints' names
INVOCATIONS = re.compile(r"^/endpoints/([^/]+)/invocations$")
_SIGNED_FOR = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
HYPERPARAMETERS_MAX, HYPERPARAMETER_VALUE_MAX = 100, 2500
LIST_DEFAULT, LIST_MAX = 10, 100
RUNNING = ("InProgress", "Stopping")
# SecondaryStatus messages as SageMaker words them
MESSAGES = {
    "Starting": "Launching requested ML instances",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job stopped: it ran longer than MaxRuntimeInSeconds",
}


@cache
def _members(operation: str) -> frozenset[str]:
    """The members of an operation's output in botocore's model of SageMaker: a record
    holds its request and our own fields, a description only what the API answers."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(operation).output_shape
    return frozenset(shape.members if shape is not None else ())


def _invalid(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def _not_found() -> AwsError:
    return _invalid("Requested resource not found.")


def _checked_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise _invalid(
            f"1 validation error detected: Value '{name}' at '{what}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
        )
    return name


def _key(region: str, name: str) -> str:
    """Names are unique per account and region, whatever their case (ARNs are lower case)."""
    return f"{region}_{name.lower()}"


def _arn(region: str, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name.lower()}"


def _page(items: list[dict], body: dict) -> tuple[list[dict], str | None]:
    size = int(body.get("MaxResults") or LIST_DEFAULT)
    if not 1 <= size <= LIST_MAX:
        raise _invalid(f"MaxResults must be between 1 and {LIST_MAX}")
    start = int(body.get("NextToken") or 0)
    page = items[start : start + size]
    return page, (str(start + size) if start + size < len(items) else None)


def _filtered(records: list[dict], body: dict, *, name: str, status: str) -> list[dict]:
    """ListTrainingJobs' and ListEndpoints' filters and order."""
    contains = (body.get("NameContains") or "").lower()
    bounds = (
        ("CreationTimeAfter", "CreationTime", 1),
        ("CreationTimeBefore", "CreationTime", -1),
        ("LastModifiedTimeAfter", "LastModifiedTime", 1),
        ("LastModifiedTimeBefore", "LastModifiedTime", -1),
    )
    kept = []
    for record in records:
        if contains and contains not in record[name].lower():
            continue
        if body.get("StatusEquals") and record[status] != body["StatusEquals"]:
            continue
        if any(
            body.get(bound) is not None and (record[field] - float(body[bound])) * sign <= 0
            for bound, field, sign in bounds
        ):
            continue
        kept.append(record)
    by = {"Name": name, "Status": status}.get(body.get("SortBy") or "", "CreationTime")
    return sorted(kept, key=lambda r: (r[by], r[name]))


class SageMaker(Service):
    signing_name = "sagemaker"
    target_prefix = "SageMaker"
    operations = (
        "CreateTrainingJob",
        "DescribeTrainingJob",
        "ListTrainingJobs",
        "StopTrainingJob",
        "CreateEndpoint",
        "UpdateEndpoint",
        "DeleteEndpoint",
        "DescribeEndpoint",
        "ListEndpoints",
        "InvokeEndpoint",  # sagemaker-runtime's, routed by its path
        "UpdateModelPackage",
    )

    def __init__(self, server):
        super().__init__(server)
        self.jobs = Records(server.folder("sagemaker", "training-jobs"))
        self.endpoints = Records(server.folder("sagemaker", "endpoints"))
        self.training = ThreadPoolExecutor(TRAINING_WORKERS, thread_name_prefix="sm-training")
        self.deploying = ThreadPoolExecutor(DEPLOY_WORKERS, thread_name_prefix="sm-endpoints")
        self._lock = threading.RLock()
        self._runs: dict[str, TrainingRun] = {}
        self._served: dict[str, dict[str, serving.ServedVariant]] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._restarted()

    def update_model_package(self, call: Call) -> dict:
        """moto's UpdateModelPackage, and the event SageMaker puts on the account's default
        bus when a package's approval status changes (`SageMaker Model Package State
        Change`): the serving stack's approval rule invokes the endpoint deployer on it."""
        from dataplatform.runtime.local.services import events

        arn = call.body.get("ModelPackageArn") or ""
        before = self._package_status(call.region, arn)
        answer = call.moto_json()
        status = call.body.get("ModelApprovalStatus")
        if status and status != before:
            described = self.server.client("sagemaker", call.region).describe_model_package(
                ModelPackageName=arn
            )
            events.emit(
                self.server,
                call.region,
                "aws.sagemaker",
                "SageMaker Model Package State Change",
                {
                    "ModelPackageGroupName": described.get("ModelPackageGroupName"),
                    "ModelPackageVersion": described.get("ModelPackageVersion"),
                    "ModelPackageArn": arn,
                    "ModelPackageStatus": described.get("ModelPackageStatus"),
                    "ModelApprovalStatus": status,
                    "CreationTime": str(described.get("CreationTime", "")),
                },
                resources=[arn],
            )
        return answer

    def _package_status(self, region: str, arn: str) -> str | None:
        sagemaker = self.server.client("sagemaker", region)
        try:
            return sagemaker.describe_model_package(ModelPackageName=arn).get("ModelApprovalStatus")
        except sagemaker.exceptions.ClientError:
            return None

    def _restarted(self) -> None:
        """Records of a server that stopped: nothing that was running goes on."""
        for record in self.jobs.values():
            key = _key(record["Region"], record["TrainingJobName"])
            if record["TrainingJobStatus"] == "InProgress":
                self._end_job(
                    key,
                    "Failed",
                    "Failed",
                    FailureReason="InternalServerError: the local platform stopped while "
                    "the job ran; run it again under a new name",
                )
            elif record["TrainingJobStatus"] == "Stopping":
                self._end_job(key, "Stopped", "Stopped")
        for record in self.endpoints.values():
            key = _key(record["Region"], record["EndpointName"])
            if record["EndpointStatus"] == "Creating":
                self.endpoints.update(
                    key,
                    EndpointStatus="Failed",
                    FailureReason="the local platform stopped while the endpoint was being "
                    "created: delete it and create it again",
                    LastModifiedTime=time.time(),
                )
            elif record["EndpointStatus"] == "Updating":
                pending = (record.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
                self.endpoints.update(
                    key,
                    EndpointStatus="InService",
                    FailureReason=f"the local platform stopped during the update to {pending}: "
                    "update the endpoint again",
                    PendingDeploymentSummary=None,
                    LastModifiedTime=time.time(),
                )

    # ------------------------------------------------------------------ routing
    def route(self, environ) -> str | None:
        """sagemaker-runtime's InvokeEndpoint: a POST to /endpoints/<name>/invocations
        signed for "sagemaker" (other services' paths are not ours)."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        if not INVOCATIONS.match(environ.get("PATH_INFO", "")):
            return None
        signed = _SIGNED_FOR.search(environ.get("HTTP_AUTHORIZATION", ""))
        if signed and signed.group(1) != "sagemaker":
            return None
        return "InvokeEndpoint"

    # ------------------------------------------------------------------ training jobs
    def create_training_job(self, call: Call) -> dict:
        body = call.body
        name = _checked_name(body.get("TrainingJobName"), "trainingJobName")
        for member in ("AlgorithmSpecification", "RoleArn", "OutputDataConfig", "ResourceConfig"):
            if not body.get(member):
                raise _invalid(f"{member} is required")
        if not body["OutputDataConfig"].get("S3OutputPath"):
            raise _invalid("OutputDataConfig.S3OutputPath is required")
        if not (body.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"):
            raise _invalid("StoppingCondition.MaxRuntimeInSeconds is required")
        hyperparameters = body.get("HyperParameters") or {}
        if len(hyperparameters) > HYPERPARAMETERS_MAX:
            raise _invalid(f"a training job takes at most {HYPERPARAMETERS_MAX} hyperparameters")
        for key_name, value in hyperparameters.items():
            if len(str(value)) > HYPERPARAMETER_VALUE_MAX:
                raise _invalid(
                    f"hyperparameter {key_name}: a value is at most {HYPERPARAMETER_VALUE_MAX} "
                    "characters"
                )
        self._check_role(call.region, body["RoleArn"])
        self._check_network(call.region, body.get("VpcConfig"))
        key, arn, now = (
            _key(call.region, name),
            _arn(call.region, "training-job", name),
            time.time(),
        )
        with self._lock:
            if self.jobs.get(key) is not None:
                raise AwsError(
                    "ResourceInUse",
                    "Training job names must be unique within an AWS account and region, and "
                    f"a training job with this name already exists ({arn})",
                )
            self.jobs.put(
                key,
                {
                    **body,
                    "Region": call.region,
                    "TrainingJobArn": arn,
                    "TrainingJobStatus": "InProgress",
                    "SecondaryStatus": "Starting",
                    "SecondaryStatusTransitions": [
                        {
                            "Status": "Starting",
                            "StartTime": now,
                            "StatusMessage": MESSAGES["Starting"],
                        }
                    ],
                    "CreationTime": now,
                    "LastModifiedTime": now,
                },
            )
        self.training.submit(self._run_job, key)
        return {"TrainingJobArn": arn}

    def describe_training_job(self, call: Call) -> dict:
        record = self._job(call)
        members = _members("DescribeTrainingJob")
        return {k: v for k, v in record.items() if k in members and v is not None}

    def list_training_jobs(self, call: Call) -> dict:
        records = [r for r in self.jobs.values() if r["Region"] == call.region]
        ordered = _filtered(records, call.body, name="TrainingJobName", status="TrainingJobStatus")
        if (call.body.get("SortOrder") or "Ascending") == "Descending":
            ordered.reverse()
        page, token = _page(ordered, call.body)
        members = {
            "TrainingJobName",
            "TrainingJobArn",
            "CreationTime",
            "TrainingEndTime",
            "LastModifiedTime",
            "TrainingJobStatus",
            "SecondaryStatus",
        }
        answer: dict = {
            "TrainingJobSummaries": [
                {k: v for k, v in r.items() if k in members and v is not None} for r in page
            ]
        }
        if token:
            answer["NextToken"] = token
        return answer

    def stop_training_job(self, call: Call) -> dict:
        record = self._job(call)
        key = _key(record["Region"], record["TrainingJobName"])
        with self._lock:
            record = self.jobs.get(key) or record
            if record["TrainingJobStatus"] != "InProgress":
                raise _invalid(
                    "The request was rejected because the training job is in status "
                    f"{record['TrainingJobStatus']}."
                )
            self.jobs.update(key, StopRequested=True, TrainingJobStatus="Stopping")
            self._phase(key, "Stopping", "Stopping the training job")
        return {}

    def _job(self, call: Call) -> dict:
        name = call.body.get("TrainingJobName") or ""
        record = self.jobs.get(_key(call.region, name))
        if record is None:
            raise _not_found()
        return record

    def _check_role(self, region: str, role_arn: str) -> None:
        """SageMaker assumes the role: it must exist and trust sagemaker.amazonaws.com."""
        refused = _invalid(
            f"Could not assume role {role_arn}. Please ensure that the role exists and allows "
            "principal 'sagemaker.amazonaws.com' to assume the role."
        )
        if ":role/" not in role_arn:
            raise refused
        iam = self.server.client("iam", region)
        try:
            role = iam.get_role(RoleName=role_arn.rsplit("/", 1)[1])["Role"]
        except iam.exceptions.NoSuchEntityException:
            raise refused from None
        import json
        from urllib.parse import unquote

        trust = role.get("AssumeRolePolicyDocument") or {}
        if isinstance(trust, str):
            trust = json.loads(unquote(trust))
        if "sagemaker.amazonaws.com" not in json.dumps(trust):
            raise refused

    def _check_network(self, region: str, vpc: dict | None) -> None:
        if not vpc:
            return
        ec2 = self.server.client("ec2", region)
        for ids, describe, kind in (
            (vpc.get("Subnets") or [], "describe_subnets", "SubnetIds"),
            (vpc.get("SecurityGroupIds") or [], "describe_security_groups", "GroupIds"),
        ):
            if not ids:
                raise _invalid(f"VpcConfig needs {kind}")
            try:
                getattr(ec2, describe)(**{kind: ids})
            except ec2.exceptions.ClientError as exc:
                raise _invalid(f"VpcConfig: {exc.response['Error'].get('Message', exc)}") from None

    # ------------------------------------------------------------------ running a job
    def _phase(self, key: str, secondary: str, message: str) -> None:
        with self._lock:
            record = self.jobs.get(key)
            if record is None or record["SecondaryStatus"] == secondary:
                return
            now = time.time()
            transitions = [dict(t) for t in record["SecondaryStatusTransitions"]]
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = now
            transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
            changes: dict[str, Any] = {}
            if secondary == "Stopping":
                changes["TrainingJobStatus"] = "Stopping"
            self.jobs.update(
                key,
                SecondaryStatus=secondary,
                SecondaryStatusTransitions=transitions,
                LastModifiedTime=now,
                **changes,
            )

    def _end_job(self, key: str, status: str, secondary: str, **changes: Any) -> None:
        with self._lock:
            if self.jobs.get(key) is None:
                return  # reset meanwhile
            self._phase(key, secondary, MESSAGES[secondary])
            record = self.jobs.get(key) or {}
            transitions = [dict(t) for t in record["SecondaryStatusTransitions"]]
            transitions[-1]["EndTime"] = time.time()
            self.jobs.update(
                key,
                TrainingJobStatus=status,
                SecondaryStatusTransitions=transitions,
                LastModifiedTime=time.time(),
                **changes,
            )

    def _run_job(self, key: str) -> None:
        record = self.jobs.get(key)
        if record is None or record["TrainingJobStatus"] not in RUNNING:
            return
        if record.get("StopRequested"):
            self._end_job(key, "Stopped", "Stopped")
            return
        region = record["Region"]
        run = TrainingRun(
            record,
            folder=self.server.folder("sagemaker", "training", key),
            region=region,
            endpoint=self.server.endpoint,
            s3=self.server.client("s3", region),
            logs=self.server.client("logs", region),
            phase=lambda secondary, message: self._phase(key, secondary, message),
            stopping=lambda: bool(
                (self.jobs.get(key) or {"StopRequested": True}).get("StopRequested")
            ),
            created=record["CreationTime"],
        )
        with self._lock:
            self._runs[key] = run
        try:
            outcome = run.run()
        except JobFailed as failed:
            self._end_job(key, "Failed", "Failed", FailureReason=str(failed), **self._times(run))
        except JobStopped as stopped:
            self._end_job(
                key, "Stopped", stopped.secondary, **self._times(run), **self._artifacts(run)
            )
        except Exception as exc:  # noqa: BLE001 - the job fails, the server goes on
            traceback.print_exc(file=sys.stderr)
            self._end_job(
                key,
                "Failed",
                "Failed",
                FailureReason=f"InternalServerError: {type(exc).__name__}: {exc}",
                **self._times(run),
            )
        else:
            self._end_job(
                key,
                "Completed",
                "Completed",
                FinalMetricDataList=outcome.metrics,
                **self._times(run),
                **self._artifacts(run),
            )
        finally:
            with self._lock:
                self._runs.pop(key, None)
            run.clean_up()

    @staticmethod
    def _times(run: TrainingRun) -> dict:
        started, ended = run.outcome.training_started, run.outcome.training_ended
        if started is None:
            return {}
        ended = ended or time.time()
        seconds = max(1, round(ended - started))
        return {
            "TrainingStartTime": started,
            "TrainingEndTime": ended,
            "TrainingTimeInSeconds": seconds,
            "BillableTimeInSeconds": seconds,
        }

    @staticmethod
    def _artifacts(run: TrainingRun) -> dict:
        uri = run.outcome.model_artifacts
        return {"ModelArtifacts": {"S3ModelArtifacts": uri}} if uri else {}

    # ------------------------------------------------------------------ endpoints
    def create_endpoint(self, call: Call) -> dict:
        name = _checked_name(call.body.get("EndpointName"), "endpointName")
        config_name = call.body.get("EndpointConfigName") or ""
        key, arn, now = _key(call.region, name), _arn(call.region, "endpoint", name), time.time()
        config = self._config(call.region, config_name)
        with self._lock:
            if self.endpoints.get(key) is not None:
                raise _invalid(f'Cannot create already existing endpoint "{arn}".')
            self.endpoints.put(
                key,
                {
                    "EndpointName": name,
                    "EndpointArn": arn,
                    "EndpointConfigName": config_name,
                    "ProductionVariants": [
                        _variant_summary(v) for v in config["ProductionVariants"]
                    ],
                    "EndpointStatus": "Creating",
                    "CreationTime": now,
                    "LastModifiedTime": now,
                    "Region": call.region,
                    "Tags": call.body.get("Tags") or [],
                },
            )
        self.deploying.submit(self._deploy, key, config_name, True)
        return {"EndpointArn": arn}

    def update_endpoint(self, call: Call) -> dict:
        record = self._endpoint(call)
        key = _key(record["Region"], record["EndpointName"])
        config_name = call.body.get("EndpointConfigName") or ""
        self._config(call.region, config_name)
        with self._lock:
            record = self.endpoints.get(key) or record
            status = record["EndpointStatus"]
            if status != "InService":
                raise _invalid(
                    f"Cannot update {'in-progress' if status in ('Creating', 'Updating') else status.lower()} "
                    f'endpoint "{record["EndpointArn"]}".'
                )
            now = time.time()
            self.endpoints.update(
                key,
                EndpointStatus="Updating",
                PendingDeploymentSummary={"EndpointConfigName": config_name, "StartTime": now},
                LastModifiedTime=now,
            )
        self.deploying.submit(self._deploy, key, config_name, False)
        return {"EndpointArn": record["EndpointArn"]}

    def delete_endpoint(self, call: Call) -> dict:
        record = self._endpoint(call)
        key = _key(record["Region"], record["EndpointName"])
        with self._lock:
            self.endpoints.delete(key)
            self._served.pop(key, None)
        shutil.rmtree(self.server.folder("sagemaker", "serving", key), ignore_errors=True)
        return {}

    def describe_endpoint(self, call: Call) -> dict:
        record = self._endpoint(call)
        members = _members("DescribeEndpoint")
        return {k: v for k, v in record.items() if k in members and v is not None}

    def list_endpoints(self, call: Call) -> dict:
        records = [r for r in self.endpoints.values() if r["Region"] == call.region]
        ordered = _filtered(records, call.body, name="EndpointName", status="EndpointStatus")
        if (call.body.get("SortOrder") or "Descending") == "Descending":
            ordered.reverse()
        page, token = _page(ordered, call.body)
        members = (
            "EndpointName",
            "EndpointArn",
            "CreationTime",
            "LastModifiedTime",
            "EndpointStatus",
        )
        answer: dict = {"Endpoints": [{k: r[k] for k in members} for r in page]}
        if token:
            answer["NextToken"] = token
        return answer

    def _endpoint(self, call: Call) -> dict:
        name = call.body.get("EndpointName") or ""
        record = self.endpoints.get(_key(call.region, name))
        if record is None:
            raise _invalid(f'Could not find endpoint "{_arn(call.region, "endpoint", name)}".')
        return record

    def _config(self, region: str, name: str) -> dict:
        """The endpoint configuration, as moto keeps it (its own ValidationException if not)."""
        sagemaker = self.server.client("sagemaker", region)
        try:
            return sagemaker.describe_endpoint_config(EndpointConfigName=name)
        except sagemaker.exceptions.ClientError as exc:
            raise _invalid(exc.response["Error"].get("Message") or str(exc)) from None

    def _load(self, key: str, region: str, name: str, config_name: str) -> dict:
        """Each production variant of the configuration loaded, in a folder of its own."""
        sagemaker = self.server.client("sagemaker", region)
        s3 = self.server.client("s3", region)
        try:
            config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        except sagemaker.exceptions.ClientError as exc:
            raise serving.LoadFailed(exc.response["Error"].get("Message") or str(exc)) from None
        folder = self.server.folder("sagemaker", "serving", key, uuid.uuid4().hex[:12])
        served = {}
        for variant in config["ProductionVariants"]:
            container = serving.container_of(sagemaker, variant["ModelName"])
            served[variant["VariantName"]] = serving.load_variant(
                s3=s3,
                endpoint=name,
                variant=variant["VariantName"],
                model_name=variant["ModelName"],
                container=container,
                folder=folder / variant["VariantName"],
            )
        return {"variants": served, "config": config, "folder": folder}

    def _deploy(self, key: str, config_name: str, creating: bool) -> None:
        record = self.endpoints.get(key)
        if record is None:
            return
        try:
            loaded = self._load(key, record["Region"], record["EndpointName"], config_name)
        except Exception as exc:  # noqa: BLE001 - LoadFailed, or a bug: the endpoint says so
            if not isinstance(exc, serving.LoadFailed):
                traceback.print_exc(file=sys.stderr)
            reason = (
                f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, serving.LoadFailed)
                else str(exc)
            )
            with self._lock:
                if self.endpoints.get(key) is None:
                    return
                if creating:
                    self.endpoints.update(
                        key,
                        EndpointStatus="Failed",
                        FailureReason=reason,
                        LastModifiedTime=time.time(),
                    )
                else:  # blue/green: the old configuration goes on serving
                    self.endpoints.update(
                        key,
                        EndpointStatus="InService",
                        FailureReason=f"the update to {config_name} failed: {reason}",
                        PendingDeploymentSummary=None,
                        LastModifiedTime=time.time(),
                    )
            return
        with self._lock:
            if self.endpoints.get(key) is None:  # deleted meanwhile
                shutil.rmtree(loaded["folder"], ignore_errors=True)
                return
            self._served[key] = loaded["variants"]
            now = time.time()
            self.endpoints.update(
                key,
                EndpointStatus="InService",
                EndpointConfigName=config_name,
                ProductionVariants=[
                    _variant_summary(v, loaded["variants"][v["VariantName"]], now)
                    for v in loaded["config"]["ProductionVariants"]
                ],
                FailureReason=None,
                PendingDeploymentSummary=None,
                LastModifiedTime=now,
                Folder=str(loaded["folder"]),
            )
        _keep_only(loaded["folder"])

    def _variants(self, key: str, record: dict) -> dict[str, serving.ServedVariant]:
        """The models that answer now (loaded again after a restart, once)."""
        with self._lock:
            served = self._served.get(key)
            lock = self._loading.setdefault(key, threading.Lock())
        if served is not None:
            return served
        with lock:
            with self._lock:
                served = self._served.get(key)
            if served is not None:
                return served
            loaded = self._load(
                key, record["Region"], record["EndpointName"], record["EndpointConfigName"]
            )
            with self._lock:
                self._served[key] = served = loaded["variants"]
            _keep_only(loaded["folder"])
            return served

    # ------------------------------------------------------------------ InvokeEndpoint
    def invoke_endpoint(self, call: Call) -> serving.RawResponse:
        match = INVOCATIONS.match(call.path)
        name = match.group(1) if match else ""
        record = self.endpoints.get(_key(call.region, name))
        if record is None:
            return serving.not_found(name, ACCOUNT)
        status = record["EndpointStatus"]
        if status not in ("InService", "Updating"):
            return serving.error(
                400,
                "ValidationError",
                {
                    "message": f"Endpoint {name} of account {ACCOUNT} is {status}: it answers "
                    "requests once it is InService"
                    + (f" ({record['FailureReason']})" if record.get("FailureReason") else "")
                },
            )
        key = _key(record["Region"], record["EndpointName"])
        try:
            variants = self._variants(key, record)
        except serving.LoadFailed as exc:
            with self._lock:
                if self.endpoints.get(key) is not None:
                    self.endpoints.update(
                        key,
                        EndpointStatus="Failed",
                        FailureReason=str(exc),
                        LastModifiedTime=time.time(),
                    )
            return serving.error(400, "ValidationError", {"message": f"Endpoint {name}: {exc}"})
        wanted = call.headers.get("x-amzn-sagemaker-target-variant")
        if wanted and wanted not in variants:
            return serving.error(
                400,
                "ValidationError",
                {"message": f"Variant {wanted} not found for endpoint {name}."},
            )
        variant = variants[wanted] if wanted else next(iter(variants.values()))
        return serving.invoke(
            variant,
            call.raw,
            call.headers.get("content-type"),
            call.headers.get("accept"),
            region=record["Region"],
            account=ACCOUNT,
        )

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        with self._lock:
            for run in self._runs.values():
                run.kill()
            self._runs.clear()
            self._served.clear()
            self.jobs.clear()
            self.endpoints.clear()
        for folder in ("training", "serving"):
            shutil.rmtree(self.server.folder("sagemaker", folder), ignore_errors=True)

    def stop(self) -> None:
        with self._lock:
            for run in self._runs.values():
                run.kill()
        self.training.shutdown(wait=False, cancel_futures=True)
        self.deploying.shutdown(wait=False, cancel_futures=True)


def _keep_only(folder) -> None:
    """Remove what earlier deployments of the endpoint fetched (their models are loaded)."""
    for other in folder.parent.iterdir():
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)


def _variant_summary(
    variant: dict, served: serving.ServedVariant | None = None, resolved: float | None = None
) -> dict:
    """DescribeEndpoint's ProductionVariantSummary of a configuration's variant."""
    summary: dict[str, Any] = {
        "VariantName": variant["VariantName"],
        "CurrentWeight": float(variant.get("InitialVariantWeight", 1.0)),
        "DesiredWeight": float(variant.get("InitialVariantWeight", 1.0)),
    }
    if served is not None:
        image = served.container.image
        summary["DeployedImages"] = [
            {"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": resolved}
        ]
    if variant.get("ServerlessConfig"):
        summary["CurrentServerlessConfig"] = summary["DesiredServerlessConfig"] = variant[
            "ServerlessConfig"
        ]
    else:
        count = int(variant.get("InitialInstanceCount", 1))
        summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = count
    return summary
