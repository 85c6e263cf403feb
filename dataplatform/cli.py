"""`dp`: the platform's command line. Global options pick the target (`local`, the embedded
platform, or `aws`, a deployed environment) and the environment. This release: spec checks,
names, and the local platform's lifecycle (`dp local up|down|status`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from dataplatform.cli_context import (
    LOCAL_ACCOUNT,
    TARGETS,
    Context,
    SpecOption,
    console,
    error_console,
)
from dataplatform.cli_context import environment as _environment
from dataplatform.cli_context import job_progress as _job_progress
from dataplatform.cli_context import load as _load
from dataplatform.cli_context import local_platform as _local
from dataplatform.cli_context import target_platform as _target
from dataplatform.naming import Names
from dataplatform.runtime import errors
from dataplatform.runtime.local.server import PlatformNotRunning

# what a connection lost in the middle of a command means, per target
STOPPED_ANSWERING = {
    "aws": "AWS stopped answering: {exc}; check the network and run the command again",
    "local": "the local platform stopped answering ({exc}); start it again with `dp local up` "
    "(its data is kept) and run the command again",
}


def failure_line(exc: BaseException, target: str | None) -> str:
    """One line saying what went wrong, for a failure a command did not handle itself."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return STOPPED_ANSWERING.get(target, STOPPED_ANSWERING["local"]).format(exc=exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name} refused: {error.get('Code')}: {error.get('Message')}"
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc}"
    text = " ".join(str(exc).split())
    if isinstance(
        exc,
        (
            errors.Refused,
            errors.JobFailed,
            errors.QueryError,
            errors.IngestInterrupted,
            PlatformNotRunning,
        ),
    ):
        return text  # the platform's own reasons say what to do
    return f"{text or type(exc).__name__} ({type(exc).__name__}; DP_DEBUG=1 shows where)"


class Commands(TyperGroup):
    """Every command's failures end as one line on stderr and exit 1, never a traceback
    (DP_DEBUG=1 lets the traceback through, for bug reports)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            error_console.print("[red]interrupted[/red]")
            raise typer.Exit(code=130) from None
        except Exception as exc:
            if os.environ.get("DP_DEBUG"):
                raise
            target = getattr(ctx.obj, "target", None)
            error_console.print(f"[red]{failure_line(exc, target)}[/red]", highlight=False)
            raise typer.Exit(code=1) from None


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


local_app = typer.Typer(
    help="The embedded local platform (moto + local Spark and DuckDB).", no_args_is_help=True
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """Start the local platform (or reuse the running one) and provision it from the spec."""
    from dataplatform.bundle import stage_job_code
    from dataplatform.runtime.local import provision, server

    platform = _load(spec)
    settings = _environment(platform, ctx.obj.env)
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
        console.print(
            f"restored the local platform's data: {journal['replayed']:,} requests "
            f"replayed from {journal['path']}",
            soft_wrap=True,
        )
    from dataplatform.runtime.local import locks

    # two `dp local up`s at once: the second provisions after the first, finding it all there
    with (
        console.status(f"Provisioning {names.prefix} from {spec}/ ..."),
        locks.exclusive(server.state_dir() / "provision.lock"),
    ):
        job_code = stage_job_code(platform, server.state_dir() / "build")
        created = provision.provision(
            platform,
            settings,
            names,
            lambda s: server.client(s, info, settings.region),
            job_code_dir=job_code,
        )
    table = Table(
        title=f"local platform {'started' if started_now else 'already running'} at "
        f"{info.endpoint} (pid {info.pid}), {time.perf_counter() - started:.1f} s"
    )
    table.add_column("created")
    table.add_column("names", overflow="fold")
    for kind, items in sorted(created.items()):
        table.add_row(kind, ", ".join(items))
    if not created:
        table.add_row("-", "nothing: everything already existed")
    console.print(table)


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
    console.print(
        f"{'stopped' if was_running else 'the local platform was not running'}; {kept}",
        soft_wrap=True,
    )


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
    console.print(table)


@app.command("check")
def check(spec: Path = SpecOption) -> None:
    """Validate spec/: every problem is listed with its file, field and fix (exit 1)."""
    platform = _load(spec)
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
    console.print(table)
    console.print(
        f"environments: {', '.join(platform.environments)}; "
        f"feature tables: {len(platform.features)}; models: {len(platform.models)}"
    )


@app.command("names")
def names(
    ctx: typer.Context,
    account: str = typer.Option(
        LOCAL_ACCOUNT, "--account", help="Account id to render names with."
    ),
    spec: Path = SpecOption,
) -> None:
    """Show the physical names of an environment (as the stacks and local platform use them)."""
    platform = _load(spec)
    settings = _environment(platform, ctx.obj.env)
    n = Names.for_environment(platform, settings, account=account)
    table = Table(title=f"{n.prefix} in {n.region}")
    table.add_column("what", overflow="fold")
    table.add_column("name", no_wrap=True)
    for zone in (
        "raw",
        "curated",
        "features",
        "models",
        "athena-results",
        "artifacts",
        "access-logs",
    ):
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


# ----------------------------------------------------------------------------- the data path


def _dataset(local, name: str):
    try:
        return local.dataset(name)
    except KeyError as exc:
        error_console.print(f"[red]{exc.args[0]}[/red]", soft_wrap=True)
        raise typer.Exit(code=2) from None


def _ingest(local, dataset, file: Path, from_line: int = 1):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dataplatform.runtime.errors import IngestInterrupted
    from dataplatform.runtime.ingest import check_batch_file, read_stream_records

    if from_line < 1:
        error_console.print(f"[red]--from-line {from_line}: lines are numbered from 1[/red]")
        raise typer.Exit(code=2)
    if from_line > 1 and not dataset.is_stream:
        error_console.print(
            f"[red]--from-line: {dataset.name} is a batch dataset, whose file "
            "is uploaded whole; leave --from-line out[/red]"
        )
        raise typer.Exit(code=2)
    if not file.is_file():
        error_console.print(f"[red]{file}: no such file[/red]", soft_wrap=True)
        raise typer.Exit(code=2)
    try:
        # a stream's records are sent as they are: a bad line is the transform's to judge
        if dataset.is_stream:
            total = sum(1 for r in read_stream_records(file) if r.line >= from_line)
        else:
            good, bad = check_batch_file(file)
            total = good + len(bad)
    except (ValueError, OSError) as exc:
        error_console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(code=2) from None
    with Progress(
        TextColumn(f"ingesting {dataset.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("put", total=total)
        try:
            result = local.ingest(
                dataset, file=file, from_line=from_line, progress=lambda n: bar.advance(task, n)
            )
        except IngestInterrupted as exc:
            error_console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(code=1) from None
    line = (
        f"{dataset.name}: {result.records:,} records, sent {result.sent:,}, "
        f"retried {result.retried:,}, failed {result.failed:,}"
    )
    if result.delivery is not None:
        d = result.delivery
        line += (
            f"; delivered {d.delivered_ok:,} to raw in {d.objects_written} objects, "
            f"{d.processing_failed:,} to the error prefix"
        )
    if result.uploaded_key:
        line += f"; uploaded to s3://{local.names.raw_bucket}/{result.uploaded_key}"
    console.print(line)
    if result.rejected_lines:
        from dataplatform import layout

        shown = result.rejected_lines[:10]
        if dataset.is_stream:
            errors = f"s3://{local.names.raw_bucket}/{layout.errors_prefix(dataset.name)}"
            console.print(
                f"{len(result.rejected_lines):,} line(s) of {file} went to {errors} "
                f"(Firehose's processing-failed records, original bytes in rawData):"
            )
        else:
            console.print(
                f"{len(result.rejected_lines):,} line(s) of {file} are not records; they "
                f"were uploaded with the rest and the curate job quarantines them "
                f"({dataset.name}_quarantine, reason _line:malformed_json):"
            )
        for number, reason in shown:
            console.print(f"  line {number}: {reason}", soft_wrap=True)
        if len(result.rejected_lines) > len(shown):
            console.print(f"  ... and {len(result.rejected_lines) - len(shown):,} more")
    if result.failed:
        error_console.print(f"[red]{result.failed} record(s) could not be put[/red]")
        raise typer.Exit(code=1)
    if result.undelivered:
        error_console.print(
            f"[red]{result.undelivered:,} of the {result.sent:,} records sent to the stream were not "
            "delivered to raw or to the error prefix: the delivery stopped before them. They are "
            f"kept on the stream: `dp ingest {dataset.name} --file {file} --from-line N`, N past "
            "the file's last line, delivers them without sending anything again[/red]",
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    return result


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    dataset: str,
    file: Path = typer.Option(..., "--file", help="JSON lines (.json/.jsonl[.gz]) or CSV"),
    from_line: int = typer.Option(
        1,
        "--from-line",
        help="Stream datasets: send the file from this line on "
        "(CSV: this row); an interrupted ingest says where to resume.",
    ),
    spec: Path = SpecOption,
) -> None:
    """Stream datasets: Kinesis PutRecords, then Firehose delivery; batch: upload to raw."""
    local = _target(ctx, spec)
    _ingest(local, _dataset(local, dataset), file, from_line)


@app.command("crawl")
def crawl_command(ctx: typer.Context, dataset: str, spec: Path = SpecOption) -> None:
    """Run the dataset's raw-zone crawler."""
    from dataplatform.runtime.errors import JobFailed

    local = _target(ctx, spec)
    ds = _dataset(local, dataset)
    with console.status(f"crawling {dataset} ...") as status:
        try:
            result = local.crawl(ds, progress=status.update)
        except JobFailed as exc:
            error_console.print(f"[red]{exc}[/red]", soft_wrap=True)
            raise typer.Exit(code=1) from None
    console.print(f"{dataset}: {result.line()}", highlight=False, soft_wrap=True)


def _curate(local, dataset, dates: list[str] | None = None) -> dict:
    from dataplatform.runtime.errors import JobFailed

    with console.status(f"curate {dataset.name}: starting ...") as status:
        progress = _job_progress(status, f"curate {dataset.name}")
        try:
            run = local.curate(dataset, dates=dates, progress=progress)
        except JobFailed as exc:
            error_console.print(f"[red]{exc}[/red]", soft_wrap=True)
            raise typer.Exit(code=1) from None
    report = run.report
    console.print(
        f"{dataset.name}: run {run.run_id[:16]}... {run.state} in {run.seconds} s: "
        f"in {report.get('rows_in', 0):,}, curated {report.get('rows_curated', 0):,}, "
        f"quarantined {report.get('rows_quarantined', 0):,}, duplicates removed "
        f"{report.get('duplicates_removed', 0):,}"
    )
    return report


@app.command("curate")
def curate_command(
    ctx: typer.Context,
    dataset: str,
    dates: str = typer.Option("", "--dates", help="D1,D2: reprocess these days"),
    spec: Path = SpecOption,
) -> None:
    """Run the curate-<dataset> Glue job (incremental unless --dates)."""
    local = _target(ctx, spec)
    _curate(local, _dataset(local, dataset), [d for d in dates.split(",") if d] or None)


def _step_arguments(ctx: typer.Context, spec: Path, step: str, args) -> dict[str, str]:
    """The step's full arguments, checked before any platform is reached: a one-line reason
    and exit 2 for an unknown step, a malformed or unknown argument, an unknown feature table."""
    from dataplatform.jobs.emr_step_args import StepArgumentError, step_arguments

    platform = _load(spec)
    settings = _environment(platform, ctx.obj.env)
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


def _run_step(ctx: typer.Context, target, step: str, args) -> dict[str, str]:
    """Run an EMR step on the target (local Spark, or the environment's long-running EMR
    cluster), then print what it wrote. Returns the step's full arguments."""
    from dataplatform.jobs import emr_step_args
    from dataplatform.runtime.errors import JobFailed

    arguments = emr_step_args.step_arguments(step, target.names, args)
    label = emr_step_args.step_name(step, arguments)
    with console.status(f"{label}: starting ...") as status:
        progress = _job_progress(status, label)
        try:
            run = target.emr_run(step, args, progress=progress)
        except KeyError as exc:
            error_console.print(f"[red]{exc.args[0]}[/red]", highlight=False)
            raise typer.Exit(code=2) from None
        except JobFailed as exc:  # failed, timed out, or (aws) no cluster
            error_console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(code=1) from None
    console.print(f"{label}: {run.line()}", highlight=False)
    _print_outputs(ctx, target, emr_step_args.output_tables(step, arguments))
    return arguments


def _print_outputs(ctx: typer.Context, target, tables: list[tuple[str, str]]) -> None:
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
                rows = f"{int(result.rows[0][0]):,}"
            except QueryError as exc:
                rows = f"? ({exc})"
        table.add_row(
            f"{database}.{name}",
            sd.get("Location", ""),
            ", ".join(c["Name"] for c in sd.get("Columns", [])),
            rows,
        )
    console.print(table)


def _features(ctx: typer.Context, target, name: str, as_of: str | None = None) -> None:
    _run_step(ctx, target, "features", {"name": name, **({"as-of": as_of} if as_of else {})})


@app.command("features")
def features_command(
    ctx: typer.Context,
    name: str,
    as_of: str = typer.Option("", "--as-of", help="cutoff day YYYY-MM-DD"),
    spec: Path = SpecOption,
) -> None:
    """Build one feature table from spec/features/NAME.sql (= dp emr run features --arg name=NAME)."""
    args = {"name": name, **({"as-of": as_of} if as_of else {})}
    _step_arguments(ctx, spec, "features", args)
    _run_step(ctx, _target(ctx, spec), "features", args)


emr_app = typer.Typer(
    help="EMR Spark steps (emr_steps/): run one, see the cluster and its steps.",
    no_args_is_help=True,
)
app.add_typer(emr_app, name="emr")


@emr_app.command("run")
def emr_run_command(
    ctx: typer.Context,
    step: str = typer.Argument(..., help="features or frequent_itemsets"),
    arg: list[str] = typer.Option(
        [], "--arg", help="KEY=VALUE, repeatable (e.g. --arg name=customer_features)"
    ),
    spec: Path = SpecOption,
) -> None:
    """Run an EMR step: local Spark (local target) or the environment's long-running cluster (aws)."""
    _step_arguments(ctx, spec, step, arg)
    _run_step(ctx, _target(ctx, spec), step, arg)


@emr_app.command("status")
def emr_status_command(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """aws: the long-running cluster, its instance groups and recent steps; local: recent
    local step runs."""
    from dataplatform.runtime.errors import JobFailed

    target = _target(ctx, spec)
    try:
        status = target.emr_status()
    except JobFailed as exc:  # no cluster
        error_console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=1) from None
    console.print(status.where, highlight=False)
    if status.groups:
        groups = Table(title="instance groups")
        for column in status.groups[0]:
            groups.add_column(column)
        for g in status.groups:
            groups.add_row(*g.values())
        console.print(groups)
    if not status.steps:
        console.print(status.no_steps)
        return
    steps = Table(title="recent steps")
    for column in status.steps[0]:
        steps.add_column(column, overflow="fold")
    for s in status.steps:
        ok = s["state"] in ("SUCCEEDED", "COMPLETED")
        steps.add_row(
            *[f"[{'green' if ok else 'red'}]{v}[/]" if k == "state" else v for k, v in s.items()]
        )
    console.print(steps)


def _print_result(result, output: str = "table", title: str | None = None) -> None:
    frame = result.frame
    if output == "csv":
        # machine-readable: never wrapped at the terminal's width, never read as markup
        console.print(
            frame.to_csv(index=False), end="", highlight=False, soft_wrap=True, markup=False
        )
        return
    if output == "json":
        console.print(
            frame.to_json(orient="records", date_format="iso"),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return
    scanned = f"{result.bytes_scanned:,}" if result.bytes_scanned is not None else "?"
    table = Table(
        title=title,
        caption=f"{len(frame)} row(s), {scanned} bytes scanned, "
        f"results in {result.output_location}",
    )
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


@app.command("query")
def query_command(
    ctx: typer.Context,
    sql: str,
    output: str = typer.Option("table", "--output", help="table, csv or json"),
    spec: Path = SpecOption,
) -> None:
    """Run Athena SQL in the platform's workgroup (default database: curated)."""
    from dataplatform.runtime.errors import QueryError

    if output not in ("table", "csv", "json"):
        error_console.print(f"[red]--output {output!r}: use table, csv or json[/red]")
        raise typer.Exit(code=2)
    local = _target(ctx, spec)
    try:
        result = local.query(sql)
    except QueryError as exc:
        error_console.print(f"[red]query failed: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(code=1) from None
    _print_result(result, output)


@app.command("demo")
def demo_command(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """The whole local path on generated sample data: up, ingest, deliver, crawl, curate, query."""
    from dataplatform import demo

    if ctx.obj.target != "local":
        error_console.print("[red]dp demo runs on the local target only[/red]")
        raise typer.Exit(code=2)
    import shutil

    from dataplatform.runtime.errors import QueryError
    from dataplatform.runtime.local import server

    started = time.perf_counter()

    def step(title: str) -> None:
        console.rule(f"[bold]{title}[/bold] [dim](+{time.perf_counter() - started:.0f} s)[/dim]")

    from dataplatform.runtime.errors import Refused
    from dataplatform.runtime.local import locks

    def another_demo() -> Exception:
        return Refused(
            "another `dp demo` is running on this platform (a demo empties the "
            "platform when it starts): wait for it to finish"
        )

    # held until the command ends (ctx closes it): one demo at a time per state folder
    demo_lock = locks.exclusive(server.state_dir() / "demo.lock", busy=another_demo)
    demo_lock.__enter__()
    ctx.call_on_close(lambda: demo_lock.__exit__(None, None, None))
    # The demo's numbers must reconcile, so it starts from an empty platform (a running one
    # is emptied, and keeps its warm Spark driver; a stopped one's kept data is deleted).
    if server.status() is not None:
        server.reset()
        console.print("emptied the running local platform: the demo starts from an empty one")
    elif server.has_state():
        server.down(wipe=True)
        console.print(
            "deleted the stopped local platform's data: the demo starts from an empty one"
        )
    shutil.rmtree(server.state_dir() / "demo", ignore_errors=True)
    step("1/6 start and provision the local platform")
    local_up(ctx, spec)
    local = _local(ctx, spec)
    files = demo.write_sample_files(local.state_dir / "demo")
    step(
        "2/6 ingest: Kinesis + Firehose delivery (telecom_events), upload to raw (house_sales, "
        "baskets)"
    )
    import threading

    spark_start = threading.Thread(target=_start_spark_quietly, args=(local,), daemon=True)
    spark_start.start()  # the JVM starts on the other core while ingestion runs
    ingested = {name: _ingest(local, _dataset(local, name), path) for name, path in files.items()}
    step("3/6 crawl the raw zone")
    for name in files:
        crawl_command(ctx, name, spec)
    spark_start.join()  # one driver: the curate jobs below must not start a second one
    step("4/6 curate: the Glue job's script on local Spark")
    reports = {name: _curate(local, _dataset(local, name)) for name in files}
    step("5/6 feature tables and basket rules (EMR steps on local Spark) and Athena SQL")
    for name, as_of in demo.feature_builds(local.platform):
        _features(ctx, local, name, as_of)
    mining_started = time.perf_counter()
    _run_step(ctx, local, "frequent_itemsets", demo.BASKET_MINING)
    mining_seconds = time.perf_counter() - mining_started
    for query in demo.demo_queries(local.names.curated_database, local.names.features_database):
        try:
            _print_result(local.query(query.sql), title=query.title)
        except QueryError as exc:
            error_console.print(f"[red]{query.title}: {exc}[/red]", soft_wrap=True)
            raise typer.Exit(code=1) from None
    rules = demo.rules_query(local.names.features_database, demo.BASKET_MINING["output-name"])
    _print_result(local.query(rules.sql), title=rules.title)
    console.print(f"frequent itemsets: {mining_seconds:.0f} s (spark-submit included)")
    step("6/6 train, gate and register the models (SageMaker's script, locally)")
    trained = _demo_train(local)
    balanced = True
    for name, result in ingested.items():
        report = reports[name]
        errors = result.delivery.processing_failed if result.delivery else 0
        total = (
            report["rows_curated"]
            + report["rows_quarantined"]
            + report["duplicates_removed"]
            + errors
        )
        ok = total == result.records
        balanced &= ok
        console.print(
            f"{'[green]OK[/green]' if ok else '[red]MISMATCH[/red]'} {name}: ingested "
            f"{result.records:,} = curated {report['rows_curated']:,} + quarantined "
            f"{report['rows_quarantined']:,} + duplicates {report['duplicates_removed']:,}"
            f" + Firehose errors {errors:,}"
        )
    for run in trained:
        verdict = (
            "[green]registered[/green] (PendingManualApproval)"
            if run.package_arn
            else "[red]NOT registered: below its quality gate[/red]"
        )
        console.print(f"{run.model}: {verdict}; plots in {run.model_dir}")
    console.print(
        f"demo finished in {time.perf_counter() - started:.0f} s; the platform is still "
        "running (`dp local down` stops it)"
    )
    if not balanced or not all(run.package_arn for run in trained):
        raise typer.Exit(code=1)


def _start_spark_quietly(local) -> None:
    """Start the Spark driver early; if that fails, the first job says why."""
    from dataplatform.runtime.local.spark_service import SparkServiceError

    try:
        local.start_spark()
    except (SparkServiceError, OSError):
        pass


def _demo_train(local) -> list:
    """Every model of the spec, trained on the demo's feature tables, with its metrics."""
    from dataplatform.cli_ml import print_training
    from dataplatform.runtime.errors import JobFailed
    from dataplatform.runtime.local.training import train_model

    runs = []
    for model in local.platform.models:
        with console.status(f"train {model.name}: starting ...") as status:
            try:
                run = train_model(
                    local, model, progress=_job_progress(status, f"train {model.name}")
                )
            except JobFailed as exc:
                error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
                raise typer.Exit(code=1) from None
        print_training(console, run)
        if model.name == "churn" and run.model_dir:
            from dataplatform import demo

            oracle = demo.churn_oracle_auc(Path(run.model_dir) / "test_predictions.csv")
            console.print(
                f"churn: test AUC {run.metrics['test']['auc']:.4f}; the generator's true "
                f"probabilities reach {oracle:.4f} on the same test customers (the best "
                "possible)"
            )
        runs.append(run)
    return runs


from dataplatform.cli_ml import register as _register_ml  # noqa: E402  (dp train, models, pipeline)

_register_ml(app)


if __name__ == "__main__":  # last: after every command is registered
    main()
