"""`make conformance`: moto's own test suite, in server mode, against plain `moto_server`
and against the local platform's server (`dataplatform.runtime.local.moto_main`), test by
test. moto_main must answer what moto answers: a test that passes on moto_server and fails
on moto_main fails this check (tests failing on both are reported, not counted).

moto 5.2.5's sdist comes from PyPI (pip download, checked against its pinned sha256) and
is kept in .conformance/; what its tests import beyond the project's lock (freezegun) is
installed apart, hash-checked, from tools/conformance.lock. Both servers bind 127.0.0.1 on
free ports and stop at the end.

    python scripts/moto_conformance.py [--files tests/test_s3/test_s3_metadata.py ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".conformance"
MOTO_VERSION = "5.2.5"
SDIST = f"moto-{MOTO_VERSION}.tar.gz"
# one server's run of the whole set takes 8 to 18 minutes here; a hung test ends the run
RUN_TIMEOUT_S = 45 * 60
SDIST_SHA256 = "391857257d5dac144334013c2c10e599def5f0562f553e979160140bd7bd9cf6"
# The services the platform relies on moto for (the issue: S3, Kinesis, DynamoDB, the Glue
# catalog, Firehose and the SageMaker registry)
FILES = (
    "tests/test_s3",
    "tests/test_kinesis",
    "tests/test_dynamodb",
    "tests/test_glue/test_datacatalog.py",
    "tests/test_glue/test_partition_filter.py",
    "tests/test_firehose",
    "tests/test_sagemaker/test_sagemaker_model_packages.py",
    "tests/test_sagemaker/test_sagemaker_model_package_groups.py",
)

# Tests of moto's own stand-in for a crawl, which the local platform replaces with a real one
# on purpose (the first item: StartCrawler crawls): moto's crawl stays RUNNING until
# ListCrawls or StopCrawler is called, and these tests count on it (a second crawl still
# RUNNING, StopCrawler leaving STOPPING, ListCrawls ending a crawl and dating its end); a
# real crawl ends by itself, here within milliseconds of an empty target. Reported, not
# counted; every other test must pass where moto_server passes.
REAL_CRAWLS = "moto's crawl stays RUNNING until listed or stopped; the local platform's crawls"
KNOWN_DIFFERENCES = {
    f"tests.test_glue.test_datacatalog::{test}": REAL_CRAWLS
    for test in (
        "test_filter_crawls_for_crawl_id",
        "test_filter_crawls_for_end_time[GE]",
        "test_filter_crawls_for_end_time[GT]",
        "test_filter_crawls_for_end_time[LE]",
        "test_filter_crawls_for_end_time[LT]",
        "test_filter_crawls_for_start_time[GE]",
        "test_filter_crawls_for_start_time[GT]",
        "test_filter_crawls_for_start_time[LE]",
        "test_filter_crawls_for_start_time[LT]",
        "test_filter_crawls_for_state[EQ]",
        "test_filter_crawls_for_state[NE]",
        "test_filter_crawls_for_not_crawl_id",
        "test_multiple_filters[GE]",
        "test_multiple_filters[GT]",
        "test_multiple_filters[LE]",
        "test_multiple_filters[LT]",
        "test_start_crawler_should_raise_exception_if_already_running",
        "test_stop_crawler",
    )
}


def sdist() -> Path:
    """moto's sources with their tests, from PyPI, checked."""
    archive = WORK / SDIST
    if not archive.is_file():
        WORK.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"moto=={MOTO_VERSION}",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--quiet",
                "-d",
                str(WORK),
            ],
            check=True,
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        archive.unlink()
        sys.exit(f"{archive}: sha256 {digest}, expected {SDIST_SHA256}; removed, run again")
    folder = WORK / f"moto-{MOTO_VERSION}"
    if not (folder / "tests").is_dir():
        with tarfile.open(archive) as tar:
            tar.extractall(WORK, filter="data")
    return folder


def extras() -> Path:
    site = WORK / "site"
    if not (site / "freezegun").is_dir():
        uv = Path(sys.executable).with_name("uv")
        subprocess.run(
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--target",
                str(site),
                "--no-deps",
                "--require-hashes",
                "-r",
                str(REPO / "tools" / "conformance.lock"),
            ],
            check=True,
        )
    return site


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(which: str, port: int, state: Path) -> subprocess.Popen:
    command = (
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        if which == "moto_server"
        else [
            sys.executable,
            "-m",
            "dataplatform.runtime.local.moto_main",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "--state",
            str(state / "state"),
            "--home",
            str(state),
        ]
    )
    log = (state / f"{which}.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{which} did not start on 127.0.0.1:{port}: see {state}/{which}.log")


def run(which: str, moto: Path, site: Path, files: list[str]) -> dict[str, str]:
    """{test id: passed|failed|skipped} of the files against one server."""
    state = Path(tempfile.mkdtemp(prefix=f"conformance-{which}-"))
    port = free_port()
    process = start(which, port, state)
    report = state / "junit.xml"
    env = {
        **os.environ,
        "TEST_SERVER_MODE": "true",
        "TEST_SERVER_MODE_ENDPOINT": f"http://127.0.0.1:{port}",
        "MOTO_PORT": str(port),
        "PYTHONPATH": str(site),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # no Docker daemon here: moto's own marker skips those tests (each waited 60 s to fail)
        "SKIP_REQUIRES_DOCKER": "true",
    }
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DP_HOME"):
        env.pop(key, None)
    started = time.perf_counter()
    tests_log = open(state / "pytest.log", "w")  # -v: a hang's test is the log's last line
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-v",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:xdist",
                "-o",
                "addopts=",
                "--junitxml",
                str(report),
                *files,
            ],
            cwd=moto,
            env=env,
            stdout=tests_log,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"{which}: moto's tests did not finish in {RUN_TIMEOUT_S} s; the last test "
            f"pytest reported is at the end of {state / 'pytest.log'}"
        ) from None
    finally:
        tests_log.close()
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    seconds = time.perf_counter() - started
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[test] = (
            "failed"
            if kinds & {"failure", "error"}
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
    print(f"{which}: {len(outcomes)} tests in {seconds:.0f} s", flush=True)
    shutil.rmtree(state, ignore_errors=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--files",
        nargs="*",
        default=os.environ.get("CONFORMANCE_FILES", "").split() or list(FILES),
        help="test files or folders of moto's suite (default: the platform's services)",
    )
    args = parser.parse_args(argv)
    moto, site = sdist(), extras()
    # One server after the other, not side by side: some of moto's S3 tests start their own
    # ThreadedMotoServer on a fixed port (6000, 6789), and two runs at once hang on it.
    plain = run("moto_server", moto, site, args.files)
    ours = run("moto_main", moto, site, args.files)

    def group(test: str) -> str:
        return test.rsplit("::", 1)[0].replace(".", "/") + ".py"

    table: dict[str, Counter] = {}
    for test in sorted(set(plain) | set(ours)):
        counts = table.setdefault(group(test), Counter())
        counts["tests"] += 1
        counts["passed on moto_server"] += plain.get(test) == "passed"
        counts["passed on moto_main"] += ours.get(test) == "passed"
    columns = ("tests", "passed on moto_server", "passed on moto_main")
    width = max(len(g) for g in table) if table else 10
    print(f"{'file':<{width}}  " + "  ".join(columns))
    for name, counts in table.items():
        print(f"{name:<{width}}  " + "  ".join(f"{counts[c]:>{len(c)}}" for c in columns))
    differing = sorted(t for t, o in plain.items() if o == "passed" and ours.get(t) != "passed")
    known = [t for t in differing if t in KNOWN_DIFFERENCES]
    regressions = [t for t in differing if t not in KNOWN_DIFFERENCES]
    if known:
        print(f"{len(known)} known difference(s), on purpose:")
        for test in known:
            print(f"  {test}: {KNOWN_DIFFERENCES[test]} run for real")
    both = sorted(t for t, o in plain.items() if o == "failed" and ours.get(t) == "failed")
    print(f"failing on both servers (moto's own, not counted): {len(both)}")
    if regressions:
        print(f"{len(regressions)} test(s) pass on moto_server and fail on moto_main:")
        for test in regressions:
            print(f"  {test}")
        return 1
    print("no test that passes on moto_server fails on moto_main")
    return 0


if __name__ == "__main__":
    sys.exit(main())
