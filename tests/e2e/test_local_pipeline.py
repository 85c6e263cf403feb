"""The demo path end to end on the embedded platform, asserting real numbers: what reaches
raw equals what was ingested, the reconciliation holds, and every demo query equals a
pandas computation over the generated input."""

from __future__ import annotations

import gzip
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from dataplatform import demo
from dataplatform.naming import pascal_case
from dataplatform.runtime.local import provision
from dataplatform.runtime.local.platform import LocalPlatform
from dataplatform.runtime.model_registry import gate_module
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.local.aws_cli import aws, shell_env

pytestmark = pytest.mark.slow
# A fixed clock: the generated data, the feature cutoff and "the last 7 days" are the same
# on every run, so are the trained models and their gate (the wall clock made the churn
# AUC swing by time of day).
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
N_CUSTOMERS, N_SALES, N_BASKETS = (
    400,
    120,
    200,
)  # 400 customers: 120 test customers for the churn gate
AS_OF = (NOW.date() - timedelta(days=demo.CHURN_LABEL_DAYS + 1)).isoformat()


@pytest.fixture(scope="module")
def run(empty_platform):
    state, _ = empty_platform  # the session's platform, emptied: the counts start from zero
    spec = load_spec(REPO_ROOT / "spec")
    local = LocalPlatform(spec, "dev", state_dir=state)
    provision.provision(spec, local.settings, local.names, local.client)
    events = demo.telecom_events(N_CUSTOMERS, seed=3, now=NOW)
    sales_file = state / "house_sales.csv"
    sales_file.write_text(demo.house_sales_csv(N_SALES, seed=5, now=NOW))
    baskets_file = state / "baskets.csv"
    baskets_file.write_text(demo.baskets_csv(N_BASKETS, seed=17, now=NOW))
    results = {
        "telecom_events": local.ingest(local.dataset("telecom_events"), events),
        "house_sales": local.ingest(local.dataset("house_sales"), file=sales_file),
        "baskets": local.ingest(local.dataset("baskets"), file=baskets_file),
    }
    reports = {}
    for name in results:
        local.crawl(local.dataset(name))
        reports[name] = local.curate(local.dataset(name)).report
    local.features("customer_features", as_of=AS_OF)
    local.emr_run("frequent_itemsets", demo.BASKET_MINING)
    queries = [
        local.query(q.sql).frame
        for q in demo.demo_queries(local.names.curated_database, today=NOW.date())
    ]
    yield local, events, pd.read_csv(sales_file, dtype=str), results, reports, queries


def expected_telecom(events: list[dict]) -> dict:
    """The pipeline's rules, computed independently over the generated events."""
    frame = pd.DataFrame(events)
    firehose_failed = frame.customer_id.isna()
    delivered = frame[~firehose_failed].copy()
    duration = pd.to_numeric(delivered.duration_s, errors="coerce")
    reasons = pd.Series("", index=delivered.index)
    reasons[delivered.duration_s.notna() & duration.isna()] = "duration_s:type"
    reasons[~delivered.event_type.isin(demo.EVENT_TYPES)] = "event_type:allowed"
    reasons[pd.to_numeric(delivered.amount_eur, errors="coerce") < 0] = "amount_eur:min"
    valid = delivered[reasons == ""].copy()
    curated = valid.drop_duplicates("event_id")
    curated["dt"] = pd.to_datetime(curated.event_time, utc=True).dt.strftime("%Y-%m-%d")
    return {
        "firehose_errors": int(firehose_failed.sum()),
        "delivered": len(delivered),
        "quarantine": reasons[reasons != ""].value_counts().to_dict(),
        "duplicates": len(valid) - len(curated),
        "curated": curated,
    }


def test_raw_holds_exactly_what_was_ingested(run):
    local, events, _, results, _, _ = run
    expected = expected_telecom(events)
    s3, bucket = local.s3, local.names.raw_bucket
    ok_ids, error_lines = [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".gz"):
                continue
            lines = gzip.decompress(
                s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            ).splitlines()
            if item["Key"].startswith("_errors/telecom_events/"):
                error_lines += len(lines)
            elif item["Key"].startswith("telecom_events/"):
                ok_ids += [json.loads(line)["event_id"] for line in lines]
    delivery = results["telecom_events"].delivery
    assert results["telecom_events"].sent == len(events)
    assert len(ok_ids) == delivery.delivered_ok == expected["delivered"]
    assert error_lines == delivery.processing_failed == expected["firehose_errors"]


def test_what_spark_wrote_is_sse_kms_with_the_lake_key_and_no_upload_is_left_open(run):
    """Spark's writes take the buckets' default encryption, the lake key, as every other
    object does (they used to be SSE-S3 locally: the AWS SDK refuses to copy SSE-KMS
    objects over HTTP, and Spark's old commit copied every file), and the committer's
    multipart uploads are all completed."""
    local = run[0]
    s3, names = local.s3, local.names
    checked = 0
    for bucket in (names.curated_bucket, names.features_bucket):
        key_arn = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(".parquet"):
                    continue
                head = s3.head_object(Bucket=bucket, Key=item["Key"])
                assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == (
                    "aws:kms",
                    key_arn,
                ), item["Key"]
                checked += 1
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    # curated: telecom_events, house_sales, baskets and their quarantine; features: two
    assert checked > 100


def test_every_ingested_record_is_accounted_for(run):
    _, events, sales, results, reports, _ = run
    expected = expected_telecom(events)
    telecom = reports["telecom_events"]
    assert telecom["quarantined_by_reason"] == expected["quarantine"]
    assert telecom["duplicates_removed"] == expected["duplicates"]
    assert telecom["rows_curated"] == len(expected["curated"])
    assert len(events) == (
        telecom["rows_curated"]
        + telecom["rows_quarantined"]
        + telecom["duplicates_removed"]
        + results["telecom_events"].delivery.processing_failed
    )
    houses = reports["house_sales"]
    assert (
        len(sales)
        == N_SALES
        == houses["rows_curated"] + houses["rows_quarantined"] + houses["duplicates_removed"]
    )


def test_events_per_type_per_day_equals_pandas(run):
    _, events, _, _, _, queries = run
    curated = expected_telecom(events)["curated"]
    expected = (
        curated.groupby(["dt", "event_type"])
        .size()
        .reset_index(name="events")
        .sort_values(["dt", "event_type"])
        .reset_index(drop=True)
    )
    got = queries[0].astype({"events": "int64"}).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["dt", "event_type", "events"]], expected, check_dtype=False)


def test_most_dropped_calls_last_week_equals_pandas(run):
    _, events, _, _, _, queries = run
    curated = expected_telecom(events)["curated"]
    since = (NOW.date() - timedelta(days=7)).isoformat()
    calls = curated[(curated.event_type == "call") & (curated.dt >= since)]
    per_customer = (
        calls.groupby("customer_id")
        .agg(
            dropped_calls=("call_dropped", lambda s: int((s == True).sum())),  # noqa: E712
            calls=("event_id", "size"),
        )
        .reset_index()
    )
    expected = (
        per_customer[per_customer.dropped_calls > 0]
        .sort_values(["dropped_calls", "customer_id"], ascending=[False, True])
        .head(10)
        .reset_index(drop=True)
    )
    got = queries[1].astype({"dropped_calls": "int64", "calls": "int64"}).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_quarantine_reasons_equal_the_reports(run):
    _, events, _, _, reports, queries = run
    got = {(r.dataset, r.reason): int(r.rows_quarantined) for r in queries[2].itertuples()}
    expected = {
        ("telecom_events", reason): n
        for reason, n in expected_telecom(events)["quarantine"].items()
    }
    expected.update(
        {
            ("house_sales", reason): n
            for reason, n in reports["house_sales"]["quarantined_by_reason"].items()
        }
    )
    assert got == expected


def test_a_one_day_query_scans_far_less_on_curated_parquet_than_on_raw_json(run):
    local, events, *_ = run
    day = expected_telecom(events)["curated"].dt.value_counts().idxmax()  # the busiest day
    curated = local.query(
        f"SELECT count(*) AS n FROM {local.names.curated_database}.telecom_events "
        f"WHERE dt = '{day}'"
    )
    raw = local.query(
        f"SELECT count(*) AS n FROM {local.names.raw_database}.telecom_events WHERE dt = '{day}'"
    )
    everything = local.query(f"SELECT count(*) AS n FROM {local.names.raw_database}.telecom_events")
    print(
        f"one day: curated Parquet {curated.bytes_scanned:,} B, raw JSON {raw.bytes_scanned:,} B; "
        f"all of raw {everything.bytes_scanned:,} B"
    )
    assert 0 < raw.bytes_scanned < everything.bytes_scanned  # partition pruning
    assert curated.rows[0][0] > 0


def test_customer_features_are_built_locally_and_their_churn_label_equals_pandas(run):
    local, events, *_ = run
    curated = expected_telecom(events)["curated"]
    until = (
        (datetime.fromisoformat(AS_OF) + timedelta(days=demo.CHURN_LABEL_DAYS)).date().isoformat()
    )
    before = curated[curated.dt <= AS_OF]
    after = curated[(curated.dt > AS_OF) & (curated.dt <= until)]
    expected = {c: int(c not in set(after.customer_id)) for c in before.customer_id.unique()}

    result = local.query(
        f"SELECT customer_id, churned, calls_30d FROM "
        f"{local.names.features_database}.customer_features"
    )

    got = {r.customer_id: int(r.churned) for r in result.frame.itertuples()}
    assert got == expected
    assert 0 < sum(got.values()) < len(got)  # the demo data has churners and stayers


def stream_records(local, dataset: str):
    """Every record on the dataset's stream, from its start (as a new consumer reads it)."""
    from dataplatform.online.scorer import StreamRecord

    kinesis, stream = local.client("kinesis"), local.names.stream(dataset)
    for shard in sorted(s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]):
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            yield from (
                StreamRecord(record_id=r["SequenceNumber"], data=r["Data"]) for r in page["Records"]
            )
            if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")


def test_online_features_equal_the_batch_feature_sql_for_every_customer(run):
    """No training/serving skew: the stream scorer's online store, fed the telecom stream
    from its start (every event the demo ingested, duplicates, rejects and quarantine
    included), gives every customer the features customer_features.sql computed on Spark
    from the curated table for the same cutoff, exactly (sums of doubles to 1e-12)."""
    from dataplatform.online import features as online
    from dataplatform.online.scorer import checked_events, keep_events, online_features

    local = run[0]
    dataset = local.dataset("telecom_events")
    left_out: dict[str, int] = {}
    events, _ = checked_events(list(stream_records(local, "telecom_events")), dataset, left_out)
    dynamodb, table = local.client("dynamodb"), local.names.online_features_table
    keep_events(dynamodb, table, events)
    # the records left out are the ones the Firehose transform and the curate job left out
    curated_ids = set(
        local.query(
            f"SELECT event_id FROM {local.names.curated_database}.telecom_events"
        ).frame.event_id
    )
    assert {e.event_id for e in events} == curated_ids
    batch = local.query(f"SELECT * FROM {local.names.features_database}.customer_features").frame
    assert len(batch) > 300
    as_of = datetime.fromisoformat(AS_OF).date()
    mismatches = []
    for row in batch.to_dict("records"):
        got = online_features(dynamodb, table, row["customer_id"], as_of)
        for column in online.FEATURE_COLUMNS:
            want, have = row[column], got[column]
            if pd.isna(want):
                ok = have is None
            elif isinstance(have, float):
                ok = have == pytest.approx(float(want), rel=1e-12, abs=1e-9)
            else:
                ok = have == int(want)
            if not ok:
                mismatches.append((row["customer_id"], column, want, have))
    assert mismatches == []
    online_customers = {e.customer_id for e in events if e.day <= as_of}
    assert online_customers == set(batch.customer_id)


def athena_array(value) -> list[str]:
    """An array column as Athena's result CSV writes it (`[bread, butter]`), which is what
    a query's answer holds on both targets (awswrangler reads that CSV)."""
    if isinstance(value, list):
        return value
    text = str(value).strip()
    assert text.startswith("[") and text.endswith("]"), text
    return [item.strip() for item in text[1:-1].split(",") if item.strip()]


def expected_rules(csv_text: str, min_support: float, min_confidence: float) -> dict:
    """Single-consequent association rules by enumeration over the curated baskets: rows
    with an item and a quantity >= 1, each (basket, item) once."""
    import itertools

    rows = pd.read_csv(io.StringIO(csv_text), dtype=str).dropna(subset=["item"])
    rows = rows[pd.to_numeric(rows.quantity) >= 1].drop_duplicates(["basket_id", "item"])
    baskets = rows.groupby("basket_id").item.apply(frozenset)
    n, items = len(baskets), sorted(set(rows.item))
    count = {}
    for size in range(1, len(items) + 1):
        found = False
        for combo in itertools.combinations(items, size):
            c = int(sum(set(combo) <= b for b in baskets))
            if c / n >= min_support:
                count[frozenset(combo)], found = c, True
        if not found:
            break
    rules = {}
    for s, c in count.items():
        for consequent in s if len(s) > 1 else ():
            confidence = c / count[s - {consequent}]
            if confidence >= min_confidence:
                rules[(tuple(sorted(s - {consequent})), consequent)] = (
                    c / n,
                    confidence,
                    confidence * n / count[frozenset([consequent])],
                )
    return rules


def test_the_demo_basket_rules_equal_pandas_and_show_the_planted_association(run):
    local, _, _, results, reports, _ = run
    report = reports["baskets"]
    assert results["baskets"].records == (
        report["rows_curated"] + report["rows_quarantined"] + report["duplicates_removed"]
    )
    mining = demo.BASKET_MINING
    frame = local.query(
        f"SELECT antecedent, consequent, support, confidence, lift FROM "
        f"{local.names.features_database}.{mining['output-name']}_rules"
    ).frame
    got = {
        (tuple(athena_array(r.antecedent)), *athena_array(r.consequent)): (
            r.support,
            r.confidence,
            r.lift,
        )
        for r in frame.itertuples()
    }
    expected = expected_rules(
        demo.baskets_csv(N_BASKETS, seed=17, now=NOW),
        float(mining["min-support"]),
        float(mining["min-confidence"]),
    )
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, rel=1e-9), key
    assert got[(("bread",), "butter")][2] > 1.5  # the planted association's lift
    printed = local.query(
        demo.rules_query(local.names.features_database, mining["output-name"]).sql
    ).frame
    singles = sorted(
        ((a, c) for a, c in expected if len(a) == 1),
        key=lambda k: (-expected[k][2], -expected[k][1], k),
    )
    assert len(singles) <= 8  # the demo prints them all (ties in lift may swap places)
    assert {((r.antecedent,), r.consequent) for r in printed.itertuples()} == set(singles)
    assert list(printed.lift) == sorted(printed.lift, reverse=True)
    assert (("bread",), "butter") in singles  # the demo shows the planted association


def test_pipeline_run_registers_both_models_with_the_metrics_of_their_artifacts(run):
    """`dp pipeline run` after the demo's ingest: every step of the plan runs, and each
    model's registered package carries exactly the test metrics of the metrics.json inside
    the model.tar.gz it points to."""
    import tarfile

    local = run[0]
    result = local.run_pipeline(
        progress=lambda line: None, as_of=demo.pipeline_as_of(local.platform, NOW)
    )
    assert result.succeeded, (result.failed_step, result.error, result.cause)
    steps = [s.name for s in result.steps]  # the states of the synthesized state machine
    assert steps[-2:] == ["NotifySuccess", "PipelineSucceeded"], steps
    curated = {f"Curate{pascal_case(d.name)}" for d in local.platform.datasets}
    assert curated <= set(steps), steps
    assert {"CreateCluster", "TerminateCluster"} <= set(steps), steps
    assert {"TrainChurn", "TrainHousePrices", "RegisterChurn", "RegisterHousePrices"} <= set(steps)
    sagemaker = local.client("sagemaker")
    for model in local.platform.models:
        group = local.names.model_package_group(model.name)
        (summary,) = sagemaker.list_model_packages(ModelPackageGroupName=group)[
            "ModelPackageSummaryList"
        ]
        package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        assert package["ModelApprovalStatus"] == "PendingManualApproval"
        registered = gate_module().parse_registry_metrics(
            package["CustomerMetadataProperties"]["test_metrics"]
        )
        uri = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        body = local.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            metrics = json.load(archive.extractfile("metrics.json"))
        assert registered == pytest.approx(metrics["test"], rel=1e-5), model.name
        print(
            f"{model.name}: registered {summary['ModelPackageArn']} with test metrics {registered}"
        )


def lake_snapshot(local) -> dict:
    """Every curated and feature table's rows (sorted), and the catalog's raw partitions."""
    tables = {}
    glue = local.glue
    for database in (local.names.curated_database, local.names.features_database):
        for table in glue.get_tables(DatabaseName=database)["TableList"]:
            frame = local.query(f"SELECT * FROM {database}.{table['Name']}").frame
            frame = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
            tables[f"{database}.{table['Name']}"] = frame.to_dict("list")
    partitions = {}
    for table in glue.get_tables(DatabaseName=local.names.raw_database)["TableList"]:
        pages = glue.get_paginator("get_partitions").paginate(
            DatabaseName=local.names.raw_database, TableName=table["Name"]
        )
        partitions[table["Name"]] = sorted(
            tuple(p["Values"]) for page in pages for p in page["Partitions"]
        )
    return {"tables": tables, "partitions": partitions}


def test_every_step_run_a_second_time_succeeds_and_changes_nothing_it_should_not(run):
    """Rerunnable: crawl, curate, features, an EMR step and the whole pipeline (which trains
    and registers) run again after the runs above succeed; the lake's tables and the raw
    catalog are the same, and the registry has one more version of each model with the
    same test metrics (training is deterministic)."""
    local = run[0]
    sagemaker = local.client("sagemaker")

    def registered() -> dict[str, list[tuple]]:
        """Each model's registered versions, as their test metrics."""
        found = {}
        for model in local.platform.models:
            group = local.names.model_package_group(model.name)
            found[model.name] = [
                tuple(
                    sorted(
                        gate_module()
                        .parse_registry_metrics(
                            sagemaker.describe_model_package(
                                ModelPackageName=summary["ModelPackageArn"]
                            )["CustomerMetadataProperties"]["test_metrics"]
                        )
                        .items()
                    )
                )
                for summary in sagemaker.list_model_packages(ModelPackageGroupName=group)[
                    "ModelPackageSummaryList"
                ]
            ]
        return found

    before, models_before = lake_snapshot(local), registered()
    assert all(len(v) == 1 for v in models_before.values())  # the pipeline test's packages
    for name in ("telecom_events", "house_sales", "baskets"):
        crawl = local.crawl(local.dataset(name))
        assert crawl.partitions_added == 0, name
        report = local.curate(local.dataset(name)).report
        assert report["rows_in"] == 0, (name, report)  # incremental: nothing new to read
    local.features("customer_features", as_of=AS_OF)
    local.emr_run("frequent_itemsets", demo.BASKET_MINING)
    assert lake_snapshot(local) == before
    result = local.run_pipeline(
        progress=lambda line: None, as_of=demo.pipeline_as_of(local.platform, NOW)
    )
    assert result.succeeded, (result.failed_step, result.error, result.cause)
    assert lake_snapshot(local) == before
    after = registered()
    assert {m: len(v) for m, v in after.items()} == {m: 2 for m in models_before}
    assert {m: set(v) for m, v in after.items()} == {m: set(v) for m, v in models_before.items()}


def test_real_time_scoring_flags_the_customers_the_planted_truth_puts_at_risk(run):
    """The registered churn model approved and served on the local endpoint; the scorer
    reads the telecom stream (history, then a fresh day in which a few customers have a bad
    day); the flagged customers are compared with the generator's truth at the same
    threshold, and each flagged customer is one HighChurnRisk message on the CRM queue."""
    import json

    from dataplatform import demo_flow
    from dataplatform.runtime.model_registry import list_models

    local = run[0]
    model = next(m for m in local.platform.models if m.serving)
    registry = {
        e.model: e for e in list_models(local.client("sagemaker"), local.platform, local.names)
    }
    if not registry[model.name].packages:  # run alone: train and register it first
        local.train(model.name)
        registry = {
            e.model: e for e in list_models(local.client("sagemaker"), local.platform, local.names)
        }
    version = registry[model.name].packages[0].version
    started = datetime.now(UTC)
    local.approve(model.name, version)  # the approval rule's deployer rolls the endpoint
    served = local.serve(model.name)
    assert served.version == version and served.where.startswith("http://127.0.0.1:")

    # the scorer's mapping reads the stream in the background; score() reports it
    history = local.score(model.name, since=started)
    assert history.failed == [] and history.scored > 0
    fresh = demo.fresh_day_events(N_CUSTOMERS, seed=29, now=NOW)
    before_fresh = datetime.now(UTC)
    local.ingest(local.dataset(model.serving.stream), fresh)
    today = local.score(model.name, since=before_fresh)
    assert today.failed == [] and today.records == len(fresh)
    truth = demo_flow.planted_truth(today.scores, model.serving.threshold)
    print(truth.line())
    assert truth.truly_at_risk > 5 and truth.flagged > 5
    assert truth.precision >= 0.6 and truth.recall >= 0.6, truth

    # a replay (a new mapping from the stream's start): no new intervention
    again = local.score(model.name, from_start=True, since=datetime.now(UTC))
    assert again.flagged == []
    sqs = local.client("sqs")
    queue = sqs.get_queue_url(QueueName=local.names.interventions_queue)["QueueUrl"]
    customers = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        customers += [json.loads(m["Body"])["detail"]["customer_id"] for m in messages]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    flagged_interventions = {f["intervention_id"] for f in history.flagged + today.flagged}
    assert len(customers) == len(flagged_interventions)

    # the scores reached the lake: delivered, crawled and curated, one row per score id
    # (a rescore of a customer's day replaces it), queryable beside what happened
    scores = model.serving.scores_dataset
    assert history.delivered + today.delivered + again.delivered == (
        history.scored + today.scored + again.scored
    )
    local.crawl(local.dataset(scores))
    report = local.curate(local.dataset(scores)).report
    written = {s["score_id"] for s in history.scores + today.scores + again.scores}
    assert report["rows_curated"] == len(written) and report["rows_quarantined"] == 0
    joined = local.query(
        f"SELECT count(*) AS n FROM {local.names.curated_database}.{scores} s "
        f"JOIN {local.names.curated_database}.telecom_events e ON e.customer_id = s.customer_id "
        "WHERE s.flagged"
    ).frame
    assert int(joined.n[0]) > 0

    # what happened: the outcomes of today's scores (churned with the planted probability)
    # uploaded, curated and joined to the curated scores by customer and day; the realized
    # performance the monitoring computes on the platform's join equals sklearn's on the
    # same rows joined by pandas
    from sklearn.metrics import precision_score, roc_auc_score

    from dataplatform import monitoring

    outcomes_file = local.state_dir / "churn_outcomes.csv"
    outcomes_file.write_text(demo.churn_outcomes_csv(today.scores, known_at=NOW))
    outcomes = model.monitoring.outcomes_dataset
    local.ingest(local.dataset(outcomes), file=outcomes_file)
    curated_outcomes = local.curate(local.dataset(outcomes)).report
    sent = pd.read_csv(outcomes_file, dtype=str)
    assert curated_outcomes["rows_curated"] == len(sent) > 0
    db = local.names.curated_database
    platform_join = local.query(
        f"SELECT s.customer_id, s.probability, s.model_version, "
        f"CAST(s.as_of AS varchar) AS day, o.churned "
        f"FROM {db}.{scores} s JOIN {db}.{outcomes} o "
        f"ON o.customer_id = s.customer_id AND o.as_of = s.as_of "
        f"WHERE s.model = '{model.name}'"
    ).frame
    platform_join["outcome"] = platform_join.churned.astype(str).str.lower().eq("true").astype(int)
    realized = monitoring.realized_performance(
        platform_join.assign(probability=platform_join.probability.astype(float)),
        threshold=model.serving.threshold,
    )
    lake_scores = local.query(
        f"SELECT customer_id, probability, model_version, CAST(as_of AS varchar) AS day "
        f"FROM {db}.{scores} WHERE model = '{model.name}'"
    ).frame
    expected = lake_scores.merge(
        sent.rename(columns={"as_of": "day"})[["customer_id", "day", "churned"]],
        on=["customer_id", "day"],
    )
    assert len(expected) == len(platform_join) == len(sent)
    # every score names the package version that served it (the approved one)
    assert set(lake_scores.model_version.astype(str)) == {str(version)}
    truth = expected.churned.eq("true").astype(int)
    probability = expected.probability.astype(float)
    [row] = realized.to_dict("records")  # one day, one model version
    assert row["n"] == len(expected)
    assert row["auc"] == pytest.approx(roc_auc_score(truth, probability))
    assert row["precision_at_threshold"] == pytest.approx(
        precision_score(truth, probability >= model.serving.threshold, zero_division=0)
    )


def test_dp_monitor_reports_what_pandas_computes_and_a_breach_retrains_once(run, tmp_path):
    """`dp monitor churn` on what the real-time test served, scored and learnt (run after
    it): its drift per feature equals the statistics over the features table and the scores'
    served inputs read by pandas, its realized AUC equals sklearn's on the pandas join of the
    scores with the outcomes file, and it writes its plots. Published to CloudWatch: a report
    without a breach (the planted scenario before its release) leaves the deployed breach
    alarm OK and starts nothing; the demo's breach puts it in ALARM and its rule starts the
    ML pipeline once, and a second report of the same breach starts nothing more. The
    retraining run succeeds and its new churn package waits for approval."""
    from sklearn.metrics import roc_auc_score
    from typer.testing import CliRunner

    from dataplatform import demo_drift, model_monitor, monitoring
    from dataplatform.cli import app
    from dataplatform.online import features as online

    local = run[0]
    model = next(m for m in local.platform.models if m.monitoring)
    watched, names = model.monitoring, local.names
    db = names.curated_database
    lake = local.query(
        f"SELECT score_id, customer_id, CAST(as_of AS varchar) AS day, probability, features "
        f"FROM {db}.{model.serving.scores_dataset} WHERE model = '{model.name}'"
    ).frame
    assert len(lake) > 0, "the real-time scoring test scores and curates what this reads"
    sfn, cloudwatch = local.client("stepfunctions"), local.client("cloudwatch")

    def executions() -> list[dict]:
        return sfn.list_executions(stateMachineArn=names.ml_pipeline_arn)["executions"]

    def breach_alarm() -> str:
        [alarm] = cloudwatch.describe_alarms(
            AlarmNames=[names.monitor_alarm(model.name, "breach")]
        )["MetricAlarms"]
        return alarm["StateValue"]

    started_before = {e["executionArn"] for e in executions()}
    packages_before = newest_packages(local)[model.name]["count"]

    # no breach: nothing starts
    scenario = demo_drift.drift_scenario(n_customers=200)
    calm_days = [d for d in scenario.served_days if d < scenario.drift_day]
    rows = demo_drift.online_features(scenario.events, [scenario.training_day, *calm_days])
    calm = model_monitor.judge(
        model,
        model_monitor.MonitorInputs(
            reference=pd.DataFrame(rows[scenario.training_day]),
            scores=pd.DataFrame(demo_drift.served_scores(rows, calm_days)),
            joined=pd.DataFrame(columns=["probability", "outcome", "day", "model_version"]),
            reference_scores=None,
            features=list(online.FEATURE_COLUMNS),
            window=None,
        ),
    )
    assert calm.breaches == []
    model_monitor.publish(cloudwatch, names, calm)
    assert breach_alarm() == "OK"
    assert {e["executionArn"] for e in executions()} == started_before

    # the report, as any user runs it
    def monitor() -> dict:
        result = CliRunner().invoke(
            app,
            ["monitor", model.name, "--output", "json", "--plots", str(tmp_path)],
            env={"DP_HOME": str(local.state_dir), "DP_DEBUG": ""},
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    report = monitor()
    newest = max(lake.day)
    first = datetime.fromisoformat(newest) - timedelta(days=model_monitor.DEFAULT_DAYS - 1)
    window = lake[lake.day >= first.date().isoformat()]
    assert report["window"] == [first.date().isoformat(), newest]
    reference = local.query(f"SELECT * FROM {names.features_database}.{model.features_table}").frame
    features = [
        c
        for c in reference.columns
        if c not in {*model.id_columns, *model.exclude_columns, model.target}
    ]
    served = pd.DataFrame([json.loads(f) for f in window.features])
    expected = monitoring.feature_drift(
        reference,
        served,
        features,
        psi_threshold=watched.psi,
        p_value=watched.p_value,
        min_rows=watched.min_rows,
    ).set_index("feature")
    got = {r["feature"]: r for r in report["drift"]}
    assert set(got) == set(features)
    for feature in features:
        assert got[feature]["n_recent"] == len(window)
        assert got[feature]["psi"] == pytest.approx(expected.psi[feature])
        assert got[feature]["drifted"] == bool(expected.drifted[feature])
    sent = pd.read_csv(local.state_dir / "churn_outcomes.csv", dtype=str)
    joined = window.merge(sent.rename(columns={"as_of": "day"}), on=["customer_id", "day"])
    assert report["overall"]["n"] == len(joined) > 0
    assert report["overall"]["auc"] == pytest.approx(
        roc_auc_score(joined.churned.eq("true"), joined.probability.astype(float))
    )
    for plot in report["plots"]:
        assert open(plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(report["plots"]) == 3

    # the breach: what the statistics above say, and then the alarm and the pipeline
    auc_breach = (
        report["overall"]["n"] >= watched.min_outcomes and report["overall"]["auc"] < watched.auc
    )
    drift_breach = bool(expected.drifted.any()) or any(r["drifted"] for r in report["drift_by_day"])
    assert bool(report["breaches"]) == (
        auc_breach
        or drift_breach
        or bool(report["score_drift"] and report["score_drift"]["drifted"])
    )
    # The demo's served customers are those active on the day they were scored (and the
    # fresh day's bad-day bursts), not the training cutoff's population: their inputs drifted.
    assert report["breaches"] and report["metrics"]["Breach"] == 1.0
    assert breach_alarm() == "ALARM"
    new = [e for e in executions() if e["executionArn"] not in started_before]
    assert len(new) == 1
    assert monitor()["breaches"] == report["breaches"]  # the same breach, reported again
    assert [e for e in executions() if e["executionArn"] not in started_before] == new
    arn = new[0]["executionArn"]
    execution_input = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert execution_input["model"] == model.name and execution_input["trigger"] == (
        "monitoring breach"
    )
    assert execution_input["alarm"] == names.monitor_alarm(model.name, "breach")
    for _ in range(3600):  # the local services answer within minutes; a bound, not a timing
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.5)
    assert described["status"] == "SUCCEEDED", described
    after = newest_packages(local)[model.name]
    assert after["count"] == packages_before + 1
    assert after["newest"]["ModelApprovalStatus"] == "PendingManualApproval"


# --- the deployed state machine, started as any AWS client starts it


def newest_packages(local) -> dict[str, dict]:
    """Each model's package versions (count) and its newest package's description."""
    sagemaker = local.client("sagemaker")
    found = {}
    for model in local.platform.models:
        summaries = sagemaker.list_model_packages(
            ModelPackageGroupName=local.names.model_package_group(model.name)
        )["ModelPackageSummaryList"]
        newest = max(summaries, key=lambda s: s["ModelPackageVersion"]) if summaries else None
        found[model.name] = {
            "count": len(summaries),
            "newest": sagemaker.describe_model_package(ModelPackageName=newest["ModelPackageArn"])
            if newest
            else None,
        }
    return found


def artifact_metrics(local, package: dict) -> dict:
    import tarfile

    uri = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = local.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return json.load(archive.extractfile("metrics.json"))["test"]


def feature_rows(local, table: str) -> pd.DataFrame:
    frame = local.query(f"SELECT * FROM {local.names.features_database}.{table}").frame
    return frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)


def test_the_aws_cli_starts_the_deployed_pipeline_which_succeeds_with_what_dp_computes(run):
    """`aws stepfunctions start-execution` of the state machine `dp local up` deployed from
    the synthesized orchestration stack: the execution SUCCEEDS; its history shows each
    step's real input and output; the registry holds a new version of each model with the
    metrics of its artifact; each feature table equals what `dp features` computes."""
    from dataplatform.pipeline import execution_input, pipeline_plan

    local = run[0]
    env = shell_env(local.state_dir)
    plan = pipeline_plan(local.platform)
    cutoffs = demo.pipeline_as_of(local.platform, NOW)
    before = newest_packages(local)
    started = aws(
        env,
        "stepfunctions",
        "start-execution",
        "--state-machine-arn",
        local.names.ml_pipeline_arn,
        "--name",
        "from-the-aws-cli",
        "--input",
        json.dumps(execution_input(plan, cutoffs)),
    )
    arn = started["executionArn"]
    for _ in range(3600):  # the local services answer within minutes; a bound, not a timing
        described = aws(env, "stepfunctions", "describe-execution", "--execution-arn", arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.5)
    assert described["status"] == "SUCCEEDED", described
    history = aws(env, "stepfunctions", "get-execution-history", "--execution-arn", arn)
    exited = {
        e["stateExitedEventDetails"]["name"]: json.loads(e["stateExitedEventDetails"]["output"])
        for e in history["events"]
        if e["type"].endswith("StateExited")
    }
    after = newest_packages(local)
    for model in local.platform.models:
        sid = pascal_case(model.name)
        assert after[model.name]["count"] == before[model.name]["count"] + 1, model.name
        package = after[model.name]["newest"]
        assert (
            exited[f"Register{sid}"]["registered"]["ModelPackageArn"]
            == (package["ModelPackageArn"])
        )
        registered = gate_module().parse_registry_metrics(
            package["CustomerMetadataProperties"]["test_metrics"]
        )
        assert registered == pytest.approx(artifact_metrics(local, package), rel=1e-5)
        # the training step's real output: the job the local SageMaker ran, its artifact
        training = exited[f"Train{sid}"]["training"]
        assert (
            package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
            == (training["ModelArtifacts"])
        )
    for table in plan.features:
        built_by_the_pipeline = feature_rows(local, table)
        local.features(table, as_of=cutoffs.get(table))
        assert len(built_by_the_pipeline) > 0, table
        pd.testing.assert_frame_equal(built_by_the_pipeline, feature_rows(local, table))


def test_a_gate_the_data_cannot_meet_fails_the_pipeline_terminates_the_cluster_and_alerts(run):
    """The churn gate raised beyond what the data allows (a spec change, deployed by `dp
    local up`'s deployer): `dp pipeline run` ends in PipelineFailed naming the gate, the
    execution's transient cluster is terminated, the failure is published to the alerts
    topic (read from an SQS queue subscribed to it), and no package is registered."""
    import dataclasses

    from dataplatform.runtime.results import PipelineFailed

    local = run[0]
    churn = next(m for m in local.platform.models if m.name == "churn")
    strict = dataclasses.replace(
        local.platform,
        models=tuple(
            dataclasses.replace(m, quality_gate={"auc": 0.999}) if m is churn else m
            for m in local.platform.models
        ),
    )
    sqs, sns, emr = local.client("sqs"), local.client("sns"), local.client("emr")
    inbox = sqs.create_queue(QueueName="pipeline-alerts-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = f"arn:aws:sns:{local.names.region}:{local.names.account}:{local.names.alerts_topic}"
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    before = newest_packages(local)
    try:
        report = provision.provision(strict, local.settings, local.names, local.client)
        assert any(a.type == "AWS::StepFunctions::StateMachine" for a in report.applied)
        with pytest.raises(PipelineFailed) as failed:
            local.run_pipeline(as_of=demo.pipeline_as_of(local.platform, NOW))
    finally:
        provision.provision(local.platform, local.settings, local.names, local.client)
    run_ = failed.value.run
    assert run_.status == "FAILED" and run_.failed_step == "QualityGateFailedChurn", (
        run_.failed_step,
        run_.error,
        run_.cause,
    )
    assert run_.error == "QualityGateFailed" and "auc" in (run_.cause or ""), run_
    history = local.client("stepfunctions").get_execution_history(
        executionArn=run_.execution, maxResults=1000
    )["events"]
    fail_states = [
        e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "FailStateEntered"
    ]
    assert fail_states[-1] == "PipelineFailed", fail_states
    created = [
        e
        for e in history
        if e["type"] == "TaskSucceeded"
        and "ClusterId" in e.get("taskSucceededEventDetails", {}).get("output", "")
    ]
    cluster_id = json.loads(created[0]["taskSucceededEventDetails"]["output"])["ClusterId"]
    state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state == "TERMINATED", cluster_id
    messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    texts = [json.loads(m["Body"])["Message"] for m in messages.get("Messages", [])]
    assert any(
        "failed" in t and run_.execution.rsplit(":", 1)[1] in t and "QualityGateFailed" in t
        for t in texts
    ), texts
    after = newest_packages(local)
    assert after["churn"]["count"] == before["churn"]["count"]  # not registered
