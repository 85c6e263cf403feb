"""`dp emr run frequent_itemsets` on the local platform, end to end through the CLI: a
hand-checkable basket set is ingested, crawled and curated, the step runs on local Spark
(spark-submit of the deployed emr_steps/frequent_itemsets.py over s3a:// against moto),
registers both tables, and `dp query` returns the supports, confidences and lifts that
pandas computes from the same CSV. A second run with another confidence replaces the rules
(a rerun over existing output), and `dp emr status` lists both runs."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from dataplatform.cli import app
from stacks.platform import REPO_ROOT

runner = CliRunner()
SPEC = str(REPO_ROOT / "spec")
FEATURES_DB = "mldp_dev_features"
# 5 baskets over 2 days; the hand computation is in tests/jobs/test_frequent_itemsets.py.
BASKETS = {
    "b1": ["bread", "milk"],
    "b2": ["bread", "diapers", "beer", "eggs"],
    "b3": ["milk", "diapers", "beer", "cola"],
    "b4": ["bread", "milk", "diapers", "beer"],
    "b5": ["bread", "milk", "diapers", "cola"],
}


def baskets_csv() -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["basket_id", "purchased_at", "store_id", "item", "quantity"])
    for i, (basket, items) in enumerate(BASKETS.items()):
        day = "2026-11-19" if i < 2 else "2026-11-20"
        for item in items:
            writer.writerow([basket, f"{day}T10:0{i}:00Z", "s1", item, 1])
    writer.writerow(["b4", "2026-11-20T10:03:00Z", "s1", "beer", 2])  # duplicate: removed
    writer.writerow(["b6", "2026-11-20T11:00:00Z", "s1", "", 1])  # no item: quarantined
    return out.getvalue()


def expected(csv_text: str, min_support: float, min_confidence: float):
    """Frequent itemsets and single-consequent rules, by enumeration with pandas."""
    rows = pd.read_csv(io.StringIO(csv_text), dtype=str).dropna(subset=["item"])
    baskets = rows.groupby("basket_id").item.apply(frozenset)
    n = len(baskets)
    items = sorted(set(rows.item))
    count = {}
    for size in range(1, len(items) + 1):
        for combo in itertools.combinations(items, size):
            c = int(sum(set(combo) <= b for b in baskets))
            if c / n >= min_support:
                count[frozenset(combo)] = c
    itemsets = {tuple(sorted(s)): (c, c / n) for s, c in count.items()}
    rules = {}
    for s, c in count.items():
        for consequent in s if len(s) > 1 else ():
            antecedent = s - {consequent}
            confidence = c / count[antecedent]
            if confidence >= min_confidence:
                rules[(tuple(sorted(antecedent)), (consequent,))] = (
                    confidence,
                    confidence / (count[frozenset([consequent])] / n),
                    c / n,
                )
    return itemsets, rules


@pytest.fixture(scope="module")
def platform(empty_platform):
    home, _ = empty_platform  # the session's platform, emptied: `dp local up` provisions it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DP_HOME", str(home))
        assert invoke("local", "up").exit_code == 0
        data = home / "baskets.csv"
        data.write_text(baskets_csv())
        for command in (
            ["ingest", "baskets", "--file", str(data)],
            ["crawl", "baskets"],
            ["curate", "baskets"],
        ):
            result = invoke(*command)
            assert result.exit_code == 0, result.output
        yield home


def invoke(*args: str):
    return runner.invoke(app, [*args, "--spec", SPEC], env={"COLUMNS": "300"})


def query(sql: str) -> list[dict]:
    """`dp query --output json`'s rows; array columns as Athena's result gives them
    (`[beer, diapers]`), read back into lists."""
    result = invoke("query", sql, "--output", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    for row in rows:
        for column in ("items", "antecedent", "consequent"):
            text = row.get(column)
            if isinstance(text, str) and text.startswith("[") and text.endswith("]"):
                row[column] = [item.strip() for item in text[1:-1].split(",") if item.strip()]
    return rows


def assert_matches(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, values in want.items():
        assert got[key] == pytest.approx(values, abs=1e-12), key


def test_frequent_itemsets_step_registers_both_tables_equal_to_pandas(platform, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(platform))
    result = invoke(
        "emr",
        "run",
        "frequent_itemsets",
        "--arg",
        "min-support=0.6",
        "--arg",
        "min-confidence=0.7",
        "--arg",
        "output-name=hand",
    )
    assert result.exit_code == 0, result.output
    assert "frequent_itemsets hand: COMPLETED" in result.output  # EMR's word for it
    assert "mldp_dev_features.hand_itemsets" in result.output
    assert "mldp_dev_features.hand_rules" in result.output

    want_itemsets, want_rules = expected(baskets_csv(), 0.6, 0.7)
    assert len(want_itemsets) == 8 and len(want_rules) == 8  # as computed by hand
    itemsets = query(f"SELECT items, size, freq, support FROM {FEATURES_DB}.hand_itemsets")
    assert_matches({tuple(r["items"]): (r["freq"], r["support"]) for r in itemsets}, want_itemsets)
    assert all(r["size"] == len(r["items"]) for r in itemsets)
    rules = query(
        f"SELECT antecedent, consequent, confidence, lift, support FROM {FEATURES_DB}.hand_rules"
    )
    assert_matches(
        {
            (tuple(r["antecedent"]), tuple(r["consequent"])): (
                r["confidence"],
                r["lift"],
                r["support"],
            )
            for r in rules
        },
        want_rules,
    )

    # A rerun over the existing output replaces it: only beer -> diapers reaches 0.8.
    again = invoke(
        "emr",
        "run",
        "frequent_itemsets",
        "--arg",
        "min-support=0.6",
        "--arg",
        "min-confidence=0.8",
        "--arg",
        "output-name=hand",
    )
    assert again.exit_code == 0, again.output
    rules = query(
        f"SELECT antecedent, consequent, confidence, lift, support FROM {FEATURES_DB}.hand_rules"
    )
    assert_matches(
        {
            (tuple(r["antecedent"]), tuple(r["consequent"])): (
                r["confidence"],
                r["lift"],
                r["support"],
            )
            for r in rules
        },
        expected(baskets_csv(), 0.6, 0.8)[1],
    )

    status = invoke("emr", "status")
    assert status.exit_code == 0, status.output
    assert status.output.count("frequent_itemsets hand") == 2  # the steps EMR lists
    assert status.output.count("COMPLETED") == 2


def test_a_step_over_a_missing_table_fails_with_the_reason_and_log(platform, monkeypatch):
    monkeypatch.setenv("DP_HOME", str(platform))
    result = invoke("emr", "run", "frequent_itemsets", "--arg", "input-table=curated.orders")
    assert result.exit_code == 1
    assert "no table 'orders' in the catalog database mldp_dev_curated" in result.output
    assert "log:" in result.output
