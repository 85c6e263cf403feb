"""`dp serve`, `dp score` and `dp flagged`: real-time scoring of models that declare a
`serving:` section, on either target (locally the deployer's code and the stream consumer
run on this machine, the endpoint on the local SageMaker; on AWS the deployer and the scorer
Lambda do, and these commands report)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dataplatform.cli import render
from dataplatform.cli.context import SpecOption, console, error_console, target_platform
from dataplatform.cli.ml import model_declaring
from dataplatform.cli.render import OutputOption

FOLLOW_POLL_SECONDS = 1.0  # as often as the event source mapping's batch window


def _served_model(spec: Path, model: str) -> str:
    return model_declaring(spec, model, "serving").name


def serve_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="a model with a serving: section"),
    spec: Path = SpecOption,
) -> None:
    """The model's endpoint for its latest Approved package: locally deployed on the local
    SageMaker as the approval deploys it on AWS; on AWS its state (an approval deploys it)."""
    _served_model(spec, model)
    target = target_platform(ctx, spec)
    with console.status(f"serving {model} ..."):
        served = target.serve(model)
    version = f"version {served.version}" if served.version is not None else "no version"
    line = f"{served.endpoint}: {served.status}, {version}; {served.where}"
    if served.status in ("NotDeployed", "Failed"):
        error_console.print(f"[red]{line}[/red]", soft_wrap=True)
        raise typer.Exit(code=1)
    render.say(line)


def _spec_model(target, model: str):
    from dataplatform.runtime.model_registry import spec_model

    return spec_model(target.platform, model)


def score(target, model: str, *, from_start: bool = False, since=None):
    """What the model's scorer did since `since` (default: the last quarter of an hour),
    printed; exit 1 when it gave up on batches."""
    spec = _spec_model(target, model)
    event = spec.serving.event if spec.serving else "flagged"
    with console.status(f"scoring {model}: waiting for its scorer ...") as status:
        run = target.score(
            model,
            progress=lambda line: status.update(f"scoring {model}: {line}"),
            from_start=from_start,
            since=since,
        )
    left_out = sum(run.left_out.values())
    render.say(
        f"{model}: {run.records:,} records scored, {run.scored:,} scores written, "
        f"{len(run.flagged):,} customers flagged ({event}), {left_out:,} records left "
        f"out by the curate rules ({'since ' + since.isoformat() if since else 'last 15 minutes'})"
    )
    render.say(run.where)
    for error in run.errors:
        error_console.print(f"[yellow]a batch failed and was retried: {error}[/yellow]")
    for failure in run.failed:
        error_console.print(f"[red]{failure}[/red]")
    if run.failed:
        raise typer.Exit(code=1)
    return run


def score_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="a model with a serving: section"),
    from_start: bool = typer.Option(
        False, "--from-start", help="replay the stream from its start (changes no score)"
    ),
    follow: bool = typer.Option(
        False, "--follow", help="keep reporting the customers flagged as they are, until Ctrl-C"
    ),
    spec: Path = SpecOption,
) -> None:
    """What the model's scorer Lambda did (it reads the stream on its own: online features,
    the endpoint, scores and the model's events, e.g. HighChurnRisk); locally it is first
    let catch up."""
    import time
    from datetime import UTC, datetime

    _served_model(spec, model)
    target = target_platform(ctx, spec)
    run = score(target, model, from_start=from_start)
    if not follow:
        return
    served = _spec_model(target, model)
    event = served.serving.event if served.serving else "flagged"
    field = served.score_field
    records, flagged = run.records, len(run.flagged)
    try:
        while True:
            since = datetime.now(UTC)
            time.sleep(FOLLOW_POLL_SECONDS)
            more = target.score(model, since=since)
            records, flagged = records + more.records, flagged + len(more.flagged)
            for f in more.flagged:
                render.say(
                    f"{event}: {f['customer_id']} {field}={f[field]:.3f} "
                    f"(as of {f['as_of']}, action {f['action']})"
                )
    except KeyboardInterrupt:
        render.say(f"{model}: stopped following; {records:,} records, {flagged:,} flagged")


def flagged_table(model, scores: list[dict]) -> Table:
    """The flagged scores of `model` (its spec): its score (a classifier's probability, a
    regression's prediction) beside its threshold."""
    field = model.score_field
    table = Table(title=f"{model.name}: customers flagged ({field} >= threshold), newest first")
    for column in ("customer", "as of", field, "threshold", "action", "model version"):
        table.add_column(column, justify="right" if column in (field, "threshold") else "left")
    digits = 3 if field == "probability" else 2
    for s in scores:
        table.add_row(
            s["customer_id"],
            s["as_of"],
            f"{float(s[field]):.{digits}f}",
            f"{float(s['threshold']):.2f}",
            s["action"],
            str(s.get("model_version") or "-"),
        )
    return table


def flagged_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="a model with a serving: section"),
    limit: int = typer.Option(20, "--limit", min=1, help="how many, newest first"),
    spec: Path = SpecOption,
    output: str = OutputOption,
) -> None:
    """The customers the scorer flagged, from the scores table."""
    render.use_output(output)
    _served_model(spec, model)
    target = target_platform(ctx, spec)
    scores = target.flagged(model, limit=limit)
    if not scores:
        render.say(f"{model}: no customer flagged yet (`dp score {model}` scores the stream)")
        return
    render.show(flagged_table(_spec_model(target, model), scores))


GROUPS: dict = {}
COMMANDS = {"serve": serve_command, "score": score_command, "flagged": flagged_command}
