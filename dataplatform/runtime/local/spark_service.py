"""The local platform's Spark, as a service: one long-lived driver process
(`spark_service_main.py`) that runs every Glue job and EMR step script of the local
platform in a warm JVM, instead of a `spark-submit` per job.

`run()` starts the driver on first use (as a `spark-submit` would start a JVM) and reuses
it afterwards, across `dp` commands, while its configuration is the same: the Spark
settings, the jars, the library zip's contents and the moto server it points at make a
fingerprint, and a driver with another fingerprint (the library changed, say) is replaced.
It runs on 127.0.0.1 with an auth key, in the state folder; `dp local down` stops it, and
it stops by itself when its moto server is gone or after half an hour without work.

A job's output (its prints and Spark's log) streams to a progress callback and is kept in
the job's own log file, as with spark-submit.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Client
from pathlib import Path

from dataplatform.runtime.local import spark_jars

MAIN = Path(__file__).with_name("spark_service_main.py")
STATE_FILE = "spark.json"
LOG_FILE = "spark.log"
STARTUP_TIMEOUT_S = 180
IDLE_TIMEOUT_S = 1800


class SparkServiceError(RuntimeError):
    """The driver could not be started, or went away during a job."""


@dataclass(frozen=True)
class Driver:
    pid: int
    port: int
    authkey: str
    fingerprint: str
    log: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # our own child that exited: reap it, or a zombie would look alive
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:
        return True


def _zip_digest(path: Path) -> str:
    """The contents of a zip (names and CRCs), not its bytes: rebuilt zips with the same
    files keep the driver."""
    with zipfile.ZipFile(path) as archive:
        entries = sorted((info.filename, info.CRC) for info in archive.infolist())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def fingerprint(
    conf: dict[str, str], jars: list[Path], py_files: list[Path], env: dict[str, str], moto_pid: int
) -> str:
    """`<settings digest>-<libraries digest>`: the two halves are compared apart, so a job
    that brings no library can run on the driver whatever libraries it holds."""
    payload = {
        "conf": conf,
        "jars": [(str(j), j.stat().st_size) for j in jars],
        "env": env,
        "moto_pid": moto_pid,
        "python": sys.executable,
        "main": _file_digest(MAIN),
    }
    libraries = [(str(p), _zip_digest(p)) for p in py_files]
    return "-".join(
        hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()
        for part in (payload, libraries)
    )


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_state(state_dir: Path) -> Driver | None:
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
        return Driver(**state)
    except (OSError, ValueError, TypeError):
        return None


def running(state_dir: Path) -> Driver | None:
    driver = _read_state(state_dir)
    return driver if driver is not None and _alive(driver.pid) else None


def ensure(
    state_dir: Path,
    *,
    conf: dict[str, str],
    jars: list[Path],
    py_files: list[Path],
    env: dict[str, str],
    moto_pid: int,
    progress: Callable[[str], None] = lambda line: None,
) -> Driver:
    """The running driver with this configuration, or a new one (replacing any other)."""
    wanted = fingerprint(conf, jars, py_files, env, moto_pid)
    driver = running(state_dir)
    if driver is not None and driver.fingerprint == wanted:
        return driver
    if driver is not None and not py_files:
        # A job without libraries (no --extra-py-files) only needs the same settings; the
        # driver's libraries stay importable to it, which a script that does not import them
        # never notices, and it saves a driver restart (~10 s) before and after it.
        if driver.fingerprint.split("-")[0] == wanted.split("-")[0]:
            return driver
    if driver is not None:
        progress(
            "dp spark: the Spark configuration or the job library changed; restarting the driver"
        )
        stop(state_dir)
    return _start(
        state_dir,
        conf=conf,
        jars=jars,
        py_files=py_files,
        env=env,
        moto_pid=moto_pid,
        fingerprint=wanted,
        progress=progress,
    )


def _start(
    state_dir: Path,
    *,
    conf,
    jars,
    py_files,
    env,
    moto_pid: int,
    fingerprint: str,
    progress: Callable[[str], None],
) -> Driver:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    authkey = secrets.token_hex(16)
    log_path = state_dir / LOG_FILE
    config_path = state_dir / "spark-config.json"
    config = {
        "conf": {**conf, **spark_jars.driver_class_path_conf(jars)},
        "py_files": [str(p) for p in py_files],
        "authkey": authkey,
        "fingerprint": fingerprint,
        "moto_pid": moto_pid,
        "idle_timeout_s": IDLE_TIMEOUT_S,
        "state_file": str(state_dir / STATE_FILE),
        "log": str(log_path),
    }
    config_path.touch(mode=0o600)
    config_path.chmod(0o600)  # the auth key is in it
    config_path.write_text(json.dumps(config))
    progress("dp spark: starting the local Spark driver (once; later jobs reuse it) ...")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-u", "-P", str(MAIN), str(config_path)],
            cwd=state_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # no PYTHONPATH: a checkout it names would shadow the library zip's dataplatform
            # (the one the jobs must import, with its spec.json), as `-P` keeps this
            # script's folder out
            env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **env},
            start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        state = _read_state(state_dir)
        if state is not None and state.pid == process.pid:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                _kill(process.pid)  # and the JVM it started
            raise SparkServiceError(
                f"the local Spark driver did not start: {_tail(log_path)} (log: {log_path})"
            )
        time.sleep(0.2)
    return state


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def run(
    driver: Driver,
    *,
    script: Path,
    argv: list[str],
    name: str,
    run_id: str,
    log_path: Path,
    conf: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> int:
    """Run one script on the driver; its exit code. `conf` are Spark SQL settings for the
    job's own session (a Glue job's `--conf`). Its output goes to `log_path` and, line by
    line, to `progress`."""
    try:
        connection = Client(("127.0.0.1", driver.port), authkey=bytes.fromhex(driver.authkey))
    except (OSError, EOFError) as exc:
        raise SparkServiceError(
            f"cannot reach the local Spark driver (pid {driver.pid}): {exc}"
        ) from exc
    with connection, _LogFollower(Path(driver.log), log_path, progress) as follower:
        try:
            connection.send(
                {
                    "script": str(script),
                    "argv": argv,
                    "name": name,
                    "run_id": run_id,
                    "conf": conf or {},
                }
            )
            follower.seek(connection.recv()["started"])
            while not connection.poll(0.25):
                follower.forward()
                if not _alive(driver.pid):
                    raise EOFError
            result = connection.recv()
        except (EOFError, OSError) as exc:
            follower.forward(final=True)
            raise SparkServiceError(
                f"the local Spark driver (pid {driver.pid}) stopped during {name}; see {log_path}"
            ) from exc
        except KeyboardInterrupt:  # a job cannot be cancelled halfway: stop the driver
            _kill(driver.pid)
            raise
        follower.forward(until=result["log_end"], final=True)
    return int(result["exit_code"])


class _LogFollower:
    """Copies the driver's log from an offset into a job's log, line by line to progress."""

    def __init__(self, driver_log: Path, job_log: Path, progress: Callable[[str], None]):
        self._source, self._target = driver_log.open("rb"), job_log.open("w")
        self._progress, self._pending = progress, b""

    def __enter__(self) -> _LogFollower:
        return self

    def __exit__(self, *exc) -> None:
        self._source.close()
        self._target.close()

    def seek(self, offset: int) -> None:
        self._source.seek(offset)

    def forward(self, *, until: int | None = None, final: bool = False) -> None:
        size = -1 if until is None else max(0, until - self._source.tell())
        # Spark redraws its stage progress bar with \r: each redraw is a line here.
        self._pending += self._source.read(size).replace(b"\r", b"\n")
        *lines, self._pending = self._pending.split(b"\n")
        if final and self._pending:
            lines, self._pending = lines + [self._pending], b""
        for raw in lines:
            if not raw.strip():
                continue
            line = raw.decode("utf-8", errors="replace")
            self._target.write(line + "\n")
            self._progress(line)


def stop(state_dir: Path) -> bool:
    """Stop the driver of this state folder; True if one was running."""
    driver = running(state_dir)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if driver is None:
        return False
    try:
        with Client(
            ("127.0.0.1", driver.port), authkey=bytes.fromhex(driver.authkey)
        ) as connection:
            connection.send({"stop": True})
            connection.poll(5)
    except (OSError, EOFError, ValueError):
        pass
    for _ in range(50):
        if not _alive(driver.pid):
            return True
        time.sleep(0.1)
    _kill(driver.pid)
    return True


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the driver and its JVM (one session, started by us)
    except (ProcessLookupError, PermissionError):
        pass
