"""Feature tables (spec/features/*.sql) on a local Spark, against independent pandas.

customer_features runs over a small curated telecom_events frame (7 customers, ~75 days,
with events placed on every window boundary) at a fixed as_of, and every feature and the
churn label are recomputed with pandas from the same rows. house_features is checked the
same way on a small curated house_sales frame. Also: render_sql, the refusal of SQL whose
output columns differ from the spec's, and the thin EMR step end to end on local files.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import random

import numpy as np
import pandas as pd
import pytest

from dataplatform.paths import REPO_ROOT
from dataplatform.spec import FeatureTable, load_spec
from dataplatform.transforms.curate import SPARK_TYPES
from dataplatform.transforms.features import (
    FeatureSqlError,
    build_feature_table,
    referenced_tables,
    render_sql,
    variables_used,
)

AS_OF = dt.date(2026, 3, 1)
UTC = dt.UTC
FLOAT_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def features():
    return {f.name: f for f in load_spec(REPO_ROOT / "spec").features}


def curated_frame(spark, dataset, rows: list[dict]):
    """A curated DataFrame as the curate job writes it: kept columns typed, plus dt."""
    columns = [(c.name, SPARK_TYPES[c.type]) for c in dataset.kept_columns] + [
        ("dt", SPARK_TYPES["string"])
    ]
    schema = ", ".join(f"`{name}` {dtype.simpleString()}" for name, dtype in columns)
    return spark.createDataFrame([tuple(r.get(name) for name, _ in columns) for r in rows], schema)


# ----------------------------------------------------------------------------- telecom rows


def telecom_event(
    n: int, customer: str, day: dt.date, event_type: str, rng: random.Random, **overrides
) -> dict:
    t = dt.datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60), tzinfo=UTC)
    row = {
        "event_id": f"e-{n}",
        "customer_id": customer,
        "msisdn": None,
        "event_type": event_type,
        "event_time": t,
        "plan": "postpaid",
        "duration_s": 0.0,
        "call_dropped": None,
        "data_mb": 0.0,
        "ticket_category": None,
        "amount_eur": None,
        "payment_days_late": None,
        "cell_id": "cell-1",
        "dt": day.isoformat(),
    }
    if event_type == "call":
        row["duration_s"] = float(rng.randrange(5, 900))
        row["call_dropped"] = rng.choice([True, False, False, None])
    elif event_type == "data_session":
        row["duration_s"] = float(rng.randrange(30, 3600))
        row["data_mb"] = round(rng.uniform(0.5, 900.0), 3)
    elif event_type == "support_ticket":
        row["ticket_category"] = rng.choice(["billing", "network", "device", "other"])
    elif event_type == "payment":
        row["amount_eur"] = round(rng.uniform(5, 120), 2)
        row["payment_days_late"] = rng.choice([0, 0, 0, 3, 12])
    row.update(overrides)
    return row


def telecom_rows() -> list[dict]:
    """7 customers, events from as_of-60 to as_of+16 days.

    c-active:   random events every few days before and after as_of     -> churned 0
    c-gone:     events only before as_of (last one as_of-10)            -> churned 1
    c-edge14:   before as_of, then one event on as_of+14 (last label day) -> churned 0
    c-edge15:   before as_of, then one event on as_of+15 (outside)       -> churned 1
    c-new:      events only after as_of                                  -> not in the table
    c-old:      events only 31+ days before as_of: zero windows, usage_trend NULL
    c-bounds:   events exactly on the window edges (as_of, as_of-6, as_of-7, as_of-29,
                as_of-30) and no data sessions in 30 days but a late payment
    """
    rng = random.Random(20261121)
    types = ["call", "call", "data_session", "data_session", "support_ticket", "payment"]
    rows: list[dict] = []

    def add(customer, day, event_type, **overrides):
        rows.append(telecom_event(len(rows), customer, day, event_type, rng, **overrides))

    def days(offset: int) -> dt.date:
        return AS_OF + dt.timedelta(days=offset)

    for offset in range(-60, 17):
        for customer in ("c-active", "c-gone", "c-edge14", "c-edge15"):
            if customer == "c-gone" and offset > -10:
                continue
            if customer in ("c-edge14", "c-edge15") and offset > 0:
                continue
            if rng.random() < 0.45:
                for _ in range(rng.randrange(1, 4)):
                    add(customer, days(offset), rng.choice(types))
    add("c-gone", days(-10), "call", call_dropped=True)
    add("c-edge14", days(14), "call")
    add("c-edge15", days(15), "data_session")
    add("c-new", days(1), "call")
    add("c-new", days(3), "data_session")
    add("c-old", days(-45), "data_session", data_mb=100.0)
    add("c-old", days(-31), "call", call_dropped=True)
    add("c-old", days(-30), "payment", amount_eur=20.0, payment_days_late=5)
    add("c-bounds", days(0), "call", call_dropped=True)
    add("c-bounds", days(-6), "call", call_dropped=True)
    add("c-bounds", days(-7), "call", call_dropped=False)
    add("c-bounds", days(-29), "payment", amount_eur=10.5, payment_days_late=2)
    add("c-bounds", days(-30), "payment", amount_eur=99.0, payment_days_late=9)
    add("c-bounds", days(-29), "support_ticket")
    add("c-bounds", days(-40), "data_session", data_mb=50.0)
    return rows


def expected_customer_features(rows: list[dict], as_of: dt.date) -> pd.DataFrame:
    """customer_features recomputed with pandas (the SQL file's comment is the spec)."""
    events = pd.DataFrame(rows)
    events["day"] = pd.to_datetime(events["dt"]).dt.date
    events["age"] = events["day"].map(lambda d: (as_of - d).days)  # 0 = as_of, <0 = future
    out = []
    for customer, e in events.groupby("customer_id"):
        past = e[e["age"] >= 0]
        if past.empty:
            continue
        w7, w30 = past[past["age"] < 7], past[past["age"] < 30]

        def count(frame, mask=None):
            return int(len(frame if mask is None else frame[mask]))

        calls7, calls30 = w7[w7.event_type == "call"], w30[w30.event_type == "call"]
        data7 = float(w7.loc[w7.event_type == "data_session", "data_mb"].sum())
        data30 = float(w30.loc[w30.event_type == "data_session", "data_mb"].sum())
        pay30 = w30[w30.event_type == "payment"]
        future = e[(e["age"] < 0) & (e["age"] >= -14)]
        out.append(
            {
                "customer_id": customer,
                "as_of": as_of,
                "calls_7d": count(calls7),
                "calls_30d": count(calls30),
                "dropped_calls_7d": count(calls7, calls7.call_dropped.eq(True)),
                "dropped_calls_30d": count(calls30, calls30.call_dropped.eq(True)),
                "data_mb_7d": data7,
                "data_mb_30d": data30,
                "support_tickets_30d": count(w30[w30.event_type == "support_ticket"]),
                "late_payments_30d": count(pay30, pay30.payment_days_late.fillna(0) > 0),
                "amount_eur_30d": float(pay30["amount_eur"].fillna(0).sum()),
                "days_since_last_activity": int(past["age"].min()),
                "usage_trend": (data7 * 30 / 7) / data30 if data30 != 0 else None,
                "churned": 0 if len(future) else 1,
            }
        )
    return pd.DataFrame(out).set_index("customer_id").sort_index()


def assert_rows_match(actual: dict, expected: dict, key) -> None:
    assert set(actual) == set(expected), key
    for column, want in expected.items():
        got = actual[column]
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert got is None, (key, column, got)
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=FLOAT_TOLERANCE, abs=FLOAT_TOLERANCE), (
                key,
                column,
            )
        else:
            assert got == want, (key, column, got, want)


def test_customer_features_match_pandas_at_a_fixed_as_of(spark, telecom, features):
    feature = features["customer_features"]
    rows = telecom_rows()
    table = build_feature_table(
        spark,
        feature,
        tables={"curated.telecom_events": curated_frame(spark, telecom, rows)},
        variables={"as_of": AS_OF.isoformat()},
    )
    assert tuple(table.columns) == feature.columns
    actual = {r["customer_id"]: r.asDict() for r in table.collect()}
    expected = expected_customer_features(rows, AS_OF)

    assert sorted(actual) == list(expected.index)
    assert "c-new" not in actual  # no event on or before as_of: not a customer yet
    for customer, want in expected.iterrows():
        want = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in want.to_dict().items()
        }
        got = {k: v for k, v in actual[customer].items() if k != "customer_id"}
        assert_rows_match(got, want, customer)

    # Types a model can use directly.
    types = dict(table.dtypes)
    assert types["as_of"] == "date" and types["churned"] == "int"
    assert types["calls_7d"] == "bigint" and types["data_mb_30d"] == "double"


def test_customer_features_window_edges_and_churn_label_semantics(spark, telecom, features):
    rows = telecom_rows()
    table = build_feature_table(
        spark,
        features["customer_features"],
        tables={"curated.telecom_events": curated_frame(spark, telecom, rows)},
        variables={"as_of": AS_OF.isoformat()},
    )
    got = {r["customer_id"]: r for r in table.collect()}

    # The label: no event in as_of+1 .. as_of+14 -> 1.
    assert got["c-gone"]["churned"] == 1  # active only before as_of
    assert got["c-active"]["churned"] == 0  # active after as_of
    assert got["c-edge14"]["churned"] == 0  # one event on as_of+14: still counts
    assert got["c-edge15"]["churned"] == 1  # as_of+15 is outside the label window
    assert got["c-old"]["churned"] == 1

    # Windows: 7d = as_of-6 .. as_of, 30d = as_of-29 .. as_of.
    b = got["c-bounds"]
    assert (b["calls_7d"], b["dropped_calls_7d"]) == (2, 2)  # as_of and as_of-6
    assert (b["calls_30d"], b["dropped_calls_30d"]) == (3, 2)  # + as_of-7 (not dropped)
    assert b["late_payments_30d"] == 1 and b["amount_eur_30d"] == pytest.approx(10.5)
    assert b["support_tickets_30d"] == 1
    assert b["days_since_last_activity"] == 0
    assert b["data_mb_30d"] == 0.0 and b["usage_trend"] is None  # no data in 30 days
    o = got["c-old"]
    assert (o["calls_30d"], o["late_payments_30d"], o["amount_eur_30d"]) == (0, 0, 0.0)
    assert o["days_since_last_activity"] == 30 and o["usage_trend"] is None
    assert got["c-gone"]["days_since_last_activity"] == 10


def test_customer_features_default_as_of_is_the_newest_cutoff_whose_label_is_observed(
    spark, telecom, features
):
    """Without --as-of (a scheduled or a retraining pipeline run) the cutoff is max(dt) - 15
    days: the newest whose 14-day label window the data holds, so the labels are real (at
    max(dt) itself every label would be 1: nothing is known after the newest day)."""
    rows = telecom_rows()
    newest = max(dt.date.fromisoformat(r["dt"]) for r in rows)
    cutoff = newest - dt.timedelta(days=15)
    table = build_feature_table(
        spark,
        features["customer_features"],
        tables={"curated.telecom_events": curated_frame(spark, telecom, rows)},
        variables={"as_of": None},
    )
    got = {r["customer_id"]: r.asDict() for r in table.collect()}
    assert {r["as_of"] for r in got.values()} == {cutoff}
    expected = expected_customer_features(rows, cutoff)
    assert sorted(got) == list(expected.index)
    for customer, want in expected.iterrows():
        have = {k: v for k, v in got[customer].items() if k != "customer_id"}
        assert_rows_match(have, want.to_dict(), customer)
    assert set(expected.churned) == {0, 1}  # observed labels, not all 1


# ----------------------------------------------------------------------------- customer value


def value_rows() -> list[dict]:
    """telecom_rows, and a customer whose payments sit on the value target's edges: one
    before as_of, one on as_of+14 (the last day of value_next_14d), one on as_of+15."""
    rows = telecom_rows()
    rng = random.Random(7)
    for offset, amount in ((-3, 40.0), (1, 12.25), (14, 30.5), (15, 1000.0)):
        day = AS_OF + dt.timedelta(days=offset)
        rows.append(
            telecom_event(
                len(rows), "c-value", day, "payment", rng, amount_eur=amount, payment_days_late=0
            )
        )
    return rows


def expected_customer_value_features(rows: list[dict], as_of: dt.date) -> pd.DataFrame:
    """customer_value_features recomputed with pandas (the SQL file's comment is the spec)."""
    events = pd.DataFrame(rows)
    events["day"] = pd.to_datetime(events["dt"]).dt.date
    events["age"] = events["day"].map(lambda d: (as_of - d).days)  # 0 = as_of, <0 = future
    out = []
    for customer, e in events.groupby("customer_id"):
        past = e[e["age"] >= 0]
        if past.empty:
            continue
        w30 = past[past["age"] < 30]
        pay30 = w30[w30.event_type == "payment"]
        calls30 = w30[w30.event_type == "call"]
        future = e[(e["age"] < 0) & (e["age"] >= -14) & (e.event_type == "payment")]
        out.append(
            {
                "customer_id": customer,
                "as_of": as_of,
                "payments_30d": len(pay30),
                "amount_eur_30d": float(pay30["amount_eur"].fillna(0).sum()),
                "late_payments_30d": int((pay30.payment_days_late.fillna(0) > 0).sum()),
                "dropped_calls_30d": int(calls30.call_dropped.eq(True).sum()),
                "support_tickets_30d": int((w30.event_type == "support_ticket").sum()),
                "days_since_last_activity": int(past["age"].min()),
                "value_next_14d": float(future["amount_eur"].fillna(0).sum()),
            }
        )
    return pd.DataFrame(out).set_index("customer_id").sort_index()


def test_customer_value_features_match_pandas_at_a_fixed_as_of(spark, telecom, features):
    feature = features["customer_value_features"]
    rows = value_rows()
    table = build_feature_table(
        spark,
        feature,
        tables={"curated.telecom_events": curated_frame(spark, telecom, rows)},
        variables={"as_of": AS_OF.isoformat()},
    )
    assert tuple(table.columns) == feature.columns
    actual = {r["customer_id"]: r.asDict() for r in table.collect()}
    expected = expected_customer_value_features(rows, AS_OF)
    assert sorted(actual) == list(expected.index)
    for customer, want in expected.iterrows():
        got = {k: v for k, v in actual[customer].items() if k != "customer_id"}
        assert_rows_match(got, want.to_dict(), customer)
    # the target's window: as_of+1 .. as_of+14, payments only, 0 for who pays nothing
    assert actual["c-value"]["value_next_14d"] == pytest.approx(12.25 + 30.5)
    assert actual["c-gone"]["value_next_14d"] == 0.0
    types = dict(table.dtypes)
    assert types["value_next_14d"] == "double" and types["payments_30d"] == "bigint"


@pytest.mark.parametrize("cutoff", [AS_OF, AS_OF + dt.timedelta(days=16), None])
def test_online_features_equal_every_served_models_feature_sql(spark, telecom, features, cutoff):
    """No training/serving skew: for every model served from telecom_events (churn on
    customer_features, clv on customer_value_features), the online features the scorer
    computes from a customer's events (dataplatform/online/features.py) equal its feature
    SQL's row on Spark, for every customer and every input the model is served with."""
    from dataplatform.online import features as online

    platform = load_spec(REPO_ROOT / "spec")
    served = [m for m in platform.models if m.serving and m.serving.stream == "telecom_events"]
    assert {m.features_table for m in served} == {"customer_features", "customer_value_features"}
    rows = value_rows()
    frame = curated_frame(spark, telecom, rows)
    events: dict[str, list] = {}
    for row in rows:
        events.setdefault(row["customer_id"], []).append(online.event_of(row))
    for model in served:
        table = build_feature_table(
            spark,
            features[model.features_table],
            tables={"curated.telecom_events": frame},
            variables={"as_of": cutoff.isoformat() if cutoff else None},
        )
        for batch in table.collect():
            as_of = batch["as_of"]
            got = online.features_at(events[batch["customer_id"]], as_of)
            assert got is not None, batch["customer_id"]
            want = {c: batch[c] for c in model.feature_columns}
            assert_rows_match({c: got[c] for c in model.feature_columns}, want, batch)
        # and no customer the SQL leaves out is scored online
        built = table.collect()
        (as_of,) = {r["as_of"] for r in built}  # the cutoff given, or the SQL's default
        scored = {c for c, evs in events.items() if online.features_at(evs, as_of) is not None}
        assert scored == {r["customer_id"] for r in built}, model.name


# ----------------------------------------------------------------------------- house features


def house_rows() -> list[dict]:
    def sale(i, date, price, sqft, zipcode, year_built, waterfront, **kw):
        t = dt.datetime.fromisoformat(date).replace(tzinfo=UTC)
        row = {
            "sale_id": f"s-{i}",
            "sale_date": t,
            "price": price,
            "bedrooms": 3,
            "bathrooms": 2.0,
            "living_area_sqft": sqft,
            "lot_area_sqft": 4000.0 + i,
            "floors": 1.0 + (i % 2),
            "year_built": year_built,
            "condition": 1 + i % 5,
            "waterfront": waterfront,
            "zipcode": zipcode,
            "latitude": 47.5,
            "longitude": -122.3,
            "agent_email": None,
            "dt": date[:10],
        }
        row.update(kw)
        return row

    return [
        sale(1, "2026-01-15T10:00:00", 300000.0, 1500.0, "98101", 1990, False),
        sale(2, "2026-02-01T00:00:00", 450000.0, 2000.0, "98101", 2005, True, bedrooms=4),
        sale(3, "2026-03-31T23:59:00", 200000.0, 1000.0, "98101", 1950, None),
        sale(4, "2025-12-31T12:00:00", 800000.0, 2500.0, "98101", 2020, False),
        sale(5, "2026-06-10T09:00:00", 500000.0, 2000.0, "98102", 1980, True),
        sale(6, "2026-06-11T09:00:00", 750000.0, 2500.0, "98102", 1999, False),
        sale(7, "2026-07-01T09:00:00", 123456.0, 789.0, "98199", 1900, False),  # alone
    ]


def test_house_features_match_pandas(spark, house_sales, features):
    feature = features["house_features"]
    rows = house_rows()
    table = build_feature_table(
        spark,
        feature,
        tables={"curated.house_sales": curated_frame(spark, house_sales, rows)},
        variables={},
    )
    assert tuple(table.columns) == feature.columns
    actual = {r["sale_id"]: r.asDict() for r in table.collect()}

    sales = pd.DataFrame(rows)
    sales["ppsf"] = sales["price"] / sales["living_area_sqft"]
    assert sorted(actual) == sorted(sales["sale_id"])
    for _, s in sales.iterrows():
        others = sales[(sales.zipcode == s.zipcode) & (sales.sale_id != s.sale_id)]["ppsf"]
        want = {
            "sale_id": s.sale_id,
            "price": s.price,
            "log_price": math.log(s.price),
            "bedrooms": s.bedrooms,
            "bathrooms": s.bathrooms,
            "living_area_sqft": s.living_area_sqft,
            "lot_area_sqft": s.lot_area_sqft,
            "floors": s.floors,
            "age_years": s.sale_date.year - s.year_built,
            "condition": s.condition,
            "waterfront": None if s.waterfront is None else int(s.waterfront),
            "zipcode": s.zipcode,
            "price_per_sqft_zip_median": float(np.median(others)) if len(others) else None,
            "sale_month": s.sale_date.month,
        }
        assert_rows_match(actual[s.sale_id], want, s.sale_id)
    # Hand-checked: 98101 without s-1 has price/sqft 225, 200, 320 -> median 225.
    assert actual["s-1"]["price_per_sqft_zip_median"] == pytest.approx(225.0)
    # 98102 has two sales: each one's feature is the other's price/sqft.
    assert actual["s-5"]["price_per_sqft_zip_median"] == pytest.approx(300.0)
    assert actual["s-7"]["price_per_sqft_zip_median"] is None


# ----------------------------------------------------------------------------- render_sql


def test_render_sql_substitutes_variables_and_rewrites_qualifiers():
    sql = (
        "-- as of ${as_of} from curated.telecom_events\n"
        "SELECT '${as_of}' AS literal, ${as_of} AS as_of, ${tag} AS tag, t.x AS x\n"
        "FROM curated.telecom_events t JOIN features.customer_features f ON t.id = f.id\n"
        "JOIN RAW.house_sales r ON r.id = t.id /* curated.not_me */ JOIN `curated.q` q"
    )
    out = render_sql(
        sql,
        variables={"as_of": "2026-11-20", "tag": "it's", "unused": "x"},
        databases={"curated": "mldp_dev_curated"},
    )
    assert out == (
        "-- as of ${as_of} from curated.telecom_events\n"
        "SELECT '${as_of}' AS literal, '2026-11-20' AS as_of, 'it\\'s' AS tag, t.x AS x\n"
        "FROM mldp_dev_curated__telecom_events t JOIN features__customer_features f ON t.id = f.id\n"
        "JOIN raw__house_sales r ON r.id = t.id /* curated.not_me */ JOIN `curated.q` q"
    )
    assert render_sql("SELECT ${as_of} AS a", variables={"as_of": None}) == "SELECT NULL AS a"
    assert referenced_tables(sql) == [
        ("curated", "telecom_events"),
        ("features", "customer_features"),
        ("raw", "house_sales"),
    ]
    assert variables_used(sql) == ["as_of", "tag"]


def test_render_sql_refuses_a_missing_variable():
    with pytest.raises(FeatureSqlError, match=r"\$\{as_of\}.*no value"):
        render_sql("SELECT ${as_of} AS a", variables={})


def test_rendered_literals_are_spark_literals(spark):
    out = render_sql(
        "SELECT ${v} AS v, ${w} AS w", variables={"v": "it's \\ here", "w": "2026-11-20"}
    )
    row = spark.sql(out).collect()[0]
    assert (row["v"], row["w"]) == ("it's \\ here", "2026-11-20")


def test_sql_whose_columns_differ_from_the_spec_is_refused(spark):
    df = spark.createDataFrame([("c-1", 3)], "customer_id string, calls bigint")
    feature = FeatureTable(
        name="customer_features",
        columns=("customer_id", "calls_7d"),
        sql="SELECT customer_id AS customer_id, calls AS calls_total FROM curated.telecom_events",
        source_file="spec/features/customer_features.sql",
    )
    with pytest.raises(
        FeatureSqlError,
        match=r"produced columns \['customer_id', 'calls_total'\] "
        r"but the spec expects \['customer_id', 'calls_7d'\].*missing "
        r"\['calls_7d'\].*unexpected \['calls_total'\]",
    ):
        build_feature_table(spark, feature, tables={"curated.telecom_events": df}, variables={})
    with pytest.raises(FeatureSqlError, match=r"reads curated.telecom_events but no DataFrame"):
        build_feature_table(spark, feature, tables={}, variables={})


# ----------------------------------------------------------------------------- the EMR step


def _load_step(name: str):
    spec = importlib.util.spec_from_file_location(
        f"emr_step_{name}", REPO_ROOT / "emr_steps" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_emr_step_builds_the_feature_table_from_parquet_files(spark, telecom, tmp_path):
    step = _load_step("features")
    rows = telecom_rows()
    curated = tmp_path / "curated"
    (
        curated_frame(spark, telecom, rows)
        .write.partitionBy("dt")
        .parquet(str(curated / "telecom_events"))
    )
    args = step.parse_args(
        [
            "--name",
            "customer_features",
            "--as-of",
            AS_OF.isoformat(),
            "--curated-path",
            f"file://{curated}",
            "--features-path",
            f"file://{tmp_path / 'features'}",
            "--JOB_NAME",
            "ignored",
            "--extra=1",
        ]
    )
    report = step.run(args, spark, log=lambda _: None)
    assert report["inputs"] == ["curated.telecom_events"]
    written = spark.read.parquet(str(tmp_path / "features" / "customer_features"))
    expected = expected_customer_features(rows, AS_OF)
    got = {r["customer_id"]: r for r in written.collect()}
    assert sorted(got) == list(expected.index)
    for customer, want in expected.iterrows():
        assert got[customer]["calls_30d"] == want["calls_30d"]
        assert got[customer]["churned"] == want["churned"]
    with pytest.raises(SystemExit):
        step.parse_args(
            ["--name", "x", "--as-of", "20261120", "--curated-path", "a", "--features-path", "b"]
        )
