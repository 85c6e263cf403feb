"""`dp table snapshots | optimize | vacuum DATASET`: a curated Iceberg table's history and
maintenance, on either target, as Athena SQL in the platform's workgroup (the `$snapshots`
metadata table, OPTIMIZE ... REWRITE DATA USING BIN_PACK, VACUUM), so the local endpoint
and Athena answer the same statements. Time travel itself is SQL: `dp query "SELECT ...
FROM house_sales FOR VERSION AS OF <snapshot_id>"` (or `FOR TIMESTAMP AS OF TIMESTAMP
'2026-12-05 10:00:00 UTC'`)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from dataplatform.cli import render
from dataplatform.cli.context import SpecOption, console, error_console, target_platform
from dataplatform.cli.data import dataset_of, query
from dataplatform.cli.render import OutputOption

table_app = typer.Typer(
    help="A curated Iceberg table: its snapshots, OPTIMIZE and VACUUM.", no_args_is_help=True
)
# OPTIMIZE's WHERE: comparisons of the partition column with literals, ANDed or ORed
_WHERE = re.compile(r"^[\w\s'=<>!(),.-]+$")


def iceberg_table(target, name: str) -> str:
    """`"<curated database>"."<table>"` of the dataset NAME, which must be an Iceberg one;
    otherwise a one-line reason and exit 2."""
    dataset = dataset_of(target, name)
    if not dataset.is_iceberg:
        error_console.print(
            f"[red]{name}: its curated table is a Hive (Parquet) table, which has no "
            f"snapshots or maintenance; set `table_format: iceberg` in "
            f"{dataset.source_file or 'its spec'} to make it an Iceberg table[/red]",
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    return f'"{target.names.curated_database}"."{target.names.table(name)}"'


@table_app.command("snapshots")
def snapshots_command(
    ctx: typer.Context, dataset: str, output: str = OutputOption, spec: Path = SpecOption
) -> None:
    """The table's snapshots, oldest first: when, which operation, rows added and in total.
    Each snapshot_id works in `FOR VERSION AS OF`."""
    render.use_output(output)
    target = target_platform(ctx, spec)
    table = iceberg_table(target, dataset).rstrip('"') + '$snapshots"'
    query(
        target,
        "SELECT committed_at, snapshot_id, parent_id, operation, "
        "summary['added-records'] AS added_rows, summary['deleted-records'] AS removed_rows, "
        "summary['total-records'] AS rows, summary['total-data-files'] AS files "
        f"FROM {table} ORDER BY committed_at",
        title=f"{dataset}: snapshots",
    )


@table_app.command("optimize")
def optimize_command(
    ctx: typer.Context,
    dataset: str,
    where: str = typer.Option(
        "", "--where", help="only these partitions, e.g. \"dt >= '2026-11-01'\""
    ),
    spec: Path = SpecOption,
) -> None:
    """Bin-pack the table's small files (OPTIMIZE ... REWRITE DATA USING BIN_PACK): the same
    rows in fewer files, one new snapshot."""
    if where and not _WHERE.match(where):
        error_console.print(
            f"[red]--where {where!r}: write a predicate on the partition column, e.g. "
            "\"dt >= '2026-11-01'\"[/red]",
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    target = target_platform(ctx, spec)
    table = iceberg_table(target, dataset)
    clause = f" WHERE {where}" if where else ""
    with console.status(f"OPTIMIZE {dataset} ..."):
        query(target, f"OPTIMIZE {table} REWRITE DATA USING BIN_PACK{clause}", title="OPTIMIZE")


@table_app.command("vacuum")
def vacuum_command(ctx: typer.Context, dataset: str, spec: Path = SpecOption) -> None:
    """Expire the snapshots older than the table's retention (the spec's
    maintenance.snapshot_retention_days, keeping min_snapshots_to_keep) and delete the files
    only they held. Time travel before the oldest kept snapshot ends here."""
    target = target_platform(ctx, spec)
    table = iceberg_table(target, dataset)
    with console.status(f"VACUUM {dataset} ..."):
        query(target, f"VACUUM {table}", title="VACUUM")


GROUPS = {"table": table_app}
COMMANDS: dict = {}
