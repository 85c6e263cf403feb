"""`dp pipeline run` locally: the state machine's sequence step by step. Curate and
features (local Spark, tested in test_local_crawl_and_job / test_emr_local and the e2e) are
replaced by recorders that write known feature tables where the EMR step writes them;
training, gate, registration and the alerts topic are real (train.py subprocess, the gate
Lambda's code, moto's model registry and SNS, read back through an SQS subscription)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from dataplatform import demo, layout
from dataplatform.naming import pascal_case
from dataplatform.pipeline import pipeline_plan
from dataplatform.runtime.errors import JobFailed
from dataplatform.runtime.local import provision, server
from dataplatform.runtime.local.pipeline import PipelineFailed, run_pipeline
from dataplatform.runtime.local.platform import LocalPlatform
from dataplatform.runtime.model_registry import gate_module
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.local.ml_tables import churn_table

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # a fixed clock for the feature cutoffs


def house_table(learnable: bool) -> pd.DataFrame:
    if learnable:  # a known linear price: R² well above the gate's 0.6
        rng = np.random.default_rng(3)
        frame = pd.DataFrame(
            {
                "sqft": rng.uniform(50, 250, 400),
                "rooms": rng.integers(1, 7, 400),
                "age": rng.uniform(0, 80, 400),
            }
        )
        frame["price"] = (
            3000 * frame.sqft + 10000 * frame.rooms - 800 * frame.age + rng.normal(0, 20000, 400)
        )
    else:  # diabetes progression: linear R² about 0.45, below the gate
        data = load_diabetes(as_frame=True)
        frame = data.data.copy()
        frame["price"] = data.target.to_numpy()
    frame.insert(0, "sale_id", [f"s{i}" for i in range(len(frame))])
    frame["log_price"] = 0.0
    return frame


class Recorder:
    """The local platform with curate and features recorded instead of run on Spark."""

    def __init__(self, real: LocalPlatform, tables: dict, fail_curate: str | None = None):
        self._real, self.tables, self.fail_curate, self.calls = real, tables, fail_curate, []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def curate(self, dataset, *, dates=None, progress=lambda line: None):
        self.calls.append(("curate", dataset.name, None))
        if dataset.name == self.fail_curate:
            raise JobFailed(f"curate {dataset.name} failed: rows_in != curated + quarantined")
        return SimpleNamespace(
            run_id=f"run-{dataset.name}", report={"rows_curated": 1, "rows_quarantined": 0}
        )

    def features(self, name, *, as_of=None, progress=lambda line: None):
        self.calls.append(("features", name, as_of))
        prefix = layout.features_prefix(name)
        buffer = io.BytesIO()
        self.tables[name].to_parquet(buffer, index=False)
        self._real.s3.put_object(
            Bucket=self.names.features_bucket,
            Key=f"{prefix}part-00000.parquet",
            Body=buffer.getvalue(),
        )
        return SimpleNamespace(run_id=f"step-{name}")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    home = tmp_path_factory.mktemp("dp-pipeline")
    server.up(home)
    try:
        platform = load_spec(REPO_ROOT / "spec")
        lp = LocalPlatform(platform, "dev", state_dir=home)
        provision.provision(platform, lp.settings, lp.names, lp.client)
        yield lp
    finally:
        server.down(home)


@pytest.fixture(scope="module")
def alerts(local):
    sqs, sns = local.client("sqs"), local.client("sns")
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = provision.ensure_alerts_topic(sns, local.names, "unused")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read() -> list[dict]:
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for m in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    return read


def packages(local, model: str) -> list[dict]:
    return local.client("sagemaker").list_model_packages(
        ModelPackageGroupName=local.names.model_package_group(model)
    )["ModelPackageSummaryList"]


def test_the_whole_sequence_registers_every_model_and_notifies(local, alerts):
    plan = pipeline_plan(local.platform)
    stub = Recorder(
        local, {"customer_features": churn_table(), "house_features": house_table(learnable=True)}
    )
    lines = []
    run = run_pipeline(stub, progress=lines.append, as_of=demo.pipeline_as_of(local.platform, NOW))
    assert run.succeeded
    # the state machine's order, with the demo's cutoffs for the feature tables
    cutoffs = dict(demo.feature_builds(local.platform, NOW))
    assert stub.calls == (
        [("curate", d, None) for d in plan.curate]
        + [("features", t, cutoffs[t]) for t in plan.features]
    )
    assert cutoffs["customer_features"] is not None
    expected = (
        [f"Curate{pascal_case(d)}" for d in plan.curate]
        + [f"Features{pascal_case(t)}" for t in plan.features]
        + [
            f"{s}{pascal_case(m)}"
            for m in plan.models
            for s in ("Train", "QualityGate", "Register")
        ]
        + ["NotifySuccess"]
    )
    assert [s.name for s in run.steps] == expected
    # each model registered with the metrics of its own metrics.json
    for model in plan.models:
        trained = run.trainings[model]
        [package] = [
            p for p in packages(local, model) if p["ModelPackageArn"] == trained.package_arn
        ]
        detail = local.client("sagemaker").describe_model_package(
            ModelPackageName=package["ModelPackageArn"]
        )
        assert gate_module().parse_registry_metrics(
            detail["CustomerMetadataProperties"]["test_metrics"]
        ) == pytest.approx(trained.metrics["test"], rel=1e-5)
    [message] = alerts()
    assert message["Subject"] == f"{local.names.ml_pipeline} succeeded"
    assert (
        run.execution in message["Message"]
        and run.trainings["churn"].package_arn in message["Message"]
    )


def test_a_failing_gate_stops_the_run_names_the_state_and_notifies(local, alerts):
    before = len(packages(local, "house_prices"))
    stub = Recorder(
        local, {"customer_features": churn_table(), "house_features": house_table(learnable=False)}
    )
    with pytest.raises(PipelineFailed) as failure:
        run_pipeline(stub, as_of=demo.pipeline_as_of(local.platform, NOW))
    run = failure.value.run
    assert run.failed_step == "QualityGateFailedHousePrices" and run.error == "QualityGateFailed"
    assert "house_prices did not pass its quality gate" in str(failure.value)
    assert '"metric":"r2"' in run.cause
    assert len(packages(local, "house_prices")) == before  # nothing registered
    assert run.steps[-1].name == "NotifyFailure"
    [message] = alerts()
    assert message["Subject"] == f"{local.names.ml_pipeline} failed"
    assert "QualityGateFailed" in message["Message"]


def test_a_failing_curate_stops_before_anything_else(local, alerts):
    plan = pipeline_plan(local.platform)
    first = plan.curate[0]
    stub = Recorder(local, {}, fail_curate=first)
    with pytest.raises(
        PipelineFailed, match=f"step Curate{pascal_case(first)}: JobFailed: curate {first}"
    ):
        run_pipeline(stub, as_of=demo.pipeline_as_of(local.platform, NOW))
    assert stub.calls == [("curate", first, None)]
    [message] = alerts()
    assert "rows_in != curated + quarantined" in message["Message"]
