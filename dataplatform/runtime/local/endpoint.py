"""A local SageMaker endpoint: an HTTP server on 127.0.0.1 that answers the SageMaker Runtime
InvokeEndpoint API for one or more endpoints, each serving an extracted model.tar.gz with
the same serving functions SageMaker's scikit-learn container runs (training/inference.py:
model_fn once, then input_fn, predict_fn and output_fn per request). moto has no
sagemaker-runtime, so this is the local data plane of an endpoint; a plain boto3 client works:

    boto3.client("sagemaker-runtime", endpoint_url=running.url, region_name=...,
                 aws_access_key_id="x", aws_secret_access_key="x").invoke_endpoint(
        EndpointName=..., Body=..., ContentType="application/json", Accept="application/json")

The contract (botocore's sagemaker-runtime model, rest-json):
  POST /endpoints/{EndpointName}/invocations, the body as it is, ContentType and Accept in
  the Content-Type and Accept headers. The answer: 200 with output_fn's body, `Content-Type`
  (what output_fn produced), `x-Amzn-Invoked-Production-Variant` (AllTraffic) and
  `x-amzn-RequestId`. Errors carry `x-amzn-ErrorType: <Code>:...` and a JSON body with
  `message`, which botocore turns into a ClientError with that code:
    400 ValidationError "Endpoint <name> of account <account> not found." (as SageMaker says)
    424 ModelError, when a serving function raised: Message, OriginalStatusCode (the
        InferenceError's status: 400 bad input, 415 ContentType, 406 Accept; 500 anything
        else), OriginalMessage (the error's message), LogStreamArn
    404 UnknownOperationException for any other path. GET /ping answers 200 and the
        endpoints' names (the readiness check of a background server).

`serve(models)` runs it in a thread of this process (a context manager). For a server that
outlives a command, `python -m dataplatform.runtime.local.endpoint --state DIR --model
NAME=MODEL_DIR ...` serves until SIGTERM with its pid and port in DIR/endpoint.json; `up`,
`status` and `down` manage it as runtime/local/server.py manages the moto server.

Which model an endpoint serves is the registry's to say (`latest_approved_package`: the
highest Approved version of the model's package group), fetched with `fetch_model`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

from dataplatform import paths
from dataplatform.naming import Names
from dataplatform.paths import REPO_ROOT
from dataplatform.runtime.local import locks, processes

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never 0.0.0.0: the endpoint answers anyone who can reach it
INFERENCE_SOURCE = REPO_ROOT / "training" / "inference.py"
VARIANT = "AllTraffic"  # the production variant's name (the SageMaker SDK's default)
ACCOUNT = "123456789012"  # moto's account, as the local platform's (platform.LOCAL_ACCOUNT)
REGION = "us-east-1"
# SageMaker's x-amzn-ErrorType values: "<Code>:<namespace>"; botocore keeps the code
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.sagemaker/"
# CreateEndpoint's EndpointName pattern
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
STATE_FILE = "endpoint.json"
LOG_FILE = "endpoint.log"
STARTUP_TIMEOUT_S = 120  # importing scikit-learn and loading the models
APPROVED = "Approved"


# ----------------------------------------------------------------------------- serving code


def inference_module() -> ModuleType:
    """training/inference.py (the container's serving functions), imported by path: the
    `training` folder is SageMaker's source_dir, not part of the package."""
    name = "dp_inference"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, INFERENCE_SOURCE)
        if spec is None or spec.loader is None:  # pragma: no cover - the file is in the repo
            raise ImportError(f"cannot import {INFERENCE_SOURCE}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


@dataclass
class Deployed:
    """An endpoint: its name, the model directory and what model_fn loaded from it."""

    name: str
    model_dir: Path
    model: Any = field(repr=False)


def check_endpoint_name(name: str) -> str:
    if not ENDPOINT_NAME.match(name):
        raise ValueError(
            f"invalid endpoint name {name!r}: SageMaker allows 1-63 letters, digits and "
            "hyphens, starting and ending with a letter or digit"
        )
    return name


def load(name: str, model_dir: Path) -> Deployed:
    """model_fn on an extracted model.tar.gz; ValueError naming the endpoint if it fails."""
    model_dir = Path(model_dir)
    check_endpoint_name(name)
    try:
        model = inference_module().model_fn(str(model_dir))
    except Exception as exc:
        raise ValueError(
            f"endpoint {name}: cannot load the model in {model_dir}: {type(exc).__name__}: {exc}"
        ) from exc
    return Deployed(name, model_dir, model)


# ----------------------------------------------------------------------------- HTTP


class _Answer(Exception):
    """An error response: HTTP status, the error code for x-amzn-ErrorType, the body."""

    def __init__(self, status: int, code: str, body: dict[str, Any]):
        super().__init__(body.get("message") or body.get("Message"))
        self.status, self.code, self.body = status, code, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, error: _Answer) -> None:
        self._send(
            error.status,
            json.dumps(error.body).encode(),
            {
                "Content-Type": "application/json",
                "x-amzn-ErrorType": f"{error.code}:{ERROR_NAMESPACE}",
            },
        )

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/ping":
            body = json.dumps({"endpoints": self.server.owner.endpoints}).encode()
            self._send(200, body, {"Content-Type": "application/json"})
            return
        self._unknown()

    def do_POST(self) -> None:
        body = self._body()
        parts = urlsplit(self.path).path.split("/")
        if len(parts) != 4 or parts[0] or parts[1] != "endpoints" or parts[3] != "invocations":
            self._unknown()
            return
        try:
            content_type, answer = self.server.owner.invoke(
                unquote(parts[2]),
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Accept"),
            )
        except _Answer as error:
            self._send_error(error)
            return
        self._send(
            200,
            answer,
            {"Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": VARIANT},
        )

    def _unknown(self) -> None:
        message = f"no operation {self.command} {urlsplit(self.path).path}"
        self._send_error(_Answer(404, "UnknownOperationException", {"message": message}))

    def do_PUT(self) -> None:
        self._body()
        self._unknown()

    do_DELETE = do_PATCH = do_PUT


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalEndpoint

    def __init__(self, address: tuple[str, int], owner: LocalEndpoint):
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the kept-alive connections, so that no request is answered after stop()."""
        with self.connections_lock:
            open_ = list(self.connections)
        for connection in open_:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LocalEndpoint:
    """Running endpoints, answering InvokeEndpoint at `url` until `stop()`."""

    def __init__(
        self,
        models: dict[str, Path],
        *,
        port: int = 0,
        account: str = ACCOUNT,
        region: str = REGION,
    ):
        self.account, self.region = account, region
        self._lock = threading.Lock()
        self._deployed: dict[str, Deployed] = {}
        for name, model_dir in models.items():
            self.deploy(name, model_dir)
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._server = _HTTPServer((HOST, port), self)
        self.host: str = HOST
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"local-endpoint-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoints(self) -> dict[str, str]:
        """Endpoint name -> the model directory it serves."""
        with self._lock:
            return {name: str(d.model_dir) for name, d in sorted(self._deployed.items())}

    def deploy(self, name: str, model_dir: Path) -> None:
        """Serve `model_dir` as endpoint `name` (replacing what it served), as UpdateEndpoint
        does: requests already running finish on the old model."""
        deployed = load(name, model_dir)
        with self._lock:
            self._deployed[name] = deployed

    def remove(self, name: str) -> None:
        with self._lock:
            self._deployed.pop(name, None)

    def invoke(
        self, name: str, body: bytes, content_type: str | None, accept: str | None
    ) -> tuple[str, bytes]:
        """(content type, body) of the answer; _Answer for an error."""
        with self._lock:
            deployed = self._deployed.get(name)
        if deployed is None:
            raise _Answer(
                400,
                "ValidationError",
                {"message": f"Endpoint {name} of account {self.account} not found."},
            )
        inference = inference_module()
        try:
            data = inference.input_fn(body, content_type or inference.JSON)
            prediction = inference.predict_fn(data, deployed.model)
            answer = inference.output_fn(prediction, accept or inference.JSON)
        except Exception as exc:  # noqa: BLE001 - any failure of the model is a ModelError
            status = int(getattr(exc, "status_code", 500))
            message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            if status >= 500:
                log.error("endpoint %s: %s", name, traceback.format_exc())
            raise _Answer(424, "ModelError", self._model_error(name, status, message)) from exc
        if isinstance(answer, tuple):
            payload, answer_type = answer[0], answer[1]
        else:
            payload, answer_type = answer, accept or inference.JSON
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return answer_type, bytes(payload)

    def _model_error(self, name: str, status: int, message: str) -> dict[str, Any]:
        kind = "client" if 400 <= status < 500 else "server"
        group = f"/aws/sagemaker/Endpoints/{name}"
        return {
            "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
            "Message": f'Received {kind} error ({status}) from primary with message "{message}".',
            "OriginalStatusCode": status,
            "OriginalMessage": message,
            "LogStreamArn": f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}",
        }

    def serve_forever(self) -> None:
        """Block until stop() (from another thread or a signal handler)."""
        while not self._stopped and self._thread.is_alive():
            self._thread.join(timeout=0.2)

    def stop(self) -> None:
        """Stop answering: the port is closed and kept-alive connections are ended."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=10)

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    models: dict[str, Path], *, port: int = 0, account: str = ACCOUNT, region: str = REGION
) -> LocalEndpoint:
    """Serve each `models` directory (an extracted model.tar.gz) as the endpoint named by
    its key, in a thread, on 127.0.0.1 (`port` 0: a free one). Use it as a context manager,
    or call `.stop()`."""
    return LocalEndpoint(models, port=port, account=account, region=region)


# ----------------------------------------------------------------------------- the registry


def _model_name(model: Any) -> str:
    return model if isinstance(model, str) else model.name


def latest_approved_package(sagemaker, names: Names, model: Any) -> tuple[int, str] | None:
    """(version, ModelDataUrl) of the highest Approved version in the model's package group
    (`model`: a spec Model or its name); None when no version is approved or there is no
    group yet."""
    group = names.model_package_group(_model_name(model))
    best: tuple[int, str] | None = None
    try:
        for page in sagemaker.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group, ModelApprovalStatus=APPROVED
        ):
            for summary in page.get("ModelPackageSummaryList", []):
                version = summary.get("ModelPackageVersion")
                if summary.get("ModelApprovalStatus") != APPROVED or version is None:
                    continue
                if best is None or version > best[0]:
                    best = (int(version), summary["ModelPackageArn"])
    except sagemaker.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return None
        raise
    if best is None:
        return None
    detail = sagemaker.describe_model_package(ModelPackageName=best[1])
    containers = detail.get("InferenceSpecification", {}).get("Containers", [])
    if not containers or not containers[0].get("ModelDataUrl"):
        raise ValueError(f"model package {best[1]} has no ModelDataUrl to serve")
    return best[0], containers[0]["ModelDataUrl"]


def fetch_model(s3, model_data_url: str, into_dir: Path) -> Path:
    """Download s3://bucket/key (a model.tar.gz) and extract it into `into_dir` (created;
    use a fresh folder, e.g. one per package version); returns `into_dir`. Members that
    would land outside it are refused (tarfile's data filter); an archive without
    model.joblib is a ValueError."""
    if not model_data_url.startswith("s3://") or "/" not in model_data_url[len("s3://") :]:
        raise ValueError(f"not an S3 URL of a model.tar.gz: {model_data_url!r}")
    bucket, key = model_data_url[len("s3://") :].split("/", 1)
    into_dir = Path(into_dir)
    into_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into_dir.parent, prefix=".fetch-") as scratch:
        archive = Path(scratch) / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(into_dir, filter="data")
    if not (into_dir / "model.joblib").is_file():
        raise ValueError(f"{model_data_url} has no model.joblib: not a model of training/train.py")
    return into_dir


# ----------------------------------------------------------------------------- background


@dataclass(frozen=True)
class EndpointInfo:
    """A background endpoint server, as DIR/endpoint.json records it."""

    pid: int
    port: int
    started_at: float
    endpoints: dict[str, str]  # name -> model directory

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _state_file(directory: Path) -> Path:
    return Path(directory) / STATE_FILE


def _write_state(directory: Path, info: EndpointInfo) -> None:
    """Atomically (a reader sees no file or the whole file)."""
    path = _state_file(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(asdict(info)))
    os.replace(scratch, path)


def _read_state(directory: Path) -> EndpointInfo | None:
    try:
        return EndpointInfo(**json.loads(_state_file(directory).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def status(directory: Path | None = None) -> EndpointInfo | None:
    """The running background server of `directory` (default: the state folder), or None
    (a stale state file is removed)."""
    directory = Path(directory or paths.state_dir())
    info = _read_state(directory)
    if info is None:
        return None
    if processes.alive(info.pid) and processes.answers(f"{info.url}/ping"):
        return info
    _state_file(directory).unlink(missing_ok=True)
    return None


def up(
    models: dict[str, Path],
    directory: Path | None = None,
    *,
    account: str = ACCOUNT,
    region: str = REGION,
) -> tuple[EndpointInfo, bool]:
    """Start the background server with `models` (name -> model directory) unless one is
    serving exactly these; one serving others is replaced. (info, started_now)."""
    directory = Path(directory or paths.state_dir())
    wanted = {name: str(Path(d).resolve()) for name, d in models.items()}
    for name in wanted:
        check_endpoint_name(name)
    with locks.exclusive(directory / "endpoint.lock"):
        running = status(directory)
        if running is not None:
            if running.endpoints == wanted:
                return running, False
            _down(directory)
        directory.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "dataplatform.runtime.local.endpoint",
            "--state",
            str(directory),
            "--account",
            account,
            "--region",
            region,
        ]
        for name, model_dir in wanted.items():
            command += ["--model", f"{name}={model_dir}"]
        with (directory / LOG_FILE).open("ab") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the command that started it
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            info = _read_state(directory)
            if (
                info is not None
                and info.pid == process.pid
                and processes.answers(f"{info.url}/ping")
            ):
                return info, True
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                process.wait()
                raise RuntimeError(f"the local endpoint did not start; see {directory / LOG_FILE}")
            time.sleep(0.1)


def down(directory: Path | None = None) -> bool:
    """Stop the background server; True if one was running."""
    directory = Path(directory or paths.state_dir())
    with locks.exclusive(directory / "endpoint.lock"):
        return _down(directory)


def _down(directory: Path) -> bool:
    info = _read_state(directory)
    _state_file(directory).unlink(missing_ok=True)
    if info is None or not processes.alive(info.pid):
        return False
    processes.stop(info.pid)
    return True


def _model_argument(value: str) -> tuple[str, Path]:
    name, sep, model_dir = value.partition("=")
    if not sep or not name or not model_dir:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL_DIR, not {value!r}")
    return name, Path(model_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="local SageMaker endpoints on 127.0.0.1")
    parser.add_argument("--state", type=Path, required=True, help="writes endpoint.json here")
    parser.add_argument(
        "--model",
        type=_model_argument,
        action="append",
        default=[],
        metavar="NAME=MODEL_DIR",
        help="an endpoint and its extracted model.tar.gz (repeatable)",
    )
    parser.add_argument("-p", "--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--account", default=ACCOUNT)
    parser.add_argument("--region", default=REGION)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    running = serve(dict(args.model), port=args.port, account=args.account, region=args.region)
    # `down` sends SIGTERM: stop serving (from another thread: the handler runs in this one)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=running.stop).start())
    info = EndpointInfo(
        pid=os.getpid(), port=running.port, started_at=time.time(), endpoints=running.endpoints
    )
    _write_state(args.state, info)
    print(f"local endpoints {', '.join(info.endpoints) or '(none)'} on {running.url}", flush=True)
    try:
        running.serve_forever()
    finally:
        running.stop()
        if _read_state(args.state) == info:
            _state_file(args.state).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
