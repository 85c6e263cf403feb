"""`dp local up`'s deployment: the environment's synthesized CDK app (runtime/local/synth.py)
applied to the local endpoint (engine.py, resources.py), so that the local platform holds
what `cdk deploy` makes in an account, not a second description of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from dataplatform.runtime.local.deploy.engine import (
    Applied,
    Assembly,
    DeployError,
    Deployment,
    Report,
    Unapplied,
)

__all__ = ["Applied", "Assembly", "DeployError", "Report", "Unapplied", "deploy"]


def deploy(
    assembly_dir: Path,
    clients,
    *,
    region: str,
    account: str,
    progress: Callable[[str], None] | None = None,
    only: Iterable[str] | None = None,
) -> Report:
    """Apply the assembly's stacks (with `only`, those stacks and what they depend on)."""
    return Deployment(
        Assembly(assembly_dir), clients, region=region, account=account, progress=progress
    ).apply(only)
