"""training/train.py: known answers on scikit-learn's datasets, the artifacts' layout, the
printed metric lines against SageMaker's metric definitions, and the CLI in a subprocess."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from dataplatform.paths import REPO_ROOT

TRAINING = REPO_ROOT / "training"
sys.path.insert(0, str(TRAINING))
import train as T  # noqa: E402
from metrics_contract import metric_definitions  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOP_LEVEL_KEYS = {
    "problem",
    "algorithm",
    "target",
    "features",
    "n_train",
    "n_test",
    "threshold",
    "test",
    "train",
    "cv",
    "gap",
    "fit",
    "confusion_matrix",
    "feature_importance",
    "hyperparameters",
}
CLASSIFICATION_METRICS = {"auc", "accuracy", "precision", "recall", "f1"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}


def breast_cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame


def run(frame, tmp_path, log=None, **config):
    lines = []
    metrics = T.train(
        frame, T.TrainConfig(**config), tmp_path, log=lines.append if log is None else log
    )
    return metrics, lines


def classification(**overrides):
    config = dict(
        problem="binary_classification",
        algorithm="logistic",
        target="target",
        test_fraction=0.3,
        seed=42,
    )
    config.update(overrides)
    return config


def regression(**overrides):
    config = dict(
        problem="regression", algorithm="linear", target="target", test_fraction=0.2, seed=42
    )
    config.update(overrides)
    return config


def imbalanced() -> pd.DataFrame:
    x, y = make_classification(
        n_samples=2000,
        n_features=8,
        n_informative=4,
        weights=[0.93, 0.07],
        flip_y=0.01,
        random_state=7,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["label"] = y
    return frame


# ----------------------------------------------------------------------------- known answers


def test_logistic_on_breast_cancer_reaches_auc_099_with_a_stratified_30pct_split(tmp_path):
    frame = breast_cancer()
    metrics, _ = run(frame, tmp_path, **classification())
    assert metrics["test"]["auc"] >= 0.99
    assert metrics["n_test"] == math.ceil(0.3 * len(frame))
    assert metrics["n_train"] + metrics["n_test"] == len(frame)
    # stratified: the test split has the data set's class balance (to one row)
    _, _, _, y_test = train_test_split(
        frame.drop(columns="target"),
        frame["target"],
        test_size=0.3,
        random_state=42,
        stratify=frame["target"],
    )
    tp_fn = metrics["confusion_matrix"][1]
    assert sum(tp_fn) == int(y_test.sum())
    assert abs(y_test.mean() - frame["target"].mean()) < 1 / len(y_test)
    model = joblib.load(tmp_path / "model.joblib")
    numeric = model.named_steps["features"].named_transformers_["numeric"]
    assert "scale" in numeric.named_steps  # standardized for logistic regression
    assert model.named_steps["model"].class_weight == "balanced"
    # the saved model's AUC on the same split is the reported one
    proba = model.predict_proba(frame.loc[y_test.index].drop(columns="target"))[:, 1]
    assert roc_auc_score(y_test, proba) == pytest.approx(metrics["test"]["auc"], abs=1e-12)


def test_linear_on_diabetes_r2_and_errors_equal_sklearn_on_the_saved_model(tmp_path):
    frame = diabetes()
    metrics, _ = run(frame, tmp_path, **regression())
    assert metrics["test"]["r2"] >= 0.40
    assert metrics["threshold"] is None and metrics["confusion_matrix"] is None
    model = joblib.load(tmp_path / "model.joblib")
    x_train, x_test, y_train, y_test = train_test_split(
        frame.drop(columns="target"), frame["target"], test_size=0.2, random_state=42
    )
    predicted = model.predict(x_test)
    assert metrics["test"]["rmse"] == pytest.approx(
        math.sqrt(mean_squared_error(y_test, predicted)), rel=1e-12
    )
    assert metrics["test"]["mae"] == pytest.approx(
        mean_absolute_error(y_test, predicted), rel=1e-12
    )
    assert metrics["test"]["r2"] == pytest.approx(r2_score(y_test, predicted), rel=1e-12)
    assert metrics["train"]["rmse"] == pytest.approx(
        math.sqrt(mean_squared_error(y_train, model.predict(x_train))), rel=1e-12
    )
    assert metrics["gap"]["rmse"] == pytest.approx(
        metrics["test"]["rmse"] - metrics["train"]["rmse"]
    )
    assert metrics["gap"]["r2"] == pytest.approx(metrics["train"]["r2"] - metrics["test"]["r2"])
    # 5-fold CV on the training split: 5 values whose mean and std are reported
    assert len(metrics["cv"]["rmse"]["folds"]) == 5
    assert metrics["cv"]["r2"]["mean"] == pytest.approx(np.mean(metrics["cv"]["r2"]["folds"]))
    assert metrics["cv"]["r2"]["std"] == pytest.approx(np.std(metrics["cv"]["r2"]["folds"]))
    assert metrics["fit"] == "ok"


@pytest.mark.parametrize("algorithm", ["random_forest", "xgboost"])
def test_tree_models_classify_breast_cancer(tmp_path, algorithm):
    metrics, _ = run(
        breast_cancer(),
        tmp_path,
        **classification(algorithm=algorithm, cv_folds=3, hyperparameters={"n_estimators": "60"}),
    )
    assert metrics["test"]["auc"] > 0.95
    assert metrics["test"]["accuracy"] > 0.9
    assert 0 < metrics["threshold"] < 1
    assert metrics["hyperparameters"]["n_estimators"] == 60
    assert joblib.load(tmp_path / "model.joblib").named_steps["model"].n_estimators == 60
    importance = metrics["feature_importance"]
    assert set(importance) == set(metrics["features"])
    assert sum(importance.values()) == pytest.approx(1.0, abs=1e-5)  # normalized importances


@pytest.mark.parametrize("algorithm", ["random_forest", "xgboost"])
def test_tree_models_regress_diabetes(tmp_path, algorithm):
    metrics, _ = run(
        diabetes(),
        tmp_path,
        **regression(
            algorithm=algorithm,
            cv_folds=3,
            hyperparameters={"n_estimators": "100", "max_depth": "3"},
        ),
    )
    assert metrics["test"]["r2"] > 0.3
    assert 40 < metrics["test"]["rmse"] < 70  # the target's std is 77
    assert metrics["test"]["mae"] <= metrics["test"]["rmse"]
    assert len(metrics["cv"]["rmse"]["folds"]) == 3


def test_class_imbalance_weights_threshold_and_confusion_matrix(tmp_path):
    frame = imbalanced()
    metrics, lines = run(
        frame,
        tmp_path,
        **classification(algorithm="xgboost", target="label", test_fraction=0.25, cv_folds=3),
    )
    x_train, x_test, y_train, y_test = train_test_split(
        frame.drop(columns="label"),
        frame["label"],
        test_size=0.25,
        random_state=42,
        stratify=frame["label"],
    )
    negatives, positives = int((y_train == 0).sum()), int((y_train == 1).sum())
    model = joblib.load(tmp_path / "model.joblib")
    assert model.named_steps["model"].get_params()["scale_pos_weight"] == pytest.approx(
        negatives / positives
    )
    threshold = metrics["threshold"]
    assert 0 < threshold < 1
    assert f"threshold={threshold!r};" in lines
    matrix = metrics["confusion_matrix"]
    assert sum(map(sum, matrix)) == metrics["n_test"] == len(y_test)
    # the reported metrics are the saved model's at the reported threshold
    predicted = (model.predict_proba(x_test)[:, 1] >= threshold).astype(int)
    assert matrix == confusion_matrix(y_test, predicted, labels=[0, 1]).tolist()
    assert metrics["test"]["precision"] == pytest.approx(precision_score(y_test, predicted))
    assert metrics["test"]["recall"] == pytest.approx(recall_score(y_test, predicted))
    assert metrics["test"]["f1"] == pytest.approx(f1_score(y_test, predicted))


def test_threshold_maximizes_f1_of_out_of_fold_predictions():
    import modeling

    y = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    proba = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    threshold = modeling.best_f1_threshold(y, proba)
    best = max(f1_score(y, (proba >= t).astype(int)) for t in proba)
    assert f1_score(y, (proba >= threshold).astype(int)) == pytest.approx(best)
    assert threshold == 0.4  # recall 1, precision 3/4: F1 6/7


def test_logistic_on_imbalanced_data_uses_balanced_weights_and_no_cv(tmp_path):
    metrics, lines = run(imbalanced(), tmp_path, **classification(target="label", cv_folds=0))
    assert metrics["cv"] == {}
    assert not any(line.startswith("cv_") for line in lines)
    assert 0 < metrics["threshold"] < 1  # still chosen on out-of-fold predictions
    assert metrics["hyperparameters"]["class_weight"] == "balanced"
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n_test"]


# ----------------------------------------------------------------------------- features


def mixed_frame(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    plan = rng.choice(["basic", "plus", "premium"], size=rows)
    usage = rng.gamma(2.0, 10.0, size=rows)
    roaming = rng.random(rows) < 0.3
    churned = ((plan == "basic") & (usage < 15)) | (rng.random(rows) < 0.05)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c-{i}" for i in range(rows)],
            "as_of": pd.Timestamp("2026-11-01"),
            "plan": pd.Series(plan, dtype=object),
            "usage": usage,
            "roaming": roaming,
            "churned": churned.astype(int),
        }
    )
    frame.loc[::17, "usage"] = np.nan
    frame.loc[::23, "plan"] = None
    return frame


def test_strings_booleans_and_missing_values_are_encoded_inside_the_pipeline(tmp_path):
    frame = mixed_frame()
    metrics, _ = run(
        frame,
        tmp_path,
        **classification(
            algorithm="random_forest",
            target="churned",
            id_columns="customer_id",
            exclude_columns="as_of",
            cv_folds=3,
            hyperparameters={"n_estimators": "50"},
        ),
    )
    assert metrics["features"] == ["plan", "usage", "roaming"]
    assert set(metrics["feature_importance"]) == {"plan", "usage", "roaming"}
    assert metrics["test"]["auc"] > 0.8
    model = joblib.load(tmp_path / "model.joblib")
    # the model predicts from raw rows, with missing values and a category it never saw
    raw = pd.DataFrame(
        {
            "plan": ["basic", None, "enterprise"],
            "usage": [5.0, np.nan, 30.0],
            "roaming": [True, False, True],
        }
    )
    proba = model.predict_proba(raw)[:, 1]
    assert proba.shape == (3,) and np.all((proba >= 0) & (proba <= 1))


def test_linear_importance_is_named_after_original_features(tmp_path):
    frame = mixed_frame()
    frame["spend"] = frame["usage"].fillna(0) * 2.5 + np.where(frame["plan"] == "premium", 40, 0)
    metrics, _ = run(
        frame.drop(columns=["churned"]),
        tmp_path,
        **regression(target="spend", id_columns="customer_id", exclude_columns="as_of", cv_folds=0),
    )
    importance = metrics["feature_importance"]
    assert set(importance) == {"plan", "usage", "roaming"}
    assert list(importance)[0] in ("usage", "plan")  # sorted descending
    assert importance["roaming"] < importance["usage"]


# ----------------------------------------------------------------------------- artifacts


def _assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, path


@pytest.mark.parametrize("problem", ["binary_classification", "regression"])
def test_metrics_json_layout_plots_and_printed_metric_lines(tmp_path, problem):
    if problem == "regression":
        metrics, lines = run(diabetes(), tmp_path, **regression(cv_folds=3))
        plots = ["predicted_vs_actual.png", "residuals.png", "feature_importance.png"]
        split_metrics = REGRESSION_METRICS
    else:
        metrics, lines = run(breast_cancer(), tmp_path, **classification(cv_folds=3))
        plots = ["roc_curve.png", "confusion_matrix.png", "feature_importance.png"]
        split_metrics = CLASSIFICATION_METRICS
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    assert set(saved) == TOP_LEVEL_KEYS
    assert saved["problem"] == problem and saved["target"] == "target"
    assert set(saved["test"]) == set(saved["train"]) == set(saved["gap"]) == split_metrics
    for summary in saved["cv"].values():
        assert set(summary) == {"mean", "std", "folds"} and len(summary["folds"]) == 3
    assert saved["fit"] in ("ok", "overfitting", "underfitting")
    assert saved["features"] == [
        c
        for c in (breast_cancer() if problem != "regression" else diabetes()).columns
        if c != "target"
    ]
    if problem == "regression":
        assert saved["threshold"] is None and saved["confusion_matrix"] is None
        assert set(saved["cv"]) == {"rmse", "r2"}
    else:
        assert np.array(saved["confusion_matrix"]).shape == (2, 2)
        assert set(saved["cv"]) == {"auc"}
    for name in plots:
        _assert_png(tmp_path / name)
    assert not (set(p.name for p in tmp_path.glob("*.png")) - set(plots))

    # every metric definition's regex finds exactly its line, with metrics.json's value
    text = "\n".join(lines)
    flat = {f"{split}_{m}": saved[split][m] for split in ("test", "train") for m in split_metrics}
    flat.update({f"gap_{m}": v for m, v in saved["gap"].items()})
    for m, summary in saved["cv"].items():
        flat[f"cv_{m}_mean"], flat[f"cv_{m}_std"] = summary["mean"], summary["std"]
    if saved["threshold"] is not None:
        flat["threshold"] = saved["threshold"]
    definitions = metric_definitions(problem)
    assert {d["Name"] for d in definitions} == set(flat)
    for definition in definitions:
        found = re.findall(definition["Regex"], text)
        assert len(found) == 1, definition
        assert float(found[0]) == flat[definition["Name"]]
    assert len([line for line in lines if re.fullmatch(r"[a-z0-9_]+=[^;]+;", line)]) == len(flat)


def test_output_data_dir_gets_a_copy_of_metrics(tmp_path):
    out = tmp_path / "output"
    metrics = T.train(
        diabetes(),
        T.TrainConfig(**regression(cv_folds=0)),
        tmp_path / "model",
        output_data_dir=out,
        log=lambda _: None,
    )
    assert json.loads((out / "metrics.json").read_text()) == metrics


# ----------------------------------------------------------------------------- errors


def test_missing_target_names_the_column(tmp_path):
    with pytest.raises(T.TrainingError, match="'churn'.*not in the training data"):
        run(breast_cancer(), tmp_path, **classification(target="churn"))


def test_non_binary_target_is_refused(tmp_path):
    frame = diabetes()
    with pytest.raises(T.TrainingError, match="target 'target' is not binary 0/1"):
        run(frame, tmp_path, **classification())


def test_date_feature_must_be_excluded(tmp_path):
    frame = mixed_frame()
    with pytest.raises(T.FeatureError, match="'as_of'.*exclude_columns"):
        run(frame, tmp_path, **classification(target="churned", id_columns="customer_id"))


def test_unencodable_object_column_is_named(tmp_path):
    frame = mixed_frame()
    frame["tags"] = [["a", "b"]] * len(frame)
    with pytest.raises(T.FeatureError, match="'tags' cannot be encoded"):
        run(
            frame,
            tmp_path,
            **classification(target="churned", id_columns="customer_id", exclude_columns="as_of"),
        )


def test_identifier_like_string_column_must_be_listed(tmp_path):
    frame = pd.concat([mixed_frame(700)] * 2, ignore_index=True)
    frame["customer_id"] = [f"c-{i}" for i in range(len(frame))]  # 1400 distinct values
    with pytest.raises(T.FeatureError, match="'customer_id' has 1400 distinct values.*id_columns"):
        run(frame, tmp_path, **classification(target="churned", exclude_columns="as_of"))


def test_infinite_feature_values_are_named(tmp_path):
    frame = mixed_frame()
    frame.loc[5, "usage"] = np.inf
    with pytest.raises(T.FeatureError, match="'usage' has 1 infinite value"):
        run(
            frame,
            tmp_path,
            **classification(target="churned", id_columns="customer_id", exclude_columns="as_of"),
        )


def test_unknown_hyperparameter_is_named_with_the_valid_ones(tmp_path):
    with pytest.raises(T.HyperparameterError) as error:
        run(
            breast_cancer(),
            tmp_path,
            **classification(algorithm="random_forest", hyperparameters={"n_trees": "10"}),
        )
    assert "n_trees" in str(error.value) and "n_estimators" in str(error.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(algorithm="linear"), "linear does not solve binary_classification"),
        (dict(problem="ranking"), "unknown problem 'ranking'"),
        (dict(test_fraction="1.5"), "test_fraction must be between 0 and 1"),
        (dict(problem="regression", algorithm="xgboost", stratify="true"), "stratify"),
        (dict(id_columns="nope"), "id_columns 'nope' not in the training data"),
    ],
)
def test_configuration_errors(tmp_path, overrides, message):
    with pytest.raises(T.TrainingError, match=re.escape(message)):
        run(breast_cancer(), tmp_path, **classification(**overrides))


# ----------------------------------------------------------------------------- CLI contract


def test_hyperparameter_parsing_and_coercion():
    params = T.parse_hyperparameters(
        ["--problem", "regression", "--max_depth", "5", "--id_columns", "", "--eta=0.1", "-C", "2"]
    )
    assert params == {
        "problem": "regression",
        "max_depth": "5",
        "id_columns": "",
        "eta": "0.1",
        "C": "2",  # a one-letter name, as SageMaker's training toolkit passes it
    }
    config = T.TrainConfig.from_hyperparameters(
        {
            "problem": "binary_classification",
            "algorithm": "xgboost",
            "target": "y",
            "id_columns": "a, b",
            "exclude_columns": "",
            "seed": "7",
            "cv_folds": "0",
            "stratify": "false",
            "max_depth": "5",
            "learning_rate": "1e-1",
            "subsample": "none",
            "enable_categorical": "False",
            "booster": "gbtree",
            "sagemaker_program": "train.py",
        }
    )
    assert config.id_columns == ("a", "b") and config.exclude_columns == ()
    assert (config.seed, config.cv_folds, config.stratify) == (7, 0, False)
    assert config.hyperparameters == {
        "max_depth": 5,
        "learning_rate": 0.1,
        "subsample": None,
        "enable_categorical": False,
        "booster": "gbtree",
    }
    assert (
        T.TrainConfig(problem="binary_classification", algorithm="logistic", target="y").stratify
        is True
    )
    with pytest.raises(T.TrainingError, match="--seed has no value"):
        T.parse_hyperparameters(["--seed"])


def test_metric_definitions_import_without_scikit_learn():
    code = (
        "import sys; from training.metrics_contract import metric_definitions; "
        "d = metric_definitions('regression'); "
        "assert 'sklearn' not in sys.modules and 'pandas' not in sys.modules; print(len(d))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert int(result.stdout) == len(metric_definitions("regression")) == 13
    assert len(metric_definitions("binary_classification")) == 18  # SageMaker allows 40


def test_training_sources_parse_as_python_39():
    """The scikit-learn 1.2-1 container runs Python 3.9."""
    for path in sorted(TRAINING.glob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_training_sources_call_nothing_python_39_lacks():
    """Syntax is not all: zip(strict=) (3.10) parses on 3.9 and fails when it runs, and so
    do `X | Y` unions outside annotations (isinstance) and str.removeprefix's 3.9 peers."""
    found = []
    for path in sorted(TRAINING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "zip" and any(k.arg == "strict" for k in node.keywords):
                    found.append(f"{path.name}:{node.lineno}: zip(strict=)")
                if name in ("isinstance", "issubclass") and any(
                    isinstance(a, ast.BinOp) and isinstance(a.op, ast.BitOr) for a in node.args
                ):
                    found.append(f"{path.name}:{node.lineno}: {name} with X | Y")
    assert found == []


def _cli(tmp_path, args, frame=None):
    channel = tmp_path / "input" / "data" / "train"
    (channel / "dt=2026-11-01").mkdir(parents=True)
    if frame is not None:
        half = len(frame) // 2
        frame.iloc[:half].to_parquet(channel / "dt=2026-11-01" / "part-0000.parquet")
        frame.iloc[half:].to_csv(channel / "part-0001.csv", index=False)
        (channel / "_SUCCESS").write_text("")
    env = dict(
        os.environ,
        SM_CHANNEL_TRAIN=str(channel),
        SM_MODEL_DIR=str(tmp_path / "model"),
        SM_OUTPUT_DATA_DIR=str(tmp_path / "output"),
    )
    env.pop("SM_OUTPUT_DIR", None)
    return subprocess.run(
        [sys.executable, str(TRAINING / "train.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )


def test_main_end_to_end_in_a_subprocess(tmp_path):
    frame = mixed_frame()
    result = _cli(
        tmp_path,
        [
            "--problem",
            "binary_classification",
            "--algorithm",
            "xgboost",
            "--target",
            "churned",
            "--id_columns",
            "customer_id",
            "--exclude_columns",
            "as_of",
            "--cv_folds",
            "3",
            "--n_estimators",
            "40",
            "--max_depth",
            "3",
        ],
        frame,
    )
    assert result.returncode == 0, result.stderr
    model_dir = tmp_path / "model"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_test"] == len(frame)  # both files were read
    assert metrics["hyperparameters"]["n_estimators"] == 40
    assert metrics["hyperparameters"]["max_depth"] == 3
    for name in ("roc_curve.png", "confusion_matrix.png", "feature_importance.png"):
        _assert_png(model_dir / name)
    assert (tmp_path / "output" / "metrics.json").exists()
    for definition in metric_definitions("binary_classification"):
        found = re.findall(definition["Regex"], result.stdout)
        name = definition["Name"]
        if name == "threshold":
            expected = metrics["threshold"]
        elif name.startswith("cv_"):
            metric, stat = name[3:].rsplit("_", 1)
            expected = metrics["cv"][metric][stat]
        else:
            section, metric = name.split("_", 1)
            expected = metrics[section][metric]
        assert [float(v) for v in found] == [expected], name
    model = joblib.load(model_dir / "model.joblib")
    assert model.predict_proba(frame.drop(columns=["churned"])).shape == (len(frame), 2)


def test_main_missing_target_exits_non_zero_naming_the_column(tmp_path):
    result = _cli(
        tmp_path,
        ["--problem", "binary_classification", "--algorithm", "logistic", "--target", "churn_flag"],
        mixed_frame(),
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'churn_flag'" in result.stderr
    assert not (tmp_path / "model" / "model.joblib").exists()


def test_main_unknown_estimator_hyperparameter_exits_non_zero_naming_it(tmp_path):
    result = _cli(
        tmp_path,
        [
            "--problem",
            "regression",
            "--algorithm",
            "random_forest",
            "--target",
            "usage",
            "--id_columns",
            "customer_id",
            "--exclude_columns",
            "as_of",
            "--max_leaves",
            "8",
        ],
        mixed_frame(),
    )
    assert result.returncode == 2
    assert "max_leaves" in result.stderr and "max_leaf_nodes" in result.stderr


def test_main_empty_channel_exits_non_zero(tmp_path):
    result = _cli(tmp_path, ["--problem", "regression", "--algorithm", "linear", "--target", "y"])
    assert result.returncode == 2
    assert "no *.parquet or *.csv file" in result.stderr


def test_test_predictions_are_the_test_rows_and_reproduce_the_test_auc(tmp_path):
    from sklearn.metrics import roc_auc_score

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns={"target": "malignant"})
    frame.insert(0, "patient_id", [f"p{i:04d}" for i in range(len(frame))])
    config = T.TrainConfig(
        problem="binary_classification",
        algorithm="logistic",
        target="malignant",
        id_columns=("patient_id",),
        test_fraction=0.3,
        seed=42,
        cv_folds=0,
    )
    metrics = T.train(frame, config, tmp_path / "model", log=lambda line: None)
    scored = pd.read_csv(tmp_path / "model" / "test_predictions.csv")
    assert len(scored) == metrics["n_test"] and scored["patient_id"].is_unique
    truth = frame.set_index("patient_id").loc[scored["patient_id"], "malignant"].to_numpy()
    assert (scored["malignant"].to_numpy() == truth).all()
    assert roc_auc_score(scored["malignant"], scored["score"]) == pytest.approx(
        metrics["test"]["auc"]
    )
