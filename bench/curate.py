"""Curate benchmark: N messy telecom events (about 5% bad rows, 2% duplicates) cleaned by
the curate transform on local Spark, and by the same cleaning written directly in DuckDB
(the single-node reference), in the same run. Prints rows/s of both, the ratio, peak
memory and the reconciliation counts of both engines.

Usage: python bench/curate.py [N]      (default 1,000,000)
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from dataplatform.paths import REPO_ROOT  # noqa: E402
from dataplatform.spec import Dataset, load_spec  # noqa: E402

BAD_FRACTION = 0.05
DUPLICATE_FRACTION = 0.02


# ----------------------------------------------------------------------------- input


def generate(n: int, seed: int = 42) -> pa.Table:
    """Raw telecom events, every value a string as raw data arrives."""
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    kinds = ["call", "data_session", "support_ticket", "payment"]
    plans = ["prepaid", "postpaid", "family", "business", None]
    columns: dict[str, list] = {
        k: []
        for k in (
            "event_id",
            "customer_id",
            "msisdn",
            "event_type",
            "event_time",
            "plan",
            "duration_s",
            "call_dropped",
            "data_mb",
            "ticket_category",
            "amount_eur",
            "payment_days_late",
            "cell_id",
            "debug_blob",
        )
    }
    n_unique = int(n * (1 - DUPLICATE_FRACTION))
    for i in range(n):
        duplicate = i >= n_unique
        source = rng.randrange(n_unique) if duplicate else i
        kind = kinds[source % 4]
        moment = start + timedelta(seconds=rng.randrange(30 * 86400))
        row = {
            "event_id": f"evt-{source:09d}",
            "customer_id": f"cust-{rng.randrange(100_000):06d}",
            "msisdn": f"+3161{rng.randrange(10**7):07d}",
            "event_type": kind,
            "event_time": moment.isoformat(),
            "plan": rng.choice(plans),
            "duration_s": f"{rng.expovariate(1 / 180):.1f}" if kind == "call" else None,
            "call_dropped": rng.choice(["true", "false", "0"]) if kind == "call" else None,
            "data_mb": f"{rng.expovariate(1 / 50):.2f}" if kind == "data_session" else None,
            "ticket_category": rng.choice(["billing", "network", "device", "other"])
            if kind == "support_ticket"
            else None,
            "amount_eur": f"{rng.uniform(5, 120):.2f}" if kind == "payment" else None,
            "payment_days_late": str(rng.randrange(0, 40)) if kind == "payment" else None,
            "cell_id": f"cell-{rng.randrange(5000)}",
            "debug_blob": "x" * rng.randrange(0, 40),
        }
        if not duplicate and rng.random() < BAD_FRACTION:
            flaw = rng.randrange(5)
            if flaw == 0:
                row["duration_s"] = "N/A"
                row["event_type"] = "call"
            elif flaw == 1:
                row["customer_id"] = None
            elif flaw == 2:
                row["event_type"] = "carrier_pigeon"
            elif flaw == 3:
                row["duration_s"] = "-5"
                row["event_type"] = "call"
            else:
                row["event_time"] = "31/12/2026 25:61"
        for key, value in row.items():
            columns[key].append(value)
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})


# ----------------------------------------------------------------------------- DuckDB reference


def duckdb_sql(dataset: Dataset, source: str) -> str:
    """The curate rules as one DuckDB query over all-string input, generated from the spec."""
    casts = {
        "string": "VARCHAR",
        "int": "INTEGER",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "date": "DATE",
        "timestamp": "TIMESTAMPTZ",
    }

    def typed(c) -> str:
        raw = f"NULLIF(TRIM({c.name}), '')"
        if c.type == "boolean":
            return (
                f"CASE WHEN lower({raw}) IN ('true','1','yes') THEN true "
                f"WHEN lower({raw}) IN ('false','0','no') THEN false END"
            )
        return f"TRY_CAST({raw} AS {casts[c.type]})"

    kept = dataset.kept_columns
    typed_cols = ",\n    ".join(
        f"NULLIF(TRIM({c.name}), '') AS {c.name}__raw, {typed(c)} AS {c.name}" for c in kept
    )
    checks = []
    for c in kept:
        checks.append(
            f"CASE WHEN {c.name}__raw IS NOT NULL AND {c.name} IS NULL THEN '{c.name}:type' END"
        )
        if c.required:
            checks.append(f"CASE WHEN {c.name}__raw IS NULL THEN '{c.name}:required' END")
        if c.allowed:
            values = ", ".join(repr(v) for v in c.allowed)
            checks.append(
                f"CASE WHEN {c.name} IS NOT NULL AND {c.name} NOT IN ({values}) THEN '{c.name}:allowed' END"
            )
        if c.min is not None:
            checks.append(f"CASE WHEN {c.name} < {c.min} THEN '{c.name}:min' END")
        if c.max is not None:
            checks.append(f"CASE WHEN {c.name} > {c.max} THEN '{c.name}:max' END")
    imputed = []
    for c in kept:
        if c.impute is None:
            imputed.append(c.name)
        elif c.impute in ("median", "mean"):
            fn = "median" if c.impute == "median" else "avg"
            imputed.append(f"COALESCE({c.name}, (SELECT {fn}({c.name}) FROM valid)) AS {c.name}")
        elif c.impute == "zero":
            imputed.append(f"COALESCE({c.name}, 0) AS {c.name}")
        else:
            imputed.append(f"COALESCE({c.name}, {c.impute!r}) AS {c.name}")
    pk = ", ".join(dataset.primary_key)
    return f"""
WITH typed AS (
  SELECT {typed_cols}
  FROM {source}),
checked AS (SELECT *, concat_ws(';', {", ".join(checks)}) AS reason FROM typed),
valid AS (SELECT * FROM checked WHERE reason = ''),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY {pk} ORDER BY {dataset.event_time} DESC,
                               hash(*COLUMNS('__raw$'))) AS rank
  FROM valid)
SELECT {", ".join(imputed)}, strftime({dataset.event_time} AT TIME ZONE 'UTC', '%Y-%m-%d') AS dt
FROM ranked WHERE rank = 1"""


# ----------------------------------------------------------------------------- measuring


class PeakMemory:
    """Samples the RSS of this process and its children (Spark's JVM) every 50 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                rss = me.memory_info().rss + sum(
                    c.memory_info().rss for c in me.children(recursive=True)
                )
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_spark(dataset: Dataset, source: Path, out: Path) -> tuple[float, dict]:
    from pyspark.sql import SparkSession

    from dataplatform.jobs.curate_run import configure
    from dataplatform.transforms.curate import curate

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench-curate")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    configure(spark)  # the job's own session settings
    spark.range(1).count()  # JVM start-up is not part of the measurement
    started = time.perf_counter()
    result = curate(spark.read.parquet(str(source)), dataset, raw_dt_column=None)
    result.curated.write.mode("overwrite").parquet(str(out / "spark_curated"))
    result.quarantined.write.mode("overwrite").parquet(str(out / "spark_quarantine"))
    seconds = time.perf_counter() - started
    spark.stop()
    return seconds, result.report


def run_duckdb(dataset: Dataset, source: Path, out: Path) -> tuple[float, dict]:
    con = duckdb.connect()
    con.execute("SET threads = 2")  # the same two cores Spark's local[2] gets
    started = time.perf_counter()
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet('{source}')")
    con.execute(
        f"COPY ({duckdb_sql(dataset, 'raw')}) TO '{out / 'duckdb_curated.parquet'}' (FORMAT parquet)"
    )
    rows_in = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    curated = con.execute(f"SELECT count(*) FROM '{out / 'duckdb_curated.parquet'}'").fetchone()[0]
    sql = duckdb_sql(dataset, "raw")
    checked = sql.split("valid AS")[0].rstrip().rstrip(",")
    quarantined, valid = con.execute(
        f"{checked} SELECT count(*) FILTER (WHERE reason <> ''), count(*) FILTER (WHERE reason = '') FROM checked"
    ).fetchone()
    seconds = time.perf_counter() - started
    return seconds, {
        "rows_in": rows_in,
        "rows_curated": curated,
        "rows_quarantined": quarantined,
        "duplicates_removed": valid - curated,
    }


def main(n: int = 1_000_000) -> None:
    dataset = load_spec(REPO_ROOT / "spec").dataset("telecom_events")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"generating {n:,} messy events ...", flush=True)
        started = time.perf_counter()
        source = out / "raw.parquet"
        pq.write_table(generate(n), source)
        print(
            f"  {time.perf_counter() - started:.1f} s, {source.stat().st_size / 1e6:.1f} MB of all-string Parquet"
        )

        with PeakMemory() as duck_mem:
            duck_s, duck = run_duckdb(dataset, source, out)
        with PeakMemory() as spark_mem:
            spark_s, spark = run_spark(dataset, source, out)

    keys = ("rows_in", "rows_curated", "rows_quarantined", "duplicates_removed")
    print(f"\n{'engine':<28}{'seconds':>9}{'rows/s':>12}{'peak RSS':>11}   " + "  ".join(keys))
    for name, seconds, report, mem in (
        ("Spark local[2] (curate)", spark_s, spark, spark_mem.peak),
        ("DuckDB 2 threads (reference)", duck_s, duck, duck_mem.peak),
    ):
        print(
            f"{name:<28}{seconds:>9.2f}{n / seconds:>12,.0f}{mem / 2**20:>8,.0f} MB   "
            + "  ".join(f"{report[k]:,}" for k in keys)
        )
    print(f"\nSpark / DuckDB time ratio: {spark_s / duck_s:.1f}x")
    agree = all(spark[k] == duck[k] for k in keys)
    print(
        f"reconciliation: Spark {spark['rows_in']:,} = {spark['rows_curated']:,} + "
        f"{spark['rows_quarantined']:,} + {spark['duplicates_removed']:,}; "
        f"counts {'agree' if agree else 'DIFFER'} between the engines"
    )
    print(f"Spark quarantine reasons: {spark.get('quarantined_by_reason')}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
