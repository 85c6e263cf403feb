"""What every `dp` command group shares: the consoles, the global options' context, the
spec and environment loaded with one-line errors, and the target's platform. Every command
module imports this; it imports none of them (no cycle)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from dataplatform.spec import Platform, SpecError, load_spec

# In a pipe or a CI log rich would fold tables into 80 columns; there they get room instead.
_WIDTH = None if sys.stdout.isatty() else max(int(os.environ.get("COLUMNS") or 0), 160)
console = Console(width=_WIDTH)
error_console = Console(stderr=True, soft_wrap=True)  # one-line reasons, never wrapped

SpecOption = typer.Option(Path("spec"), "--spec", help="The spec folder.")
# moto's account: the local platform's names are rendered with it.
LOCAL_ACCOUNT = "123456789012"
TARGETS = ("local", "aws")


@dataclass
class Context:
    target: str
    env: str


def load(spec: Path) -> Platform:
    try:
        return load_spec(spec)
    except SpecError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


def environment(platform: Platform, env: str):
    try:
        return platform.environment(env)
    except SpecError as exc:
        error_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _platform(ctx: typer.Context, spec: Path, make, refusals: tuple, reason) -> object:
    """make(platform, env), or the one-line `reason(exc)` and exit 1 on one of `refusals`."""
    platform = load(spec)
    environment(platform, ctx.obj.env)
    try:
        return make(platform, ctx.obj.env)
    except refusals as exc:
        error_console.print(f"[red]{reason(exc)}[/red]", soft_wrap=True)
        raise typer.Exit(code=1) from None


def local_platform(ctx: typer.Context, spec: Path):
    """The running local platform, or a one-line reason and exit 1."""
    from dataplatform.runtime.local.platform import LocalPlatform
    from dataplatform.runtime.local.server import PlatformNotRunning

    return _platform(ctx, spec, LocalPlatform, (PlatformNotRunning,), str)


def aws_platform(ctx: typer.Context, spec: Path):
    """The deployed environment, or a one-line reason and exit 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dataplatform.runtime.aws.platform import AwsPlatform

    return _platform(
        ctx,
        spec,
        AwsPlatform,
        (BotoCoreError, ClientError),
        lambda exc: (
            f"--target aws: cannot reach AWS ({exc}); configure credentials (aws configure / "
            "AWS_PROFILE) or use --target local"
        ),
    )


PLATFORMS = {"local": local_platform, "aws": aws_platform}


def target_platform(ctx: typer.Context, spec: Path):
    """The platform the command runs against (--target): local (embedded) or aws (deployed)."""
    return PLATFORMS[ctx.obj.target](ctx, spec)


def require_target(ctx: typer.Context, target: str, why: str) -> None:
    """For the few commands only one target can run (`dp demo`): a one-line reason, exit 2."""
    if ctx.obj.target not in (target,):
        error_console.print(f"[red]{why}: it runs on --target {target} only[/red]")
        raise typer.Exit(code=2)


def job_progress(status, label: str):
    """A progress callback showing a job's latest meaningful output line in the status bar."""

    def progress(line: str) -> None:
        if line and not line.startswith(("\tat ", "WARNING")):  # stack frames, JVM warnings
            status.update(f"{label}: {line[:100]}")

    return progress
