"""A tiny model as training/train.py really makes it, packed as SageMaker packs model.tar.gz
(the local SageMaker's `pack`, runtime/local/services/sagemaker_training.py) and extracted as
an endpoint's container does: for the serving tests (tests/training/test_inference.py,
tests/local/test_local_endpoint.py).

The frame has what the serving side must get right: floats with missing values, integers,
booleans, a string category with missing values (None, as read_parquet gives them), plus
an id and a cutoff the model does not use."""

from __future__ import annotations

import json
import math
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from dataplatform.paths import REPO_ROOT
from dataplatform.runtime.local.services.sagemaker_training import pack as pack_model

TRAINING = REPO_ROOT / "training"
if str(TRAINING) not in sys.path:
    sys.path.insert(0, str(TRAINING))
import train as T  # noqa: E402

FEATURES = ["plan", "calls_7d", "tenure_days", "roaming"]


def churn_frame(rows: int = 120, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "premium"], size=rows)
    calls = rng.gamma(2.0, 10.0, size=rows)
    tenure = rng.integers(1, 2000, size=rows)
    roaming = rng.random(rows) < 0.3
    churned = ((plan == "basic") & (calls < 18)) | (tenure < 150) | (rng.random(rows) < 0.08)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c-{i:04d}" for i in range(rows)],
            "as_of": "2026-11-01",
            "plan": pd.Series(plan, dtype=object),
            "calls_7d": calls,
            "tenure_days": tenure,
            "roaming": roaming,
            "churned": churned.astype(int),
        }
    )
    frame.loc[::11, "calls_7d"] = np.nan
    frame.loc[::13, "plan"] = None
    return frame


def house_frame(rows: int = 80, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.uniform(40, 250, size=rows)
    city = rng.choice(["north", "south"], size=rows)
    price = 1000 * size + np.where(city == "north", 20000, 0) + rng.normal(0, 5000, rows)
    return pd.DataFrame(
        {"sale_id": range(rows), "size_m2": size, "city": pd.Series(city, dtype=object)}
    ).assign(price=price)


@dataclass
class TinyModel:
    frame: pd.DataFrame  # the training data (features and the rest)
    model_dir: Path  # the extracted model.tar.gz
    archive: Path  # model.tar.gz
    pipeline: Any  # model.joblib as train.py saved it
    metrics: dict

    @property
    def features(self) -> list[str]:
        return list(self.metrics["features"])

    def expected_probability(self, rows: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(rows[self.features])[:, 1]


def train_tiny(
    root: Path,
    *,
    algorithm: str = "logistic",
    problem: str = "binary_classification",
    frame: pd.DataFrame | None = None,
    hyperparameters: dict | None = None,
) -> TinyModel:
    """Train with train.py's own `train()` (split, folds, threshold, artifacts) into
    root/model, pack root/model.tar.gz, extract it into root/served."""
    classification = problem == "binary_classification"
    if frame is None:
        frame = churn_frame() if classification else house_frame()
    config = T.TrainConfig(
        problem=problem,
        algorithm=algorithm,
        target="churned" if classification else "price",
        id_columns="customer_id" if classification else "sale_id",
        exclude_columns="as_of" if classification else "",
        test_fraction=0.25,
        seed=7,
        cv_folds=3,
        hyperparameters=dict(hyperparameters or {}),
    )
    trained = root / "model"
    metrics = T.train(frame, config, trained, log=lambda _line: None)
    archive = pack_model(trained, root / "model.tar.gz")
    served = root / "served"
    served.mkdir()
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(served, filter="data")
    assert json.loads((served / "metrics.json").read_text()) == metrics
    return TinyModel(frame, served, archive, joblib.load(trained / "model.joblib"), metrics)


def records(rows: pd.DataFrame) -> list[dict]:
    """The rows as JSON-ready objects (NaN and None -> null; numpy scalars -> Python)."""
    out = []
    for row in rows.to_dict(orient="records"):
        record = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if value is None or (isinstance(value, float) and math.isnan(value)):
                value = None
            record[key] = value
        out.append(record)
    return out
