"""One local Spark session for all job tests (starting Spark costs seconds)."""
from __future__ import annotations

import os
import sys

import pytest

from dataplatform.spec import load_spec

SPEC_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "spec")


@pytest.fixture(scope="session")
def spark():
    pyspark_sql = pytest.importorskip("pyspark.sql")
    # Workers must run the same interpreter as the tests (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (pyspark_sql.SparkSession.builder
               .master("local[2]")
               .appName("dataplatform-job-tests")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.sql.execution.arrow.pyspark.enabled", "false")
               .getOrCreate())
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
