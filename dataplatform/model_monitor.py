"""Watching a served model (`dp monitor MODEL`, the same on both targets): what it was
trained on, what it served and what happened after, read through Athena and the model
registry; the statistics of dataplatform/monitoring.py over them; the findings judged
against the model's `monitoring:` thresholds; and the figures published as CloudWatch
metrics, whose alarms (stacks/monitoring.py) tell people and, on a breach, start the ML
pipeline (its new package waits for approval, as every package does).

Pure parts (`served_inputs`, `drift_tables`, `judge`) take frames; `load_inputs` and
`publish` do the I/O, with the platform's own clients, so the local endpoint and AWS run
the same code.

The window is the newest `days` days that have scores (event time: the day the features
are as of), never the clock: a rerun over the same lake gives the same report.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from dataplatform import monitoring
from dataplatform.naming import Names
from dataplatform.spec import Model

DEFAULT_DAYS = 7
# The metrics and their unit; dimensions Model=<name>. The alarms of stacks/monitoring.py
# read these names.
METRIC_DRIFTED_FEATURES = "DriftedFeatures"
METRIC_MAX_PSI = "MaxFeaturePSI"
METRIC_SCORE_PSI = "ScorePSI"
METRIC_REALIZED_AUC = "RealizedAUC"
METRIC_BREACH = "Breach"


class NotMonitored(ValueError):
    """The model cannot be monitored as asked (no `monitoring:`, no served package...)."""


@dataclass
class MonitorInputs:
    reference: pd.DataFrame  # the training features (the model's features table)
    scores: pd.DataFrame  # served scores in the window: day, model_version, score, features
    joined: pd.DataFrame  # scores joined with outcomes: probability, outcome, treated, day...
    reference_scores: pd.Series | None  # the approved package's test scores, if any
    features: list[str]
    window: tuple[str, str] | None  # first and last day, or None without scores


@dataclass
class MonitorReport:
    model: str
    window: tuple[str, str] | None
    drift: pd.DataFrame  # the window's served inputs against training, per feature
    drift_by_day: pd.DataFrame  # day, feature, psi, band, drifted (one row per day+feature)
    score_drift: dict[str, Any] | None
    performance: pd.DataFrame  # realized, per day and model version
    overall: dict[str, Any] | None  # realized, over the window's joined rows
    calibration: pd.DataFrame
    intervention: dict[str, Any] | None
    breaches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        """Features drifted over the window or on any day of it."""
        pooled = set(self.drift.loc[self.drift.drifted, "feature"])
        daily = set(self.drift_by_day.loc[self.drift_by_day.drifted, "feature"])
        return sorted(pooled | daily)

    def metrics(self) -> dict[str, float]:
        """What `publish` puts: the figures the alarms watch."""
        values: dict[str, float] = {
            METRIC_DRIFTED_FEATURES: float(len(self.drifted_features)),
            METRIC_BREACH: 1.0 if self.breaches else 0.0,
        }
        judged = self.drift.psi.dropna()
        if len(judged):
            values[METRIC_MAX_PSI] = float(judged.max())
        if self.score_drift is not None and not math.isnan(self.score_drift["psi"]):
            values[METRIC_SCORE_PSI] = float(self.score_drift["psi"])
        if self.overall is not None and not math.isnan(self.overall["auc"]):
            values[METRIC_REALIZED_AUC] = float(self.overall["auc"])
        return values


# ----------------------------------------------------------------------------- pure parts


def model_features(model: Model, reference_columns: list[str]) -> list[str]:
    """The model's inputs (`Model.feature_columns`: what training fits on and the scorer
    sends), in the features table's order; for a table whose columns the spec cannot know
    (SELECT *), its columns but the ids, the excluded and the target."""
    if model.feature_columns:
        return [c for c in model.feature_columns if c in reference_columns]
    left_out = {*model.id_columns, *model.exclude_columns, model.target}
    return [c for c in reference_columns if c not in left_out]


def served_inputs(scores: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The scores' `features` JSON as columns (one row per score, with its day). A score
    without a feature's value (an older scorer) has it missing."""
    parsed = [
        json.loads(text) if isinstance(text, str) and text else {} for text in scores.features
    ]
    frame = pd.DataFrame.from_records(parsed, columns=features, index=scores.index)
    for column in features:
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError):
            pass  # a categorical input stays text
    frame["day"] = scores["day"].astype(str).to_numpy()
    return frame


def drift_tables(
    reference: pd.DataFrame, served: pd.DataFrame, features: list[str], model: Model
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The window's served inputs against training (one row per feature), and each day's
    (day, feature, n_recent, psi, band, p_value, drifted, note)."""
    settings = model.monitoring
    assert settings is not None
    options: dict[str, Any] = {
        "psi_threshold": settings.psi,
        "p_value": settings.p_value,
        "min_rows": settings.min_rows,
    }
    pooled = monitoring.feature_drift(reference, served, features, **options)
    days = []
    for day, group in served.groupby("day", sort=True):
        daily = monitoring.feature_drift(reference, group, features, **options)
        daily.insert(0, "day", str(day))
        days.append(
            daily[["day", "feature", "n_recent", "psi", "band", "p_value", "drifted", "note"]]
        )
    by_day = (
        pd.concat(days, ignore_index=True)
        if days
        else pd.DataFrame(
            columns=["day", "feature", "n_recent", "psi", "band", "p_value", "drifted", "note"]
        )
    )
    by_day["drifted"] = by_day["drifted"].astype(bool)
    return pooled, by_day


def judge(model: Model, inputs: MonitorInputs) -> MonitorReport:
    """Every statistic of the report, and the breaches of the spec's thresholds."""
    settings = model.monitoring
    if settings is None or model.serving is None:
        raise NotMonitored(f"model {model.name} declares no `monitoring:` in {model.source_file}")
    threshold = model.serving.threshold
    served = served_inputs(inputs.scores, inputs.features)
    drift, by_day = drift_tables(inputs.reference, served, inputs.features, model)
    notes: list[str] = []
    score_drift = None
    if inputs.reference_scores is not None and len(inputs.scores):
        score_drift = monitoring.score_drift(
            inputs.reference_scores,
            inputs.scores.score.astype(float),
            psi_threshold=settings.psi,
            p_value=settings.p_value,
            min_rows=settings.min_rows,
        )
    elif inputs.reference_scores is None:
        notes.append("no approved package's test scores: score drift not judged")
    joined = inputs.joined
    performance = monitoring.realized_performance(joined, threshold=threshold)
    overall: dict[str, Any] | None = None
    calibration = pd.DataFrame()
    intervention = None
    known = joined.dropna(subset=["outcome"]) if len(joined) else joined
    if len(known):
        overall = {
            str(k): v
            for k, v in monitoring.realized_performance(known, threshold=threshold, by=())
            .iloc[0]
            .items()
        }
        calibration = monitoring.calibration_table(known.probability, known.outcome)
        if "treated" in known.columns:
            intervention = monitoring.intervention_effect(
                known.assign(retained=1 - known.outcome.astype(int)), threshold=threshold
            )
    breaches = []
    drifted = sorted(
        set(drift.loc[drift.drifted, "feature"]) | set(by_day.loc[by_day.drifted, "feature"])
    )
    if drifted:
        days = sorted(set(by_day.loc[by_day.drifted, "day"]))
        breaches.append(
            f"drift: {', '.join(drifted)} (PSI >= {settings.psi} and p < {settings.p_value}"
            + (f"; on {', '.join(days)}" if days else "")
            + ")"
        )
    if score_drift is not None and score_drift["drifted"]:
        breaches.append(f"score drift: PSI {score_drift['psi']:.3f}")
    if overall is not None and settings.auc is not None:
        if overall["n"] < settings.min_outcomes:
            notes.append(
                f"{overall['n']} outcomes known (< min_outcomes {settings.min_outcomes}): "
                "realized AUC not judged"
            )
        elif not math.isnan(overall["auc"]) and overall["auc"] < settings.auc:
            breaches.append(f"realized AUC {overall['auc']:.3f} < {settings.auc}")
    elif overall is None:
        notes.append("no outcomes known yet for the window's scores")
    return MonitorReport(
        model=model.name,
        window=inputs.window,
        drift=drift,
        drift_by_day=by_day,
        score_drift=score_drift,
        performance=performance,
        overall=overall,
        calibration=calibration,
        intervention=intervention,
        breaches=breaches,
        notes=notes,
    )


# ----------------------------------------------------------------------------- I/O


def _quoted(database: str, table: str) -> str:
    return f'"{database}"."{table}"'


def window_start(newest: str, days: int) -> str:
    return (date.fromisoformat(newest) - timedelta(days=days - 1)).isoformat()


def reference_scores(platform, model: Model) -> pd.Series | None:
    """The test rows' scores of the newest approved package (test_predictions.csv in its
    model.tar.gz): the score distribution the model was accepted with."""
    from dataplatform.runtime.model_registry import latest_approved

    sagemaker = platform.client("sagemaker")
    package = latest_approved(sagemaker, platform.names, model.name)
    if package is None:
        return None
    described = sagemaker.describe_model_package(ModelPackageName=package.arn)
    uri = described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = platform.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        member = archive.extractfile("test_predictions.csv")
        if member is None:
            return None
        return pd.read_csv(member)["score"].astype(float)


def load_inputs(platform, model: Model, *, days: int = DEFAULT_DAYS) -> MonitorInputs:
    """What the report needs, through Athena in the platform's workgroup: the training
    features, the served scores of the newest `days` scored days and their outcomes."""
    settings, serving = model.monitoring, model.serving
    if settings is None or serving is None or not settings.outcomes_dataset:
        raise NotMonitored(
            f"model {model.name} declares no `monitoring:` in {model.source_file or 'its spec'}: "
            "add one (see spec/models/churn.yaml) to monitor it"
        )
    if days < 1:
        raise NotMonitored(f"--days {days}: give at least 1")
    names: Names = platform.names
    curated = names.curated_database
    scores_table = _quoted(curated, names.table(serving.scores_dataset or ""))
    features_table = names.table(model.features_table)
    try:
        platform.client("glue").get_table(DatabaseName=names.features_database, Name=features_table)
    except platform.client("glue").exceptions.EntityNotFoundException:
        raise NotMonitored(
            f"{model.name}: its training data, {names.features_database}.{features_table}, "
            f"does not exist yet: build it (`dp features {model.features_table}` or "
            "`dp pipeline run`) and train the model first"
        ) from None
    reference = platform.query(
        f"SELECT * FROM {_quoted(names.features_database, features_table)}"
    ).frame
    features = model_features(model, list(reference.columns))
    score_column = "probability" if model.problem == "binary_classification" else "prediction"
    newest = platform.query(
        f"SELECT CAST(max(as_of) AS varchar) AS day FROM {scores_table} "
        f"WHERE model = '{model.name}'"
    ).frame
    last = newest.day[0] if len(newest) and isinstance(newest.day[0], str) else None
    if last is None:
        empty = pd.DataFrame(columns=["day", "model_version", "score", "features"])
        return MonitorInputs(
            reference=reference,
            scores=empty,
            joined=pd.DataFrame(columns=["probability", "outcome", "day", "model_version"]),
            reference_scores=reference_scores(platform, model),
            features=features,
            window=None,
        )
    first = window_start(last, days)
    in_window = f"s.model = '{model.name}' AND s.as_of >= DATE '{first}'"
    scores = platform.query(
        f"SELECT CAST(s.as_of AS varchar) AS day, s.model_version, "
        f"s.{score_column} AS score, s.features FROM {scores_table} s WHERE {in_window} "
        "ORDER BY s.score_id"
    ).frame
    outcomes = _quoted(curated, names.table(settings.outcomes_dataset))
    keys = " AND ".join(f"o.{c} = s.{c}" for c in (*model.id_columns, "as_of"))
    treated = f", o.{settings.treated_column} AS treated" if settings.treated_column else ""
    joined = platform.query(
        f"SELECT CAST(s.as_of AS varchar) AS day, s.model_version, s.{score_column} AS probability, "
        f"o.{settings.outcome_column} AS outcome{treated} "
        f"FROM {scores_table} s JOIN {outcomes} o ON {keys} WHERE {in_window} ORDER BY s.score_id"
    ).frame
    joined["probability"] = joined.probability.astype(float)
    joined["outcome"] = _zero_one(joined.outcome)
    if "treated" in joined.columns:
        joined["treated"] = _zero_one(joined.treated).fillna(0).astype(bool)
    return MonitorInputs(
        reference=reference,
        scores=scores,
        joined=joined,
        reference_scores=reference_scores(platform, model),
        features=features,
        window=(first, last),
    )


def _zero_one(values: pd.Series) -> pd.Series:
    """Booleans as Athena's CSV gives them ('true'/'false', or 0/1) to 1.0/0.0, missing NaN."""
    text = values.astype("string").str.lower()
    return text.map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}).astype(float)


def metric_data(report: MonitorReport) -> list[dict]:
    """The PutMetricData entries of a report (dimension Model)."""
    return [
        {
            "MetricName": name,
            "Dimensions": [{"Name": "Model", "Value": report.model}],
            "Value": value,
            "Unit": "Count" if name in (METRIC_DRIFTED_FEATURES, METRIC_BREACH) else "None",
        }
        for name, value in report.metrics().items()
    ]


def publish(cloudwatch, names: Names, report: MonitorReport) -> list[dict]:
    """The report's figures to CloudWatch, where the model's alarms watch them (the
    breach alarm's change to ALARM starts the ML pipeline: once per breach, as an alarm
    changes state once)."""
    data = metric_data(report)
    cloudwatch.put_metric_data(Namespace=names.monitoring_namespace, MetricData=data)
    return data


def write_plots(report: MonitorReport, folder: Path, gate: float | None) -> list[Path]:
    """The report's plots as PNG files in `folder`: drift per feature, realized AUC per day,
    calibration."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [monitoring.plot_feature_drift(report.drift, folder / f"{report.model}_drift.png")]
    if len(report.performance):
        written.append(
            monitoring.plot_realized_auc(
                report.performance, folder / f"{report.model}_realized_auc.png", gate=gate
            )
        )
    if len(report.calibration):
        written.append(
            monitoring.plot_calibration(
                report.calibration, folder / f"{report.model}_calibration.png"
            )
        )
    return written
