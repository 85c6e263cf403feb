"""Online customer features: each customer's recent events, reduced exactly as
spec/features/customer_features.sql reduces them for a cutoff day `as_of` (its header is
the definition; this module restates it in Python, and tests/online compares the two on
every customer of the demo's data):

  *_7d  = days as_of-6 .. as_of, *_30d = days as_of-29 .. as_of (UTC days of event_time)
  calls, dropped calls (call_dropped true), data_mb of data sessions (0 when none),
  support tickets, late payments (payment_days_late > 0), amount_eur of payments,
  days_since_last_activity = as_of - the last event's day, usage_trend =
  (data_mb_7d * 30 / 7) / data_mb_30d (None without data in the 30 days)

An event is kept as one item: `event_item` (from a curated row) and back. Keyed by the
event's id, so a redelivered or re-sent event overwrites itself (duplicates removed, as the
curate job removes them: the latest event_time wins) and an event that arrives late lands
on its own day, whatever the order of arrival."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

FEATURE_WINDOW_DAYS = 30
SHORT_WINDOW_DAYS = 7
# how long an event is kept online: the long window, plus room for late events
RETENTION_DAYS = FEATURE_WINDOW_DAYS + 15
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
    """customer_features.sql's columns (but the label) for one customer's events, or None
    when the customer has no event on or before as_of (the SQL has no row for them)."""
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
        "late_payments_30d": count(
            long, "payment", lambda e: e.payment_days_late is not None and e.payment_days_late > 0
        ),
        "amount_eur_30d": total(long, "payment", lambda e: e.amount_eur),
        "days_since_last_activity": (as_of - max(e.day for e in history)).days,
        "usage_trend": (data_mb_7d * 30.0 / 7.0) / data_mb_30d if data_mb_30d != 0 else None,
    }


# ----------------------------------------------------------------------------- the store


def item_key(event: Event) -> dict:
    return {"customer_id": event.customer_id, "sk": f"event#{event.event_id}"}


def event_item(event: Event) -> dict:
    """The online store's item for an event (numbers as strings: DynamoDB keeps decimals
    exactly, and float(str(x)) == x)."""
    item = {
        **item_key(event),
        "event_time": event.event_time.isoformat(),
        "event_type": event.event_type,
        "expires_at": int(
            (event.event_time + timedelta(days=RETENTION_DAYS)).timestamp()
        ),  # DynamoDB TTL
    }
    for name in ("call_dropped", "data_mb", "amount_eur", "payment_days_late"):
        value = getattr(event, name)
        if value is not None:
            item[name] = value if isinstance(value, bool) else repr(value)
    return item


def event_from_item(item: dict) -> Event:
    def number(name: str, kind):
        value = item.get(name)
        return None if value is None else kind(value)

    return Event(
        event_id=item["sk"].removeprefix("event#"),
        customer_id=item["customer_id"],
        event_time=datetime.fromisoformat(item["event_time"]),
        event_type=item["event_type"],
        call_dropped=item.get("call_dropped"),
        data_mb=number("data_mb", float),
        amount_eur=number("amount_eur", float),
        payment_days_late=number("payment_days_late", int),
    )
