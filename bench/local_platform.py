"""The local platform against local files: the same curate job (glue_jobs/curate.py, as
deployed) over the same generated raw input, once with file:// paths and once as the
platform runs it (the Glue job's definition in moto, s3a:// against the moto server), on
the same warm Spark driver, in one run. Then, unless --no-demo, `dp demo` in a fresh state
folder with the time of each of its phases.

Input: N messy telecom events (bench/curate.py's generator: 5% bad rows, 2% duplicates,
30 days) as gzip JSON lines in dt=/hour= folders, one object per hour, the way Firehose
delivers them (720 objects).

Prints rows/s of both runs, the platform's S3 requests, and on its last line
`ratio N.NN`: how many times longer the platform run took than the local-files run.

Usage: python bench/local_platform.py [N] [--no-demo]      (default N: 1,000,000)
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from curate import generate  # noqa: E402  (bench/curate.py: the same messy events)

from dataplatform import layout  # noqa: E402
from dataplatform.bundle import stage_job_code  # noqa: E402
from dataplatform.jobs.curate_run import default_arguments  # noqa: E402
from dataplatform.runtime.local import glue_job, provision, server  # noqa: E402
from dataplatform.runtime.local.moto_main import STATS_PATH  # noqa: E402
from dataplatform.runtime.local.platform import LocalPlatform  # noqa: E402
from dataplatform.spec import load_spec  # noqa: E402

DATASET = "telecom_events"
PARTITION_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})")


def raw_objects(n: int) -> dict[str, bytes]:
    """Relative key (dt=.../hour=.../part.json.gz) -> gzip JSON lines. Rows whose event time
    cannot be read go to the first hour, where the curate job quarantines them."""
    table = generate(n)
    by_hour: dict[str, list[str]] = defaultdict(list)
    first = None
    for row in table.to_pylist():
        match = PARTITION_TIME.match(row["event_time"] or "")
        key = f"dt={match.group(1)}/hour={match.group(2)}" if match else None
        first = first or key
        by_hour[key or "__unreadable__"].append(
            json.dumps({k: v for k, v in row.items() if v is not None})
        )
    by_hour[first] += by_hour.pop("__unreadable__", [])
    return {
        f"{key}/events.json.gz": gzip.compress(("\n".join(lines) + "\n").encode(), 1)
        for key, lines in sorted(by_hour.items())
    }


def requests_answered(info) -> int:
    """Requests the moto server answered so far (moto_main's counter)."""
    with urllib.request.urlopen(info.endpoint + STATS_PATH, timeout=5) as response:
        return json.load(response)["requests"]


def bench_curate(n: int, work: Path) -> float:
    spec = load_spec(REPO / "spec")
    state = work / "dp"
    info, _ = server.up(state)
    try:
        local = LocalPlatform(spec, "dev", state_dir=state)
        job_code = stage_job_code(spec, state / "build")
        provision.provision(spec, local.settings, local.names, local.client, job_code_dir=job_code)
        dataset = local.dataset(DATASET)

        started = time.perf_counter()
        objects = raw_objects(n)
        files_root = work / "files"
        for key, body in objects.items():
            path = files_root / "raw" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            local.s3.put_object(
                Bucket=local.names.raw_bucket, Key=layout.raw_prefix(DATASET) + key, Body=body
            )
        print(
            f"input: {n:,} events in {len(objects)} raw objects "
            f"({sum(map(len, objects.values())) / 2**20:.1f} MiB gzip), "
            f"generated and uploaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        script_uri = local.glue.get_job(JobName=local.names.curate_job(DATASET))["Job"]["Command"][
            "ScriptLocation"
        ]  # the deployed glue_jobs/curate.py, as the platform runs it

        def files_run(run_id: str) -> glue_job.LocalJobRun:
            root = f"file://{files_root}/"
            arguments = {
                **default_arguments(dataset, local.names),
                "--raw-path": root + "raw/",
                "--curated-path": root + "curated/",
                "--quarantine-path": root + "quarantine/",
                "--state-path": root + f"state/{run_id}.json",
                "--reports-path": root + "reports/",
                "--no-catalog": "",
                "--run-id": run_id,
            }
            return glue_job.spark_submit(
                local.s3,
                script_uri=script_uri,
                name="bench-curate-files",
                arguments=arguments,
                run_id=run_id,
                info=info,
                region=local.settings.region,
                runs_dir=state / "runs",
                library_zip=job_code / "lib" / "dataplatform.zip",
            )

        warm = files_run("bench-warm-up")  # starts the driver, warms its JVM
        print(f"warm-up (driver start included): {warm.seconds:.1f} s", flush=True)
        files = files_run("bench-files")
        before = requests_answered(info)
        platform = local.curate(dataset)
        requests = requests_answered(info) - before
        rows = platform.report["rows_in"]
        files_rate, platform_rate = rows / files.seconds, rows / platform.seconds
        print(
            f"local files:    {rows:,} rows in {files.seconds:6.1f} s = {files_rate:9,.0f} rows/s"
        )
        print(
            f"local platform: {rows:,} rows in {platform.seconds:6.1f} s = {platform_rate:9,.0f} rows/s"
            + f", {requests:,} requests to moto"
        )
        print(
            f"curated {platform.report['rows_curated']:,}, quarantined "
            f"{platform.report['rows_quarantined']:,}, duplicates removed "
            f"{platform.report['duplicates_removed']:,} (both runs: the same job)"
        )
        ratio = platform.seconds / files.seconds
    finally:
        server.down(state)
    return ratio


def bench_demo(work: Path) -> None:
    """`dp demo` in a fresh state folder; the time of each phase from its step lines."""
    env = {**os.environ, "DP_HOME": str(work / "demo-dp"), "COLUMNS": "200"}  # whole step lines
    started = time.perf_counter()
    marks: list[tuple[float, str]] = []
    jobs: list[str] = []
    with subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "dp"), "demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        for line in demo.stdout:
            now = time.perf_counter() - started
            step = re.search(r"─ (\d+/\d+ .+?)(?: \(\+\d+ s\)|…)", line)
            if step:
                marks.append((now, step.group(1)))
            if re.search(r"SUCCEEDED in [\d.]+ s|training job \S+ in [\d.]+ s", line):
                jobs.append(line.strip()[:110])
        code = demo.wait()
    total = time.perf_counter() - started
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "dp"), "local", "down"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"dp demo: {total:.1f} s (exit {code}); phases:")
    if not marks:
        print("  (no step lines: dp demo's output format changed; see its output)")
    ends = [at for at, _ in marks[1:]] + [total]
    for (at, title), end in zip(marks, ends, strict=True):
        print(f"  {end - at:6.1f} s  {title}")
    for job in jobs:
        print(f"          {job}")


def main(argv: list[str]) -> int:
    n = int(next((a for a in argv if a.isdigit()), 1_000_000))
    with tempfile.TemporaryDirectory(prefix="bench-local-platform-") as tmp:
        work = Path(tmp)
        if "--no-demo" not in argv:
            bench_demo(work)
        ratio = bench_curate(n, work)
    print(f"ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
