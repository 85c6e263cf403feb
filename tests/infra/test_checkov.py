"""checkov (a second scanner, next to cdk-nag and cfn-lint) over the synthesized templates
of both environments: no failed check, and every skip is written on its resource with a
reason (stacks/constructs/checkov.py), as the nag suppressions are."""

from __future__ import annotations

import json
import subprocess

import pytest

from stacks.platform import REPO_ROOT

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def scan(synth) -> dict:
    assert CHECKOV.exists(), "checkov is installed by `make setup` (.venv-checkov)"
    done = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(synth.outdir),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    return report if isinstance(report, dict) else {"summary": {"failed": 0}, "results": {}}


@pytest.fixture(scope="module", params=["dev", "prod"])
def report(request, synth_variant):
    return scan(synth_variant(request.param))


def test_no_check_fails_and_the_templates_parse(report):
    failed = [
        f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}"
        for f in report["results"].get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 300


def test_every_skip_is_on_one_resource_with_its_reason(report):
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the known inapplicable checks are skipped on their resources"
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment") or "") > 40, check["check_id"]
    # only these checks are skipped, each for the reason given where it is written
    assert {c["check_id"] for c in skipped} <= {
        "CKV_AWS_115",
        "CKV_AWS_116",
        "CKV_AWS_117",
        "CKV_AWS_173",
        "CKV_AWS_18",
    }


def test_the_two_real_findings_are_fixed_not_skipped(report):
    """The pipeline role's EMR write actions are constrained (by the cluster's tag), and the
    Firehose transform has reserved concurrency (and tracing, see test_streaming)."""
    passed = {
        (c["check_id"], c["resource"].split(".")[-1]) for c in report["results"]["passed_checks"]
    }
    assert any(
        check == "CKV_AWS_111" and r.startswith("PipelineRoleDefaultPolicy") for check, r in passed
    )
    assert any(check == "CKV_AWS_115" and "Transform" in r for check, r in passed)
    assert any(check == "CKV_AWS_115" and r.startswith("QualityGate") for check, r in passed)
