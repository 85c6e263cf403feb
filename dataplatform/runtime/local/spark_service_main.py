"""The local platform's Spark driver: one long-lived SparkSession (local[2], s3a:// against
the moto server) that runs the deployed Glue job and EMR step scripts one after another.

Started by `spark_service.ensure()` as a script, by path, never imported as part of the
`dataplatform` package: the jobs must import `dataplatform` from the library zip they are
given (`--py-files`, Glue's `--extra-py-files`), as they do on Glue and EMR, and not from
this checkout. So this file uses only the standard library and pyspark.

Why: a `spark-submit` per job paid for a new JVM, a new SparkContext and a cold JIT every
time (the 1,283-row baskets curate took 34 s, most of it start-up and first-time code
generation). Here each job gets its own `SparkSession.newSession()` (its own SQL
configuration, temporary views and UDFs; the SparkContext, its Hadoop configuration and
the warm JVM are shared), made the default session, so the script's own
`SparkSession.builder.getOrCreate()` returns it.

Protocol (multiprocessing.connection on 127.0.0.1, an auth key from the state file):
request {"script", "argv", "name", "run_id", "conf"} -> {"started": <offset in the log>} ... the
job runs, its Python and JVM output appended to this process's log ... -> {"exit_code",
"log_end"}. One job at a time; a request that arrives meanwhile waits its turn.
{"stop": true} ends the process. It also ends by itself when the moto server it serves is
gone, or after `idle_timeout_s` without a job.

Usage: python -P spark_service_main.py CONFIG_JSON   (-P: this folder, which holds a
`platform.py`, must not shadow the standard library's)
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
import traceback
from multiprocessing.connection import Listener
from pathlib import Path

WATCH_INTERVAL_S = 2.0


def _alive(pid: int) -> bool:
    # spark_service._alive's twin: this script cannot import the dataplatform package.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_size() -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    return os.fstat(sys.stdout.fileno()).st_size


def _make_default(session) -> None:
    """`session` becomes what SparkSession.builder.getOrCreate() returns, in Python and JVM."""
    from pyspark.sql import SparkSession

    SparkSession._instantiatedSession = session
    SparkSession._activeSession = session
    session._jvm.SparkSession.setDefaultSession(session._jsparkSession)
    session._jvm.SparkSession.setActiveSession(session._jsparkSession)


def run_script(base, request: dict) -> int:
    """Run one job script as `__main__` with its arguments; its exit code."""
    session = base.newSession()
    for key, value in (request.get("conf") or {}).items():  # the job's --conf, its own
        session.conf.set(key, value)
    _make_default(session)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [request["script"], *request["argv"]]
    base.sparkContext.setJobGroup(request.get("run_id", ""), request.get("name", ""))
    print(
        f"dp spark: {request.get('name', '')} run {request.get('run_id', '')}: "
        f"{request['script']} {' '.join(request['argv'])}",
        flush=True,
    )
    try:
        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:  # sys.exit("message"): Python prints it and exits 1
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 -- any failure is the job's, reported as its exit code
        traceback.print_exc()
        code = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if base.sparkContext._jsc is not None:
            session.catalog.clearCache()
            _make_default(base)
    return code


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(config.get("master", "local[2]")).appName(
        "dp-local-spark"
    )
    for key, value in config["conf"].items():
        builder = builder.config(key, value)
    base = builder.getOrCreate()
    for py_file in config["py_files"]:
        base.sparkContext.addPyFile(py_file)

    listener = Listener(("127.0.0.1", 0), authkey=bytes.fromhex(config["authkey"]))
    state = {
        "pid": os.getpid(),
        "port": listener.address[1],
        "authkey": config["authkey"],
        "fingerprint": config["fingerprint"],
        "log": config["log"],
    }
    state_file = Path(config["state_file"])
    temporary = state_file.with_suffix(".tmp")
    temporary.touch(mode=0o600)  # it holds the auth key
    temporary.write_text(json.dumps(state))
    temporary.replace(state_file)  # atomic: a reader sees no half-written state
    print(f"dp spark: ready on 127.0.0.1:{state['port']} (pid {state['pid']})", flush=True)

    last_used = [time.monotonic()]
    busy = threading.Event()

    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            moto_gone = not _alive(config["moto_pid"])
            idle = not busy.is_set() and time.monotonic() - last_used[0] > config["idle_timeout_s"]
            if moto_gone or idle:
                print(
                    f"dp spark: stopping ({'the moto server is gone' if moto_gone else 'idle'})",
                    flush=True,
                )
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        connection = listener.accept()
        try:
            request = connection.recv()
        except (EOFError, OSError):
            connection.close()
            continue
        if request.get("stop"):
            connection.send({"stopped": True})
            connection.close()
            break
        busy.set()
        try:
            connection.send({"started": _log_size()})
            code = run_script(base, request)
            connection.send({"exit_code": code, "log_end": _log_size()})
        except (EOFError, OSError):
            pass  # the client went away; the job's outcome stays in the log
        finally:
            connection.close()
            busy.clear()
            last_used[0] = time.monotonic()
        if base.sparkContext._jsc is None:  # the job stopped the SparkContext: start afresh
            break
    try:
        if json.loads(state_file.read_text()).get("pid") == os.getpid():
            state_file.unlink()
    except (OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
