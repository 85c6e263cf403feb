"""`dp`: the platform's command line. Global options pick the target (`local`, the embedded
platform, or `aws`, a deployed environment) and the environment.

One module per command group, composed here:

  local.py          dp local up | down | status
  spec_commands.py  dp check, dp names, dp personas
  data.py           dp ingest, crawl, curate, query
  tables.py         dp table snapshots | optimize | vacuum (curated Iceberg tables)
  emr.py            dp features, dp emr run | status
  ml.py             dp train, dp models [approve], dp pipeline run
  serving.py        dp serve, dp score, dp flagged (real-time scoring)
  monitor.py        dp monitor (a served model's drift, realized performance, alarms)
  demo.py           dp demo (its flow and reconciliation: dataplatform/demo_flow.py)

They share context.py (consoles, global options, the target's platform) and render.py
(tables, `--output`); failures.py turns an unhandled failure into one line. No command
module imports another's private names, and context/render import no command module."""

from __future__ import annotations

import os

import typer

from dataplatform.cli import (
    data,
    demo,
    emr,
    local,
    ml,
    monitor,
    render,
    serving,
    spec_commands,
    tables,
)
from dataplatform.cli.context import TARGETS, Context, error_console
from dataplatform.cli.failures import Commands

app = typer.Typer(
    help="The ML data platform's command line.",
    no_args_is_help=True,
    add_completion=False,
    cls=Commands,
)


@app.callback()
def options(
    ctx: typer.Context,
    target: str = typer.Option(
        os.environ.get("DP_TARGET", "local"),
        "--target",
        help="local (embedded platform) or aws; default $DP_TARGET or local.",
    ),
    env: str = typer.Option("dev", "--env", help="Environment from spec/platform.yaml."),
) -> None:
    if target not in TARGETS:
        error_console.print(f"[red]--target {target!r}: use local or aws[/red]")
        raise typer.Exit(code=2)
    ctx.obj = Context(target=target, env=env)
    render.use_output("table")  # until the command says otherwise


for group in (local, spec_commands, data, tables, emr, ml, serving, monitor, demo):
    for name, command in group.COMMANDS.items():
        app.command(name)(command)
    for name, sub_app in group.GROUPS.items():
        app.add_typer(sub_app, name=name)


def main() -> None:
    app()
