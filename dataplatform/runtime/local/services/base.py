"""What every service behind the local endpoint shares: a call as the wire API made it, the
AWS error it may end in, the records a service keeps across restarts, and the server's own
clients.

A service answers some operations of one AWS API itself (where moto only pretends, the
real work runs here) and lets moto answer the rest. Its records (query executions, job
runs, steps, training jobs) live in its own folder under the platform's state folder, one
JSON file each, written whole on every change: a restart finds them, and a record that was
still running when the server stopped ends FAILED, saying so (nothing finishes a run whose
worker is gone).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY

# moto's default account: every local resource's ARN has it
ACCOUNT = "123456789012"


class AwsError(Exception):
    """An error answer in the API's own words: HTTP `status`, the error `code` botocore
    raises as ClientError's Error.Code, and extra members of the error body."""

    def __init__(
        self, code: str, message: str, status: int = 400, members: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.members = members or {}


@dataclass
class Call:
    """One request to an operation a service answers itself."""

    service: str  # the API's signing name (athena, glue, sagemaker, ...)
    operation: str  # StartQueryExecution, ...
    region: str
    body: dict  # the JSON request (JSON protocols) or {} (REST bodies are in `raw`)
    raw: bytes = b""
    path: str = ""
    query: str = ""  # the URL's query string (REST APIs' parameters)
    headers: dict[str, str] = field(default_factory=dict)
    access_key: str = ACCESS_KEY
    # the request as moto would answer it (with another body, if given): (status, headers,
    # body bytes)
    forward: Callable[..., tuple[int, list[tuple[str, str]], bytes]] = lambda body=None: (
        404,
        [],
        b"",
    )

    def moto_json(self, body: dict | None = None) -> dict:
        """moto's answer to this request (its JSON body replaced by `body`, if given), as
        JSON; AwsError if moto refused it."""
        status, _, raw = self.forward(None if body is None else json.dumps(body).encode())
        answer = json.loads(raw or b"{}")
        if status >= 400:
            code = str(answer.get("__type") or answer.get("code") or "ValidationException")
            raise AwsError(
                code.rsplit("#", 1)[-1], answer.get("message") or answer.get("Message", ""), status
            )
        return answer


def now() -> datetime:
    return datetime.now(UTC)


def epoch(value: datetime | None) -> float | None:
    """A time as the JSON protocols send it: seconds since the epoch."""
    return None if value is None else value.timestamp()


class Records:
    """A service's records of one kind, by id: in memory, and each one in its own JSON file
    under `folder`, written (atomically) on every `put`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.RLock()
        self._items: dict[str, dict] = {}
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.json")):
            try:
                self._items[path.stem] = json.loads(path.read_text())
            except ValueError:  # a torn write of a killed server: that record is gone
                path.unlink(missing_ok=True)

    def get(self, key: str) -> dict | None:
        with self._lock:
            item = self._items.get(key)
            return None if item is None else dict(item)

    def put(self, key: str, item: dict) -> dict:
        with self._lock:
            # the folder again, in case it went (a wiped state folder)
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.tmp"
            tmp.write_text(json.dumps(item, default=str))
            os.replace(tmp, self.folder / f"{key}.json")
            self._items[key] = dict(item)  # once on disk: a failed write leaves no record
            return dict(item)

    def update(self, key: str, **changes: Any) -> dict:
        with self._lock:
            item = {**self._items[key], **changes}
            return self.put(key, item)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
            (self.folder / f"{key}.json").unlink(missing_ok=True)

    def values(self) -> list[dict]:
        with self._lock:
            return [dict(v) for v in self._items.values()]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._items))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)


@dataclass
class Server:
    """What a service knows of the server it runs in: its address, the platform's state
    folder, and clients of its own APIs (through the front door: what a service writes to
    S3 or the catalog is journaled like any other request)."""

    endpoint: str  # http://127.0.0.1:<port>
    home: Path  # the platform's state folder (.dp/)
    _clients: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str, region: str) -> Any:
        import boto3
        from botocore.config import Config

        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = boto3.client(  # type: ignore[call-overload]
                    service,
                    endpoint_url=self.endpoint,
                    region_name=region,
                    aws_access_key_id=ACCESS_KEY,
                    aws_secret_access_key=SECRET_KEY,
                    config=Config(retries={"max_attempts": 2}, max_pool_connections=16),
                )
            return self._clients[key]

    def folder(self, *parts: str) -> Path:
        path = self.home.joinpath("services", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class Service:
    """The operations of one API that the local platform answers itself. Subclasses set
    `signing_name` (the API's name in request signatures), `target_prefix` (the JSON
    protocols' X-Amz-Target prefix, or None for REST APIs) and `operations` (the names they
    answer, each a method of the same name in snake case)."""

    signing_name: str = ""
    target_prefix: str | None = None
    operations: tuple[str, ...] = ()

    def __init__(self, server: Server):
        self.server = server

    def route(self, environ) -> str | None:
        """For REST APIs: the operation a request is (by method and path), or None."""
        return None

    def handle(self, call: Call) -> Any:
        return getattr(self, snake_case(call.operation))(call)

    def reset(self) -> None:
        """Forget everything (moto's reset): stop what runs, drop the records."""

    def stop(self) -> None:
        """The server is stopping: let running work end as it can."""


# CloudWatch Logs' largest event: 256 KiB, less the 26 bytes it counts per event
EVENT_MAX = 256 * 1024 - 26
BATCH_MAX_BYTES = 900 * 1024  # PutLogEvents takes at most 1 MiB


class LogStream:
    """Lines to a CloudWatch Logs stream through the server's own Logs API (its group and
    stream made on first use), sent in batches: every `batch` lines, and at least every
    `every_s` seconds while lines come (someone may be reading it). A log that cannot be
    written is said on stderr; the work it describes goes on."""

    def __init__(self, logs, group: str, stream: str, *, batch: int = 500, every_s: float = 1.0):
        self.logs, self.group, self.stream = logs, group, stream
        self.batch, self.every_s = batch, every_s
        self.pending: list[dict] = []
        self.pending_bytes = 0
        self.sent = time.monotonic()
        self.ready = False
        self._lock = threading.Lock()

    def add(self, line: str) -> LogStream:
        message = line.rstrip()[:EVENT_MAX] or " "
        with self._lock:
            self.pending.append({"timestamp": int(time.time() * 1000), "message": message})
            self.pending_bytes += len(message.encode()) + 26
            due = (
                len(self.pending) >= self.batch
                or self.pending_bytes >= BATCH_MAX_BYTES
                or time.monotonic() - self.sent >= self.every_s
            )
        if due:
            self.flush()
        return self

    def flush_if_due(self) -> None:
        if time.monotonic() - self.sent >= self.every_s:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events, self.pending, self.sent = self.pending, [], time.monotonic()
            self.pending_bytes = 0
            if not events:
                return
            try:
                if not self.ready:
                    for create in (
                        lambda: self.logs.create_log_group(logGroupName=self.group),
                        lambda: self.logs.create_log_stream(
                            logGroupName=self.group, logStreamName=self.stream
                        ),
                    ):
                        try:
                            create()
                        except self.logs.exceptions.ResourceAlreadyExistsException:
                            pass
                    self.ready = True
                self.logs.put_log_events(
                    logGroupName=self.group, logStreamName=self.stream, logEvents=events
                )
            except Exception as exc:  # noqa: BLE001 - the log is a copy; the work goes on
                print(f"log {self.group}/{self.stream}: not in CloudWatch: {exc}", file=sys.stderr)


def snake_case(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if (
            ch.isupper()
            and i
            and (
                not operation[i - 1].isupper()
                or (i + 1 < len(operation) and operation[i + 1].islower())
            )
        ):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
