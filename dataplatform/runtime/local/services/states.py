"""Step Functions: moto's interpreter runs the state machines (the ASL engine moto took from
LocalStack: states, paths, intrinsic functions, Retry/Catch, Parallel, Map, the execution
history), and its task integrations call back into this server, so a Glue job run, a
Lambda invoke or an SNS publish of a state is the real local one.

moto leaves two integrations the ML pipeline needs unsupported (it forwards the call once
and knows no `.sync`): EMR (`elasticmapreduce:createCluster`, `addStep`, `terminateCluster`,
`cancelStep`) and SageMaker (`sagemaker:createTrainingJob`). They are added here as Step
Functions defines them: the request-response form answers the API's own reply, the `.sync`
form waits, polling Describe*, until the cluster is up (WAITING), the step or training job
has ended, or the cluster is terminated, and fails the state with States.TaskFailed and
the Describe* answer as its cause when it did not end well.
https://docs.aws.amazon.com/step-functions/latest/dg/connect-emr.html
https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_glue import (  # noqa: E501
    StateTaskServiceGlue,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

SYNC_POLL_S = 0.5  # as moto's own .sync polling
CLUSTER_UP = {"WAITING", "RUNNING"}
CLUSTER_DOWN = {"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"}
STEP_ENDED_BADLY = {"CANCEL_PENDING", "CANCELLED", "FAILED", "INTERRUPTED"}
TRAINING_ENDED_BADLY = {"Failed", "Stopped"}


def install(home: Path) -> None:
    """Turn moto's interpreter on (it only records executions otherwise), give it the EMR
    and SageMaker integrations, and keep each execution's end under `home` so that a
    restart (which replays StartExecution from the journal) does not run it again.
    Called once, before the server answers."""
    from moto.core.config import default_user_config
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    _typed_interpreter_errors()
    _named_executions()
    _keep_executions(home / "states" / "executions")
    moto_factory = state_task_factory.state_task_service_for

    def state_task_service_for(service_name: str):
        if service_name == "glue":
            return GlueIntegration()
        if service_name == "elasticmapreduce":
            return EmrIntegration()
        if service_name == "sagemaker":
            return SageMakerIntegration()
        return moto_factory(service_name)

    state_task_factory.state_task_service_for = state_task_service_for


def json_ready(value: Any) -> Any:
    """An API answer as state data: timestamps as epoch milliseconds, as the optimized
    integrations give them (moto's datetimes failed DescribeExecution with a 500)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return value


class _SyncWithoutCallback(StateTaskServiceCallback):
    """moto's `.sync` path ends in `callback_endpoint.interrupt_all()`, and the endpoint is
    None for an integration without `.waitForTaskToken` (Glue's, EMR's, SageMaker's):
    every `.sync` state failed with States.Runtime. This is that path without the callback
    endpoint: poll the resolver until the work has ended, its answer the state's result
    (the state's TimeoutSeconds is enforced around it by the interpreter)."""

    def _eval_integration_pattern(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ) -> None:
        if ResourceCondition.WaitForTaskToken in self._supported_integration_patterns:
            return super()._eval_integration_pattern(
                env, resource_runtime_part, normalised_parameters, state_credentials
            )
        resolver = self._build_sync_resolver(
            env=env,
            resource_runtime_part=resource_runtime_part,
            normalised_parameters=normalised_parameters,
            state_credentials=state_credentials,
        )
        if resolver is None:
            raise RuntimeError(f"{self.resource.resource_arn}: no .sync form")
        # moto's _eval_sync loop takes an empty answer ({}, terminateCluster's) for "not
        # yet"; here only None is.
        outcome = None
        while env.is_running():
            outcome = resolver()
            if outcome is not None:
                outcome = json_ready(outcome)
                break
            time.sleep(SYNC_POLL_S)
        env.stack.append(outcome)


class GlueIntegration(_SyncWithoutCallback, StateTaskServiceGlue):
    pass


class _Integration(_SyncWithoutCallback):
    """An integration whose actions are methods `_call_<action>` (the request-response
    answer) and `_wait_<action>` (the .sync resolver: None until the work has ended)."""

    boto_service = ""
    error_prefix = ""

    def __init__(self):
        super().__init__(
            supported_integration_patterns={ResourceCondition.Sync}  # type: ignore[arg-type]  # and request-response
        )

    def _validate_service_integration_is_supported(self):
        action = self.resource.api_action
        if getattr(self, f"_call_{action}", None) is None:
            raise ValueError(
                f"The resource provided {self.resource.resource_arn} not recognized: the local "
                f"platform runs {self.resource.service_name}:"
                + ", ".join(a[len("_call_") :] for a in dir(self) if a.startswith("_call_"))
            )
        condition = self.resource.condition
        if condition is not None and (
            condition != ResourceCondition.Sync or not hasattr(self, f"_wait_{action}")
        ):
            raise ValueError(f"{self.resource.resource_arn}: {action} has no .{condition} form")

    def _client(self, runtime_part, credentials):
        return boto_client_for(
            region=runtime_part.region, service=self.boto_service, state_credentials=credentials
        )

    def _eval_service_task(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ):
        client = self._client(resource_runtime_part, state_credentials)
        answer = getattr(self, f"_call_{self.resource.api_action}")(client, normalised_parameters)
        env.stack.append(json_ready(answer))

    def _build_sync_resolver(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ) -> Callable[[], Any]:
        started = env.stack.pop()
        client = self._client(resource_runtime_part, state_credentials)
        wait = getattr(self, f"_wait_{self.resource.api_action}")

        def resolver() -> Any:
            return wait(
                client, started, normalised_parameters, lambda cause: self._task_failed(env, cause)
            )

        return resolver

    def _task_failed(self, env, cause: Any) -> FailureEventException:
        """What a .sync state raises when the work ended badly, as Step Functions does."""
        error = StatesErrorNameType.StatesTaskFailed
        return FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                        error=error.to_name(),
                        cause=to_json_str(cause),
                    )
                ),
            )
        )

    def _from_error(self, env, ex: Exception) -> FailureEvent:
        from botocore.exceptions import ClientError

        if isinstance(ex, ClientError):  # `EMR.ValidationException`, `SageMaker.ResourceInUse`
            name = f"{self.error_prefix}.{ex.response['Error']['Code']}"
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=name,
                        cause=ex.response["Error"].get("Message", ""),
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)


def _plain(answer: dict) -> dict:
    answer.pop("ResponseMetadata", None)
    return answer


class EmrIntegration(_Integration):
    boto_service = "emr"
    error_prefix = "EMR"

    # createCluster is RunJobFlow's request; its answer, and the .sync output, carry the
    # ClusterId (the pipeline's ResultSelector reads `$.ClusterId`).
    def _call_createCluster(self, emr, parameters: dict) -> dict:
        answer = _plain(emr.run_job_flow(**parameters))
        return {"ClusterId": answer["JobFlowId"], "ClusterArn": answer.get("ClusterArn")}

    def _wait_createCluster(self, emr, started: dict, _request: dict, failed) -> dict | None:
        cluster = emr.describe_cluster(ClusterId=started["ClusterId"])["Cluster"]
        state = cluster["Status"]["State"]
        if state in CLUSTER_UP:
            return {**started, "Cluster": cluster}
        if state in CLUSTER_DOWN:
            raise failed(cluster)
        return None

    def _call_addStep(self, emr, parameters: dict) -> dict:
        answer = emr.add_job_flow_steps(
            JobFlowId=parameters["ClusterId"], Steps=[parameters["Step"]]
        )
        return {"ClusterId": parameters["ClusterId"], "StepId": answer["StepIds"][0]}

    def _wait_addStep(self, emr, started: dict, _request: dict, failed) -> dict | None:
        step = emr.describe_step(ClusterId=started["ClusterId"], StepId=started["StepId"])["Step"]
        state = step["Status"]["State"]
        if state == "COMPLETED":
            return {"Step": step}
        if state in STEP_ENDED_BADLY:
            raise failed(step)
        return None

    def _call_cancelStep(self, emr, parameters: dict) -> dict:
        answer = emr.cancel_steps(ClusterId=parameters["ClusterId"], StepIds=[parameters["StepId"]])
        return {"CancelStepsInfoList": answer.get("CancelStepsInfoList", [])}

    def _call_terminateCluster(self, emr, parameters: dict) -> dict:
        emr.terminate_job_flows(JobFlowIds=[parameters["ClusterId"]])
        return {"ClusterId": parameters["ClusterId"]}

    def _wait_terminateCluster(self, emr, started: dict, _request: dict, failed) -> dict | None:
        cluster = emr.describe_cluster(ClusterId=started["ClusterId"])["Cluster"]
        if cluster["Status"]["State"] in ("TERMINATED", "TERMINATED_WITH_ERRORS"):
            return {}
        return None


class SageMakerIntegration(_Integration):
    boto_service = "sagemaker"
    error_prefix = "SageMaker"

    def _call_createTrainingJob(self, sagemaker, parameters: dict) -> dict:
        return {"TrainingJobArn": sagemaker.create_training_job(**parameters)["TrainingJobArn"]}

    def _wait_createTrainingJob(
        self, sagemaker, _started: dict, request: dict, failed
    ) -> dict | None:
        job = _plain(sagemaker.describe_training_job(TrainingJobName=request["TrainingJobName"]))
        status = job["TrainingJobStatus"]
        if status == "Completed":
            return job  # the .sync output is DescribeTrainingJob's answer
        if status in TRAINING_ENDED_BADLY:
            raise failed(job)
        return None


# --------------------------------------------------------------------------- restarts


def _record_path(folder: Path, execution_arn: str) -> Path:
    return folder / (hashlib.sha256(execution_arn.encode()).hexdigest()[:32] + ".json")


def _timestamp(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def _keep_executions(folder: Path) -> None:
    """An execution that ends writes its end (status, output, error, cause, history); the
    journal's replay of its StartExecution then restores that instead of running the
    state machine again. One that was still running when the server stopped is ABORTED,
    as an execution whose workers went away: it does not resume halfway through."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend import execution as executions

    from dataplatform.runtime.local import durable

    folder.mkdir(parents=True, exist_ok=True)
    reflect = executions.BaseExecutionWorkerCommunication._reflect_execution_status
    start = executions.Execution.start

    def reflect_and_keep(self) -> None:
        reflect(self)
        run = self.execution
        history = run.exec_worker.env.event_manager.get_event_history()
        record = {
            "status": run.exec_status.value if run.exec_status else None,
            "stop_date": _timestamp(run.stop_date),
            "output": run.output,
            "error": run.error,
            "cause": run.cause,
            "history": json.loads(json.dumps(history, default=_timestamp)),
        }
        path = _record_path(folder, run.exec_arn)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def start_or_restore(self) -> None:
        if not durable.restoring():
            return start(self)
        path = _record_path(folder, self.exec_arn)
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None:
            record = {
                "status": "ABORTED",
                "stop_date": None,
                "output": None,
                "error": "States.Runtime",
                "cause": "the local platform stopped while this execution ran",
                "history": [],
            }
        self.exec_status = ExecutionStatus(record["status"])
        stop = record["stop_date"]
        self.stop_date = datetime.datetime.fromisoformat(stop) if stop else self.start_date
        self.output, self.error, self.cause = record["output"], record["error"], record["cause"]
        self.exec_worker = _RestoredWorker(record["history"])

    executions.BaseExecutionWorkerCommunication._reflect_execution_status = reflect_and_keep  # type: ignore[method-assign]
    executions.Execution.start = start_or_restore  # type: ignore[method-assign]


def _named_executions() -> None:
    """StartExecution without a name gets a UUID, as on AWS. moto's interpreter left it
    None: `$$.Execution.Name` was null, the ARN ended in `:None`, and a second nameless
    execution of the machine failed with ExecutionAlreadyExists. (mock_random: the
    journal's replay seeds it, so a replayed execution gets the same name.)"""
    from moto.moto_api._internal import mock_random
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    start_execution = StepFunctionsParserBackend.start_execution

    def named(self, state_machine_arn, name=None, execution_input=None, trace_header=None):
        return start_execution(
            self, state_machine_arn, name or str(mock_random.uuid4()), execution_input, trace_header
        )

    StepFunctionsParserBackend.start_execution = named  # type: ignore[method-assign]


def _typed_interpreter_errors() -> None:
    """The interpreter's errors (InvalidDefinition, ...) name their code in `code`, which
    moto's AWSError does not read (it reads TYPE): they reached clients with an empty
    error code, so `except sfn.exceptions.InvalidDefinition` never matched."""
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.parser import api

    for value in vars(api).values():
        if isinstance(value, type) and issubclass(value, AWSError):
            code = value.__dict__.get("code")
            if isinstance(code, str) and not value.__dict__.get("TYPE"):
                value.TYPE = code
                value.STATUS = value.__dict__.get("status_code", 400)


class _RestoredWorker:
    """What an ended execution's worker answers after a restart: its history, and nothing
    to stop."""

    def __init__(self, history: list[dict]):
        for event in history:
            if isinstance(event.get("timestamp"), str):
                event["timestamp"] = datetime.datetime.fromisoformat(event["timestamp"])
        self.env = SimpleNamespace(event_manager=SimpleNamespace(get_event_history=lambda: history))

    def stop(self, **_):
        pass
