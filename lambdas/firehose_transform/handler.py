"""Firehose transform Lambda: a thin adapter over `firehose_records.transform_batch`.
The dataset comes from the DATASET environment variable; its spec is the compiled
spec.json bundled with the function (dataplatform/bundle.py)."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from firehose_records import transform_batch

from dataplatform.spec import Dataset, load_compiled_dataset

SPEC_PATH = Path(__file__).with_name("spec.json")
LOGGED_FAILURES = 20  # per invocation; the counts cover all of them


@cache
def dataset_for(name: str) -> Dataset:
    return load_compiled_dataset(SPEC_PATH, name)


def handler(event: dict, context: object) -> dict:
    result = transform_batch(event, dataset_for(os.environ["DATASET"]))
    if result.failures:
        # Firehose keeps no reason with ProcessingFailed records: log it, as one JSON line.
        print(
            json.dumps(
                {
                    "processing_failed": result.failure_counts,
                    "examples": [
                        {"recordId": r, "reason": code, "detail": d}
                        for r, code, d in result.failures[:LOGGED_FAILURES]
                    ],
                },
                default=str,
            )
        )
    return result.response
