"""Online customer features: each customer's recent telecom events, reduced exactly as
the feature SQL of the models served from telecom_events reduces them for a cutoff day
`as_of`: spec/features/customer_features.sql (churn) and customer_value_features.sql (clv).
Their headers are the definitions; this module restates them in Python, and tests compare
the two (tests/jobs/test_features.py on generated events, tests/e2e on the demo's data):

  *_7d  = days as_of-6 .. as_of, *_30d = days as_of-29 .. as_of (UTC days of event_time)
  calls, dropped calls (call_dropped true), data_mb of data sessions (0 when none),
  support tickets, payments, late payments (payment_days_late > 0), amount_eur of payments,
  days_since_last_activity = as_of - the last event's day, usage_trend =
  (data_mb_7d * 30 / 7) / data_mb_30d (None without data in the 30 days)

A model is served only with inputs these features provide (`STREAM_FEATURES`, checked by
the spec loader): a feature SQL with a column of its own needs it restated here first.

A customer's events are kept by id (`merged`), so a redelivered or re-sent event replaces
itself (duplicates removed as the curate job removes them: the latest event_time wins) and
an event that arrives late lands on its own day, whatever the order of arrival."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

FEATURE_WINDOW_DAYS = 30
SHORT_WINDOW_DAYS = 7
# how long an event is kept online: the long window, plus room for late events
RETENTION_DAYS = FEATURE_WINDOW_DAYS + 15
# customer_features.sql's features (the churn model's inputs)
FEATURE_COLUMNS = (
    "calls_7d",
    "calls_30d",
    "dropped_calls_7d",
    "dropped_calls_30d",
    "data_mb_7d",
    "data_mb_30d",
    "support_tickets_30d",
    "late_payments_30d",
    "amount_eur_30d",
    "days_since_last_activity",
    "usage_trend",
)
# every feature `features_at` computes: customer_features.sql's, and those of
# customer_value_features.sql that it lacks
ONLINE_COLUMNS = (*FEATURE_COLUMNS, "payments_30d")
# The stream datasets whose events this module reduces, and the features it gives: what a
# model served from the stream may take as inputs.
STREAM_FEATURES = {"telecom_events": ONLINE_COLUMNS}


@dataclass(frozen=True)
class Event:
    """What the features read of one curated telecom event."""

    event_id: str
    customer_id: str
    event_time: datetime  # UTC
    event_type: str
    call_dropped: bool | None = None
    data_mb: float | None = None
    amount_eur: float | None = None
    payment_days_late: int | None = None

    @property
    def day(self) -> date:
        return self.event_time.date()


def event_of(row: dict) -> Event:
    """From a curated row (records.curated_row)."""
    return Event(
        event_id=row["event_id"],
        customer_id=row["customer_id"],
        event_time=row["event_time"],
        event_type=row["event_type"],
        call_dropped=row.get("call_dropped"),
        data_mb=row.get("data_mb"),
        amount_eur=row.get("amount_eur"),
        payment_days_late=row.get("payment_days_late"),
    )


def latest_per_event(events: Iterable[Event]) -> list[Event]:
    """One event per id, the latest event_time winning (the curate job's deduplication)."""
    kept: dict[str, Event] = {}
    for e in events:
        if e.event_id not in kept or e.event_time > kept[e.event_id].event_time:
            kept[e.event_id] = e
    return list(kept.values())


def features_at(events: Iterable[Event], as_of: date) -> dict | None:
    """The customer id, as_of and ONLINE_COLUMNS for one customer's events (the feature
    SQL's columns but the labels), or None when the customer has no event on or before
    as_of (the SQL has no row for them)."""
    history = [e for e in latest_per_event(events) if e.day <= as_of]
    if not history:
        return None
    short = as_of - timedelta(days=SHORT_WINDOW_DAYS)
    long = as_of - timedelta(days=FEATURE_WINDOW_DAYS)

    def count(days_after: date, kind: str, condition=lambda e: True) -> int:
        return sum(
            1 for e in history if e.event_type == kind and e.day > days_after and condition(e)
        )

    def total(days_after: date, kind: str, value) -> float:
        values = [value(e) for e in history if e.event_type == kind and e.day > days_after]
        return float(sum(v for v in values if v is not None)) if values else 0.0

    data_mb_7d = total(short, "data_session", lambda e: e.data_mb)
    data_mb_30d = total(long, "data_session", lambda e: e.data_mb)
    return {
        "customer_id": history[0].customer_id,
        "as_of": as_of,
        "calls_7d": count(short, "call"),
        "calls_30d": count(long, "call"),
        "dropped_calls_7d": count(short, "call", lambda e: e.call_dropped is True),
        "dropped_calls_30d": count(long, "call", lambda e: e.call_dropped is True),
        "data_mb_7d": data_mb_7d,
        "data_mb_30d": data_mb_30d,
        "support_tickets_30d": count(long, "support_ticket"),
        "payments_30d": count(long, "payment"),
        "late_payments_30d": count(
            long, "payment", lambda e: e.payment_days_late is not None and e.payment_days_late > 0
        ),
        "amount_eur_30d": total(long, "payment", lambda e: e.amount_eur),
        "days_since_last_activity": (as_of - max(e.day for e in history)).days,
        "usage_trend": (data_mb_7d * 30.0 / 7.0) / data_mb_30d if data_mb_30d != 0 else None,
    }


# ----------------------------------------------------------------------------- the store
# One item per customer and scorer (pk customer_id, sk "events#<model>"): its recent events
# as one JSON attribute, event id -> [event_time, event_type, call_dropped, data_mb,
# amount_eur, payment_days_late]. A batch reads its customers with BatchGetItem and writes
# them back with BatchWriteItem: two calls per hundred customers, where an item per event
# needed a Query per customer (and moto's Query reads the whole table). One writer per
# item, which is what makes the read-merge-write safe without conditions: a stream's
# records are sharded by customer, each shard has one invocation of a scorer at a time,
# and each served model's scorer reads the stream through its own consumer, so two models
# served from one stream keep their own copies (a shared item lost the events one scorer
# wrote when the other wrote back what it had read before them).
# Events older than RETENTION_DAYS before the customer's latest are dropped on write, so
# the item stays far below DynamoDB's 400 KB (about 80 bytes per event).

ITEM_SK = "events"


def item_key(customer: str, scorer: str = "") -> dict:
    """The customer's item of `scorer` (a model's name; "" for a store of its own, as a
    test or a backfill keeps)."""
    return {"customer_id": customer, "sk": f"{ITEM_SK}#{scorer}" if scorer else ITEM_SK}


def merged(kept: Iterable[Event], new: Iterable[Event]) -> list[Event]:
    """The customer's events after `new` arrived: one per id, the latest event_time
    winning, without those older than the retention before the latest one."""
    events = latest_per_event([*kept, *new])
    if not events:
        return []
    horizon = max(e.day for e in events) - timedelta(days=RETENTION_DAYS)
    return sorted((e for e in events if e.day >= horizon), key=lambda e: (e.event_time, e.event_id))


def customer_item(customer: str, events: list[Event], scorer: str = "") -> dict:
    encoded = {
        e.event_id: [
            e.event_time.isoformat(),
            e.event_type,
            e.call_dropped,
            e.data_mb,
            e.amount_eur,
            e.payment_days_late,
        ]
        for e in events
    }
    latest = max(e.event_time for e in events)
    return {
        **item_key(customer, scorer),
        "events": json.dumps(encoded, sort_keys=True, separators=(",", ":")),
        "latest_event_time": latest.isoformat(),
        "expires_at": int((latest + timedelta(days=RETENTION_DAYS)).timestamp()),  # TTL
    }


def events_of_item(item: dict) -> list[Event]:
    """The events of a customer item (json keeps floats exactly: repr round-trips)."""
    return [
        Event(
            event_id=event_id,
            customer_id=item["customer_id"],
            event_time=datetime.fromisoformat(time),
            event_type=kind,
            call_dropped=dropped,
            data_mb=data_mb,
            amount_eur=amount,
            payment_days_late=late,
        )
        for event_id, (time, kind, dropped, data_mb, amount, late) in json.loads(
            item["events"]
        ).items()
    ]
