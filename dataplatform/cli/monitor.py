"""`dp monitor MODEL`: how a served model is doing (dataplatform/model_monitor.py), on either
target. Drift of each served input against the training data (the window's and each day's),
drift of the scores, realized performance per day and model version once outcomes are known,
calibration and the intervention's effect; the breaches of the model's `monitoring:`
thresholds; the figures published to CloudWatch, where the model's alarms watch them (a
breach alarm starts the ML pipeline once). `--plots DIR` writes the drift, realized-AUC and
calibration plots as PNG.

`--output json` prints the whole report as one object; `--output csv` one tidy table (section,
day, model_version, feature, measure, value) a script can pivot."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from dataplatform import model_monitor
from dataplatform.cli import render
from dataplatform.cli.context import SpecOption, console, error_console, target_platform
from dataplatform.cli.ml import model_declaring
from dataplatform.cli.render import OutputOption, fmt


def monitor_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="a model with a monitoring: section"),
    days: int = typer.Option(
        model_monitor.DEFAULT_DAYS, "--days", help="the newest DAYS days with scores"
    ),
    plots: Path | None = typer.Option(None, "--plots", help="write the plots (PNG) in this folder"),
    publish: bool = typer.Option(
        True, "--publish/--no-publish", help="put the figures to CloudWatch (the alarms')"
    ),
    output: str = OutputOption,
    spec: Path = SpecOption,
) -> None:
    """The served model's drift, realized performance and intervention effect; exit 0 also
    on a breach (the alarms act on it), 1 when the report could not be made."""
    render.use_output(output)
    if days < 1:
        error_console.print(f"[red]--days {days}: give 1 or more days[/red]", highlight=False)
        raise typer.Exit(code=2)
    spec_model = model_declaring(spec, model, "monitoring")
    monitor(target_platform(ctx, spec), spec_model, days=days, plots=plots, publish=publish)


def monitor(target, model, *, days: int, plots: Path | None, publish: bool):
    """Read, judge, publish (unless told not to), write the plots and print the report in
    the command's output format; exit 1 when the report cannot be made."""
    try:
        with console.status(
            f"monitoring {model.name}: reading its training data, scores and outcomes ..."
        ):
            inputs = model_monitor.load_inputs(target, model, days=days)
            report = model_monitor.judge(model, inputs)
    except model_monitor.NotMonitored as refused:
        error_console.print(f"[red]{refused}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    published = (
        model_monitor.publish(target.client("cloudwatch"), target.names, report) if publish else []
    )
    written = model_monitor.write_plots(report, plots, model.monitoring.auc) if plots else []
    if render.output() == "json":
        console.print(
            json.dumps(report_record(report, published, written), default=_plain),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    elif render.output() == "csv":
        console.print(tidy_csv(report), end="", highlight=False, soft_wrap=True, markup=False)
    else:
        show_report(report, inputs, model)
    where = target.names.monitoring_namespace
    if published:
        render.say(f"published {len(published)} metrics to CloudWatch {where} (Model={model.name})")
    for path in written:
        render.say(f"plot: {path}")
    return report


# ----------------------------------------------------------------------------- the terminal


def show_report(report: model_monitor.MonitorReport, inputs, model) -> None:
    window = f"{report.window[0]} .. {report.window[1]}" if report.window else "no scores yet"
    render.say(
        f"[bold]{model.name}[/bold]: served scores {len(inputs.scores):,} ({window}), training "
        f"rows {len(inputs.reference):,}, scores with a known outcome {len(inputs.joined):,}"
    )
    drift = Table(title=f"{model.name}: drift of the served inputs against training ({window})")
    for column in ("feature", "PSI", "band", "test", "p-value", "drifted", "days drifted", "note"):
        drift.add_column(column, justify="right" if column in ("PSI", "p-value") else "left")
    daily = report.drift_by_day
    for row in report.drift.to_dict("records"):
        days = sorted(daily.loc[daily.drifted & (daily.feature == row["feature"]), "day"])
        drift.add_row(
            str(row["feature"]),
            fmt(row["psi"], 3),
            str(row["band"]),
            str(row["test"]),
            fmt(row["p_value"], 4),
            "[red]yes[/red]" if row["drifted"] else "no",
            ", ".join(days),
            str(row["note"]),
        )
    render.show(drift)
    if report.score_drift is not None:
        s = report.score_drift
        render.say(
            f"scores: PSI {s['psi']:.3f} ({s['band']}), KS p {s['p_value']:.4f}"
            + (" [red]drifted[/red]" if s["drifted"] else "")
        )
    if len(report.performance):
        performance = Table(title=f"{model.name}: realized performance (scores with outcomes)")
        columns = (
            "day",
            "model_version",
            "n",
            "observed_rate",
            "mean_predicted",
            "auc",
            "precision_at_threshold",
            "recall_at_threshold",
            "ece",
        )
        for column in columns:
            performance.add_column(column, justify="left" if column in columns[:2] else "right")
        for record in report.performance.to_dict("records"):
            performance.add_row(*[fmt(record[c], 3) for c in columns])
        render.show(performance)
    if report.intervention is not None:
        effect = report.intervention
        render.say(f"intervention: {effect['conclusion']}")
    for note in report.notes:
        render.say(f"[dim]{note}[/dim]")
    if report.breaches:
        for breach in report.breaches:
            render.say(f"[red]breach: {breach}[/red]")
    else:
        render.say("[green]no breach of the model's monitoring thresholds[/green]")


# ----------------------------------------------------------------------------- JSON and CSV


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as JSON; NaN as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records")) if len(frame) else []


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def report_record(report: model_monitor.MonitorReport, published: list, written: list) -> dict:
    return {
        "model": report.model,
        "window": list(report.window) if report.window else None,
        "drift": _records(report.drift),
        "drift_by_day": _records(report.drift_by_day),
        "drifted_features": report.drifted_features,
        "score_drift": _clean(report.score_drift),
        "performance": _records(report.performance),
        "overall": _clean(report.overall),
        "calibration": _records(report.calibration),
        "intervention": _clean(report.intervention),
        "breaches": report.breaches,
        "notes": report.notes,
        "metrics": report.metrics(),
        "published": bool(published),
        "plots": [str(p) for p in written],
    }


def tidy_rows(report: model_monitor.MonitorReport) -> list[tuple]:
    """(section, day, model_version, feature, measure, value) for every figure."""
    rows: list[tuple] = []
    for r in report.drift.to_dict("records"):
        for measure in ("psi", "p_value", "drifted"):
            rows.append(("drift", "", "", r["feature"], measure, r[measure]))
    for r in report.drift_by_day.to_dict("records"):
        for measure in ("psi", "drifted"):
            rows.append(("drift_by_day", r["day"], "", r["feature"], measure, r[measure]))
    if report.score_drift is not None:
        for measure in ("psi", "p_value", "drifted"):
            rows.append(("score_drift", "", "", "score", measure, report.score_drift[measure]))
    for r in report.performance.to_dict("records"):
        for measure in ("n", "auc", "precision_at_threshold", "recall_at_threshold", "ece"):
            rows.append(("performance", r["day"], r["model_version"], "", measure, r[measure]))
    for name, value in report.metrics().items():
        rows.append(("metric", "", "", "", name, value))
    for breach in report.breaches:
        rows.append(("breach", "", "", "", "breach", breach))
    return rows


def tidy_csv(report: model_monitor.MonitorReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "day", "model_version", "feature", "measure", "value"])
    writer.writerows([_clean(v) for v in row] for row in tidy_rows(report))
    return buffer.getvalue()


GROUPS: dict = {}
COMMANDS = {"monitor": monitor_command}
