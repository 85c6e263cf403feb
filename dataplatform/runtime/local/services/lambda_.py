"""Lambda on the local endpoint: functions run, and event source mappings poll their
streams, without Docker.

moto keeps the functions (CreateFunction, their code and configuration) but runs one only
in a Docker image this machine cannot pull, and it either refuses a Kinesis consumer as an
event source or invokes the function through Docker for every record put. Here:

- Invoke (RequestResponse, Event, DryRun) runs the function's handler in its execution
  environment: a long-lived Python process per function and code version
  (runtime/local/lambda_worker.py), started in the function's unzipped deployment package
  with the function's environment variables, the local endpoint for every AWS client it
  makes (AWS_ENDPOINT_URL), and its timeout. One invocation at a time per function; its
  log is kept under the state folder (and the last 4 KB go back with LogType=Tail).
- Event source mappings from Kinesis (a stream, or an enhanced fan-out consumer of one) are
  this service's: each enabled mapping is polled in the background from its starting
  position, in batches of BatchSize, through the function; a partial batch response
  (ReportBatchItemFailures) moves the mapping's position to the first failed record, an
  error retries the batch (bisected when BisectBatchOnFunctionError) up to
  MaximumRetryAttempts, after which the batch's description goes to the on-failure
  destination (SQS) and the mapping moves on. Positions are kept per shard across
  restarts. Other sources (SQS, DynamoDB streams) are refused with a clear error rather
  than accepted and never polled.

`settle(function_or_uuid)` (the local platform's primitive behind `dp score`) waits until
the mapping has caught up with its stream.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY
from dataplatform.runtime.local.services.base import (
    ACCOUNT,
    AwsError,
    Call,
    LogStream,
    Records,
    Service,
    epoch,
    now,
)
from dataplatform.runtime.local.services.dispatch import RawResponse

WORKER = Path(__file__).resolve().parents[1] / "lambda_worker.py"
_LENGTH = struct.Struct(">I")
_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
_MAPPINGS = re.compile(r"^/2015-03-31/event-source-mappings/?(?P<uuid>[^/]*)/?$")
SETTLE_PATH = "/_dp/lambda/settle"
LOG_TAIL_BYTES = 4096
POLL_INTERVAL_S = 0.5
KINESIS_READ_LIMIT = 10_000


class FunctionError(Exception):
    """The handler raised (or timed out): Lambda's FunctionError Unhandled."""

    def __init__(self, payload: dict):
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload


def _not_found(what: str) -> AwsError:
    return AwsError("ResourceNotFoundException", what, 404, {"Type": "User"})


# ----------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class Function:
    """What a function's execution environment is made of (moto's record of it)."""

    name: str
    arn: str
    region: str
    handler: str
    code: bytes
    code_sha: str
    environment: dict[str, str]
    timeout: int
    memory: int

    @property
    def identity(self) -> str:
        settings = json.dumps([self.handler, self.environment, self.timeout], sort_keys=True)
        return hashlib.sha256(f"{self.arn}/{self.code_sha}/{settings}".encode()).hexdigest()[:16]


def find_function(region: str, name: str, qualifier: str | None = None) -> Function:
    from moto.awslambda.models import lambda_backends

    try:
        fn = lambda_backends[ACCOUNT][region].get_function(unquote(name), qualifier)
    except Exception:  # noqa: BLE001 - moto's UnknownFunctionException and kin
        raise _not_found(
            f"Function not found: arn:aws:lambda:{region}:{ACCOUNT}:function:{unquote(name)}"
        ) from None
    code = getattr(fn, "code_bytes", b"") or b""
    if not code:
        raise AwsError(
            "InvalidParameterValueException",
            f"{fn.function_name}: the local platform runs .zip deployment packages only",
        )
    return Function(
        name=fn.function_name,
        arn=fn.function_arn,
        region=region,
        handler=fn.handler or "",
        code=code,
        code_sha=hashlib.sha256(code).hexdigest(),
        environment={str(k): str(v) for k, v in (fn.environment_vars or {}).items()},
        timeout=int(fn.timeout or 3),
        memory=int(fn.memory_size or 128),
    )


class Worker:
    """One function's execution environment: its process and the socket to it."""

    def __init__(self, function: Function, home: Path, endpoint: str):
        self.function = function
        self.lock = threading.Lock()
        root = home / function.name / function.identity
        self.code_dir = root / "task"
        if not self.code_dir.is_dir():
            staging = root / f".staging-{os.getpid()}-{threading.get_ident()}"
            with zipfile.ZipFile(io.BytesIO(function.code)) as archive:
                archive.extractall(staging)
            try:
                staging.rename(self.code_dir)
            except OSError:  # another thread unpacked it first
                import shutil

                shutil.rmtree(staging, ignore_errors=True)
        self.log_path = home / function.name / "function.log"
        parent, child = socket.socketpair()
        self.connection = parent
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            **function.environment,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": function.region,
            "AWS_DEFAULT_REGION": function.region,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(self.code_dir),
            "_HANDLER": function.handler,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PYTHONPATH", None)  # the function imports from its own package, as on Lambda
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    str(WORKER),
                    str(child.fileno()),
                    function.handler,
                    str(self.code_dir),
                ],
                cwd=self.code_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
            )
        child.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: Any, request_id: str) -> tuple[Any, bytes]:
        """The handler's answer to `event` and the log lines of this invocation; raises
        FunctionError for a handler's error or a timeout (the environment is then gone)."""
        fn = self.function
        with self.lock:
            start = self.log_path.stat().st_size if self.log_path.exists() else 0
            deadline = time.time() + fn.timeout
            request = {
                "event": event,
                "request_id": request_id,
                "deadline_ms": int(deadline * 1000),
                "context": {
                    "function_name": fn.name,
                    "invoked_function_arn": fn.arn,
                    "memory_limit_in_mb": fn.memory,
                    "log_group_name": f"/aws/lambda/{fn.name}",
                    "log_stream_name": f"local/{fn.identity}",
                },
            }
            body = json.dumps(request, default=str).encode()
            self.connection.settimeout(fn.timeout + 5)
            try:
                self.connection.sendall(_LENGTH.pack(len(body)) + body)
                answer = self._receive(deadline)
            except (OSError, TimeoutError, ValueError) as exc:
                self.stop()
                message = (
                    f"Task timed out after {fn.timeout:.2f} seconds"
                    if time.time() >= deadline
                    else f"the function's environment stopped: {exc}"
                )
                raise FunctionError(
                    {
                        "errorType": "Sandbox.Timedout"
                        if "timed out" in message
                        else "Runtime.ExitError",
                        "errorMessage": message,
                    }
                ) from None
            with self.log_path.open("rb") as log:
                log.seek(start)
                logged = log.read()
        if not answer.get("ok"):
            raise FunctionError(
                {k: answer[k] for k in ("errorType", "errorMessage", "stackTrace") if k in answer}
            )
        return answer.get("result"), logged

    def _receive(self, deadline: float) -> dict:
        def exactly(size: int) -> bytes:
            data = b""
            while len(data) < size:
                self.connection.settimeout(max(0.05, deadline - time.time()))
                chunk = self.connection.recv(min(1 << 20, size - len(data)))
                if not chunk:
                    raise OSError("the execution environment closed")
                data += chunk
            return data

        (length,) = _LENGTH.unpack(exactly(_LENGTH.size))
        return json.loads(exactly(length))

    def stop(self) -> None:
        try:
            self.connection.close()
        except OSError:
            pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


# ----------------------------------------------------------------------------- the service


class Lambda(Service):
    signing_name = "lambda"
    operations = (
        "SettleMappings",
        "Invoke",
        "CreateEventSourceMapping",
        "GetEventSourceMapping",
        "UpdateEventSourceMapping",
        "DeleteEventSourceMapping",
        "ListEventSourceMappings",
    )

    def __init__(self, server):
        super().__init__(server)
        self.home = server.folder("lambda")
        self.mappings = Records(server.folder("lambda", "mappings"))
        self.positions = Records(server.folder("lambda", "positions"))
        self._workers: dict[str, Worker] = {}
        self._log_streams: dict[tuple[str, str, str], LogStream] = {}
        self._in_flight: dict[str, int] = {}  # asynchronous invocations running, by function
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._busy: dict[str, bool] = {}  # mapping -> a batch is in hand
        self._poller = threading.Thread(target=self._poll_forever, name="lambda-esm", daemon=True)
        self._poller.start()

    # --- routing (REST)
    def route(self, environ) -> str | None:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if method == "POST" and path == SETTLE_PATH:
            return "SettleMappings"
        if method == "POST" and _INVOKE.match(path):
            return "Invoke"
        match = _MAPPINGS.match(path)
        if match:
            has_id = bool(match.group("uuid"))
            return {
                ("POST", False): "CreateEventSourceMapping",
                ("GET", False): "ListEventSourceMappings",
                ("GET", True): "GetEventSourceMapping",
                ("PUT", True): "UpdateEventSourceMapping",
                ("DELETE", True): "DeleteEventSourceMapping",
            }.get((method, has_id))
        return None

    # --- Invoke
    def invoke(self, call: Call) -> RawResponse:
        match = _INVOKE.match(call.path)
        assert match is not None  # route() matched it
        query = parse_qs(call.query)
        function = find_function(call.region, match.group("name"), _first(query, "Qualifier"))
        kind = call.headers.get("x-amz-invocation-type", "RequestResponse")
        try:
            event = json.loads(call.raw) if call.raw.strip() else {}
        except ValueError:
            raise AwsError(
                "InvalidRequestContentException", "Could not parse request body into json"
            ) from None
        if kind == "DryRun":
            return RawResponse(204, b"")
        if kind == "Event":
            threading.Thread(target=self._invoke_async, args=(function, event), daemon=True).start()
            return RawResponse(202, b"", [("x-amzn-RequestId", str(uuid.uuid4()))])
        request_id = str(uuid.uuid4())
        headers = [
            ("Content-Type", "application/json"),
            ("X-Amz-Executed-Version", "$LATEST"),
            ("x-amzn-RequestId", request_id),
        ]
        try:
            result, logged = self.run(function, event, request_id)
            body = json.dumps(result, default=str).encode()
        except FunctionError as error:
            result, logged = error.payload, b""
            body = json.dumps(error.payload).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        if call.headers.get("x-amz-log-type") == "Tail":
            headers.append(
                ("X-Amz-Log-Result", base64.b64encode(logged[-LOG_TAIL_BYTES:]).decode())
            )
        return RawResponse(200, body, headers)

    def run(self, function: Function, event: Any, request_id: str | None = None):
        """Invoke `function` with `event` in its execution environment: (result, log). The
        invocation's log lines also go to CloudWatch Logs, `/aws/lambda/<function>`, as
        Lambda sends them (`aws logs tail` shows them; `dp score` reads the scorer's)."""
        worker = self._worker(function)
        request_id = request_id or str(uuid.uuid4())
        try:
            result, logged = worker.invoke(event, request_id)
        except FunctionError as error:
            self._log(function, json.dumps(error.payload).encode())
            raise
        self._log(function, logged)
        return result, logged

    def _log(self, function: Function, logged: bytes) -> None:
        try:
            self._put_log(function, logged)
        except Exception as exc:  # noqa: BLE001 - the invocation stands; its log is kept on disk
            print(
                f"lambda {function.name}: CloudWatch Logs refused its log: {exc}", file=sys.stderr
            )

    def _put_log(self, function: Function, logged: bytes) -> None:
        lines = [line for line in logged.decode("utf-8", "replace").splitlines() if line]
        if not lines:
            return
        group = f"/aws/lambda/{function.name}"
        stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{function.identity}"
        with self._lock:
            log = self._log_streams.get((function.region, group, stream))
            if log is None:
                log = LogStream(self.server.client("logs", function.region), group, stream)
                self._log_streams[(function.region, group, stream)] = log
        for line in lines:
            log.add(line)
        log.flush()

    def invoke_arn(self, arn_or_name: str, event: Any, region: str) -> Any:
        """For the other services (Firehose's transform): the function's answer, or
        FunctionError."""
        result, _ = self.run(find_function(region, arn_or_name), event)
        return result

    def invoke_event(self, arn: str, event: Any, region: str) -> None:
        """An asynchronous invocation by another service (an EventBridge rule's target):
        counted as in flight at once, run in the background."""
        try:
            function = find_function(region, arn)
        except AwsError:
            return  # a target whose function is gone: EventBridge drops the event too
        self._start_async(function, event)

    def _start_async(self, function: Function, event: Any) -> None:
        with self._lock:
            self._in_flight[function.name] = self._in_flight.get(function.name, 0) + 1
        threading.Thread(target=self._invoke_async, args=(function, event), daemon=True).start()

    def _invoke_async(self, function: Function, event: Any) -> None:
        try:
            for _attempt in range(3):  # Lambda retries an asynchronous invocation twice
                try:
                    self.run(function, event)
                    return
                except FunctionError:
                    time.sleep(1)
        finally:
            with self._lock:
                self._in_flight[function.name] -= 1

    def _worker(self, function: Function) -> Worker:
        with self._lock:
            worker = self._workers.get(function.name)
            if worker is not None and (
                worker.function.identity != function.identity or not worker.alive()
            ):
                worker.stop()
                worker = None
            if worker is None:
                worker = Worker(function, self.home, self.server.endpoint)
                self._workers[function.name] = worker
            return worker

    # --- event source mappings
    def create_event_source_mapping(self, call: Call) -> RawResponse:
        body = json.loads(call.raw or b"{}")
        source = body.get("EventSourceArn") or ""
        if ":kinesis:" not in source:
            raise AwsError(
                "InvalidParameterValueException",
                f"EventSourceArn {source!r}: the local platform polls Kinesis streams and "
                "their consumers only",
            )
        function = find_function(call.region, body.get("FunctionName") or "")
        self._kinesis(call.region).describe_stream_summary(StreamName=_stream_name(source))
        mapping_id = str(uuid.uuid4())
        record = {
            "UUID": mapping_id,
            "EventSourceMappingArn": (
                f"arn:aws:lambda:{call.region}:{ACCOUNT}:event-source-mapping:{mapping_id}"
            ),
            "Region": call.region,
            "EventSourceArn": source,
            "FunctionArn": function.arn,
            "StartingPosition": body.get("StartingPosition") or "TRIM_HORIZON",
            "StartingPositionTimestamp": body.get("StartingPositionTimestamp"),
            "BatchSize": int(body.get("BatchSize") or 100),
            "MaximumBatchingWindowInSeconds": int(body.get("MaximumBatchingWindowInSeconds") or 0),
            "ParallelizationFactor": int(body.get("ParallelizationFactor") or 1),
            "FunctionResponseTypes": body.get("FunctionResponseTypes") or [],
            "BisectBatchOnFunctionError": bool(body.get("BisectBatchOnFunctionError")),
            "MaximumRetryAttempts": int(
                -1 if body.get("MaximumRetryAttempts") is None else body["MaximumRetryAttempts"]
            ),
            "MaximumRecordAgeInSeconds": int(body.get("MaximumRecordAgeInSeconds") or -1),
            "DestinationConfig": body.get("DestinationConfig") or {},
            "State": "Enabled" if body.get("Enabled", True) else "Disabled",
            "StateTransitionReason": "USER_INITIATED",
            "LastModified": epoch(now()),
            "Created": epoch(now()),
            "LastProcessingResult": "No records processed",
        }
        self.mappings.put(mapping_id, record)
        return RawResponse(202, json.dumps(_described(record)).encode(), _json())

    def get_event_source_mapping(self, call: Call) -> RawResponse:
        return RawResponse(200, json.dumps(_described(self._mapping(call))).encode(), _json())

    def update_event_source_mapping(self, call: Call) -> RawResponse:
        record = self._mapping(call)
        body = json.loads(call.raw or b"{}")
        changes = {
            k: body[k]
            for k in (
                "BatchSize",
                "MaximumBatchingWindowInSeconds",
                "FunctionResponseTypes",
                "BisectBatchOnFunctionError",
                "MaximumRetryAttempts",
                "MaximumRecordAgeInSeconds",
                "DestinationConfig",
            )
            if k in body
        }
        if "Enabled" in body:
            changes["State"] = "Enabled" if body["Enabled"] else "Disabled"
        if body.get("FunctionName"):
            changes["FunctionArn"] = find_function(call.region, body["FunctionName"]).arn
        record = self.mappings.update(record["UUID"], LastModified=epoch(now()), **changes)
        return RawResponse(202, json.dumps(_described(record)).encode(), _json())

    def delete_event_source_mapping(self, call: Call) -> RawResponse:
        record = self._mapping(call)
        self.mappings.delete(record["UUID"])
        self.positions.delete(record["UUID"])
        return RawResponse(
            202, json.dumps(_described({**record, "State": "Deleting"})).encode(), _json()
        )

    def list_event_source_mappings(self, call: Call) -> RawResponse:
        query = parse_qs(call.query)
        function, source = _first(query, "FunctionName"), _first(query, "EventSourceArn")
        found = []
        for record in self.mappings.values():
            if record["Region"] != call.region:
                continue
            if source and record["EventSourceArn"] != source:
                continue
            if function and not (
                record["FunctionArn"] == function or record["FunctionArn"].endswith(f":{function}")
            ):
                continue
            found.append(_described(record))
        return RawResponse(200, json.dumps({"EventSourceMappings": found}).encode(), _json())

    def _mapping(self, call: Call) -> dict:
        match = _MAPPINGS.match(call.path)
        mapping_id = match.group("uuid") if match else ""
        record = self.mappings.get(mapping_id)
        if record is None:
            raise _not_found(f"The resource you requested does not exist. (UUID {mapping_id})")
        return record

    # --- polling
    def _kinesis(self, region: str):
        return self.server.client("kinesis", region)

    def _poll_forever(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            for record in self.mappings.values():
                if record.get("State") != "Enabled":
                    continue
                try:
                    self.poll_once(record["UUID"])
                except Exception as exc:  # noqa: BLE001 - reported on the mapping, polled again
                    self._note(record["UUID"], f"PROBLEM: {type(exc).__name__}: {exc}")

    def poll_once(self, mapping_id: str) -> int:
        """Everything new on the mapping's stream through its function; the records read."""
        with self._lock:
            if self._busy.get(mapping_id):
                return 0
            self._busy[mapping_id] = True
        try:
            return self._poll(mapping_id)
        finally:
            with self._lock:
                self._busy[mapping_id] = False

    def _poll(self, mapping_id: str) -> int:
        record = self.mappings.get(mapping_id)
        if record is None or record.get("State") != "Enabled":
            return 0
        region = record["Region"]
        kinesis = self._kinesis(region)
        stream = _stream_name(record["EventSourceArn"])
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        stream_arn = summary["StreamARN"]
        created = str(summary.get("StreamCreationTimestamp"))
        positions = self.positions.get(mapping_id) or {}
        if positions.get("_stream_created") not in (None, created):
            positions = {}  # the stream was made again: its numbers start over
        positions["_stream_created"] = created
        read = 0
        shards = sorted(s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"])
        for shard in shards:
            after = positions.get(shard)
            start: dict = {"ShardIteratorType": "TRIM_HORIZON"}
            if after is not None:
                start = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "StartingSequenceNumber": after,
                }
            elif record["StartingPosition"] in ("LATEST", "AT_TIMESTAMP"):
                # LATEST: what arrives once the mapping exists (its creation time)
                stamp = record.get("StartingPositionTimestamp") or record["Created"]
                start = {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": stamp}
            iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, **start)[
                "ShardIterator"
            ]
            pending: list[dict] = []
            while iterator:
                page = kinesis.get_records(ShardIterator=iterator, Limit=KINESIS_READ_LIMIT)
                pending += page.get("Records", [])
                iterator = page.get("NextShardIterator")
                if not page.get("Records") or page.get("MillisBehindLatest", 0) == 0:
                    break
            size = int(record["BatchSize"])
            for begin in range(0, len(pending), size):
                batch = pending[begin : begin + size]
                done = self._deliver(record, batch, shard, stream_arn)
                read += len(batch)
                positions[shard] = done
                self.positions.put(mapping_id, positions)
        if read:
            self._note(mapping_id, "OK")
        return read

    def _deliver(self, mapping: dict, batch: list[dict], shard: str, stream_arn: str) -> str:
        """Run a batch through the function as the mapping says; the sequence number the
        shard's position moves to (the batch's last, once done or given up)."""
        function = find_function(mapping["Region"], mapping["FunctionArn"])
        reports_items = "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or [])
        retries = int(mapping.get("MaximumRetryAttempts", -1))
        queue: list[list[dict]] = [batch]
        while queue:
            part = queue.pop(0)
            attempt = 0
            while part:
                event = _kinesis_event(part, shard, stream_arn, mapping["Region"])
                try:
                    result, _ = self.run(function, event)
                    failed = _first_failure(result, part) if reports_items else None
                    if failed is None:
                        break
                    part = part[failed:]  # retried from the first record it could not do
                    error = "partial batch failure"
                except FunctionError as exc:
                    error = exc.payload.get("errorMessage") or "function error"
                    if mapping.get("BisectBatchOnFunctionError") and len(part) > 1:
                        middle = len(part) // 2
                        queue[:0] = [part[:middle], part[middle:]]
                        part = []
                        break
                attempt += 1
                if retries >= 0 and attempt > retries:
                    self._on_failure(mapping, part, shard, stream_arn, error)
                    self._note(mapping["UUID"], f"PROBLEM: {error}")
                    break
                time.sleep(min(2.0, 0.1 * 2**attempt))
        return batch[-1]["SequenceNumber"]

    def _on_failure(self, mapping, part: list[dict], shard: str, stream_arn: str, error: str):
        destination = ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        if not destination or ":sqs:" not in destination:
            return
        sqs = self.server.client("sqs", mapping["Region"])
        queue_name = destination.rsplit(":", 1)[-1]
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(
                {
                    "requestContext": {
                        "functionArn": mapping["FunctionArn"],
                        "condition": "RetryAttemptsExhausted",
                        "approximateInvokeCount": int(mapping.get("MaximumRetryAttempts", 0)) + 1,
                    },
                    "responseContext": {"functionError": error},
                    "KinesisBatchInfo": {
                        "shardId": shard,
                        "startSequenceNumber": part[0]["SequenceNumber"],
                        "endSequenceNumber": part[-1]["SequenceNumber"],
                        "batchSize": len(part),
                        "streamArn": stream_arn,
                    },
                }
            ),
        )

    def _note(self, mapping_id: str, result: str) -> None:
        if self.mappings.get(mapping_id) is not None:
            self.mappings.update(mapping_id, LastProcessingResult=result)

    def settle_mappings(self, call: Call) -> RawResponse:
        """`POST /_dp/lambda/settle {"FunctionName"}`: the local platform's primitive behind
        `dp score` (AWS has no such call: there the mapping is simply left to run). Each
        enabled mapping of the function polled until it has caught up with its stream;
        their descriptions."""
        body = json.loads(call.raw or b"{}")
        name, region = body.get("FunctionName") or "", body.get("Region") or call.region
        # its asynchronous invocations (an event rule's) first
        short = name.rsplit(":", 1)[-1]
        deadline = time.monotonic() + 3600
        while self._in_flight.get(short) and time.monotonic() < deadline:
            time.sleep(0.05)
        settled = [
            self.settle(record["UUID"])
            for record in self.mappings.values()
            if record["Region"] == region
            and record.get("State") == "Enabled"
            and (record["FunctionArn"] == name or record["FunctionArn"].endswith(f":{name}"))
        ]
        return RawResponse(200, json.dumps({"EventSourceMappings": settled}).encode(), _json())

    def settle(self, mapping_id: str) -> dict:
        """Poll the mapping now, until nothing new is left on its stream; its description."""
        while self.poll_once(mapping_id) or self._busy.get(mapping_id):
            time.sleep(0.05)
        record = self.mappings.get(mapping_id)
        if record is None:
            raise _not_found(f"no event source mapping {mapping_id}")
        return _described(record)

    def reset(self) -> None:
        with self._lock:
            for worker in self._workers.values():
                worker.stop()
            self._workers.clear()
            self._log_streams.clear()
        self.mappings.clear()
        self.positions.clear()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for worker in self._workers.values():
                worker.stop()


# ----------------------------------------------------------------------------- helpers


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _json() -> list[tuple[str, str]]:
    return [("Content-Type", "application/json")]


def _stream_name(arn: str) -> str:
    """A stream's name from its ARN or one of its consumers' ARNs."""
    resource = arn.split(":", 5)[-1]  # stream/NAME[/consumer/CONSUMER:TIMESTAMP]
    return resource.split("/")[1]


def _kinesis_event(records: list[dict], shard: str, stream_arn: str, region: str) -> dict:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.get("PartitionKey", ""),
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": (
                        r["ApproximateArrivalTimestamp"].timestamp()
                        if hasattr(r.get("ApproximateArrivalTimestamp"), "timestamp")
                        else None
                    ),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/local",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


def _first_failure(result: Any, part: list[dict]) -> int | None:
    """Where a partial batch response says to retry from (its earliest failed item)."""
    failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return None
    ids = [r["SequenceNumber"] for r in part]
    positions = [ids.index(f["itemIdentifier"]) for f in failures if f.get("itemIdentifier") in ids]
    if not positions:
        return 0  # an identifier not in the batch: Lambda retries the whole batch
    return min(positions)


def _described(record: dict) -> dict:
    hidden = ("Region", "Created")
    return {k: v for k, v in record.items() if k not in hidden and v is not None}
