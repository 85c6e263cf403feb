"""checkov (a second scanner, next to cdk-nag and cfn-lint) over the synthesized templates
of both environments: no failed check, and every skip is written on its resource with a
reason (stacks/constructs/checkov.py), as the nag suppressions are."""

from __future__ import annotations

import pytest

from scripts.scan_templates import (
    ALLOWED_CHECKOV_SKIPS,
    SKIP_REASON_MIN,
    checkov_problems,
    checkov_report,
)


def scan(synth) -> dict:
    """The scan `make scan` runs (scripts/scan_templates.py), on this variant's assembly."""
    return checkov_report(synth.outdir)


@pytest.fixture(scope="module", params=["dev", "prod"])
def report(request, synth_variant):
    return scan(synth_variant(request.param))


def test_no_check_fails_and_the_templates_parse(report):
    problems = checkov_problems(report)
    assert problems == [], "\n".join(problems)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 300


def test_every_skip_is_on_one_resource_with_its_reason(report):
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the known inapplicable checks are skipped on their resources"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > SKIP_REASON_MIN, check["check_id"]
    # only these checks are skipped, each for the reason given where it is written
    assert {c["check_id"] for c in skipped} <= ALLOWED_CHECKOV_SKIPS


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
