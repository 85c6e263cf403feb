"""The double opt-in for destroying data, decided from settings and the context flag."""

from __future__ import annotations

import dataclasses

import pytest
from aws_cdk import RemovalPolicy

from dataplatform.spec import load_spec
from stacks.constructs.removal import DataRemoval, context_flag
from stacks.platform import REPO_ROOT

PLATFORM = load_spec(REPO_ROOT / "spec")


@pytest.mark.parametrize(
    "allow, requested, policy, warning",
    [
        (True, True, RemovalPolicy.DESTROY, None),
        (True, False, RemovalPolicy.RETAIN, "pass -c destroy_data=true"),
        (False, True, RemovalPolicy.RETAIN, "destroy_data=true ignored"),
        (False, False, RemovalPolicy.RETAIN, None),
    ],
)
def test_destroy_needs_both_the_setting_and_the_flag(allow, requested, policy, warning):
    settings = dataclasses.replace(PLATFORM.environment("dev"), allow_destroy=allow)
    decision = DataRemoval.decide(settings, requested)
    assert decision.policy == policy
    assert (decision.warning is None) == (warning is None)
    if warning:
        assert warning in decision.warning


def test_shipped_prod_never_allows_destroy():
    assert PLATFORM.environment("prod").allow_destroy is False
    assert PLATFORM.environment("dev").allow_destroy is True


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, False),
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("false", False),
        ("0", False),
        ("", False),
    ],
)
def test_context_flag_reads_cli_strings_and_booleans(value, expected):
    assert context_flag(value) is expected


def test_context_flag_refuses_anything_else_with_the_fix():
    with pytest.raises(ValueError, match="-c destroy_data='maybe': use true or false"):
        context_flag("maybe")
