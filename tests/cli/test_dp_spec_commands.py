"""`dp check`, `dp names` and `dp personas`: real spec in, exit codes and messages out."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from dataplatform.cli import app
from stacks.platform import REPO_ROOT

runner = CliRunner()


def test_check_lists_the_shipped_datasets():
    result = runner.invoke(app, ["check", "--spec", str(REPO_ROOT / "spec")])
    assert result.exit_code == 0, result.output
    assert "telecom_events" in result.output and "house_sales" in result.output


def test_check_exits_1_and_names_file_field_and_fix(tmp_path: Path):
    spec = tmp_path / "spec"
    shutil.copytree(REPO_ROOT / "spec", spec)
    path = spec / "datasets" / "house_sales.yaml"
    path.write_text(
        path.read_text().replace(
            "type: double, required: true, min: 1000", "type: float, required: true, min: 1000"
        )
    )

    result = runner.invoke(app, ["check", "--spec", str(spec)])

    assert result.exit_code == 1
    assert "spec/datasets/house_sales.yaml: columns[2].type: unknown type 'float'" in result.output
    assert "use one of: string" in result.output


def test_names_shows_the_environments_buckets():
    result = runner.invoke(app, ["--env", "prod", "names", "--spec", str(REPO_ROOT / "spec")])
    assert result.exit_code == 0, result.output
    assert "mldp-prod-raw-123456789012-eu-west-1" in result.output


def test_names_for_an_unknown_environment_exits_2_and_lists_known_ones():
    result = runner.invoke(app, ["--env", "staging", "names", "--spec", str(REPO_ROOT / "spec")])
    assert result.exit_code == 2
    assert "unknown environment 'staging'; known: dev, prod" in result.output


def test_unknown_target_is_refused_with_the_choices():
    result = runner.invoke(app, ["--target", "gcp", "check"])
    assert result.exit_code == 2
    assert "use local or aws" in result.output


def test_local_platform_up_status_down(tmp_path, monkeypatch):
    """`dp local up` starts and provisions the platform; twice is harmless; down stops it."""
    monkeypatch.setenv("DP_HOME", str(tmp_path / ".dp"))
    spec = str(REPO_ROOT / "spec")
    try:
        first = runner.invoke(app, ["local", "up", "--spec", spec])
        assert first.exit_code == 0, first.output
        # the synthesized stacks applied, and what is not applied listed with its reason
        assert "AWS::StepFunctions::StateMachine" in first.output
        assert "not applied locally" in first.output and "deferred" in first.output
        made = re.search(r"(\d+) resources made now, (\d+) applied in all", first.output)
        assert made and int(made[1]) == int(made[2]) > 250, first.output
        second = runner.invoke(app, ["local", "up", "--spec", spec])
        assert second.exit_code == 0 and "already running" in second.output
        assert f"0 resources made now, {made[2]} applied in all" in second.output
        status = runner.invoke(app, ["local", "status", "--spec", spec])
        assert status.exit_code == 0, status.output
        assert "mldp-dev-artifacts-123456789012-eu-west-1" in status.output
    finally:
        down = runner.invoke(app, ["local", "down"])
    assert down.exit_code == 0 and "stopped" in down.output
    after = runner.invoke(app, ["local", "status", "--spec", spec])
    assert after.exit_code == 1
    assert "dp local up" in after.output


def test_tables_as_csv_and_json_hold_the_same_rows_and_nothing_else_on_stdout():
    """`--output csv|json` on a table command: stdout is data only (the prose line goes to
    stderr), the same rows as the names the stacks use."""
    import csv
    import io
    import json

    from dataplatform.naming import Names
    from dataplatform.spec import load_spec

    platform = load_spec(REPO_ROOT / "spec")
    names = Names.for_environment(platform, platform.environment("dev"), account="123456789012")
    split = CliRunner()  # click 8.2+: result.stdout and result.stderr apart
    as_csv = split.invoke(app, ["names", "--output", "csv", "--spec", str(REPO_ROOT / "spec")])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["what", "name"]
    assert dict(rows[1:])["bucket raw"] == names.raw_bucket
    assert dict(rows[1:])["workgroup"] == names.workgroup

    as_json = split.invoke(app, ["check", "--output", "json", "--spec", str(REPO_ROOT / "spec")])
    assert as_json.exit_code == 0, as_json.output
    datasets = json.loads(as_json.stdout)
    assert [d["dataset"] for d in datasets] == [d.name for d in platform.datasets]
    assert "environments:" in as_json.stderr and "environments:" not in as_json.stdout


# ----------------------------------------------------------------------------- dp personas


def test_personas_prints_one_row_per_persona_as_json():
    result = runner.invoke(
        app, ["--env", "prod", "personas", "--spec", str(REPO_ROOT / "spec"), "--output", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = {row["persona"]: row for row in json.loads(result.stdout)}
    assert rows == {
        "producer": {
            "persona": "producer",
            "databases": "-",
            "pii": "no",
            "streams": "mldp-prod-telecom_events",
            "training": "no",
            "role": "mldp-prod-persona-producer-eu-west-1",
        },
        "analyst": {
            "persona": "analyst",
            "databases": "mldp_prod_curated",
            "pii": "no",
            "streams": "-",
            "training": "no",
            "role": "mldp-prod-persona-analyst-eu-west-1",
        },
        "data_scientist": {
            "persona": "data_scientist",
            "databases": "mldp_prod_curated, mldp_prod_features",
            "pii": "no",
            "streams": "-",
            "training": "yes",
            "role": "mldp-prod-persona-data-scientist-eu-west-1",
        },
        "admin": {
            "persona": "admin",
            "databases": "mldp_prod_raw, mldp_prod_curated, mldp_prod_features",
            "pii": "yes",
            "streams": "mldp-prod-telecom_events, mldp-prod-churn_scores, mldp-prod-clv_scores",
            "training": "yes",
            "role": "mldp-prod-persona-admin-eu-west-1",
        },
    }


def test_personas_rows_are_the_governance_description():
    """The command prints dataplatform/governance.py's description, the one the stack and
    the local Athena use: the same rows, in CSV too."""
    from dataplatform import governance
    from dataplatform.naming import Names
    from dataplatform.spec import load_spec

    platform = load_spec(REPO_ROOT / "spec")
    names = Names.for_environment(platform, platform.environment("dev"), account="123456789012")
    described = governance.describe(platform, names)
    result = runner.invoke(app, ["personas", "--spec", str(REPO_ROOT / "spec"), "--output", "csv"])
    assert result.exit_code == 0, result.output
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert header == ["persona", "databases", "pii", "streams", "training", "role"]
    assert [(r[0], r[5]) for r in rows] == [(a.name, a.role_name) for a in described.personas]
    assert [r[2] == "yes" for r in rows] == [a.persona.pii for a in described.personas]


def test_personas_as_a_table_and_a_bad_output():
    result = runner.invoke(app, ["personas", "--spec", str(REPO_ROOT / "spec")])
    assert result.exit_code == 0, result.output
    assert "data_scientist" in result.output and "mldp-dev-persona-admin" in result.output
    bad = runner.invoke(app, ["personas", "--spec", str(REPO_ROOT / "spec"), "--output", "xml"])
    assert bad.exit_code == 2 and "use table, csv or json" in bad.output


def test_personas_opt_in_prints_the_administrators_commands():
    result = runner.invoke(
        app,
        ["personas", "--spec", str(REPO_ROOT / "spec"), "--account", "210987654321", "--opt-in"],
    )
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("aws lakeformation")]
    # analyst 1 database, data_scientist 2, admin 3: each the database and its tables
    assert len(commands) == 2 * (1 + 2 + 3)
    assert (
        "--principal DataLakePrincipalIdentifier=arn:aws:iam::210987654321:role/"
        "mldp-dev-persona-analyst-eu-west-1" in commands[0]
    )
    assert '"Name": "mldp_dev_curated"' in commands[0]


def test_a_narrow_answer_prints_what_it_cost_on_one_line(capsys):
    """The query's cost line goes below the table, whole: as the table's caption rich
    wrapped it to a one-column table's width, a dozen characters a line."""
    import pandas as pd

    from dataplatform.cli import render

    location = "s3://mldp-dev-athena-results-123456789012-eu-west-1/results/0f1e2d3c.csv"
    caption = f"1 row(s), 47,707 bytes scanned, results in {location}"
    render.show_frame(pd.DataFrame({"dt": ["2026-12-01"]}), caption=caption)
    lines = capsys.readouterr().out.splitlines()
    assert caption in lines
    assert any("2026-12-01" in line for line in lines)
