"""The local platform's commit protocol (runtime/local/jvm/ReplacePartitionsCommitProtocol):
through S3A's staging committer, each kind of write keeps the meaning Spark gives it, and
file:// writes are Spark's own. Checked by reading back what was written."""

from __future__ import annotations

import pytest

from tests.jobs.conftest import aws_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    s3 = aws_client("s3", moto_endpoint)
    name = "commit-protocol-tests"
    # Not versioned: plain moto (this server) lists a versioned bucket's deleted folders as
    # CommonPrefixes; the platform's server lists them as S3 does (tests/local covers that).
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


def rows_by_day(spark, path: str) -> dict[str, list[int]]:
    frame = spark.read.parquet(path).toPandas()
    return {str(day): sorted(group.n.tolist()) for day, group in frame.groupby("dt", sort=True)}


def write(spark, path: str, rows: list[tuple[int, str]], mode: str, overwrite: str = "dynamic"):
    frame = spark.createDataFrame(rows, "n int, dt string")
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", overwrite)
    try:
        frame.write.mode(mode).partitionBy("dt").parquet(path)
    finally:
        spark.conf.unset("spark.sql.sources.partitionOverwriteMode")


@pytest.fixture(params=["s3a", "file"])
def output(request, bucket, tmp_path):
    if request.param == "s3a":
        # (no [ or ] in the name: Spark reads them as a glob)
        return f"s3a://{bucket}/{request.node.originalname}-s3a"
    return (tmp_path / "out").as_uri()


def test_dynamic_overwrite_replaces_the_days_written_and_keeps_the_others(spark, output):
    write(spark, output, [(1, "d1"), (2, "d1"), (3, "d2")], "overwrite")
    write(spark, output, [(4, "d2"), (5, "d3")], "overwrite")
    assert rows_by_day(spark, output) == {"d1": [1, 2], "d2": [4], "d3": [5]}
    write(spark, output, [(4, "d2"), (5, "d3")], "overwrite")  # a rerun changes nothing
    assert rows_by_day(spark, output) == {"d1": [1, 2], "d2": [4], "d3": [5]}


def test_append_keeps_what_is_there(spark, output):
    write(spark, output, [(1, "d1")], "overwrite")
    write(spark, output, [(2, "d1"), (3, "d2")], "append")
    assert rows_by_day(spark, output) == {"d1": [1, 2], "d2": [3]}


def test_static_overwrite_replaces_every_partition(spark, output):
    write(spark, output, [(1, "d1"), (2, "d2")], "overwrite")
    write(spark, output, [(3, "d2")], "overwrite", overwrite="static")
    assert rows_by_day(spark, output) == {"d2": [3]}


def test_a_failed_write_shows_nothing_and_leaves_no_upload_open(spark, bucket, moto_endpoint):
    from pyspark.sql import functions as F

    output = f"s3a://{bucket}/failed-write"
    write(spark, output, [(1, "d1")], "overwrite")
    # two tasks: the first may commit (its upload pending), the second fails on its row
    rows = spark.sparkContext.parallelize([(2, "d1"), (0, "d2")], 2)
    frame = spark.createDataFrame(rows, "n int, dt string").withColumn(
        "n", F.when(F.col("n") == 0, F.raise_error(F.lit("planted failure"))).otherwise(F.col("n"))
    )
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    try:
        with pytest.raises(Exception, match="planted failure"):
            frame.write.mode("overwrite").partitionBy("dt").parquet(output)
    finally:
        spark.conf.unset("spark.sql.sources.partitionOverwriteMode")
    assert rows_by_day(spark, output) == {"d1": [1]}
    uploads = aws_client("s3", moto_endpoint).list_multipart_uploads(Bucket=bucket)
    assert uploads.get("Uploads", []) == []


def test_spark_writes_to_s3a_through_the_staging_committer(spark, bucket, moto_endpoint):
    """The S3A committers write a JSON _SUCCESS naming themselves (Hadoop's own writes an
    empty one): proof that the protocol is the one in use, not Spark's default."""
    import json

    output = f"s3a://{bucket}/which-committer"
    write(spark, output, [(1, "d1")], "overwrite")
    body = (
        aws_client("s3", moto_endpoint)
        .get_object(Bucket=bucket, Key="which-committer/_SUCCESS")["Body"]
        .read()
    )
    assert json.loads(body)["committer"] == "partitioned"
