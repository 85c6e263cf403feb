"""`dp demo`: sample data (deterministic seed) through the whole local path: ingest,
deliver, crawl, curate, feature tables and market-basket rules, then Athena queries and a reconciliation line per dataset
(ingested = curated + quarantined + duplicates + Firehose errors)."""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

EVENT_TYPES = ("call", "data_session", "support_ticket", "payment")


CHURN_LABEL_DAYS = 14  # customer_features.sql: churned = no activity in the 14 days after as_of
FEATURE_WINDOW_DAYS = 30  # customer_features.sql: *_30d = days as_of-29 .. as_of

# The planted churn signal. Every customer churns with probability
#   sigmoid(CHURN_INTERCEPT + sum(CHURN_COEFFICIENTS[c] * <column c of customer_features>))
# over columns the feature SQL computes exactly from the events the generator writes, so
# scoring with these true probabilities gives the best AUC any model can reach (the oracle).
CHURN_INTERCEPT = -4.0
CHURN_COEFFICIENTS = {
    "dropped_calls_30d": 0.55,
    "support_tickets_30d": 0.75,
    "late_payments_30d": 0.9,
}


def churn_probability(features: dict) -> float:
    z = CHURN_INTERCEPT + sum(w * features[c] for c, w in CHURN_COEFFICIENTS.items())
    return 1.0 / (1.0 + math.exp(-z))


def demo_as_of(now: datetime | None = None) -> str:
    """The demo's feature cutoff: far enough back that the 14-day churn label is observed."""
    now = now or datetime.now(UTC)
    return (now.date() - timedelta(days=CHURN_LABEL_DAYS + 1)).isoformat()


@dataclass(frozen=True)
class ChurnTruth:
    probability: float
    churned: int
    features: dict  # the planted signal's columns, as customer_features computes them


# The planted customer value (the clv model's target, customer_value_features.sql's
# value_next_14d). A customer who stays keeps paying: each of its payments in the 30 days up
# to as_of is renewed once after as_of, for VALUE_RENEWAL_RANGE times its amount (uniform,
# mean 1); a customer who churns pays nothing. So the expected value is known from columns
# of customer_value_features:
#   (1 - churn_probability(features)) * amount_eur_30d
# and the best R2 a model can reach on a set of customers is the R2 of that expectation
# (the oracle). The renewals are drawn from their own random source (seed +
# VALUE_SEED_OFFSET) after every other event, and land in the churn label's window of
# customers who stay, who have events there already: every other event, feature and label
# of the sample is what it was without them.
VALUE_RENEWAL_RANGE = (0.75, 1.25)
VALUE_SEED_OFFSET = 1009


def expected_value(features: dict) -> float:
    """The planted expectation of value_next_14d, from customer_value_features' columns."""
    return (1.0 - churn_probability(features)) * features["amount_eur_30d"]


@dataclass(frozen=True)
class ValueTruth:
    expected: float  # expected_value of the features
    value_next_14d: float  # what the customer paid after as_of (its renewals)
    features: dict  # the columns expected_value reads, as customer_value_features has them


@dataclass(frozen=True)
class TelecomSample:
    events: list
    as_of: str
    truth: dict  # customer_id -> ChurnTruth
    value: dict = field(default_factory=dict)  # customer_id -> ValueTruth


def telecom_sample(
    n_customers: int = 1000, *, seed: int = 7, now: datetime | None = None
) -> TelecomSample:
    """Customer activity over the 30 days up to the demo's as_of and the 15 days after, with
    a planted churn signal and a few percent of realistic trouble.

    - Each customer has rates of dropped calls, support tickets and late payments; their
      counts in the 30-day window, over clean events only, give the true churn probability
      (`churn_probability`); the customer then churns (no events after as_of) or stays
      (at least one event in the 14 days after).
    - Background activity (calls that do not drop, data sessions, on-time payments) carries
      the trouble: events the Firehose transform rejects (no customer), rows the curate job
      quarantines (bad duration, unknown event type, negative amount) and re-sent
      duplicates. Trouble never touches a signal event, so the features are exact."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    as_of = date.fromisoformat(demo_as_of(now))
    window_start = as_of - timedelta(days=FEATURE_WINDOW_DAYS - 1)
    events: list[dict] = []
    truth: dict[str, ChurnTruth] = {}

    def at(day: date) -> str:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(86400)
        )
        return min(moment, now).isoformat().replace("+00:00", "Z")

    def window_day() -> date:
        return window_start + timedelta(days=rng.randrange(FEATURE_WINDOW_DAYS))

    def event(customer: str, kind: str, day: date, **fields) -> dict:
        record = {
            "event_id": f"evt-{len(events):06d}",
            "customer_id": customer,
            "msisdn": msisdn[customer],
            "event_type": kind,
            "event_time": at(day),
            "plan": plan[customer],
            "cell_id": f"cell-{rng.randrange(400)}",
            **fields,
        }
        events.append(record)
        return record

    customers = [f"cust-{i:04d}" for i in range(n_customers)]
    msisdn = {c: f"+3161{rng.randrange(10**7):07d}" for c in customers}
    plan = {c: rng.choice(["prepaid", "postpaid", "family", "business", None]) for c in customers}
    background: list[dict] = []
    for customer in customers:
        # signal events: counts drawn from per-customer rates
        counts = {
            "dropped_calls_30d": _poisson(rng, rng.gammavariate(1.5, 1.2)),
            "support_tickets_30d": _poisson(rng, rng.gammavariate(1.0, 1.0)),
            "late_payments_30d": _poisson(rng, rng.gammavariate(1.0, 0.8)),
        }
        for _ in range(counts["dropped_calls_30d"]):
            event(
                customer,
                "call",
                window_day(),
                duration_s=round(rng.expovariate(1 / 60), 1),
                call_dropped=True,
            )
        for _ in range(counts["support_tickets_30d"]):
            event(
                customer,
                "support_ticket",
                window_day(),
                ticket_category=rng.choice(["billing", "network", "device", "other"]),
            )
        for _ in range(counts["late_payments_30d"]):
            event(
                customer,
                "payment",
                window_day(),
                amount_eur=round(rng.uniform(5, 90), 2),
                payment_days_late=rng.choice([2, 5, 14, 31]),
            )
        # background activity in the window (at least one event: every customer has a row)
        for _ in range(1 + _poisson(rng, 8)):
            background.append(
                event(
                    customer,
                    "call",
                    window_day(),
                    duration_s=round(rng.expovariate(1 / 180), 1),
                    call_dropped=False,
                )
            )
        for _ in range(_poisson(rng, 5)):
            background.append(
                event(
                    customer,
                    "data_session",
                    window_day(),
                    data_mb=round(rng.expovariate(1 / 40), 2),
                )
            )
        for _ in range(_poisson(rng, 1)):
            background.append(
                event(
                    customer,
                    "payment",
                    window_day(),
                    amount_eur=round(rng.uniform(5, 90), 2),
                    payment_days_late=0,
                )
            )
        probability = churn_probability(counts)
        churned = int(rng.random() < probability)
        truth[customer] = ChurnTruth(probability=probability, churned=churned, features=counts)
        if not churned:  # active after as_of: one clean event in the label window, then more
            event(
                customer,
                "data_session",
                as_of + timedelta(days=1 + rng.randrange(CHURN_LABEL_DAYS)),
                data_mb=round(rng.expovariate(1 / 40), 2),
            )
            for _ in range(_poisson(rng, 3)):
                background.append(
                    event(
                        customer,
                        "call",
                        as_of + timedelta(days=1 + rng.randrange(CHURN_LABEL_DAYS)),
                        duration_s=round(rng.expovariate(1 / 180), 1),
                        call_dropped=False,
                    )
                )
    for record in background:
        trouble = rng.random()
        if trouble < 0.01:
            del record["customer_id"]  # Firehose: missing required field
        elif trouble < 0.02 and record["event_type"] == "call":
            record["duration_s"] = "N/A"  # curate: duration_s:type
        elif trouble < 0.03:
            record["event_type"] = "fax"  # curate: event_type:allowed
        elif trouble < 0.035 and record["event_type"] == "payment":
            record["amount_eur"] = -12.5  # curate: amount_eur:min
    rng.shuffle(events)
    # Re-sent events (producer retries): same id, the copy is removed in curation.
    events += [dict(original) for original in rng.sample(events, k=len(events) // 50)]
    renewals, value = _planted_value(
        events, truth, as_of, now, random.Random(seed + VALUE_SEED_OFFSET), msisdn, plan
    )
    return TelecomSample(
        events=events + renewals, as_of=as_of.isoformat(), truth=truth, value=value
    )


def _planted_value(
    events: list[dict],
    truth: dict[str, ChurnTruth],
    as_of: date,
    now: datetime,
    rng: random.Random,
    msisdn: dict[str, str],
    plan: dict[str, str | None],
) -> tuple[list[dict], dict[str, ValueTruth]]:
    """The renewals of each staying customer's payments (see VALUE_RENEWAL_RANGE), clean
    events with ids of their own, and every customer's ValueTruth. The payments renewed
    are those the curated table keeps (with a customer, a payment, a non-negative amount:
    the trouble above leaves other payments out), once per event id."""
    kept: dict[str, dict] = {}
    for record in events:
        if (
            record.get("customer_id") is not None
            and record["event_type"] == "payment"
            and record.get("amount_eur", -1) >= 0
        ):
            kept[record["event_id"]] = record
    paid: dict[str, list[float]] = {customer: [] for customer in truth}
    for record in sorted(kept.values(), key=lambda r: r["event_id"]):
        paid[record["customer_id"]].append(record["amount_eur"])
    renewals: list[dict] = []
    value: dict[str, ValueTruth] = {}
    low, high = VALUE_RENEWAL_RANGE
    for customer in sorted(truth):
        features = {**truth[customer].features, "amount_eur_30d": float(sum(paid[customer]))}
        total = 0.0
        for amount in paid[customer] if not truth[customer].churned else []:
            renewed = round(amount * rng.uniform(low, high), 2)
            day = as_of + timedelta(days=1 + rng.randrange(CHURN_LABEL_DAYS))
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                seconds=rng.randrange(86400)
            )
            renewals.append(
                {
                    "event_id": f"evt-renewal-{len(renewals):06d}",
                    "customer_id": customer,
                    "msisdn": msisdn[customer],
                    "event_type": "payment",
                    "event_time": min(moment, now).isoformat().replace("+00:00", "Z"),
                    "plan": plan[customer],
                    "cell_id": f"cell-{rng.randrange(400)}",
                    "amount_eur": renewed,
                    "payment_days_late": 0,
                }
            )
            total += renewed
        value[customer] = ValueTruth(
            expected=expected_value(features), value_next_14d=total, features=features
        )
    return renewals, value


def telecom_events(
    n_customers: int = 1000, *, seed: int = 7, now: datetime | None = None
) -> list[dict]:
    return telecom_sample(n_customers, seed=seed, now=now).events


def value_oracle_r2(test_predictions: Path, *, seed: int = 7) -> float:
    """The R2 of the generator's expected customer values (`expected_value`) on the
    customers the clv model was tested on: the best any model can reach there (a customer's
    renewals are drawn, and whether it churns)."""
    import pandas as pd
    from sklearn.metrics import r2_score

    scored = pd.read_csv(test_predictions)
    value = telecom_sample(seed=seed).value
    return float(
        r2_score(scored["value_next_14d"], [value[c].expected for c in scored["customer_id"]])
    )


def churn_oracle_auc(test_predictions: Path, *, seed: int = 7) -> float:
    """The AUC of the generator's true churn probabilities on the customers a model was
    tested on (train.py's test_predictions.csv): the best any model can reach there. The
    probabilities do not depend on `now`, only on the seed."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    scored = pd.read_csv(test_predictions)
    truth = telecom_sample(seed=seed).truth
    return float(
        roc_auc_score(scored["churned"], [truth[c].probability for c in scored["customer_id"]])
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: small means only (the generator's are below 20)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


# Outcomes of the real-time scores: each scored customer churns with the planted probability
# of the features it was scored on (`churn_probability`), so the served model's realized
# performance has a known cause; an offer reached every flagged customer, and 40% of those
# accepted it.
OFFER_ACCEPTANCE = 0.4


def churn_outcomes_csv(scores: list[dict], *, known_at: datetime, seed: int = 31) -> str:
    """The churn_outcomes upload (spec/datasets/churn_outcomes.yaml) for the score items a
    scoring pass wrote: one row per customer and scored day (its latest score), known at
    `known_at`."""
    import json

    rng = random.Random(seed)
    latest: dict[tuple[str, str], dict] = {}
    for item in scores:  # a customer scored twice on a day: its last score counts
        latest[(item["customer_id"], item["as_of"])] = item
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["customer_id", "as_of", "known_at", "churned", "offer_sent", "offer_accepted"])
    for (customer, as_of), item in sorted(latest.items()):
        probability = churn_probability(json.loads(item["features"]))
        churned = rng.random() < probability
        sent = bool(item["flagged"])
        accepted = (rng.random() < OFFER_ACCEPTANCE) if sent else None
        writer.writerow(
            [
                customer,
                as_of,
                known_at.isoformat().replace("+00:00", "Z"),
                str(churned).lower(),
                str(sent).lower(),
                "" if accepted is None else str(accepted).lower(),
            ]
        )
    return buffer.getvalue()


# The planted house-price model: price = intercept + sum(coefficient * column of
# house_features) + noise; other columns (bedrooms, lot, floors, zipcode, month) have no
# effect. The linear model should recover these coefficients.
HOUSE_PRICE_INTERCEPT = 60_000.0
HOUSE_PRICE_COEFFICIENTS = {
    "living_area_sqft": 180.0,
    "bathrooms": 25_000.0,
    "condition": 20_000.0,
    "waterfront": 120_000.0,
    "age_years": -1_000.0,
}
HOUSE_PRICE_NOISE = 12_000.0


def house_sales_csv(n: int = 400, *, seed: int = 11, now: datetime | None = None) -> str:
    """House sales whose price follows HOUSE_PRICE_COEFFICIENTS plus Gaussian noise, with a
    little trouble: missing bedrooms (imputed), unparseable prices and missing zipcodes
    (quarantined)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    columns = [
        "sale_id",
        "sale_date",
        "price",
        "bedrooms",
        "bathrooms",
        "living_area_sqft",
        "lot_area_sqft",
        "floors",
        "year_built",
        "condition",
        "waterfront",
        "zipcode",
        "latitude",
        "longitude",
        "seller_name",
        "agent_email",
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for i in range(n):
        sale_date = (now - timedelta(days=rng.randrange(365))).date()
        area = rng.randint(600, 4500)
        bedrooms = max(1, area // 700 + rng.randint(-1, 1))
        bathrooms = rng.choice([1, 1.5, 2, 2.5, 3])
        year_built = rng.randint(1900, 2024)
        condition = rng.randint(1, 5)
        waterfront = rng.random() < 0.25
        x = {
            "living_area_sqft": area,
            "bathrooms": bathrooms,
            "condition": condition,
            "waterfront": int(waterfront),
            "age_years": sale_date.year - year_built,
        }
        price = (
            HOUSE_PRICE_INTERCEPT
            + sum(w * x[c] for c, w in HOUSE_PRICE_COEFFICIENTS.items())
            + rng.gauss(0, HOUSE_PRICE_NOISE)
        )
        row = [
            f"sale-{i:05d}",
            sale_date.isoformat(),
            round(max(price, 10_000.0), 2),
            bedrooms if rng.random() > 0.03 else "",
            bathrooms,
            area,
            rng.randint(1000, 20000),
            rng.choice([1, 1, 2, 3]),
            year_built,
            condition,
            "true" if waterfront else "false",
            rng.choice(["98101", "98103", "98115", "98052", "98004"]),
            round(47.5 + rng.random() / 5, 5),
            round(-122.4 + rng.random() / 5, 5),
            f"Seller {i}",
            f"agent{rng.randrange(20)}@example.com",
        ]
        if rng.random() < 0.02:
            row[2] = "N/A"  # curate: price:type (and required)
        if rng.random() < 0.01:
            row[11] = ""  # curate: zipcode:required
        writer.writerow(row)
    return out.getvalue()


# planted associations: butter comes with bread, tomato sauce with pasta.
BASKET_ITEMS = {
    "bread": 0.40,
    "milk": 0.30,
    "eggs": 0.20,
    "cheese": 0.20,
    "coffee": 0.20,
    "apples": 0.25,
    "bananas": 0.25,
    "yogurt": 0.15,
    "pasta": 0.20,
    "beer": 0.12,
    "chips": 0.15,
    "tea": 0.10,
}
PLANTED_RULES = {"bread": ("butter", 0.80), "pasta": ("tomato_sauce", 0.70)}
STRAY_RATE = 0.04  # butter / tomato sauce without bread / pasta
BASKET_COLUMNS = ["basket_id", "purchased_at", "store_id", "item", "quantity"]


def basket_rows(
    n: int = 400, *, seed: int = 13, now: datetime | None = None, days: int = 3
) -> list[dict]:
    """One row per (basket, item) over the last `days` days, with the planted associations
    bread -> butter and pasta -> tomato_sauce, and a little trouble: an item listed twice
    in a basket (a duplicate the curate job removes), rows without an item and quantities of
    0 (both quarantined). Every basket holds at least one item."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
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
            rows.append(
                {
                    "basket_id": basket,
                    "purchased_at": moment.isoformat().replace("+00:00", "Z"),
                    "store_id": store,
                    "item": item,
                    "quantity": rng.choice([1, 1, 1, 2, 3]),
                }
            )
        trouble = rng.random()
        if trouble < 0.02:
            rows.append({**rows[-1], "quantity": 1})  # listed twice: a duplicate
        elif trouble < 0.03:
            rows.append({**rows[-1], "item": ""})  # curate: item:required
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
BASKET_MINING = {
    "input-table": "curated.baskets",
    "min-support": "0.05",
    "min-confidence": "0.5",
    "output-name": "basket",
}


@dataclass(frozen=True)
class DemoQuery:
    title: str
    sql: str


# The feature tables of the telecom sample: built as of the demo's cutoff, after which the
# sample holds CHURN_LABEL_DAYS of activity (their labels need days after the cutoff).
TELECOM_FEATURE_TABLES = ("customer_features", "customer_value_features")


def feature_builds(platform, now: datetime | None = None) -> list[tuple[str, str | None]]:
    """The feature tables the demo builds, with their cutoff: the telecom tables far enough
    back (from `now`, default the clock) that their labels can be observed."""
    as_of = demo_as_of(now)
    return [
        (f.name, as_of if f.name in TELECOM_FEATURE_TABLES else None) for f in platform.features
    ]


def pipeline_as_of(platform, now: datetime | None = None) -> dict[str, str]:
    """The demo's cutoffs as `dp pipeline run --as-of` takes them (the tables with one)."""
    return {table: as_of for table, as_of in feature_builds(platform, now) if as_of}


def demo_queries(
    curated_database: str, features_database: str | None = None, *, today: date | None = None
) -> list[DemoQuery]:
    """The demo's Athena queries; "the last 7 days" count back from `today` (default
    Athena's current_date), so a test over data of a fixed day gets that day's answer."""
    db = curated_database
    current_date = f"DATE '{today.isoformat()}'" if today else "current_date"
    extra = (
        []
        if features_database is None
        else [
            DemoQuery(
                "Churn features: a sample of customers",
                f"""
SELECT customer_id, as_of, calls_30d, dropped_calls_30d, data_mb_30d, support_tickets_30d,
       days_since_last_activity, churned
FROM "{features_database}"."customer_features"
ORDER BY churned DESC, days_since_last_activity DESC, customer_id
LIMIT 8""",
            ),
            DemoQuery(
                "Churn rate in the feature table",
                f"""
SELECT count(*) AS customers, sum(churned) AS churned, round(avg(churned), 3) AS churn_rate
FROM "{features_database}"."customer_features"
""",
            ),
        ]
    )
    return [
        DemoQuery(
            "Events per type per day",
            f"""
SELECT dt, event_type, count(*) AS events
FROM "{db}"."telecom_events"
GROUP BY dt, event_type
ORDER BY dt, event_type""",
        ),
        DemoQuery(
            "Customers with the most dropped calls in the last 7 days",
            f"""
SELECT customer_id, count_if(call_dropped) AS dropped_calls, count(*) AS calls
FROM "{db}"."telecom_events"
WHERE event_type = 'call'
  AND dt >= date_format({current_date} - interval '7' day, '%Y-%m-%d')
GROUP BY customer_id
HAVING count_if(call_dropped) > 0
ORDER BY dropped_calls DESC, customer_id
LIMIT 10""",
        ),
        DemoQuery(
            "Quarantine reasons with counts",
            f"""
SELECT 'telecom_events' AS dataset, reason, count(*) AS rows_quarantined
FROM "{db}"."telecom_events_quarantine" GROUP BY reason
UNION ALL
SELECT 'house_sales' AS dataset, reason, count(*) AS rows_quarantined
FROM "{db}"."house_sales_quarantine" GROUP BY reason
ORDER BY dataset, rows_quarantined DESC, reason""",
        ),
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
    return DemoQuery(
        "Association rules of the baskets (one-item antecedents), strongest lift first",
        f"""
SELECT array_join(antecedent, ', ') AS antecedent, array_join(consequent, ', ') AS consequent,
       round(support, 3) AS support, round(confidence, 3) AS confidence, round(lift, 2) AS lift
FROM "{features_database}"."{output_name}_rules"
WHERE cardinality(antecedent) = 1
ORDER BY lift DESC, confidence DESC, antecedent, consequent
LIMIT 8""",
    )


# A fresh day for real-time scoring: after the demo's data, a day of ordinary activity
# for most customers, and a bad day (dropped calls, support tickets, a late payment) for a
# few, which pushes their true churn probability (churn_probability over the online
# features) past the serving threshold. The scorer should flag those and few others.
FRESH_BURST_FRACTION = 0.06


def fresh_day_events(
    n_customers: int = 1000, *, seed: int = 29, now: datetime | None = None
) -> list[dict]:
    """The day of `now` (default the clock): events with ids of their own (`fresh-...`) for
    the demo's customers; bursts of trouble for FRESH_BURST_FRACTION of them."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    span = max(int((now - midnight).total_seconds()), 1)
    events: list[dict] = []

    def event(customer: str, kind: str, **fields) -> None:
        moment = midnight + timedelta(seconds=rng.randrange(span))
        events.append(
            {
                "event_id": f"fresh-{now:%Y%m%d}-{len(events):06d}",
                "customer_id": customer,
                "msisdn": f"+3161{rng.randrange(10**7):07d}",
                "event_type": kind,
                "event_time": moment.isoformat().replace("+00:00", "Z"),
                "plan": rng.choice(["prepaid", "postpaid", "family", "business"]),
                "cell_id": f"cell-{rng.randrange(400)}",
                **fields,
            }
        )

    for i in range(n_customers):
        customer = f"cust-{i:04d}"
        if rng.random() < FRESH_BURST_FRACTION:
            for _ in range(3 + rng.randrange(3)):
                event(
                    customer,
                    "call",
                    duration_s=round(rng.expovariate(1 / 60), 1),
                    call_dropped=True,
                )
            for _ in range(2 + rng.randrange(2)):
                event(customer, "support_ticket", ticket_category="network")
            event(
                customer, "payment", amount_eur=round(rng.uniform(5, 90), 2), payment_days_late=14
            )
        elif rng.random() < 0.3:
            event(customer, "data_session", data_mb=round(rng.expovariate(1 / 40), 2))
    rng.shuffle(events)
    return events
