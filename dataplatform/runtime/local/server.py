"""The local platform's control plane: a moto server bound to 127.0.0.1 on a free port,
started in the background so it outlives one `dp` command, with its address and PID in
`.dp/server.json`, stopped by `dp local down`. What it holds is journaled in `.dp/state/`
(durable.py) and comes back when it starts again, after a `dp local down` or a crash;
`dp local down --wipe` is the way to start over."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dataplatform import paths
from dataplatform.runtime.local import locks, processes

REGION_ENV = "AWS_DEFAULT_REGION"
# moto accepts any credentials; fixed ones keep every client and Spark's s3a identical.
ACCESS_KEY = "local"
SECRET_KEY = "local-secret"
# a server answers within a second; one that replays a long journal first takes longer
STARTUP_TIMEOUT_S = 600
STATE_FOLDER = "state"


class PlatformNotRunning(RuntimeError):
    def __init__(self, state_dir: Path):
        super().__init__(
            f"the local platform is not running (no live server in {state_dir}/); "
            "start it with `dp local up`"
        )


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    started_at: float

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


state_dir = paths.state_dir  # `.dp/` in the current directory, or $DP_HOME


def _state_file(directory: Path) -> Path:
    return directory / "server.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(directory: Path | None = None) -> ServerInfo | None:
    """The running server, or None (a stale state file is removed)."""
    directory = directory or state_dir()
    path = _state_file(directory)
    if not path.is_file():
        return None
    info = ServerInfo(**json.loads(path.read_text()))
    if processes.alive(info.pid) and processes.answers(f"{info.endpoint}/moto-api/"):
        return info
    path.unlink(missing_ok=True)
    return None


def require(directory: Path | None = None) -> ServerInfo:
    directory = directory or state_dir()
    info = status(directory)
    if info is None:
        raise PlatformNotRunning(directory)
    return info


def up(directory: Path | None = None) -> tuple[ServerInfo, bool]:
    """Start the server unless one is running; returns (info, started_now). Two commands
    starting it at once get the same server (one starts it, the other waits and reuses it)."""
    directory = directory or state_dir()
    with locks.exclusive(directory / "server.lock"):
        return _up(directory)


def _up(directory: Path) -> tuple[ServerInfo, bool]:
    running = status(directory)
    if running:
        return running, False
    directory.mkdir(parents=True, exist_ok=True)
    if not has_state(directory):
        # the server starts empty: state kept beside it for an earlier one no longer applies
        _remove_server_bound_state(directory)
        shutil.rmtree(directory / SERVICES_STATE, ignore_errors=True)
    port = free_port()
    log = (directory / "moto.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dataplatform.runtime.local.moto_main",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "--state",
            str(directory / STATE_FOLDER),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the dp command that started it
    )
    info = ServerInfo(pid=process.pid, port=port, started_at=time.time())
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not processes.answers(f"{info.endpoint}/moto-api/"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"moto server did not start on 127.0.0.1:{port}; see {directory / 'moto.log'}"
            )
        time.sleep(0.1)
    _state_file(directory).write_text(json.dumps(asdict(info)))
    return info, True


def journal_stats(info: ServerInfo) -> dict:
    """{entries, replayed, path} of the server's journal (moto_main's /_dp/stats)."""
    with urllib.request.urlopen(f"{info.endpoint}/_dp/stats", timeout=5) as response:
        return json.loads(response.read())["journal"]


def has_state(directory: Path | None = None) -> bool:
    """Whether a server started here comes back with data (a non-empty journal)."""
    journal = (directory or state_dir()) / STATE_FOLDER / "journal.bin"
    return journal.is_file() and journal.stat().st_size > 0


def down(directory: Path | None = None, *, wipe: bool = False) -> bool:
    """Stop the server (and the Spark driver that serves it); True if one was running.
    Its data stays in the state folder for the next start, unless `wipe`."""
    directory = directory or state_dir()
    with locks.exclusive(directory / "server.lock"):
        return _down(directory, wipe)


def _down(directory: Path, wipe: bool) -> bool:
    from dataplatform.runtime.local import spark_service

    spark_service.stop(directory)
    path = _state_file(directory)
    was_running = False
    if path.is_file():
        info = ServerInfo(**json.loads(path.read_text()))
        path.unlink(missing_ok=True)
        if processes.alive(info.pid):
            was_running = True
            # it closes its journal, fsynced; a SIGKILL loses nothing answered either
            processes.stop(info.pid)
    if wipe:
        shutil.rmtree(directory / STATE_FOLDER, ignore_errors=True)
        shutil.rmtree(directory / SERVICES_STATE, ignore_errors=True)
        _remove_server_bound_state(directory)
    return was_running


# State beside the server that describes what the server holds (the logs and reports of
# its job runs and steps): it lives and goes with the server's journal.
SERVER_BOUND_STATE = ("runs",)
# The services' records (runtime/local/services/): a running server empties them itself on
# moto's reset; they are deleted with the journal when the platform is wiped.
SERVICES_STATE = "services"


def _remove_server_bound_state(directory: Path) -> None:
    for name in SERVER_BOUND_STATE:
        shutil.rmtree(directory / name, ignore_errors=True)


def reset(directory: Path | None = None) -> ServerInfo:
    """Empty the running server (every service's state and its journal, through moto's
    own reset: the services' records too, SageMaker's endpoints and training jobs among
    them, Firehose's shard checkpoints) and the run logs kept beside it, keeping the server
    and its Spark driver running. Provision again before use."""
    directory = directory or state_dir()
    info = require(directory)
    request = urllib.request.Request(f"{info.endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"moto did not reset: HTTP {response.status}")
    _remove_server_bound_state(directory)
    return info


def session(info: ServerInfo, region: str, *, credentials: Mapping[str, Any] | None = None):
    """A boto3 Session whose every client talks to the local platform: what the AWS target's
    code is given to run against it (`--target local`). Its clients get the local endpoint
    unless one is asked for explicitly, whatever AWS_ENDPOINT_URL or a profile says (a
    client of the real AWS cannot come out of it by accident); `credentials` (an
    AssumeRole's, say) sign the requests instead of the platform's fixed keys."""
    import boto3
    import botocore.session

    endpoint = info.endpoint

    class LocalBotocoreSession(botocore.session.Session):
        def create_client(self, service_name, *args, **kwargs):
            kwargs["endpoint_url"] = kwargs.get("endpoint_url") or endpoint
            return super().create_client(service_name, *args, **kwargs)

    keys = credentials or {}
    return boto3.Session(
        aws_access_key_id=keys.get("AccessKeyId", ACCESS_KEY),
        aws_secret_access_key=keys.get("SecretAccessKey", SECRET_KEY),
        aws_session_token=keys.get("SessionToken"),
        region_name=region,
        botocore_session=LocalBotocoreSession(),
    )


def client(service: str, info: ServerInfo, region: str):
    """A boto3 client of the local platform (never the real AWS: the endpoint is fixed)."""
    import boto3

    # boto3-stubs types client() for literal service names only; any name is passed on here
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=info.endpoint,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
