"""`dp emr run|status` and `dp features`: argument errors are one line with what is accepted
and exit 2, before any platform is reached (no local platform runs here); a missing
platform exits 1 and says how to start it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dataplatform.cli import app
from stacks.platform import REPO_ROOT

runner = CliRunner()
SPEC = str(REPO_ROOT / "spec")


@pytest.fixture(autouse=True)
def no_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(tmp_path / "nothing-running"))


def invoke(*args: str, target: str = "local"):
    return runner.invoke(app, ["--target", target, *args, "--spec", SPEC], env={"COLUMNS": "300"})


@pytest.mark.parametrize("target", ["local", "aws"])
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["emr", "run", "feature"],
            "unknown EMR step 'feature'; steps: features, frequent_itemsets",
        ),
        (
            ["emr", "run", "frequent_itemsets", "--arg", "min-support"],
            "--arg 'min-support': write it as KEY=VALUE, e.g. --arg min-support=0.05",
        ),
        (
            ["emr", "run", "frequent_itemsets", "--arg", "support=0.1"],
            "step frequent_itemsets does not accept support; it accepts: input-table, basket-column, "
            "item-column, min-support, min-confidence, output-name, curated-path, features-path, "
            "curated-database, features-database",
        ),
        (["emr", "run", "features"], "step features needs name: --arg name=..."),
        (
            ["emr", "run", "features", "--arg", "name=churn"],
            "unknown feature table 'churn'; known (spec/features/*.sql): customer_features, customer_value_features, house_features",
        ),
        (
            ["features", "churn"],
            "unknown feature table 'churn'; known (spec/features/*.sql): "
            "customer_features, customer_value_features, house_features",
        ),
        (
            ["features", "customer_features", "--as-of", "last week"],
            "step features: as-of='last week' is not a date like 2026-11-20",
        ),
    ],
)
def test_argument_errors_exit_2_with_one_line(args, message, target):
    result = invoke(*args, target=target)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_valid_arguments_without_a_running_platform_say_how_to_start_it():
    result = invoke("emr", "run", "frequent_itemsets", "--arg", "min-support=0.1")
    assert result.exit_code == 1
    assert "dp local up" in result.output
    status = invoke("emr", "status")
    assert status.exit_code == 1 and "dp local up" in status.output


def test_emr_help_lists_run_and_status():
    result = runner.invoke(app, ["emr", "--help"])
    assert result.exit_code == 0
    assert "run" in result.output and "status" in result.output
