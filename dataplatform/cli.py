"""`dp`: the platform's command line. Global options pick the target (`local`, the embedded
platform, or `aws`, a deployed environment) and the environment. This release: spec checks,
names, and the local platform's lifecycle (`dp local up|down|status`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dataplatform.naming import Names
from dataplatform.spec import Platform, SpecError, load_spec

app = typer.Typer(help="The ML data platform's command line.", no_args_is_help=True,
                  add_completion=False)
console = Console()
error_console = Console(stderr=True)

SpecOption = typer.Option(Path("spec"), "--spec", help="The spec folder.")
# moto's account: the local platform's names are rendered with it.
LOCAL_ACCOUNT = "123456789012"
TARGETS = ("local", "aws")


@dataclass
class Context:
    target: str
    env: str


@app.callback()
def options(ctx: typer.Context,
            target: str = typer.Option(os.environ.get("DP_TARGET", "local"), "--target",
                                       help="local (embedded platform) or aws; default $DP_TARGET or local."),
            env: str = typer.Option("dev", "--env", help="Environment from spec/platform.yaml.")) -> None:
    if target not in TARGETS:
        error_console.print(f"[red]--target {target!r}: use local or aws[/red]")
        raise typer.Exit(code=2)
    ctx.obj = Context(target=target, env=env)


local_app = typer.Typer(help="The embedded local platform (moto + local Spark and DuckDB).",
                        no_args_is_help=True)
app.add_typer(local_app, name="local")


def _environment(platform: Platform, env: str):
    try:
        return platform.environment(env)
    except SpecError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)


@local_app.command("up")
def local_up(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """Start the local platform (or reuse the running one) and provision it from the spec."""
    from dataplatform.bundle import stage_job_code
    from dataplatform.runtime.local import provision, server

    platform = _load(spec)
    settings = _environment(platform, ctx.obj.env)
    names = Names.for_environment(platform, settings, account=LOCAL_ACCOUNT)
    started = time.perf_counter()
    with console.status("Starting the moto server on 127.0.0.1 ..."):
        info, started_now = server.up()
    with console.status(f"Provisioning {names.prefix} from {spec}/ ..."):
        job_code = stage_job_code(platform, server.state_dir() / "build")
        created = provision.provision(platform, settings, names,
                                      lambda s: server.client(s, info, settings.region),
                                      job_code_dir=job_code)
    table = Table(title=f"local platform {'started' if started_now else 'already running'} at "
                        f"{info.endpoint} (pid {info.pid}), {time.perf_counter() - started:.1f} s")
    table.add_column("created")
    table.add_column("names", overflow="fold")
    for kind, items in sorted(created.items()):
        table.add_row(kind, ", ".join(items))
    if not created:
        table.add_row("-", "nothing: everything already existed")
    console.print(table)


@local_app.command("down")
def local_down() -> None:
    """Stop the local platform's server (its data goes with it)."""
    from dataplatform.runtime.local import server

    console.print("stopped" if server.down() else "the local platform was not running")


@local_app.command("status")
def local_status(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """Is the local platform running, where, and what does it hold?"""
    from dataplatform.runtime.local import server

    info = server.status()
    if info is None:
        error_console.print("the local platform is not running; start it with `dp local up`")
        raise typer.Exit(code=1)
    platform = _load(spec)
    settings = _environment(platform, ctx.obj.env)
    names = Names.for_environment(platform, settings, account=LOCAL_ACCOUNT)
    s3 = server.client("s3", info, settings.region)
    table = Table(title=f"local platform at {info.endpoint} (pid {info.pid}), up "
                        f"{time.time() - info.started_at:.0f} s")
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
    console.print(table)


def _load(spec: Path) -> Platform:
    try:
        return load_spec(spec)
    except SpecError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


@app.command("check")
def check(spec: Path = SpecOption) -> None:
    """Validate spec/: every problem is listed with its file, field and fix (exit 1)."""
    platform = _load(spec)
    table = Table(title=f"{platform.project}: spec is valid")
    table.add_column("dataset", no_wrap=True)
    for column in ("ingestion", "format", "columns", "primary key", "event time", "pii"):
        table.add_column(column, overflow="fold")
    for ds in platform.datasets:
        table.add_row(ds.name, ds.ingestion, ds.format, str(len(ds.columns)),
                      ", ".join(ds.primary_key), ds.event_time or "-", ", ".join(ds.pii) or "-")
    console.print(table)
    console.print(f"environments: {', '.join(platform.environments)}; "
                  f"feature tables: {len(platform.features)}; models: {len(platform.models)}")


@app.command("names")
def names(ctx: typer.Context,
          account: str = typer.Option(LOCAL_ACCOUNT, "--account",
                                      help="Account id to render names with."),
          spec: Path = SpecOption) -> None:
    """Show the physical names of an environment (as the stacks and local platform use them)."""
    platform = _load(spec)
    settings = _environment(platform, ctx.obj.env)
    n = Names.for_environment(platform, settings, account=account)
    table = Table(title=f"{n.prefix} in {n.region}")
    table.add_column("what", overflow="fold")
    table.add_column("name", no_wrap=True)
    for zone in ("raw", "curated", "features", "models", "athena-results", "artifacts",
                 "access-logs"):
        table.add_row(f"bucket {zone}", n.bucket(zone))
    for zone in ("raw", "curated", "features"):
        table.add_row(f"database {zone}", n.database(zone))
    for ds in platform.datasets:
        if ds.is_stream:
            table.add_row(f"stream {ds.name}", n.stream(ds.name))
            table.add_row(f"delivery stream {ds.name}", n.delivery_stream(ds.name))
        table.add_row(f"crawler {ds.name}", n.crawler(ds.name))
        table.add_row(f"curate job {ds.name}", n.curate_job(ds.name))
    table.add_row("workgroup", n.workgroup)
    table.add_row("key alias", n.lake_key_alias)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
