"""`dp train`, `dp models` and `dp pipeline run`: the ML commands, on either target. Exit 2
for a usage error (unknown model), 1 for a failed run - including a model that trained but
did not pass its quality gate (it is not registered)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dataplatform.cli import render
from dataplatform.cli.context import (
    SpecOption,
    console,
    error_console,
    job_progress,
    load,
    target_platform,
)
from dataplatform.cli.render import OutputOption


def metrics_table(model: str, metrics: dict) -> Table:
    """metric | train | test | CV mean ± std | gap, one row per test metric."""
    table = Table(
        title=f"{model}: {metrics.get('problem', '')} ({metrics.get('algorithm', '')}), "
        f"{metrics.get('n_train', '?')} train / {metrics.get('n_test', '?')} test rows"
    )
    for column in ("metric", "train", "test", "CV mean ± std", "gap (train vs test)"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    cv = metrics.get("cv") or {}
    for name, test_value in (metrics.get("test") or {}).items():
        folds = cv.get(name)
        cv_text = (
            f"{render.fmt(folds.get('mean'))} ± {render.fmt(folds.get('std'))}"
            if isinstance(folds, dict)
            else "-"
        )
        table.add_row(
            name,
            render.fmt((metrics.get("train") or {}).get(name)),
            render.fmt(test_value),
            cv_text,
            render.fmt((metrics.get("gap") or {}).get(name)),
        )
    return table


def print_training(run) -> None:
    """Everything `dp train` says after a run: metrics, threshold, confusion matrix, fit,
    the gate per check, the registry status and where the plots are."""
    m = run.metrics
    render.show(metrics_table(run.model, m))
    if m.get("threshold") is not None:
        render.say(
            f"decision threshold (F1 on out-of-fold predictions; part of the model): "
            f"{m['threshold']:.4f}"
        )
    matrix = m.get("confusion_matrix")
    if matrix:
        cm = Table(title="confusion matrix (test split, at the threshold)")
        cm.add_column("")
        cm.add_column("predicted 0", justify="right")
        cm.add_column("predicted 1", justify="right")
        for label, row in zip(("actual 0", "actual 1"), matrix, strict=True):
            cm.add_row(label, *[f"{v:,}" for v in row])
        render.show(cm)
    fit = m.get("fit")
    if fit:
        colour = "green" if fit == "ok" else "yellow"
        render.say(f"fit diagnosis: [{colour}]{fit}[/{colour}]")
    gate = Table(title="quality gate")
    for column in ("metric", "value", "rule", "verdict"):
        gate.add_column(column)
    for check in run.gate.get("checks", []):
        rule = f"{'>=' if check['direction'] == 'min' else '<='} {check['threshold']:g}"
        gate.add_row(
            check["metric"],
            render.fmt(check["value"]),
            rule,
            "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]",
        )
    render.show(gate)
    if run.package_arn:
        render.say(f"registered: {run.package_arn} (PendingManualApproval)")
    else:
        render.say("[red]not registered: the model did not pass its quality gate[/red]")
    render.say(f"training job {run.job_name} in {run.seconds} s; model {run.artifact_uri}")
    if run.model_dir:
        render.say(f"plots, metrics.json and model.joblib: {run.model_dir}")
    else:
        render.say(f"plots: inside {run.artifact_uri}")
    if run.log_path:
        render.say(f"log: {run.log_path}")


def known_model(platform, name: str) -> str:
    """NAME if the spec declares it, else a one-line reason and exit 2."""
    known = sorted(m.name for m in platform.models)
    if name not in known:
        error_console.print(
            f"[red]unknown model {name!r}; known (spec/models/*.yaml): "
            f"{', '.join(known) or 'none'}[/red]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    return name


def model_declaring(spec: Path, name: str, section: str):
    """The spec's model NAME if it declares `section` (serving, monitoring), else a one-line
    reason naming the models that do, and exit 2."""
    platform = load(spec)
    known_model(platform, name)
    model = next(m for m in platform.models if m.name == name)
    if getattr(model, section) is None:
        declaring = sorted(m.name for m in platform.models if getattr(m, section) is not None)
        error_console.print(
            f"[red]{name} declares no {section}: section "
            f"({model.source_file or f'spec/models/{name}.yaml'}); models that do: "
            f"{', '.join(declaring) or 'none'}[/red]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    return model


def train(target, model: str):
    """Train, gate and register MODEL on the target, printing the outcome; a failed job is
    a one-line reason and exit 1. Returns the run."""
    from dataplatform.runtime.errors import JobFailed

    with console.status(f"train {model}: starting ...") as status:
        try:
            run = target.train(model, progress=job_progress(status, f"train {model}"))
        except JobFailed as exc:
            error_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(code=1) from None
    print_training(run)
    return run


def train_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="spec/models/MODEL.yaml"),
    spec: Path = SpecOption,
    output: str = OutputOption,
) -> None:
    """Train MODEL (SageMaker; locally train.py with SageMaker's environment), gate it and
    register it if it passes; prints the metrics. Exit 1 if it fails or is not registered."""
    render.use_output(output)
    known_model(load(spec), model)
    run = train(target_platform(ctx, spec), model)
    if not run.package_arn:
        raise typer.Exit(code=1)


models_app = typer.Typer(
    help="The model registry: `dp models` lists it, `dp models approve MODEL VERSION`.",
    invoke_without_command=True,
)


@models_app.callback()
def models_command(ctx: typer.Context, spec: Path = SpecOption, output: str = OutputOption) -> None:
    """Model package groups and their packages: version, approval status, created, test
    metrics (from the registry); models never registered are listed too."""
    if ctx.invoked_subcommand is not None:
        return
    from dataplatform.runtime.model_registry import list_models

    render.use_output(output)
    target = target_platform(ctx, spec)
    registry = list_models(target.client("sagemaker"), target.platform, target.names)
    table = Table(title=f"{target.names.prefix}: model registry")
    for column in (
        "model",
        "package group",
        "version",
        "status",
        "created (UTC)",
        "training job",
        "test metrics",
    ):
        table.add_column(column, overflow="fold")
    for entry in registry:
        if not entry.packages:
            table.add_row(
                entry.model,
                entry.group if entry.exists else f"{entry.group} (missing)",
                "-",
                "[dim]no package yet[/dim]",
                "-",
                "-",
                "-",
            )
        for p in entry.packages:
            colour = {"Approved": "green", "Rejected": "red"}.get(p.status, "yellow")
            created = (
                p.created.strftime("%Y-%m-%d %H:%M:%S")
                if hasattr(p.created, "strftime")
                else str(p.created or "-")
            )
            metrics = ", ".join(f"{k}={render.fmt(v)}" for k, v in p.test_metrics.items()) or "-"
            table.add_row(
                entry.model,
                entry.group,
                str(p.version),
                f"[{colour}]{p.status}[/]",
                created,
                p.training_job or "-",
                metrics,
            )
    render.show(table)


@models_app.command("approve")
def approve_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="spec/models/MODEL.yaml"),
    version: int = typer.Argument(..., help="the package version (dp models lists them)"),
    spec: Path = SpecOption,
) -> None:
    """Approve a registered model version: on AWS its endpoint rolls to it (an EventBridge
    rule on the approval); locally `dp serve MODEL` serves it."""
    known_model(load(spec), model)
    target = target_platform(ctx, spec)
    try:
        arn = target.approve(model, version)
    except KeyError as exc:
        error_console.print(f"[red]{exc.args[0]}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    render.say(f"approved {arn}")


pipeline_app = typer.Typer(
    help="The ML pipeline: curate -> features -> train -> gate -> register -> notify.",
    no_args_is_help=True,
)


def steps_table(run) -> Table:
    table = Table(title=f"pipeline {run.execution}")
    for column in ("step", "state", "seconds", "detail"):
        table.add_column(
            column, overflow="fold", justify="right" if column == "seconds" else "left"
        )
    for s in run.steps:
        colour = "green" if s.state == "SUCCEEDED" else "red"
        table.add_row(s.name, f"[{colour}]{s.state}[/]", str(s.seconds), s.detail)
    return table


# Progress lines worth keeping on screen (a state that ended or failed, the execution
# started); the others (a job's output) only update the status line.
MILESTONES = (": exited", ": succeeded", ": failed")


@pipeline_app.command("run")
def pipeline_run_command(
    ctx: typer.Context,
    as_of: list[str] = typer.Option(
        [],
        "--as-of",
        help="TABLE=YYYY-MM-DD, repeatable: build that feature table with this cutoff (the "
        "state machine's input); the others use their SQL's default",
    ),
    spec: Path = SpecOption,
    output: str = OutputOption,
) -> None:
    """aws: start the state machine and follow it; local: run its steps one by one."""
    from dataplatform.pipeline import execution_input, pipeline_plan
    from dataplatform.runtime.results import PipelineFailed

    render.use_output(output)
    target = target_platform(ctx, spec)
    cutoffs = {}
    for pair in as_of:
        table, sep, day = pair.partition("=")
        if not sep or not table or not day:
            error_console.print(f"[red]--as-of {pair}: use TABLE=YYYY-MM-DD[/red]", highlight=False)
            raise typer.Exit(code=2)
        cutoffs[table] = day
    try:
        execution_input(pipeline_plan(target.platform), cutoffs)  # before anything runs
    except ValueError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=2) from None

    def progress(line: str) -> None:
        status.update(f"pipeline: {line[:100]}")
        if line.endswith(MILESTONES) or line.startswith("started") or "Failed" in line:
            render.say(line)

    with console.status("pipeline: starting ...") as status:
        try:
            run = target.run_pipeline(as_of=cutoffs, progress=progress)
        except PipelineFailed as exc:
            status.stop()
            failed = exc.run
            if failed.steps:
                render.show(steps_table(failed))
            error_console.print(f"[red]{exc}[/red]")
            details = [f"pipeline failed in state {failed.failed_step or '?'}"]
            details += [f"execution: {failed.execution} ({failed.status})"]
            details += [f"error: {failed.error}", f"cause: {failed.cause}"]
            if failed.console_url:
                details.append(f"console: {failed.console_url}")
            if failed.topic_arn:
                details.append(f"failure published to {failed.topic_arn}")
            error_console.print("\n".join(details), highlight=False, markup=False)
            raise typer.Exit(code=1) from None
    render.show(steps_table(run))
    for model, trained in run.trainings.items():
        render.show(metrics_table(model, trained.metrics))
        render.say(f"{model}: registered {trained.package_arn}; plots in {trained.model_dir}")
    render.say(run.line())


GROUPS = {"pipeline": pipeline_app, "models": models_app}
COMMANDS = {"train": train_command}
