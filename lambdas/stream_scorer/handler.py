"""Stream scorer Lambda: a thin adapter over `dataplatform.online.scorer.score_batch`. A
Kinesis batch (its own enhanced fan-out consumer) in; a partial batch response out, naming
the first record to retry from when a step failed (the event source mapping retries from
there, bisects on error and sends what still fails to the on-failure queue). Settings come
from the environment (the serving stack sets them); the dataset's rules from the compiled
spec.json bundled with the function. One function per served model (churn, clv, ...):
which model, its inputs, its score and its event are its environment's."""

from __future__ import annotations

import base64
import json
import os
import time
from functools import cache
from pathlib import Path

import boto3

from dataplatform.online.scorer import ScorerConfig, StreamRecord, score_batch
from dataplatform.spec import load_compiled_dataset

SPEC_PATH = Path(__file__).with_name("spec.json")


@cache
def config() -> ScorerConfig:
    return ScorerConfig.from_environment(
        os.environ, load_compiled_dataset(SPEC_PATH, os.environ["DATASET"])
    )


@cache
def client(service: str):
    return boto3.client(service)


def records_of(event: dict) -> list[StreamRecord]:
    return [
        StreamRecord(
            record_id=r["kinesis"]["sequenceNumber"],
            data=base64.b64decode(r["kinesis"]["data"]),
            arrived=r["kinesis"].get("approximateArrivalTimestamp"),
        )
        for r in event.get("Records", [])
    ]


def handler(event: dict, context: object, clients=client) -> dict:
    records = records_of(event)
    result = score_batch(records, clients, config())
    finished = time.time()
    done = (
        len(records)
        if result.failed_from is None
        else [r.record_id for r in records].index(result.failed_from)
    )
    # One JSON line per batch: what it did, for operators and for `dp score`'s report
    # (dataplatform/runtime/scoring.py reads these lines back from CloudWatch Logs).
    print(
        json.dumps(
            {
                "records": result.records,
                "done": done,
                "events_kept": result.events_kept,
                "left_out": result.left_out,
                "scored": len(result.scored),
                "score_ids": [s["score_id"] for s in result.scored],
                "flagged": len(result.flagged),
                "interventions": result.flagged,
                "latencies": [round(finished - r.arrived, 3) for r in records[:done] if r.arrived],
                "error": result.error,
            }
        )
    )
    failures = [{"itemIdentifier": result.failed_from}] if result.failed_from else []
    return {"batchItemFailures": failures}
