"""training/inference.py, SageMaker's scikit-learn serving functions, on a model.tar.gz
that training/train.py really made: the probabilities are the pipeline's own predict_proba
exactly (JSON and CSV, in and out), the label is the threshold's, and requests the model
cannot answer fail naming what is wrong."""

from __future__ import annotations

import ast
import csv
import io
import json
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest

from dataplatform.bundle import training_source_bytes
from tests.training.tiny_model import FEATURES, TRAINING, records, train_tiny

if str(TRAINING) not in sys.path:
    sys.path.insert(0, str(TRAINING))
import inference as I  # noqa: E402

JSON, CSV = "application/json", "text/csv"


@pytest.fixture(scope="module")
def logistic(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("logistic"))


@pytest.fixture(scope="module")
def xgboost(tmp_path_factory):
    return train_tiny(
        tmp_path_factory.mktemp("xgboost"),
        algorithm="xgboost",
        hyperparameters={"n_estimators": "15", "n_jobs": "1"},
    )


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("linear"), algorithm="linear", problem="regression")


def invoke(tiny, body, content_type=JSON, accept=JSON):
    """What the container does per request, on the model model_fn loaded."""
    model = I.model_fn(str(tiny.model_dir))
    answer, answer_type = I.output_fn(I.predict_fn(I.input_fn(body, content_type), model), accept)
    return answer, answer_type


def probabilities(answer: str) -> tuple[list[float], list[int]]:
    predictions = json.loads(answer)["predictions"]
    return [p["probability"] for p in predictions], [p["label"] for p in predictions]


def test_model_fn_knows_the_features_and_the_threshold_of_metrics_json(logistic):
    model = I.model_fn(str(logistic.model_dir))
    assert sorted(model.features) == sorted(FEATURES) == sorted(logistic.metrics["features"])
    assert sorted(model.categorical) == ["plan"]
    assert model.threshold == logistic.metrics["threshold"]
    assert 0 < model.threshold < 1
    assert model.classification


@pytest.mark.parametrize("tiny", ["logistic", "xgboost"])
def test_json_records_score_exactly_as_predict_proba_with_the_models_threshold(tiny, request):
    tiny = request.getfixturevalue(tiny)
    rows = tiny.frame  # floats, ints, booleans, categories, nulls of both kinds; id and cutoff
    answer, answer_type = invoke(tiny, json.dumps(records(rows)).encode())
    assert answer_type == JSON
    probability, label = probabilities(answer)
    expected = tiny.expected_probability(rows)
    assert len(probability) == len(rows)
    assert np.array_equal(np.asarray(probability), expected.astype(float))  # exactly
    assert label == [int(p >= tiny.metrics["threshold"]) for p in expected]
    assert 0 < sum(label) < len(label)


def test_one_json_object_is_one_record(logistic):
    row = logistic.frame.iloc[[3]]
    answer, _ = invoke(logistic, json.dumps(records(row)[0]))
    probability, _ = probabilities(answer)
    assert probability == logistic.expected_probability(row).tolist()


@pytest.mark.parametrize("tiny", ["logistic", "xgboost"])
def test_csv_with_a_header_row_scores_exactly_as_predict_proba(tiny, request):
    tiny = request.getfixturevalue(tiny)
    rows = tiny.frame
    # other columns and another order than training's; missing values are empty cells
    shuffled = rows[["churned", "roaming", "customer_id", "calls_7d", "tenure_days", "plan"]]
    answer, _ = invoke(tiny, shuffled.to_csv(index=False).encode(), CSV)
    probability, label = probabilities(answer)
    expected = tiny.expected_probability(rows)
    assert np.array_equal(np.asarray(probability), expected.astype(float))
    assert label == [int(p >= tiny.metrics["threshold"]) for p in expected]


def test_csv_out_carries_the_same_floats(logistic):
    rows = logistic.frame.iloc[:20]
    answer, answer_type = invoke(logistic, json.dumps(records(rows)), JSON, CSV)
    assert answer_type == CSV
    table = list(csv.DictReader(io.StringIO(answer)))
    assert list(table[0]) == ["probability", "label"]
    assert [float(r["probability"]) for r in table] == logistic.expected_probability(rows).tolist()
    assert [int(r["label"]) for r in table] == [
        int(p >= logistic.metrics["threshold"]) for p in logistic.expected_probability(rows)
    ]


def test_content_types_with_parameters_and_accept_anything_mean_json(logistic):
    rows = logistic.frame.iloc[:5]
    answer, answer_type = invoke(
        logistic, json.dumps(records(rows)), "application/json; charset=utf-8", "*/*"
    )
    assert answer_type == JSON
    assert probabilities(answer)[0] == logistic.expected_probability(rows).tolist()


def test_values_are_converted_to_the_types_the_model_was_trained_on(logistic):
    """A number sent as a string, a boolean as 0/1 or "true", a category as a number-like
    string: the same as the trained types."""
    row = logistic.frame.iloc[[1]]
    typed = records(row)[0]
    loose = dict(typed)
    loose["calls_7d"] = None if typed["calls_7d"] is None else repr(typed["calls_7d"])
    loose["tenure_days"] = str(typed["tenure_days"])
    loose["roaming"] = "true" if typed["roaming"] else "false"
    answer, _ = invoke(logistic, json.dumps(loose))
    assert probabilities(answer)[0] == logistic.expected_probability(row).tolist()


def test_an_unseen_category_and_nulls_are_scored_as_the_pipeline_scores_them(logistic):
    rows = pd.DataFrame(
        {
            "plan": pd.Series(["enterprise", None], dtype=object),
            "calls_7d": [np.nan, 3.5],
            "tenure_days": [10, 20],
            "roaming": [True, False],
        }
    )
    answer, _ = invoke(logistic, json.dumps(records(rows)))
    assert probabilities(answer)[0] == logistic.expected_probability(rows).tolist()


def test_regression_answers_the_prediction(regression):
    rows = regression.frame
    answer, _ = invoke(regression, rows.to_csv(index=False), CSV)
    predictions = json.loads(answer)["predictions"]
    assert list(predictions[0]) == ["prediction"]
    expected = regression.pipeline.predict(rows[regression.features])
    assert np.array_equal(np.asarray([p["prediction"] for p in predictions]), expected)


# ----------------------------------------------------------------------------- errors


def test_missing_feature_columns_are_an_error_naming_them(logistic):
    rows = records(logistic.frame.iloc[:3])
    for row in rows:
        del row["plan"], row["roaming"]
    with pytest.raises(I.InferenceError, match=r"missing feature\(s\) plan, roaming") as error:
        invoke(logistic, json.dumps(rows))
    assert error.value.status_code == 400
    table = logistic.frame.drop(columns=["tenure_days"]).to_csv(index=False)
    with pytest.raises(I.InferenceError, match=r"missing feature\(s\) tenure_days"):
        invoke(logistic, table, CSV)


def test_a_feature_absent_from_some_records_names_them(logistic):
    rows = records(logistic.frame.iloc[:4])
    del rows[2]["calls_7d"]
    with pytest.raises(I.InferenceError, match=r"calls_7d in record\(s\) 2 "):
        invoke(logistic, json.dumps(rows))


def test_unsupported_content_type_and_accept(logistic):
    body = json.dumps(records(logistic.frame.iloc[:1]))
    with pytest.raises(I.UnsupportedContentType, match="unsupported ContentType 'text/plain'") as e:
        invoke(logistic, body, "text/plain")
    assert e.value.status_code == 415
    with pytest.raises(I.UnsupportedAccept, match="unsupported Accept 'application/x-npy'") as e:
        invoke(logistic, body, JSON, "application/x-npy")
    assert e.value.status_code == 406


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"{not json", JSON, "not valid JSON"),
        (b"[]", JSON, "no records"),
        (b"[1, 2]", JSON, "not a list with int items"),
        (b'"x"', JSON, "not str"),
        (b"", CSV, "empty"),
        (b"plan,calls_7d,tenure_days,roaming\n", CSV, "no records"),
        (b"\xff\xfe", JSON, "not UTF-8"),
        (
            b'{"plan": "basic", "calls_7d": "many", "tenure_days": 3, "roaming": false}',
            JSON,
            "feature 'calls_7d' is numeric: 'many' is not a number",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(logistic, body, content_type, message):
    with pytest.raises(I.InferenceError, match=message):
        invoke(logistic, body, content_type)


def test_a_folder_without_model_joblib_is_refused(tmp_path):
    with pytest.raises(I.InferenceError, match="no model.joblib"):
        I.model_fn(str(tmp_path))


# ----------------------------------------------------------------------------- the container


def test_inference_imports_only_what_the_sklearn_container_has():
    """No dataplatform (it is not in the container), nothing outside the standard library
    but joblib, numpy and pandas (scikit-learn comes with the pickled model)."""
    tree = ast.parse((TRAINING / "inference.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"joblib", "numpy", "pandas"}


def test_inference_ships_in_sourcedir(logistic):
    with tarfile.open(fileobj=io.BytesIO(training_source_bytes()), mode="r:gz") as tar:
        assert "inference.py" in tar.getnames()
