"""The AWS CLI (v1, from PyPI: the dev extras) as a shell user runs it against the local
platform: with what `eval "$(dp local env)"` exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stacks.platform import REPO_ROOT

AWS_CLI = Path(sys.executable).with_name("aws")


def shell_env(state_dir: Path) -> dict:
    """The environment after `eval "$(dp local env)"` for the platform kept in `state_dir`."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dp")), "local", "env"],
        env={**os.environ, "DP_HOME": str(state_dir)},
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
    return {**os.environ, **exported}


def aws(env: dict, *args: str) -> dict:
    """The AWS CLI with that environment; its JSON answer."""
    done = subprocess.run(
        [str(AWS_CLI), *args, "--output", "json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}
