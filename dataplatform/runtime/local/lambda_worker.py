"""A Lambda function's execution environment on the local platform: one long-lived Python
process per function (and code version), as Lambda keeps a warm environment, that imports
the function's handler from its own code folder (the deployment package, unzipped) and
answers one invocation at a time.

Started by runtime/local/services/lambda_.py as a script, by path, never imported as part
of the `dataplatform` package: the function must import its modules (and the `dataplatform`
library it bundles) from its own package, as it does on Lambda. So this file uses only the
standard library.

Protocol, on the socket whose descriptor is argv[1]: each message is a 4-byte big-endian
length and a JSON object. Request {"event", "request_id", "deadline_ms", "context"} ->
answer {"ok": true, "result"} or {"ok": false, "errorType", "errorMessage", "stackTrace"}.
A handler that cannot even be imported answers every invocation with its import error
(Lambda's Runtime.ImportModuleError). The handler's prints go to this process's stdout,
which the service keeps as the function's log.

Usage: python -P lambda_worker.py FD MODULE.FUNCTION CODE_DIR
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import struct
import sys
import time
import traceback

_LENGTH = struct.Struct(">I")


def _receive(connection: socket.socket) -> dict | None:
    header = b""
    while len(header) < _LENGTH.size:
        chunk = connection.recv(_LENGTH.size - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = _LENGTH.unpack(header)
    body = bytearray()
    while len(body) < length:
        chunk = connection.recv(min(1 << 20, length - len(body)))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def _send(connection: socket.socket, message: dict) -> None:
    body = json.dumps(message, default=str).encode()
    connection.sendall(_LENGTH.pack(len(body)) + body)


class Context:
    """The handler's context object, with the attributes Lambda's Python runtime gives."""

    def __init__(self, request: dict):
        given = request.get("context") or {}
        self.aws_request_id = request["request_id"]
        self.function_name = given.get("function_name", "")
        self.function_version = given.get("function_version", "$LATEST")
        self.invoked_function_arn = given.get("invoked_function_arn", "")
        self.memory_limit_in_mb = str(given.get("memory_limit_in_mb", 128))
        self.log_group_name = given.get("log_group_name", "")
        self.log_stream_name = given.get("log_stream_name", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(request["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "ok": False,
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def main(argv: list[str]) -> None:
    descriptor, handler_spec, code_dir = int(argv[0]), argv[1], argv[2]
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    connection = socket.socket(fileno=descriptor)
    module_name, _, function_name = handler_spec.rpartition(".")
    handler = None
    import_error: dict | None = None
    try:
        handler = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)
    except Exception as exc:  # noqa: BLE001 - every invocation reports it, as Lambda does
        import_error = _error(exc, "Runtime.ImportModuleError")
    while True:
        request = _receive(connection)
        if request is None:
            return
        print(f"START RequestId: {request['request_id']} Version: $LATEST", flush=True)
        started = time.perf_counter()
        if handler is None:
            answer = import_error or {"ok": False, "errorType": "Runtime.HandlerNotFound"}
        else:
            try:
                answer = {"ok": True, "result": handler(request["event"], Context(request))}
            except Exception as exc:  # noqa: BLE001 - the invocation's error, not ours
                traceback.print_exc()
                answer = _error(exc)
        elapsed = (time.perf_counter() - started) * 1000
        print(f"END RequestId: {request['request_id']}", flush=True)
        print(f"REPORT RequestId: {request['request_id']}\tDuration: {elapsed:.2f} ms", flush=True)
        sys.stderr.flush()
        try:
            _send(connection, answer)
        except (TypeError, ValueError) as exc:  # a result JSON cannot carry
            _send(connection, _error(exc, "Runtime.MarshalError"))


if __name__ == "__main__":
    main(sys.argv[1:])
