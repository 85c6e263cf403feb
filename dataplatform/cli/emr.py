"""`dp features`, `dp emr run` and `dp emr status`: EMR Spark steps (emr_steps/), on local
Spark or on the environment's cluster (aws: started from the deployed ML pipeline's cluster
definition when none is active, unless `dp emr run --no-start`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dataplatform.cli import render
from dataplatform.cli.context import (
    LOCAL_ACCOUNT,
    SpecOption,
    console,
    environment,
    error_console,
    job_progress,
    load,
    target_platform,
)
from dataplatform.cli.render import OutputOption
from dataplatform.naming import Names


def checked_step_arguments(ctx: typer.Context, spec: Path, step: str, args) -> dict[str, str]:
    """The step's full arguments, checked before any platform is reached: a one-line reason
    and exit 2 for an unknown step, a malformed or unknown argument, an unknown feature table."""
    from dataplatform.jobs.emr_step_args import StepArgumentError, step_arguments

    platform = load(spec)
    settings = environment(platform, ctx.obj.env)
    try:
        arguments = step_arguments(
            step, Names.for_environment(platform, settings, account=LOCAL_ACCOUNT), args
        )
    except StepArgumentError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=2) from None
    if step == "features":
        known = sorted(f.name for f in platform.features)
        if arguments["--name"] not in known:
            error_console.print(
                f"[red]unknown feature table {arguments['--name']!r}; known "
                f"(spec/features/*.sql): {', '.join(known) or 'none'}[/red]",
                highlight=False,
            )
            raise typer.Exit(code=2)
    return arguments


def run_step(target, step: str, args, *, start_cluster: bool = True) -> dict[str, str]:
    """Run an EMR step on the target (local Spark, or the environment's EMR cluster, started
    for it when none is active unless `start_cluster` is False), then print what it wrote.
    Returns the step's full arguments."""
    from dataplatform.jobs import emr_step_args
    from dataplatform.runtime.errors import JobFailed
    from dataplatform.runtime.progress import Notice

    arguments = emr_step_args.step_arguments(step, target.names, args)
    label = emr_step_args.step_name(step, arguments)
    with console.status(f"{label}: starting ...") as status:
        in_status_bar = job_progress(status, label)

        def progress(line: str) -> None:
            if isinstance(line, Notice):  # a cluster started: kept above the status bar
                render.say(f"{label}: {line}")
            in_status_bar(line)

        try:
            run = target.emr_run(step, args, progress=progress, start_cluster=start_cluster)
        except KeyError as exc:
            error_console.print(f"[red]{exc.args[0]}[/red]", highlight=False)
            raise typer.Exit(code=2) from None
        except JobFailed as exc:  # failed, timed out, or (aws) no cluster
            error_console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(code=1) from None
    render.say(f"{label}: {run.line()}")
    print_outputs(target, emr_step_args.output_tables(step, arguments))
    return arguments


def print_outputs(target, tables: list[tuple[str, str]]) -> None:
    """The tables a step registered: location, columns and, where queries cost nothing
    (the local target), row counts."""
    from dataplatform.runtime.errors import QueryError

    glue = target.client("glue")
    table = Table(title="tables written")
    for column in ("table", "location", "columns", "rows"):
        table.add_column(column, overflow="fold", justify="right" if column == "rows" else "left")
    for database, name in tables:
        try:
            sd = glue.get_table(DatabaseName=database, Name=name)["Table"]["StorageDescriptor"]
        except glue.exceptions.EntityNotFoundException:
            table.add_row(f"{database}.{name}", "[red]not registered[/red]", "-", "-")
            continue
        rows = "see `dp query`"
        if target.cheap_queries:
            try:
                result = target.query(f'SELECT count(*) AS n FROM "{database}"."{name}"')
                rows = f"{int(result.frame.iloc[0, 0]):,}"
            except QueryError as exc:
                rows = f"? ({exc})"
        table.add_row(
            f"{database}.{name}",
            sd.get("Location", ""),
            ", ".join(c["Name"] for c in sd.get("Columns", [])),
            rows,
        )
    render.show(table)


def features(target, name: str, as_of: str | None = None) -> dict[str, str]:
    """Build the feature table NAME (the features EMR step) and print what it wrote."""
    return run_step(target, "features", {"name": name, **({"as-of": as_of} if as_of else {})})


def features_command(
    ctx: typer.Context,
    name: str,
    as_of: str = typer.Option("", "--as-of", help="cutoff day YYYY-MM-DD"),
    spec: Path = SpecOption,
    output: str = OutputOption,
) -> None:
    """Build one feature table from spec/features/NAME.sql (= dp emr run features --arg name=NAME)."""
    render.use_output(output)
    args = {"name": name, **({"as-of": as_of} if as_of else {})}
    checked_step_arguments(ctx, spec, "features", args)
    run_step(target_platform(ctx, spec), "features", args)


emr_app = typer.Typer(
    help="EMR Spark steps (emr_steps/): run one, see the cluster and its steps.",
    no_args_is_help=True,
)


@emr_app.command("run")
def emr_run_command(
    ctx: typer.Context,
    step: str = typer.Argument(..., help="features or frequent_itemsets"),
    arg: list[str] = typer.Option(
        [], "--arg", help="KEY=VALUE, repeatable (e.g. --arg name=customer_features)"
    ),
    start: bool = typer.Option(
        True,
        "--start/--no-start",
        help="aws: with no active cluster, start one from the deployed ML pipeline's cluster "
        "definition (it ends itself when idle); --no-start fails instead",
    ),
    spec: Path = SpecOption,
    output: str = OutputOption,
) -> None:
    """Run an EMR step: local Spark (local target) or the environment's cluster (aws)."""
    render.use_output(output)
    checked_step_arguments(ctx, spec, step, arg)
    run_step(target_platform(ctx, spec), step, arg, start_cluster=start)


@emr_app.command("status")
def emr_status_command(
    ctx: typer.Context, spec: Path = SpecOption, output: str = OutputOption
) -> None:
    """aws: the environment's cluster, its instance groups and recent steps; local: recent
    local step runs."""
    from dataplatform.runtime.errors import JobFailed

    render.use_output(output)
    target = target_platform(ctx, spec)
    try:
        status = target.emr_status()
    except JobFailed as exc:  # no cluster
        error_console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=1) from None
    render.say(status.where)
    if status.groups:
        groups = Table(title="instance groups")
        for column in status.groups[0]:
            groups.add_column(column)
        for g in status.groups:
            groups.add_row(*g.values())
        render.show(groups)
    if not status.steps:
        render.say(status.no_steps)
        return
    steps = Table(title="recent steps")
    for column in status.steps[0]:
        steps.add_column(column, overflow="fold")
    for s in status.steps:
        ok = s["state"] in ("SUCCEEDED", "COMPLETED")
        steps.add_row(
            *[f"[{'green' if ok else 'red'}]{v}[/]" if k == "state" else v for k, v in s.items()]
        )
    render.show(steps)


GROUPS = {"emr": emr_app}
COMMANDS = {"features": features_command}
