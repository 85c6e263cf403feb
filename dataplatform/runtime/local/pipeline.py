"""`dp pipeline run` on the local platform: the ML pipeline state machine's sequence
(dataplatform.pipeline.pipeline_plan, the one stacks/constructs/ml_pipeline.py builds from),
run step by step with the local data plane:

  Curate<Dataset>      the curate Glue job's script on local Spark, every dataset
  Features<Table>      the features EMR step on local Spark, every table a model uses, with
                       the demo's cutoffs (demo.feature_builds: customer_features far enough
                       back that its churn label is observable)
  Train<Model>         a SageMaker training job on the local SageMaker (`local.train`: the
                       AWS target's training code; train.py runs as script mode runs it)
  QualityGate<Model>   the gate Lambda's code on the uploaded model.tar.gz
  Register<Model>      a model package (PendingManualApproval), only when the gate passed
  NotifySuccess / NotifyFailure   a message on the alerts topic (moto SNS)

There is no transient cluster locally (no CreateCluster/TerminateCluster), and models are
trained one after the other where the state machine trains them in parallel. Like the state
machine's catch-all, any error stops the run at its step; the failure is published, then
raised as PipelineFailed naming the step, the error and its cause.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from dataplatform.naming import pascal_case
from dataplatform.pipeline import as_of_key, pipeline_plan
from dataplatform.pipeline import execution_input as pipeline_input
from dataplatform.runtime.local import provision
from dataplatform.runtime.model_registry import TrainingRun, lake_key_arn
from dataplatform.runtime.progress import Progress, say
from dataplatform.runtime.results import PipelineFailed, PipelineRun, PipelineStep

# The state machine's state-name suffix for a dataset, table or model (ml_pipeline.py).
state_id = pascal_case


# The shared result types (the AWS target's run has the same shape); StepRecord is the
# local name of a pipeline step.
StepRecord = PipelineStep


def run_pipeline(
    local,
    *,
    progress: Progress | None = None,
    train: Callable[..., TrainingRun] | None = None,
    as_of: Mapping[str, str] | None = None,
) -> PipelineRun:
    """Run the pipeline on `local`, building the tables named in `as_of` with those
    cutoffs (as the state machine's input gives them); returns the run, or raises
    PipelineFailed (after the failure notification) with the run attached."""
    plan = pipeline_plan(local.platform)
    names = local.names
    started = time.perf_counter()
    run = PipelineRun(execution=f"local-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    given = pipeline_input(plan, as_of)  # ValueError before anything runs
    cutoffs = {table: given.get(as_of_key(table)) for table in plan.features}

    def step(name: str, action: Callable[[], str]) -> None:
        say(progress, f"{name}: running")
        begun = time.perf_counter()
        try:
            detail = action() or ""
        except Exception as exc:  # noqa: BLE001 - the state machine catches States.ALL too
            _fail(name, begun, type(exc).__name__, " ".join(str(exc).split()) or repr(exc))
        run.steps.append(
            StepRecord(name, "SUCCEEDED", round(time.perf_counter() - begun, 1), detail)
        )
        say(progress, f"{name}: succeeded" + (f" ({detail})" if detail else ""))

    def _fail(name: str, begun: float, error: str, cause: str):
        run.steps.append(StepRecord(name, "FAILED", round(time.perf_counter() - begun, 1), cause))
        run.failed_step, run.error, run.cause = name, error, cause
        say(progress, f"{name}: failed: {error}: {cause}")
        raise _Stop()

    def curate(dataset: str) -> str:
        result = local.curate(local.dataset(dataset), progress=progress or (lambda line: None))
        report = getattr(result, "report", None) or {}
        run_id = str(result.run_id)[:16]
        return (
            (
                f"run {run_id}, curated {report.get('rows_curated', '?')}, quarantined "
                f"{report.get('rows_quarantined', '?')}"
            )
            if report
            else f"run {run_id}"
        )

    def features(table: str) -> str:
        as_of = cutoffs.get(table)
        result = local.features(table, as_of=as_of, progress=progress or (lambda line: None))
        return f"run {result.run_id}" + (f", as of {as_of}" if as_of else "")

    def model_steps(model: str) -> None:
        sid = pascal_case(model)
        holder: dict[str, TrainingRun] = {}

        def do_train() -> str:
            holder["run"] = (
                train(local, model, progress=progress)
                if train is not None
                else local.train(model, progress=progress)
            )
            run.trainings[model] = holder["run"]
            return f"job {holder['run'].job_name}, {holder['run'].artifact_uri}"

        step(f"Train{sid}", do_train)
        trained = holder["run"]
        checks = "; ".join(
            f"{c['metric']}={c['value']:.4g} "
            f"{'>=' if c['direction'] == 'min' else '<='} {c['threshold']:.4g}"
            for c in trained.gate["checks"]
        )
        step(f"QualityGate{sid}", lambda: f"{'passed' if trained.passed else 'failed'}: {checks}")
        if not trained.passed:
            begun = time.perf_counter()
            _fail(
                f"QualityGateFailed{sid}",
                begun,
                "QualityGateFailed",
                f"{model} did not pass its quality gate: "
                f"{json.dumps(trained.gate['checks'], separators=(',', ':'))}",
            )
        step(f"Register{sid}", lambda: trained.package_arn or "")

    sns = local.client("sns")
    try:
        run.topic_arn = provision.ensure_alerts_topic(
            sns, names, lake_key_arn(local.client("kms"), names)
        )
        for dataset in plan.curate:
            step(f"Curate{pascal_case(dataset)}", functools.partial(curate, dataset))
        for table in plan.features:
            step(f"Features{pascal_case(table)}", functools.partial(features, table))
        for model in plan.models:
            model_steps(model)
    except _Stop:
        run.status = "FAILED"
        run.seconds = round(time.perf_counter() - started, 1)
        run.notification_id = _publish(
            sns,
            run.topic_arn,
            f"{names.ml_pipeline} failed",
            f"ML pipeline {run.execution} failed: {run.error}: {run.cause}",
        )
        run.steps.append(StepRecord("NotifyFailure", "SUCCEEDED", 0.0, run.topic_arn or ""))
        raise PipelineFailed(run) from None  # _Stop only ends the run
    registered = [
        {"model": m, "job": t.job_name, "package": t.package_arn, "metrics": t.gate["metrics"]}
        for m, t in run.trainings.items()
    ]
    run.notification_id = _publish(
        sns,
        run.topic_arn,
        f"{names.ml_pipeline} succeeded",
        f"ML pipeline {run.execution} registered: {json.dumps(registered, separators=(',', ':'))}",
    )
    run.steps.append(StepRecord("NotifySuccess", "SUCCEEDED", 0.0, run.topic_arn))
    run.succeeded, run.status = True, "SUCCEEDED"
    run.seconds = round(time.perf_counter() - started, 1)
    say(progress, f"pipeline {run.execution}: succeeded in {run.seconds} s")
    return run


class _Stop(Exception):
    """Ends the run at the failed step."""


def _publish(sns, topic_arn: str | None, subject: str, message: str) -> str | None:
    if topic_arn is None:
        return None
    return sns.publish(TopicArn=topic_arn, Subject=subject[:100], Message=message)["MessageId"]
