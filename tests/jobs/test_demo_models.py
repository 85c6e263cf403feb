"""The demo's models against what the generator planted, through the real feature SQL
(Spark) and the real training script:

- churn: the generator draws each customer's churn from a known logistic function of
  columns of customer_features, so the best possible AUC (scoring with the true
  probabilities) is known; the trained model's test AUC is within 0.03 of it, on exactly
  the model's test rows;
- house prices: the generator's price is linear in columns of house_features with known
  coefficients; the linear model recovers each within 10%;
- customer value (clv): a staying customer renews its payments of the 30 days before the
  cutoff, a churner pays nothing, so the expected value_next_14d is a known function of
  columns of customer_value_features (demo.expected_value); the trained model's test R2 is
  within 0.15 of that expectation's R2 on the same test rows, and passes the spec's gate.

Curated rows are computed from the generated input the way the curate job's rules do
(tested on their own in test_curate_*); the focus here is features -> model."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime

import joblib
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dataplatform import demo, training_job
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import load_spec
from dataplatform.transforms.features import build_feature_table
from tests.jobs.test_features import curated_frame

sys.path.insert(0, str(REPO_ROOT / "training"))
import train as T  # noqa: E402

PLATFORM = load_spec(REPO_ROOT / "spec")
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # a fixed clock: the same data every run


def config_of(model_name: str) -> T.TrainConfig:
    """train.py's configuration exactly as the training job passes it."""
    model = next(m for m in PLATFORM.models if m.name == model_name)
    argv = [t for k, v in training_job.hyperparameters(model).items() for t in (f"--{k}", v)]
    return T.TrainConfig.from_hyperparameters(T.parse_hyperparameters(argv))


def typed(rows: list[dict], dataset) -> list[dict]:
    """Values as the curate job types them (spec column types), None for missing."""
    cast = {
        "string": str,
        "int": int,
        "bigint": int,
        "double": float,
        "boolean": bool,
        "timestamp": lambda v: v if isinstance(v, datetime) else datetime.fromisoformat(v),
        "date": lambda v: v,
    }
    out = []
    for row in rows:
        typed_row = {"dt": row["dt"]}
        for column in dataset.kept_columns:
            value = row.get(column.name)
            missing = value is None or (isinstance(value, float) and value != value) or value == ""
            typed_row[column.name] = None if missing else cast[column.type](value)
        out.append(typed_row)
    return out


def curated_telecom(events: list[dict]) -> list[dict]:
    frame = pd.DataFrame(events)
    frame = frame[frame.customer_id.notna()]  # Firehose
    frame = frame[frame.event_type.isin(demo.EVENT_TYPES)]  # allowed
    duration = pd.to_numeric(frame.duration_s, errors="coerce")
    frame = frame[frame.duration_s.isna() | duration.notna()]  # type
    frame = frame[~(pd.to_numeric(frame.amount_eur, errors="coerce") < 0)]  # min
    frame = frame.drop_duplicates("event_id").copy()
    frame["duration_s"] = pd.to_numeric(frame.duration_s)
    moment = pd.to_datetime(frame.event_time, utc=True)
    frame["dt"] = moment.dt.strftime("%Y-%m-%d")
    frame = frame.astype(object).where(frame.notna(), None)
    records = frame.to_dict("records")
    for record, when in zip(records, moment.dt.tz_localize(None), strict=True):
        record["event_time"] = when.to_pydatetime()
    return records


@pytest.fixture(scope="module")
def churn(spark, tmp_path_factory):
    sample = demo.telecom_sample(seed=7, now=NOW)  # the demo's customers
    feature = next(f for f in PLATFORM.features if f.name == "customer_features")
    table = build_feature_table(
        spark,
        feature,
        tables={
            "curated.telecom_events": curated_frame(
                spark,
                PLATFORM.dataset("telecom_events"),
                typed(curated_telecom(sample.events), PLATFORM.dataset("telecom_events")),
            )
        },
        variables={"as_of": sample.as_of},
    ).toPandas()
    model_dir = tmp_path_factory.mktemp("churn")
    metrics = T.train(table, config_of("churn"), model_dir, log=lambda line: None)
    return sample, table, metrics, model_dir


def test_the_feature_table_holds_the_planted_signal_exactly(churn):
    sample, table, _, _ = churn
    assert len(table) == len(sample.truth)
    for row in table.itertuples():
        truth = sample.truth[row.customer_id]
        assert row.churned == truth.churned
        assert {c: getattr(row, c) for c in demo.CHURN_COEFFICIENTS} == truth.features


def test_churn_model_auc_is_within_003_of_the_oracle_on_its_test_rows(churn):
    sample, _, metrics, model_dir = churn
    scored = pd.read_csv(model_dir / "test_predictions.csv")
    oracle = roc_auc_score(
        scored.churned, [sample.truth[c].probability for c in scored.customer_id]
    )
    model = metrics["test"]["auc"]
    print(
        f"churn: model test AUC {model:.4f}, oracle AUC {oracle:.4f} "
        f"(true probabilities, same {len(scored)} test customers)"
    )
    assert model == pytest.approx(roc_auc_score(scored.churned, scored.score))
    assert abs(model - oracle) <= 0.03
    assert metrics["test"]["auc"] >= 0.75  # the spec's quality gate passes


@pytest.fixture(scope="module")
def clv(spark, tmp_path_factory):
    sample = demo.telecom_sample(seed=7, now=NOW)  # the demo's customers
    feature = next(f for f in PLATFORM.features if f.name == "customer_value_features")
    table = build_feature_table(
        spark,
        feature,
        tables={
            "curated.telecom_events": curated_frame(
                spark,
                PLATFORM.dataset("telecom_events"),
                typed(curated_telecom(sample.events), PLATFORM.dataset("telecom_events")),
            )
        },
        variables={"as_of": sample.as_of},
    ).toPandas()
    model_dir = tmp_path_factory.mktemp("clv")
    metrics = T.train(table, config_of("clv"), model_dir, log=lambda line: None)
    return sample, table, metrics, model_dir


def test_the_value_feature_table_holds_the_planted_value_exactly(clv):
    sample, table, _, _ = clv
    assert len(table) == len(sample.value)
    for row in table.itertuples():
        truth = sample.value[row.customer_id]
        assert row.value_next_14d == pytest.approx(truth.value_next_14d, abs=1e-9)
        for column, value in truth.features.items():
            assert getattr(row, column) == pytest.approx(value, abs=1e-9), column
    assert 0 < (table.value_next_14d > 0).mean() < 1  # payers and churners


def test_clv_model_r2_is_within_015_of_the_oracle_on_its_test_rows_and_passes_its_gate(clv):
    sample, _, metrics, model_dir = clv
    from sklearn.metrics import r2_score

    scored = pd.read_csv(model_dir / "test_predictions.csv")
    oracle = r2_score(scored.value_next_14d, [sample.value[c].expected for c in scored.customer_id])
    model = metrics["test"]["r2"]
    print(
        f"clv: model test R2 {model:.4f}, oracle R2 {oracle:.4f} "
        f"(expected values, same {len(scored)} test customers)"
    )
    assert model == pytest.approx(r2_score(scored.value_next_14d, scored.score))
    assert oracle - 0.15 <= model <= oracle + 0.05
    (gate,) = next(m for m in PLATFORM.models if m.name == "clv").quality_gate.items()
    assert gate[0] == "r2" and model >= gate[1]  # the spec's quality gate passes
    assert demo.value_oracle_r2(model_dir / "test_predictions.csv") == pytest.approx(oracle)


def test_house_price_model_recovers_the_planted_coefficients_within_10_percent(spark, tmp_path):
    text = demo.house_sales_csv(seed=11, now=NOW)  # the demo's sales
    raw = pd.read_csv(io.StringIO(text), dtype=str)
    dataset = PLATFORM.dataset("house_sales")
    raw = raw[pd.to_numeric(raw.price, errors="coerce").notna() & raw.zipcode.notna()].copy()
    rows = []
    for r in raw.to_dict("records"):
        rows.append(
            {
                "sale_id": r["sale_id"],
                "sale_date": datetime.fromisoformat(r["sale_date"]),
                "price": float(r["price"]),
                "bedrooms": int(r["bedrooms"]) if isinstance(r["bedrooms"], str) else None,
                "bathrooms": float(r["bathrooms"]),
                "living_area_sqft": int(r["living_area_sqft"]),
                "lot_area_sqft": int(r["lot_area_sqft"]),
                "floors": int(r["floors"]),
                "year_built": int(r["year_built"]),
                "condition": int(r["condition"]),
                "waterfront": r["waterfront"] == "true",
                "zipcode": r["zipcode"],
                "dt": r["sale_date"],
            }
        )
    rows = typed(rows, dataset)
    feature = next(f for f in PLATFORM.features if f.name == "house_features")
    table = build_feature_table(
        spark,
        feature,
        tables={"curated.house_sales": curated_frame(spark, dataset, rows)},
        variables={},
    ).toPandas()
    metrics = T.train(table, config_of("house_prices"), tmp_path, log=lambda line: None)
    pipeline = joblib.load(tmp_path / "model.joblib")
    base = table.drop(columns=["price", "log_price", "sale_id"]).head(1)
    recovered = {}
    for column in demo.HOUSE_PRICE_COEFFICIENTS:
        bumped = base.copy()
        bumped[column] = bumped[column] + 1
        recovered[column] = float(pipeline.predict(bumped)[0] - pipeline.predict(base)[0])
    print(
        "house prices: planted vs recovered coefficients: "
        + ", ".join(
            f"{c} {demo.HOUSE_PRICE_COEFFICIENTS[c]:g} -> {v:.1f}" for c, v in recovered.items()
        )
        + f"; test R2 {metrics['test']['r2']:.4f}"
    )
    for column, planted in demo.HOUSE_PRICE_COEFFICIENTS.items():
        assert recovered[column] == pytest.approx(planted, rel=0.10), column
    assert metrics["test"]["r2"] >= 0.6  # the spec's quality gate passes
