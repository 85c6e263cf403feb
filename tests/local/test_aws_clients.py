"""The local platform as an AWS endpoint, driven only by clients nobody here wrote: the AWS
CLI, boto3 and awswrangler, pointed at it with `--endpoint-url` / AWS_ENDPOINT_URL, as a
team's existing code would be. Every answer is checked against data: pandas over the
generated input, and `dp`'s own answer (LocalPlatform, the AWS target's code) to the same
question. moto alone answers every one of these calls with an empty success."""

from __future__ import annotations

import base64
import io
import json
import time

import awswrangler as wr
import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dataplatform import demo
from dataplatform.runtime.local import provision, server
from dataplatform.runtime.local.platform import LocalPlatform
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.local.aws_cli import aws, shell_env

pytestmark = pytest.mark.slow
PLATFORM = load_spec(REPO_ROOT / "spec")
REGION = PLATFORM.environment("dev").region
N_SALES = 60


@pytest.fixture(scope="module")
def lake(empty_platform):
    """The session's platform, emptied and provisioned by `dp`'s code, with house sales
    uploaded to raw; the clients below know nothing but its endpoint."""
    state, info = empty_platform
    local = LocalPlatform(PLATFORM, "dev", state_dir=state)
    provision.provision(PLATFORM, local.settings, local.names, local.client)
    sales = state / "house_sales.csv"
    sales.write_text(demo.house_sales_csv(N_SALES, seed=5))
    local.ingest(local.dataset("house_sales"), file=sales)
    return local, info, pd.read_csv(sales, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def env(lake, empty_platform):
    """What a shell user gets from `eval "$(dp local env)"`: every AWS client pointed at
    the local platform."""
    state, _ = empty_platform
    exported = shell_env(state)
    assert exported["AWS_ENDPOINT_URL"] == lake[1].endpoint
    return exported


@pytest.fixture(scope="module")
def session(lake):
    _, info, _ = lake
    return boto3.Session(
        aws_access_key_id=server.ACCESS_KEY,
        aws_secret_access_key=server.SECRET_KEY,
        region_name=REGION,
    )


@pytest.fixture(autouse=True)
def endpoint_for_awswrangler(lake, monkeypatch):
    """awswrangler finds the endpoint as any boto3 code does: AWS_ENDPOINT_URL."""
    _, info, _ = lake
    monkeypatch.setenv("AWS_ENDPOINT_URL", info.endpoint)


def wait_for_query(athena, query_id: str) -> dict:
    for _ in range(600):
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] not in ("QUEUED", "RUNNING"):
            return execution
        time.sleep(0.05)
    raise AssertionError(f"query {query_id} still running")


def raw_db(lake) -> str:
    return lake[0].names.raw_database


def workgroup(lake) -> str:
    return lake[0].names.workgroup


# ----------------------------------------------------------------------------- Athena


def test_awswrangler_default_read_ctas_returns_the_rows_dp_query_returns(lake, session):
    local, _, sales = lake
    sql = "SELECT sale_id, price, zipcode FROM house_sales ORDER BY sale_id"
    frame = wr.athena.read_sql_query(
        sql, database=raw_db(lake), workgroup=workgroup(lake), boto3_session=session
    )
    expected = sales[["sale_id", "price", "zipcode"]].sort_values("sale_id")
    assert len(frame) == N_SALES
    assert frame["sale_id"].tolist() == expected["sale_id"].tolist()
    assert frame["price"].tolist() == expected["price"].tolist()
    ours = local.query(sql.replace("FROM house_sales", f"FROM {raw_db(lake)}.house_sales")).frame
    assert ours["sale_id"].tolist() == frame["sale_id"].tolist()
    # the CTAS table awswrangler made for it was dropped again, as on AWS
    tables = wr.catalog.get_tables(database=raw_db(lake), boto3_session=session)
    assert not [t for t in tables if t["Name"].startswith("temp_table_")]


def test_awswrangler_without_ctas_reads_athenas_csv_with_its_types(lake, session):
    sql = (
        "SELECT count(*) AS n, sum(TRY_CAST(price AS double)) AS total, "
        "max(TRY_CAST(bedrooms AS integer)) FROM house_sales"
    )
    frame = wr.athena.read_sql_query(
        sql,
        database=raw_db(lake),
        workgroup=workgroup(lake),
        boto3_session=session,
        ctas_approach=False,
    )
    sales = lake[2]
    assert list(frame.columns) == ["n", "total", "_col2"]  # Athena's name for the unnamed one
    assert int(frame.at[0, "n"]) == N_SALES
    assert frame.at[0, "total"] == pytest.approx(pd.to_numeric(sales.price, errors="coerce").sum())
    assert int(frame.at[0, "_col2"]) == pd.to_numeric(sales.bedrooms, errors="coerce").max()
    metadata = frame.query_metadata
    assert metadata["Statistics"]["DataScannedInBytes"] > 0


def test_awswrangler_unload_writes_parquet_to_s3_and_reads_it_back(lake, session):
    local = lake[0]
    path = f"s3://{local.names.athena_results_bucket}/unload/sales/"
    frame = wr.athena.unload(
        "SELECT sale_id, CAST(price AS double) AS price FROM house_sales",
        path=path,
        database=raw_db(lake),
        workgroup=workgroup(lake),
        boto3_session=session,
    )
    manifest = frame.raw_payload["Statistics"]["DataManifestLocation"]
    files = wr.s3.read_csv(manifest, header=None, boto3_session=session)[0].tolist()
    assert files and all(f.startswith(path) and f.endswith(".parquet") for f in files)
    written = wr.s3.read_parquet(files, boto3_session=session)
    assert sorted(written.sale_id) == sorted(lake[2].sale_id)
    # a second UNLOAD into the same, no longer empty, location fails as Athena's does
    with pytest.raises(wr.exceptions.QueryFailed, match="HIVE_PATH_ALREADY_EXISTS"):
        wr.athena.unload(
            "SELECT 1 AS x",
            path=path,
            database=raw_db(lake),
            workgroup=workgroup(lake),
            boto3_session=session,
        )


def test_the_aws_cli_runs_a_query_and_pages_its_results(lake, env):
    started = aws(
        env,
        "athena",
        "start-query-execution",
        "--query-string",
        "SELECT sale_id FROM house_sales",
        "--work-group",
        workgroup(lake),
        "--query-execution-context",
        f"Database={raw_db(lake)}",
    )
    query_id = started["QueryExecutionId"]
    for _ in range(600):
        execution = aws(env, "athena", "get-query-execution", "--query-execution-id", query_id)
        if execution["QueryExecution"]["Status"]["State"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.05)
    status = execution["QueryExecution"]
    assert status["Status"]["State"] == "SUCCEEDED"
    local = lake[0]
    raw_objects = local.client("s3").list_objects_v2(
        Bucket=local.names.raw_bucket, Prefix="house_sales/"
    )["Contents"]
    assert status["Statistics"]["DataScannedInBytes"] == sum(o["Size"] for o in raw_objects)
    # the CLI pages GetQueryResults itself (--page-size); every row comes back once
    results = aws(
        env, "athena", "get-query-results", "--query-execution-id", query_id, "--page-size", "7"
    )
    rows = [r["Data"][0]["VarCharValue"] for r in results["ResultSet"]["Rows"]]
    assert rows[0] == "sale_id" and sorted(rows[1:]) == sorted(lake[2].sale_id)
    # the result CSV is where the workgroup puts it, encrypted as the workgroup says
    output = status["ResultConfiguration"]["OutputLocation"]
    bucket, key = output[len("s3://") :].split("/", 1)
    head = local.client("s3").head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    body = local.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert len(body.strip().splitlines()) == N_SALES + 1


def test_boto3_get_query_results_pages_and_lists_executions(lake, session):
    athena = session.client("athena", endpoint_url=lake[1].endpoint)
    query_id = athena.start_query_execution(
        QueryString="SELECT sale_id, price FROM house_sales",
        WorkGroup=workgroup(lake),
        QueryExecutionContext={"Database": raw_db(lake)},
    )["QueryExecutionId"]
    assert wait_for_query(athena, query_id)["Status"]["State"] == "SUCCEEDED"
    pages = list(
        athena.get_paginator("get_query_results").paginate(
            QueryExecutionId=query_id, PaginationConfig={"PageSize": 25}
        )
    )
    assert [len(p["ResultSet"]["Rows"]) for p in pages] == [25, 25, 11]
    info = pages[0]["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    assert [(c["Name"], c["Type"]) for c in info] == [("sale_id", "varchar"), ("price", "varchar")]
    listed = athena.list_query_executions(WorkGroup=workgroup(lake))["QueryExecutionIds"]
    assert query_id in listed
    statistics = athena.get_query_runtime_statistics(QueryExecutionId=query_id)
    assert statistics["QueryRuntimeStatistics"]["Rows"]["OutputRows"] == N_SALES


def test_a_bad_query_fails_with_athenas_error_and_awswrangler_raises(lake, session):
    athena = session.client("athena", endpoint_url=lake[1].endpoint)
    query_id = athena.start_query_execution(QueryString="SELEC 1", WorkGroup=workgroup(lake))[
        "QueryExecutionId"
    ]
    execution = wait_for_query(athena, query_id)
    assert execution["Status"]["State"] == "FAILED"
    assert "SYNTAX_ERROR" in execution["Status"]["StateChangeReason"]
    with pytest.raises(athena.exceptions.InvalidRequestException):
        athena.get_query_results(QueryExecutionId=query_id)
    with pytest.raises(wr.exceptions.QueryFailed, match="TABLE_NOT_FOUND|does not exist"):
        wr.athena.read_sql_query(
            "SELECT * FROM no_such_table",
            database=raw_db(lake),
            workgroup=workgroup(lake),
            boto3_session=session,
        )


def test_what_athena_refuses_reads_and_writes_nothing_outside_the_lake(lake, session, tmp_path):
    athena = session.client("athena", endpoint_url=lake[1].endpoint)
    target = tmp_path / "stolen"
    for sql in (
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        f"COPY (SELECT 1) TO '{target}'",
        f"CREATE TABLE stolen WITH (external_location = 'file://{target}/') AS SELECT 1 AS x",
    ):
        query_id = athena.start_query_execution(
            QueryString=sql,
            WorkGroup=workgroup(lake),
            QueryExecutionContext={"Database": raw_db(lake)},
        )["QueryExecutionId"]
        assert wait_for_query(athena, query_id)["Status"]["State"] == "FAILED", sql
    assert not target.exists()


def test_a_persona_role_sees_what_its_lake_formation_grants_allow(lake, session):
    """AssumeRole into the analyst persona's role (as `dp query --as analyst` does): the
    curated tables without their PII column, and nothing of raw."""
    local = lake[0]
    analyst = session.client("sts", endpoint_url=lake[1].endpoint).assume_role(
        RoleArn=f"arn:aws:iam::{local.names.account}:role/" + local.names.role("persona-analyst"),
        RoleSessionName="test",
    )["Credentials"]
    as_analyst = boto3.Session(
        aws_access_key_id=analyst["AccessKeyId"],
        aws_secret_access_key=analyst["SecretAccessKey"],
        aws_session_token=analyst["SessionToken"],
        region_name=REGION,
    )
    curated = wr.athena.read_sql_query(
        "SELECT * FROM house_sales",
        database=local.names.curated_database,
        workgroup=workgroup(lake),
        boto3_session=as_analyst,
        ctas_approach=False,
    )
    everything = local.query("SELECT * FROM house_sales").frame
    assert "agent_email" in everything.columns
    assert set(curated.columns) == set(everything.columns) - {"agent_email"}
    with pytest.raises(wr.exceptions.QueryFailed, match="Lake Formation"):
        wr.athena.read_sql_query(
            "SELECT * FROM house_sales",
            database=raw_db(lake),
            workgroup=workgroup(lake),
            boto3_session=as_analyst,
            ctas_approach=False,
        )
    # dp's own path does the same AssumeRole
    assert "agent_email" not in local.query("SELECT * FROM house_sales", persona="analyst").columns


def persona_session(lake, session, persona: str) -> boto3.Session:
    local = lake[0]
    role = local.names.role(f"persona-{persona.replace('_', '-')}")
    credentials = session.client("sts", endpoint_url=lake[1].endpoint).assume_role(
        RoleArn=f"arn:aws:iam::{local.names.account}:role/{role}", RoleSessionName=persona
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


def columns_seen(lake, as_persona: boto3.Session, database: str, table: str) -> set | None:
    """The columns a persona's `SELECT *` answers, or None when Lake Formation refuses."""
    athena = as_persona.client("athena", endpoint_url=lake[1].endpoint)
    query_id = athena.start_query_execution(
        QueryString=f"SELECT * FROM {database}.{table} LIMIT 0", WorkGroup=workgroup(lake)
    )["QueryExecutionId"]
    execution = wait_for_query(athena, query_id)
    if execution["Status"]["State"] == "FAILED":
        assert "Lake Formation" in execution["Status"]["StateChangeReason"]
        return None
    info = athena.get_query_results(QueryExecutionId=query_id)["ResultSet"]
    return {c["Name"] for c in info["ResultSetMetadata"]["ColumnInfo"]}


def test_the_shipped_personas_see_what_spec_personas_yaml_grants(lake, session):
    """spec/personas.yaml through the governance stack's tags and grants, as provisioned:
    analyst and data_scientist read curated without the PII columns and nothing of raw;
    admin reads everything; producer queries nothing."""
    names = lake[0].names
    curated, raw = names.curated_database, names.raw_database
    seen = {
        persona: {
            (db, table): columns_seen(lake, persona_session(lake, session, persona), db, table)
            for db, table in (
                (curated, "telecom_events"),
                (curated, "telecom_events_quarantine"),
                (curated, "house_sales"),
                (raw, "telecom_events"),
            )
        }
        for persona in ("analyst", "data_scientist", "admin", "producer")
    }
    everything = {key: columns_seen(lake, session, *key) for key in seen["admin"]}
    assert seen["admin"] == everything
    for persona in ("analyst", "data_scientist"):
        assert seen[persona][(raw, "telecom_events")] is None
        for table in ("telecom_events", "telecom_events_quarantine"):
            assert seen[persona][(curated, table)] == everything[(curated, table)] - {"msisdn"}
        assert seen[persona][(curated, "house_sales")] == (
            everything[(curated, "house_sales")] - {"agent_email"}
        )
    assert set(seen["producer"].values()) == {None}


def test_ctas_writes_a_parquet_table_the_catalog_and_a_reader_agree_on(lake, session):
    local = lake[0]
    athena = session.client("athena", endpoint_url=lake[1].endpoint)
    query_id = athena.start_query_execution(
        QueryString=(
            "CREATE TABLE sales_by_zip WITH (format = 'PARQUET', partitioned_by = ARRAY['zipcode']) "
            "AS SELECT sale_id, CAST(price AS double) AS price, zipcode FROM house_sales"
        ),
        WorkGroup=workgroup(lake),
        QueryExecutionContext={"Database": raw_db(lake)},
    )["QueryExecutionId"]
    execution = wait_for_query(athena, query_id)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    table = local.client("glue").get_table(DatabaseName=raw_db(lake), Name="sales_by_zip")["Table"]
    assert [c["Name"] for c in table["PartitionKeys"]] == ["zipcode"]
    assert {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]} == {
        "sale_id": "string",
        "price": "double",
    }
    by_zip = local.query(
        f"SELECT zipcode, count(*) AS n FROM {raw_db(lake)}.sales_by_zip GROUP BY zipcode"
    ).frame
    expected = lake[2].groupby("zipcode").size()
    assert {str(z): int(n) for z, n in zip(by_zip.zipcode, by_zip.n, strict=True)} == {
        str(z): int(n) for z, n in expected.items()
    }
    manifest = execution["Statistics"]["DataManifestLocation"]
    bucket, key = manifest[len("s3://") :].split("/", 1)
    files = local.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().split()
    first = files[0].decode()[len("s3://") :].split("/", 1)
    data = local.client("s3").get_object(Bucket=first[0], Key=first[1])["Body"].read()
    assert pq.read_table(io.BytesIO(data)).column_names == ["sale_id", "price"]


# ----------------------------------------------------------------------------- Lambda, Firehose


def test_the_aws_cli_invokes_the_firehose_transform_lambda(lake, env, tmp_path):
    """lambda invoke runs the deployed function's code (its package, as provisioned) and
    answers its verdict per record, as Firehose would get it."""
    import base64

    local = lake[0]
    good = {
        "event_id": "e1",
        "customer_id": "c1",
        "event_type": "call",
        "event_time": "2026-11-20T10:00:00Z",
        "duration_s": 12,
    }
    event = {
        "records": [
            {
                "recordId": "1",
                "approximateArrivalTimestamp": 0,
                "data": base64.b64encode(json.dumps(good).encode()).decode(),
            },
            {
                "recordId": "2",
                "approximateArrivalTimestamp": 0,
                "data": base64.b64encode(b"not json").decode(),
            },
        ]
    }
    out = tmp_path / "answer.json"
    done = aws(
        env,
        "lambda",
        "invoke",
        "--function-name",
        local.names.transform_function("telecom_events"),
        "--payload",
        json.dumps(event),
        str(out),
    )
    assert done["StatusCode"] == 200 and "FunctionError" not in done
    records = {r["recordId"]: r for r in json.loads(out.read_text())["records"]}
    assert records["1"]["result"] == "Ok"
    assert records["1"]["metadata"]["partitionKeys"] == {"dt": "2026-11-20", "hour": "10"}
    assert records["2"]["result"] == "ProcessingFailed"


def test_a_producers_events_are_delivered_in_the_background_through_the_transform(lake, session):
    """A team's own delivery stream from the telecom stream, made with boto3 (no dp), with
    the platform's transform Lambda as its processor and zero buffering: the events a
    producer puts with boto3 reach S3 transformed, with nobody asking for a delivery."""
    import gzip

    local, info, _ = lake
    clients = {
        name: session.client(name, endpoint_url=info.endpoint)
        for name in ("firehose", "kinesis", "s3", "lambda", "iam")
    }
    stream = local.names.stream("telecom_events")
    stream_arn = clients["kinesis"].describe_stream_summary(StreamName=stream)[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    transform = clients["lambda"].get_function(
        FunctionName=local.names.transform_function("telecom_events")
    )["Configuration"]["FunctionArn"]
    role = f"arn:aws:iam::{local.names.account}:role/producer-delivery"
    clients["firehose"].create_delivery_stream(
        DeliveryStreamName="producer-copy",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": role},
        ExtendedS3DestinationConfiguration={
            "RoleARN": role,
            "BucketARN": f"arn:aws:s3:::{local.names.raw_bucket}",
            "Prefix": "producer-copy/",
            "ErrorOutputPrefix": "producer-copy-errors/!{firehose:error-output-type}/",
            "CompressionFormat": "GZIP",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            "ProcessingConfiguration": {
                "Enabled": True,
                "Processors": [
                    {
                        "Type": "Lambda",
                        "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": transform}],
                    }
                ],
            },
        },
    )
    events = [
        {**e, "event_id": f"producer-{i:04d}"}
        for i, e in enumerate(demo.telecom_events(20, seed=11)[:200])
    ] + [  # and three the transform refuses: no customer_id
        {"event_id": f"producer-broken-{i}", "event_type": "call"} for i in range(3)
    ]
    answer = clients["kinesis"].put_records(
        StreamName=stream,
        Records=[
            {"Data": json.dumps(e).encode(), "PartitionKey": str(e.get("customer_id"))}
            for e in events
        ],
    )
    assert answer["FailedRecordCount"] == 0
    # the transform's verdicts, computed with its own plain function
    from dataplatform.runtime.ingest import transform_function

    verdict = transform_function()(
        {
            "records": [
                {
                    "recordId": e["event_id"],
                    "data": base64.b64encode(json.dumps(e).encode()).decode(),
                }
                for e in events
            ]
        },
        local.dataset("telecom_events"),
    )
    rejected = {record_id for record_id, _, _ in verdict.failures}
    assert rejected == {f"producer-broken-{i}" for i in range(3)}

    def lines(prefix: str) -> list[dict]:
        found = []
        for page in (
            clients["s3"]
            .get_paginator("list_objects_v2")
            .paginate(Bucket=local.names.raw_bucket, Prefix=prefix)
        ):
            for item in page.get("Contents", []):
                body = clients["s3"].get_object(Bucket=local.names.raw_bucket, Key=item["Key"])
                found += [json.loads(x) for x in gzip.decompress(body["Body"].read()).splitlines()]
        return found

    delivered: set[str] = set()
    for _ in range(300):
        delivered = {r["event_id"] for r in lines("producer-copy/")}
        if delivered:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the poll that found them may have come mid-write
    delivered = {r["event_id"] for r in lines("producer-copy/")}
    failed = {
        json.loads(base64.b64decode(r["rawData"]))["event_id"]
        for r in lines("producer-copy-errors/processing-failed/")
    }
    assert delivered == {e["event_id"] for e in events} - rejected
    assert failed == rejected


def _package(source: str) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def test_a_users_function_mapped_to_a_stream_runs_in_the_background(lake, session):
    """A team's own Lambda (not the platform's), created and mapped to a new stream with
    boto3 only: the records put on the stream reach the function without anyone asking,
    in batches of the mapping's size, and its partial batch response makes the mapping
    retry from the record it names."""
    local, info, _ = lake
    clients = {
        name: session.client(name, endpoint_url=info.endpoint)
        for name in ("iam", "lambda", "kinesis", "s3", "logs")
    }
    role = clients["iam"].create_role(
        RoleName="user-function",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    bucket = "user-function-output"
    clients["s3"].create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    source = f'''
import base64, json, os
import boto3

def handler(event, context):
    s3 = boto3.client("s3")
    seen = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    failures = []
    for record, text in zip(event["Records"], seen):
        key = "seen/" + text
        attempts = s3.list_objects_v2(Bucket="{bucket}", Prefix=key)["KeyCount"]
        s3.put_object(Bucket="{bucket}", Key=key + "/" + str(attempts), Body=b"")
        if text == "7" and attempts == 0:  # fails once: the mapping retries from it
            failures.append({{"itemIdentifier": record["kinesis"]["sequenceNumber"]}})
            break
    print(json.dumps({{"batch": len(seen), "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"]}}))
    return {{"batchItemFailures": failures}}
'''
    clients["lambda"].create_function(
        FunctionName="user-function",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": _package(source)},
        Timeout=30,
    )
    clients["kinesis"].create_stream(StreamName="user-stream", ShardCount=1)
    stream_arn = clients["kinesis"].describe_stream_summary(StreamName="user-stream")[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    mapping = clients["lambda"].create_event_source_mapping(
        FunctionName="user-function",
        EventSourceArn=stream_arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=4,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    assert mapping["State"] == "Enabled"
    clients["kinesis"].put_records(
        StreamName="user-stream",
        Records=[{"Data": str(i).encode(), "PartitionKey": "k"} for i in range(10)],
    )
    seen: dict[str, int] = {}
    for _ in range(200):
        keys = [o["Key"] for o in clients["s3"].list_objects_v2(Bucket=bucket).get("Contents", [])]
        seen = {}
        for key in keys:
            _, value, attempt = key.split("/")
            seen[value] = max(seen.get(value, -1), int(attempt))
        if len(seen) == 10:
            break
        time.sleep(0.1)
    assert sorted(seen, key=int) == [str(i) for i in range(10)]
    # 7 was retried once (its batch's failure named it); the records before it were not
    assert {v: a for v, a in seen.items() if a} == {"7": 1}
    described = clients["lambda"].get_event_source_mapping(UUID=mapping["UUID"])
    assert described["LastProcessingResult"] == "OK"
    logged = clients["logs"].filter_log_events(logGroupName="/aws/lambda/user-function")
    batches = [json.loads(e["message"]) for e in logged["events"] if e["message"].startswith("{")]
    assert sum(b["batch"] for b in batches) >= 10 and all(b["batch"] <= 4 for b in batches)


def test_an_event_rule_reaches_its_queue_topic_and_function(lake, session):
    """PutEvents with boto3 on the platform's bus: the HighChurnRisk rule puts the event on
    the interventions queue and publishes it to the alerts topic (moto alone fails the
    whole call on an SNS target); a rule of the team's with a Lambda target runs it."""
    local, info, _ = lake
    clients = {
        name: session.client(name, endpoint_url=info.endpoint)
        for name in ("events", "sqs", "sns", "lambda", "iam", "s3")
    }
    # who listens: a queue subscribed to the alerts topic, and a function of the team's
    topic = next(
        t["TopicArn"]
        for t in clients["sns"].list_topics()["Topics"]
        if t["TopicArn"].endswith(local.names.alerts_topic)
    )
    listener = clients["sqs"].create_queue(QueueName="alerts-listener")["QueueUrl"]
    listener_arn = clients["sqs"].get_queue_attributes(
        QueueUrl=listener, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=listener_arn)
    role = clients["iam"].create_role(
        RoleName="event-function",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    clients["s3"].create_bucket(
        Bucket="event-function-output", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    function = clients["lambda"].create_function(
        FunctionName="event-function",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={
            "ZipFile": _package(
                "import boto3, json\n"
                "def handler(event, context):\n"
                "    boto3.client('s3').put_object(Bucket='event-function-output',\n"
                "        Key=event['detail']['customer_id'], Body=json.dumps(event).encode())\n"
            )
        },
    )["FunctionArn"]
    clients["events"].put_rule(
        Name="team-rule",
        EventBusName=local.names.event_bus,
        EventPattern=json.dumps({"detail-type": ["HighChurnRisk"]}),
    )
    clients["events"].put_targets(
        Rule="team-rule",
        EventBusName=local.names.event_bus,
        Targets=[{"Id": "fn", "Arn": function}],
    )

    answer = clients["events"].put_events(
        Entries=[
            {
                "Source": "dataplatform.scoring",
                "DetailType": "HighChurnRisk",
                "Detail": json.dumps({"customer_id": "cust-test", "probability": 0.93}),
                "EventBusName": local.names.event_bus,
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0
    queue = clients["sqs"].get_queue_url(QueueName=local.names.interventions_queue)["QueueUrl"]
    received = clients["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    details = [json.loads(m["Body"])["detail"] for m in received.get("Messages", [])]
    assert {"customer_id": "cust-test", "probability": 0.93} in details
    published = clients["sqs"].receive_message(QueueUrl=listener, MaxNumberOfMessages=10)
    notes = [json.loads(m["Body"])["Message"] for m in published.get("Messages", [])]
    assert any("HighChurnRisk on" in n and "cust-test" in n for n in notes), notes
    for _ in range(100):
        found = clients["s3"].list_objects_v2(Bucket="event-function-output").get("Contents")
        if found:
            break
        time.sleep(0.1)
    body = clients["s3"].get_object(Bucket="event-function-output", Key="cust-test")["Body"]
    assert json.loads(body.read())["detail"]["probability"] == 0.93


def test_the_aws_cli_crawls_and_runs_the_curate_job_whose_rows_a_query_finds(lake, env):
    """aws glue start-crawler / start-job-run, polled with get-crawler / get-job-run: the
    crawl registers the uploaded file's partition, and the run really curates it (the
    curated rows are there for a query, as many as the run's report says)."""
    local, _, sales = lake
    crawler = local.names.crawler("house_sales")
    aws(env, "glue", "start-crawler", "--name", crawler)
    for _ in range(600):
        state = aws(env, "glue", "get-crawler", "--name", crawler)["Crawler"]
        if state["State"] == "READY":
            break
        time.sleep(0.1)
    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    partitions = aws(
        env,
        "glue",
        "get-partitions",
        "--database-name",
        local.names.raw_database,
        "--table-name",
        "house_sales",
    )["Partitions"]
    assert len(partitions) == 1  # the hour the fixture's upload landed in

    job = local.names.curate_job("house_sales")
    run_id = aws(env, "glue", "start-job-run", "--job-name", job)["JobRunId"]
    for _ in range(1200):
        run = aws(env, "glue", "get-job-run", "--job-name", job, "--run-id", run_id)["JobRun"]
        if run["JobRunState"] not in ("STARTING", "RUNNING"):
            break
        time.sleep(0.2)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    from dataplatform import layout

    key = f"{layout.curate_report_prefix('house_sales')}{run_id}.json"
    report = json.loads(
        local.client("s3").get_object(Bucket=local.names.artifacts_bucket, Key=key)["Body"].read()
    )
    assert report["rows_in"] == N_SALES
    curated = local.query("SELECT count(*) AS n FROM house_sales").frame
    assert int(curated.n[0]) == report["rows_curated"] > 0
    ids = set(local.query("SELECT sale_id FROM house_sales").frame.sale_id)
    assert ids <= set(sales.sale_id)


def test_a_correction_upload_is_merged_by_sale_id_and_time_travel_reads_the_first_run(
    lake, env, session
):
    """house_sales is an Iceberg table (spec: table_format: iceberg). A second upload with
    corrected sales (later sale_date: they win), an older copy of a sale (late: it loses)
    and new sales is MERGEd by the Glue job run through the AWS CLI; the table equals pandas'
    latest-per-key answer, and FOR VERSION AS OF the snapshot before reads the rows as they
    were (through awswrangler, as any client would)."""
    local, _, sales = lake

    def run_job(*arguments: str) -> dict:
        job = local.names.curate_job("house_sales")
        run_id = aws(env, "glue", "start-job-run", "--job-name", job, *arguments)["JobRunId"]
        for _ in range(1200):
            run = aws(env, "glue", "get-job-run", "--job-name", job, "--run-id", run_id)["JobRun"]
            if run["JobRunState"] not in ("STARTING", "RUNNING"):
                break
            time.sleep(0.2)
        assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
        return run

    def table(sql_suffix: str = "") -> pd.DataFrame:
        frame = local.query(f"SELECT sale_id, sale_date, price FROM house_sales{sql_suffix}").frame
        return frame.sort_values("sale_id").reset_index(drop=True)

    def snapshots() -> list[str]:
        found = local.query('SELECT snapshot_id FROM "house_sales$snapshots"').frame
        return [str(s) for s in found.snapshot_id]

    if not snapshots():  # the module's earlier test curated the first upload, or this does
        run_job()
    first = snapshots()[-1]
    before = table()
    valid = before.sale_id.tolist()
    corrected, late, new = valid[:3], valid[3], ["sale-90001", "sale-90002"]
    originals = sales.set_index("sale_id")
    rows = []
    for sale_id in corrected:  # a day later, another price: replaces the row
        row = originals.loc[sale_id].to_dict()
        row["sale_date"] = (pd.Timestamp(row["sale_date"]) + pd.Timedelta(days=1)).strftime(
            "%Y-%m-%d"
        )
        row["price"] = "123456.0"
        rows.append({"sale_id": sale_id, **row})
    row = originals.loc[late].to_dict()  # a year earlier: older than the row it matches
    row["sale_date"] = (pd.Timestamp(row["sale_date"]) - pd.Timedelta(days=365)).strftime(
        "%Y-%m-%d"
    )
    row["price"] = "1111.0"
    rows.append({"sale_id": late, **row})
    for sale_id in new:
        rows.append({"sale_id": sale_id, **originals.loc[corrected[0]].to_dict()})
    upload = local.state_dir / "house_sales_corrections.csv"
    pd.DataFrame(rows)[list(sales.columns)].to_csv(upload, index=False)
    local.ingest(local.dataset("house_sales"), file=upload)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    run_job("--arguments", json.dumps({"--dates": day}))

    after = table()
    # pandas: every valid row sent, the latest sale_date per sale_id
    sent = pd.concat([before.assign(order=0), pd.DataFrame(rows).assign(order=1)])
    sent["sale_date"] = pd.to_datetime(sent["sale_date"], utc=True, format="mixed")
    sent["price"] = sent["price"].astype(float)
    expected = (
        sent.sort_values(["sale_date", "order"])
        .groupby("sale_id", as_index=False)
        .last()[["sale_id", "sale_date", "price"]]
    )
    after_cmp = after.assign(sale_date=pd.to_datetime(after.sale_date, utc=True, format="mixed"))
    pd.testing.assert_frame_equal(
        after_cmp.assign(price=after_cmp.price.astype(float)).reset_index(drop=True),
        expected.sort_values("sale_id").reset_index(drop=True),
        check_dtype=False,
    )
    assert set(after.sale_id) == set(before.sale_id) | set(new)
    assert float(after.set_index("sale_id").loc[late, "price"]) != 1111.0  # the late one lost
    assert len(snapshots()) >= 2

    # time travel, through another client: the snapshot before the MERGE is the rows before
    then = wr.athena.read_sql_query(
        f"SELECT sale_id, sale_date, price FROM house_sales FOR VERSION AS OF {first}",
        database=local.names.curated_database,
        workgroup=local.names.workgroup,
        ctas_approach=False,
        boto3_session=session,
    )
    then = then.sort_values("sale_id").reset_index(drop=True)
    assert then.sale_id.tolist() == before.sale_id.tolist()
    assert then.price.astype(float).tolist() == before.price.astype(float).tolist()
