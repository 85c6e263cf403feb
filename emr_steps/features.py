"""EMR step: build one feature table from `spec/features/<name>.sql`.

    spark-submit --py-files dataplatform.zip emr_steps/features.py --name customer_features \
        [--as-of 2026-11-20] --curated-path s3://<curated>/ --features-path s3://<features>/

Thin: reads every `curated.<table>` the SQL uses as Parquet from `<curated-path><table>/`
(dt stays a string partition column), or, for a dataset with `table_format: iceberg`, its
Iceberg table `glue_catalog.<--curated-database>.<table>`, and every `features.<table>` from
`<features-path><table>/`, runs `dataplatform.transforms.features.build_feature_table`,
and overwrites `<features-path><name>/` with the result as Parquet (not partitioned).
`--as-of` sets `${as_of}`; without it the SQL gets NULL and picks its own default
(customer_features: the newest dt). Extra arguments (Glue/EMR ones) are tolerated.

The feature table's SQL comes from `--spec-json` (compiled spec), else the spec.json inside
the dataplatform library (the zip on EMR), else the spec/ folder of a source checkout.

Then the table is registered (or updated) in the Glue catalog's `--features-database` with
the result's schema and the s3:// location, unless `--no-catalog`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build one feature table: curated -> features")
    parser.add_argument("--name", required=True, help="feature table (spec/features/NAME.sql)")
    parser.add_argument("--as-of", default="", help="cutoff day YYYY-MM-DD; default: the SQL's")
    parser.add_argument("--curated-path", required=True, help="curated zone root (s3://bucket/)")
    parser.add_argument("--features-path", required=True, help="features zone root")
    parser.add_argument("--spec-json", default="", help="compiled spec JSON")
    parser.add_argument("--features-database", default="", help="Glue database to register in")
    parser.add_argument(
        "--curated-database", default="", help="the curated zone's Glue database (Iceberg tables)"
    )
    parser.add_argument("--no-catalog", action="store_true", help="skip catalog registration")
    args, _extras = parser.parse_known_args(argv)  # EMR/Glue extras are tolerated
    if args.as_of and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.as_of):
        parser.error(f"--as-of: {args.as_of!r} is not a date like 2026-11-20")
    args.curated_path = args.curated_path.rstrip("/") + "/"
    args.features_path = args.features_path.rstrip("/") + "/"
    return args


def load_feature(name: str, spec_json: str = ""):
    from dataplatform.spec import FeatureTable

    text = None
    if spec_json:
        text = Path(spec_json).read_text(encoding="utf-8")
    else:
        import pkgutil

        try:
            data = pkgutil.get_data("dataplatform", "spec.json")
        except (FileNotFoundError, OSError):
            data = None
        text = data.decode("utf-8") if data is not None else None
    if text is not None:
        features = json.loads(text)["features"]
        for f in features:
            if f["name"] == name:
                columns = tuple(f["columns"]) if f.get("columns") is not None else None
                return FeatureTable(
                    name=f["name"],
                    sql=f["sql"],
                    columns=columns,
                    source_file=f.get("source_file", ""),
                )
        raise KeyError(
            f"unknown feature table {name!r}; known: "
            f"{', '.join(f['name'] for f in features) or 'none'}"
        )
    from dataplatform.spec import load_spec

    for f in load_spec(Path(__file__).resolve().parents[1] / "spec").features:
        if f.name == name:
            return f
    raise KeyError(f"unknown feature table {name!r} in spec/features/")


def run(args: argparse.Namespace, spark, log=print) -> dict:
    from dataplatform.jobs.curate_run import configure
    from dataplatform.transforms.features import build_feature_table, referenced_tables

    started = time.perf_counter()
    configure(spark)  # UTC, dt read back as a string
    feature = load_feature(args.name, args.spec_json)
    roots = {"curated": args.curated_path, "features": args.features_path}
    tables = {}
    for zone, table in referenced_tables(feature.sql):
        if zone not in roots:
            raise ValueError(
                f"feature table {feature.name!r} reads {zone}.{table}; this step "
                "reads only the curated and features zones"
            )
        tables[f"{zone}.{table}"] = read_zone_table(
            spark, zone, table, roots[zone], curated_database=args.curated_database
        )
    result = build_feature_table(
        spark, feature, tables=tables, variables={"as_of": args.as_of or None}
    )
    output = f"{args.features_path}{feature.name}/"
    result.write.mode("overwrite").parquet(output)
    report = {
        "feature_table": feature.name,
        "as_of": args.as_of or None,
        "output": output,
        "inputs": sorted(tables),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.features_database and not args.no_catalog:
        import boto3

        report["catalog"] = register_table(
            boto3.client("glue"),
            database=args.features_database,
            name=feature.name,
            location=output,
            schema=spark.read.parquet(output).schema,
        )
    log(f"features {feature.name}: wrote {output} in {report['seconds']} s")
    return report


def read_zone_table(spark, zone: str, table: str, root: str, *, curated_database: str):
    """A zone's table as a DataFrame: a curated dataset with `table_format: iceberg` through
    its Iceberg table (the catalog's current snapshot: its data files are not a folder to
    list, since a MERGE leaves the replaced files for time travel); any other as Parquet
    below `<root><table>/`."""
    from dataplatform.spec import bundled_dataset

    dataset = None
    if zone == "curated":
        try:
            dataset = bundled_dataset(table)
        except KeyError:
            dataset = None
    if dataset is not None and dataset.is_iceberg:
        from dataplatform.jobs import iceberg

        if not curated_database:
            raise ValueError(
                f"curated.{table} is an Iceberg table: give --curated-database (the curated "
                "zone's Glue database)"
            )
        iceberg.configure_catalog(spark, root)
        return spark.table(iceberg.table_name(curated_database, table))
    path = f"{root}{table}/"
    return spark.read.option("basePath", path).parquet(path)


def register_table(glue, *, database: str, name: str, location: str, schema) -> str:
    """Create or update the feature table (Parquet, unpartitioned) in the catalog."""
    from dataplatform.jobs.catalog import register_table as register

    return register(
        glue,
        database=database,
        name=name,
        location=location,
        schema=schema,
        parameters={"feature_table": name},
    )


def main(argv: list[str] | None = None) -> int:
    from dataplatform.jobs.curate_run import spark_session

    args = parse_args(sys.argv[1:] if argv is None else argv)
    run(args, spark_session(f"features-{args.name}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
