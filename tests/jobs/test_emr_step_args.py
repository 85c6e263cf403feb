"""dataplatform.jobs.emr_step_args: the one place that turns a step name and the user's K=V
arguments into the step's full argument dict and its EMR step definition (pure)."""

from __future__ import annotations

import pytest

from dataplatform import layout
from dataplatform.jobs.emr_step_args import (
    STEPS,
    StepArgumentError,
    accepted,
    emr_step,
    output_tables,
    parse_pairs,
    step_arguments,
)
from dataplatform.naming import Names

NAMES = Names(project="mldp", env="dev", account="123456789012", region="eu-west-1")
ARTIFACTS = "s3://mldp-dev-artifacts-123456789012-eu-west-1"
CURATED = "s3://mldp-dev-curated-123456789012-eu-west-1/"
FEATURES = "s3://mldp-dev-features-123456789012-eu-west-1/"


def test_every_step_of_the_layout_has_its_arguments():
    assert tuple(STEPS) == layout.EMR_STEPS == ("features", "frequent_itemsets")


def test_features_arguments_get_the_environment_defaults():
    assert step_arguments("features", NAMES, ["name=customer_features"]) == {
        "--name": "customer_features",
        "--curated-path": CURATED,
        "--features-path": FEATURES,
        "--features-database": "mldp_dev_features",
        "--curated-database": "mldp_dev_curated",
    }
    with_as_of = step_arguments(
        "features", NAMES, {"name": "customer_features", "as_of": "2026-11-01"}
    )
    assert list(with_as_of)[:2] == ["--name", "--as-of"] and with_as_of["--as-of"] == "2026-11-01"


def test_frequent_itemsets_defaults_and_user_values_in_declared_order():
    arguments = step_arguments(
        "frequent_itemsets", NAMES, ["--min-support=0.1", "output_name=orders", "item-column=sku"]
    )
    assert arguments == {
        "--input-table": "curated.baskets",
        "--basket-column": "basket_id",
        "--item-column": "sku",
        "--min-support": "0.1",
        "--min-confidence": "0.5",
        "--output-name": "orders",
        "--curated-path": CURATED,
        "--features-path": FEATURES,
        "--curated-database": "mldp_dev_curated",
        "--features-database": "mldp_dev_features",
    }
    assert output_tables("frequent_itemsets", arguments) == [
        ("mldp_dev_features", "orders_itemsets"),
        ("mldp_dev_features", "orders_rules"),
    ]


def test_emr_step_definition_is_spark_submit_in_cluster_mode_of_the_deployed_script():
    step = emr_step("frequent_itemsets", NAMES, ["min-support=0.2", "min-confidence=0.6"])
    assert step["Name"] == "mldp-dev frequent_itemsets basket"
    assert step["Name"] == NAMES.emr_step("frequent_itemsets", "basket")
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    args = step["HadoopJarStep"]["Args"]
    assert args[:6] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--py-files",
        f"{ARTIFACTS}/code/lib/dataplatform.zip",
        f"{ARTIFACTS}/code/emr_steps/frequent_itemsets.py",
    ]
    pairs = dict(zip(args[6::2], args[7::2], strict=True))
    assert pairs == step_arguments(
        "frequent_itemsets", NAMES, {"min-support": "0.2", "min-confidence": "0.6"}
    )
    assert (
        emr_step("features", NAMES, ["name=house_features"])["HadoopJarStep"]["Args"][5]
        == f"{ARTIFACTS}/code/emr_steps/features.py"
    )


def test_the_last_of_a_repeated_key_wins():
    assert parse_pairs(["a=1", "a=2", "b=x=y"]) == {"a": "2", "b": "x=y"}


@pytest.mark.parametrize(
    "step, args, message",
    [
        ("features_v2", [], "unknown EMR step 'features_v2'; steps: features, frequent_itemsets"),
        ("features", ["name"], "--arg 'name': write it as KEY=VALUE"),
        ("features", ["=x"], "--arg '=x': write it as KEY=VALUE"),
        (
            "features",
            ["name=a", "min-support=0.1"],
            "step features does not accept min-support; it accepts: name, as-of, curated-path, "
            "features-path, features-database",
        ),
        ("features", [], "step features needs name: --arg name=..."),
        ("features", ["name=a", "as-of=yesterday"], "as-of='yesterday' is not a date"),
        ("frequent_itemsets", ["min-support=0"], "min-support='0' must be in (0, 1]"),
        ("frequent_itemsets", ["min-support=lots"], "min-support='lots' is not a number"),
        ("frequent_itemsets", ["min-confidence=1.5"], "min-confidence='1.5' must be in [0, 1]"),
        ("frequent_itemsets", ["input-table=baskets"], "must be zone.table or database.table"),
        ("frequent_itemsets", ["output-name=Basket-Rules"], "must match [a-z][a-z0-9_]*"),
    ],
)
def test_bad_arguments_are_named_with_what_is_accepted(step, args, message):
    with pytest.raises(StepArgumentError) as error:
        step_arguments(step, NAMES, args)
    assert message in str(error.value)


def test_accepted_lists_the_keys():
    assert accepted("frequent_itemsets")[:6] == [
        "input-table",
        "basket-column",
        "item-column",
        "min-support",
        "min-confidence",
        "output-name",
    ]
