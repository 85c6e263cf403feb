"""A planted drift, for the monitor's known answer: telecom activity that stays the same
day after day (each customer keeps their own rates of calls, dropped calls, data sessions,
tickets and payments, and is active every day), until a producer release on `drift_day`
starts sending data_mb in kilobytes. The features that read data_mb drift from that day on;
every other feature keeps its distribution.

The truth is not restated by hand: `drifted_features` computes the online features of the
same events with and without the release and names the features whose values differ.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from dataplatform.online import features as online

KB_PER_MB = 1024
HISTORY_DAYS = online.FEATURE_WINDOW_DAYS  # the training cutoff has full windows


@dataclass(frozen=True)
class DriftScenario:
    events: list[dict]  # telecom_events records (as the producers send them)
    training_day: date  # the features the model was trained on are as of this day
    served_days: list[date]  # the days after, scored
    drift_day: date  # from this day on, data_mb is in KB


def drift_scenario(
    n_customers: int = 400,
    *,
    start: date = date(2026, 10, 1),
    served_days: int = 8,
    drift_after: int = 5,
    seed: int = 41,
    planted: bool = True,
) -> DriftScenario:
    """HISTORY_DAYS days of history up to `training_day`, then `served_days` more, the
    release on the `drift_after`-th of them (planted=False: the same events, no release)."""
    rng = random.Random(seed)
    training_day = start + timedelta(days=HISTORY_DAYS - 1)
    days = [start + timedelta(days=i) for i in range(HISTORY_DAYS + served_days)]
    drift_day = training_day + timedelta(days=drift_after)
    events: list[dict] = []

    def event(customer: str, day: date, kind: str, **fields) -> None:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(86400)
        )
        events.append(
            {
                "event_id": f"drift-{len(events):07d}",
                "customer_id": customer,
                "event_type": kind,
                "event_time": moment.isoformat().replace("+00:00", "Z"),
                **fields,
            }
        )

    for i in range(n_customers):
        customer = f"drift-{i:04d}"
        calls = rng.gammavariate(2.0, 1.0)  # per day
        drop_share = rng.betavariate(1.0, 12.0)
        sessions = rng.gammavariate(2.0, 0.6)
        mb_per_session = rng.gammavariate(2.0, 30.0)
        tickets = rng.gammavariate(1.0, 0.03)
        payments = rng.gammavariate(1.0, 0.05)
        for day in days:
            for _ in range(1 + _poisson(rng, calls)):  # active every day: at least a call
                event(
                    customer,
                    day,
                    "call",
                    duration_s=round(rng.expovariate(1 / 120), 1),
                    call_dropped=rng.random() < drop_share,
                )
            for _ in range(_poisson(rng, sessions)):
                mb = round(rng.expovariate(1 / mb_per_session), 2)
                release = planted and day >= drift_day
                event(customer, day, "data_session", data_mb=mb * KB_PER_MB if release else mb)
            for _ in range(_poisson(rng, tickets)):
                event(customer, day, "support_ticket", ticket_category="network")
            for _ in range(_poisson(rng, payments)):
                event(
                    customer,
                    day,
                    "payment",
                    amount_eur=round(rng.uniform(5, 60), 2),
                    payment_days_late=rng.choice([0, 0, 0, 3]),
                )
    return DriftScenario(
        events=events,
        training_day=training_day,
        served_days=days[HISTORY_DAYS:],
        drift_day=drift_day,
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method (small means)."""
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def online_features(events: list[dict], days: list[date]) -> dict[date, list[dict]]:
    """Every customer's online features as of each day, as the stream scorer computes them
    (dataplatform/online/features.py)."""
    by_customer: dict[str, list[online.Event]] = {}
    for record in events:
        moment = datetime.fromisoformat(record["event_time"].replace("Z", "+00:00"))
        by_customer.setdefault(record["customer_id"], []).append(
            online.event_of({**record, "event_time": moment})
        )
    found: dict[date, list[dict]] = {}
    for day in days:
        rows = (online.features_at(evs, day) for _, evs in sorted(by_customer.items()))
        found[day] = [r for r in rows if r is not None]
    return found


def drifted_features(with_release: list[dict], without: list[dict]) -> set[str]:
    """The features whose value differs, for any customer, between the features of the
    scenario and of the same events without the release: the truth the monitor must find."""
    return {
        column
        for column in online.FEATURE_COLUMNS
        if any(a[column] != b[column] for a, b in zip(with_release, without, strict=True))
    }


def served_scores(rows_by_day: dict[date, list[dict]], days: list[date]) -> list[dict]:
    """The churn scores of those days as the scores dataset holds them (the columns the
    monitor reads): the served inputs as the JSON the scorer sends with each score."""
    return [
        {
            "day": day.isoformat(),
            "model_version": "1",
            "score": 0.5,
            "features": json.dumps({c: row[c] for c in online.FEATURE_COLUMNS}),
        }
        for day in days
        for row in rows_by_day[day]
    ]
