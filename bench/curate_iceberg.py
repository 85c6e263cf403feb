"""The house_sales curate into a Hive table (Parquet, dynamic partition overwrite by dt) and
into an Iceberg table (MERGE by primary key), on the local platform, in the same run.

House sales are batch CSV with an event time (sale_date: 240 distinct days in the demo's
400 rows): every curate of them rebuilds the curated rows from all raw uploads, and the
Hive table's write replaces every dt partition they touch. The Iceberg table instead takes
a copy-on-write MERGE by sale_id (dataplatform/jobs/iceberg.py).

Input: the demo's generator (dataplatform/demo.py `house_sales_csv`, seed 11; 400 rows by
default, `--rows N`), with a fixed upload time so every run curates the same rows, put in
the raw bucket under house_sales/dt=<upload day>/hour=<hour>/ as a batch upload lands.

Three steps, each timed for both formats (the whole curate job's `run`, s3a:// paths, as the
platform runs it; the Hive run also registers its Glue partitions, the Iceberg one has none):
 1. first curate, empty target;
 2. a rerun of the same input (`--dates` the upload day): Hive rewrites every partition;
    the Iceberg MERGE changes no row (what it does to files, its snapshot says);
 3. a second upload (a day later) that updates 5% of the sales (same sale_id, a later
    sale_date, new price and condition) and adds 5% new ones: Hive rebuilds from both
    uploads, Iceberg MERGEs them.

The platform's own pieces: its moto server (moto_main, started with `server.up` in a
temporary folder, as `dp local up` does), buckets as the lake's (versioned, SSE-KMS by
default), and an in-process SparkSession with the local driver's settings
(`glue_job.spark_conf`: one shuffle partition, the S3A staging committer through the local
commit protocol, Iceberg's GlueCatalog over the server) and environment. Both tables exist
before the first step, as the CatalogStack makes them (not timed): the Hive table's Glue
entry, the Iceberg table in `iceberg.create_table_sql`'s shape. Before the timed steps the
same three steps run on a tiny input (20 rows, tables of their own) for both formats, to warm
the JVM (class loading, JIT, Iceberg's catalog and S3 clients, the MERGE's rewrite path);
they are not counted. Other processes on the machine show in the load average printed at
the start and the end; --repeat K prints each run's seconds beside the median.

Printed per step: seconds of each format and the ratio Hive / Iceberg, the files in each
table after the step (Hive: Parquet objects below its prefix; Iceberg: `<table>.files`, the
current snapshot's data files, and beside it every object below the table's prefix, old
snapshots' files and metadata included), the requests the moto server answered during the
step, and the rows; then what each step did (partitions written, the Iceberg snapshot's
summary) and where the time goes (the server's busiest request kinds). After every step the
two tables are compared as pandas frames sorted by sale_id; the last line says
`same rows: yes` or `no` (then the exit status is 1, after the differences found).

Usage: python bench/curate_iceberg.py [--rows N] [--repeat K] [--verbose]
(--repeat K: the three steps K times, each time into new tables; the median is printed)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from dataplatform import layout  # noqa: E402
from dataplatform.demo import house_sales_csv  # noqa: E402
from dataplatform.jobs import iceberg  # noqa: E402
from dataplatform.jobs.curate_run import parse_args, run  # noqa: E402
from dataplatform.runtime.local import glue_job, server, spark_jars  # noqa: E402
from dataplatform.runtime.local.moto_main import STATS_PATH  # noqa: E402
from dataplatform.spec import Dataset, load_spec  # noqa: E402

DATASET = "house_sales"
HIVE, ICEBERG = "hive", "iceberg"
FORMATS = (HIVE, ICEBERG)
TABLES = {HIVE: DATASET, ICEBERG: f"{DATASET}_iceberg"}
SEED = 11  # the demo's
# the uploads' times: fixed, so that every run curates the same rows
FIRST_UPLOAD = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
SECOND_UPLOAD = FIRST_UPLOAD + timedelta(days=1)
UPDATED_FRACTION = NEW_FRACTION = 0.05
WARM_UP_ROWS = 20
STEPS = ("1 first curate (empty)", "2 rerun, same input", "3 +5% updated, +5% new")
GLUE_TYPES = {
    "string": "string",
    "int": "int",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


# ----------------------------------------------------------------------------- input


def parse_csv(text: str) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def to_csv(header: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def second_upload(first: list[dict], seed: int = SEED + 1) -> list[dict]:
    """5% of the first upload's sales again, each with a later sale_date (at most the upload
    day) and a new price and condition; and 5% new sales (the demo's generator, new ids,
    sold in the 30 days before the upload)."""
    rng = random.Random(seed)
    n = len(first)
    last_day = SECOND_UPLOAD.date()
    updated = []
    for row in rng.sample(first, round(n * UPDATED_FRACTION)):
        sold = date.fromisoformat(row["sale_date"])
        try:
            price = float(row["price"])
        except ValueError:
            price = 400_000.0  # the first version's price was unreadable (quarantined)
        updated.append(
            {
                **row,
                "sale_date": min(sold + timedelta(days=rng.randint(1, 60)), last_day).isoformat(),
                "price": round(price * rng.uniform(1.02, 1.15), 2),
                "condition": rng.randint(1, 5),
                "zipcode": row["zipcode"] or "98101",
            }
        )
    _, fresh = parse_csv(house_sales_csv(round(n * NEW_FRACTION), seed=seed, now=SECOND_UPLOAD))
    new = [
        {
            **row,
            "sale_id": f"sale-{n + i:05d}",
            "sale_date": (last_day - timedelta(days=rng.randrange(30))).isoformat(),
            "seller_name": f"Seller {n + i}",
        }
        for i, row in enumerate(fresh)
    ]
    return updated + new


# ----------------------------------------------------------------------------- the lake


@dataclass(frozen=True)
class Lake:
    """One set of the platform's buckets and databases, with both curated tables."""

    tag: str

    @property
    def raw(self) -> str:
        return f"bench-{self.tag}-raw"

    @property
    def curated(self) -> str:
        return f"bench-{self.tag}-curated"

    @property
    def artifacts(self) -> str:
        return f"bench-{self.tag}-artifacts"

    @property
    def raw_database(self) -> str:
        return f"bench_{self.tag.replace('-', '_')}_raw"

    @property
    def curated_database(self) -> str:
        return f"bench_{self.tag.replace('-', '_')}_curated"

    def iceberg_table(self) -> str:
        return iceberg.table_name(self.curated_database, TABLES[ICEBERG])


class Platform:
    """The platform's moto server (its clients, its request counts) and Spark session."""

    def __init__(self, state: Path, region: str, dataset: Dataset):
        self.state, self.region, self.dataset = state, region, dataset
        self.info, _ = server.up(state)
        self.s3 = server.client("s3", self.info, region)
        self.glue = server.client("glue", self.info, region)
        self.kms_key = server.client("kms", self.info, region).create_key(
            Description="bench lake key"
        )["KeyMetadata"]["Arn"]
        self.spark = None
        self.variants = {
            HIVE: dataclasses.replace(dataset, table_format="hive"),
            ICEBERG: dataclasses.replace(dataset, table_format="iceberg"),
        }
        self.spec_json = {}
        for fmt, variant in self.variants.items():
            path = state / f"spec-{fmt}.json"
            path.write_text(json.dumps({"datasets": [dataclasses.asdict(variant)]}, default=str))
            self.spec_json[fmt] = str(path)

    def start_spark(self):
        """A SparkSession as the platform's driver has it: its settings, jars, environment."""
        from pyspark.sql import SparkSession

        os.environ.update(
            {
                "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable,
                "AWS_ENDPOINT_URL": self.info.endpoint,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": server.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": server.SECRET_KEY,
            }
        )
        conf = {
            **glue_job.spark_conf(self.info, self.region, self.state),
            **spark_jars.driver_class_path_conf(spark_jars.jar_paths()),
            "spark.ui.showConsoleProgress": "false",  # display only: no progress bars
        }
        builder = SparkSession.builder.master("local[2]").appName("bench-curate-iceberg")
        for key, value in conf.items():
            builder = builder.config(key, value)
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        return self.spark

    def stop(self) -> None:
        """Spark, its JVM (gone when its stdin closes, as at this process' exit, but now)
        and the moto server: the ones this bench started."""
        try:
            if self.spark is not None:
                from pyspark import SparkContext

                gateway = SparkContext._gateway
                self.spark.stop()
                jvm = getattr(gateway, "proc", None)
                if gateway is not None:
                    gateway.shutdown()
                if jvm is not None:
                    jvm.stdin.close()
                    jvm.wait(timeout=60)
        finally:
            server.down(self.state)

    def stats(self) -> dict:
        with urllib.request.urlopen(self.info.endpoint + STATS_PATH, timeout=10) as response:
            return json.load(response)

    # ------------------------------------------------------------------------- set-up

    def make_lake(self, lake: Lake) -> None:
        """The buckets as the lake's (versioned, SSE-KMS with a bucket key), the databases,
        the Hive table's Glue entry (the CatalogStack's job) and the empty Iceberg table."""
        for bucket in (lake.raw, lake.curated, lake.artifacts):
            self.s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
            self.s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
            self.s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": self.kms_key,
                            },
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
            )
        for database in (lake.raw_database, lake.curated_database):
            self.glue.create_database(DatabaseInput={"Name": database})
        columns = [{"Name": c.name, "Type": GLUE_TYPES[c.type]} for c in self.dataset.kept_columns]
        self.glue.create_table(
            DatabaseName=lake.curated_database,
            TableInput={
                "Name": TABLES[HIVE],
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"classification": "parquet"},
                "PartitionKeys": [{"Name": "dt", "Type": "string"}],
                "StorageDescriptor": {
                    "Columns": columns,
                    "Location": f"s3://{lake.curated}/{layout.curated_prefix(TABLES[HIVE])}",
                    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    "SerdeInfo": {
                        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    },
                },
            },
        )
        iceberg.configure_catalog(self.spark, f"s3a://{lake.curated}/")
        location = f"s3://{lake.curated}/{layout.curated_prefix(TABLES[ICEBERG])}"
        self.spark.sql(
            iceberg.create_table_sql(self.variants[ICEBERG], lake.iceberg_table(), location)
        )

    def upload(self, lake: Lake, text: str, at: datetime) -> str:
        key = layout.batch_upload_key(DATASET, "house_sales.csv", at)
        self.s3.put_object(Bucket=lake.raw, Key=key, Body=text.encode())
        return key

    # ------------------------------------------------------------------------- the job

    def job_arguments(self, lake: Lake, fmt: str, *extra: str) -> list[str]:
        """The platform's curate arguments (default_arguments' layout, s3:// as s3a://)."""
        table = TABLES[fmt]
        curated = f"s3a://{lake.curated}/"
        return [
            "--dataset",
            DATASET,
            "--raw-path",
            f"s3a://{lake.raw}/{layout.raw_prefix(DATASET)}",
            "--curated-path",
            curated + layout.curated_prefix(table),
            "--quarantine-path",
            curated + layout.quarantine_prefix(table),
            "--state-path",
            curated + layout.curate_state_key(table),
            "--reports-path",
            f"s3a://{lake.artifacts}/{layout.curate_report_prefix(table)}",
            "--raw-database",
            lake.raw_database,
            "--curated-database",
            lake.curated_database,
            "--table",
            table,
            "--spec-json",
            self.spec_json[fmt],
            *extra,
        ]

    def curate(self, lake: Lake, fmt: str, *extra: str, log=lambda line: None) -> dict:
        """One curate run: its report, wall seconds and the server's requests during it."""
        args = parse_args(self.job_arguments(lake, fmt, *extra))
        before = self.stats()
        started = time.perf_counter()
        report = run(args, self.spark, glue_factory=lambda: self.glue, log=log)
        seconds = time.perf_counter() - started
        after = self.stats()
        kinds = {
            k: (
                n - before["by_kind"].get(k, 0),
                after["seconds_by_kind"][k] - before["seconds_by_kind"].get(k, 0.0),
            )
            for k, n in after["by_kind"].items()
            if n != before["by_kind"].get(k, 0)
        }
        return {
            "seconds": seconds,
            "report": report,
            "requests": after["requests"] - before["requests"],
            "kinds": kinds,
        }

    # ------------------------------------------------------------------------- the tables

    def objects(self, bucket: str, prefix: str) -> list[str]:
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def files(self, lake: Lake, fmt: str) -> tuple[int, int]:
        """(the table's data files, every object below its prefix)."""
        keys = self.objects(lake.curated, layout.curated_prefix(TABLES[fmt]))
        if fmt == HIVE:
            parquet = sum(k.endswith(".parquet") for k in keys)
            return parquet, len(keys)
        (count,) = self.spark.sql(f"SELECT count(*) FROM {lake.iceberg_table()}.files").first()
        return count, len(keys)

    def rows(self, lake: Lake, fmt: str) -> pd.DataFrame:
        columns = [c.name for c in self.dataset.kept_columns] + ["dt"]
        if fmt == HIVE:
            path = f"s3a://{lake.curated}/{layout.curated_prefix(TABLES[HIVE])}"
            frame = self.spark.read.option("basePath", path).parquet(path)
        else:
            frame = self.spark.table(lake.iceberg_table())
        return frame.select(*columns).toPandas().sort_values("sale_id").reset_index(drop=True)


def same_rows(hive: pd.DataFrame, ice: pd.DataFrame) -> tuple[bool, str]:
    """Whether both tables hold the same rows; if not, what differs."""
    try:
        pd.testing.assert_frame_equal(hive, ice, check_dtype=False)
    except AssertionError:
        only = sorted(set(hive["sale_id"]) ^ set(ice["sale_id"]))
        twice = {
            name: sorted(set(f["sale_id"][f["sale_id"].duplicated()]))
            for name, f in ((HIVE, hive), (ICEBERG, ice))
        }
        return False, (
            f"hive {len(hive):,} rows, iceberg {len(ice):,}; sale_ids in one table only: "
            f"{only[:5]}; sale_ids more than once (the primary key): "
            + "; ".join(f"{name} {len(ids)} {ids[:5]}" for name, ids in twice.items())
        )
    return True, ""


# ----------------------------------------------------------------------------- the bench


def run_steps(platform: Platform, lake: Lake, rows: int, log) -> tuple[list[dict], list[str]]:
    """The three steps for both formats into this lake's tables; per step the measurements,
    and the differences found between the tables (none: the same rows after every step)."""
    platform.make_lake(lake)
    header, first = parse_csv(house_sales_csv(rows, seed=SEED, now=FIRST_UPLOAD))
    first_key = platform.upload(lake, to_csv(header, first), FIRST_UPLOAD)
    upload_day = first_key.split("dt=")[1][:10]
    results, differences = [], []
    for step in STEPS:
        if step.startswith("3"):
            platform.upload(lake, to_csv(header, second_upload(first)), SECOND_UPLOAD)
        extra = ("--dates", upload_day) if step.startswith("2") else ()
        measured = {}
        for fmt in FORMATS:
            measured[fmt] = platform.curate(lake, fmt, *extra, log=log)
            measured[fmt]["files"] = platform.files(lake, fmt)
        frames = {fmt: platform.rows(lake, fmt) for fmt in FORMATS}
        same, why = same_rows(frames[HIVE], frames[ICEBERG])
        if not same:
            differences.append(f"step {step}: {why}")
        measured["rows"] = {fmt: len(frame) for fmt, frame in frames.items()}
        results.append(measured)
    return results, differences


def median(values: list[float]) -> float:
    return statistics.median(values)


def describe(result: dict, fmt: str) -> str:
    report = result["report"]
    if fmt == HIVE:
        return f"{len(report.get('partitions', []))} dt partitions written"
    snapshot = report.get("iceberg", {}).get("snapshot")
    if snapshot is None:
        return "no new snapshot (nothing changed)"
    summary = snapshot["summary"]
    return (
        f"snapshot {snapshot['operation']}: +{summary.get('added-data-files', 0)} "
        f"-{summary.get('deleted-data-files', 0)} data files, "
        f"{summary.get('changed-partition-count', '?')} partitions changed"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400, help="sales (default: the demo's 400)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions (median printed)")
    parser.add_argument("--verbose", action="store_true", help="the curate job's own lines")
    options = parser.parse_args(argv)
    log = print if options.verbose else (lambda line: None)

    spec = load_spec(REPO / "spec")
    dataset = spec.dataset(DATASET)
    region = spec.environment("dev").region
    differences: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-curate-iceberg-") as tmp:
        started = time.perf_counter()
        platform = Platform(Path(tmp), region, dataset)
        try:
            platform.start_spark()
            print(
                f"moto server and Spark up in {time.perf_counter() - started:.1f} s; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
                flush=True,
            )

            # warm-up, not counted: the three steps on a tiny input, into tables of their own
            warm, _ = run_steps(platform, Lake("warm-up"), WARM_UP_ROWS, log)
            print(
                f"warm-up (the three steps, {WARM_UP_ROWS} rows, not counted): "
                + ", ".join(
                    f"{fmt} {sum(r[fmt]['seconds'] for r in warm):.1f} s" for fmt in FORMATS
                ),
                flush=True,
            )

            runs = []
            for repetition in range(1, options.repeat + 1):
                results, found = run_steps(platform, Lake(str(repetition)), options.rows, log)
                runs.append(results)
                differences += [f"repetition {repetition}, {d}" for d in found]
        finally:
            platform.stop()
    load_after = os.getloadavg()[0]

    first = runs[0]
    print(
        f"\nhouse_sales: {options.rows:,} sales in the first upload "
        f"({first[0][HIVE]['report']['rows_in']:,} rows in, "
        f"{first[0][HIVE]['report']['rows_curated']:,} curated, "
        f"{len(first[0][HIVE]['report'].get('partitions', [])):,} dt partitions); the second "
        f"upload: {first[2][HIVE]['report']['rows_in'] - first[0][HIVE]['report']['rows_in']:,} "
        f"rows ({UPDATED_FRACTION:.0%} updated, {NEW_FRACTION:.0%} new)"
    )
    print(
        f"{options.repeat} run(s) of each step per format"
        + (", median seconds" if options.repeat > 1 else "")
        + f"; load average {load_after:.1f} at the end (other processes share the cores)"
    )
    print(
        f"\n{'step':<25}{'hive s':>8}{'iceberg s':>11}{'hive/ice':>10}"
        f"{'hive files':>12}{'ice files (objects)':>21}{'hive req':>10}{'ice req':>9}"
        f"{'rows':>7}"
    )
    for i, step in enumerate(STEPS):
        seconds = {fmt: median([r[i][fmt]["seconds"] for r in runs]) for fmt in FORMATS}
        requests = {fmt: median([r[i][fmt]["requests"] for r in runs]) for fmt in FORMATS}
        last = runs[-1][i]
        ice_files, ice_objects = last[ICEBERG]["files"]
        print(
            f"{step:<25}{seconds[HIVE]:>8.1f}{seconds[ICEBERG]:>11.1f}"
            f"{seconds[HIVE] / seconds[ICEBERG]:>9.1f}x{last[HIVE]['files'][0]:>12,}"
            f"{f'{ice_files:,} ({ice_objects:,})':>21}{requests[HIVE]:>10,.0f}"
            f"{requests[ICEBERG]:>9,.0f}{last['rows'][ICEBERG]:>7,}"
        )
    if options.repeat > 1:
        print("\nseconds of each run:")
        for i, step in enumerate(STEPS):
            print(
                f"  {step:<25}"
                + "; ".join(
                    f"{fmt} " + " ".join(f"{r[i][fmt]['seconds']:.1f}" for r in runs)
                    for fmt in FORMATS
                )
            )
    print("\nwhat each step did (last run):")
    for i, step in enumerate(STEPS):
        last = runs[-1][i]
        print(f"  {step:<25} hive: {describe(last[HIVE], HIVE)}")
        print(f"  {'':<25} iceberg: {describe(last[ICEBERG], ICEBERG)}")
    print("\nwhere the time goes: the server's busiest request kinds (last run; count, server s)")
    for i, step in enumerate(STEPS):
        for fmt in FORMATS:
            kinds = sorted(runs[-1][i][fmt]["kinds"].items(), key=lambda kv: -kv[1][1])[:5]
            server_s = sum(s for _, s in runs[-1][i][fmt]["kinds"].values())
            print(
                f"  {step[:1]} {fmt:<8} {server_s:5.1f} s in the server: "
                + ", ".join(f"{k} {n:,} ({s:.1f} s)" for k, (n, s) in kinds)
            )
    for difference in differences:
        print(f"\nDIFFERENT: {difference}")
    print(f"\nsame rows: {'no' if differences else 'yes'}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
