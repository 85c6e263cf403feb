"""The README's notebook example, run as it is on the session's local platform, and its
answer compared with pandas over the records it ingests."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import dataplatform as dp
from stacks.platform import REPO_ROOT

MARKER = "<!-- notebook-example:"


def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    after = text[text.index(MARKER) :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.fixture
def provisioned(empty_platform, monkeypatch):
    from typer.testing import CliRunner

    from dataplatform.cli import app

    home, _ = empty_platform
    monkeypatch.setenv("DP_HOME", str(home))
    monkeypatch.chdir(REPO_ROOT)
    assert CliRunner().invoke(app, ["local", "up"]).exit_code == 0
    return home


def test_the_readme_notebook_example_runs_and_its_answer_equals_pandas(provisioned):
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (notebook example)", "exec"), namespace)
    expected = (
        pd.DataFrame(namespace["events"]).groupby("event_type").size().rename("n").reset_index()
    )
    got = namespace["frame"][["event_type", "n"]].astype({"n": int})
    assert got.to_dict("records") == expected.to_dict("records")
    assert namespace["run"].report["rows_in"] == len(namespace["events"])


def test_connect_refuses_an_unknown_target_and_lake_an_unknown_model(provisioned):
    with pytest.raises(ValueError, match="target 'mars'"):
        dp.connect(target="mars")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        dp.connect(target="local").train("nope")
    with pytest.raises(KeyError, match="nope"):
        dp.connect(target="local").crawl("nope")
