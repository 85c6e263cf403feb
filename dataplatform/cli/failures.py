"""The last word on a failure no command handled itself: one line on stderr and exit 1,
never a traceback (DP_DEBUG=1 lets the traceback through, for bug reports)."""

from __future__ import annotations

import os

import click
import typer
from typer.core import TyperGroup

from dataplatform.cli.context import error_console
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
        return STOPPED_ANSWERING.get(target or "local", STOPPED_ANSWERING["local"]).format(exc=exc)
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
    """Every command's failures end as one line on stderr and exit 1."""

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
