"""`dp check`, `dp names` and `dp personas`: the spec, validated, the physical names it
gives an environment, and who may use what (no platform needed)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dataplatform import governance
from dataplatform.cli import render
from dataplatform.cli.context import LOCAL_ACCOUNT, SpecOption, environment, load
from dataplatform.cli.render import OutputOption
from dataplatform.naming import BUCKET_ZONES, DATABASE_ZONES, Names


def check(spec: Path = SpecOption, output: str = OutputOption) -> None:
    """Validate spec/: every problem is listed with its file, field and fix (exit 1)."""
    render.use_output(output)
    platform = load(spec)
    table = Table(title=f"{platform.project}: spec is valid")
    table.add_column("dataset", no_wrap=True)
    for column in ("ingestion", "format", "columns", "primary key", "event time", "pii"):
        table.add_column(column, overflow="fold")
    for ds in platform.datasets:
        table.add_row(
            ds.name,
            ds.ingestion,
            ds.format,
            str(len(ds.columns)),
            ", ".join(ds.primary_key),
            ds.event_time or "-",
            ", ".join(ds.pii) or "-",
        )
    render.show(table)
    render.say(
        f"environments: {', '.join(platform.environments)}; "
        f"feature tables: {len(platform.features)}; models: {len(platform.models)}"
    )


def names(
    ctx: typer.Context,
    account: str = typer.Option(
        LOCAL_ACCOUNT, "--account", help="Account id to render names with."
    ),
    spec: Path = SpecOption,
    output: str = OutputOption,
) -> None:
    """Show the physical names of an environment (as the stacks and local platform use them)."""
    render.use_output(output)
    platform = load(spec)
    settings = environment(platform, ctx.obj.env)
    n = Names.for_environment(platform, settings, account=account)
    table = Table(title=f"{n.prefix} in {n.region}")
    table.add_column("what", overflow="fold")
    table.add_column("name", no_wrap=True)
    for zone in BUCKET_ZONES:
        table.add_row(f"bucket {zone}", n.bucket(zone))
    for zone in DATABASE_ZONES:
        table.add_row(f"database {zone}", n.database(zone))
    for ds in platform.datasets:
        if ds.is_stream:
            table.add_row(f"stream {ds.name}", n.stream(ds.name))
            table.add_row(f"delivery stream {ds.name}", n.delivery_stream(ds.name))
        table.add_row(f"crawler {ds.name}", n.crawler(ds.name))
        table.add_row(f"curate job {ds.name}", n.curate_job(ds.name))
    table.add_row("workgroup", n.workgroup)
    table.add_row("key alias", n.lake_key_alias)
    render.show(table)


def personas(
    ctx: typer.Context,
    account: str = typer.Option(
        LOCAL_ACCOUNT, "--account", help="Account id to render names with."
    ),
    spec: Path = SpecOption,
    output: str = OutputOption,
    opt_in: bool = typer.Option(
        False,
        "--opt-in",
        help="Also print the commands a data lake administrator runs once after deploying, "
        "to opt the persona roles in to Lake Formation (hybrid access mode).",
    ),
) -> None:
    """Show the personas of spec/personas.yaml and their grants (Lake Formation on AWS, the
    local Athena with `dp query --as PERSONA`), one row per persona."""
    render.use_output(output)
    platform = load(spec)
    settings = environment(platform, ctx.obj.env)
    n = Names.for_environment(platform, settings, account=account)
    described = governance.describe(platform, n)
    table = Table(title=f"{n.prefix}: personas (spec/personas.yaml)")
    table.add_column("persona", no_wrap=True)
    for column in ("databases", "pii", "streams", "training", "role"):
        table.add_column(column, overflow="fold")
    for access in described.personas:
        table.add_row(
            access.name,
            ", ".join(access.databases) or "-",
            "yes" if access.sees_pii() else "no",
            ", ".join(access.streams) or "-",
            "yes" if access.training else "no",
            access.role_name,
        )
    render.show(table)
    if not described.personas:
        render.say("no personas: add spec/personas.yaml (see README, Who may see what)")
    if opt_in:
        for command in governance.opt_in_commands(described, n):
            render.say(command, markup=False)


GROUPS: dict = {}
COMMANDS = {"check": check, "names": names, "personas": personas}
