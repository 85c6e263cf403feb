"""Real-time scoring on the local platform: events per second through the stream scorer
(the Lambda's code: curate rules, online features in DynamoDB, the local endpoint, scores,
HighChurnRisk events) and the end-to-end latency from PutRecords to the written score
(p50, p95, p99), against a reference in the same run: the batch path's time for the same
events (Firehose delivery, crawl, the curate job and the customer_features step on local
Spark) before a score could use them.

Setup (not timed): a fresh local platform, N customers' demo events ingested and trained
on (the churn model, approved and served on 127.0.0.1).

Usage: python bench/realtime.py [N_CUSTOMERS]      (default 300)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dataplatform import demo  # noqa: E402
from dataplatform.bundle import stage_job_code  # noqa: E402
from dataplatform.runtime.local import provision, server  # noqa: E402
from dataplatform.runtime.local.platform import LocalPlatform  # noqa: E402
from dataplatform.spec import load_spec  # noqa: E402

CHUNK = 25  # records per PutRecords while the scorer follows the stream
CHUNK_PAUSE_S = 0.05


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 300
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        state = Path(tmp) / "dp"
        os.environ["DP_HOME"] = str(state)
        spec = load_spec(REPO / "spec")
        server.up(state)
        try:
            local = LocalPlatform(spec, "dev", state_dir=state)
            provision.provision(
                spec,
                local.settings,
                local.names,
                local.client,
                job_code_dir=stage_job_code(spec, state / "build"),
            )
            events = demo.telecom_events(n, seed=3)
            telecom = local.dataset("telecom_events")
            started = time.perf_counter()
            local.ingest(telecom, events)  # Kinesis, then the local Firehose delivery
            local.crawl(telecom)
            local.curate(telecom)
            local.features("customer_features", as_of=demo.demo_as_of())
            batch_seconds = time.perf_counter() - started
            run = local.train("churn")
            version = int(run.package_arn.rsplit("/", 1)[1])
            approved_at = datetime.now(UTC)
            local.approve("churn", version)  # the deployer Lambda rolls the endpoint
            local.serve("churn")  # its scorer mapping starts on the stream's history

            started = time.perf_counter()
            history = local.score("churn", since=approved_at)  # caught up with the history
            score_seconds = time.perf_counter() - started

            # a fresh day put in chunks while the scorer's mapping reads in the background:
            # each event's latency is its put to its score, from the scorer's own log lines
            fresh = demo.fresh_day_events(n, seed=29)
            before_fresh = datetime.now(UTC)
            kinesis = local.client("kinesis")
            stream = local.names.stream("telecom_events")
            import json

            for start in range(0, len(fresh), CHUNK):
                chunk = fresh[start : start + CHUNK]
                kinesis.put_records(
                    StreamName=stream,
                    Records=[
                        {"Data": json.dumps(e).encode(), "PartitionKey": e["customer_id"]}
                        for e in chunk
                    ],
                )
                time.sleep(CHUNK_PAUSE_S)
            latencies = local.score("churn", since=before_fresh).latencies
        finally:
            server.down(state)

    rate = history.records / score_seconds if score_seconds else float("nan")
    print(f"events: {len(events):,} ({n} customers); fresh day: {len(fresh):,} events")
    print(
        f"batch path (delivery, crawl, curate, features on local Spark): {batch_seconds:.1f} s, "
        f"{len(events) / batch_seconds:,.0f} events/s"
    )
    print(
        f"stream scorer: {history.records:,} events in {score_seconds:.1f} s, {rate:,.0f} "
        f"events/s, {history.scored:,} scores written"
    )
    if latencies:
        print(
            f"latency PutRecords -> score written, {len(latencies):,} events: "
            f"p50 {percentile(latencies, 50):.2f} s, p95 {percentile(latencies, 95):.2f} s, "
            f"p99 {percentile(latencies, 99):.2f} s"
        )
    print(f"ratio {batch_seconds / score_seconds:.2f}  (batch path seconds / scorer seconds)")


if __name__ == "__main__":
    main(sys.argv[1:])
