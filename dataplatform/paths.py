"""Where the source checkout is: the folder above the `dataplatform` package (spec/,
lambdas/, training/, glue_jobs/, emr_steps/, cdk.json). Standard library only and no
imports of the package, so any module (and the tests) can import it without a cycle."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
