"""The local platform's long-lived Spark driver: job scripts run one after another in one
warm JVM, each in its own session, with their own output and exit code; the driver is
reused while its configuration is the same, replaced when the job library changes, and
stopped on request. (The Glue job and EMR step tests run the real jobs on it.)"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from dataplatform.runtime.local import spark_service

pytestmark = pytest.mark.slow
CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "1",
}

JOB = """
import sys
from pyspark.sql import SparkSession
from helper_lib import square

spark = SparkSession.builder.appName("t").getOrCreate()
mode, out = sys.argv[1], sys.argv[2]
before = spark.conf.get("spark.sql.session.timeZone")
spark.conf.set("spark.sql.session.timeZone", "Pacific/Auckland")
total = spark.range(1, 11).selectExpr("sum(id) AS s").collect()[0].s
open(out, "w").write(f"{total} {square(total)} {before}")
print(f"job says {mode} {total}")
if mode == "exit3":
    sys.exit(3)
if mode == "raise":
    raise ValueError("bad input on purpose")
"""


def library(path: Path, body: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("helper_lib.py", body)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("spark-service")
    script = home / "job.py"
    script.write_text(JOB)
    lib = library(home / "lib.zip", "def square(x):\n    return x * x\n")
    env = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}

    def driver(py_file: Path = lib):
        return spark_service.ensure(
            home, conf=CONF, jars=[], py_files=[py_file], env=env, moto_pid=os.getpid()
        )

    yield home, script, driver
    spark_service.stop(home)


def run(driver, script: Path, home: Path, mode: str, name: str) -> tuple[int, str, str, list]:
    lines: list[str] = []
    out = home / f"{name}.out"
    code = spark_service.run(
        driver,
        script=script,
        argv=[mode, str(out)],
        name=name,
        run_id=name,
        log_path=home / f"{name}.log",
        progress=lines.append,
    )
    return code, out.read_text() if out.exists() else "", (home / f"{name}.log").read_text(), lines


def test_jobs_share_one_driver_and_keep_their_own_output_and_settings(setup):
    home, script, driver = setup
    first_driver = driver()
    code1, out1, log1, lines1 = run(first_driver, script, home, "ok", "first")
    second_driver = driver()
    code2, out2, log2, _ = run(second_driver, script, home, "ok", "second")

    assert second_driver.pid == first_driver.pid  # reused, not restarted
    assert (code1, code2) == (0, 0)
    # 55 = 1 + ... + 10 computed by Spark, 3025 by the library from the zip
    assert out1.split()[:2] == out2.split()[:2] == ["55", "3025"]
    # the first job's session setting did not leak into the second job's session
    assert out2.split()[2] != "Pacific/Auckland"
    assert "job says ok 55" in log1 and "second" not in log1
    assert "job says ok 55" in log2 and "run first" not in log2
    assert any("job says ok 55" in line for line in lines1)


def test_exit_codes_and_tracebacks_are_the_jobs(setup):
    home, script, driver = setup
    code, _, _, _ = run(driver(), script, home, "exit3", "exits")
    assert code == 3
    code, _, log, _ = run(driver(), script, home, "raise", "raises")
    assert code == 1
    assert "ValueError: bad input on purpose" in log
    code, out, _, _ = run(driver(), script, home, "ok", "after-failures")  # still serving
    assert code == 0 and out.startswith("55 ")


def test_a_changed_library_gets_a_new_driver_and_stop_ends_it(setup):
    home, script, driver = setup
    old = driver()
    changed = library(home / "lib2.zip", "def square(x):\n    return x * x + 1\n")
    new = driver(changed)
    assert new.pid != old.pid and not spark_service._alive(old.pid)
    code, out, _, _ = run(new, script, home, "ok", "new-library")
    assert code == 0 and out.split()[:2] == ["55", "3026"]

    assert spark_service.stop(home)
    assert not spark_service._alive(new.pid)
    assert spark_service.running(home) is None
    assert not spark_service.stop(home)  # stopping twice is harmless
