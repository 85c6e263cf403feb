"""`dp`: the platform's command line. This release: check the spec and show the physical
names of an environment. Ingestion, jobs and queries arrive with the local-platform issue."""
from __future__ import annotations

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
def names(env: str = typer.Option("dev", "--env", help="Environment from spec/platform.yaml."),
          account: str = typer.Option("123456789012", "--account",
                                      help="Account id to render names with."),
          spec: Path = SpecOption) -> None:
    """Show the physical names of an environment (as the stacks and local platform use them)."""
    platform = _load(spec)
    try:
        settings = platform.environment(env)
    except SpecError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
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
