"""The curate transform (raw -> curated + quarantine + report) on a local Spark.

Each test feeds raw rows (all strings, as the raw Glue table reads them) for the shipped
telecom_events (stream, JSON) or house_sales (batch, CSV) dataset and checks what reaches
the curated zone, what is quarantined and why, and the report's numbers. The last test
checks the transform against an independent pandas computation over ~2,000 messy rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from collections import Counter

import pandas as pd
import pytest

from dataplatform.transforms.curate import CurateResult, check_reconciliation, curate

UTC = dt.UTC


# ----------------------------------------------------------------------------- helpers


def event(**overrides) -> dict:
    """One valid telecom event as raw strings; keyword arguments replace fields
    (None = the field is absent from the JSON record)."""
    row = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "msisdn": "+31600000001",
        "event_type": "call",
        "event_time": "2026-03-01T10:00:00Z",
        "plan": "prepaid",
        "duration_s": "60",
        "call_dropped": "false",
        "data_mb": "0",
        "ticket_category": "",
        "amount_eur": "",
        "payment_days_late": "",
        "cell_id": "cell-1",
        "debug_blob": '{"trace": 1}',
        "dt": "2026-03-01",
        "hour": "10",
    }
    row.update(overrides)
    return row


def sale(**overrides) -> dict:
    """One valid house sale as raw CSV strings."""
    row = {
        "sale_id": "s-1",
        "sale_date": "2026-02-10",
        "price": "350000",
        "bedrooms": "3",
        "bathrooms": "2",
        "living_area_sqft": "1800",
        "lot_area_sqft": "5000",
        "floors": "2",
        "year_built": "1995",
        "condition": "4",
        "waterfront": "no",
        "zipcode": "98101",
        "latitude": "47.6",
        "longitude": "-122.3",
        "seller_name": "J. Doe",
        "agent_email": "agent@example.com",
        "dt": "2026-02-11",
    }
    row.update(overrides)
    return row


def raw_frame(spark, rows: list[dict], columns: list[str] | None = None):
    """A raw DataFrame: every column a string, columns = union of the rows' keys."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    schema = ", ".join(f"`{c}` string" for c in columns) or "placeholder string"
    return spark.createDataFrame([tuple(r.get(c) for c in columns) for r in rows], schema)


def run(spark, dataset, rows, **kwargs) -> CurateResult:
    return curate(raw_frame(spark, rows), dataset, **kwargs)


def curated_rows(result: CurateResult) -> list[dict]:
    return [r.asDict() for r in result.curated.collect()]


def quarantined_rows(result: CurateResult) -> list[dict]:
    return [r.asDict() for r in result.quarantined.collect()]


def only_quarantined(result: CurateResult) -> dict:
    rows = quarantined_rows(result)
    assert len(rows) == 1, rows
    return rows[0]


# ----------------------------------------------------------------------------- validation rules
# Each table of cases runs as one curate: a row per case, told apart by its event_id (rows
# are checked one by one, so they do not affect each other), and the assertion compares the
# whole table, so a failure names every case that went wrong. A Spark run per case cost the
# suite about a second each.


def reasons_by_case(result: CurateResult) -> dict[str, str]:
    return {r["event_id"]: r["reason"] for r in quarantined_rows(result)}


def test_missing_required_field_quarantines_row(spark, telecom):
    missing = {"empty": "", "blank": "   ", "absent": None}
    rows = [event(event_id="ok")] + [
        event(event_id=case, customer_id=value) for case, value in missing.items()
    ]
    result = run(spark, telecom, rows)
    assert [r["event_id"] for r in curated_rows(result)] == ["ok"]
    assert reasons_by_case(result) == {case: "customer_id:required" for case in missing}
    assert result.report["quarantined_by_reason"] == {"customer_id:required": len(missing)}


WRONG_TYPES = [
    ("duration_s", "twelve"),  # double
    ("duration_s", "1,5"),  # decimal comma is not a number
    ("duration_s", "NaN"),  # not a measurement
    ("payment_days_late", "3.5"),  # int
    ("call_dropped", "maybe"),  # boolean
    ("event_time", "yesterday"),  # timestamp
    ("event_time", "2026-02-30T10:00:00Z"),
]


def test_value_of_wrong_type_quarantines_row_with_type_reason(spark, telecom):
    rows = [event(event_id=f"{c}={v}", **{c: v}) for c, v in WRONG_TYPES]
    result = run(spark, telecom, rows)
    assert result.report["rows_curated"] == 0
    assert reasons_by_case(result) == {f"{c}={v}": f"{c}:type" for c, v in WRONG_TYPES}
    kept_raw = {r["event_id"]: r[r["event_id"].split("=")[0]] for r in quarantined_rows(result)}
    assert kept_raw == {f"{c}={v}": v for c, v in WRONG_TYPES}


def test_na_placeholder_in_numeric_column_is_a_type_error_and_raw_text_is_kept(spark, telecom):
    result = run(spark, telecom, [event(duration_s="N/A")])
    bad = only_quarantined(result)
    assert bad["reason"] == "duration_s:type"
    assert bad["duration_s"] == "N/A"


OUT_OF_RANGE = [
    ("duration_s", "-1", "min"),
    ("duration_s", "86400.5", "max"),
    ("amount_eur", "10000.01", "max"),
    ("payment_days_late", "-3", "min"),
    ("payment_days_late", "366", "max"),
]


def test_value_out_of_range_quarantines_row(spark, telecom):
    rows = [event(event_id=f"{c}={v}", **{c: v}) for c, v, _ in OUT_OF_RANGE]
    result = run(spark, telecom, rows)
    assert reasons_by_case(result) == {f"{c}={v}": f"{c}:{rule}" for c, v, rule in OUT_OF_RANGE}
    assert result.report["quarantined_by_reason"] == dict(
        Counter(f"{c}:{rule}" for c, _, rule in OUT_OF_RANGE)
    )


ON_THE_BOUNDS = [
    ("duration_s", "0"),
    ("duration_s", "86400"),
    ("amount_eur", "10000"),
    ("payment_days_late", "365"),
]


def test_values_on_the_bounds_are_valid(spark, telecom):
    rows = [event(event_id=f"{c}={v}", **{c: v}) for c, v in ON_THE_BOUNDS]
    result = run(spark, telecom, rows)
    assert reasons_by_case(result) == {}
    assert sorted(r["event_id"] for r in curated_rows(result)) == sorted(
        f"{c}={v}" for c, v in ON_THE_BOUNDS
    )
    assert result.report["rows_curated"] == len(ON_THE_BOUNDS)


def test_value_not_in_allowed_list_quarantines_row(spark, telecom):
    not_allowed = [("event_type", "sms"), ("plan", "gold"), ("ticket_category", "Billing")]
    rows = [event(event_id=f"{c}={v}", **{c: v}) for c, v in not_allowed]
    result = run(spark, telecom, rows)
    assert reasons_by_case(result) == {f"{c}={v}": f"{c}:allowed" for c, v in not_allowed}


def test_all_reasons_of_a_row_are_listed_in_spec_then_rule_order(spark, telecom):
    result = run(
        spark,
        telecom,
        [
            event(
                amount_eur="20000",
                duration_s="-5",
                event_type="sms",
                customer_id="",
                call_dropped="perhaps",
            )
        ],
    )
    bad = only_quarantined(result)
    assert bad["reason"] == (
        "customer_id:required;event_type:allowed;duration_s:min;call_dropped:type;amount_eur:max"
    )
    assert result.report["quarantined_by_reason"] == {
        "customer_id:required": 1,
        "event_type:allowed": 1,
        "duration_s:min": 1,
        "call_dropped:type": 1,
        "amount_eur:max": 1,
    }
    assert result.report["rows_quarantined"] == 1


def test_quarantined_row_keeps_original_raw_strings_and_a_dt(spark, telecom):
    result = run(
        spark,
        telecom,
        [
            event(
                duration_s="  -7 ",
                msisdn=" +31 6 ",
                call_dropped="YES",
                event_time="2026-03-02T23:59:59-01:00",
            )
        ],
    )
    bad = only_quarantined(result)
    assert bad["duration_s"] == "  -7 " and bad["msisdn"] == " +31 6 "
    assert bad["call_dropped"] == "YES"
    assert bad["dt"] == "2026-03-03"  # derived from the (valid) event_time in UTC
    spec_columns = [c.name for c in telecom.kept_columns]
    assert result.quarantined.columns == spec_columns + ["reason", "dt"]
    assert "debug_blob" not in result.quarantined.columns
    assert all(f.dataType.simpleString() == "string" for f in result.quarantined.schema.fields)


def test_quarantined_row_without_valid_event_time_falls_back_to_raw_dt_then_unknown(spark, telecom):
    result = run(
        spark,
        telecom,
        [
            event(event_id="a", event_time="garbage", dt="2026-03-05"),
            event(event_id="b", event_time="garbage", dt=None),
        ],
    )
    by_id = {r["event_id"]: r for r in quarantined_rows(result)}
    assert by_id["a"]["dt"] == "2026-03-05"
    assert by_id["b"]["dt"] == "__unknown__"


# ----------------------------------------------------------------------------- typing


def test_curated_columns_are_spec_columns_in_order_with_spark_types_and_dt(spark, telecom):
    result = run(spark, telecom, [event(payment_days_late="3", amount_eur="12.5")])
    types = {f.name: f.dataType.simpleString() for f in result.curated.schema.fields}
    assert result.curated.columns == [c.name for c in telecom.kept_columns] + ["dt"]
    assert types["event_time"] == "timestamp" and types["duration_s"] == "double"
    assert types["payment_days_late"] == "int" and types["call_dropped"] == "boolean"
    assert types["dt"] == "string" and types["event_id"] == "string"
    row = curated_rows(result)[0]
    assert row["payment_days_late"] == 3 and row["amount_eur"] == 12.5


def test_boolean_spellings_are_accepted_case_insensitively(spark, telecom):
    spellings = {"true": True, "FALSE": False, "1": True, "0": False, "Yes": True, " no ": False}
    # the event_id names the spelling (repr: event ids are trimmed too)
    rows = [event(event_id=repr(text), call_dropped=text) for text in spellings]
    result = run(spark, telecom, rows)
    parsed = {r["event_id"]: r["call_dropped"] for r in curated_rows(result)}
    assert parsed == {repr(text): value for text, value in spellings.items()}


TIMESTAMP_SPELLINGS = {
    "2026-03-01T10:00:00Z": dt.datetime(2026, 3, 1, 10, 0),
    "2026-03-01T10:00:00": dt.datetime(2026, 3, 1, 10, 0),  # no offset = UTC
    "2026-03-01 10:00:00.250": dt.datetime(2026, 3, 1, 10, 0, 0, 250000),
    "2026-03-01T12:00:00+02:00": dt.datetime(2026, 3, 1, 10, 0),
    "2026-03-01T05:00:00-05:00": dt.datetime(2026, 3, 1, 10, 0),
    "1772359200": dt.datetime(2026, 3, 1, 10, 0),  # epoch seconds
    "1772359200250": dt.datetime(2026, 3, 1, 10, 0, 0, 250000),  # epoch milliseconds
}


def test_timestamps_are_parsed_to_utc(spark, telecom):
    rows = [event(event_id=text, event_time=text) for text in TIMESTAMP_SPELLINGS]
    result = run(spark, telecom, rows)
    # The session runs in UTC, so collected naive datetimes are UTC wall-clock times.
    parsed = {r["event_id"]: r["event_time"] for r in curated_rows(result)}
    assert parsed == TIMESTAMP_SPELLINGS


def test_integer_written_as_whole_float_is_accepted(spark, telecom):
    result = run(spark, telecom, [event(payment_days_late="4.0")])
    assert curated_rows(result)[0]["payment_days_late"] == 4


def test_unicode_and_control_characters_in_strings_are_kept_intact(spark, telecom):
    cell = "Zürich-東京-🚀\x07mid\ttab\x00nul\u200bzwsp"
    customer = "klant-é-ß-\u202eRTL"
    result = run(spark, telecom, [event(cell_id=cell, customer_id=customer)])
    row = curated_rows(result)[0]
    assert row["cell_id"] == cell
    assert row["customer_id"] == customer


def test_edge_whitespace_is_trimmed_before_typing(spark, telecom):
    result = run(
        spark, telecom, [event(cell_id="  cell-9\t", duration_s=" 42 ", event_type=" call")]
    )
    row = curated_rows(result)[0]
    assert (row["cell_id"], row["duration_s"], row["event_type"]) == ("cell-9", 42.0, "call")


# ----------------------------------------------------------------------------- dt


def test_dt_is_derived_in_utc_from_an_offset_timestamp(spark, telecom):
    result = run(spark, telecom, [event(event_time="2026-03-01T01:30:00+02:00", dt="2026-03-01")])
    row = curated_rows(result)[0]
    assert row["dt"] == "2026-02-28"
    assert row["event_time"] == dt.datetime(2026, 2, 28, 23, 30)
    assert result.report["partitions"] == ["2026-02-28"]


def test_partitions_lists_the_curated_dt_values_sorted(spark, house_sales):
    result = run(
        spark,
        house_sales,
        [
            sale(sale_id="a", sale_date="2026-02-12"),
            sale(sale_id="b", sale_date="2025-12-31"),
            sale(sale_id="c", sale_date="2026-02-12T23:00:00-03:00"),
            sale(sale_id="d", sale_date="2024-01-01", price="1"),
        ],
    )  # quarantined
    assert result.report["partitions"] == ["2025-12-31", "2026-02-12", "2026-02-13"]


def test_dataset_without_event_time_takes_dt_from_the_raw_partition(spark, house_sales):
    no_event_time = dataclasses.replace(house_sales, event_time=None)
    result = run(
        spark,
        no_event_time,
        [
            sale(sale_id="a", dt="2026-02-11"),
            sale(sale_id="b", dt=""),
            sale(sale_id="c", dt="not-a-date"),
        ],
    )
    assert [(r["sale_id"], r["dt"]) for r in curated_rows(result)] == [("a", "2026-02-11")]
    reasons = {r["sale_id"]: (r["reason"], r["dt"]) for r in quarantined_rows(result)}
    assert reasons == {"b": ("dt:required", "__unknown__"), "c": ("dt:type", "__unknown__")}


def test_non_utc_session_is_refused(spark, telecom):
    frame = raw_frame(spark, [event()])
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Europe/Amsterdam")
    try:
        with pytest.raises(ValueError, match="spark.sql.session.timeZone"):
            curate(frame, telecom)
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)


# ----------------------------------------------------------------------------- deduplication


def test_duplicate_keeps_latest_event_time_regardless_of_input_order(spark, telecom):
    orders = [(0, 1, 2), (2, 1, 0), (1, 2, 0)]
    rows = [event(event_id="e-10")]
    for n, order in enumerate(orders):  # one event per input order, its versions in it
        versions = [
            event(event_id=f"e-9.{n}", event_time="2026-03-01T10:00:00Z", duration_s="10"),
            # 10:30Z, the latest
            event(event_id=f"e-9.{n}", event_time="2026-03-01T12:30:00+02:00", duration_s="30"),
            event(event_id=f"e-9.{n}", event_time="2026-03-01T10:15:00Z", duration_s="20"),
        ]
        rows += [versions[i] for i in order]
    result = run(spark, telecom, rows)
    kept = {r["event_id"]: (r["duration_s"], r["event_time"]) for r in curated_rows(result)}
    latest = (30.0, dt.datetime(2026, 3, 1, 10, 30))
    assert kept == {"e-10": (60.0, dt.datetime(2026, 3, 1, 10, 0))} | {
        f"e-9.{n}": latest for n in range(len(orders))
    }
    assert result.report["duplicates_removed"] == 2 * len(orders)
    assert result.report["rows_curated"] == 1 + len(orders)


def test_duplicates_with_equal_event_time_keep_the_same_row_whatever_the_input_order(
    spark, telecom
):
    versions = [event(event_id="e-5", cell_id=f"cell-{i}", duration_s=str(i)) for i in range(6)]
    winners = set()
    for seed in range(4):
        shuffled = versions[:]
        random.Random(seed).shuffle(shuffled)
        frame = raw_frame(spark, shuffled).repartition(3)
        winners.add(tuple(sorted(curate(frame, telecom).curated.collect()[0].asDict().items())))
    assert len(winners) == 1


def test_a_bad_later_duplicate_does_not_replace_a_good_earlier_one(spark, telecom):
    result = run(
        spark,
        telecom,
        [
            event(event_id="e-1", event_time="2026-03-01T10:00:00Z", duration_s="5"),
            event(event_id="e-1", event_time="2026-03-01T11:00:00Z", duration_s="-5"),
        ],
    )
    assert curated_rows(result)[0]["duration_s"] == 5.0
    assert result.report["rows_quarantined"] == 1
    assert result.report["duplicates_removed"] == 0


# ----------------------------------------------------------------------------- imputation


def test_impute_median_of_valid_values_is_used_and_reported(spark, house_sales):
    rows = [
        sale(sale_id="a", bathrooms="1"),
        sale(sale_id="b", bathrooms="2.5"),
        sale(sale_id="c", bathrooms="4"),
        sale(sale_id="d", bathrooms="3"),
        sale(sale_id="e", bathrooms=""),  # imputed
        sale(sale_id="x", bathrooms="1000"),
    ]  # quarantined: not counted
    result = run(spark, house_sales, rows)
    assert result.report["imputed"]["bathrooms"] == {"value": 2.75, "rows": 1}
    by_id = {r["sale_id"]: r for r in curated_rows(result)}
    assert by_id["e"]["bathrooms"] == 2.75


def test_impute_median_of_an_int_column_is_rounded_half_up(spark, house_sales):
    rows = [sale(sale_id=str(i), bedrooms=b) for i, b in enumerate(["1", "2", "3", "4", None])]
    result = run(spark, house_sales, rows)
    assert result.report["imputed"]["bedrooms"] == {"value": 3, "rows": 1}  # median 2.5 -> 3
    assert {r["bedrooms"] for r in curated_rows(result)} == {1, 2, 3, 4}


def test_impute_mean_of_valid_values_is_used_and_reported(spark, house_sales):
    columns = tuple(
        dataclasses.replace(c, impute="mean") if c.name == "lot_area_sqft" else c
        for c in house_sales.columns
    )
    with_mean = dataclasses.replace(house_sales, columns=columns)
    rows = [
        sale(sale_id="a", lot_area_sqft="1000"),
        sale(sale_id="b", lot_area_sqft="2000"),
        sale(sale_id="c", lot_area_sqft="6000"),
        sale(sale_id="d", lot_area_sqft=""),
        sale(sale_id="e", lot_area_sqft=None),
    ]
    result = run(spark, with_mean, rows)
    assert result.report["imputed"]["lot_area_sqft"] == {"value": 3000.0, "rows": 2}
    by_id = {r["sale_id"]: r["lot_area_sqft"] for r in curated_rows(result)}
    assert by_id == {"a": 1000.0, "b": 2000.0, "c": 6000.0, "d": 3000.0, "e": 3000.0}


def test_impute_zero_fills_nulls_with_zero(spark, telecom):
    result = run(
        spark, telecom, [event(event_id="a", data_mb=""), event(event_id="b", data_mb="7.5")]
    )
    assert result.report["imputed"]["data_mb"] == {"value": 0.0, "rows": 1}
    assert {r["event_id"]: r["data_mb"] for r in curated_rows(result)} == {"a": 0.0, "b": 7.5}


def test_impute_literal_fills_nulls_with_the_spec_value(spark, telecom, house_sales):
    telecom_result = run(spark, telecom, [event(plan="")])
    assert telecom_result.report["imputed"]["plan"] == {"value": "postpaid", "rows": 1}
    assert curated_rows(telecom_result)[0]["plan"] == "postpaid"

    house_result = run(spark, house_sales, [sale(floors="", condition=None, waterfront="  ")])
    imputed = house_result.report["imputed"]
    assert imputed["floors"] == {"value": 1.0, "rows": 1}
    assert imputed["condition"] == {"value": 3, "rows": 1}
    assert imputed["waterfront"] == {"value": False, "rows": 1}
    row = curated_rows(house_result)[0]
    assert (row["floors"], row["condition"], row["waterfront"]) == (1.0, 3, False)


def test_columns_without_impute_stay_null(spark, telecom):
    row = curated_rows(run(spark, telecom, [event(amount_eur="", msisdn="")]))[0]
    assert row["amount_eur"] is None and row["msisdn"] is None


# ----------------------------------------------------------------------------- drift, empty input


def test_extra_columns_are_reported_and_absent_from_curated(spark, telecom, house_sales):
    result = run(spark, telecom, [event(loyalty_tier="gold", Event_ID="E-1", hour="10")])
    assert result.report["extra_columns"] == ["Event_ID", "loyalty_tier"]
    assert "loyalty_tier" not in result.curated.columns
    assert "Event_ID" not in result.curated.columns and "hour" not in result.curated.columns
    assert "debug_blob" not in result.curated.columns  # a spec `drop` column
    assert result.report["rows_curated"] == 1
    assert curated_rows(result)[0]["event_id"] == "e-1"

    house = run(spark, house_sales, [sale(garage="yes")])
    assert house.report["extra_columns"] == ["garage"]
    assert "seller_name" not in house.curated.columns


def test_spec_columns_missing_from_input_are_null(spark, telecom):
    rows = [{k: v for k, v in event().items() if k not in ("msisdn", "ticket_category", "data_mb")}]
    result = run(spark, telecom, rows)
    row = curated_rows(result)[0]
    assert row["msisdn"] is None and row["ticket_category"] is None
    assert row["data_mb"] == 0.0  # imputed zero
    assert result.report["extra_columns"] == []


def test_empty_input_gives_zero_counts(spark, telecom):
    columns = [c.name for c in telecom.columns] + ["dt", "hour"]
    result = curate(raw_frame(spark, [], columns), telecom)
    report = result.report
    assert (
        report["rows_in"],
        report["rows_curated"],
        report["rows_quarantined"],
        report["duplicates_removed"],
    ) == (0, 0, 0, 0)
    assert report["quarantined_by_reason"] == {} and report["partitions"] == []
    assert report["extra_columns"] == []
    assert all(v["rows"] == 0 for v in report["imputed"].values())
    assert result.curated.count() == 0 and result.quarantined.count() == 0
    json.dumps(report)


def test_input_with_no_columns_at_all_does_not_crash(spark, telecom):
    result = curate(spark.range(0).select(), telecom)
    assert result.report["rows_in"] == 0
    assert result.curated.columns == [c.name for c in telecom.kept_columns] + ["dt"]


# ----------------------------------------------------------------------------- report


def test_report_reconciles_and_is_json_serialisable(spark, telecom):
    rows = [
        event(event_id="a"),
        event(event_id="a", event_time="2026-03-01T09:00:00Z"),
        event(event_id="b", event_type="sms"),
        event(event_id="c"),
    ]
    report = run(spark, telecom, rows).report
    assert report["rows_in"] == 4
    assert report["rows_in"] == (
        report["rows_curated"] + report["rows_quarantined"] + report["duplicates_removed"]
    )
    assert json.loads(json.dumps(report)) == report


def test_check_reconciliation_raises_with_the_numbers_when_rows_go_missing():
    report = {"rows_in": 10, "rows_curated": 6, "rows_quarantined": 2, "duplicates_removed": 1}
    with pytest.raises(ValueError) as info:
        check_reconciliation(report)
    message = str(info.value)
    for number in ("rows_in=10", "rows_curated=6", "rows_quarantined=2", "duplicates_removed=1"):
        assert number in message
    check_reconciliation({**report, "rows_in": 9})


# ----------------------------------------------------------------------------- known answer

EVENT_TYPES = ["call", "data_session", "support_ticket", "payment"]


def _timestamp_text(rng: random.Random, instant: dt.datetime) -> str:
    style = rng.random()
    if style < 0.5:
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style < 0.8:
        hours = rng.choice([-5, 1, 2, 9])
        local = instant.astimezone(dt.timezone(dt.timedelta(hours=hours)))
        return local.isoformat()
    if style < 0.9:
        return instant.strftime("%Y-%m-%d %H:%M:%S")  # no offset: UTC
    return str(int(instant.timestamp() * 1000))  # epoch milliseconds


def generate_messy_events(n: int, seed: int) -> list[dict]:
    """n telecom events, some invalid, some re-sent (duplicates), from a seeded generator."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 2, 20, tzinfo=UTC)
    rows: list[dict] = []
    while len(rows) < n:
        if rows and rng.random() < 0.15:  # re-send an earlier event
            row = dict(rng.choice(rows))
            instant = pd.Timestamp(row["__instant"]).to_pydatetime()
            shift = dt.timedelta(seconds=rng.choice([-3600, -60, 0, 0, 45, 7200]))
            row["__instant"] = instant + shift
            row["event_time"] = _timestamp_text(rng, row["__instant"])
            row["duration_s"] = rng.choice([row["duration_s"], str(rng.randint(1, 900))])
            rows.append(row)
            continue
        instant = start + dt.timedelta(seconds=rng.randint(0, 14 * 86400))
        row = {
            "event_id": f"e-{len(rows):05d}",
            "customer_id": f"c-{rng.randint(1, 300)}",
            "msisdn": f"+316{rng.randint(10**7, 10**8 - 1)}",
            "event_type": rng.choice(EVENT_TYPES),
            "event_time": _timestamp_text(rng, instant),
            "plan": rng.choice(["prepaid", "postpaid", "family", "business", ""]),
            "duration_s": rng.choice(
                [str(round(rng.uniform(0, 3600), 2)), str(rng.randint(0, 600)), "", " 17 "]
            ),
            "call_dropped": rng.choice(["true", "false", "0", "1", "YES", "no", ""]),
            "data_mb": rng.choice([str(round(rng.uniform(0, 500), 3)), ""]),
            "ticket_category": rng.choice(["", "billing", "network", "device", "other"]),
            "amount_eur": rng.choice(["", str(round(rng.uniform(0, 200), 2))]),
            "payment_days_late": rng.choice(["", str(rng.randint(0, 60)), "2.0"]),
            "cell_id": rng.choice(["cell-1", "cell-ü", "cell-\x01", ""]),
            "debug_blob": "x" * rng.randint(0, 5),
            "dt": instant.strftime("%Y-%m-%d"),
            "__instant": instant,
        }
        if rng.random() < 0.12:  # break the row
            field, value = rng.choice(
                [
                    ("customer_id", ""),
                    ("customer_id", None),
                    ("event_type", "sms"),
                    ("event_time", "not-a-time"),
                    ("event_time", ""),
                    ("duration_s", "N/A"),
                    ("duration_s", "-4"),
                    ("duration_s", "90000"),
                    ("amount_eur", "10001"),
                    ("payment_days_late", "3.5"),
                    ("payment_days_late", "400"),
                    ("call_dropped", "maybe"),
                    ("plan", "gold"),
                    ("ticket_category", "Billing"),
                    ("data_mb", "-1"),
                ]
            )
            row[field] = value
            if rng.random() < 0.3:  # and sometimes another field
                row["duration_s"] = "abc"
        rows.append(row)
    rng.shuffle(rows)
    return [{k: v for k, v in r.items() if k != "__instant"} for r in rows]


def _parse_instant(text) -> pd.Timestamp | None:
    """ISO-8601 (no offset = UTC) or epoch milliseconds, as the generator writes them."""
    if text is None or text is pd.NA:
        return None
    if text.isdigit():
        return pd.Timestamp(int(text), unit="ms", tz="UTC")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return pd.Timestamp(parsed).tz_convert("UTC")


def expected_with_pandas(rows: list[dict], dataset) -> dict:
    """The same rules as the spec states them, computed independently with pandas."""
    frame = pd.DataFrame(rows)
    tokens: list[list[str]] = [[] for _ in range(len(frame))]
    typed: dict[str, pd.Series] = {}
    for column in dataset.kept_columns:
        text = frame[column.name] if column.name in frame else pd.Series([None] * len(frame))
        clean = text.astype("string").str.strip()
        clean = clean.where(clean.notna() & (clean != ""), None)
        present = clean.notna()
        if column.type in ("double", "int", "bigint"):
            value = pd.to_numeric(clean, errors="coerce")
            if column.type != "double":
                value = value.where(value % 1 == 0)
        elif column.type == "boolean":
            words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            value = clean.str.lower().map(words)
        elif column.type == "timestamp":
            # Element by element: pandas' vectorised ISO parser applies one row's offset to
            # the next row when offset-less and offset-carrying texts are mixed.
            value = pd.Series(
                [_parse_instant(t) for t in clean], index=clean.index, dtype="datetime64[ns, UTC]"
            )
        else:
            value = clean
        value = value.where(present)
        typed[column.name] = value
        checks = [("type", present & value.isna())]
        if column.required:
            checks.append(("required", ~present))
        if column.allowed is not None:
            checks.append(("allowed", value.notna() & ~value.isin(list(column.allowed))))
        if column.min is not None:
            checks.append(("min", value.notna() & (value < column.min)))
        if column.max is not None:
            checks.append(("max", value.notna() & (value > column.max)))
        for rule, mask in checks:
            for i in mask[mask.fillna(False).astype(bool)].index:
                tokens[i].append(f"{column.name}:{rule}")
    bad = pd.Series([bool(t) for t in tokens])
    valid = pd.DataFrame({name: series[~bad] for name, series in typed.items()})
    duration = valid["duration_s"].astype(float)
    latest = valid.groupby("event_id")["event_time"].max()
    return {
        "rows_in": len(frame),
        "rows_quarantined": int(bad.sum()),
        "rows_curated": int(valid["event_id"].nunique()),
        "duplicates_removed": int(len(valid) - valid["event_id"].nunique()),
        "median_duration_s": float(duration.median()),
        "duration_s_imputed_rows": int(duration.isna().sum()),
        "reasons": dict(Counter(t for row in tokens for t in row)),
        "latest_event_time": {k: v.tz_convert(None).to_pydatetime() for k, v in latest.items()},
    }


def test_known_answer_on_2000_messy_events_matches_independent_pandas(spark, telecom):
    rows = generate_messy_events(2000, seed=20260301)
    expected = expected_with_pandas(rows, telecom)
    # The generator must actually exercise the rules.
    assert expected["rows_quarantined"] > 100 and expected["duplicates_removed"] > 100
    assert expected["duration_s_imputed_rows"] > 100

    result = curate(raw_frame(spark, rows).repartition(4), telecom)
    report = result.report
    assert report["rows_in"] == expected["rows_in"] == 2000
    assert report["rows_quarantined"] == expected["rows_quarantined"]
    assert report["rows_curated"] == expected["rows_curated"]
    assert report["duplicates_removed"] == expected["duplicates_removed"]
    assert report["quarantined_by_reason"] == expected["reasons"]
    assert report["imputed"]["duration_s"]["value"] == pytest.approx(
        expected["median_duration_s"], rel=1e-12
    )
    assert report["imputed"]["duration_s"]["rows"] == expected["duration_s_imputed_rows"]

    curated = result.curated.select("event_id", "event_time", "duration_s").collect()
    assert len(curated) == expected["rows_curated"]
    assert len({r.event_id for r in curated}) == len(curated)
    assert all(r.duration_s is not None for r in curated)
    got_latest = {r.event_id: r.event_time for r in curated}
    assert got_latest == expected["latest_event_time"]
    assert result.quarantined.count() == expected["rows_quarantined"]


def test_results_are_the_same_with_spark_ansi_mode_on(spark, telecom):
    rows = generate_messy_events(300, seed=7)
    default = curate(raw_frame(spark, rows), telecom)
    expected = (default.report, sorted(map(tuple, default.curated.collect())))
    previous = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        ansi = curate(raw_frame(spark, rows), telecom)
        assert (ansi.report, sorted(map(tuple, ansi.curated.collect()))) == expected
    finally:
        spark.conf.set("spark.sql.ansi.enabled", previous)
