"""`dp train`, `dp models` and `dp pipeline run`: the ML commands, added to the `dp` app by
`register(app)` (one call in dataplatform/cli.py). They follow cli.py's conventions: the
target and environment come from the global options (ctx.obj), `target_platform` gives the local
or deployed platform, progress shows in a `console.status`, a one-line reason goes to
stderr; exit 2 for a usage error (unknown model), 1 for a failed run - including a model
that trained but did not pass its quality gate (it is not registered).

What the commands share (consoles, context, the target's platform) comes from
cli_context.py, which imports no command module: there is no import cycle.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dataplatform import cli_context

SpecOption = typer.Option(Path("spec"), "--spec", help="The spec folder.")


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


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
            f"{_fmt(folds.get('mean'))} ± {_fmt(folds.get('std'))}"
            if isinstance(folds, dict)
            else "-"
        )
        table.add_row(
            name,
            _fmt((metrics.get("train") or {}).get(name)),
            _fmt(test_value),
            cv_text,
            _fmt((metrics.get("gap") or {}).get(name)),
        )
    return table


def print_training(console, run) -> None:
    """Everything `dp train` says after a run: metrics, threshold, confusion matrix, fit,
    the gate per check, the registry status and where the plots are."""
    m = run.metrics
    console.print(metrics_table(run.model, m))
    if m.get("threshold") is not None:
        console.print(
            f"decision threshold (F1 on out-of-fold predictions; part of the model): "
            f"{m['threshold']:.4f}",
            highlight=False,
            soft_wrap=True,
        )
    matrix = m.get("confusion_matrix")
    if matrix:
        cm = Table(title="confusion matrix (test split, at the threshold)")
        cm.add_column("")
        cm.add_column("predicted 0", justify="right")
        cm.add_column("predicted 1", justify="right")
        for label, row in zip(("actual 0", "actual 1"), matrix, strict=True):
            cm.add_row(label, *[f"{v:,}" for v in row])
        console.print(cm)
    fit = m.get("fit")
    if fit:
        colour = "green" if fit == "ok" else "yellow"
        console.print(f"fit diagnosis: [{colour}]{fit}[/{colour}]")
    gate = Table(title="quality gate")
    for column in ("metric", "value", "rule", "verdict"):
        gate.add_column(column)
    for check in run.gate.get("checks", []):
        rule = f"{'>=' if check['direction'] == 'min' else '<='} {check['threshold']:g}"
        gate.add_row(
            check["metric"],
            _fmt(check["value"]),
            rule,
            "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]",
        )
    console.print(gate)
    if run.package_arn:
        console.print(
            f"registered: {run.package_arn} (PendingManualApproval)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("[red]not registered: the model did not pass its quality gate[/red]")
    console.print(
        f"training job {run.job_name} in {run.seconds} s; model {run.artifact_uri}",
        highlight=False,
        soft_wrap=True,
    )
    if run.model_dir:
        console.print(
            f"plots, metrics.json and model.joblib: {run.model_dir}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(f"plots: inside {run.artifact_uri}", highlight=False, soft_wrap=True)
    if run.log_path:
        console.print(f"log: {run.log_path}", highlight=False, soft_wrap=True)


def _model_name(platform, name: str, error_console) -> str:
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


def register(app: typer.Typer) -> None:
    """Add `dp train`, `dp models` and `dp pipeline run` to `app`."""

    @app.command("train")
    def train_command(
        ctx: typer.Context,
        model: str = typer.Argument(..., help="spec/models/MODEL.yaml"),
        spec: Path = SpecOption,
    ) -> None:
        """Train MODEL (SageMaker; locally train.py with SageMaker's environment), gate it and
        register it if it passes; prints the metrics. Exit 1 if it fails or is not registered."""
        from dataplatform.runtime.errors import JobFailed

        _model_name(cli_context.load(spec), model, cli_context.error_console)
        target = cli_context.target_platform(ctx, spec)
        with cli_context.console.status(f"train {model}: starting ...") as status:
            try:
                run = target.train(
                    model, progress=cli_context.job_progress(status, f"train {model}")
                )
            except JobFailed as exc:
                cli_context.error_console.print(
                    f"[red]{exc}[/red]", highlight=False, soft_wrap=True
                )
                raise typer.Exit(code=1) from None
        print_training(cli_context.console, run)
        if not run.package_arn:
            raise typer.Exit(code=1)

    @app.command("models")
    def models_command(ctx: typer.Context, spec: Path = SpecOption) -> None:
        """Model package groups and their packages: version, approval status, created, test
        metrics (from the registry); models never registered are listed too."""
        from dataplatform.runtime.local.training import list_models

        target = cli_context.target_platform(ctx, spec)
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
                metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in p.test_metrics.items()) or "-"
                table.add_row(
                    entry.model,
                    entry.group,
                    str(p.version),
                    f"[{colour}]{p.status}[/]",
                    created,
                    p.training_job or "-",
                    metrics,
                )
        cli_context.console.print(table)

    pipeline_app = typer.Typer(
        help="The ML pipeline: curate -> features -> train -> gate -> register -> notify.",
        no_args_is_help=True,
    )
    app.add_typer(pipeline_app, name="pipeline")

    @pipeline_app.command("run")
    def pipeline_run_command(ctx: typer.Context, spec: Path = SpecOption) -> None:
        """aws: start the state machine and follow it; local: run its steps one by one."""

        target = cli_context.target_platform(ctx, spec)
        if ctx.obj.target == "local":
            _run_local_pipeline(target)
        else:
            _run_aws_pipeline(target)


def _steps_table(run) -> Table:
    table = Table(title=f"pipeline {run.execution}")
    for column in ("step", "state", "seconds", "detail"):
        table.add_column(
            column, overflow="fold", justify="right" if column == "seconds" else "left"
        )
    for s in run.steps:
        colour = "green" if s.state == "SUCCEEDED" else "red"
        table.add_row(s.name, f"[{colour}]{s.state}[/]", str(s.seconds), s.detail)
    return table


def _run_local_pipeline(local) -> None:
    from dataplatform.runtime.local.pipeline import PipelineFailed, run_pipeline

    with cli_context.console.status("pipeline: starting ...") as status:
        progress = cli_context.job_progress(status, "pipeline")
        try:
            run = run_pipeline(local, progress=progress)
        except PipelineFailed as exc:
            status.stop()
            cli_context.console.print(_steps_table(exc.run))
            cli_context.error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
            if exc.run.topic_arn:
                cli_context.error_console.print(
                    f"failure published to {exc.run.topic_arn}", highlight=False, soft_wrap=True
                )
            raise typer.Exit(code=1) from None
    cli_context.console.print(_steps_table(run))
    for model, trained in run.trainings.items():
        cli_context.console.print(metrics_table(model, trained.metrics))
        cli_context.console.print(
            f"{model}: registered {trained.package_arn}; plots in {trained.model_dir}",
            highlight=False,
            soft_wrap=True,
        )
    cli_context.console.print(
        f"pipeline {run.execution} succeeded in {run.seconds} s; notified {run.topic_arn}",
        highlight=False,
        soft_wrap=True,
    )


def _run_aws_pipeline(aws) -> None:
    from dataplatform.runtime.aws.pipeline import ExecutionFailed, run_pipeline

    def progress(line: str) -> None:
        status.update(f"pipeline: {line}")
        if line.endswith(": exited") or line.startswith("started") or "Failed" in line:
            cli_context.console.print(line, highlight=False, soft_wrap=True)

    with cli_context.console.status("pipeline: starting ...") as status:
        try:
            result = run_pipeline(aws, progress=progress)
        except ExecutionFailed as exc:
            status.stop()
            cli_context.error_console.print(
                f"[red]pipeline failed in state {exc.state or '?'}[/red]",
                highlight=False,
                soft_wrap=True,
            )
            cli_context.error_console.print(
                f"execution: {exc.execution_arn} ({exc.status})\n"
                f"error: {exc.error}\ncause: {exc.cause}\n"
                f"console: {exc.console_url}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(code=1) from None
    cli_context.console.print(
        f"pipeline {result.execution_arn} {result.status} in {result.seconds:.0f} s",
        highlight=False,
        soft_wrap=True,
    )
