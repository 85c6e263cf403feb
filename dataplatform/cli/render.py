"""How `dp` prints what it found: rich tables on a terminal (given room in a pipe or a CI
log, see context.py), or the same tables as CSV or JSON with `--output`. In CSV or JSON the
prose lines around the tables (what ran, where the log is) go to stderr, so that stdout
holds only data a script can read.

The format is chosen once per command (`use_output`), so every helper that prints a
table follows it without being told."""

from __future__ import annotations

import json
from contextvars import ContextVar

import typer
from rich.table import Table
from rich.text import Text

from dataplatform.cli.context import console, error_console

OUTPUTS = ("table", "csv", "json")
OutputOption = typer.Option("table", "--output", help="table, csv or json")

_output: ContextVar[str] = ContextVar("dp_output", default="table")


def use_output(output: str) -> None:
    """Print this command's tables as `output`; a one-line reason and exit 2 for another."""
    if output not in OUTPUTS:
        error_console.print(f"[red]--output {output!r}: use table, csv or json[/red]")
        raise typer.Exit(code=2)
    _output.set(output)


def output() -> str:
    return _output.get()


def say(text: str, **options) -> None:
    """A line of prose: stdout with tables, stderr when stdout holds CSV or JSON."""
    options.setdefault("highlight", False)
    options.setdefault("soft_wrap", True)
    (console if output() == "table" else error_console).print(text, **options)


def plain(cell: object) -> str:
    """A cell without its colour markup."""
    return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)


def table_records(table: Table) -> tuple[list[str], list[list[str]]]:
    """A rich table's header and rows as plain text."""
    header = [plain(column.header) for column in table.columns]
    cells = [[plain(cell) for cell in column.cells] for column in table.columns]
    return header, [list(row) for row in zip(*cells, strict=True)]


def show(table: Table) -> None:
    """A table in the command's format (CSV: header and rows; JSON: one list of records
    per table, on one line)."""
    if output() == "table":
        console.print(table)
        return
    header, rows = table_records(table)
    if output() == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = json.dumps([dict(zip(header, row, strict=True)) for row in rows]) + "\n"
    console.print(text, end="", highlight=False, soft_wrap=True, markup=False)


def show_frame(frame, *, title: str | None = None, caption: str | None = None) -> None:
    """A query's answer: a table with a caption, or the frame as CSV / JSON records (its
    own types: numbers stay numbers)."""
    if output() == "csv":
        console.print(
            frame.to_csv(index=False), end="", highlight=False, soft_wrap=True, markup=False
        )
        return
    if output() == "json":
        console.print(
            frame.to_json(orient="records", date_format="iso"),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
    if caption:
        # below the table, not as its caption: rich wraps a caption to the table's width,
        # so a one-column answer printed its S3 result path a dozen characters a line
        console.print(caption, style="dim", highlight=False, soft_wrap=True, markup=False)


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
