"""`dp demo`: the whole path on generated sample data, on the embedded local platform
(it starts from an empty platform, which only the local one can be). The flow, its plan
and its reconciliation are data (dataplatform/demo_flow.py); this module runs the plan with
the same helpers as the single commands and prints what it ends with."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from dataplatform import demo, demo_flow
from dataplatform.cli import data, emr, ml
from dataplatform.cli.context import (
    LOCAL_ACCOUNT,
    SpecOption,
    console,
    environment,
    load,
    local_platform,
    require_target,
)
from dataplatform.cli.local import start_and_provision
from dataplatform.naming import Names


def _empty_local_platform(ctx: typer.Context) -> None:
    """One demo at a time per state folder (the lock is held until the command ends), from
    an empty platform: a running one is emptied (keeping its warm Spark driver), a stopped
    one's kept data is deleted."""
    import shutil

    from dataplatform.runtime.errors import Refused
    from dataplatform.runtime.local import locks, server

    def another_demo() -> Exception:
        return Refused(
            "another `dp demo` is running on this platform (a demo empties the "
            "platform when it starts): wait for it to finish"
        )

    demo_lock = locks.exclusive(server.state_dir() / "demo.lock", busy=another_demo)
    demo_lock.__enter__()
    ctx.call_on_close(lambda: demo_lock.__exit__(None, None, None))
    if server.status() is not None:
        server.reset()
        console.print("emptied the running local platform: the demo starts from an empty one")
    elif server.has_state():
        server.down(wipe=True)
        console.print(
            "deleted the stopped local platform's data: the demo starts from an empty one"
        )
    shutil.rmtree(server.state_dir() / "demo", ignore_errors=True)


def _start_spark_quietly(local) -> None:
    """Start the Spark driver early; if that fails, the first job says why."""
    from dataplatform.runtime.local.spark_service import SparkServiceError

    try:
        local.start_spark()
    except (SparkServiceError, OSError):
        pass


def demo_command(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """The whole local path on generated sample data: up, ingest, deliver, crawl, curate,
    features, query, train (on the embedded local platform, which it empties first)."""
    from dataplatform.runtime.local import server

    require_target(ctx, "local", "dp demo empties the platform it runs on")
    started = time.perf_counter()
    platform = load(spec)
    names = Names.for_environment(
        platform, environment(platform, ctx.obj.env), account=LOCAL_ACCOUNT
    )
    _empty_local_platform(ctx)
    plan = demo_flow.plan(platform, names, demo.write_sample_files(server.state_dir() / "demo"))
    stages = iter(plan.stages())

    def next_stage() -> None:
        console.rule(
            f"[bold]{next(stages)}[/bold] [dim](+{time.perf_counter() - started:.0f} s)[/dim]"
        )

    next_stage()
    start_and_provision(ctx, spec)
    local = local_platform(ctx, spec)
    next_stage()
    spark_start = threading.Thread(target=_start_spark_quietly, args=(local,), daemon=True)
    spark_start.start()  # the JVM starts on the other core while ingestion runs
    datasets = {name: data.dataset_of(local, name) for name in plan.files}
    ingested = {name: data.ingest(local, datasets[name], file) for name, file in plan.files.items()}
    next_stage()
    for name in plan.files:
        data.crawl(local, datasets[name])
    spark_start.join()  # one driver: the curate jobs below must not start a second one
    next_stage()
    curated = {name: data.curate(local, datasets[name]) for name in plan.files}
    next_stage()
    for name, as_of in plan.features:
        emr.features(local, name, as_of)
    for step, args in plan.steps:
        begun = time.perf_counter()
        emr.run_step(local, step, args)
        console.print(f"{step}: {time.perf_counter() - begun:.0f} s (spark-submit included)")
    for query in plan.queries:
        data.query(local, query.sql, title=query.title)
    next_stage()
    outcome = demo_flow.DemoOutcome()
    for model in plan.models:
        run = ml.train(local, model)
        oracle = demo_flow.oracle_line(run)
        if oracle:
            console.print(oracle)
        outcome.models.append(demo_flow.ModelOutcome(run.model, run.package_arn, run.model_dir))
    next_stage()
    _real_time(local, plan, outcome)
    outcome.reconciliations = [
        demo_flow.reconcile(name, ingested[name], curated[name].report) for name in plan.files
    ]
    for line in outcome.lines():
        console.print(line)
    console.print(
        f"demo finished in {time.perf_counter() - started:.0f} s; the platform is still "
        "running (`dp local down` stops it)"
    )
    if not outcome.succeeded:
        raise typer.Exit(code=1)


def _real_time(local, plan, outcome) -> None:
    """Approve each served model just registered (churn, clv), serve it, score the stream's
    history (the online features; each model's scorer reads the stream through its own
    consumer), then stream a fresh day in once and score it with each: the at-risk and the
    high-value customers are flagged, against the generator's truth; then what happened
    next: the outcomes arrive and `dp monitor` reports."""
    from dataplatform.cli import render, serving

    served = []
    for model in (m for m in local.platform.models if m.serving and m.name in plan.models):
        registered = next((m for m in outcome.models if m.model == model.name), None)
        if registered is None or not registered.package_arn:
            console.print(f"{model.name}: not registered, so not served")
            continue
        version = int(registered.package_arn.rsplit("/", 1)[1])
        started = datetime.now(UTC)
        # the approval's event invokes the endpoint deployer Lambda (the serving stack's rule)
        console.print(f"approved {local.approve(model.name, version)}")
        answer = local.serve(model.name)
        console.print(
            f"{answer.endpoint}: {answer.status}, version {answer.version}; {answer.where}"
        )
        # the scorer's mapping reads the stream's history: every customer's features
        serving.score(local, model.name, since=started)
        served.append(model)
    for stream in sorted({m.serving.stream for m in served}):
        fresh = Path(local.state_dir) / "demo" / f"{stream}_fresh_day.jsonl"
        fresh.write_text("".join(json.dumps(e) + "\n" for e in demo.fresh_day_events()))
        before_fresh = datetime.now(UTC)
        data.ingest(local, local.dataset(stream), fresh)
        for model in (m for m in served if m.serving.stream == stream):
            today = serving.score(local, model.name, since=before_fresh)
            if model.name in demo_flow.PLANTED:
                truth = demo_flow.planted_truth(today.scores, model.serving.threshold, model.name)
                console.print(f"{model.name}: {truth.line()}")
            scores = local.flagged(model.name, limit=10)
            if scores:
                render.show(serving.flagged_table(model, scores))
            if model.monitoring is not None and model.name in demo_flow.OUTCOMES:
                _what_happened_next(local, model, today.scores)


def _what_happened_next(local, model, scores: list[dict]) -> None:
    """The CRM's outcomes of the fresh day's scores uploaded (planted by the generator),
    the scores and the outcomes curated, and `dp monitor` on them. Not published: the
    demo's breach would start a retraining run of the pipeline behind the demo (the e2e
    tests follow that path); `dp monitor MODEL` publishes."""
    from dataplatform.cli import monitor

    outcomes = local.dataset(model.monitoring.outcomes_dataset)
    upload = Path(local.state_dir) / "demo" / f"{outcomes.name}.csv"
    upload.write_text(demo_flow.OUTCOMES[model.name](scores, known_at=datetime.now(UTC)))
    data.ingest(local, outcomes, upload)
    for dataset in (local.dataset(model.serving.scores_dataset), outcomes):
        data.crawl(local, dataset)
        data.curate(local, dataset)
    plots = Path(local.state_dir) / "demo" / "monitor"
    monitor.monitor(local, model, days=7, plots=plots, publish=False)


GROUPS: dict = {}
COMMANDS = {"demo": demo_command}
