"""`dp local up|down|status`: the embedded local platform's lifecycle (moto on 127.0.0.1,
its data kept in a journal across restarts)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from dataplatform.cli import render
from dataplatform.cli.context import LOCAL_ACCOUNT, SpecOption, console, environment, load
from dataplatform.cli.render import OutputOption
from dataplatform.naming import Names

local_app = typer.Typer(
    help="The embedded local platform (moto + local Spark and DuckDB).", no_args_is_help=True
)


@local_app.command("up")
def local_up(ctx: typer.Context, spec: Path = SpecOption, output: str = OutputOption) -> None:
    """Start the local platform (or reuse the running one) and provision it from the spec."""
    render.use_output(output)
    start_and_provision(ctx, spec)


def start_and_provision(ctx: typer.Context, spec: Path) -> None:
    """`dp local up`: start (restoring the journal's data) and provision; prints what was
    created."""
    from dataplatform.runtime.local import locks, provision, server

    platform = load(spec)
    settings = environment(platform, ctx.obj.env)
    names = Names.for_environment(platform, settings, account=LOCAL_ACCOUNT)
    started = time.perf_counter()
    restoring = server.status() is None and server.has_state()
    with console.status(
        "Starting the moto server on 127.0.0.1"
        + (", restoring its data from the journal ..." if restoring else " ...")
    ):
        info, started_now = server.up()
    journal = server.journal_stats(info) if started_now and restoring else None
    if journal:
        render.say(
            f"restored the local platform's data: {journal['replayed']:,} requests "
            f"replayed from {journal['path']}"
        )
    # two `dp local up`s at once: the second provisions after the first, finding it all there
    with (
        console.status(f"Deploying {names.prefix}'s stacks from {spec}/ ...") as status,
        locks.exclusive(server.state_dir() / "provision.lock"),
    ):
        report = provision.provision(
            platform,
            settings,
            names,
            lambda s: server.client(s, info, settings.region),
            progress=lambda line: status.update(f"Deploying {line} ..."),
        )
    show_deployment(
        report,
        f"local platform {'started' if started_now else 'already running'} at "
        f"{info.endpoint} (pid {info.pid}), {time.perf_counter() - started:.1f} s",
    )


def show_deployment(report, title: str) -> None:
    """What the deployment applied (per resource type: how many, how many made now) and
    every resource it did not apply, with the reason."""
    from collections import Counter

    applied = Counter(a.type for a in report.applied)
    created = Counter(a.type for a in report.created)
    table = Table(title=title)
    table.add_column("resource type")
    table.add_column("applied", justify="right")
    table.add_column("made now", justify="right")
    for type_ in sorted(applied):
        table.add_row(type_, str(applied[type_]), str(created.get(type_, 0)))
    table.add_row("total", str(sum(applied.values())), str(sum(created.values())), style="bold")
    render.show(table)
    if report.unapplied:
        skipped = Table(title="not applied locally")
        skipped.add_column("stack")
        skipped.add_column("resource")
        skipped.add_column("type")
        skipped.add_column("why", overflow="fold")
        for u in report.unapplied:
            skipped.add_row(u.stack, u.logical_id, u.type, u.reason)
        render.show(skipped)
    if report.notes:
        partial = Table(title="applied in part locally")
        partial.add_column("resource")
        partial.add_column("what is left out, and why", overflow="fold")
        for note in report.notes:
            resource, _, why = note.partition("): ")
            partial.add_row(resource + ")", why)
        render.show(partial)
    render.say(
        f"{len(report.created)} resources made now, {len(report.applied)} applied in all, "
        f"{len(report.unapplied)} not applied locally (listed with the reason)"
    )


@local_app.command("down")
def local_down(
    wipe: bool = typer.Option(
        False,
        "--wipe",
        help="Also delete its data (objects, tables, streams, models, runs) to start over.",
    ),
) -> None:
    """Stop the local platform's server; its data is kept for the next `dp local up`."""
    from dataplatform.runtime.local import server

    was_running = server.down(wipe=wipe)
    state = server.state_dir()
    kept = (
        "its data was deleted"
        if wipe
        else f"its data is kept in {state}/ for the next `dp local up` (`dp local down --wipe` "
        "deletes it)"
    )
    render.say(f"{'stopped' if was_running else 'the local platform was not running'}; {kept}")


@local_app.command("status")
def local_status(ctx: typer.Context, spec: Path = SpecOption, output: str = OutputOption) -> None:
    """Is the local platform running, where, and what does it hold?"""
    from dataplatform.cli.context import error_console
    from dataplatform.runtime.local import server

    render.use_output(output)
    info = server.status()
    if info is None:
        error_console.print("the local platform is not running; start it with `dp local up`")
        raise typer.Exit(code=1)
    platform = load(spec)
    settings = environment(platform, ctx.obj.env)
    names = Names.for_environment(platform, settings, account=LOCAL_ACCOUNT)
    s3 = server.client("s3", info, settings.region)
    table = Table(
        title=f"local platform at {info.endpoint} (pid {info.pid}), up "
        f"{time.time() - info.started_at:.0f} s"
    )
    table.add_column("bucket")
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    for zone in ("raw", "curated", "features", "models", "athena-results", "artifacts"):
        objects, size = 0, 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=names.bucket(zone)):
            for item in page.get("Contents", []):
                objects += 1
                size += item["Size"]
        table.add_row(names.bucket(zone), f"{objects:,}", f"{size:,}")
    render.show(table)


@local_app.command("env")
def local_env(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """The environment variables that point any AWS client (the AWS CLI, boto3,
    awswrangler, an SDK in another language) at the running local platform:
    `eval "$(dp local env)"`, then `aws s3 ls` or your own code, unchanged."""
    from dataplatform.cli.context import error_console
    from dataplatform.runtime.local import server

    info = server.status()
    if info is None:
        error_console.print("the local platform is not running; start it with `dp local up`")
        raise typer.Exit(code=1)
    region = environment(load(spec), ctx.obj.env).region
    for name, value in (
        ("AWS_ENDPOINT_URL", info.endpoint),
        ("AWS_ACCESS_KEY_ID", server.ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", server.SECRET_KEY),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_REGION", region),
    ):
        print(f"export {name}={value}")


GROUPS = {"local": local_app}
COMMANDS: dict = {}
