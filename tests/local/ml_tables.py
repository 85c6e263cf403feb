"""Feature tables for the training tests: scikit-learn's breast cancer data in the shape of
customer_features (an id, the as_of cutoff the model excludes, the 0/1 `churned` label)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer


def churn_table(n_features: int = 8, *, noise_labels: bool = False) -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:, :n_features].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(frame))])
    frame["as_of"] = "2026-11-01"
    frame["churned"] = data.target.to_numpy()
    if noise_labels:  # labels unrelated to the features: no model can rank them
        frame["churned"] = np.random.default_rng(0).permutation(frame["churned"].to_numpy())
    return frame
