"""Every `dp` command with every class of bad input ends with a one-line reason and a
non-zero exit, never a traceback: unknown names, missing or wrong files, bad SQL and
arguments, a bad spec, the platform not running; and two commands at once on one
platform are either safe (both ingests delivered exactly once, one server for two `up`s)
or refused clearly (a second curate of the same job, as Glue refuses it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from dataplatform.cli import app
from dataplatform.naming import Names
from dataplatform.runtime.local import locks, processes, server
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests import raw_zone

SPEC = str(REPO_ROOT / "spec")
PLATFORM = load_spec(REPO_ROOT / "spec")
NAMES = Names.for_environment(PLATFORM, PLATFORM.environment("dev"), account="123456789012")
SETTINGS = PLATFORM.environment("dev")
runner = CliRunner()


def run(home, *args):
    result = runner.invoke(
        app, list(args), env={"DP_HOME": str(home), "DP_DEBUG": ""}, terminal_width=200
    )
    return result


def assert_one_line_refusal(result, *, expect: str | None = None):
    """A non-zero exit, no exception escaped, no traceback, and the reason on stderr in one
    line (naming `expect`)."""
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    if expect:
        assert expect.lower() in lines[0].lower(), lines[0]


def event_lines(start: int, count: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "event_id": f"t{i}",
                "customer_id": f"c{i % 5}",
                "event_type": "call",
                "event_time": "2026-11-20T10:00:00Z",
                "duration_s": i,
            }
        ).encode()
        + b"\n"
        for i in range(start, start + count)
    )


@pytest.fixture(scope="module")
def running(empty_platform):
    home, _ = empty_platform
    assert run(home, "local", "up", "--spec", SPEC).exit_code == 0
    return home


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    (folder / "not_gzip.jsonl.gz").write_bytes(b"this is not gzip")
    (folder / "good.jsonl").write_bytes(event_lines(0, 5))
    import shutil

    broken_spec = folder / "broken_spec"  # the project's spec with one bad setting
    shutil.copytree(SPEC, broken_spec)
    platform_yaml = broken_spec / "platform.yaml"
    text = platform_yaml.read_text()
    assert "    retention_hours: 24\n" in text
    platform_yaml.write_text(
        text.replace("    retention_hours: 24\n", "    retention_hours: a day\n", 1)
    )
    (folder / "a_directory").mkdir()
    return folder


# (arguments, what the one line must say): with the platform running
WITH_PLATFORM = [
    (["ingest", "nope", "--file", "{files}/good.jsonl"], "nope"),
    (["ingest", "telecom_events", "--file", "{files}/missing.jsonl"], "no such file"),
    (["ingest", "telecom_events", "--file", "{files}/a_directory"], "no such file"),
    (["ingest", "telecom_events", "--file", "{files}/not_gzip.jsonl.gz"], "gzip"),
    (["ingest", "telecom_events", "--file", "{files}/good.jsonl", "--from-line", "0"], "from 1"),
    (["ingest", "house_sales", "--file", "{files}/good.jsonl", "--from-line", "3"], "batch"),
    (["crawl", "nope"], "nope"),
    (["curate", "nope"], "nope"),
    (["curate", "telecom_events", "--dates", "yesterday"], "yesterday"),
    (["features", "nope"], "nope"),
    (["features", "customer_features", "--as-of", "soon"], "soon"),
    (["pipeline", "run", "--as-of", "customer_features"], "TABLE=YYYY-MM-DD"),
    (["pipeline", "run", "--as-of", "nope=2026-11-01"], "builds no feature table 'nope'"),
    (["pipeline", "run", "--as-of", "customer_features=soon"], "not a date"),
    (["emr", "run", "nope"], "nope"),
    (["emr", "run", "frequent_itemsets", "--arg", "min-support"], "min-support"),
    (["query", "SELEC 1"], None),
    (["query", "SELECT * FROM no_such_table"], "no_such_table"),
    (["query", "SELECT * FROM read_csv_auto('/etc/passwd')"], None),
    (["query", "SELECT 1", "--output", "xml"], "xml"),
    (["query", "SELECT msisdn FROM telecom_events", "--as", "analyst"], "msisdn"),
    (
        ["query", "SELECT count(*) FROM mldp_dev_raw.telecom_events", "--as", "analyst"],
        "Lake Formation",
    ),
    (["query", "SELECT 1", "--as", "nobody"], "nobody"),
    (["train", "nope"], "nope"),
    (["serve", "house_prices"], "no serving"),
    (["monitor", "house_prices"], "no monitoring"),
    (["monitor", "churn", "--days", "0"], "--days"),
    (["monitor", "churn", "--output", "xml"], "xml"),
    (["monitor", "churn"], "dp features customer_features"),  # nothing built yet
    (["score", "nope"], "nope"),
    (["score", "churn"], "dp serve churn"),  # not served yet
    (["serve", "churn"], "dp models approve churn"),  # nothing approved yet
    (["models", "approve", "churn", "7"], "no version 7"),
    (["flagged", "churn", "--output", "xml"], "xml"),
    (["--target", "mars", "names"], "mars"),
    (["--env", "staging", "names"], "staging"),
    (["check", "--spec", "{files}/broken_spec"], "retention_hours"),
    (["names", "--spec", "{files}/missing_spec"], "missing_spec"),
]


@pytest.mark.parametrize("args, expect", WITH_PLATFORM, ids=[" ".join(a) for a, _ in WITH_PLATFORM])
def test_bad_input_is_one_line_and_a_non_zero_exit(running, files, args, expect):
    args = [a.format(files=files) for a in args]
    if not any(a == "--spec" for a in args) and args[0] not in ("--target", "--env"):
        args += ["--spec", SPEC]
    assert_one_line_refusal(run(running, *args), expect=expect)


NEEDS_THE_PLATFORM = [
    ["ingest", "telecom_events", "--file", "{files}/good.jsonl"],
    ["crawl", "telecom_events"],
    ["curate", "telecom_events"],
    ["features", "customer_features"],
    ["emr", "run", "frequent_itemsets"],
    ["emr", "status"],
    ["query", "SELECT 1"],
    ["train", "churn"],
    ["models"],
    ["models", "approve", "churn", "1"],
    ["serve", "churn"],
    ["score", "churn"],
    ["flagged", "churn"],
    ["monitor", "churn"],
    ["pipeline", "run"],
    ["local", "status"],
]


@pytest.mark.parametrize("args", NEEDS_THE_PLATFORM, ids=[" ".join(a) for a in NEEDS_THE_PLATFORM])
def test_every_command_without_a_running_platform_says_to_start_it(tmp_path, files, args):
    args = [a.format(files=files) for a in args] + ["--spec", SPEC]
    assert_one_line_refusal(run(tmp_path / "never-started", *args), expect="dp local up")


def test_a_server_that_died_is_reported_as_not_running(tmp_path):
    info, _ = server.up(tmp_path)
    os.kill(info.pid, 9)
    processes.exited(info.pid)
    assert_one_line_refusal(
        run(tmp_path, "query", "SELECT 1", "--spec", SPEC), expect="dp local up"
    )
    server.down(tmp_path, wipe=True)


# ----------------------------------------------------------------------------- two at once


def dp_process(home, *args) -> subprocess.Popen:
    env = dict(os.environ, DP_HOME=str(home), COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-c", "from dataplatform.cli import main; main()", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_ingests_at_once_deliver_each_record_exactly_once(running, tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(event_lines(10_000, 3_000))
    second.write_bytes(event_lines(20_000, 3_000))
    processes = [
        dp_process(running, "ingest", "telecom_events", "--file", str(f)) for f in (first, second)
    ]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, out + err
        assert "Traceback" not in out + err
    ids, _ = raw_zone.raw_lines(
        server.client("s3", server.require(running), NAMES.region),
        NAMES.raw_bucket,
        "telecom_events",
    )
    sent = [f"t{i}" for i in (*range(10_000, 13_000), *range(20_000, 23_000))]
    assert sorted(i for i in ids if i in set(sent)) == sorted(sent)  # each once


def test_two_local_ups_at_once_start_one_server(tmp_path):
    processes = [dp_process(tmp_path, "local", "up", "--spec", SPEC) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    try:
        assert [p.returncode for p in processes] == [0, 0], outputs
        info = server.require(tmp_path)
        started = [o for o, _ in outputs if "platform started" in o]
        reused = [o for o, _ in outputs if "already running" in o]
        assert len(started) == 1 and len(reused) == 1, outputs
        assert all(f"pid {info.pid}" in " ".join(o.split()) for o, _ in outputs)
    finally:
        server.down(tmp_path, wipe=True)


def test_a_second_curate_of_a_running_job_is_refused_as_glue_refuses_it(running):
    """A run started by another client (plain boto3) is RUNNING: `dp curate` is refused as
    Glue refuses it (MaxConcurrentRuns 1), in one line."""
    glue = server.client("glue", server.require(running), SETTINGS.region)
    job = NAMES.curate_job("telecom_events")
    first = glue.start_job_run(JobName=job)["JobRunId"]
    try:
        result = run(running, "curate", "telecom_events", "--spec", SPEC)
        assert_one_line_refusal(result, expect="ConcurrentRunsExceededException")
    finally:
        for _ in range(1200):
            if glue.get_job_run(JobName=job, RunId=first)["JobRun"]["JobRunState"] not in (
                "STARTING",
                "RUNNING",
            ):
                break
            time.sleep(0.1)


def test_a_second_demo_at_once_is_refused(running):
    with locks.exclusive(running / "demo.lock"):
        result = run(running, "demo", "--spec", SPEC)
    assert_one_line_refusal(result, expect="another `dp demo` is running")
