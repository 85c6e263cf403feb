"""SageMaker scikit-learn serving functions for the model.tar.gz that train.py writes
(model.joblib, metrics.json), run by SageMaker's scikit-learn 1.2-1 container when this
folder is the model's source_dir and `inference.py` its entry point (SAGEMAKER_PROGRAM), and
by the local platform's SageMaker endpoints (dataplatform/runtime/local/services/
sagemaker_serving.py), from the same sourcedir.tar.gz. Nothing here imports
`dataplatform`: only the standard library and what training/requirements.txt and the
container have (joblib, numpy, pandas, scikit-learn).

Request (InvokeEndpoint's Body, by its ContentType):
  application/json  one object {feature: value, ...} or a list of them
  text/csv          a header row naming the features, then one row per record
Every feature the model uses (its ColumnTransformer's columns, also metrics.json's
"features") must be there, or the request fails naming the missing ones; other keys and
columns (an id, say) are ignored. A null / empty value is a missing value, which the model
imputes as it did in training. Values are converted to what the model was trained on:
numbers (and booleans, as 0/1) for its numeric features, strings for its categories.

Response (by Accept; `*/*` or none means JSON), one prediction per record, in order:
  application/json  {"predictions": [{"probability": p, "label": 0|1}, ...]}
                    regression: {"predictions": [{"prediction": y}, ...]}
  text/csv          a header row (probability,label or prediction), then one row each
`probability` is `model.predict_proba(frame)[:, 1]` exactly (JSON and CSV carry floats'
shortest round-trip form) and `label` is 1 when probability >= metrics.json's threshold,
the one train.py chose (the threshold is part of the model; model.predict would use 0.5).

Errors are InferenceError (a ValueError) with a one-line message; `status_code` is the HTTP
status the request deserves (400 bad input, 415 unsupported ContentType, 406 unsupported
Accept). SageMaker's container answers 500 for any error of these functions, and
InvokeEndpoint reports either as ModelError with the message.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any

import joblib
import numpy as np
import pandas as pd

__all__ = [
    "InferenceError",
    "UnsupportedContentType",
    "UnsupportedAccept",
    "model_fn",
    "input_fn",
    "predict_fn",
    "output_fn",
    "JSON",
    "CSV",
]

JSON = "application/json"
CSV = "text/csv"
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
DEFAULT_THRESHOLD = 0.5
CLASSIFICATION = "binary_classification"
# numeric feature values (strings: CSV cells, JSON strings) that mean "missing"
MISSING_TEXT = ("", "nan", "null", "none", "na", "n/a")


class _Absent:
    """A key a JSON record does not have (unlike null, which is a missing value)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


class InferenceError(ValueError):
    """A request the model cannot answer; the message says why and how to fix it."""

    status_code = 400


class UnsupportedContentType(InferenceError):
    status_code = 415


class UnsupportedAccept(InferenceError):
    status_code = 406


# ----------------------------------------------------------------------------- the model


class ServedModel:
    """model.joblib and what serving needs to know about it: the problem, the threshold,
    the feature columns (numeric and categorical, from the fitted ColumnTransformer)."""

    def __init__(self, pipeline: Any, metrics: dict[str, Any]):
        self.pipeline = pipeline
        self.metrics = metrics
        self.problem = metrics.get("problem") or (
            CLASSIFICATION if hasattr(pipeline, "predict_proba") else "regression"
        )
        threshold = metrics.get("threshold")
        self.threshold = float(DEFAULT_THRESHOLD if threshold is None else threshold)
        self.numeric: list[str] = []
        self.categorical: dict[str, Any] = {}  # column -> the categories the encoder knows
        self.inputs: list[str] = []  # the columns it was fitted on, in order
        features = _column_transformer(pipeline)
        if features is None:
            names = metrics.get("features")
            if not names:
                raise InferenceError(
                    "the model has no ColumnTransformer step and metrics.json no 'features': "
                    "cannot tell which columns it needs"
                )
            self.numeric = [str(n) for n in names]
            self.inputs = list(self.numeric)
        else:
            for name, transformer, columns in features.transformers_:
                if name == "remainder" or (isinstance(transformer, str) and transformer == "drop"):
                    continue
                columns = [str(c) for c in columns]
                encoder = _final_step(transformer)
                if hasattr(encoder, "categories_"):
                    # no zip(strict=...): SageMaker's container runs Python 3.9
                    for column, categories in zip(columns, encoder.categories_):  # noqa: B905
                        self.categorical[column] = categories
                else:
                    self.numeric.extend(columns)
            fitted_on = getattr(features, "feature_names_in_", None)
            self.inputs = [str(c) for c in fitted_on] if fitted_on is not None else self.features

    @property
    def features(self) -> list[str]:
        """The columns a request must have, in the order the model was fitted on."""
        used = self.numeric + [c for c in self.categorical if c not in self.numeric]
        return [c for c in self.inputs if c in used] + [c for c in used if c not in self.inputs]

    @property
    def classification(self) -> bool:
        return self.problem == CLASSIFICATION


def _column_transformer(pipeline: Any) -> Any:
    steps = getattr(pipeline, "named_steps", {})
    for step in steps.values():
        if hasattr(step, "transformers_"):
            return step
    return pipeline if hasattr(pipeline, "transformers_") else None


def _final_step(transformer: Any) -> Any:
    steps = getattr(transformer, "steps", None)
    return steps[-1][1] if steps else transformer


def model_fn(model_dir: str) -> ServedModel:
    """model.joblib and metrics.json from the extracted model.tar.gz."""
    model_path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise InferenceError(f"no {MODEL_FILE} in {model_dir}: not a model.tar.gz of train.py")
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    metrics: dict[str, Any] = {}
    if os.path.isfile(metrics_path):
        with open(metrics_path) as handle:
            metrics = json.load(handle)
    return ServedModel(joblib.load(model_path), metrics)


# ----------------------------------------------------------------------------- request


def _media_type(value: str | None, default: str) -> str:
    media = (value or "").split(";", 1)[0].strip().lower()
    return default if media in ("", "*/*") else media


def _text(body: Any) -> str:
    if isinstance(body, (bytes, bytearray)):
        try:
            return bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InferenceError(f"the request body is not UTF-8: {e}") from None
    if hasattr(body, "read"):
        return _text(body.read())
    return str(body)


def input_fn(body: Any, content_type: str | None = JSON) -> pd.DataFrame:
    """The request's records as a frame (one row each, columns as given; CSV cells stay
    strings, converted by predict_fn to the model's types)."""
    media = _media_type(content_type, JSON)
    if media == JSON:
        try:
            payload = json.loads(_text(body))
        except json.JSONDecodeError as e:
            raise InferenceError(f"the request body is not valid JSON: {e}") from None
        records = [payload] if isinstance(payload, dict) else payload
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            found = (
                f"a list with {type(next(r for r in records if not isinstance(r, dict))).__name__}"
                " items"
                if isinstance(records, list)
                else type(payload).__name__
            )
            raise InferenceError(
                "an application/json request is an object {feature: value, ...} or a list "
                f"of them, not {found}"
            )
        if not records:
            raise InferenceError("the request has no records (an empty list)")
        columns: dict[str, None] = {}
        for record in records:
            columns.update(dict.fromkeys(str(k) for k in record))
        return pd.DataFrame(
            {c: pd.Series([r.get(c, ABSENT) for r in records], dtype=object) for c in columns},
            columns=list(columns),
        )
    if media == CSV:
        text = _text(body)
        if not text.strip():
            raise InferenceError("the text/csv request is empty; send a header row, then rows")
        try:
            frame = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise InferenceError(f"the text/csv request cannot be read: {e}") from None
        if frame.empty:
            raise InferenceError(
                "the text/csv request has a header row but no records; send one row per record"
            )
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame.astype(object)
    raise UnsupportedContentType(
        f"unsupported ContentType {content_type!r}; send {JSON} (an object or a list of "
        f"objects) or {CSV} (with a header row)"
    )


# ----------------------------------------------------------------------------- prediction


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA


def _number(column: str, value: Any) -> float:
    if _is_missing(value):
        return float("nan")
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        lower = text.lower()
        if lower in MISSING_TEXT:
            return float("nan")
        if lower in ("true", "false"):
            return 1.0 if lower == "true" else 0.0
        value = text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InferenceError(f"feature {column!r} is numeric: {value!r} is not a number") from None
    if math.isinf(number):
        raise InferenceError(f"feature {column!r} is {number}: a feature must be finite")
    return number


def _category(column: str, value: Any, categories: Any, missing: Any) -> Any:
    """`value` as the encoder knows its categories: a string for string categories, a
    boolean for boolean ones; a missing value as the marker training had (None or NaN,
    which the one-hot encoder tells apart)."""
    known = [c for c in categories if not _is_missing(c)]
    if _is_missing(value) or (value == "" and "" not in known):
        return missing
    if known and all(isinstance(c, (bool, np.bool_)) for c in known):
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return value
    if known and all(isinstance(c, str) for c in known) and not isinstance(value, str):
        if isinstance(value, (dict, list)):
            raise InferenceError(f"feature {column!r} is a category: {value!r} is not one")
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return value


def _missing_marker(categories: Any) -> Any:
    for c in categories:
        if c is None:
            return None
    for c in categories:
        if _is_missing(c):
            return np.nan
    return None


def model_frame(data: Any, model: ServedModel) -> pd.DataFrame:
    """The records with the model's input columns, in the order it was fitted on, typed as
    in training. Missing features are an InferenceError naming them."""
    if isinstance(data, dict):
        data = [data]
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    present = {str(c) for c in frame.columns}
    missing = [c for c in model.features if c not in present]
    if missing:
        raise InferenceError(
            f"missing feature(s) {', '.join(missing)}: the model needs {', '.join(model.features)}"
        )
    frame = frame.rename(columns=str)
    absent = {}
    for column in model.features:
        rows = [i for i, v in enumerate(frame[column]) if v is ABSENT]
        if rows:
            absent[column] = rows
    if absent:
        where = "; ".join(
            f"{column} in record(s) {', '.join(str(i) for i in rows[:10])}"
            + (", ..." if len(rows) > 10 else "")
            for column, rows in absent.items()
        )
        raise InferenceError(
            f"missing feature(s) {where} (counted from 0): send every feature in every "
            "record, null for a missing value"
        )
    columns: dict[str, Any] = {}
    for column in model.inputs:
        values = list(frame[column]) if column in present else [None] * len(frame)
        values = [None if v is ABSENT else v for v in values]
        if column in model.categorical:
            categories = model.categorical[column]
            marker = _missing_marker(categories)
            columns[column] = pd.Series(
                [_category(column, v, categories, marker) for v in values], dtype=object
            )
        elif column in model.numeric:
            columns[column] = pd.Series([_number(column, v) for v in values], dtype=float)
        else:  # fitted on but not used (a dropped remainder): passed as given
            columns[column] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns, columns=model.inputs, index=range(len(frame)))


def predict_fn(data: Any, model: ServedModel) -> dict[str, Any]:
    """{"probability": [...], "label": [...]} (classification) or {"prediction": [...]}."""
    frame = model_frame(data, model)
    if model.classification:
        probability = np.asarray(model.pipeline.predict_proba(frame))[:, 1].astype(float)
        label = (probability >= model.threshold).astype(int)
        return {"probability": probability.tolist(), "label": label.tolist()}
    prediction = np.asarray(model.pipeline.predict(frame), dtype=float).ravel()
    return {"prediction": prediction.tolist()}


# ----------------------------------------------------------------------------- response


def _rows(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    fields = [f for f in ("probability", "label", "prediction") if f in prediction]
    count = len(prediction[fields[0]]) if fields else 0
    return [{f: prediction[f][i] for f in fields} for i in range(count)]


def output_fn(prediction: dict[str, Any], accept: str | None = JSON):
    """(body, content type), which SageMaker's container turns into the response."""
    media = _media_type(accept, JSON)
    rows = _rows(prediction)
    if media == JSON:
        return json.dumps({"predictions": rows}), JSON
    if media == CSV:
        buffer = io.StringIO()
        fields = list(rows[0]) if rows else [f for f in prediction]
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(fields)
        for row in rows:
            writer.writerow([repr(row[f]) if isinstance(row[f], float) else row[f] for f in fields])
        return buffer.getvalue(), CSV
    raise UnsupportedAccept(f"unsupported Accept {accept!r}; ask for {JSON} or {CSV}")
