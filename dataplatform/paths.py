"""Where the source checkout is: the folder above the `dataplatform` package (spec/,
lambdas/, training/, glue_jobs/, emr_steps/, cdk.json). Standard library only and no
imports of the package, so any module (and the tests) can import it without a cycle."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Where `dp` keeps its state on this machine: `.dp/` in the current directory, or
    $DP_HOME (the local platform's data, training downloads, the demo's files)."""
    return Path(os.environ.get("DP_HOME") or ".dp").resolve()
