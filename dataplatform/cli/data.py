"""The data path: `dp ingest`, `dp crawl`, `dp curate` and `dp query`, on either target.
The helpers that run one step and print its line (`ingest`, `crawl`, `curate`,
`print_query`) are public: `dp demo` runs the same steps the same way."""

from __future__ import annotations

from pathlib import Path

import typer

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


def dataset_of(target, name: str):
    """The spec's dataset NAME on the target's platform, or a one-line reason and exit 2."""
    try:
        return target.dataset(name)
    except KeyError as exc:
        error_console.print(f"[red]{exc.args[0]}[/red]", soft_wrap=True)
        raise typer.Exit(code=2) from None


def ingest(target, dataset, file: Path, from_line: int = 1):
    """Put the file's records on the dataset's stream (delivered to raw) or upload it to
    raw, with a progress bar; prints the counts and the lines that are not records."""
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
            result = target.ingest(
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
        line += f"; uploaded to s3://{target.names.raw_bucket}/{result.uploaded_key}"
    console.print(line)
    if result.rejected_lines:
        from dataplatform import layout

        shown = result.rejected_lines[:10]
        if dataset.is_stream:
            errors = f"s3://{target.names.raw_bucket}/{layout.errors_prefix(dataset.name)}"
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
    target = target_platform(ctx, spec)
    ingest(target, dataset_of(target, dataset), file, from_line)


def crawl(target, dataset):
    """Run the dataset's raw-zone crawler and print what it found."""
    from dataplatform.runtime.errors import JobFailed

    with console.status(f"crawling {dataset.name} ...") as status:
        try:
            result = target.crawl(dataset, progress=status.update)
        except JobFailed as exc:
            error_console.print(f"[red]{exc}[/red]", soft_wrap=True)
            raise typer.Exit(code=1) from None
    console.print(f"{dataset.name}: {result.line()}", highlight=False, soft_wrap=True)
    return result


def crawl_command(ctx: typer.Context, dataset: str, spec: Path = SpecOption) -> None:
    """Run the dataset's raw-zone crawler."""
    target = target_platform(ctx, spec)
    crawl(target, dataset_of(target, dataset))


def curate(target, dataset, dates: list[str] | None = None):
    """Run the dataset's curate job and print its counts; returns the run (its report in
    `.report`)."""
    from dataplatform.runtime.errors import JobFailed

    with console.status(f"curate {dataset.name}: starting ...") as status:
        progress = job_progress(status, f"curate {dataset.name}")
        try:
            run = target.curate(dataset, dates=dates, progress=progress)
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
    return run


def curate_command(
    ctx: typer.Context,
    dataset: str,
    dates: str = typer.Option("", "--dates", help="D1,D2: reprocess these days"),
    spec: Path = SpecOption,
) -> None:
    """Run the curate-<dataset> Glue job (incremental unless --dates)."""
    import re

    days = [d.strip() for d in dates.split(",") if d.strip()]
    bad = [d for d in days if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d)]
    if bad:
        error_console.print(
            f"[red]--dates: {', '.join(repr(d) for d in bad)} not a date like 2026-11-20[/red]"
        )
        raise typer.Exit(code=2)
    target = target_platform(ctx, spec)
    curate(target, dataset_of(target, dataset), days or None)


def print_query(result, title: str | None = None) -> None:
    """A query's answer in the command's format; the table's caption says what it cost."""
    scanned = f"{result.bytes_scanned:,}" if result.bytes_scanned is not None else "?"
    render.show_frame(
        result.frame,
        title=title,
        caption=f"{len(result.frame)} row(s), {scanned} bytes scanned, "
        f"results in {result.output_location}",
    )


def query(target, sql: str, title: str | None = None, persona: str | None = None):
    """Run SQL and print the answer, or a one-line reason and exit 1."""
    from dataplatform.runtime.errors import QueryError

    try:
        result = target.query(sql, persona=persona)
    except QueryError as exc:
        error_console.print(
            f"[red]{title + ': ' if title else 'query failed: '}{exc}[/red]", soft_wrap=True
        )
        raise typer.Exit(code=1) from None
    print_query(result, title)
    return result


def query_command(
    ctx: typer.Context,
    sql: str,
    output: str = OutputOption,
    persona: str = typer.Option(
        "", "--as", help="a persona of spec/personas.yaml: its Lake Formation grants apply"
    ),
    spec: Path = SpecOption,
) -> None:
    """Run Athena SQL in the platform's workgroup (default database: curated)."""
    render.use_output(output)
    if persona:
        try:
            load(spec).persona(persona)
        except KeyError as exc:
            error_console.print(f"[red]--as: {exc.args[0]}[/red]", highlight=False)
            raise typer.Exit(code=2) from None
    query(target_platform(ctx, spec), sql, persona=persona or None)


GROUPS: dict = {}
COMMANDS = {
    "ingest": ingest_command,
    "crawl": crawl_command,
    "curate": curate_command,
    "query": query_command,
}
