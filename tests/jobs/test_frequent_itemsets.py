"""Frequent itemsets and association rules (FP-Growth) against a hand-checked basket set.

Baskets (5):
  b1 {bread, milk}
  b2 {bread, diapers, beer, eggs}
  b3 {milk, diapers, beer, cola}
  b4 {bread, milk, diapers, beer}
  b5 {bread, milk, diapers, cola}

Item counts: bread 4 (b1 b2 b4 b5), milk 4 (b1 b3 b4 b5), diapers 4 (b2 b3 b4 b5),
beer 3 (b2 b3 b4), cola 2 (b3 b5), eggs 1 (b2).
min_support 0.6 -> an itemset needs 3 of 5 baskets: bread, milk, diapers, beer.
Pairs of those: bread+milk 3 (b1 b4 b5), bread+diapers 3 (b2 b4 b5),
milk+diapers 3 (b3 b4 b5), diapers+beer 3 (b2 b3 b4), bread+beer 2 (b2 b4),
milk+beer 2 (b3 b4) -> 4 frequent pairs. Triples: bread+milk+diapers 2 (b4 b5),
bread+diapers+beer 2 (b2 b4), milk+diapers+beer 2 (b3 b4) -> none frequent.

Rules (support = support of the pair = 3/5 = 0.6 for all):
  confidence(X -> Y) = count(X,Y) / count(X); lift = confidence / support(Y)
  bread -> milk     3/4 = 0.75, lift 0.75 / (4/5) = 0.9375 (and the 5 other rules between
                    bread, milk and diapers: all 0.75 and 0.9375)
  diapers -> beer   3/4 = 0.75, lift 0.75 / (3/5) = 1.25
  beer -> diapers   3/3 = 1.0,  lift 1.0 / (4/5) = 1.25
With min_confidence 0.7 all 8 rules pass; with 0.8 only beer -> diapers.
"""

from __future__ import annotations

import importlib.util

import pytest

from dataplatform.paths import REPO_ROOT
from dataplatform.transforms.frequent_itemsets import mine

BASKETS = {
    "b1": ["bread", "milk"],
    "b2": ["bread", "diapers", "beer", "eggs"],
    "b3": ["milk", "diapers", "beer", "cola"],
    "b4": ["bread", "milk", "diapers", "beer"],
    "b5": ["bread", "milk", "diapers", "cola"],
}

EXPECTED_ITEMSETS = {
    ("bread",): (4, 0.8),
    ("milk",): (4, 0.8),
    ("diapers",): (4, 0.8),
    ("beer",): (3, 0.6),
    ("bread", "milk"): (3, 0.6),
    ("bread", "diapers"): (3, 0.6),
    ("diapers", "milk"): (3, 0.6),
    ("beer", "diapers"): (3, 0.6),
}
# (antecedent, consequent): (confidence, lift, support)
EXPECTED_RULES = {
    (("bread",), ("milk",)): (0.75, 0.9375, 0.6),
    (("milk",), ("bread",)): (0.75, 0.9375, 0.6),
    (("bread",), ("diapers",)): (0.75, 0.9375, 0.6),
    (("diapers",), ("bread",)): (0.75, 0.9375, 0.6),
    (("milk",), ("diapers",)): (0.75, 0.9375, 0.6),
    (("diapers",), ("milk",)): (0.75, 0.9375, 0.6),
    (("diapers",), ("beer",)): (0.75, 1.25, 0.6),
    (("beer",), ("diapers",)): (1.0, 1.25, 0.6),
}


def basket_rows(spark, extra: list[tuple] = ()):
    rows = [(basket, item) for basket, items in BASKETS.items() for item in items]
    return spark.createDataFrame(rows + list(extra), "order_id string, product string")


def as_dicts(itemsets, rules):
    got_itemsets = {tuple(r["items"]): (r["freq"], r["support"]) for r in itemsets.collect()}
    got_rules = {
        (tuple(r["antecedent"]), tuple(r["consequent"])): (r["confidence"], r["lift"], r["support"])
        for r in rules.collect()
    }
    return got_itemsets, got_rules


def assert_close(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, abs=1e-12), key


def test_itemsets_and_rules_match_the_hand_computation(spark):
    itemsets, rules = mine(
        basket_rows(spark),
        basket_column="order_id",
        item_column="product",
        min_support=0.6,
        min_confidence=0.7,
    )
    assert itemsets.columns == ["items", "freq", "support"]
    assert dict(itemsets.dtypes) == {
        "items": "array<string>",
        "freq": "bigint",
        "support": "double",
    }
    assert rules.columns == ["antecedent", "consequent", "confidence", "lift", "support"]
    got_itemsets, got_rules = as_dicts(itemsets, rules)
    assert_close(got_itemsets, EXPECTED_ITEMSETS)
    assert_close(got_rules, EXPECTED_RULES)


def test_higher_confidence_keeps_only_beer_implies_diapers(spark):
    itemsets, rules = mine(
        basket_rows(spark),
        basket_column="order_id",
        item_column="product",
        min_support=0.6,
        min_confidence=0.8,
    )
    _, got_rules = as_dicts(itemsets, rules)
    assert_close(got_rules, {(("beer",), ("diapers",)): (1.0, 1.25, 0.6)})


def test_repeated_and_null_items_do_not_change_the_counts(spark):
    # b4 lists beer twice and a null item; a row with a null basket is ignored.
    extra = [("b4", "beer"), ("b4", None), (None, "beer")]
    itemsets, rules = mine(
        basket_rows(spark, extra),
        basket_column="order_id",
        item_column="product",
        min_support=0.6,
        min_confidence=0.7,
    )
    got_itemsets, got_rules = as_dicts(itemsets, rules)
    assert_close(got_itemsets, EXPECTED_ITEMSETS)
    assert_close(got_rules, EXPECTED_RULES)


def test_bad_arguments_are_refused(spark):
    with pytest.raises(ValueError, match="column 'sku'"):
        mine(
            basket_rows(spark),
            basket_column="order_id",
            item_column="sku",
            min_support=0.5,
            min_confidence=0.5,
        )
    with pytest.raises(ValueError, match="min_support"):
        mine(
            basket_rows(spark),
            basket_column="order_id",
            item_column="product",
            min_support=0,
            min_confidence=0.5,
        )


def _load_step():
    spec = importlib.util.spec_from_file_location(
        "emr_step_frequent_itemsets", REPO_ROOT / "emr_steps" / "frequent_itemsets.py"
    )
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    return step


def test_emr_step_reads_a_zone_table_and_writes_both_tables_without_catalog(spark, tmp_path):
    step = _load_step()
    # the curated layout: <curated>/<table>/dt=.../ (dt stays a string partition column)
    (
        basket_rows(spark)
        .selectExpr("order_id", "product", "'2026-11-20' AS dt")
        .write.partitionBy("dt")
        .parquet(str(tmp_path / "curated" / "orders"))
    )
    args = step.parse_args(
        [
            "--input-table",
            "curated.orders",
            "--basket-column",
            "order_id",
            "--item-column",
            "product",
            "--min-support",
            "0.6",
            "--min-confidence",
            "0.7",
            "--output-name",
            "orders",
            "--curated-path",
            f"file://{tmp_path / 'curated'}",
            "--features-path",
            f"file://{tmp_path / 'features'}",
            "--no-catalog",
            "--JOB_NAME",
            "ignored",
        ]
    )
    report = step.run(args, spark, log=lambda _: None)
    itemsets = spark.read.parquet(str(tmp_path / "features" / "orders_itemsets"))
    assert itemsets.columns == ["items", "size", "freq", "support"]
    assert {tuple(r["items"]): r["size"] for r in itemsets.collect()} == {
        items: len(items) for items in EXPECTED_ITEMSETS
    }
    got_itemsets, got_rules = as_dicts(
        itemsets, spark.read.parquet(str(tmp_path / "features" / "orders_rules"))
    )
    assert_close(got_itemsets, EXPECTED_ITEMSETS)
    assert_close(got_rules, EXPECTED_RULES)
    assert {name: t["rows"] for name, t in report["tables"].items()} == {
        "orders_itemsets": len(EXPECTED_ITEMSETS),
        "orders_rules": len(EXPECTED_RULES),
    }
    assert all("catalog" not in t for t in report["tables"].values())


def test_emr_step_reads_the_catalog_location_and_registers_both_tables(
    spark, tmp_path, moto_endpoint
):
    from tests.jobs.conftest import aws_client

    step = _load_step()
    glue = aws_client("glue", moto_endpoint)
    for db in ("fi_curated", "fi_features"):
        glue.create_database(DatabaseInput={"Name": db})
    # The catalog's location differs from the zone path convention: the step must use it.
    elsewhere = tmp_path / "elsewhere" / "orders"
    basket_rows(spark).write.parquet(str(elsewhere))
    glue.create_table(
        DatabaseName="fi_curated",
        TableInput={
            "Name": "orders",
            "Parameters": {"classification": "parquet"},
            "StorageDescriptor": {"Location": f"file://{elsewhere}/", "Columns": []},
        },
    )
    argv = [
        "--input-table",
        "fi_curated.orders",
        "--basket-column",
        "order_id",
        "--item-column",
        "product",
        "--min-support",
        "0.6",
        "--min-confidence",
        "0.8",
        "--output-name",
        "orders",
        "--curated-path",
        f"file://{tmp_path / 'curated'}",
        "--features-path",
        f"file://{tmp_path / 'features'}",
        "--curated-database",
        "fi_curated",
        "--features-database",
        "fi_features",
    ]

    first = step.run(step.parse_args(argv), spark, log=lambda _: None, glue=glue)
    second = step.run(step.parse_args(argv), spark, log=lambda _: None, glue=glue)

    assert [t["catalog"] for t in first["tables"].values()] == ["created", "created"]
    assert [t["catalog"] for t in second["tables"].values()] == ["updated", "updated"]
    itemsets = glue.get_table(DatabaseName="fi_features", Name="orders_itemsets")["Table"]
    rules = glue.get_table(DatabaseName="fi_features", Name="orders_rules")["Table"]
    assert [(c["Name"], c["Type"]) for c in itemsets["StorageDescriptor"]["Columns"]] == [
        ("items", "array<string>"),
        ("size", "int"),
        ("freq", "bigint"),
        ("support", "double"),
    ]
    assert [(c["Name"], c["Type"]) for c in rules["StorageDescriptor"]["Columns"]] == [
        ("antecedent", "array<string>"),
        ("consequent", "array<string>"),
        ("confidence", "double"),
        ("lift", "double"),
        ("support", "double"),
    ]
    assert rules["StorageDescriptor"]["Location"] == f"file://{tmp_path / 'features'}/orders_rules/"
    assert rules["Parameters"]["classification"] == "parquet"
    _, got_rules = as_dicts(
        spark.read.parquet(str(tmp_path / "features" / "orders_itemsets")),
        spark.read.parquet(str(tmp_path / "features" / "orders_rules")),
    )
    assert_close(got_rules, {(("beer",), ("diapers",)): (1.0, 1.25, 0.6)})


def test_emr_step_input_errors_name_the_table(spark, tmp_path, moto_endpoint):
    from tests.jobs.conftest import aws_client

    step = _load_step()
    glue = aws_client("glue", moto_endpoint)
    glue.create_database(DatabaseInput={"Name": "fi_err_curated"})
    base = [
        "--curated-path",
        f"file://{tmp_path}/c",
        "--features-path",
        f"file://{tmp_path}/f",
        "--curated-database",
        "fi_err_curated",
        "--features-database",
        "fi_err_features",
    ]
    with pytest.raises(ValueError, match="no table 'nope' in the catalog database fi_err_curated"):
        step.run(step.parse_args(["--input-table", "curated.nope", *base]), spark, glue=glue)
    with pytest.raises(
        ValueError,
        match="'raw' is not a zone or database this step reads; use "
        "one of: curated, features, fi_err_curated",
    ):
        step.run(step.parse_args(["--input-table", "raw.baskets", *base]), spark, glue=glue)
    with pytest.raises(ValueError, match="cannot read Parquet at file://.*/c/baskets/"):
        step.run(
            step.parse_args(["--input-table", "curated.baskets", "--no-catalog", *base]), spark
        )
