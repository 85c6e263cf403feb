"""The local Athena over raw JSON: one query over a raw table of many small objects (one per
hour, as Firehose delivers them), in one run, on the same data, read two ways:
- the reference: a LIST per partition and a GET per file, one request at a time (the
  engine before it listed tables whole and kept requests in flight);
- the engine: one listing of the table split by partition, and S3_REQUESTS_IN_FLIGHT
  GETs at a time.

Input: N messy telecom events (bench/curate.py's generator) as gzip JSON lines in
dt=/hour= folders, 720 objects, registered as the raw table's partitions by the crawler.

Prints, for each setting, the seconds, rows/s and bytes scanned of `SELECT count(*)` over
the whole raw table (its best of three), and on its last line `speedup N.NN`: the
reference's time over the engine's.

Usage: python bench/local_query.py [N]      (default N: 100,000)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from local_platform import DATASET, raw_objects  # noqa: E402  (the same raw layout)

from dataplatform import layout  # noqa: E402
from dataplatform.bundle import stage_job_code  # noqa: E402
from dataplatform.runtime.local import provision, server  # noqa: E402
from dataplatform.runtime.local.athena import catalog  # noqa: E402
from dataplatform.runtime.local.platform import LocalPlatform  # noqa: E402
from dataplatform.spec import load_spec  # noqa: E402

RUNS = 3


def best_query(local, sql: str) -> tuple[float, int, int]:
    """The fastest of RUNS runs: (seconds, rows counted, bytes scanned)."""
    best = None
    for _ in range(RUNS):
        started = time.perf_counter()
        result = local.query(sql)
        seconds = time.perf_counter() - started
        if best is None or seconds < best[0]:
            best = (seconds, int(result.rows[0][0]), result.bytes_scanned)
    assert best is not None
    return best


def main(argv: list[str]) -> int:
    n = int(next((a for a in argv if a.isdigit()), 100_000))
    spec = load_spec(REPO / "spec")
    with tempfile.TemporaryDirectory(prefix="bench-local-query-") as tmp:
        state = Path(tmp) / "dp"
        server.up(state)
        try:
            local = LocalPlatform(spec, "dev", state_dir=state)
            job_code = stage_job_code(spec, state / "build")
            provision.provision(
                spec, local.settings, local.names, local.client, job_code_dir=job_code
            )
            objects = raw_objects(n)
            for key, body in objects.items():
                local.s3.put_object(
                    Bucket=local.names.raw_bucket, Key=layout.raw_prefix(DATASET) + key, Body=body
                )
            local.crawl(local.dataset(DATASET))
            print(f"input: {n:,} events in {len(objects)} raw objects, crawled", flush=True)
            sql = f"SELECT count(*) FROM {local.names.raw_database}.{DATASET}"
            engine = (catalog.S3_REQUESTS_IN_FLIGHT, catalog._list_partitions)

            def a_list_each(s3, _table_location, locations, _partitions_in_table):
                return [catalog._list(s3, location) for location in locations]

            timings = {}
            for name, in_flight, list_partitions in (
                ("reference: a LIST per partition, 1 request at a time", 1, a_list_each),
                (f"engine: one table listing, {engine[0]} requests in flight", *engine),
            ):
                catalog.S3_REQUESTS_IN_FLIGHT = in_flight
                catalog._list_partitions = list_partitions
                seconds, rows, scanned = best_query(local, sql)
                timings[name] = seconds
                print(
                    f"{name}: {seconds:5.2f} s, {rows / seconds:9,.0f} rows/s, "
                    f"{scanned:,} bytes scanned ({rows:,} rows)",
                    flush=True,
                )
            catalog.S3_REQUESTS_IN_FLIGHT, catalog._list_partitions = engine
        finally:
            server.down(state)
    reference, engine_time = timings.values()
    print(f"speedup {reference / engine_time:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
