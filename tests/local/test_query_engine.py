"""The local platform's Athena stand-in (dataplatform.runtime.local.athena) against a moto
server: Glue tables and partitions in moto's catalog, data files in moto's S3, and each
answer checked against pandas over the same data."""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.runtime.local.athena import QueryError, engine, run_query

REGION = "eu-west-1"
NAMES = Names(project="mldp", env="test", account="123456789012", region=REGION)
CURATED_DB, RAW_DB = NAMES.curated_database, NAMES.raw_database
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
HOURS = ["00", "13"]
BIG = 10**12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(service: str, endpoint: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _events(day: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(day, tz="UTC")
    seconds = np.sort(rng.integers(0, 86400, n))
    ts = [(start + pd.Timedelta(seconds=int(s))) for s in seconds]
    users = [
        f"{'a' if i % 3 == 0 else 'b'}user{int(u)}" for i, u in enumerate(rng.integers(0, 40, n))
    ]
    return pd.DataFrame(
        {
            "event_id": [f"{day}-{i:05d}" for i in range(n)],
            "user_id": users,
            "amount": np.round(rng.uniform(1, 100, n), 2),
            "ts": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in ts],
            "local_time": [t.strftime("%Y-%m-%d %H:%M:%S") for t in ts],
            "tags": [["x", "y"][: int(k)] for k in rng.integers(0, 3, n)],
        }
    )


class Lake:
    """What the tests wrote, for computing expected answers."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.s3 = _client("s3", endpoint)
        self.glue = _client("glue", endpoint)
        self.fs = pafs.S3FileSystem(
            endpoint_override=endpoint.replace("http://", ""),
            scheme="http",
            access_key="testing",
            secret_key="testing",
            region=REGION,
        )
        self.curated = {}  # dt -> DataFrame
        self.curated_sizes = {}  # dt -> total bytes of that day's Parquet files
        self.raw = []  # (dt, hour, record) of the raw JSON
        self.raw_sizes = {}  # (dt, hour) -> bytes

    def query(self, sql: str, *, cutoff: int = BIG, database: str | None = None, grants=None):
        return run_query(
            sql,
            glue=self.glue,
            s3=self.s3,
            s3_filesystem=self.fs,
            workgroup=NAMES.workgroup,
            athena_results_bucket=NAMES.athena_results_bucket,
            bytes_scanned_cutoff=cutoff,
            default_database=database,
            grants=grants,
        )

    @property
    def curated_frame(self) -> pd.DataFrame:
        return pd.concat([df.assign(dt=dt) for dt, df in self.curated.items()], ignore_index=True)

    @property
    def raw_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**r, "dt": dt, "hour": hour} for dt, hour, r in self.raw])


def _storage(location: str, fmt: str, columns, serde_params=None) -> dict:
    formats = {
        "parquet": (
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        ),
        "json": (
            "org.apache.hadoop.mapred.TextInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.openx.data.jsonserde.JsonSerDe",
        ),
        "csv": (
            "org.apache.hadoop.mapred.TextInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.apache.hadoop.hive.serde2.OpenCSVSerde",
        ),
    }
    input_format, output_format, serde = formats[fmt]
    return {
        "Columns": [{"Name": n, "Type": t} for n, t in columns],
        "Location": location,
        "InputFormat": input_format,
        "OutputFormat": output_format,
        "SerdeInfo": {"SerializationLibrary": serde, "Parameters": serde_params or {}},
    }


@pytest.fixture(scope="module")
def lake():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        lake = Lake(f"http://127.0.0.1:{port}")
        _populate(lake)
        yield lake
    finally:
        server.stop()


def _populate(lake: Lake) -> None:
    s3, glue = lake.s3, lake.glue
    for zone in ("raw", "curated", "athena-results"):
        s3.create_bucket(
            Bucket=NAMES.bucket(zone), CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    for db in (CURATED_DB, RAW_DB):
        glue.create_database(DatabaseInput={"Name": db})

    # --- curated: Parquet, one partition per day (two files on the last day), in the catalog
    curated_location = f"s3://{NAMES.curated_bucket}/{layout.curated_prefix('events')}"
    glue.create_table(
        DatabaseName=CURATED_DB,
        TableInput={
            "Name": "events",
            "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
            "Parameters": {"classification": "parquet"},
            "StorageDescriptor": _storage(
                curated_location,
                "parquet",
                [
                    ("event_id", "string"),
                    ("user_id", "string"),
                    ("amount", "double"),
                    ("ts", "string"),
                    ("local_time", "string"),
                    ("tags", "array<string>"),
                ],
            ),
        },
    )
    partitions = []
    for i, day in enumerate(DAYS):
        df = _events(day, 150 + 25 * i, seed=i)
        lake.curated[day] = df
        chunks = [df] if day != DAYS[-1] else [df.iloc[:50], df.iloc[50:]]
        size = 0
        for j, chunk in enumerate(chunks):
            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), buffer)
            body = buffer.getvalue()
            size += len(body)
            s3.put_object(
                Bucket=NAMES.curated_bucket,
                Key=f"{layout.curated_prefix('events')}dt={day}/part-{j:05d}.parquet",
                Body=body,
            )
        lake.curated_sizes[day] = size
        partitions.append(
            {
                "Values": [day],
                "StorageDescriptor": _storage(f"{curated_location}dt={day}/", "parquet", []),
            }
        )
    # Not data: Spark's marker file must be ignored.
    s3.put_object(
        Bucket=NAMES.curated_bucket,
        Key=f"{layout.curated_prefix('events')}dt={DAYS[0]}/_SUCCESS",
        Body=b"",
    )
    glue.batch_create_partition(
        DatabaseName=CURATED_DB, TableName="events", PartitionInputList=partitions
    )

    # --- raw: gzip JSON lines under dt=/hour=, partition projection, no catalog partitions
    raw_location = f"s3://{NAMES.raw_bucket}/{layout.raw_prefix('events')}"
    glue.create_table(
        DatabaseName=RAW_DB,
        TableInput={
            "Name": "events",
            "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": [{"Name": "dt", "Type": "string"}, {"Name": "hour", "Type": "string"}],
            "Parameters": {
                "classification": "json",
                "projection.enabled": "true",
                "projection.dt.type": "date",
                "projection.dt.format": "yyyy-MM-dd",
                "projection.dt.range": "2000-01-01,NOW+1DAYS",
                "projection.hour.type": "integer",
                "projection.hour.range": "0,23",
                "projection.hour.digits": "2",
            },
            "StorageDescriptor": _storage(
                raw_location,
                "json",
                [
                    ("event_id", "string"),
                    ("user_id", "string"),
                    ("amount", "string"),
                    ("ts", "string"),
                ],
            ),
        },
    )
    for d, day in enumerate(DAYS[:3]):
        for hour in HOURS:
            records = [
                {
                    "event_id": f"{day}-{hour}-{k}",
                    "user_id": f"user{k % 7}",
                    "amount": round(1.5 * k + d, 2),
                    "ts": f"{day}T{hour}:{k % 60:02d}:00Z",
                }
                for k in range(30 + d)
            ]
            body = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
            key = layout.raw_partition_prefix("events", day, hour) + "events-1.json.gz"
            s3.put_object(Bucket=NAMES.raw_bucket, Key=key, Body=body)
            lake.raw += [(day, hour, {**r, "amount": str(r["amount"])}) for r in records]
            lake.raw_sizes[(day, hour)] = len(body)

    # --- raw CSV with a header line, unpartitioned
    glue.create_table(
        DatabaseName=RAW_DB,
        TableInput={
            "Name": "stores",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "csv", "skip.header.line.count": "1"},
            "StorageDescriptor": _storage(
                f"s3://{NAMES.raw_bucket}/stores/",
                "csv",
                [("store_id", "string"), ("city", "string")],
                {"separatorChar": ",", "quoteChar": '"'},
            ),
        },
    )
    s3.put_object(
        Bucket=NAMES.raw_bucket,
        Key="stores/stores.csv",
        Body=b'store_id,city\n1,"Paris"\n2,"Lyon, centre"\n3,Nantes\n',
    )

    # --- typed text tables: each SerDe reads a value that does not parse its own way
    typed = [("id", "int"), ("amount", "double"), ("paid", "boolean"), ("at", "timestamp")]
    lazy = _storage(f"s3://{NAMES.raw_bucket}/typed_lazy/", "csv", typed, {"field.delim": ","})
    lazy["SerdeInfo"]["SerializationLibrary"] = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
    for name, storage in [
        ("typed_lazy", lazy),
        ("typed_open", _storage(f"s3://{NAMES.raw_bucket}/typed_open/", "csv", typed)),
        ("typed_json", _storage(f"s3://{NAMES.raw_bucket}/typed_json/", "json", typed)),
    ]:
        glue.create_table(
            DatabaseName=RAW_DB,
            TableInput={"Name": name, "TableType": "EXTERNAL_TABLE", "StorageDescriptor": storage},
        )
    csv_body = b"1,2.5,true,2024-03-01 10:00:00\n2,oops,false,2024-03-01 11:30:00\n3,4,true,\n"
    s3.put_object(Bucket=NAMES.raw_bucket, Key="typed_lazy/a.csv", Body=csv_body)
    s3.put_object(Bucket=NAMES.raw_bucket, Key="typed_open/a.csv", Body=csv_body)
    json_rows = [
        {"id": 1, "amount": 2.5, "paid": True, "at": "2024-03-01 10:00:00"},
        {"id": 2, "amount": "oops", "paid": False, "at": "2024-03-01 11:30:00"},
        {"id": 3, "amount": 4, "paid": True},
    ]
    s3.put_object(
        Bucket=NAMES.raw_bucket,
        Key="typed_json/a.json",
        Body="".join(json.dumps(r) + "\n" for r in json_rows).encode(),
    )


# ----------------------------------------------------------------------------- answers


def test_aggregate_over_parquet_table_matches_pandas(lake):
    result = lake.query(f"""
        SELECT dt, count(*) AS n, round(sum(amount), 2) AS total
        FROM {CURATED_DB}.events GROUP BY dt ORDER BY dt""")
    assert result.columns == ["dt", "n", "total"]
    expected = (
        lake.curated_frame.groupby("dt")
        .agg(n=("amount", "size"), total=("amount", "sum"))
        .reset_index()
    )
    assert [r[0] for r in result.rows] == list(expected["dt"])
    assert [r[1] for r in result.rows] == list(expected["n"])
    assert [r[2] for r in result.rows] == pytest.approx(list(expected["total"]))
    assert isinstance(result.frame, pd.DataFrame) and len(result.frame) == len(DAYS)


def test_athena_catalog_prefix_and_quoted_identifiers_resolve(lake):
    result = lake.query(f'SELECT count(*) FROM awsdatacatalog."{CURATED_DB}"."events"')
    assert result.rows == [(len(lake.curated_frame),)]


def test_bare_table_resolves_in_default_database(lake):
    result = lake.query("SELECT count(*) FROM events WHERE dt = '2024-03-02'", database=CURATED_DB)
    assert result.rows == [(len(lake.curated["2024-03-02"]),)]


def test_gzip_json_table_with_partition_projection_matches_pandas(lake):
    result = lake.query(f"""
        SELECT dt, hour, count(*) AS n, sum(CAST(amount AS double)) AS total
        FROM {RAW_DB}.events GROUP BY dt, hour ORDER BY dt, hour""")
    raw = lake.raw_frame
    expected = (
        raw.assign(amount=raw["amount"].astype(float))
        .groupby(["dt", "hour"])
        .agg(n=("amount", "size"), total=("amount", "sum"))
        .reset_index()
    )
    assert [(r[0], r[1], r[2]) for r in result.rows] == list(
        zip(expected["dt"], expected["hour"], expected["n"], strict=True)
    )
    assert [r[3] for r in result.rows] == pytest.approx(list(expected["total"]))


def test_raw_columns_are_strings_as_the_catalog_declares(lake):
    result = lake.query(f"SELECT typeof(amount), typeof(hour) FROM {RAW_DB}.events LIMIT 1")
    assert result.rows == [("VARCHAR", "VARCHAR")]


def test_csv_table_skips_its_header_line_and_honours_quotes(lake):
    result = lake.query(f"SELECT store_id, city FROM {RAW_DB}.stores ORDER BY store_id")
    assert result.rows == [("1", "Paris"), ("2", "Lyon, centre"), ("3", "Nantes")]


def test_text_tables_read_their_declared_types(lake):
    """Athena types a CSV or JSON table's columns as the catalog declares them: sums and
    comparisons work on the text, as they do on AWS."""
    result = lake.query(
        f"SELECT sum(id), sum(amount), count_if(paid), max(at) FROM {RAW_DB}.typed_lazy"
    )
    assert result.rows == [(6, 6.5, 2, pd.Timestamp("2024-03-01 11:30:00").to_pydatetime())]
    types = lake.query(f"SELECT typeof(id), typeof(amount) FROM {RAW_DB}.typed_json LIMIT 1")
    assert types.rows == [("INTEGER", "DOUBLE")]


def test_lazy_simple_serde_reads_an_unparsable_value_as_null(lake):
    result = lake.query(f"SELECT id, amount, at FROM {RAW_DB}.typed_lazy ORDER BY id")
    assert [(r[0], r[1]) for r in result.rows] == [(1, 2.5), (2, None), (3, 4.0)]
    assert result.rows[2][2] is None  # an empty timestamp field


@pytest.mark.parametrize(("table", "value"), [("typed_json", "oops"), ("typed_open", "oops")])
def test_strict_serdes_fail_the_query_on_an_unparsable_value_as_athena_does(lake, table, value):
    with pytest.raises(QueryError, match=f"^HIVE_BAD_DATA: Error parsing field value '{value}'"):
        lake.query(f"SELECT sum(amount) FROM {RAW_DB}.{table}")
    # the same text under LazySimpleSerDe reads as NULL, so the sum is the other rows'
    assert lake.query(f"SELECT sum(amount) FROM {RAW_DB}.typed_lazy").rows == [(6.5,)]


def test_join_of_raw_and_curated_tables(lake):
    result = lake.query(f"""
        SELECT c.dt, count(DISTINCT r.event_id) AS raw_events
        FROM {CURATED_DB}.events c JOIN {RAW_DB}.events r ON r.dt = c.dt
        WHERE c.dt = '2024-03-02' GROUP BY c.dt""")
    assert result.rows == [("2024-03-02", sum(1 for d, _, _ in lake.raw if d == "2024-03-02"))]


# ----------------------------------------------------------------------------- Athena functions


def test_athena_functions_transpile_and_run(lake):
    result = lake.query(f"""
        SELECT date_trunc('hour', from_iso8601_timestamp(ts)) AS hour_start,
               approx_distinct(user_id) AS users,
               count_if(regexp_like(user_id, '^a')) AS a_users,
               min(date_parse(local_time, '%Y-%m-%d %H:%i:%s')) AS first_local
        FROM {CURATED_DB}.events
        WHERE dt = '2024-03-01'
        GROUP BY 1 ORDER BY 1 LIMIT 3""")
    day = lake.curated["2024-03-01"].copy()
    day["hour_start"] = pd.to_datetime(day["ts"]).dt.floor("h")
    expected = (
        day.groupby("hour_start")
        .agg(
            users=("user_id", "nunique"),
            a_users=("user_id", lambda s: int(s.str.match("^a").sum())),
            first_local=("local_time", "min"),
        )
        .reset_index()
        .head(3)
    )
    assert len(result.rows) == 3
    for row, (_, want) in zip(result.rows, expected.iterrows(), strict=True):
        assert pd.Timestamp(row[0]) == want["hour_start"]
        # approx_distinct is HyperLogLog: exact on such small sets within a tolerance
        assert abs(row[1] - want["users"]) <= max(1, want["users"] * 0.05)
        assert row[2] == want["a_users"]
        assert pd.Timestamp(row[3]) == pd.Timestamp(want["first_local"])


def test_unnest_of_an_array_column_expands_rows(lake):
    result = lake.query(f"""
        SELECT tag, count(*) AS n
        FROM {CURATED_DB}.events CROSS JOIN UNNEST(tags) AS t(tag)
        GROUP BY tag ORDER BY tag""")
    exploded = lake.curated_frame.explode("tags").dropna(subset=["tags"])
    expected = exploded.groupby("tags").size()
    assert result.rows == [(tag, int(n)) for tag, n in expected.items()]


def test_unnest_of_an_array_literal(lake):
    result = lake.query("SELECT x * 2 AS doubled FROM UNNEST(ARRAY[1, 2, 3]) AS t(x) ORDER BY x")
    assert result.rows == [(2,), (4,), (6,)]
    assert result.bytes_scanned == 0


# ----------------------------------------------------------------------------- pruning


def test_one_day_query_scans_only_that_days_files(lake):
    full = lake.query(f"SELECT count(*) FROM {CURATED_DB}.events")
    one_day = lake.query(f"SELECT count(*) FROM {CURATED_DB}.events WHERE dt = '2024-03-05'")
    assert full.bytes_scanned == sum(lake.curated_sizes.values())
    assert one_day.bytes_scanned == lake.curated_sizes["2024-03-05"]
    assert one_day.bytes_scanned < full.bytes_scanned
    assert one_day.rows == [(len(lake.curated["2024-03-05"]),)]
    assert all("dt=2024-03-05/" in path for path in one_day.files_read[f"{CURATED_DB}.events"])


def test_in_and_range_predicates_prune_partitions(lake):
    in_list = lake.query(f"""SELECT count(*) FROM {CURATED_DB}.events e
                             WHERE e.dt IN ('2024-03-01', '2024-03-03') AND amount > 0""")
    assert (
        in_list.bytes_scanned == lake.curated_sizes["2024-03-01"] + lake.curated_sizes["2024-03-03"]
    )
    assert in_list.rows == [(len(lake.curated["2024-03-01"]) + len(lake.curated["2024-03-03"]),)]

    ranged = lake.query(f"""SELECT count(*) FROM {CURATED_DB}.events
                            WHERE dt >= '2024-03-02' AND dt < '2024-03-04'""")
    assert (
        ranged.bytes_scanned == lake.curated_sizes["2024-03-02"] + lake.curated_sizes["2024-03-03"]
    )

    between = lake.query(f"""SELECT count(*) FROM {CURATED_DB}.events
                             WHERE dt BETWEEN '2024-03-04' AND '2024-03-05'""")
    assert (
        between.bytes_scanned == lake.curated_sizes["2024-03-04"] + lake.curated_sizes["2024-03-05"]
    )


def test_projected_partitions_prune_on_dt_and_hour(lake):
    result = lake.query(f"""SELECT count(*) FROM {RAW_DB}.events
                            WHERE dt = '2024-03-02' AND hour = '13'""")
    assert result.bytes_scanned == lake.raw_sizes[("2024-03-02", "13")]
    assert result.rows == [(sum(1 for d, h, _ in lake.raw if (d, h) == ("2024-03-02", "13")),)]


def test_or_predicates_do_not_prune_and_stay_correct(lake):
    result = lake.query(f"""SELECT count(*) FROM {CURATED_DB}.events
                            WHERE dt = '2024-03-01' OR amount > 99""")
    frame = lake.curated_frame
    assert result.bytes_scanned == sum(lake.curated_sizes.values())
    assert result.rows == [(int(((frame["dt"] == "2024-03-01") | (frame["amount"] > 99)).sum()),)]


def test_self_join_reads_the_union_of_the_partitions_each_side_needs(lake):
    result = lake.query(f"""
        SELECT count(*) FROM {CURATED_DB}.events a
        JOIN {CURATED_DB}.events b ON a.user_id = b.user_id
        WHERE a.dt = '2024-03-01' AND b.dt = '2024-03-02'""")
    frame = lake.curated_frame
    expected = len(
        frame[frame.dt == "2024-03-01"].merge(frame[frame.dt == "2024-03-02"], on="user_id")
    )
    assert result.rows == [(expected,)]
    assert (
        result.bytes_scanned == lake.curated_sizes["2024-03-01"] + lake.curated_sizes["2024-03-02"]
    )


def test_one_listing_of_the_table_finds_each_partitions_files_as_a_listing_each_does(lake):
    """Queries keeping most partitions list the table once and split the keys by partition;
    the files are those a LIST of each partition finds, under Hive's rules, even for
    partition names that prefix one another, nested partitions and hidden files."""
    from dataplatform.runtime.local.athena import catalog

    s3 = _client("s3", lake.endpoint)  # its own: the LIST counter below stays in this test
    bucket = "listing-layouts"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    keys = [
        "t/dt=1/a.json", "t/dt=1/_SUCCESS", "t/dt=1/.a.json.crc", "t/dt=1/_temporary/0/b.json",
        "t/dt=10/a.json", "t/dt=10/b.json", "t/dt=2/", "t/dt=2/a.json", "t/dt=2/empty.json",
        "t/dt=2_$folder$", "t/dt=3/a.json", "t/dt=3/hour=0/a.json", "t/dt=4/a.json",
        "t/_staging/dt=8/a.json", "elsewhere/dt=9/a.json",
    ]  # fmt: skip
    for key in keys:
        body = b"" if key.endswith(("/", "$folder$", "empty.json")) else b'{"x": 1}\n'
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    lists = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: lists.append(1))

    def each(locations):
        return [catalog._list(s3, location) for location in locations]

    below = [f"s3://{bucket}/t/dt={d}" for d in ("1", "10", "2", "3", "3/hour=0")]
    expected = each(below)
    assert expected[0] == [(f"{bucket}/t/dt=1/a.json", 9)]  # the rules kept one file of four
    assert expected[3] == [(f"{bucket}/t/dt=3/a.json", 9), (f"{bucket}/t/dt=3/hour=0/a.json", 9)]
    lists.clear()
    assert catalog._list_partitions(s3, f"s3://{bucket}/t/", below, 6) == expected
    assert len(lists) == 1  # the table's 14 keys in one LIST, for five partitions
    # a partition outside the table's folder, or below a hidden one: a listing each
    mixed = below + [f"s3://{bucket}/elsewhere/dt=9/", f"s3://{bucket}/t/_staging/dt=8/"]
    expected = each(mixed)
    assert expected[-2:] == [
        [(f"{bucket}/elsewhere/dt=9/a.json", 9)],
        [(f"{bucket}/t/_staging/dt=8/a.json", 9)],
    ]
    lists.clear()
    assert catalog._list_partitions(s3, f"s3://{bucket}/t", mixed, 7) == expected
    assert len(lists) == len(mixed)
    # a query keeping few of the table's partitions lists just those
    lists.clear()
    assert catalog._list_partitions(s3, f"s3://{bucket}/t", below[:2], 6) == each(below[:2])
    assert len(lists) == 4  # two for the partitions, two for the check


# ----------------------------------------------------------------------------- cutoff


def test_cutoff_refuses_a_query_scanning_more_and_runs_it_under_a_higher_limit(lake):
    total = sum(lake.curated_sizes.values())
    sql = f"SELECT count(*) FROM {CURATED_DB}.events"
    before = _result_keys(lake)
    with pytest.raises(
        QueryError, match=r"bytes-scanned cutoff \(\d+ bytes > 1000 bytes\)"
    ) as info:
        lake.query(sql, cutoff=1000)
    assert str(total) in str(info.value)
    assert _result_keys(lake) == before  # refused before running: no result written
    assert lake.query(sql, cutoff=total).bytes_scanned == total


def test_cutoff_counts_only_the_pruned_partitions(lake):
    one_day = lake.curated_sizes["2024-03-01"]
    result = lake.query(
        f"SELECT count(*) FROM {CURATED_DB}.events WHERE dt = '2024-03-01'", cutoff=one_day
    )
    assert result.bytes_scanned == one_day


# ----------------------------------------------------------------------------- errors


def test_syntax_error_gives_query_error_with_line_and_column(lake):
    with pytest.raises(QueryError) as info:
        lake.query(f"SELECT user_id\nFROM {CURATED_DB}.events\nWHERE (")
    error = info.value
    assert error.line == 3 and error.column is not None
    assert "line 3:" in str(error)


def test_unknown_table_names_it_and_lists_the_databases_tables(lake):
    with pytest.raises(QueryError) as info:
        lake.query(f"SELECT * FROM {RAW_DB}.evnets")
    message = str(info.value)
    assert f"{RAW_DB}.evnets" in message
    assert "events" in message and "stores" in message


def test_unknown_database_lists_the_databases(lake):
    with pytest.raises(QueryError, match="does not exist") as info:
        lake.query("SELECT * FROM nowhere.events")
    assert CURATED_DB in str(info.value)


def test_unknown_column_gives_query_error_from_duckdb(lake):
    with pytest.raises(QueryError, match="no_such_column"):
        lake.query(f"SELECT no_such_column FROM {CURATED_DB}.events WHERE dt = '2024-03-01'")


# ----------------------------------------------------------------------------- results


def _result_keys(lake: Lake) -> set[str]:
    listing = lake.s3.list_objects_v2(
        Bucket=NAMES.athena_results_bucket, Prefix=layout.ATHENA_RESULTS_PREFIX
    )
    return {o["Key"] for o in listing.get("Contents", [])}


def test_result_csv_lands_in_athena_results_bucket_and_parses_back(lake):
    result = lake.query(f"""
        SELECT event_id, user_id, amount, CAST(NULL AS varchar) AS nothing
        FROM {CURATED_DB}.events WHERE dt = '2024-03-03' ORDER BY event_id LIMIT 20""")
    assert result.output_location == (
        f"s3://{NAMES.athena_results_bucket}/results/{result.query_id}.csv"
    )
    body = (
        lake.s3.get_object(
            Bucket=NAMES.athena_results_bucket, Key=f"results/{result.query_id}.csv"
        )["Body"]
        .read()
        .decode()
    )
    assert body.splitlines()[0] == '"event_id","user_id","amount","nothing"'
    parsed = list(csv.reader(io.StringIO(body)))
    assert parsed[0] == result.columns
    assert [(r[0], r[1], float(r[2]), r[3]) for r in parsed[1:]] == [
        (e, u, a, "") for e, u, a, _ in result.rows
    ]
    metadata = json.loads(
        lake.s3.get_object(
            Bucket=NAMES.athena_results_bucket, Key=f"results/{result.query_id}.csv.metadata"
        )["Body"].read()
    )
    assert metadata["DataScannedInBytes"] == result.bytes_scanned
    assert metadata["RowCount"] == 20


# --- the sandbox: The local Athena accepts what Athena accepts and nothing else: a corpus of hostile
# statements (DuckDB's file, glob, COPY, ATTACH, extension, setting and secret features, in
# every spelling and position) is refused in one line each, and nothing outside the lake is
# read or written, even with the statement check switched off (DuckDB itself is locked).

SECRET = "canary-7f3a9c-not-in-the-lake"

HOSTILE = [
    "SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM \"read_csv\"('{secret}')",
    "SELECT * FROM READ_TEXT('{secret}')",
    "SELECT * FROM read_json_auto('{secret}')",
    "SELECT * FROM read_parquet('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM glob('{folder}/*')",
    "SELECT * FROM '{secret}'",
    'SELECT * FROM "{secret}"',
    "WITH x AS (SELECT * FROM read_csv_auto('{secret}')) SELECT * FROM x",
    "SELECT event_id FROM {db}.events UNION ALL SELECT content FROM read_text('{secret}')",
    "SELECT * FROM (SELECT * FROM read_text('{secret}')) t",
    "SELECT (SELECT content FROM read_text('{secret}')) AS c",
    "SELECT * FROM {db}.events WHERE event_id IN (SELECT content FROM read_text('{secret}'))",
    "SELECT /* a comment */ * FROM /* another */ read_text('{secret}')",
    "SELECT *\n-- a line comment\nFROM read_text(\n'{secret}')",
    "SELECT * FROM {db}.events e JOIN read_text('{secret}') f ON true",
    "COPY (SELECT 1) TO '{out}'",
    "COPY {db}.events TO '{out}'",
    "EXPORT DATABASE '{out_folder}'",
    "ATTACH '{out_db}' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA enable_profiling",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "CALL pragma_version()",
    "SELECT getenv('HOME')",
    "SELECT current_setting('enable_external_access')",
    "SELECT * FROM duckdb_settings()",
    "SELECT 1; SELECT * FROM read_text('{secret}')",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "SELECT * FROM which_secret('s3://x/y', 's3')",
    "SELECT * FROM query('SELECT * FROM read_text(''{secret}'')')",
    "CREATE TABLE t AS SELECT * FROM read_text('{secret}')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM parquet_metadata('{secret}')",
    "DROP TABLE {db}.events",
    "INSERT INTO {db}.events SELECT * FROM {db}.events",
]


@pytest.fixture
def places(tmp_path):
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(f"value\n{SECRET}\n")
    return {
        "secret": str(secret),
        "folder": str(secret.parent),
        "out": str(tmp_path / "out.csv"),
        "out_folder": str(tmp_path / "export"),
        "out_db": str(tmp_path / "x.duckdb"),
        "db": CURATED_DB,
    }


def _nothing_written(places) -> None:
    from pathlib import Path

    for key in ("out", "out_folder", "out_db"):
        assert not Path(places[key]).exists(), places[key]


@pytest.mark.parametrize("template", HOSTILE)
def test_each_hostile_statement_is_refused_in_one_line(lake, places, template):
    with pytest.raises(QueryError) as refused:
        lake.query(template.format(**places))
    message = str(refused.value)
    assert "\n" not in message and SECRET not in message
    assert message.split(":", 1)[0] in (
        "NOT_SUPPORTED",
        "FUNCTION_NOT_FOUND",
        "SYNTAX_ERROR",
        "TABLE_NOT_FOUND",
        "SCHEMA_NOT_FOUND",
    ), message
    _nothing_written(places)


def test_the_corpus_is_large_and_the_lake_still_answers(lake):
    assert len(HOSTILE) >= 30
    result = lake.query(f"SELECT count(*) AS n FROM {CURATED_DB}.events")
    assert result.rows == [(len(lake.curated_frame),)]
    described = lake.query(f"DESCRIBE {CURATED_DB}.events")
    assert "event_id" in [row[0] for row in described.rows]


@pytest.mark.parametrize("template", HOSTILE)
def test_with_the_statement_check_off_duckdb_still_reads_and_writes_nothing_outside(
    lake, places, template, monkeypatch
):
    monkeypatch.setattr(engine, "refuse_what_athena_refuses", lambda tree: None)
    try:
        result = lake.query(template.format(**places))
    except QueryError as error:
        assert SECRET not in str(error)
    else:
        assert SECRET not in repr(result.rows)
    _nothing_written(places)


# ----------------------------------------------------------------------------- personas

# An analyst's grants, as LocalPlatform.grants builds them from spec/personas.yaml: the
# curated database, without the table's PII column (here user_id).
ANALYST = engine.Grants(
    persona="analyst",
    databases=frozenset({CURATED_DB}),
    hidden_columns={(CURATED_DB, "events"): ("user_id",), (RAW_DB, "events"): ("user_id",)},
)
ADMIN = engine.Grants(persona="admin", databases=frozenset({CURATED_DB, RAW_DB}), hidden_columns={})


def test_a_persona_without_pii_sees_the_table_without_its_pii_column(lake):
    everything = lake.query(f"SELECT * FROM {CURATED_DB}.events", grants=ANALYST)
    assert "user_id" not in everything.columns
    assert set(everything.columns) == {"event_id", "amount", "ts", "local_time", "tags", "dt"}
    assert len(everything.rows) == len(lake.curated_frame)
    total = lake.query(f"SELECT sum(amount) AS s FROM {CURATED_DB}.events", grants=ANALYST)
    assert total.rows[0][0] == pytest.approx(lake.curated_frame.amount.sum())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT user_id FROM {db}.events",
        "SELECT count(*) FROM {db}.events WHERE user_id = 'auser1'",
        "WITH x AS (SELECT user_id AS u FROM {db}.events) SELECT count(*) FROM x",
        "SELECT e.amount FROM {db}.events e JOIN {db}.events f ON e.user_id = f.user_id",
        'SELECT count(DISTINCT "user_id") FROM {db}.events',
    ],
)
def test_a_persona_without_pii_cannot_reach_the_column_in_any_form(lake, sql):
    with pytest.raises(QueryError, match="COLUMN_NOT_FOUND: Column 'user_id' cannot be resolved"):
        lake.query(sql.format(db=CURATED_DB), grants=ANALYST)


def test_a_database_not_granted_is_refused_as_lake_formation_refuses_it(lake):
    with pytest.raises(QueryError, match="Insufficient Lake Formation permission.*events"):
        lake.query(f"SELECT count(*) FROM {RAW_DB}.events", grants=ANALYST)


def test_a_persona_with_pii_and_the_grant_sees_everything(lake):
    users = lake.query(f"SELECT DISTINCT user_id FROM {CURATED_DB}.events", grants=ADMIN)
    assert {r[0] for r in users.rows} == set(lake.curated_frame.user_id)
    raw = lake.query(f"SELECT count(*) FROM {RAW_DB}.events", grants=ADMIN)
    assert raw.rows[0][0] == len(lake.raw)
