"""The local Athena reads Apache Iceberg tables as Athena engine v3 does: an Iceberg table
registered in moto's Glue by pyiceberg's GlueCatalog (Parameters table_type ICEBERG and
metadata_location, no Glue partition keys), written in three snapshots (an append, an
overwrite of one day, and -- after adding a column and renaming another -- an append), and
read with time travel, partition pruning, the bytes-scanned cutoff, the metadata tables and
Lake Formation's hidden columns; every answer checked against pandas over the rows written.

The snapshots' commit times come from a fake clock (pyiceberg stamps a snapshot with
`time.time()`), so the time-travel queries need no sleeping and are the same on each run."""

from __future__ import annotations

import datetime as dt
import io
import socket
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from dataplatform.naming import Names
from dataplatform.runtime.local.athena import QueryError, engine, run_query

REGION = "eu-west-1"
# its own names: moto's in-process state is shared by every ThreadedMotoServer of a worker
NAMES = Names(project="mldp", env="iceberg", account="123456789012", region=REGION)
DB = NAMES.curated_database
DAYS = ["2021-06-01", "2021-06-02", "2021-06-03"]
NEW_DAY = "2021-06-04"
# When each snapshot is committed (the fake clock), UTC.
COMMITS = [
    dt.datetime(2021, 6, 1, 10, 0, tzinfo=dt.UTC),
    dt.datetime(2021, 6, 2, 10, 0, tzinfo=dt.UTC),
    dt.datetime(2021, 6, 3, 10, 0, tzinfo=dt.UTC),
]
BIG = 10**12
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(service: str, endpoint: str):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **KEYS)


def _orders(day: str, first_id: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "order_id": np.arange(first_id, first_id + n, dtype="int64"),
            "customer": [f"customer{int(c)}" for c in rng.integers(0, 25, n)],
            "amount": np.round(rng.uniform(1, 500, n), 2),
            "status": ["placed"] * n,
            "dt": [day] * n,
        }
    )


class Lake:
    """What the tests wrote, for the expected answers."""

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
        self.snapshots: list[pd.DataFrame] = []  # the table's rows after each snapshot
        self.snapshot_ids: list[int] = []

    def query(self, sql: str, *, cutoff: int = BIG, grants=None):
        return run_query(
            sql,
            glue=self.glue,
            s3=self.s3,
            s3_filesystem=self.fs,
            workgroup=NAMES.workgroup,
            athena_results_bucket=NAMES.athena_results_bucket,
            bytes_scanned_cutoff=cutoff,
            default_database=None,
            grants=grants,
        )

    def frame(self, sql: str, **kwargs) -> pd.DataFrame:
        result = self.query(sql, **kwargs)
        return pd.DataFrame(result.rows, columns=result.columns)


def _fake_clock(times: list[dt.datetime]):
    """A stand-in for the `time` module pyiceberg's Snapshot reads its timestamp from: each
    call answers the next commit time."""
    pending = [t.timestamp() for t in times]
    return types.SimpleNamespace(time=lambda: pending.pop(0))


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
    import pyiceberg.table.snapshots
    from pyiceberg.catalog import load_catalog
    from pyiceberg.io.pyarrow import _dataframe_to_data_files
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType

    for bucket in (NAMES.curated_bucket, NAMES.athena_results_bucket):
        lake.s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    lake.glue.create_database(DatabaseInput={"Name": DB})
    catalog = load_catalog(
        "glue",
        **{
            "type": "glue",
            "glue.endpoint": lake.endpoint,
            "glue.region": REGION,
            "glue.access-key-id": "testing",
            "glue.secret-access-key": "testing",
            "s3.endpoint": lake.endpoint,
            "s3.region": REGION,
            "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing",
        },
    )
    schema = Schema(
        NestedField(1, "order_id", LongType(), required=False),
        NestedField(2, "customer", StringType(), required=False),
        NestedField(3, "amount", DoubleType(), required=False),
        NestedField(4, "status", StringType(), required=False),
        NestedField(5, "dt", StringType(), required=False),
    )
    spec = PartitionSpec(
        PartitionField(source_id=5, field_id=1000, transform=IdentityTransform(), name="dt")
    )
    arrow = pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer", pa.string()),
            ("amount", pa.float64()),
            ("status", pa.string()),
            ("dt", pa.string()),
        ]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyiceberg.table.snapshots, "time", _fake_clock(COMMITS))
        table = catalog.create_table(
            f"{DB}.orders",
            schema=schema,
            partition_spec=spec,
            location=f"s3://{NAMES.curated_bucket}/iceberg/orders",
        )
        # snapshot 1: three days of orders
        first = pd.concat(
            [_orders(day, 100 * i, 40 + 10 * i, seed=i) for i, day in enumerate(DAYS)],
            ignore_index=True,
        )
        table.append(pa.Table.from_pandas(first, schema=arrow, preserve_index=False))
        lake.snapshots.append(first)

        # snapshot 2: one overwrite replacing the second day's files with its orders shipped
        # (one OVERWRITE snapshot, as Athena's UPDATE of a copy-on-write table makes)
        table = catalog.load_table(f"{DB}.orders")
        shipped = first[first.dt == DAYS[1]].assign(
            status="shipped", amount=lambda d: (d.amount + 1).round(2)
        )
        with table.transaction() as tx:
            written = list(
                _dataframe_to_data_files(
                    table_metadata=tx.table_metadata,
                    df=pa.Table.from_pandas(shipped, schema=arrow, preserve_index=False),
                    io=table.io,
                )
            )
            with tx.update_snapshot().overwrite() as overwrite:
                for task in table.scan().plan_files():
                    if task.file.partition[0] == DAYS[1]:
                        overwrite.delete_data_file(task.file)
                for data_file in written:
                    overwrite.append_data_file(data_file)
        second = pd.concat([first[first.dt != DAYS[1]], shipped], ignore_index=True)
        lake.snapshots.append(second)

        # the schema evolves: a new optional column, and `amount` renamed
        table = catalog.load_table(f"{DB}.orders")
        with table.update_schema() as update:
            update.add_column("extra", StringType())
            update.rename_column("amount", "amount_eur")

        # snapshot 3: more orders, on the last day and a new one, with `extra`
        table = catalog.load_table(f"{DB}.orders")
        more = pd.concat(
            [_orders(DAYS[2], 1000, 15, seed=7), _orders(NEW_DAY, 2000, 25, seed=8)],
            ignore_index=True,
        ).rename(columns={"amount": "amount_eur"})
        more["extra"] = [f"x{i}" for i in range(len(more))]
        evolved = pa.schema(
            [
                ("order_id", pa.int64()),
                ("customer", pa.string()),
                ("amount_eur", pa.float64()),
                ("status", pa.string()),
                ("dt", pa.string()),
                ("extra", pa.string()),
            ]
        )
        table.append(pa.Table.from_pandas(more, schema=evolved, preserve_index=False))
        third = pd.concat(
            [second.rename(columns={"amount": "amount_eur"}).assign(extra=None), more],
            ignore_index=True,
        )
        lake.snapshots.append(third)
    table = catalog.load_table(f"{DB}.orders")
    lake.snapshot_ids = [s.snapshot_id for s in table.snapshots()]

    # a Hive (Parquet) table beside it, which has no versions
    buffer = io.BytesIO()
    pq.write_table(pa.table({"k": ["a", "b"]}), buffer)
    lake.s3.put_object(
        Bucket=NAMES.curated_bucket, Key="hive/plain/part-0.parquet", Body=buffer.getvalue()
    )
    lake.glue.create_table(
        DatabaseName=DB,
        TableInput={
            "Name": "plain",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet"},
            "StorageDescriptor": {
                "Columns": [{"Name": "k", "Type": "string"}],
                "Location": f"s3://{NAMES.curated_bucket}/hive/plain/",
                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "SerdeInfo": {
                    "SerializationLibrary": (
                        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    )
                },
            },
        },
    )


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("order_id").reset_index(drop=True)


def _same(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        _sorted(result), _sorted(expected[list(result.columns)]), check_dtype=False
    )


def _timestamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# ----------------------------------------------------------------------------- the catalog


def test_the_table_is_registered_as_iceberg_registers_it_in_glue(lake):
    table = lake.glue.get_table(DatabaseName=DB, Name="orders")["Table"]
    assert table["Parameters"]["table_type"].upper() == "ICEBERG"
    assert table["Parameters"]["metadata_location"].endswith(".metadata.json")
    assert not table.get("PartitionKeys")
    assert len(lake.snapshot_ids) == 3


# ----------------------------------------------------------------------------- reading


def test_the_current_table_equals_the_rows_written_with_the_current_schema(lake):
    result = lake.frame(f"SELECT * FROM {DB}.orders")
    assert list(result.columns) == ["order_id", "customer", "amount_eur", "status", "dt", "extra"]
    _same(result, lake.snapshots[2])


def test_the_added_column_is_null_in_rows_written_before_it(lake):
    result = lake.frame(
        f"SELECT count(*) AS n, count(extra) AS with_extra FROM {DB}.orders WHERE order_id < 1000"
    )
    assert result.n[0] == len(lake.snapshots[1]) and result.with_extra[0] == 0
    expected = lake.snapshots[2].groupby("dt").amount_eur.sum().round(2).reset_index()
    totals = lake.frame(
        f"SELECT dt, round(sum(amount_eur), 2) AS amount_eur FROM {DB}.orders "
        "GROUP BY dt ORDER BY dt"
    )
    assert list(totals.dt) == list(expected.dt)
    assert list(totals.amount_eur) == pytest.approx(list(expected.amount_eur))


def test_describe_lists_the_current_columns(lake):
    described = lake.query(f"DESCRIBE {DB}.orders")
    assert [row[0] for row in described.rows] == [
        "order_id",
        "customer",
        "amount_eur",
        "status",
        "dt",
        "extra",
    ]


# ----------------------------------------------------------------------------- time travel


def test_version_as_of_the_first_snapshot_reads_its_rows_with_its_schema(lake):
    # pyiceberg's rule for time travel, which the local Athena follows: the snapshot's
    # schema (the column was `amount` then, and `extra` did not exist)
    first = lake.snapshot_ids[0]
    result = lake.frame(f"SELECT * FROM {DB}.orders FOR VERSION AS OF {first}")
    assert list(result.columns) == ["order_id", "customer", "amount", "status", "dt"]
    _same(result, lake.snapshots[0])


def test_version_as_of_each_snapshot_counts_its_rows(lake):
    for snapshot_id, rows in zip(lake.snapshot_ids, lake.snapshots, strict=True):
        result = lake.query(f"SELECT count(*) FROM {DB}.orders FOR VERSION AS OF {snapshot_id}")
        assert result.rows == [(len(rows),)]


def test_timestamp_as_of_a_time_between_two_snapshots_reads_the_earlier(lake):
    between = COMMITS[0] + (COMMITS[1] - COMMITS[0]) / 2
    for pointer in (
        f"TIMESTAMP '{_timestamp(between)} UTC'",
        f"TIMESTAMP '{_timestamp(between)}'",  # no zone: UTC
        f"TIMESTAMP '{_timestamp(between + dt.timedelta(hours=2))} Europe/Paris'",
    ):
        result = lake.frame(f"SELECT * FROM {DB}.orders FOR TIMESTAMP AS OF {pointer}")
        _same(result, lake.snapshots[0])


def test_timestamp_as_of_a_commit_time_reads_that_snapshot(lake):
    committed = lake.frame(f'SELECT snapshot_id, committed_at FROM "{DB}"."orders$snapshots"')
    second = committed.committed_at[1]
    assert second == pd.Timestamp(COMMITS[1])
    result = lake.frame(
        f"SELECT * FROM {DB}.orders FOR TIMESTAMP AS OF TIMESTAMP '{_timestamp(second)} UTC'"
    )
    _same(result, lake.snapshots[1])


def test_timestamp_as_of_an_expression_is_evaluated(lake):
    # every commit is years before now: a day ago, the table was as it is now
    result = lake.query(
        f"SELECT count(*) FROM {DB}.orders "
        "FOR TIMESTAMP AS OF (current_timestamp - interval '1' day)"
    )
    assert result.rows == [(len(lake.snapshots[2]),)]


def test_two_versions_of_the_table_compare_in_one_query(lake):
    first, second = lake.snapshot_ids[:2]
    result = lake.frame(
        f"""SELECT a.dt, count(*) AS changed
        FROM {DB}.orders FOR VERSION AS OF {first} a
        JOIN {DB}.orders FOR VERSION AS OF {second} AS b ON a.order_id = b.order_id
        WHERE a.status <> b.status GROUP BY a.dt"""
    )
    assert result.to_dict("records") == [
        {"dt": DAYS[1], "changed": int((lake.snapshots[0].dt == DAYS[1]).sum())}
    ]
    unqualified = lake.query(
        f"SELECT orders.status, count(*) FROM {DB}.orders FOR VERSION AS OF {first} "
        "GROUP BY orders.status"
    )
    assert unqualified.rows == [("placed", len(lake.snapshots[0]))]
    versus_now = lake.query(
        f"""SELECT (SELECT count(*) FROM {DB}.orders)
                 - (SELECT count(*) FROM {DB}.orders FOR VERSION AS OF {first})"""
    )
    assert versus_now.rows == [(len(lake.snapshots[2]) - len(lake.snapshots[0]),)]


def test_an_unknown_snapshot_id_fails_with_athenas_message(lake):
    with pytest.raises(QueryError, match="Iceberg snapshot ID does not exists: 123"):
        lake.query(f"SELECT * FROM {DB}.orders FOR VERSION AS OF 123")


def test_a_time_before_the_first_snapshot_fails_with_athenas_message(lake):
    with pytest.raises(
        QueryError,
        match=rf"No version history table {DB}\.orders at or before 2021-05-01T00:00:00Z",
    ):
        lake.query(
            f"SELECT * FROM {DB}.orders FOR TIMESTAMP AS OF TIMESTAMP '2021-05-01 00:00:00 UTC'"
        )


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        ("FOR VERSION AS OF 1.5", "Unsupported type for table version: decimal"),
        ("FOR TIMESTAMP AS OF 12", "Unsupported type for temporal table version: integer"),
        ("FOR VERSION AS OF 'nightly'", "Cannot find snapshot with reference name: nightly"),
        ("FOR VERSION AS OF NULL", "Pointer value cannot be NULL"),
    ],
)
def test_a_pointer_of_the_wrong_kind_fails_as_trino_does(lake, pointer, message):
    with pytest.raises(QueryError, match=message):
        lake.query(f"SELECT * FROM {DB}.orders {pointer}")


def test_the_main_branch_is_a_version_name(lake):
    result = lake.query(f"SELECT count(*) FROM {DB}.orders FOR VERSION AS OF 'main'")
    assert result.rows == [(len(lake.snapshots[2]),)]


def test_time_travel_on_a_hive_table_is_refused(lake):
    with pytest.raises(QueryError, match="does not support versioned tables"):
        lake.query(f"SELECT * FROM {DB}.plain FOR VERSION AS OF 1")
    assert lake.query(f"SELECT k FROM {DB}.plain ORDER BY k").rows == [("a",), ("b",)]


# ----------------------------------------------------------------------------- pruning, cutoff


def test_a_one_day_query_scans_only_that_days_files_and_matches_pandas(lake):
    everything = lake.query(f"SELECT count(*) FROM {DB}.orders")
    one_day = lake.frame(f"SELECT * FROM {DB}.orders WHERE dt = '{DAYS[2]}'")
    _same(one_day, lake.snapshots[2][lake.snapshots[2].dt == DAYS[2]])
    result = lake.query(f"SELECT * FROM {DB}.orders WHERE dt = '{DAYS[2]}'")
    files = result.files_read[f"{DB}.orders"]
    assert files and all(f"/dt={DAYS[2]}/" in path for path in files)
    assert 0 < result.bytes_scanned < everything.bytes_scanned
    sizes = lake.frame(f'SELECT file_path, file_size_in_bytes FROM "{DB}"."orders$files"')
    assert everything.bytes_scanned == sizes.file_size_in_bytes.sum()
    assert (
        result.bytes_scanned
        == sizes[sizes.file_path.str.contains(f"/dt={DAYS[2]}/")].file_size_in_bytes.sum()
    )


@pytest.mark.parametrize(
    ("where", "keep"),
    [
        (f"dt IN ('{DAYS[0]}', '{NEW_DAY}')", lambda f: f.dt.isin([DAYS[0], NEW_DAY])),
        (f"dt BETWEEN '{DAYS[1]}' AND '{DAYS[2]}'", lambda f: f.dt.between(DAYS[1], DAYS[2])),
        (
            f"dt > '{DAYS[1]}' AND amount_eur > 100",
            lambda f: (f.dt > DAYS[1]) & (f.amount_eur > 100),
        ),
        (f"'{DAYS[1]}' >= dt", lambda f: f.dt <= DAYS[1]),
        (f"dt <> '{DAYS[0]}'", lambda f: f.dt != DAYS[0]),
    ],
)
def test_in_range_and_comparison_predicates_prune_and_stay_correct(lake, where, keep):
    everything = lake.query(f"SELECT count(*) FROM {DB}.orders").bytes_scanned
    result = lake.query(f"SELECT order_id FROM {DB}.orders WHERE {where}")
    assert result.bytes_scanned < everything
    current = lake.snapshots[2]
    assert sorted(r[0] for r in result.rows) == sorted(current[keep(current)].order_id)


def test_an_or_of_partition_and_other_columns_reads_everything_and_stays_correct(lake):
    everything = lake.query(f"SELECT count(*) FROM {DB}.orders").bytes_scanned
    result = lake.query(
        f"SELECT count(*) FROM {DB}.orders WHERE dt = '{DAYS[0]}' OR status = 'shipped'"
    )
    frame = lake.snapshots[2]
    assert result.rows == [(int(((frame.dt == DAYS[0]) | (frame.status == "shipped")).sum()),)]
    assert result.bytes_scanned == everything


def test_pruning_applies_to_a_version_read_too(lake):
    first = lake.snapshot_ids[0]
    everything = lake.query(f"SELECT count(*) FROM {DB}.orders FOR VERSION AS OF {first}")
    result = lake.query(
        f"SELECT count(*) FROM {DB}.orders FOR VERSION AS OF {first} WHERE dt = '{DAYS[1]}'"
    )
    assert result.rows == [(int((lake.snapshots[0].dt == DAYS[1]).sum()),)]
    assert 0 < result.bytes_scanned < everything.bytes_scanned
    key = f"{DB}.orders FOR VERSION AS OF {first}"
    assert all(f"/dt={DAYS[1]}/" in path for path in result.files_read[key])


def test_the_bytes_scanned_cutoff_refuses_an_iceberg_query(lake):
    total = lake.query(f"SELECT count(*) FROM {DB}.orders").bytes_scanned
    with pytest.raises(QueryError, match=r"bytes-scanned cutoff \(\d+ bytes > 1000 bytes\)"):
        lake.query(f"SELECT count(*) FROM {DB}.orders", cutoff=1000)
    assert lake.query(f"SELECT count(*) FROM {DB}.orders", cutoff=total).bytes_scanned == total


# ----------------------------------------------------------------------------- metadata tables


def test_snapshots_lists_the_three_commits_in_order(lake):
    result = lake.query(f'SELECT * FROM "{DB}"."orders$snapshots"')
    assert result.columns == [
        "committed_at",
        "snapshot_id",
        "parent_id",
        "operation",
        "manifest_list",
        "summary",
    ]
    frame = pd.DataFrame(result.rows, columns=result.columns)
    assert list(frame.snapshot_id) == lake.snapshot_ids
    assert list(frame.operation) == ["append", "overwrite", "append"]
    assert list(frame.committed_at) == [pd.Timestamp(t) for t in COMMITS]
    assert [row[2] for row in result.rows] == [None, *lake.snapshot_ids[:2]]
    assert [dict(s)["total-records"] for s in frame.summary] == [
        str(len(rows)) for rows in lake.snapshots
    ]
    answer = engine.execute(
        engine.parse(f'SELECT committed_at, snapshot_id FROM "{DB}"."orders$snapshots"'),
        glue=lake.glue,
        s3=lake.s3,
        s3_filesystem=lake.fs,
        workgroup=NAMES.workgroup,
        bytes_scanned_cutoff=None,
    )
    assert answer.types == ["timestamp with time zone", "bigint"]


def test_history_lists_each_snapshot_as_it_became_current(lake):
    result = lake.frame(
        f"SELECT made_current_at, snapshot_id, parent_id, is_current_ancestor "
        f'FROM "{DB}"."orders$history"'
    )
    assert list(result.snapshot_id) == lake.snapshot_ids
    assert list(result.made_current_at) == [pd.Timestamp(t) for t in COMMITS]
    assert result.is_current_ancestor.all()


def test_files_and_partitions_describe_the_current_snapshot(lake):
    files = lake.frame(
        f"SELECT content, file_path, file_format, record_count, file_size_in_bytes, "
        f'"partition".dt AS dt FROM "{DB}"."orders$files"'
    )
    current = lake.snapshots[2]
    assert files.record_count.sum() == len(current)
    assert set(files.file_format) == {"PARQUET"} and set(files.content) == {0}
    assert all(
        path.startswith(f"s3://{NAMES.curated_bucket}/iceberg/orders/data/")
        for path in files.file_path
    )
    partitions = lake.frame(
        f'SELECT "partition".dt AS dt, record_count, file_count, total_size '
        f'FROM "{DB}"."orders$partitions" ORDER BY 1'
    )
    expected = current.groupby("dt").size()
    assert list(partitions.dt) == list(expected.index)
    assert list(partitions.record_count) == list(expected)
    assert list(partitions.file_count) == list(files.groupby("dt").size())
    assert partitions.total_size.sum() == files.file_size_in_bytes.sum()


def test_refs_name_the_main_branch(lake):
    result = lake.query(f'SELECT name, type, snapshot_id FROM "{DB}"."orders$refs"')
    assert result.rows == [("main", "BRANCH", lake.snapshot_ids[2])]


def test_an_unknown_metadata_table_or_one_of_a_hive_table_does_not_exist(lake):
    with pytest.raises(QueryError, match=r"TABLE_NOT_FOUND: Table '.*orders\$nope' does not exist"):
        lake.query(f'SELECT * FROM "{DB}"."orders$nope"')
    with pytest.raises(QueryError, match="is not an Iceberg table"):
        lake.query(f'SELECT * FROM "{DB}"."plain$snapshots"')


# ----------------------------------------------------------------------------- Lake Formation

ANALYST = engine.Grants(
    persona="analyst", databases=frozenset({DB}), hidden_columns={(DB, "orders"): ("customer",)}
)
NO_AMOUNTS = engine.Grants(
    persona="auditor", databases=frozenset({DB}), hidden_columns={(DB, "orders"): ("amount_eur",)}
)


def test_a_hidden_pii_column_is_not_in_the_iceberg_table(lake):
    everything = lake.query(f"SELECT * FROM {DB}.orders", grants=ANALYST)
    assert "customer" not in everything.columns
    assert len(everything.rows) == len(lake.snapshots[2])
    first = lake.snapshot_ids[0]
    old = lake.query(f"SELECT * FROM {DB}.orders FOR VERSION AS OF {first}", grants=ANALYST)
    assert "customer" not in old.columns
    with pytest.raises(QueryError, match="COLUMN_NOT_FOUND: Column 'customer' cannot be resolved"):
        lake.query(f"SELECT count(DISTINCT customer) FROM {DB}.orders", grants=ANALYST)
    with pytest.raises(QueryError, match="COLUMN_NOT_FOUND: Column 'customer' cannot be resolved"):
        lake.query(f"SELECT customer FROM {DB}.orders FOR VERSION AS OF {first}", grants=ANALYST)
    snapshots = lake.query(f'SELECT count(*) FROM "{DB}"."orders$snapshots"', grants=ANALYST)
    assert snapshots.rows == [(3,)]


def test_a_hidden_column_stays_hidden_under_the_name_it_had_in_an_older_snapshot(lake):
    first = lake.snapshot_ids[0]
    old = lake.query(f"SELECT * FROM {DB}.orders FOR VERSION AS OF {first}", grants=NO_AMOUNTS)
    assert old.columns == ["order_id", "customer", "status", "dt"]
    with pytest.raises(QueryError, match="COLUMN_NOT_FOUND: Column 'amount' cannot be resolved"):
        lake.query(
            f"SELECT sum(amount) FROM {DB}.orders FOR VERSION AS OF {first}", grants=NO_AMOUNTS
        )


def test_a_hidden_partition_column_is_not_shown_by_the_metadata_tables(lake):
    no_days = engine.Grants(
        persona="x", databases=frozenset({DB}), hidden_columns={(DB, "orders"): ("dt",)}
    )
    files = lake.query(f'SELECT * FROM "{DB}"."orders$files"', grants=no_days)
    assert "partition" not in files.columns
    partitions = lake.query(f'SELECT * FROM "{DB}"."orders$partitions"', grants=no_days)
    assert "partition" not in partitions.columns
