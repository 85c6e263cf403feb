"""spec/platform.yaml's `delivery:` section: defaults, what enabling it requires, and each
problem named with file, field and fix (the folder is built as in test_spec_errors.py)."""

from __future__ import annotations

import pytest

from dataplatform.spec import Delivery, load_spec
from tests.spec.test_spec_errors import PLATFORM_FILE, SHIPPED, SpecFolder, problem
from tests.spec.test_spec_errors import spec as spec  # noqa: F401 (the fixture)

CONNECTION = (
    "arn:aws:codeconnections:eu-west-1:111111111111:connection/0f6ec6a4-2b1b-4d2c-9a3e-7a1f2f1c5a9e"
)
DEV_ACCOUNT, PROD_ACCOUNT = "222222222222", "333333333333"


def enable(spec: SpecFolder, **delivery) -> None:
    def change(p: dict) -> None:
        p["environments"]["dev"]["account"] = DEV_ACCOUNT
        p["environments"]["prod"]["account"] = PROD_ACCOUNT
        p["delivery"] = {
            "enabled": True,
            "repository": "acme/dataplatform",
            "connection_arn": CONNECTION,
            **delivery,
        }
        p["delivery"] = {k: v for k, v in p["delivery"].items() if v is not None}

    spec.edit_platform(change)


def test_shipped_spec_has_delivery_off_with_the_documented_defaults():
    delivery = load_spec(SHIPPED).delivery
    assert delivery == Delivery(region="eu-west-1")
    assert not delivery.enabled
    assert delivery.branch == "main"
    assert delivery.environments == ("dev", "prod")
    assert delivery.manual_approval == ("prod",)


def test_no_delivery_section_is_delivery_off(spec):
    spec.edit_platform(lambda p: p.pop("delivery"))
    assert spec.load().delivery == Delivery(region="eu-west-1")


def test_delivery_is_not_in_the_compiled_spec():
    """Synth-time settings: the assets (spec.json) are the same with or without a pipeline."""
    assert "delivery" not in load_spec(SHIPPED).to_dict()


def test_enabled_delivery_defaults_the_pipeline_to_the_first_environment(spec):
    enable(spec)
    delivery = spec.load().delivery
    assert delivery.enabled
    assert (delivery.account, delivery.region) == (DEV_ACCOUNT, "eu-west-1")
    assert delivery.needs_approval("prod") and not delivery.needs_approval("dev")


def test_a_tooling_account_and_region_are_taken_as_given(spec):
    enable(spec, account="111111111111", region="eu-central-1", manual_approval=[])
    delivery = spec.load().delivery
    assert (delivery.account, delivery.region) == ("111111111111", "eu-central-1")
    assert delivery.manual_approval == ()


@pytest.mark.parametrize(
    "arn",
    [
        CONNECTION,
        "arn:aws:codestar-connections:us-east-1:111111111111:connection/0f6ec6a4-2b1b-4d2c-9a3e-7a1f2f1c5a9e",
    ],
)
def test_both_connection_arn_forms_are_accepted(spec, arn):
    enable(spec, connection_arn=arn)
    assert spec.load().delivery.connection_arn == arn


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:codecommit:eu-west-1:111111111111:repo",
        "arn:aws:codeconnections:eu-west-1:1111:connection/0f6ec6a4-2b1b-4d2c-9a3e-7a1f2f1c5a9e",
        "arn:aws:codeconnections:eu-west-1:111111111111:connection/not-a-uuid",
        "arn:aws:codeconnections:eu-west-1:111111111111:host/0f6ec6a4-2b1b-4d2c-9a3e-7a1f2f1c5a9e",
    ],
)
def test_a_connection_arn_of_another_shape_is_rejected(spec, arn):
    enable(spec, connection_arn=arn)
    problem(spec.error(), PLATFORM_FILE, "delivery.connection_arn", "codeconnections", "console")


def test_enabled_needs_repository_and_connection(spec):
    enable(spec, repository=None, connection_arn=None)
    err = spec.error()
    problem(err, PLATFORM_FILE, "delivery.repository", "required", "owner/name")
    problem(err, PLATFORM_FILE, "delivery.connection_arn", "required", "Connections")


def test_disabled_needs_neither(spec):
    enable(spec, enabled=False, repository=None, connection_arn=None)
    assert not spec.load().delivery.enabled


def test_repository_must_be_owner_slash_name(spec):
    enable(spec, repository="dataplatform")
    problem(spec.error(), PLATFORM_FILE, "delivery.repository", "owner/name")


def test_every_deployed_environment_needs_an_explicit_account(spec):
    enable(spec)
    spec.edit_platform(lambda p: p["environments"]["prod"].pop("account"))
    problem(spec.error(), PLATFORM_FILE, "environments.prod.account", "required", "cross-account")


def test_an_environment_it_does_not_deploy_needs_no_account(spec):
    enable(spec, environments=["dev"], manual_approval=[])
    spec.edit_platform(lambda p: p["environments"]["prod"].pop("account"))
    assert spec.load().delivery.environments == ("dev",)


def test_unknown_delivery_environment_lists_the_declared_ones(spec):
    enable(spec, environments=["dev", "staging", "prod"])
    problem(spec.error(), PLATFORM_FILE, "delivery.environments[1]", "'staging'", "dev, prod")


def test_an_environment_with_a_bad_setting_is_reported_once_not_as_unknown_to_delivery(spec):
    """The pipeline's environments are checked against those platform.yaml declares, not
    those that parsed: one bad setting is one problem (a CLI prints it on one line)."""

    def bad_retention(p: dict) -> None:
        p["environments"]["dev"]["kinesis"] = {"retention_hours": "a day"}

    spec.edit_platform(bad_retention)
    error = spec.error()
    problem(error, PLATFORM_FILE, "environments.dev.kinesis.retention_hours", "integer")
    assert len(error.problems) == 1, error


def test_approval_of_an_environment_not_deployed_is_rejected(spec):
    enable(spec, environments=["dev"], manual_approval=["prod"])
    problem(spec.error(), PLATFORM_FILE, "delivery.manual_approval[0]", "not deployed", "dev")


def test_duplicate_environment_is_rejected(spec):
    enable(spec, environments=["dev", "dev"])
    problem(spec.error(), PLATFORM_FILE, "delivery.environments", "twice")


def test_unknown_delivery_setting_lists_the_allowed_ones(spec):
    enable(spec, brnach="main")
    problem(spec.error(), PLATFORM_FILE, "delivery.brnach", "unknown setting", "branch")


def test_unquoted_pipeline_account_gets_a_quoting_hint(spec):
    enable(spec, account=111111111111)
    problem(spec.error(), PLATFORM_FILE, "delivery.account", "quote account ids")


def test_enabled_must_be_a_boolean(spec):
    enable(spec, enabled="yes")
    problem(spec.error(), PLATFORM_FILE, "delivery.enabled", "true or false")
