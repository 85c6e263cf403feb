"""The curate job's I/O shell, shared by the Glue entry point (glue_jobs/curate.py), an
EMR step and the local platform: parse arguments, pick the raw partitions to process,
read them as strings, call the pure transform, write curated and quarantine Parquet with
dynamic partition overwrite (or, for a dataset with `table_format: iceberg`, MERGE the
curated rows by primary key into its Iceberg table: jobs/iceberg.py), write the report,
register partitions in the Glue catalog, and only then move the watermark. A crashed run leaves the watermark where it was, so
running it again is the recovery.

Paths may be s3:// (Glue, EMR), s3a:// (local Spark against moto) or file://; all file
access goes through Hadoop's FileSystem, so one code path serves every scheme.

Which raw partitions feed a run:
- `--dates D1,D2`: every hour of those raw dt partitions (a backfill; the watermark stays);
  for a batch dataset with an event time, every raw partition (see below).
- otherwise incremental: the raw partitions (dt=/hour=) newer than the watermark; then,
  so that a curated dt partition is always rebuilt whole, every hour of the dt days they
  belong to. Curated dt equals raw dt for stream datasets (both from the event time in
  UTC) and for batch datasets without an event time. Batch datasets with an event time
  (raw dt = upload day, curated dt = event day) are rebuilt from all raw partitions, and
  their curated days the rebuild no longer has (all of a day's rows moved to another day)
  are removed with their catalog partitions (an Iceberg table's MERGE needs neither).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dataplatform import layout
from dataplatform.spec import Dataset, bundled_dataset, load_compiled_dataset

if TYPE_CHECKING:
    from dataplatform.naming import Names

PARTITION_PATTERN = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{2}))?$")
MALFORMED_REASON = "_line:malformed_json"
CORRUPT_COLUMN = "_raw_line"


# ----------------------------------------------------------------------------- arguments

# Glue's --TempDir for a job: s3://<artifacts>/tmp/glue/<job name>/
GLUE_TEMP_PREFIX = "tmp/glue/"


def default_arguments(dataset: Dataset, names: Names) -> dict[str, str]:
    """The job's default arguments: the Glue job (CatalogStack) and the local platform's
    spark-submit both use exactly these."""
    ds = dataset.name
    curated = f"s3://{names.curated_bucket}/"
    return {
        "--dataset": ds,
        "--raw-path": f"s3://{names.raw_bucket}/{layout.raw_prefix(ds)}",
        "--curated-path": curated + layout.curated_prefix(ds),
        "--quarantine-path": curated + layout.quarantine_prefix(ds),
        "--state-path": curated + layout.curate_state_key(ds),
        "--reports-path": f"s3://{names.artifacts_bucket}/{layout.curate_report_prefix(ds)}",
        "--raw-database": names.raw_database,
        "--curated-database": names.curated_database,
        "--table": names.table(ds),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Curate one dataset: raw -> curated")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--raw-path", required=True, help="raw prefix of the dataset")
    parser.add_argument("--curated-path", required=True)
    parser.add_argument("--quarantine-path", required=True)
    parser.add_argument("--state-path", required=True, help="the watermark's JSON object")
    parser.add_argument("--reports-path", required=True)
    parser.add_argument("--raw-database", required=True)
    parser.add_argument("--curated-database", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--dates", default="", help="D1,D2: reprocess these raw dt days")
    parser.add_argument("--run-id", default="")
    parser.add_argument(
        "--spec-json",
        default="",
        help="compiled spec; default: the one inside the dataplatform library",
    )
    parser.add_argument(
        "--no-catalog",
        action="store_true",
        help="skip Glue catalog registration (tests on plain files)",
    )
    # Glue passes its own arguments (--JOB_NAME, --JOB_RUN_ID, --TempDir, ...): tolerated.
    args, extras = parser.parse_known_args(argv)
    glue_run_id = _glue_argument(extras, "--JOB_RUN_ID")
    args.run_id = (
        args.run_id
        or glue_run_id
        or (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8])
    )
    args.dates = [d.strip() for d in args.dates.split(",") if d.strip()]
    for d in args.dates:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d):
            parser.error(f"--dates: {d!r} is not a date like 2026-11-20")
    for name in ("raw_path", "curated_path", "quarantine_path", "reports_path"):
        setattr(args, name, getattr(args, name).rstrip("/") + "/")
    return args


def _glue_argument(extras: list[str], name: str) -> str:
    for i, arg in enumerate(extras):
        if arg == name and i + 1 < len(extras):
            return extras[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return ""


def load_dataset(args: argparse.Namespace) -> Dataset:
    """--spec-json if given, else the compiled spec inside the library (the zip on Glue and
    EMR), else the spec/ folder of a source checkout."""
    if args.spec_json:
        return load_compiled_dataset(args.spec_json, args.dataset)
    bundled = bundled_dataset(args.dataset)
    if bundled is not None:
        return bundled
    from dataplatform.paths import REPO_ROOT
    from dataplatform.spec import load_spec

    return load_spec(REPO_ROOT / "spec").dataset(args.dataset)


# ----------------------------------------------------------------------------- Spark and files


def spark_session(app_name: str):
    """GlueContext's session where Glue's Java classes exist, a plain SparkSession elsewhere
    (importing awsglue is not proof: its Java side is missing outside Glue)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(app_name).getOrCreate()
    try:
        from awsglue.context import GlueContext  # type: ignore[import-not-found]

        spark = GlueContext(spark.sparkContext).spark_session
    except Exception:
        pass
    configure(spark)
    return spark


def configure(spark) -> None:
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    # dt=2026-11-20 and hour=07 stay strings (Spark would make them a date and the int 7).
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    # The transform caches its validated rows once; compressing that cache cost more time
    # than the whole rest of the job (bench/curate.py: 29 s -> 16 s for 1M rows) and it
    # spills to disk rather than failing when memory is short.
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")


class HadoopFiles:
    """Small files and listings through Hadoop's FileSystem (s3://, s3a://, file://)."""

    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, path: str):
        jpath = self._jvm.org.apache.hadoop.fs.Path(path)
        return jpath, jpath.getFileSystem(self._conf)

    def exists(self, path: str) -> bool:
        jpath, fs = self._fs(path)
        return fs.exists(jpath)

    def read_text(self, path: str) -> str | None:
        jpath, fs = self._fs(path)
        if not fs.exists(jpath):
            return None
        stream = fs.open(jpath)
        try:
            reader = self._jvm.java.io.BufferedReader(
                self._jvm.java.io.InputStreamReader(stream, "UTF-8")
            )
            lines = []
            line = reader.readLine()
            while line is not None:
                lines.append(line)
                line = reader.readLine()
            return "\n".join(lines)
        finally:
            stream.close()

    def write_text(self, path: str, text: str) -> None:
        jpath, fs = self._fs(path)
        stream = fs.create(jpath, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def delete(self, path: str) -> None:
        jpath, fs = self._fs(path)
        fs.delete(jpath, True)

    def list_partitions(self, root: str) -> list[str]:
        """`dt=.../hour=...` (or `dt=...`) folders below root that hold files, sorted."""
        jroot, fs = self._fs(root)
        if not fs.exists(jroot):
            return []
        found = set()
        files = fs.listFiles(jroot, True)
        root_uri = jroot.toUri().getPath().rstrip("/") + "/"
        while files.hasNext():
            status = files.next()
            file_path = status.getPath().toUri().getPath()
            name = file_path.rsplit("/", 1)[-1]
            if name.startswith(("_", ".")):
                continue
            relative = (
                file_path[len(root_uri) :].rsplit("/", 1)[0]
                if file_path.startswith(root_uri)
                else ""
            )
            if PARTITION_PATTERN.match(relative):
                found.add(relative)
        return sorted(found)


# ----------------------------------------------------------------------------- partition choice


@dataclass(frozen=True)
class Plan:
    partitions: list[str]  # raw partitions (dt=.../hour=...) to read
    new_watermark: str | None  # the newest raw partition seen; None: leave the watermark
    # the run's output is the whole curated table (a rebuild from every raw partition): a
    # curated day it does not write holds only rows that moved to other days, and goes
    complete: bool = False


def plan_partitions(
    available: list[str], dataset: Dataset, *, dates: list[str], watermark: str | None
) -> Plan:
    """Pure: which raw partitions a run reads, and where the watermark goes after it."""

    def day(partition: str) -> str:
        return _partition_match(partition).group(1)

    rebuild_all = dataset.rebuilt_from_all_raw
    if dates:
        if rebuild_all:
            return Plan(list(available), None, complete=True)
        wanted = set(dates)
        return Plan([p for p in available if day(p) in wanted], None)
    new = [
        p for p in available if watermark is None or _partition_key(p) > _partition_key(watermark)
    ]
    if not new:
        return Plan([], None)
    if rebuild_all:
        return Plan(list(available), new[-1], complete=True)
    touched_days = {day(p) for p in new}
    return Plan([p for p in available if day(p) in touched_days], max(new, key=_partition_key))


def _partition_key(partition: str) -> tuple[str, str]:
    match = _partition_match(partition)
    return match.group(1), match.group(2) or ""


def _partition_match(partition: str) -> re.Match[str]:
    match = PARTITION_PATTERN.match(partition)
    if match is None:
        raise ValueError(f"not a raw partition (dt=YYYY-MM-DD[/hour=HH]): {partition!r}")
    return match


# ----------------------------------------------------------------------------- reading raw


def raw_read_paths(raw_path: str, partitions: list[str]) -> list[str]:
    """Pure: Spark's input paths for these raw partitions, one glob per day
    (`dt=D/hour={00,01,...}/`, and one `dt={D1,D2,...}/` for partitions without hours)
    instead of one path per partition. Spark checks that each plain path exists before it
    lists it (a HEAD and a LIST on S3); a glob is expanded by listing its parent once. For
    the demo's 1,056 hourly objects: 3,169 S3 requests before reading became 1,103."""
    hours_by_day: dict[str, list[str]] = {}
    whole_days: list[str] = []
    for partition in partitions:
        day, hour = _partition_match(partition).groups()
        if hour is None:
            whole_days.append(day)
        else:
            hours_by_day.setdefault(day, []).append(hour)
    paths = [
        f"{raw_path}dt={day}/hour={{{','.join(sorted(hours))}}}/"
        for day, hours in sorted(hours_by_day.items())
        if day not in whole_days
    ]  # a whole day's glob has its hours already
    if whole_days:
        paths.append(f"{raw_path}dt={{{','.join(sorted(whole_days))}}}/")
    return paths


def read_raw(spark, dataset: Dataset, raw_path: str, partitions: list[str]):
    """Raw rows with every column a string, plus the raw `dt`/`hour` partition columns,
    cached, and the cached lines they came from (None for CSV): release both after use.
    JSON lines become a map first, so unknown keys (schema drift) are seen and a line that
    is not a JSON object is kept, whole, in `_raw_line` for the quarantine. The lines are
    cached before the key scan, so the input is read from storage once, not once for the
    keys and again for the rows (on S3 that is two GETs and HEADs per raw object saved)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    paths = raw_read_paths(raw_path, partitions)
    reader = spark.read.option("basePath", raw_path)
    if dataset.format == "csv":
        return reader.option("header", True).option("multiLine", False).csv(paths).cache(), None
    lines = reader.text(paths).where(F.length(F.trim("value")) > 0).cache()
    parsed = lines.withColumn(
        # pyspark's annotation omits MapType, which from_json takes (its docs: "DataType or str")
        "_map",
        F.from_json("value", T.MapType(T.StringType(), T.StringType())),  # type: ignore[arg-type]
    )
    keys = sorted(k for (k,) in parsed.select(F.explode(F.map_keys("_map"))).distinct().collect())
    partition_columns = [c for c in ("dt", "hour") if c in parsed.columns]
    columns = [F.col("_map").getItem(k).alias(k) for k in keys if k not in partition_columns]
    rows = parsed.select(
        *columns,
        *partition_columns,
        F.when(F.col("_map").isNull(), F.col("value")).alias(CORRUPT_COLUMN),
    )
    return rows.cache(), lines


# ----------------------------------------------------------------------------- the catalog


def register_partitions(glue, *, database: str, table: str, days: Iterable[str]) -> dict:
    """Create the curated table's missing dt partitions and update existing ones (same
    storage descriptor as the table, location <table location>dt=<day>/)."""
    table_sd = glue.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"]
    location = table_sd["Location"].rstrip("/") + "/"
    existing: set[tuple[str, ...]] = set()
    for page in glue.get_paginator("get_partitions").paginate(
        DatabaseName=database, TableName=table
    ):
        existing.update(tuple(p["Values"]) for p in page["Partitions"])

    def partition_input(day: str) -> dict:
        sd = {
            k: v
            for k, v in table_sd.items()
            if k
            in ("Columns", "InputFormat", "OutputFormat", "SerdeInfo", "Compressed", "Parameters")
        }
        return {"Values": [day], "StorageDescriptor": {**sd, "Location": f"{location}dt={day}/"}}

    days = sorted(set(days))
    created = [d for d in days if (d,) not in existing]
    updated = [d for d in days if (d,) in existing]
    for start in range(0, len(created), 100):  # BatchCreatePartition takes 100 at a time
        response = glue.batch_create_partition(
            DatabaseName=database,
            TableName=table,
            PartitionInputList=[partition_input(d) for d in created[start : start + 100]],
        )
        if response.get("Errors"):
            raise RuntimeError(
                f"Glue refused partitions of {database}.{table}: {response['Errors']}"
            )
    # BatchUpdatePartition takes 100 too: a rerun of 240 days is 3 calls, not 240
    for start in range(0, len(updated), 100):
        response = glue.batch_update_partition(
            DatabaseName=database,
            TableName=table,
            Entries=[
                {"PartitionValueList": [d], "PartitionInput": partition_input(d)}
                for d in updated[start : start + 100]
            ],
        )
        if response.get("Errors"):
            raise RuntimeError(
                f"Glue refused partition updates of {database}.{table}: {response['Errors']}"
            )
    return {"created": created, "updated": updated}


def remove_stale_days(files: HadoopFiles, curated_path: str, written: list[str]) -> list[str]:
    """After a complete rebuild, the curated `dt=` folders it did not write (every row of
    theirs moved to another day, say a sale whose date was corrected): deleted, so no stale
    copy of a row stays beside the new one. The days removed."""
    kept = set(written)
    stale = sorted(
        p.split("=", 1)[1]
        for p in files.list_partitions(curated_path)
        if p.startswith("dt=") and "/" not in p and p.split("=", 1)[1] not in kept
    )
    for day in stale:
        files.delete(f"{curated_path}dt={day}")
    return stale


def deregister_partitions(glue, *, database: str, table: str, days: list[str]) -> list[str]:
    """Remove these dt partitions from the catalog (25 at a time, BatchDeletePartition's
    limit); the days removed."""
    for start in range(0, len(days), 25):
        response = glue.batch_delete_partition(
            DatabaseName=database,
            TableName=table,
            PartitionsToDelete=[{"Values": [d]} for d in days[start : start + 25]],
        )
        errors = [
            e
            for e in response.get("Errors", [])
            if e["ErrorDetail"]["ErrorCode"] != "EntityNotFoundException"
        ]
        if errors:
            raise RuntimeError(f"Glue refused removing partitions of {database}.{table}: {errors}")
    return list(days)


def glue_client():
    import boto3

    return boto3.client("glue")


# ----------------------------------------------------------------------------- the run


def run(
    args: argparse.Namespace,
    spark,
    *,
    glue_factory: Callable = glue_client,
    log: Callable[[str], None] = print,
) -> dict:
    from dataplatform.transforms.curate import check_reconciliation, curate

    started = time.perf_counter()
    configure(spark)  # dynamic overwrite above all: a rerun must replace only its partitions
    dataset = load_dataset(args)
    files = HadoopFiles(spark)
    state_text = files.read_text(args.state_path)
    watermark = json.loads(state_text)["processed_through"] if state_text else None
    available = files.list_partitions(args.raw_path)
    plan = plan_partitions(available, dataset, dates=args.dates, watermark=watermark)
    log(
        f"curate {dataset.name}: {len(available)} raw partitions, watermark {watermark}, "
        f"reading {len(plan.partitions)}"
    )

    report: dict = {
        "dataset": dataset.name,
        "run_id": args.run_id,
        "mode": "dates" if args.dates else "incremental",
        "raw_partitions": plan.partitions,
        "watermark_before": watermark,
    }
    if plan.partitions:
        raw, raw_lines = read_raw(spark, dataset, args.raw_path, plan.partitions)
        malformed = (
            raw.where(raw[CORRUPT_COLUMN].isNotNull()) if CORRUPT_COLUMN in raw.columns else None
        )
        rows = (
            raw.where(raw[CORRUPT_COLUMN].isNull()).drop(CORRUPT_COLUMN)
            if malformed is not None
            else raw
        )
        rows = rows.drop("hour") if "hour" in rows.columns else rows
        result = curate(rows, dataset, raw_dt_column="dt" if "dt" in rows.columns else None)
        report.update(result.report)
        quarantined = result.quarantined
        if malformed is not None:
            malformed_count = malformed.count()
            if malformed_count:
                quarantined = quarantined.unionByName(
                    _malformed_rows(malformed, dataset), allowMissingColumns=True
                )
                report["rows_in"] += malformed_count
                report["rows_quarantined"] += malformed_count
                by_reason = report.setdefault("quarantined_by_reason", {})
                by_reason[MALFORMED_REASON] = by_reason.get(MALFORMED_REASON, 0) + malformed_count
        check_reconciliation(report)

        if dataset.is_iceberg:
            report["table_format"] = "iceberg"
            report["iceberg"] = merge_into_iceberg(spark, args, dataset, result.curated, log)
        else:
            result.curated.write.mode("overwrite").partitionBy("dt").parquet(args.curated_path)
        quarantined.write.mode("overwrite").partitionBy("dt").parquet(args.quarantine_path)
        result.release()
        raw.unpersist()
        if raw_lines is not None:
            raw_lines.unpersist()
        stale: list[str] = []
        # Iceberg's MERGE replaced the rows itself; and with no raw row read at all (raw
        # gone?), nothing says a curated day is stale
        if plan.complete and not dataset.is_iceberg and report["rows_in"] > 0:
            stale = remove_stale_days(files, args.curated_path, report.get("partitions", []))
            report["partitions_removed"] = stale
        if not args.no_catalog and not dataset.is_iceberg:  # Iceberg keeps its own partitions
            glue = glue_factory()
            report["catalog"] = register_partitions(
                glue,
                database=args.curated_database,
                table=args.table,
                days=report.get("partitions", []),
            )
            if stale:
                report["catalog"]["removed"] = deregister_partitions(
                    glue, database=args.curated_database, table=args.table, days=stale
                )
    else:
        report.update(
            {
                "rows_in": 0,
                "rows_curated": 0,
                "rows_quarantined": 0,
                "duplicates_removed": 0,
                "partitions": [],
            }
        )

    report["seconds"] = round(time.perf_counter() - started, 3)
    report["watermark_after"] = plan.new_watermark or watermark
    files.write_text(
        f"{args.reports_path}{args.run_id}.json", json.dumps(report, indent=1, default=str)
    )
    if plan.new_watermark:  # last: a run that failed before here is simply run again
        files.write_text(
            args.state_path,
            json.dumps(
                {
                    "dataset": dataset.name,
                    "processed_through": plan.new_watermark,
                    "run_id": args.run_id,
                    "updated_at": datetime.now(UTC).isoformat(),
                }
            ),
        )
    log(
        f"curate {dataset.name}: in {report['rows_in']}, curated {report['rows_curated']}, "
        f"quarantined {report['rows_quarantined']}, duplicates removed "
        f"{report['duplicates_removed']}, partitions {len(report.get('partitions', []))}, "
        f"{report['seconds']} s"
    )
    return report


def merge_into_iceberg(spark, args: argparse.Namespace, dataset: Dataset, curated, log) -> dict:
    """The batch MERGEd by primary key into the Iceberg table `glue_catalog.<db>.<table>`
    (dataplatform/jobs/iceberg.py), its schema first brought to the spec's."""
    from dataplatform.jobs import iceberg

    bucket = args.curated_path.split("://", 1)[1].split("/", 1)[0]
    scheme = args.curated_path.split("://", 1)[0]
    iceberg.configure_catalog(spark, f"{scheme}://{bucket}/")
    table = iceberg.table_name(args.curated_database, args.table)
    outcome = iceberg.merge(spark, dataset, table, curated, log=log)
    snapshot = outcome["snapshot"]
    summary = snapshot["summary"] if snapshot else {}
    log(
        f"curate {dataset.name}: MERGE into {table}: "
        + (
            f"snapshot {snapshot['snapshot_id']} ({snapshot['operation']}), "
            f"{summary.get('total-records', '?')} rows in the table"
            if snapshot
            else "nothing changed, no new snapshot"
        )
    )
    return outcome


def _malformed_rows(malformed, dataset: Dataset):
    from pyspark.sql import functions as F

    return malformed.select(
        F.col(CORRUPT_COLUMN),
        F.lit(MALFORMED_REASON).alias("reason"),
        F.coalesce(F.col("dt"), F.lit("__unknown__")).alias("dt")
        if "dt" in malformed.columns
        else F.lit("__unknown__").alias("dt"),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = spark_session(f"curate-{args.dataset}")
    run(args, spark)
    return 0
