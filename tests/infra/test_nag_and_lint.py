"""cdk-nag (AwsSolutions) and cfn-lint over every synthesized template, every variant."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from dataplatform.naming import pascal_case
from scripts.scan_templates import cfn_lint_errors
from stacks.platform import REPO_ROOT
from tests.infra.conftest import STACK_KINDS

VARIANTS = [("dev", False), ("prod", False), ("dev", True), ("prod", True)]


@pytest.fixture(
    scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-{'destroy' if v[1] else 'retain'}"
)
def variant(request, synth_variant):
    return synth_variant(*request.param)


def nag_findings(synth, level: str) -> list[str]:
    return [
        f"{kind}: {m.id}: {str(m.entry.data)[:200]}"
        for kind in STACK_KINDS
        for m in synth.messages[kind]
        if m.level.name == level and "AwsSolutions-" in str(m.entry.data)
    ]


def suppressions(template: dict) -> list[tuple[str, dict]]:
    found = []
    for lid, res in template["Resources"].items():
        for rule in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append((lid, rule))
    return found


def test_nag_reports_no_unsuppressed_errors(variant):
    assert nag_findings(variant, "ERROR") == []


def test_nag_reports_no_unsuppressed_warnings(variant):
    assert nag_findings(variant, "WARNING") == []


def test_nag_really_checked_every_stack(variant):
    """The nag reports exist and list compliant findings: the checks ran (an empty
    error list from a run that checked nothing would prove nothing). AwsSolutions has no
    rule for Athena workgroups or named queries, so the analytics report is empty."""
    for kind in STACK_KINDS:
        stack_name = variant.names.stack(kind)
        report = Path(variant.outdir) / f"AwsSolutions--{stack_name}-NagReport.csv"
        rows = list(csv.DictReader(report.open()))
        if kind != "analytics":
            assert any(r["Compliance"] == "Compliant" for r in rows), kind
        assert not [r for r in rows if r["Compliance"] == "Non-Compliant"], kind


def test_every_suppression_names_a_resource_and_a_specific_reason(variant):
    for kind in STACK_KINDS:
        template = variant.templates[kind]
        # No stack-wide blanket suppressions.
        assert "cdk_nag" not in template.get("Metadata", {}), kind
        for lid, rule in suppressions(template):
            assert len(rule["reason"]) >= 60, (kind, lid, rule)
            if rule["id"] == "AwsSolutions-IAM5":
                # Wildcard findings are suppressed finding by finding, never wholesale.
                assert rule.get("applies_to"), (kind, lid, rule)


def test_suppression_count_is_known(dev, prod):
    """Printed in the closing note; a new suppression shows up here first."""
    counts = {
        env.env: sum(len(suppressions(env.templates[k])) for k in STACK_KINDS)
        for env in (dev, prod)
    }
    print(f"cdk-nag suppressions: {counts}")
    # dev's long-running EMR cluster carries three more (EMR4, EMR5, EMR6); prod has none.
    assert dev.platform.environment("dev").emr.long_running
    assert not prod.platform.environment("prod").emr.long_running
    assert counts["dev"] == counts["prod"] + 3 > 3


@pytest.mark.parametrize("kind", STACK_KINDS)
def test_cfn_lint_finds_no_errors(variant, kind):
    template = (
        Path(variant.outdir)
        / f"{variant.stacks.all[STACK_KINDS.index(kind)].artifact_id}.template.json"
    )
    errors = cfn_lint_errors(template)  # as `make scan` runs it
    assert errors == [], errors


@pytest.mark.slow
def test_cdk_cli_synthesizes_prod_with_one_template_per_stack(tmp_path):
    """The real `npx cdk synth` path (cdk.json, the pinned CLI), as `make synth` runs it."""
    env = {**os.environ, "PATH": f"{REPO_ROOT / 'node_modules/.bin'}:{os.environ['PATH']}"}
    env.pop("CDK_DEFAULT_ACCOUNT", None)  # environment-agnostic, as on a machine without AWS
    result = subprocess.run(
        ["npx", "cdk", "synth", "-c", "env=prod", "--quiet", "-o", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    templates = sorted(p.name for p in tmp_path.glob("*.template.json"))
    assert templates == sorted(f"{pascal_case(s)}.template.json" for s in STACK_KINDS)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    stack_names = {
        a["properties"]["stackName"]
        for a in manifest["artifacts"].values()
        if a["type"] == "aws:cloudformation:stack"
    }
    assert stack_names == {f"mldp-prod-{kind}" for kind in STACK_KINDS}
