"""The spec loader's validation: every problem names the file, the field and the fix.

Each error test builds a spec folder in `tmp_path` from the shipped platform.yaml and the
shipped telecom_events dataset, breaks exactly one thing, and checks the reported problem.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataplatform.paths import REPO_ROOT
from dataplatform.spec import (
    DEFAULT_DOMAIN,
    ENV_SECTIONS,
    AuditSettings,
    Dataset,
    GlueSettings,
    SpecError,
    SpecProblem,
    dataset_from_dict,
    load_compiled_dataset,
    load_spec,
)

SHIPPED = REPO_ROOT / "spec"

DATASET_FILE = "spec/datasets/telecom_events.yaml"
PLATFORM_FILE = "spec/platform.yaml"
MODEL_FILE = "spec/models/churn.yaml"
FEATURES_SQL = "SELECT customer_id, calls_7d, churned FROM curated.telecom_events\n"


# ----------------------------------------------------------------------------- helpers


class SpecFolder:
    """A writable copy of the shipped spec (platform.yaml + telecom_events) under tmp_path."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, rel: str, content: Any) -> Path:
        """Write `content` (a dict, dumped as YAML, or raw text) to `spec/<rel>`."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    def read(self, rel: str) -> dict:
        return yaml.safe_load((self.root / rel).read_text(encoding="utf-8"))

    def edit(self, rel: str, change: Callable[[dict], None]) -> None:
        data = self.read(rel)
        change(data)
        self.write(rel, data)

    def edit_dataset(self, change: Callable[[dict], None]) -> None:
        self.edit("datasets/telecom_events.yaml", change)

    def edit_platform(self, change: Callable[[dict], None]) -> None:
        self.edit("platform.yaml", change)

    def load(self):
        return load_spec(self.root)

    def error(self) -> SpecError:
        with pytest.raises(SpecError) as info:
            self.load()
        return info.value


@pytest.fixture
def spec(tmp_path: Path) -> SpecFolder:
    root = tmp_path / "spec"
    (root / "datasets").mkdir(parents=True)
    shutil.copy(SHIPPED / "platform.yaml", root / "platform.yaml")
    shutil.copy(
        SHIPPED / "datasets" / "telecom_events.yaml", root / "datasets" / "telecom_events.yaml"
    )
    return SpecFolder(root)


def column(dataset: dict, name: str) -> tuple[int, dict]:
    """(index, column mapping) of a dataset column, so fields read `columns[<index>]...`."""
    for i, col in enumerate(dataset["columns"]):
        if col["name"] == name:
            return i, col
    raise AssertionError(f"test setup: no column {name!r}")


def shipped_column_index(name: str) -> int:
    return column(yaml.safe_load((SHIPPED / "datasets" / "telecom_events.yaml").read_text()), name)[
        0
    ]


def problem(error: SpecError, file: str, field: str, *hints: str) -> SpecProblem:
    """The problem reported for `file` / `field` whose message contains every hint."""
    candidates = [p for p in error.problems if p.file == file and p.field == field]
    assert candidates, f"no problem for {file}: {field}; got:\n{error}"
    for p in candidates:
        if all(hint in p.message for hint in hints):
            return p
    raise AssertionError(f"{file}: {field}: no message contains {hints!r}; got:\n{error}")


def churn_model(**overrides: Any) -> dict:
    model = {
        "name": "churn",
        "description": "Which customers leave next month",
        "problem": "binary_classification",
        "algorithm": "xgboost",
        "features_table": "customer_features",
        "target": "churned",
        "id_columns": ["customer_id"],
        "split": {"test_fraction": 0.2, "seed": 7, "stratify": True},
        "cross_validation": {"folds": 3},
        "hyperparameters": {"max_depth": 4},
        "quality_gate": {"auc": 0.7},
    }
    model.update(overrides)
    return model


@pytest.fixture
def with_model(spec: SpecFolder) -> Callable[..., None]:
    """Add spec/features/customer_features.sql and spec/models/churn.yaml (with overrides)."""

    def add(sql: str = FEATURES_SQL, **overrides: Any) -> None:
        spec.write("features/customer_features.sql", sql)
        spec.write("models/churn.yaml", churn_model(**overrides))

    return add


# ----------------------------------------------------------------------------- positive


def test_shipped_spec_loads():
    platform = load_spec(SHIPPED)

    assert platform.project == "mldp"
    assert set(platform.environments) == {"dev", "prod"}
    assert {d.name for d in platform.datasets} == {
        "baskets",
        "churn_outcomes",
        "churn_scores",
        "clv_scores",
        "house_sales",
        "telecom_events",
    }
    assert [d.name for d in platform.stream_datasets] == [
        "churn_scores",
        "clv_scores",
        "telecom_events",
    ]
    assert platform.dataset("telecom_events").source_file == DATASET_FILE
    assert platform.dataset("house_sales").event_time == "sale_date"


def test_copied_spec_folder_loads_unchanged(spec):
    platform = spec.load()

    assert [d.name for d in platform.datasets] == ["telecom_events"]


def test_valid_model_and_features_sql_load_with_sql_output_columns(spec, with_model):
    with_model()

    platform = spec.load()

    (table,) = platform.features
    assert table.name == "customer_features"
    assert table.columns == ("customer_id", "calls_7d", "churned")
    assert table.source_file == "spec/features/customer_features.sql"
    (model,) = platform.models
    assert model.features_table == "customer_features"
    assert model.target == "churned"
    assert model.id_columns == ("customer_id",)
    assert model.split.stratify is True and model.split.seed == 7
    assert model.cv_folds == 3
    assert dict(model.quality_gate) == {"auc": 0.7}
    assert model.source_file == MODEL_FILE


def test_select_star_features_table_has_no_columns_and_no_target_error(spec, with_model):
    with_model(sql="SELECT * FROM curated.telecom_events\n", target="anything_goes")

    platform = spec.load()

    assert platform.features[0].columns is None
    assert platform.models[0].target == "anything_goes"


def test_environment_defaults_are_deep_merged_with_overrides(spec):
    # dev overrides one glue key and keeps the other glue defaults
    spec.edit_platform(lambda p: p["environments"]["dev"].update(glue={"number_of_workers": 4}))

    platform = spec.load()

    assert platform.environment("dev").glue == GlueSettings(
        worker_type="G.1X",
        number_of_workers=4,
        timeout_minutes=60,
        crawler_schedule="cron(15 * * * ? *)",
    )


def test_shipped_environments_merge_defaults_key_by_key():
    platform = load_spec(SHIPPED)
    dev, prod = platform.environment("dev"), platform.environment("prod")

    # dev overrides only glue.crawler_schedule (to null); the other glue keys are defaults
    assert dev.glue == GlueSettings(
        worker_type="G.1X", number_of_workers=2, timeout_minutes=60, crawler_schedule=None
    )
    # prod overrides three glue keys and inherits the crawler schedule
    assert prod.glue == GlueSettings(
        worker_type="G.2X",
        number_of_workers=10,
        timeout_minutes=180,
        crawler_schedule="cron(15 * * * ? *)",
    )
    # prod's lifecycle omits athena_results_expiration_days: it comes from defaults
    assert prod.lifecycle.athena_results_expiration_days == 30
    assert prod.lifecycle.raw_archive_storage_class == "GLACIER"
    # untouched sections are the defaults
    assert dev.firehose.buffer_mib == 64 and prod.firehose.buffer_mib == 128
    assert dev.log_retention_days == 14 and prod.log_retention_days == 365
    assert dev.region == prod.region == "eu-west-1"


def test_to_json_round_trips_datasets(tmp_path):
    platform = load_spec(SHIPPED)
    compiled = json.loads(platform.to_json())

    rebuilt = tuple(dataset_from_dict(d) for d in compiled["datasets"])

    assert rebuilt == platform.datasets
    assert all(isinstance(d, Dataset) for d in rebuilt)

    path = tmp_path / "spec.json"
    path.write_text(platform.to_json(), encoding="utf-8")
    for dataset in platform.datasets:
        assert load_compiled_dataset(path, dataset.name) == dataset
    with pytest.raises(KeyError, match="unknown dataset 'nope'.*house_sales"):
        load_compiled_dataset(path, "nope")


# ----------------------------------------------------------------------------- column errors


def test_unknown_type_names_file_field_and_valid_types(spec):
    spec.edit_dataset(lambda d: column(d, "msisdn")[1].update(type="varchar"))

    err = spec.error()

    i = shipped_column_index("msisdn")
    assert i == 2
    problem(
        err,
        DATASET_FILE,
        "columns[2].type",
        "'varchar'",
        "string, int, bigint, double, boolean, date, timestamp",
    )


def test_unknown_rule_on_column_names_the_rule_and_known_rules(spec):
    spec.edit_dataset(lambda d: column(d, "duration_s")[1].update(maximum=3))

    err = spec.error()

    i = shipped_column_index("duration_s")
    problem(
        err,
        DATASET_FILE,
        f"columns[{i}].maximum",
        "'maximum'",
        "required, allowed, min, max, impute, drop",
    )


def test_invalid_column_name_names_field_and_naming_rule(spec):
    spec.edit_dataset(lambda d: column(d, "cell_id")[1].update(name="Cell-ID"))

    err = spec.error()

    i = shipped_column_index("cell_id")
    problem(
        err, DATASET_FILE, f"columns[{i}].name", "'Cell-ID'", "lower case letters, digits and _"
    )


@pytest.mark.parametrize("reserved", ["dt", "hour"])
def test_reserved_partition_column_name_is_rejected(spec, reserved):
    spec.edit_dataset(lambda d: d["columns"].append({"name": reserved, "type": "string"}))

    err = spec.error()

    i = len(spec.read("datasets/telecom_events.yaml")["columns"]) - 1
    problem(err, DATASET_FILE, f"columns[{i}].name", f"{reserved!r}", "reserved", "rename")


@pytest.mark.parametrize("strategy", ["median", "mean"])
def test_impute_statistic_on_string_column_needs_numeric_column(spec, strategy):
    spec.edit_dataset(lambda d: column(d, "cell_id")[1].update(impute=strategy))

    err = spec.error()

    i = shipped_column_index("cell_id")
    problem(
        err,
        DATASET_FILE,
        f"columns[{i}].impute",
        f"impute: {strategy}",
        "numeric column (int, bigint, double)",
        "'cell_id' is string",
        "literal value of type string",
    )


@pytest.mark.parametrize(
    "name, value, type_",
    [
        ("payment_days_late", "unknown", "int"),
        ("payment_days_late", 1.5, "int"),
        ("duration_s", "n/a", "double"),
        ("call_dropped", "no", "boolean"),
        ("cell_id", 42, "string"),
    ],
)
def test_impute_literal_of_wrong_type_names_expected_type(spec, name, value, type_):
    spec.edit_dataset(lambda d: column(d, name)[1].update(impute=value))

    err = spec.error()

    i = shipped_column_index(name)
    problem(
        err,
        DATASET_FILE,
        f"columns[{i}].impute",
        f"median, mean, zero or a literal {type_}",
        repr(value),
    )


def test_min_on_string_column_applies_to_numeric_columns_only(spec):
    spec.edit_dataset(lambda d: column(d, "cell_id")[1].update(min=1))

    err = spec.error()

    i = shipped_column_index("cell_id")
    problem(
        err,
        DATASET_FILE,
        f"columns[{i}].min",
        "numeric columns (int, bigint, double)",
        "not string",
    )


def test_min_greater_than_max_says_swap(spec):
    spec.edit_dataset(lambda d: column(d, "duration_s")[1].update(min=100, max=10))

    err = spec.error()

    i = shipped_column_index("duration_s")
    problem(err, DATASET_FILE, f"columns[{i}].min", "min 100 is greater than max 10", "swap")


def test_allowed_value_of_wrong_type_lists_bad_values(spec):
    spec.edit_dataset(lambda d: column(d, "event_type")[1].update(allowed=["call", 7, "payment"]))

    err = spec.error()

    i = shipped_column_index("event_type")
    problem(err, DATASET_FILE, f"columns[{i}].allowed", "[7]", "type string")


def test_required_and_impute_together_are_rejected(spec):
    spec.edit_dataset(lambda d: column(d, "customer_id")[1].update(impute="unknown"))

    err = spec.error()

    i = shipped_column_index("customer_id")
    problem(
        err,
        DATASET_FILE,
        f"columns[{i}].impute",
        "required column is never imputed",
        "remove `impute` or `required: true`",
    )


# ----------------------------------------------------------------------------- dataset errors


def test_duplicate_dataset_name_across_two_files_names_both(spec):
    spec.write("datasets/zz_copy.yaml", spec.read("datasets/telecom_events.yaml"))

    err = spec.error()

    problem(
        err,
        "spec/datasets/zz_copy.yaml",
        "name",
        "duplicate dataset name 'telecom_events'",
        DATASET_FILE,
        "rename one",
    )
    assert not [p for p in err.problems if p.file == DATASET_FILE]


def test_invalid_dataset_name_names_field_and_naming_rule(spec):
    spec.edit_dataset(lambda d: d.update(name="Bad-Name"))

    err = spec.error()

    problem(err, DATASET_FILE, "name", "'Bad-Name'", "lower case letters, digits and _")


def test_event_time_naming_missing_column_lists_columns(spec):
    spec.edit_dataset(lambda d: d.update(event_time="occurred_at"))

    err = spec.error()

    problem(
        err,
        DATASET_FILE,
        "event_time",
        "'occurred_at'",
        "does not exist",
        "event_id, customer_id, msisdn",
    )


def test_event_time_naming_non_timestamp_column_must_be_timestamp(spec):
    spec.edit_dataset(lambda d: d.update(event_time="customer_id"))

    err = spec.error()

    problem(err, DATASET_FILE, "event_time", "'customer_id' is string", "must be timestamp")


def test_primary_key_naming_missing_column_names_its_index(spec):
    spec.edit_dataset(lambda d: d.update(primary_key=["event_id", "txn_id"]))

    err = spec.error()

    problem(err, DATASET_FILE, "primary_key[1]", "'txn_id'", "does not exist", "event_id")
    assert not [p for p in err.problems if p.field == "primary_key[0]"]


def test_pii_naming_missing_column_names_its_index(spec):
    spec.edit_dataset(lambda d: d.update(pii=["msisdn", "imei"]))

    err = spec.error()

    problem(err, DATASET_FILE, "pii[1]", "'imei'", "does not exist", "msisdn")


def test_stream_dataset_without_event_time_needs_one(spec):
    spec.edit_dataset(lambda d: d.pop("event_time"))

    err = spec.error()

    problem(err, DATASET_FILE, "event_time", "stream datasets need an event_time column")


def test_stream_dataset_with_csv_format_must_be_json(spec):
    spec.edit_dataset(lambda d: d.update(format="csv"))

    err = spec.error()

    problem(err, DATASET_FILE, "format", "stream datasets arrive as JSON", "format: json")


@pytest.mark.parametrize(
    "field, value, expected_field",
    [
        ("event_time", ["event_time"], "event_time"),
        ("event_time", {"column": "event_time"}, "event_time"),
        ("primary_key", [["event_id"]], "primary_key[0]"),
        ("pii", [["msisdn"]], "pii[0]"),
    ],
)
def test_column_reference_that_is_not_a_name_is_a_spec_error(spec, field, value, expected_field):
    # A list/mapping where a column name belongs must be reported like any other problem,
    # not crash the loader with a TypeError.
    spec.edit_dataset(lambda d: d.update({field: value}))

    err = spec.error()

    problem(err, DATASET_FILE, expected_field)


# ----------------------------------------------------------------------------- model errors


def test_model_with_unknown_features_table_lists_known_tables(spec, with_model):
    with_model(features_table="customer_featurez")

    err = spec.error()

    problem(
        err,
        MODEL_FILE,
        "features_table",
        "'customer_featurez'",
        "customer_features",
        "spec/features/customer_featurez.sql",
    )


def test_model_target_not_an_output_column_of_features_sql(spec, with_model):
    with_model(target="is_churned")

    err = spec.error()

    problem(
        err,
        MODEL_FILE,
        "target",
        "'is_churned'",
        "spec/features/customer_features.sql",
        "customer_id, calls_7d, churned",
    )


def test_model_id_column_not_an_output_column_of_features_sql(spec, with_model):
    with_model(id_columns=["customer_id", "msisdn"])

    err = spec.error()

    problem(err, MODEL_FILE, "id_columns[1]", "'msisdn'", "customer_id, calls_7d, churned")


def test_algorithm_that_does_not_fit_problem_lists_fitting_ones(spec, with_model):
    with_model(algorithm="linear")

    err = spec.error()

    problem(
        err,
        MODEL_FILE,
        "algorithm",
        "linear does not solve binary_classification",
        "logistic, random_forest, xgboost",
    )


def test_quality_gate_metric_that_does_not_fit_problem_lists_fitting_ones(spec, with_model):
    with_model(quality_gate={"rmse": 0.5})

    err = spec.error()

    problem(
        err,
        MODEL_FILE,
        "quality_gate.rmse",
        "rmse does not measure binary_classification",
        "auc, accuracy, f1, precision, recall",
    )


def test_features_sql_with_comment_after_final_semicolon_loads(spec, with_model):
    # A trailing comment after the last `;` is ordinary SQL; the table's columns are still
    # those of the final SELECT.
    with_model(
        sql="SELECT customer_id, calls_7d, churned FROM curated.telecom_events;\n"
        "-- refreshed daily\n"
    )

    platform = spec.load()

    assert platform.features[0].columns == ("customer_id", "calls_7d", "churned")


# ----------------------------------------------------------------------------- environment errors


def test_unknown_environment_setting_typo_lists_allowed_settings(spec):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(log_retention_dayz=7))

    err = spec.error()

    problem(
        err,
        PLATFORM_FILE,
        "environments.dev.log_retention_dayz",
        "unknown setting 'log_retention_dayz'",
        "log_retention_days",
    )


def test_invalid_log_retention_lists_cloudwatch_values(spec):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(log_retention_days=10))

    err = spec.error()

    problem(
        err,
        PLATFORM_FILE,
        "environments.dev.log_retention_days",
        "10 is not",
        "1, 3, 5, 7, 14, 30, 60, 90",
    )


def test_firehose_buffer_below_64_mib_is_rejected(spec):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(firehose={"buffer_mib": 32}))

    err = spec.error()

    problem(err, PLATFORM_FILE, "environments.dev.firehose.buffer_mib", "64 to 128 MiB")
    # buffer_seconds still comes from defaults: the only firehose problem is buffer_mib
    assert [p.field for p in err.problems] == ["environments.dev.firehose.buffer_mib"]


@pytest.mark.parametrize("account", ["12345", "1234567890123", "12345678901a"])
def test_account_that_is_not_12_digits_is_rejected(spec, account):
    spec.edit_platform(lambda p: p["environments"]["prod"].update(account=account))

    err = spec.error()

    problem(err, PLATFORM_FILE, "environments.prod.account", repr(account), "12-digit", "quote it")


def test_unknown_environment_requested_lists_known_ones(spec):
    platform = spec.load()

    with pytest.raises(SpecError) as info:
        platform.environment("staging")

    problem(
        info.value, PLATFORM_FILE, "environments", "'staging'", "known: dev, prod", "-c env=NAME"
    )


# ----------------------------------------------------------------------------- file-level


def test_malformed_yaml_reports_file_and_line(spec):
    spec.write(
        "datasets/telecom_events.yaml",
        "name: telecom_events\ningestion: stream\nformat: json: lines\ncolumns: []\n",
    )

    err = spec.error()

    problem(err, DATASET_FILE, "line 3", "not valid YAML", "fix the syntax")


def test_several_problems_are_all_reported_together(spec):
    spec.edit_dataset(lambda d: column(d, "msisdn")[1].update(type="varchar"))
    spec.edit_dataset(lambda d: d.update(pii=["msisdn", "imei"]))
    spec.edit_platform(lambda p: p["environments"]["prod"].update(log_retention_days=10))
    house = yaml.safe_load((SHIPPED / "datasets" / "house_sales.yaml").read_text())
    column(house, "price")[1].update(min=10, max=1)
    spec.write("datasets/house_sales.yaml", house)

    err = spec.error()

    expected = [
        (PLATFORM_FILE, "environments.prod.log_retention_days"),
        ("spec/datasets/house_sales.yaml", f"columns[{column(house, 'price')[0]}].min"),
        (DATASET_FILE, "columns[2].type"),
        (DATASET_FILE, "pii[1]"),
    ]
    assert sorted((p.file, p.field) for p in err.problems) == sorted(expected)
    text = str(err)
    assert text.startswith("4 problem(s) in the spec:")
    for file, field in expected:
        assert f"{file}: {field}: " in text


# ----------------------------------------------------------------------------- rules that contradict each other


def test_impute_value_outside_allowed_would_fail_its_own_rule(spec):
    spec.edit_dataset(lambda d: column(d, "plan")[1].update(impute="unknown"))

    err = spec.error()

    i = shipped_column_index("plan")
    problem(err, DATASET_FILE, f"columns[{i}].impute", "'unknown' is not in `allowed`")


def test_impute_value_below_min_would_fail_its_own_rule(spec):
    spec.edit_dataset(lambda d: column(d, "duration_s")[1].update(impute=-5))

    err = spec.error()

    i = shipped_column_index("duration_s")
    problem(err, DATASET_FILE, f"columns[{i}].impute", "-5 is outside")


def test_features_sql_output_without_alias_asks_for_one(spec, with_model):
    with_model(
        sql="SELECT customer_id, count(*), churned FROM curated.telecom_events GROUP BY 1, 3"
    )

    err = spec.error()

    problem(err, "spec/features/customer_features.sql", "(sql)", "has no name", "AS some_name")


def test_unquoted_numeric_account_gets_a_quoting_hint(spec):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(account=123456789012))

    err = spec.error()

    problem(err, PLATFORM_FILE, "environments.dev.account", "quote account ids")


def test_environment_whose_bucket_names_exceed_63_characters_is_rejected_at_load(spec):
    def long_names(p):
        p["project"] = "abcdefghijkl"
        p["environments"]["stagingx"] = {"region": "ap-southeast-2"}

    spec.edit_platform(long_names)

    err = spec.error()

    problem(err, PLATFORM_FILE, "environments.stagingx", "S3 allows 63")


# ----------------------------------------------------------------------------- network and EMR


@pytest.mark.parametrize(
    "change, field_, hints",
    [
        ({"cidr": "10.40.0.0/33"}, "cidr", ("not a CIDR block",)),
        ({"cidr": "8.8.0.0/16"}, "cidr", ("private IPv4 block",)),
        ({"cidr": "10.0.0.0/8"}, "cidr", ("/16", "/20")),
        ({"max_azs": 1}, "max_azs", ("2 or 3",)),
        ({"nat_gateways": 0}, "nat_gateways", ("at least one",)),
        ({"nat_gateways": 3}, "nat_gateways", ("max_azs=2",)),
        ({"flow_logs_traffic": "SOME"}, "flow_logs_traffic", ("ALL, ACCEPT, REJECT",)),
    ],
)
def test_bad_network_setting_names_field_and_fix(spec, change, field_, hints):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(network=change))

    err = spec.error()

    problem(err, PLATFORM_FILE, f"environments.dev.network.{field_}", *hints)


@pytest.mark.parametrize(
    "change, field_, hints",
    [
        ({"release_label": "emr-6.15.0"}, "release_label", ("EMR 7.x", "Spark 3.5")),
        ({"applications": ["Spark", "Presto"]}, "applications", ("unknown Presto",)),
        ({"applications": ["Hadoop"]}, "applications", ("add Spark",)),
        ({"applications": "Spark"}, "applications", ("must be a list",)),
        ({"core_instance_type": "big"}, "core_instance_type", ("m5.xlarge",)),
        ({"core_instance_count": 0}, "core_instance_count", ("at least 1 core node",)),
        ({"core_ebs_gib": 8}, "core_ebs_gib", ("16 to 16384",)),
        ({"min_capacity": 0}, "min_capacity", ("core nodes",)),
        ({"max_capacity": 1}, "max_capacity", ("initial", "core", "task")),
        ({"max_on_demand_capacity": 50}, "max_on_demand_capacity", ("between min_capacity",)),
        ({"idle_timeout_minutes": 0}, "idle_timeout_minutes", ("7 days",)),
        ({"long_running": "yes"}, "long_running", ("true or false",)),
    ],
)
def test_bad_emr_setting_names_field_and_fix(spec, change, field_, hints):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(emr=change))

    err = spec.error()

    problem(err, PLATFORM_FILE, f"environments.dev.emr.{field_}", *hints)


def test_emr_settings_merge_with_defaults_per_key():
    platform = load_spec(SHIPPED)
    dev, prod = platform.environment("dev").emr, platform.environment("prod").emr
    assert dev.release_label == prod.release_label  # from defaults
    assert (dev.core_instance_count, dev.long_running, dev.in_transit_encryption) == (
        1,
        True,
        False,
    )
    assert (prod.core_instance_count, prod.long_running, prod.in_transit_encryption) == (
        3,
        False,
        True,
    )
    assert dev.applications == ("Spark", "Hadoop")


# ----------------------------------------------------------------------------- models, SageMaker


def test_shipped_models_train_on_shipped_feature_tables():
    platform = load_spec(SHIPPED)
    models = {m.name: m for m in platform.models}
    assert set(models) == {"churn", "clv", "house_prices"}
    features = {f.name: f for f in platform.features}
    for model in models.values():
        columns = features[model.features_table].columns
        assert model.target in columns
        assert set(model.id_columns + model.exclude_columns) <= set(columns)
    assert (models["churn"].problem, models["clv"].problem, models["house_prices"].problem) == (
        "binary_classification",
        "regression",
        "regression",
    )


def test_model_exclude_column_not_an_output_column_of_features_sql(spec, with_model):
    with_model(exclude_columns=["as_of"])

    err = spec.error()

    problem(err, MODEL_FILE, "exclude_columns[0]", "'as_of'", "customer_id, calls_7d, churned")


@pytest.mark.parametrize(
    "change, field_, hints",
    [
        ({"instance_type": "m5.large"}, "instance_type", ("ml.m5.large",)),
        ({"max_runtime_minutes": 0}, "max_runtime_minutes", ("28 days",)),
        (
            {"use_spot_instances": True, "max_runtime_minutes": 60, "max_wait_minutes": 30},
            "max_wait_minutes",
            (">= max_runtime_minutes (60)",),
        ),
        ({"sklearn_framework_version": "latest"}, "sklearn_framework_version", ("1.2-1",)),
    ],
)
def test_bad_sagemaker_setting_names_field_and_fix(spec, change, field_, hints):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(sagemaker=change))

    err = spec.error()

    problem(err, PLATFORM_FILE, f"environments.dev.sagemaker.{field_}", *hints)


def test_pipeline_schedule_must_be_a_cron_expression(spec):
    spec.edit_platform(lambda p: p["environments"]["prod"].update(pipeline={"schedule": "daily"}))

    err = spec.error()

    problem(err, PLATFORM_FILE, "environments.prod.pipeline.schedule", "cron(0 3 * * ? *)")


# ----------------------------------------------------------------------------- audit


def test_shipped_audit_settings_merge_defaults_key_by_key():
    platform = load_spec(SHIPPED)
    dev, prod = platform.environment("dev").audit, platform.environment("prod").audit
    # dev shortens both retentions and keeps the default lock mode and data events
    assert dev == AuditSettings(
        log_retention_days=30,
        object_lock_mode="GOVERNANCE",
        cloudwatch_logs_retention_days=14,
        data_events="all",
    )
    # prod keeps seven years under COMPLIANCE and inherits data_events
    assert prod == AuditSettings(
        log_retention_days=2557,
        object_lock_mode="COMPLIANCE",
        cloudwatch_logs_retention_days=365,
        data_events="all",
    )


def test_audit_section_is_a_section_of_every_environment():
    cls, fields = ENV_SECTIONS["audit"]
    assert cls is AuditSettings
    assert fields == {
        "log_retention_days": int,
        "object_lock_mode": str,
        "cloudwatch_logs_retention_days": int,
        "data_events": str,
    }


@pytest.mark.parametrize(
    "change, field_, hints",
    [
        ({"log_retention_days": 0}, "log_retention_days", ("1 to 36500",)),
        ({"log_retention_days": 40000}, "log_retention_days", ("1 to 36500",)),
        ({"log_retention_days": "90"}, "log_retention_days", ("must be an integer",)),
        ({"object_lock_mode": "WORM"}, "object_lock_mode", ("GOVERNANCE, COMPLIANCE",)),
        (
            {"cloudwatch_logs_retention_days": 10},
            "cloudwatch_logs_retention_days",
            ("10 is not", "1, 3, 5, 7, 14, 30"),
        ),
        ({"data_events": "reads"}, "data_events", ("all, write_only",)),
    ],
)
def test_bad_audit_setting_names_field_and_fix(spec, change, field_, hints):
    spec.edit_platform(lambda p: p["environments"]["dev"].update(audit=change))

    err = spec.error()

    problem(err, PLATFORM_FILE, f"environments.dev.audit.{field_}", *hints)


def test_audit_setting_typo_lists_the_audit_settings(spec):
    spec.edit_platform(lambda p: p["defaults"]["audit"].update(data_event="all"))

    err = spec.error()

    problem(
        err,
        PLATFORM_FILE,
        "environments.dev.audit.data_event",
        "unknown setting 'data_event'",
        "data_events",
    )


def test_missing_audit_section_asks_for_it(spec):
    def drop(p: dict) -> None:
        del p["defaults"]["audit"]
        for env in p["environments"].values():
            env.pop("audit", None)

    spec.edit_platform(drop)

    problem(spec.error(), PLATFORM_FILE, "environments.dev.audit", "missing or not a mapping")


def test_reserved_hyperparameter_names_the_field_and_where_to_set_it(spec, with_model):
    with_model(hyperparameters={"seed": 1, "max_depth": 3})

    err = spec.error()

    problem(err, MODEL_FILE, "hyperparameters.seed", "reserved", "model's own field")


# ----------------------------------------------------------------------------- serving

SERVED = {"stream": "telecom_events", "threshold": 0.8}


def test_shipped_churn_and_clv_models_are_served_from_the_same_stream():
    models = {m.name: m for m in load_spec(SHIPPED).models}
    churn, clv = models["churn"], models["clv"]
    assert churn.serving is not None and clv.serving is not None
    assert (churn.serving.stream, churn.serving.mode) == ("telecom_events", "serverless")
    assert 0 < churn.serving.threshold < 1
    assert (churn.serving.action, churn.serving.event) == ("offer", "HighChurnRisk")
    assert clv.problem == "regression" and clv.score_field == "prediction"
    assert clv.serving.stream == churn.serving.stream
    assert clv.serving.threshold > 1  # a value in EUR, not a probability
    assert (clv.serving.action, clv.serving.event) == ("loyalty_offer", "HighValueCustomer")
    assert all(m.serving is None for m in models.values() if m.name not in ("churn", "clv"))


def test_a_models_inputs_are_its_tables_columns_but_target_ids_and_excluded():
    clv = next(m for m in load_spec(SHIPPED).models if m.name == "clv")
    table = next(f for f in load_spec(SHIPPED).features if f.name == clv.features_table)
    assert table.columns is not None
    assert clv.feature_columns == tuple(
        c for c in table.columns if c not in ("customer_id", "as_of", "value_next_14d")
    )


@pytest.mark.parametrize(
    ("serving", "field", "hint"),
    [
        ({"stream": "telecom_events", "threshold": 1.5}, "serving.threshold", "between 0 and 1"),
        ({"stream": "telecom_events", "threshold": "high"}, "serving.threshold", "'high'"),
        ({"stream": "house_sales", "threshold": 0.8}, "serving.stream", "not a stream dataset"),
        ({"threshold": 0.8}, "serving.stream", "name the stream dataset"),
        ({"stream": "telecom_events", "threshold": 0.8, "mode": "gpu"}, "serving.mode", "gpu"),
        (
            {"stream": "telecom_events", "threshold": 0.8, "memory_mb": 1000},
            "serving.memory_mb",
            "1024, 2048",
        ),
        (
            {"stream": "telecom_events", "threshold": 0.8, "action": "discount"},
            "serving.action",
            "offer",
        ),
        (
            {"stream": "telecom_events", "threshold": 0.8, "instances": 0},
            "serving.instances",
            ">= 1",
        ),
        (
            {"stream": "telecom_events", "threshold": 0.8, "replicas": 2},
            "serving.replicas",
            "allowed",
        ),
        ("yes", "serving", "must be a mapping"),
    ],
)
def test_a_bad_serving_section_names_the_field_and_the_fix(spec, with_model, serving, field, hint):
    with_model(serving=serving)
    problem(spec.error(), "spec/models/churn.yaml", field, hint)


REGRESSION = dict(
    problem="regression",
    algorithm="linear",
    quality_gate={"r2": 0.5},
    split={"test_fraction": 0.2, "seed": 7},
    target="churned",
)


def test_a_regression_model_is_served_with_a_threshold_in_its_targets_unit(spec, with_model):
    with_model(
        **REGRESSION,
        serving={"stream": "telecom_events", "threshold": 150, "action": "loyalty_offer"},
    )
    [model] = spec.load().models
    assert model.serving is not None and model.score_field == "prediction"
    assert (model.serving.threshold, model.serving.event) == (150.0, "HighValueCustomer")


@pytest.mark.parametrize("threshold", ["high", None, float("inf"), True])
def test_a_regression_models_threshold_must_be_a_number(spec, with_model, threshold):
    with_model(**REGRESSION, serving={"stream": "telecom_events", "threshold": threshold})
    problem(spec.error(), MODEL_FILE, "serving.threshold", "a number in the target's unit")


def test_a_classifiers_threshold_stays_a_probability(spec, with_model):
    with_model(serving={"stream": "telecom_events", "threshold": 150, "action": "loyalty_offer"})
    problem(spec.error(), MODEL_FILE, "serving.threshold", "probability between 0 and 1")


def test_the_event_defaults_to_the_actions_and_may_be_named(spec, with_model):
    with_model(serving={"stream": "telecom_events", "threshold": 0.8, "action": "offer"})
    assert spec.load().models[0].serving.event == "HighChurnRisk"
    with_model(serving={"stream": "telecom_events", "threshold": 0.8, "event": "ChurnRisk2"})
    assert spec.load().models[0].serving.event == "ChurnRisk2"


@pytest.mark.parametrize("event", ["high-churn", "x", "lowerCase", 7])
def test_a_bad_event_name_names_the_field_and_the_fix(spec, with_model, event):
    with_model(serving={"stream": "telecom_events", "threshold": 0.8, "event": event})
    problem(spec.error(), MODEL_FILE, "serving.event", "PascalCase", "HighChurnRisk")


def test_a_served_models_inputs_must_be_computed_online(spec, with_model):
    """A feature column the scorer cannot compute from the stream's events (online/
    features.py) would be missing from every request to the endpoint."""
    with_model(
        sql="SELECT customer_id, calls_7d, minutes_roaming_30d, churned FROM curated.telecom_events\n",
        serving={"stream": "telecom_events", "threshold": 0.8},
    )
    p = problem(
        spec.error(),
        MODEL_FILE,
        "features_table",
        "'minutes_roaming_30d' of spec/features/customer_features.sql",
        "not computed online from telecom_events",
        "dataplatform/online/features.py",
        "exclude_columns",
    )
    assert "calls_7d" in p.message  # what is computed, listed
    # excluded, it is not an input: the model is served
    with_model(
        sql="SELECT customer_id, calls_7d, minutes_roaming_30d, churned FROM curated.telecom_events\n",
        exclude_columns=["minutes_roaming_30d"],
        serving={"stream": "telecom_events", "threshold": 0.8},
    )
    assert spec.load().models[0].feature_columns == ("calls_7d",)


def test_a_served_models_inputs_must_be_named(spec, with_model):
    with_model(sql="SELECT * FROM curated.telecom_events\n", serving=SERVED)
    problem(spec.error(), MODEL_FILE, "features_table", "selects `*`", "name its output columns")


def test_a_stream_without_online_features_cannot_be_served_from(spec, with_model):
    other = spec.read("datasets/telecom_events.yaml")
    other["name"] = "roaming_events"
    spec.write("datasets/roaming_events.yaml", other)
    with_model(serving={"stream": "roaming_events", "threshold": 0.8})
    problem(
        spec.error(),
        MODEL_FILE,
        "serving.stream",
        "no online features are computed from roaming_events",
        "telecom_events",
    )


def scores_dataset(score_field: str = "probability", **changes: Any) -> dict:
    """A scores dataset as the scorer fills it (churn_scores.yaml's shape)."""
    columns = [
        {"name": "score_id", "type": "string", "required": True},
        {"name": "customer_id", "type": "string", "required": True},
        {"name": "model", "type": "string", "required": True},
        {"name": "model_version", "type": "string"},
        {"name": "as_of", "type": "date", "required": True},
        {"name": "scored_at", "type": "timestamp", "required": True},
        {"name": score_field, "type": "double", "required": True},
        {"name": "threshold", "type": "double", "min": 0, "max": 1},
        {"name": "flagged", "type": "boolean", "required": True},
        {"name": "action", "type": "string", "allowed": ["offer", "escalate_to_support"]},
        {"name": "features", "type": "string"},
    ]
    data = {
        "name": "scores",
        "ingestion": "stream",
        "format": "json",
        "event_time": "scored_at",
        "primary_key": ["score_id"],
        "columns": columns,
    }
    data.update(changes)
    return data


def test_a_scores_dataset_that_takes_the_scores_serves(spec, with_model):
    spec.write("datasets/scores.yaml", scores_dataset())
    with_model(serving={**SERVED, "scores_dataset": "scores"})
    assert spec.load().models[0].serving.scores_dataset == "scores"


def test_a_regression_models_scores_need_a_prediction_column(spec, with_model):
    """A regression model pointed at a classifier's scores dataset (churn_scores'
    shape): no prediction column, a required probability it never sends, a loyalty_offer
    the action column refuses, a threshold above its max of 1."""
    spec.write("datasets/scores.yaml", scores_dataset())
    with_model(
        **REGRESSION,
        serving={
            "stream": "telecom_events",
            "threshold": 150,
            "action": "loyalty_offer",
            "scores_dataset": "scores",
        },
    )
    err = spec.error()
    problem(err, MODEL_FILE, "serving.scores_dataset", "does not take prediction", "regression")
    problem(err, MODEL_FILE, "serving.scores_dataset", "requires probability", "quarantined")
    problem(err, MODEL_FILE, "serving.action", "'loyalty_offer' is not an allowed action")
    problem(err, MODEL_FILE, "serving.threshold", "outside the threshold column's range")


def test_a_scores_dataset_missing_a_field_of_the_score_record_is_refused(spec, with_model):
    data = scores_dataset()
    data["columns"] = [c for c in data["columns"] if c["name"] != "features"]
    spec.write("datasets/scores.yaml", data)
    with_model(serving={**SERVED, "scores_dataset": "scores"})
    problem(spec.error(), MODEL_FILE, "serving.scores_dataset", "does not take features")


# ----------------------------------------------------------------------------- monitoring


def test_shipped_churn_model_is_monitored_against_its_outcomes():
    churn = next(m for m in load_spec(SHIPPED).models if m.name == "churn")
    assert churn.monitoring is not None
    watch = churn.monitoring
    assert (watch.outcomes_dataset, watch.outcome_column, watch.treated_column) == (
        "churn_outcomes",
        "churned",
        "offer_sent",
    )
    assert (watch.psi, watch.auc, watch.retrain_on_breach) == (0.25, 0.7, True)


def test_monitoring_defaults_take_the_quality_gates_auc(spec, with_model):
    with_model(serving=SERVED, monitoring={"drift": {"psi": 0.2}})
    [model] = spec.load().models
    assert model.monitoring is not None
    assert (model.monitoring.psi, model.monitoring.auc, model.monitoring.min_rows) == (
        0.2,
        0.7,
        100,
    )
    assert model.monitoring.outcomes_dataset is None  # drift alone needs no outcomes


@pytest.mark.parametrize(
    ("monitoring", "field", "hint"),
    [
        ({"drift": {"psi": -1}}, "monitoring.drift.psi", "positive number"),
        ({"drift": {"p_value": 1.5}}, "monitoring.drift.p_value", "between 0 and 1"),
        ({"drift": {"min_rows": 0}}, "monitoring.drift.min_rows", ">= 1"),
        ({"performance": {"auc": "good"}}, "monitoring.performance.auc", "'good'"),
        ({"performance": {"recall": 0.5}}, "monitoring.performance.recall", "allowed"),
        ({"retrain_on_breach": "yes"}, "monitoring.retrain_on_breach", "true or false"),
        (
            {"outcomes": {"dataset": "nope", "column": "churned"}},
            "monitoring.outcomes.dataset",
            "nope",
        ),
        (
            {"outcomes": {"dataset": "telecom_events", "column": "churned"}},
            "monitoring.outcomes.column",
            "not a kept column of telecom_events",
        ),
        (
            {"outcomes": {"dataset": "telecom_events", "column": "event_type"}},
            "monitoring.outcomes.column",
            "an outcome is boolean or int",
        ),
        ({"outcomes": {"dataset": "telecom_events"}}, "monitoring.outcomes", "outcome column"),
        ("daily", "monitoring", "must be a mapping"),
    ],
)
def test_a_bad_monitoring_section_names_the_field_and_the_fix(
    spec, with_model, monitoring, field, hint
):
    with_model(serving=SERVED, monitoring=monitoring)
    problem(spec.error(), "spec/models/churn.yaml", field, hint)


def test_only_a_served_model_is_monitored(spec, with_model):
    with_model(monitoring={"drift": {"psi": 0.25}})
    problem(spec.error(), "spec/models/churn.yaml", "monitoring", "add a `serving:` section")


# ----------------------------------------------------------------------------- personas


def test_shipped_personas_load():
    platform = load_spec(SHIPPED)
    assert {p.name for p in platform.personas} == {"producer", "analyst", "data_scientist", "admin"}
    assert platform.persona("analyst").databases == ("curated",)
    assert platform.persona("analyst").pii is False and platform.persona("admin").pii is True


@pytest.mark.parametrize(
    ("persona", "field", "hint"),
    [
        ({"databases": ["gold"]}, "personas.analyst.databases[0]", "raw, curated, features"),
        ({"databases": "curated"}, "personas.analyst.databases", "must be a list"),
        ({"pii": "no"}, "personas.analyst.pii", "true or false"),
        ({"streams": ["house_sales"]}, "personas.analyst.streams[0]", "not a stream dataset"),
        ({"tables": ["x"]}, "personas.analyst.tables", "allowed"),
    ],
)
def test_a_bad_persona_names_the_field_and_the_fix(spec, persona, field, hint):
    spec.write("personas.yaml", {"personas": {"analyst": persona}})
    problem(spec.error(), "spec/personas.yaml", field, hint)


def test_shipped_personas_declare_training_and_no_principals():
    platform = load_spec(SHIPPED)
    training = {p.name for p in platform.personas if p.training}
    assert training == {"data_scientist", "admin"}
    assert all(p.principals == () for p in platform.personas)


@pytest.mark.parametrize(
    ("persona", "field", "hint"),
    [
        ({"training": "yes"}, "personas.analyst.training", "true or false"),
        (
            {"principals": "arn:aws:iam::123456789012:role/analysts"},
            "personas.analyst.principals",
            "must be a list of IAM role or user ARNs",
        ),
        ({"principals": ["analysts"]}, "personas.analyst.principals[0]", "not an IAM role or user"),
        (
            {"principals": ["arn:aws:iam::1234:role/analysts"]},
            "personas.analyst.principals[0]",
            "12-digit account",
        ),
        (
            {"principals": ["arn:aws:iam::123456789012:group/analysts"]},
            "personas.analyst.principals[0]",
            ":role/<name> (or :user/<name>)",
        ),
        (
            {"principals": ["arn:aws:sts::123456789012:assumed-role/analysts/alice"]},
            "personas.analyst.principals[0]",
            "not an IAM role or user ARN",
        ),
    ],
)
def test_a_bad_training_flag_or_principal_names_the_field_and_the_fix(spec, persona, field, hint):
    spec.write("personas.yaml", {"personas": {"analyst": persona}})
    problem(spec.error(), "spec/personas.yaml", field, hint)


def test_principals_map_existing_roles_and_users_to_a_persona(spec):
    arns = [
        "arn:aws:iam::123456789012:role/analysts",
        "arn:aws:iam::123456789012:role/teams/bi/analysts",
        "arn:aws:iam::210987654321:user/alice",
        "arn:aws-cn:iam::123456789012:role/analysts-cn",
    ]
    spec.write(
        "personas.yaml", {"personas": {"analyst": {"databases": ["curated"], "principals": arns}}}
    )
    persona = spec.load().persona("analyst")
    assert persona.principals == tuple(arns)
    assert persona.training is False


# ----------------------------------------------------------------------------- domains


def test_shipped_datasets_declare_their_domains():
    platform = load_spec(SHIPPED)
    assert {d.name: d.domain for d in platform.datasets} == {
        "baskets": "retail",
        "churn_outcomes": "telecom",
        "churn_scores": "telecom",
        "clv_scores": "telecom",
        "house_sales": "real_estate",
        "telecom_events": "telecom",
    }


def test_a_dataset_without_a_domain_is_in_the_default_domain(spec):
    spec.edit_dataset(lambda d: d.pop("domain", None))
    (dataset,) = spec.load().datasets
    assert dataset.domain == DEFAULT_DOMAIN == "general"


@pytest.mark.parametrize("domain", ["Telecom", "real-estate", "1st", 7, ["telecom"]])
def test_a_bad_domain_names_the_field_and_the_fix(spec, domain):
    spec.edit_dataset(lambda d: d.update(domain=domain))
    problem(spec.error(), DATASET_FILE, "domain", "lower case letters", "Lake Formation tag")


def test_the_domain_survives_the_compiled_spec():
    platform = load_spec(SHIPPED)
    compiled = json.loads(platform.to_json())
    (data,) = [d for d in compiled["datasets"] if d["name"] == "house_sales"]
    assert dataset_from_dict(data).domain == "real_estate"
