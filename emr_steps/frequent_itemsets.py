"""EMR step: frequent itemsets and association rules of baskets (FP-Growth).

    spark-submit --py-files dataplatform.zip emr_steps/frequent_itemsets.py \
        --input-path s3://<curated>/orders/ --basket-column order_id --item-column product \
        --min-support 0.01 --min-confidence 0.3 --output-path s3://<features>/basket_rules/

Thin: reads Parquet (one row per basket and item) from --input-path, runs
`dataplatform.transforms.frequent_itemsets.mine`, and overwrites two Parquet folders:
`<output-path>itemsets/` and `<output-path>rules/`. Extra arguments (Glue/EMR ones) are
tolerated.

TODO: register both outputs in the Glue catalog's features database; this round only
writes the files.
"""
from __future__ import annotations

import argparse
import sys
import time


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Frequent itemsets and association rules")
    parser.add_argument("--input-path", required=True)
    parser.add_argument("--basket-column", required=True)
    parser.add_argument("--item-column", required=True)
    parser.add_argument("--min-support", required=True, type=float)
    parser.add_argument("--min-confidence", required=True, type=float)
    parser.add_argument("--output-path", required=True)
    args, _extras = parser.parse_known_args(argv)  # EMR/Glue extras are tolerated
    args.output_path = args.output_path.rstrip("/") + "/"
    return args


def run(args: argparse.Namespace, spark, log=print) -> dict:
    from dataplatform.transforms.frequent_itemsets import mine

    started = time.perf_counter()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    baskets = spark.read.parquet(args.input_path)
    itemsets, rules = mine(baskets, basket_column=args.basket_column,
                           item_column=args.item_column, min_support=args.min_support,
                           min_confidence=args.min_confidence)
    itemsets.write.mode("overwrite").parquet(args.output_path + "itemsets/")
    rules.write.mode("overwrite").parquet(args.output_path + "rules/")
    report = {"output": args.output_path, "seconds": round(time.perf_counter() - started, 3)}
    log(f"frequent_itemsets: wrote {args.output_path}itemsets/ and rules/ in "
        f"{report['seconds']} s")
    return report


def main(argv: list[str] | None = None) -> int:
    from pyspark.sql import SparkSession

    args = parse_args(sys.argv[1:] if argv is None else argv)
    run(args, SparkSession.builder.appName("frequent-itemsets").getOrCreate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
