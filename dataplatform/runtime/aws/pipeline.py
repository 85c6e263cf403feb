"""`dp pipeline run --target aws`: start an execution of the deployed ML pipeline state
machine (`names.ml_pipeline`, in OrchestrationStack) and follow it.

The state machine's ARN is built from the caller's account and region (STS), so nothing is
looked up by listing. Following reads GetExecutionHistory incrementally (only events after
the last one seen) and reports each state entered and exited through `progress`; `sleep`
and `clock` are injectable so tests run instantly. A run that ends FAILED, TIMED_OUT or
ABORTED raises ExecutionFailed naming the state that failed first, with the error and cause
(the execution's own error and cause when they say more: the catch path passes them on).

A timeout only stops the following: the execution goes on in Step Functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dataplatform.pipeline import execution_input as pipeline_input
from dataplatform.pipeline import pipeline_plan
from dataplatform.runtime.progress import Progress
from dataplatform.runtime.results import PipelineFailed, PipelineRun, PipelineStep

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# History events that mean a state (or the execution) failed; their details carry error/cause.
FAILURE_EVENTS = (
    "TaskFailed",
    "TaskStartFailed",
    "TaskSubmitFailed",
    "TaskTimedOut",
    "LambdaFunctionFailed",
    "LambdaFunctionStartFailed",
    "LambdaFunctionTimedOut",
    "ParallelStateFailed",
    "MapStateFailed",
    "ActivityFailed",
    "ActivityTimedOut",
    "ExecutionFailed",
    "ExecutionTimedOut",
    "ExecutionAborted",
)


class ExecutionFailed(PipelineFailed):
    """The shared PipelineFailed, with the execution's own fields; `run` holds the steps
    that ended before the failure."""

    def __init__(
        self,
        execution_arn: str,
        status: str,
        state: str | None,
        error: str | None,
        cause: str | None,
        console_url: str,
        steps: list[PipelineStep] | None = None,
    ):
        self.execution_arn, self.status, self.state = execution_arn, status, state
        self.error, self.cause, self.console_url = error, cause, console_url
        run = PipelineRun(
            execution=execution_arn,
            steps=list(steps or []),
            status=status,
            failed_step=state,
            error=error,
            cause=cause,
            console_url=console_url,
        )
        super().__init__(
            run,
            f"ML pipeline execution {execution_arn} {status}"
            + (f" in state {state}" if state else "")
            + f": {error or 'no error'}: {cause or 'no cause'}\n  console: {console_url}",
        )


@dataclass
class ExecutionResult:
    execution_arn: str
    status: str
    seconds: float
    states: list[tuple[str, str]] = field(default_factory=list)  # (state, entered|exited)
    output: str | None = None
    steps: list[PipelineStep] = field(default_factory=list)  # the states that exited, timed

    def run(self) -> PipelineRun:
        """As the shared pipeline result."""
        return PipelineRun(
            execution=self.execution_arn,
            steps=list(self.steps),
            succeeded=self.status == "SUCCEEDED",
            status=self.status,
            seconds=self.seconds,
        )


def state_machine_arn(sts, names) -> str:
    account = sts.get_caller_identity()["Account"]
    return f"arn:aws:states:{names.region}:{account}:stateMachine:{names.ml_pipeline}"


def console_url(execution_arn: str, region: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{execution_arn}"
    )


def _details(event: dict) -> dict:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


class HistoryReader:
    """Reads an execution's history incrementally (events in order, each once)."""

    def __init__(self, sfn, execution_arn: str):
        self.sfn, self.arn = sfn, execution_arn
        self.events: list[dict] = []
        self.last_id = 0

    def new_events(self) -> list[dict]:
        fresh, token = [], None
        while True:
            kwargs = {"executionArn": self.arn, "maxResults": 1000, "reverseOrder": False}
            if token:
                kwargs["nextToken"] = token
            page = self.sfn.get_execution_history(**kwargs)
            fresh += [e for e in page.get("events", []) if e["id"] > self.last_id]
            token = page.get("nextToken")
            if not token:
                break
        if fresh:
            self.last_id = max(e["id"] for e in fresh)
            self.events += fresh
        return fresh


def failing_state(events: list[dict]) -> tuple[str | None, str | None, str | None]:
    """(state, error, cause) of the first failure in the history that was not retried away:
    a task-level failure event (its state found by following previousEventId back to the
    *StateEntered event), or a Fail state (e.g. QualityGateFailed<Model>, whose error and
    cause are the execution's). Failures a Retry recovered from are skipped."""
    by_id = {e["id"]: e for e in events}

    def entered(event: dict | None) -> dict | None:
        seen = set()
        while event is not None and event["id"] not in seen:
            seen.add(event["id"])
            if event["type"].endswith("StateEntered"):
                return event
            event = by_id.get(event.get("previousEventId"))
        return None

    def retried(index: int, state_event: dict | None) -> bool:
        if state_event is None:
            return False
        return any(
            e["type"].endswith("Scheduled") and entered(e) is state_event
            for e in events[index + 1 :]
        )

    final = next(
        (e for e in events if e["type"].startswith("Execution") and e["type"] in FAILURE_EVENTS),
        None,
    )
    final_details = _details(final) if final else {}
    for index, event in enumerate(events):
        kind = event["type"]
        if kind == "FailStateEntered":
            return (
                _details(event).get("name"),
                final_details.get("error"),
                final_details.get("cause"),
            )
        if kind in FAILURE_EVENTS and not kind.startswith(("Execution", "Parallel", "Map")):
            state_event = entered(event)
            if retried(index, state_event):
                continue
            d = _details(event)
            return (
                _details(state_event).get("name") if state_event else None,
                d.get("error"),
                d.get("cause"),
            )
    return None, final_details.get("error"), final_details.get("cause")


def run_pipeline(
    aws,
    *,
    progress: Progress | None = None,
    poll_seconds: float = 15,
    timeout_seconds: float = 12 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    execution_name: str | None = None,
    as_of: Mapping[str, str] | None = None,
) -> ExecutionResult:
    execution_input = pipeline_input(pipeline_plan(aws.platform), as_of)  # before any call
    sfn = aws.client("stepfunctions")
    arn = state_machine_arn(aws.client("sts"), aws.names)
    name = execution_name or f"dp-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    execution_arn = sfn.start_execution(
        stateMachineArn=arn, name=name, input=json.dumps(execution_input)
    )["executionArn"]
    say = progress or (lambda line: None)
    say(f"started {execution_arn}")
    started = clock()
    reader = HistoryReader(sfn, execution_arn)
    result = ExecutionResult(execution_arn, "RUNNING", 0.0)
    entered_at: dict[str, datetime | None] = {}  # None: an event without a timestamp

    def report(events: list[dict]) -> None:
        for event in events:
            kind = event["type"]
            if kind.endswith("StateEntered") or kind.endswith("StateExited"):
                state = _details(event).get("name", "?")
                verb = "entered" if kind.endswith("StateEntered") else "exited"
                result.states.append((state, verb))
                say(f"{state}: {verb}")
                if verb == "entered":
                    entered_at[state] = event.get("timestamp")
                else:
                    result.steps.append(_step(state, entered_at.get(state), event))
            elif kind in FAILURE_EVENTS:
                d = _details(event)
                say(f"{kind}: {d.get('error', '')} {d.get('cause', '')[:200]}".rstrip())

    while True:
        report(reader.new_events())
        described = sfn.describe_execution(executionArn=execution_arn)
        status = described["status"]
        if status in TERMINAL:
            report(reader.new_events())  # what happened between the last read and the end
            break
        elapsed = clock() - started
        if elapsed >= timeout_seconds:
            raise ExecutionFailed(
                execution_arn,
                f"still {status} after {elapsed:.0f} s (it goes on in Step Functions)",
                None,
                None,
                None,
                console_url(execution_arn, aws.names.region),
                result.steps,
            )
        sleep(poll_seconds)
    result.status = status
    result.seconds = round(clock() - started, 1)
    result.output = described.get("output")
    if status != "SUCCEEDED":
        state, error, cause = failing_state(reader.events)
        raise ExecutionFailed(
            execution_arn,
            status,
            state,
            error or described.get("error"),
            cause or described.get("cause"),
            console_url(execution_arn, aws.names.region),
            result.steps + [PipelineStep(state or "?", "FAILED", 0.0, cause or "")],
        )
    say(f"pipeline {status} in {result.seconds} s")
    return result


def _step(state: str, entered: datetime | None, exited: dict) -> PipelineStep:
    ended = exited.get("timestamp")
    seconds = (
        round((ended - entered).total_seconds(), 1)
        if isinstance(entered, datetime) and isinstance(ended, datetime)
        else 0.0
    )
    return PipelineStep(state, "SUCCEEDED", seconds)
