"""Firehose data-transformation Lambda: normalizes each record to one JSON line and returns
the `dt`/`hour` partition keys (UTC) from the dataset's event time.

Foundation version: it already honours Firehose's contract (one result per recordId,
Ok or ProcessingFailed, never Dropped). The full validation rules of the ingestion issue
build on it.
"""
from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dataplatform.spec import Dataset, load_compiled_dataset

SPEC_PATH = Path(__file__).with_name("spec.json")
# Event times outside this window are absurd (and outside the raw table's partition
# projection): such records go to the error prefix instead of an invisible partition.
OLDEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE = timedelta(days=1)


def parse_event_time(value: object) -> datetime:
    """ISO-8601 (with or without offset; naive means UTC) or epoch seconds/milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) >= 1e11 else value
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    raise ValueError(f"unsupported event time {value!r}")


def transform_record(record: dict, dataset: Dataset, now: datetime) -> dict:
    record_id = record.get("recordId")
    try:
        payload = json.loads(base64.b64decode(record["data"]).decode("utf-8"))
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        event_time = parse_event_time(payload[dataset.event_time])
        if not OLDEST_EVENT_TIME <= event_time <= now + MAX_FUTURE:
            raise ValueError(f"event time {event_time.isoformat()} is outside the accepted window")
    except Exception:  # anything unreadable goes to Firehose's error prefix, never dropped
        return {"recordId": record_id, "result": "ProcessingFailed", "data": record.get("data", "")}
    line = json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n"
    return {
        "recordId": record_id,
        "result": "Ok",
        "data": base64.b64encode(line.encode("utf-8")).decode("ascii"),
        "metadata": {"partitionKeys": {"dt": event_time.strftime("%Y-%m-%d"),
                                       "hour": event_time.strftime("%H")}},
    }


def transform(event: dict, dataset: Dataset, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    return {"records": [transform_record(r, dataset, now) for r in event.get("records", [])]}


def handler(event: dict, context: object) -> dict:
    dataset = load_compiled_dataset(SPEC_PATH, os.environ["DATASET"])
    return transform(event, dataset)
