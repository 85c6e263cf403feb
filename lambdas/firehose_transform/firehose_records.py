"""Firehose data transformation for one dataset, as plain functions (the Lambda handler is
a thin adapter over `transform_batch`).

Contract (Firehose): one output record per input `recordId`, result `Ok` or
`ProcessingFailed` (never `Dropped`: nothing is thrown away silently). `Ok` records carry
the normalized JSON line and `metadata.partitionKeys` {dt, hour} from the event time
(UTC); `ProcessingFailed` records carry their original data, which Firehose writes under
the error prefix. This stage only makes records deliverable: type and range checks are
the curate job's work.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dataplatform.spec import Dataset

OLDEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
# Below this an epoch number is seconds, above it milliseconds (1e11 s is year 5138,
# 1e11 ms is 1973).
EPOCH_MILLIS_THRESHOLD = 1e11


class RejectedRecord(ValueError):
    """A record that cannot be delivered; `reason` is a short, stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class BatchResult:
    response: dict
    # (recordId, reason code, detail) for every ProcessingFailed record
    failures: list[tuple[object, str, str]] = field(default_factory=list)

    @property
    def failure_counts(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason, _ in self.failures))


def parse_event_time(value: object) -> datetime:
    """ISO-8601 with or without offset (naive means UTC), or epoch seconds/milliseconds
    as a number or a numeric string. Returns an aware UTC datetime."""
    if isinstance(value, bool) or value is None:
        raise RejectedRecord("event_time_unparseable", f"{value!r} is not a time")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise RejectedRecord("event_time_unparseable", f"{value[:64]!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        value = number
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise RejectedRecord("event_time_unparseable", f"{value!r}")
        seconds = value / 1000 if abs(value) >= EPOCH_MILLIS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise RejectedRecord("event_time_absurd", f"epoch {value!r}") from None
    raise RejectedRecord("event_time_unparseable", f"a JSON {type(value).__name__} is not a time")


def normalize(data: object, dataset: Dataset, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The record's JSON line and its partition keys, or RejectedRecord."""
    if not isinstance(data, str):
        raise RejectedRecord("not_base64", "data is not a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RejectedRecord("not_base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedRecord("not_utf8", f"invalid byte at position {exc.start}") from None
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RejectedRecord("not_json", str(exc)[:120]) from None
    if not isinstance(payload, dict):
        raise RejectedRecord("not_object", f"a JSON {type(payload).__name__}")
    missing = [
        c.name
        for c in dataset.columns
        if c.required and (payload.get(c.name) is None or payload.get(c.name) == "")
    ]
    if missing:
        raise RejectedRecord("missing_required", ", ".join(missing))
    event_time = parse_event_time(payload.get(dataset.event_time))
    if not OLDEST_EVENT_TIME <= event_time <= now + MAX_FUTURE:
        raise RejectedRecord("event_time_absurd", event_time.isoformat())
    line = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n"
    return line.encode("utf-8"), {
        "dt": event_time.strftime("%Y-%m-%d"),
        "hour": event_time.strftime("%H"),
    }


def transform_record(record: object, dataset: Dataset, now: datetime) -> tuple[dict, tuple | None]:
    """One Firehose output record, and the failure (recordId, reason, detail) if any."""
    record = record if isinstance(record, dict) else {}
    record_id = record.get("recordId")
    original = record.get("data")
    try:
        line, partition_keys = normalize(original, dataset, now)
    except RejectedRecord as exc:
        rejection = exc
    except Exception as exc:  # never let one record fail the batch: it goes to the errors
        rejection = RejectedRecord("unexpected_error", f"{type(exc).__name__}: {exc}"[:200])
    else:
        return (
            {
                "recordId": record_id,
                "result": "Ok",
                "data": base64.b64encode(line).decode("ascii"),
                "metadata": {"partitionKeys": partition_keys},
            },
            None,
        )
    return (
        {
            "recordId": record_id,
            "result": "ProcessingFailed",
            "data": original if isinstance(original, str) else "",
        },
        (record_id, rejection.reason, str(rejection)),
    )


def transform_batch(event: dict, dataset: Dataset, now: datetime | None = None) -> BatchResult:
    now = now or datetime.now(UTC)
    records = event.get("records") if isinstance(event, dict) else None
    outputs, failures = [], []
    for record in records if isinstance(records, list) else []:
        output, failure = transform_record(record, dataset, now)
        outputs.append(output)
        if failure:
            failures.append(failure)
    return BatchResult(response={"records": outputs}, failures=failures)
