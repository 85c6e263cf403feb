"""Physical names (naming.Names) and the lake's key layout (layout)."""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dataplatform import layout
from dataplatform.naming import BUCKET_ZONES, DATABASE_ZONES, IAM_ROLE_MAX, S3_BUCKET_MAX, Names
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import load_spec

SHIPPED = REPO_ROOT / "spec"
ACCOUNT = "123456789012"
S3_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
GLUE_NAME = re.compile(r"^[a-z0-9_]+$")


@pytest.fixture(scope="module")
def platform():
    return load_spec(SHIPPED)


@pytest.fixture(scope="module")
def names_by_env(platform):
    return {
        name: Names.for_environment(platform, env, account=ACCOUNT)
        for name, env in platform.environments.items()
    }


def role_names(names: Names, dataset: str) -> list[str]:
    return [
        names.firehose_role(dataset),
        names.transform_role(dataset),
        names.crawler_role(dataset),
        names.curate_job_role(dataset),
    ]


def all_names(names: Names, datasets: list[str]) -> set[str]:
    """Every physical name of one environment (tables qualified by their database)."""
    result = {names.bucket(zone) for zone in BUCKET_ZONES}
    result |= {names.database(zone) for zone in DATABASE_ZONES}
    result |= {
        names.lake_key_alias,
        names.security_configuration,
        names.workgroup,
        names.stack("storage"),
    }
    for d in datasets:
        result |= {
            names.stream(d),
            names.delivery_stream(d),
            names.transform_function(d),
            names.crawler(d),
            names.curate_job(d),
            names.delivery_log_group(d),
            names.transform_log_group(d),
            f"{names.raw_database}.{names.table(d)}",
            f"{names.curated_database}.{names.table(d)}",
        }
        result |= set(role_names(names, d))
    return result


# ----------------------------------------------------------------------------- naming: S3


def test_shipped_bucket_names_include_account_and_region_and_fit_s3(platform, names_by_env):
    assert set(names_by_env) == {"dev", "prod"}
    for env_name, names in names_by_env.items():
        region = platform.environment(env_name).region
        for zone in BUCKET_ZONES:
            bucket = names.bucket(zone)
            assert bucket == f"mldp-{env_name}-{zone}-{ACCOUNT}-{region}"
            assert ACCOUNT in bucket and region in bucket
            assert len(bucket) <= S3_BUCKET_MAX == 63
            assert S3_BUCKET_NAME.match(bucket), bucket


def test_bucket_properties_match_their_zones(names_by_env):
    names = names_by_env["dev"]

    assert names.raw_bucket == names.bucket("raw")
    assert names.curated_bucket == names.bucket("curated")
    assert names.features_bucket == names.bucket("features")
    assert names.models_bucket == names.bucket("models")
    assert names.athena_results_bucket == names.bucket("athena-results")
    assert names.artifacts_bucket == names.bucket("artifacts")
    assert names.access_logs_bucket == names.bucket("access-logs")


def test_bucket_name_over_63_characters_raises_with_clear_message():
    # the longest project (12) and environment (8) the spec accepts, in a long region
    names = Names(project="abcdefghijkl", env="staging1", account=ACCOUNT, region="ap-southeast-2")

    with pytest.raises(
        ValueError,
        match=r"is 64 characters; S3 allows 63: shorten the project "
        r"or environment name",
    ):
        names.bucket("athena-results")


def test_bucket_name_of_exactly_63_characters_is_allowed():
    names = Names(project="abcdefghijk", env="staging1", account=ACCOUNT, region="ap-southeast-2")

    assert len(names.bucket("athena-results")) == 63


def test_bucket_length_check_waits_for_deploy_time_with_a_token_account():
    names = Names(
        project="abcdefghijkl",
        env="staging1",
        account="${Token[AWS.AccountId.7]}",
        region="ap-southeast-2",
    )

    assert names.bucket("athena-results").startswith("abcdefghijkl-staging1-athena-results-")


def test_unknown_bucket_zone_raises(names_by_env):
    with pytest.raises(ValueError, match=r"unknown bucket zone 'logs'; known: raw, curated"):
        names_by_env["dev"].bucket("logs")


# ----------------------------------------------------------------------------- naming: Glue


def test_glue_database_names_have_no_hyphens_even_if_project_has_one():
    names = Names(project="ml-dp", env="dev", account=ACCOUNT, region="eu-west-1")

    assert names.glue_prefix == "ml_dp_dev"
    assert names.raw_database == "ml_dp_dev_raw"
    assert names.curated_database == "ml_dp_dev_curated"
    assert names.features_database == "ml_dp_dev_features"
    for zone in DATABASE_ZONES:
        assert "-" not in names.database(zone)
        assert GLUE_NAME.match(names.database(zone))
    # names that allow hyphens keep them
    assert names.prefix == "ml-dp-dev"


def test_unknown_database_zone_raises(names_by_env):
    with pytest.raises(
        ValueError,
        match=r"unknown database zone 'models'; known: raw, "
        r"curated, features",
    ):
        names_by_env["dev"].database("models")


# ----------------------------------------------------------------------------- naming: IAM


def test_shipped_role_names_fit_iam_and_include_region(platform, names_by_env):
    for env_name, names in names_by_env.items():
        region = platform.environment(env_name).region
        for dataset in platform.datasets:
            for role in role_names(names, dataset.name):
                assert len(role) <= IAM_ROLE_MAX == 64, role
                assert role.startswith(f"mldp-{env_name}-")
                assert role.endswith(f"-{region}")
                assert dataset.name in role
                assert fnmatch.fnmatchcase(role, names.role_name_pattern)


def test_role_name_over_64_characters_raises_with_clear_message():
    names = Names(project="mldp", env="dev", account=ACCOUNT, region="eu-west-1")

    with pytest.raises(ValueError, match=r"role name '.*' is \d+ characters; AWS allows 64"):
        names.curate_job_role("a_very_long_dataset_name_that_goes_on_and_on_x")


# ----------------------------------------------------------------------------- naming: derivation


def test_every_name_derives_from_project_and_env_and_dev_prod_never_collide(platform, names_by_env):
    datasets = [d.name for d in platform.datasets]
    dev = all_names(names_by_env["dev"], datasets)
    prod = all_names(names_by_env["prod"], datasets)

    assert dev.isdisjoint(prod), dev & prod
    for env_name, names in (("dev", dev), ("prod", prod)):
        for name in names:
            assert "mldp" in name and env_name in name, name


def test_role_pattern_of_one_environment_matches_none_of_the_other(platform, names_by_env):
    dev, prod = names_by_env["dev"], names_by_env["prod"]
    for dataset in platform.datasets:
        for role in role_names(prod, dataset.name):
            assert not fnmatch.fnmatchcase(role, dev.role_name_pattern)
        for role in role_names(dev, dataset.name):
            assert not fnmatch.fnmatchcase(role, prod.role_name_pattern)


def test_names_for_environment_uses_spec_then_cdk_default_account(platform, monkeypatch):
    env = platform.environment("dev")
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)

    with pytest.raises(ValueError, match=r"environment 'dev' has no account"):
        Names.for_environment(platform, env)

    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "210987654321")
    names = Names.for_environment(platform, env)
    assert (names.project, names.env, names.account, names.region) == (
        "mldp",
        "dev",
        "210987654321",
        "eu-west-1",
    )
    assert Names.for_environment(platform, env, account=ACCOUNT).account == ACCOUNT


# ----------------------------------------------------------------------------- layout

ARRIVAL = datetime(2026, 3, 1, 7, 42, 5, tzinfo=UTC)


def test_firehose_prefix_renders_partition_keys_from_the_lambda():
    key = layout.render_firehose_prefix(
        layout.firehose_prefix("telecom_events"),
        partition_keys={"dt": "2026-03-01", "hour": "07"},
        arrival=ARRIVAL,
    )

    assert key == "telecom_events/dt=2026-03-01/hour=07/"
    assert key == layout.raw_partition_prefix("telecom_events", "2026-03-01", "07")
    assert key.startswith(layout.raw_prefix("telecom_events"))


def test_firehose_error_prefix_renders_error_type_and_arrival_time():
    key = layout.render_firehose_prefix(
        layout.firehose_error_prefix("telecom_events"),
        arrival=ARRIVAL,
        error_output_type="processing-failed",
    )

    assert key == "_errors/telecom_events/processing-failed/dt=2026-03-01/hour=07/"
    assert key.startswith(layout.errors_prefix("telecom_events"))


def test_missing_partition_key_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="'hour'"):
        layout.render_firehose_prefix(
            layout.firehose_prefix("telecom_events"),
            partition_keys={"dt": "2026-03-01"},
            arrival=ARRIVAL,
        )


def test_error_prefix_without_error_output_type_raises_key_error():
    with pytest.raises(KeyError, match="error_output_type"):
        layout.render_firehose_prefix(
            layout.firehose_error_prefix("telecom_events"), arrival=ARRIVAL
        )


@pytest.mark.parametrize(
    "local, expected",
    [
        # 09:42 at UTC+2 is 07:42 UTC
        (
            datetime(2026, 3, 1, 9, 42, tzinfo=timezone(timedelta(hours=2))),
            "dt=2026-03-01/hour=07/",
        ),
        # 01:30 on 2 March at UTC+2 is still 1 March in UTC
        (
            datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            "dt=2026-03-01/hour=23/",
        ),
        # 20:00 on 28 Feb at UTC-5 is already 1 March in UTC
        (
            datetime(2026, 2, 28, 20, 0, tzinfo=timezone(timedelta(hours=-5))),
            "dt=2026-03-01/hour=01/",
        ),
    ],
)
def test_non_utc_arrival_is_converted_to_utc(local, expected):
    key = layout.render_firehose_prefix(
        layout.firehose_error_prefix("telecom_events"),
        arrival=local,
        error_output_type="processing-failed",
    )

    assert key == f"_errors/telecom_events/processing-failed/{expected}"


def test_unsupported_firehose_expression_raises():
    with pytest.raises(ValueError, match="unsupported Firehose prefix expression"):
        layout.render_firehose_prefix("x/!{partitionKeyFromQuery:dt}/", arrival=ARRIVAL)


def test_zone_prefixes_and_artifact_keys():
    assert layout.curated_prefix("house_sales") == "house_sales/"
    assert layout.quarantine_prefix("house_sales") == "_quarantine/house_sales/"
    assert layout.curate_state_key("house_sales") == "_state/curate/house_sales.json"
    assert layout.features_prefix("customer_features") == "customer_features/"
    assert layout.job_script_key("glue_jobs", "curate.py") == "code/glue_jobs/curate.py"
    assert layout.curate_report_prefix("house_sales") == "reports/curate/house_sales/"


def test_lambda_and_delivery_stream_names_are_limited_to_64_characters():
    names = Names(project="mldp", env="dev", account=ACCOUNT, region="eu-west-1")
    long_dataset = "a_dataset_name_long_enough_to_break_the_limits_of_aws"

    with pytest.raises(ValueError, match="Lambda function name .* AWS allows 64"):
        names.transform_function(long_dataset)
    with pytest.raises(ValueError, match="delivery stream name .* AWS allows 64"):
        names.delivery_stream(long_dataset + "_and_more")


def test_naive_arrival_time_is_taken_as_utc():
    rendered = layout.render_firehose_prefix(
        "x/!{timestamp:yyyy-MM-dd}/!{timestamp:HH}/", arrival=datetime(2026, 3, 1, 7, 30)
    )
    assert rendered == "x/2026-03-01/07/"


# ----------------------------------------------------------------------------- naming: serving


def serving_names(names: Names, model: str) -> dict[str, str]:
    return {
        "endpoint": names.endpoint(model),
        "scorer_function": names.scorer_function(model),
        "stream_consumer": names.stream_consumer(model),
        "scorer_role": names.scorer_role(model),
        "scorer_failures_queue": names.scorer_failures_queue(model),
        "scorer_log_group": names.scorer_log_group(model),
        "deployer_function": names.deployer_function(model),
        "deployer_role": names.deployer_role(model),
        "deployer_dlq": names.deployer_dlq(model),
        "deployer_log_group": names.deployer_log_group(model),
        "approval_rule": names.approval_rule(model),
        "endpoint_log_group": names.endpoint_log_group(model),
        "online_features_table": names.online_features_table,
        "scores_table": names.scores_table,
        "event_bus": names.event_bus,
        "interventions_queue": names.interventions_queue,
        "interventions_dlq": names.interventions_dlq,
        "interventions_rule": names.interventions_rule,
        "serving_key_alias": names.serving_key_alias,
        "serving_dashboard": names.serving_dashboard,
    }


def test_serving_names_fit_their_services_and_never_collide(platform, names_by_env):
    served = [m.name for m in platform.models if m.serving]
    assert served
    by_env = {}
    for env_name, names in names_by_env.items():
        found = set()
        for model in served:
            n = serving_names(names, model)
            # SageMaker names are 63 characters; the deployer's versions add -v<version>
            assert len(f"{n['endpoint']}-v99999") <= 63
            for what in ("scorer_function", "deployer_function", "approval_rule"):
                assert len(n[what]) <= 64, n[what]
            for what in ("scorer_failures_queue", "deployer_dlq", "interventions_queue"):
                assert len(n[what]) <= 80, n[what]
            for what in ("scorer_role", "deployer_role"):
                assert len(n[what]) <= IAM_ROLE_MAX
                assert fnmatch.fnmatchcase(n[what], names.role_name_pattern)  # the lake key
            assert all(env_name in v for v in n.values()), n
            found |= set(n.values())
        by_env[env_name] = found
    assert by_env["dev"].isdisjoint(by_env["prod"])
    assert layout.data_capture_prefix("churn") == "data-capture/churn/"
