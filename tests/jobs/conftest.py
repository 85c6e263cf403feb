"""One local Spark session for all job tests (starting Spark costs seconds)."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from dataplatform.spec import load_spec

SPEC_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "spec")


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on 127.0.0.1 for the session: S3 and Glue as the local platform has them."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def aws_client(service: str, endpoint: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session")
def spark(moto_endpoint, tmp_path_factory):
    pyspark_sql = pytest.importorskip("pyspark.sql")
    from dataplatform.jobs import iceberg
    from dataplatform.runtime.local.glue_job import (
        iceberg_endpoint_conf,
        spark_commit_conf,
        spark_local_files_conf,
    )
    from dataplatform.runtime.local.spark_jars import driver_class_path_conf, jar_paths

    jars = jar_paths()  # from `make setup`
    # Workers must run the same interpreter as the tests (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Iceberg's Glue client takes the default credential chain (the JVM inherits these)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(name, value)
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("dataplatform-job-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "false")
        # s3a:// against the moto server, as the local platform runs Glue jobs
        .config(map=driver_class_path_conf(jars))
        .config("spark.hadoop.fs.s3a.endpoint", moto_endpoint)
        .config("spark.hadoop.fs.s3a.path.style.access", "true")
        .config("spark.hadoop.fs.s3a.connection.ssl.enabled", "false")
        .config("spark.hadoop.fs.s3a.endpoint.region", REGION)
        .config(
            "spark.hadoop.fs.s3a.aws.credentials.provider",
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        )
        .config("spark.hadoop.fs.s3a.access.key", "testing")
        .config("spark.hadoop.fs.s3a.secret.key", "testing")
        # and writes to s3a:// committed as the local platform commits them
        .config(map=spark_commit_conf(tmp_path_factory.mktemp("spark-commits")))
        .config(map=spark_local_files_conf())
        # Iceberg tables (table_format: iceberg) in the moto server's Glue and S3, as the
        # local platform's driver has them
        .config("spark.sql.extensions", iceberg.EXTENSIONS)
        .config(map=iceberg_endpoint_conf(iceberg.CATALOG, moto_endpoint, REGION))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def platform():
    return load_spec(os.path.abspath(SPEC_ROOT))


@pytest.fixture(scope="session")
def telecom(platform):
    return platform.dataset("telecom_events")


@pytest.fixture(scope="session")
def house_sales(platform):
    return platform.dataset("house_sales")
