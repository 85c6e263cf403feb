"""EMR step: frequent itemsets and association rules of baskets (FP-Growth).

    spark-submit --py-files dataplatform.zip emr_steps/frequent_itemsets.py \
        --input-table curated.baskets --basket-column basket_id --item-column item \
        --min-support 0.05 --min-confidence 0.5 --output-name basket \
        --curated-path s3://<curated>/ --features-path s3://<features>/ \
        --curated-database <db> --features-database <db>

`dp emr run frequent_itemsets --arg K=V ...` builds these arguments
(`dataplatform.jobs.emr_step_args`: the environment's paths and databases by default).

Input: `--input-table` names a catalog table as `zone.table` (zone curated or features) or
`database.table` (the curated or features database). Its location comes from the Glue
catalog (`GetTable`; on EMR the Glue catalog is the metastore, locally the moto server's
catalog), else, with `--no-catalog` or no database given, `<zone-path><table>/`; it is
read as Parquet (dt stays a string partition column) and registered as a temp view under
its table name.

Output: `dataplatform.transforms.frequent_itemsets.mine` over one row per (basket, item),
overwriting `<features-path><output-name>_itemsets/` (items array<string>, size, freq,
support) and `<features-path><output-name>_rules/` (antecedent, consequent, confidence,
lift, support), both registered (created or updated) in `--features-database` unless
`--no-catalog`. Extra arguments (Glue/EMR ones) are tolerated.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ZONES = ("curated", "features")


def _defaults() -> dict[str, str]:
    try:
        from dataplatform.jobs.emr_step_args import FREQUENT_ITEMSETS_DEFAULTS
    except ImportError:  # the script run without the library zip: argparse still works
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from dataplatform.jobs.emr_step_args import FREQUENT_ITEMSETS_DEFAULTS
    return FREQUENT_ITEMSETS_DEFAULTS


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = _defaults()
    parser = argparse.ArgumentParser(description="Frequent itemsets and association rules")
    parser.add_argument(
        "--input-table", default=d["input-table"], help="zone.table or database.table (Parquet)"
    )
    parser.add_argument("--basket-column", default=d["basket-column"])
    parser.add_argument("--item-column", default=d["item-column"])
    parser.add_argument("--min-support", default=float(d["min-support"]), type=float)
    parser.add_argument("--min-confidence", default=float(d["min-confidence"]), type=float)
    parser.add_argument(
        "--output-name", default=d["output-name"], help="tables NAME_itemsets and NAME_rules"
    )
    parser.add_argument("--curated-path", required=True, help="curated zone root (s3://bucket/)")
    parser.add_argument("--features-path", required=True, help="features zone root")
    parser.add_argument("--curated-database", default="")
    parser.add_argument("--features-database", default="", help="Glue database to register in")
    parser.add_argument(
        "--no-catalog",
        action="store_true",
        help="no catalog look-up or registration: zone paths only",
    )
    args, _extras = parser.parse_known_args(argv)  # EMR/Glue extras are tolerated
    if args.input_table.count(".") != 1:
        parser.error(f"--input-table {args.input_table!r}: write zone.table or database.table")
    args.curated_path = args.curated_path.rstrip("/") + "/"
    args.features_path = args.features_path.rstrip("/") + "/"
    return args


def resolve_input(args: argparse.Namespace, glue=None) -> tuple[str, str, str | None]:
    """(zone, table, location) of --input-table. The location is the catalog's when a
    database is known and a Glue client is given, else the zone path convention; its
    scheme follows the zone paths' (s3a:// locally, s3:// on EMR)."""
    qualifier, table = args.input_table.split(".")
    databases = {"curated": args.curated_database, "features": args.features_database}
    zone = (
        qualifier
        if qualifier in ZONES
        else next((z for z, db in databases.items() if db and db == qualifier), None)
    )
    if zone is None:
        known = ", ".join([*ZONES, *(db for db in databases.values() if db)])
        raise ValueError(
            f"--input-table {args.input_table}: {qualifier!r} is not a zone or "
            f"database this step reads; use one of: {known}"
        )
    root = args.curated_path if zone == "curated" else args.features_path
    database = databases[zone]
    if glue is None or not database:
        return zone, table, f"{root}{table}/"
    try:
        found = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        raise ValueError(
            f"--input-table {args.input_table}: no table {table!r} in the catalog "
            f"database {database}"
        ) from None
    sd = found.get("StorageDescriptor") or {}
    location = sd.get("Location") or ""
    classification = (found.get("Parameters") or {}).get("classification", "parquet")
    if classification != "parquet" or not location:
        raise ValueError(
            f"--input-table {args.input_table}: {database}.{table} is not a "
            f"Parquet table with a location (classification {classification!r}, "
            f"location {location!r})"
        )
    scheme = root.split("://", 1)[0] if "://" in root else "s3"
    if location.startswith("s3://") and scheme != "s3":
        location = f"{scheme}://{location[len('s3://') :]}"
    return zone, table, location.rstrip("/") + "/"


def run(args: argparse.Namespace, spark, log=print, glue=None) -> dict:
    """Mine the baskets and write (and register) both tables. `glue`: a Glue client for the
    catalog; made with boto3 unless --no-catalog."""
    from pyspark.sql.utils import AnalysisException

    from dataplatform.jobs.curate_run import configure
    from dataplatform.transforms.frequent_itemsets import mine

    started = time.perf_counter()
    configure(spark)  # UTC, dt read back as a string
    if glue is None and not args.no_catalog and (args.curated_database or args.features_database):
        import boto3

        glue = boto3.client("glue")
    zone, table, location = resolve_input(args, None if args.no_catalog else glue)
    try:
        baskets = spark.read.option("basePath", location).parquet(location)
    except AnalysisException as exc:
        raise ValueError(
            f"--input-table {args.input_table}: cannot read Parquet at {location} "
            f"(is it curated yet?): {str(exc).splitlines()[0]}"
        ) from None
    baskets.createOrReplaceTempView(table)
    itemsets, rules = mine(
        baskets,
        basket_column=args.basket_column,
        item_column=args.item_column,
        min_support=args.min_support,
        min_confidence=args.min_confidence,
    )
    from pyspark.sql import functions as F

    itemsets = itemsets.select("items", F.size("items").alias("size"), "freq", "support")
    outputs = {f"{args.output_name}_itemsets": itemsets, f"{args.output_name}_rules": rules}
    report = {
        "step": "frequent_itemsets",
        "input": f"{zone}.{table}",
        "input_location": location,
        "min_support": args.min_support,
        "min_confidence": args.min_confidence,
        "tables": {},
    }
    for name, frame in outputs.items():
        path = f"{args.features_path}{name}/"
        frame.coalesce(1).write.mode("overwrite").parquet(path)  # small: one file each
        written = spark.read.parquet(path)
        entry = {"location": path, "rows": written.count()}
        if args.features_database and not args.no_catalog:
            from dataplatform.jobs.catalog import register_table

            entry["catalog"] = register_table(
                glue,
                database=args.features_database,
                name=name,
                location=path,
                schema=written.schema,
                parameters={
                    "frequent_itemsets": args.output_name,
                    "source_table": args.input_table,
                },
            )
        report["tables"][name] = entry
    report["seconds"] = round(time.perf_counter() - started, 3)
    log(
        "frequent_itemsets: "
        + ", ".join(
            f"{name} {t['rows']} rows at {t['location']}"
            + (f" ({t['catalog']})" if "catalog" in t else "")
            for name, t in report["tables"].items()
        )
        + f" in {report['seconds']} s"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    from dataplatform.jobs.curate_run import spark_session

    args = parse_args(sys.argv[1:] if argv is None else argv)
    run(args, spark_session("frequent-itemsets"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
