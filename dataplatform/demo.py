"""`dp demo`: sample data (deterministic seed) through the whole local path: ingest,
deliver, crawl, curate, feature tables and market-basket rules, then Athena queries and a reconciliation line per dataset
(ingested = curated + quarantined + duplicates + Firehose errors)."""
from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

EVENT_TYPES = ("call", "data_session", "support_ticket", "payment")


CHURN_LABEL_DAYS = 14  # customer_features.sql: churned = no activity in the 14 days after as_of


def telecom_events(n: int = 3000, *, seed: int = 7, now: datetime | None = None,
                   days: int = 30) -> list[dict]:
    """Events over the last `days` days, with a few percent of realistic trouble: events
    the Firehose transform rejects (no customer), rows the curate job quarantines (bad
    duration, unknown event type, negative amount) and re-sent duplicates. A fifth of the
    customers stop being active part-way (they churn)."""
    rng = random.Random(seed)
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    customers = [f"cust-{i:04d}" for i in range(150)]
    last_active = {c: now - timedelta(days=rng.uniform(CHURN_LABEL_DAYS + 1, days))
                   for c in rng.sample(customers, k=len(customers) // 5)}
    events = []
    for i in range(n):
        kind = rng.choices(EVENT_TYPES, weights=(50, 35, 8, 7))[0]
        customer = rng.choice(customers)
        start = now - timedelta(days=days)
        end = last_active.get(customer, now)
        moment = start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))
        event = {"event_id": f"evt-{i:06d}", "customer_id": customer,
                 "msisdn": f"+3161{rng.randrange(10**7):07d}", "event_type": kind,
                 "event_time": moment.isoformat().replace("+00:00", "Z"),
                 "plan": rng.choice(["prepaid", "postpaid", "family", "business", None]),
                 "cell_id": f"cell-{rng.randrange(400)}"}
        if kind == "call":
            event["duration_s"] = round(rng.expovariate(1 / 180), 1)
            event["call_dropped"] = rng.random() < 0.06
        elif kind == "data_session":
            event["data_mb"] = round(rng.expovariate(1 / 40), 2)
        elif kind == "support_ticket":
            event["ticket_category"] = rng.choice(["billing", "network", "device", "other"])
        else:
            event["amount_eur"] = round(rng.uniform(5, 90), 2)
            event["payment_days_late"] = rng.choice([0, 0, 0, 2, 5, 14, 31])
        trouble = rng.random()
        if trouble < 0.01:
            del event["customer_id"]                 # Firehose: missing required field
        elif trouble < 0.02:
            event["duration_s"] = "N/A"              # curate: duration_s:type
            event["event_type"] = "call"
        elif trouble < 0.03:
            event["event_type"] = "fax"              # curate: event_type:allowed
        elif trouble < 0.035:
            event["amount_eur"] = -12.5              # curate: amount_eur:min
            event["event_type"] = "payment"
        events.append(event)
    # Re-sent events (producer retries): same id, a later copy wins in curation.
    for original in rng.sample(events[: n // 2], k=n // 50):
        copy = dict(original)
        events.append(copy)
    return events


def house_sales_csv(n: int = 400, *, seed: int = 11, now: datetime | None = None) -> str:
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    columns = ["sale_id", "sale_date", "price", "bedrooms", "bathrooms", "living_area_sqft",
               "lot_area_sqft", "floors", "year_built", "condition", "waterfront", "zipcode",
               "latitude", "longitude", "seller_name", "agent_email"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for i in range(n):
        area = rng.randint(600, 4500)
        bedrooms = max(1, area // 700 + rng.randint(-1, 1))
        price = round(80_000 + area * rng.uniform(180, 320) + rng.gauss(0, 20_000), -2)
        row = [f"sale-{i:05d}", (now - timedelta(days=rng.randrange(365))).date().isoformat(),
               price, bedrooms if rng.random() > 0.03 else "", rng.choice([1, 1.5, 2, 2.5, 3]),
               area, rng.randint(1000, 20000), rng.choice([1, 1, 2, 3]), rng.randint(1900, 2024),
               rng.randint(1, 5), rng.choice(["true", "false", "false", "false"]),
               rng.choice(["98101", "98103", "98115", "98052", "98004"]),
               round(47.5 + rng.random() / 5, 5), round(-122.4 + rng.random() / 5, 5),
               f"Seller {i}", f"agent{rng.randrange(20)}@example.com"]
        if rng.random() < 0.02:
            row[2] = "N/A"                           # curate: price:type (and required)
        if rng.random() < 0.01:
            row[11] = ""                             # curate: zipcode:required
        writer.writerow(row)
    return out.getvalue()


# Items and how often a basket holds them, independently of each other, except for the two
# planted associations: butter comes with bread, tomato sauce with pasta.
BASKET_ITEMS = {"bread": 0.40, "milk": 0.30, "eggs": 0.20, "cheese": 0.20, "coffee": 0.20,
                "apples": 0.25, "bananas": 0.25, "yogurt": 0.15, "pasta": 0.20, "beer": 0.12,
                "chips": 0.15, "tea": 0.10}
PLANTED_RULES = {"bread": ("butter", 0.80), "pasta": ("tomato_sauce", 0.70)}
STRAY_RATE = 0.04  # butter / tomato sauce without bread / pasta
BASKET_COLUMNS = ["basket_id", "purchased_at", "store_id", "item", "quantity"]


def basket_rows(n: int = 400, *, seed: int = 13, now: datetime | None = None,
                days: int = 3) -> list[dict]:
    """One row per (basket, item) over the last `days` days, with the planted associations
    bread -> butter and pasta -> tomato_sauce, and a little trouble: an item listed twice
    in a basket (a duplicate the curate job removes), rows without an item and quantities of
    0 (both quarantined). Every basket holds at least one item."""
    rng = random.Random(seed)
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    rows = []
    for b in range(n):
        basket = f"b-{b:05d}"
        moment = now - timedelta(seconds=rng.randrange(days * 86400))
        store = f"store-{rng.randrange(5)}"
        items = [item for item, p in BASKET_ITEMS.items() if rng.random() < p]
        for trigger, (follower, p) in PLANTED_RULES.items():
            if rng.random() < (p if trigger in items else STRAY_RATE):
                items.append(follower)
        if not items:
            items = [rng.choice(list(BASKET_ITEMS))]
        for item in items:
            rows.append({"basket_id": basket,
                         "purchased_at": moment.isoformat().replace("+00:00", "Z"),
                         "store_id": store, "item": item, "quantity": rng.choice([1, 1, 1, 2, 3])})
        trouble = rng.random()
        if trouble < 0.02:
            rows.append({**rows[-1], "quantity": 1})       # listed twice: a duplicate
        elif trouble < 0.03:
            rows.append({**rows[-1], "item": ""})          # curate: item:required
        elif trouble < 0.04:
            rows.append({**rows[-1], "item": "flour", "quantity": 0})  # curate: quantity:min
    return rows


def baskets_csv(n: int = 400, *, seed: int = 13, now: datetime | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=BASKET_COLUMNS)
    writer.writeheader()
    writer.writerows(basket_rows(n, seed=seed, now=now))
    return out.getvalue()


# What the demo mines: the step's arguments (dataplatform.jobs.emr_step_args).
BASKET_MINING = {"input-table": "curated.baskets", "min-support": "0.05",
                 "min-confidence": "0.5", "output-name": "basket"}


@dataclass(frozen=True)
class DemoQuery:
    title: str
    sql: str


def feature_builds(platform) -> list[tuple[str, str | None]]:
    """The feature tables the demo builds, with their cutoff: customer_features far enough
    back that its churn label can be observed."""
    as_of = (datetime.now(timezone.utc).date() - timedelta(days=CHURN_LABEL_DAYS + 1)).isoformat()
    return [(f.name, as_of if f.name == "customer_features" else None) for f in platform.features]


def demo_queries(curated_database: str, features_database: str | None = None) -> list[DemoQuery]:
    db = curated_database
    extra = [] if features_database is None else [
        DemoQuery("Churn features: a sample of customers", f"""
SELECT customer_id, as_of, calls_30d, dropped_calls_30d, data_mb_30d, support_tickets_30d,
       days_since_last_activity, churned
FROM "{features_database}"."customer_features"
ORDER BY churned DESC, days_since_last_activity DESC, customer_id
LIMIT 8"""),
        DemoQuery("Churn rate in the feature table", f"""
SELECT count(*) AS customers, sum(churned) AS churned, round(avg(churned), 3) AS churn_rate
FROM "{features_database}"."customer_features"
"""),
    ]
    return [
        DemoQuery("Events per type per day", f"""
SELECT dt, event_type, count(*) AS events
FROM "{db}"."telecom_events"
GROUP BY dt, event_type
ORDER BY dt, event_type"""),
        DemoQuery("Customers with the most dropped calls in the last 7 days", f"""
SELECT customer_id, count_if(call_dropped) AS dropped_calls, count(*) AS calls
FROM "{db}"."telecom_events"
WHERE event_type = 'call'
  AND dt >= date_format(current_date - interval '7' day, '%Y-%m-%d')
GROUP BY customer_id
HAVING count_if(call_dropped) > 0
ORDER BY dropped_calls DESC, customer_id
LIMIT 10"""),
        DemoQuery("Quarantine reasons with counts", f"""
SELECT 'telecom_events' AS dataset, reason, count(*) AS rows_quarantined
FROM "{db}"."telecom_events_quarantine" GROUP BY reason
UNION ALL
SELECT 'house_sales' AS dataset, reason, count(*) AS rows_quarantined
FROM "{db}"."house_sales_quarantine" GROUP BY reason
ORDER BY dataset, rows_quarantined DESC, reason"""),
    ] + extra


def write_sample_files(folder: Path, *, now: datetime | None = None) -> dict[str, Path]:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    events = folder / "telecom_events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in telecom_events(now=now)))
    sales = folder / "house_sales.csv"
    sales.write_text(house_sales_csv(now=now))
    baskets = folder / "baskets.csv"
    baskets.write_text(baskets_csv(now=now))
    return {"telecom_events": events, "house_sales": sales, "baskets": baskets}


def rules_query(features_database: str, output_name: str = "basket") -> DemoQuery:
    """The strongest rules with one item on the left (the planted ones come first)."""
    return DemoQuery("Association rules of the baskets (one-item antecedents), strongest lift first", f"""
SELECT array_join(antecedent, ', ') AS antecedent, array_join(consequent, ', ') AS consequent,
       round(support, 3) AS support, round(confidence, 3) AS confidence, round(lift, 2) AS lift
FROM "{features_database}"."{output_name}_rules"
WHERE cardinality(antecedent) = 1
ORDER BY lift DESC, confidence DESC, antecedent, consequent
LIMIT 8""")
