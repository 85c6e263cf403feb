"""Frequent itemsets and association rules (market-basket analysis): pure PySpark.

`mine(baskets, ...)` takes one row per (basket, item), groups the items of each basket
into a set (`collect_set`: an item bought twice in a basket counts once; null items are
ignored) and runs Spark ML's FP-Growth.

- itemsets: `items` (array<string>, sorted), `freq` (long, baskets holding every item),
  `support` (double, freq / number of baskets), for every itemset with
  support >= min_support.
- rules: `antecedent`, `consequent` (array<string>, sorted), `confidence`
  (support(A u C) / support(A)), `lift` (confidence / support(C)) and `support`
  (support(A u C)), for the frequent itemsets' rules with confidence >= min_confidence.

The number of baskets is the number of distinct non-null basket ids with at least one
non-null item. Items are compared as strings.
"""

from __future__ import annotations

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ITEMS = "items"


def mine(
    baskets: DataFrame,
    *,
    basket_column: str,
    item_column: str,
    min_support: float,
    min_confidence: float,
) -> tuple[DataFrame, DataFrame]:
    """(itemsets, rules) of the baskets; see the module docstring."""
    for name in (basket_column, item_column):
        if name not in baskets.columns:
            raise ValueError(f"column {name!r} not in the baskets' columns {baskets.columns}")
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], not {min_support}")
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be in [0, 1], not {min_confidence}")

    grouped = (
        baskets.where(F.col(basket_column).isNotNull() & F.col(item_column).isNotNull())
        .groupBy(basket_column)
        .agg(F.array_sort(F.collect_set(F.col(item_column).cast("string"))).alias(ITEMS))
        .select(ITEMS)
        .cache()
    )  # counted, then FP-Growth's passes: read the input once
    n_baskets = grouped.count()
    spark = baskets.sparkSession
    if n_baskets == 0:
        itemsets = spark.createDataFrame([], "items array<string>, freq bigint, support double")
        rules = spark.createDataFrame(
            [],
            "antecedent array<string>, consequent array<string>, confidence double, "
            "lift double, support double",
        )
        return itemsets, rules

    model = FPGrowth(
        itemsCol=ITEMS, minSupport=float(min_support), minConfidence=float(min_confidence)
    ).fit(grouped)
    itemsets = model.freqItemsets.select(
        F.array_sort(ITEMS).alias("items"),
        F.col("freq").cast("bigint").alias("freq"),
        (F.col("freq") / F.lit(float(n_baskets))).alias("support"),
    )
    rules = model.associationRules.select(
        F.array_sort("antecedent").alias("antecedent"),
        F.array_sort("consequent").alias("consequent"),
        F.col("confidence").cast("double").alias("confidence"),
        F.col("lift").cast("double").alias("lift"),
        F.col("support").cast("double").alias("support"),
    )
    return itemsets, rules
