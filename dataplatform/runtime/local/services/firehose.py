"""Firehose on the local endpoint: a delivery stream with a Kinesis source delivers in the
background, whoever put the records, as Firehose does.

moto keeps the delivery streams' definitions (and answers DirectPut's PutRecord by writing
at once, which this leaves as moto does it) but never reads a Kinesis source. Here every
delivery stream whose source is a Kinesis stream has a reader (runtime/local/firehose.py's
`Delivery`) that takes what is new on the stream every half second, runs it through the
delivery stream's transform Lambda (the Lambda service's execution environment, with the
processor's retries), and writes the buffer out when the delivery stream's buffering hints
say (its size, or its interval since the buffer's first record): gzip, the key's prefixes
with their `!{partitionKeyFromLambda:...}`, `!{timestamp:...}` and
`!{firehose:error-output-type}` rendered, SSE-KMS with the delivery stream's key,
ProcessingFailed records in Firehose's error format under the error prefix. A delivery's
position is checkpointed per shard after each write, so a restart redelivers what was
buffered but never written, under the same keys.

`POST /_dp/firehose/flush {"DeliveryStreamName"}` (the local platform's primitive behind
`dp ingest`: AWS has no such call, and on AWS Firehose delivers within its interval) reads
the source to its end and writes the buffer now; it answers what was delivered since the
last flush it answered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import asdict
from typing import Any

from dataplatform.runtime.local.firehose import (
    Delivery,
    DeliveryConfig,
    DeliverySummary,
    InvocationFailed,
)
from dataplatform.runtime.local.services.base import ACCOUNT, AwsError, Call, Service
from dataplatform.runtime.local.services.dispatch import RawResponse

POLL_INTERVAL_S = 0.5
FLUSH_PATH = "/_dp/firehose/flush"


class Firehose(Service):
    signing_name = "firehose"
    operations = ("Flush",)

    def __init__(self, server, lambdas):
        super().__init__(server)
        self.lambdas = lambdas  # the Lambda service: the processors run there
        self.checkpoints = server.folder("firehose", "checkpoints")
        self._deliveries: dict[tuple[str, str], tuple[str, Delivery]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._problems: dict[tuple[str, str], str] = {}
        self._thread = threading.Thread(target=self._run, name="firehose", daemon=True)
        self._thread.start()

    def route(self, environ) -> str | None:
        if environ.get("PATH_INFO") == FLUSH_PATH and environ.get("REQUEST_METHOD") == "POST":
            return "Flush"
        return None

    # --- the primitive
    def flush(self, call: Call) -> RawResponse:
        body = json.loads(call.raw or b"{}")
        name, region = body.get("DeliveryStreamName"), body.get("Region") or call.region
        if not name:
            raise AwsError("InvalidArgumentException", "DeliveryStreamName is required")
        key = (region, name)
        found = self._delivery(region, name)
        if found is None:
            raise AwsError(
                "ResourceNotFoundException",
                f"no delivery stream {name} with a Kinesis source in {region}",
                400,
            )
        with self._lock_of(key):
            delivery = self._delivery(region, name)
            assert delivery is not None
            delivery.read()
            delivery.flush()
            summary, delivery.summary = delivery.summary, DeliverySummary()
            summary.checkpoint = dict(delivery.checkpoint)
        answer = asdict(summary)
        answer["failed_records"] = [
            base64.b64encode(r).decode("ascii") for r in summary.failed_records
        ]
        answer.pop("rejected", None)
        return RawResponse(200, json.dumps(answer).encode(), [("Content-Type", "application/json")])

    # --- the background
    def _lock_of(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def _streams(self) -> list[tuple[str, str]]:
        from moto.firehose.models import firehose_backends

        found = []
        for region, backend in list(firehose_backends[ACCOUNT].items()):
            for name, stream in list(backend.delivery_streams.items()):
                if getattr(stream, "delivery_stream_type", "") == "KinesisStreamAsSource":
                    found.append((region, name))
        return found

    def _delivery(self, region: str, name: str) -> Delivery | None:
        """The delivery stream's reader; a new one when its definition changed (the old
        one's buffer is written first)."""
        firehose = self.server.client("firehose", region)
        try:
            description = firehose.describe_delivery_stream(DeliveryStreamName=name)[
                "DeliveryStreamDescription"
            ]
        except firehose.exceptions.ResourceNotFoundException:
            return None
        if description.get("DeliveryStreamType") != "KinesisStreamAsSource":
            return None
        config = DeliveryConfig.from_description(description)
        # a source stream deleted and created again is another stream (its sequence numbers
        # start over): a new reader, which the old checkpoint does not fit
        created = str(
            self.server.client("kinesis", region)
            .describe_stream_summary(StreamName=config.source_stream)["StreamDescriptionSummary"]
            .get("StreamCreationTimestamp")
        )
        identity = hashlib.sha256(
            json.dumps([asdict(config), created], sort_keys=True).encode()
        ).hexdigest()
        key = (region, name)
        with self._lock:
            current = self._deliveries.get(key)
        if current is not None and current[0] == identity:
            return current[1]
        if current is not None:
            current[1].flush()
        delivery = Delivery(
            self.server.client("kinesis", region),
            self.server.client("s3", region),
            config,
            checkpoint_path=self.checkpoints / f"{region}-{name}.json",
            transform=self._transform(config, region),
        )
        with self._lock:
            self._deliveries[key] = (identity, delivery)
        return delivery

    def _transform(self, config: DeliveryConfig, region: str):
        if config.processor is None:
            return None
        from dataplatform.runtime.local.services.lambda_ import FunctionError

        def transform(event: dict) -> Any:
            try:
                return self.lambdas.invoke_arn(config.processor, event, region)
            except FunctionError as exc:
                raise InvocationFailed(exc.payload.get("errorMessage") or "function error") from exc
            except AwsError as exc:  # the function does not exist
                raise InvocationFailed(exc.message) from exc

        return transform

    def _run(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            for region, name in self._streams():
                key = (region, name)
                lock = self._lock_of(key)
                if not lock.acquire(blocking=False):
                    continue  # a flush is under way
                try:
                    delivery = self._delivery(region, name)
                    if delivery is None:
                        continue
                    delivery.read()
                    if delivery.due():
                        delivery.flush()
                    self._problems.pop(key, None)
                except Exception as exc:  # noqa: BLE001 - the stream keeps the records; next poll
                    self._problems[key] = f"{type(exc).__name__}: {exc}"
                    with self._lock:
                        self._deliveries.pop(key, None)  # read again from the checkpoint
                finally:
                    lock.release()

    def reset(self) -> None:
        with self._lock:
            self._deliveries.clear()
        for path in self.checkpoints.glob("*.json"):
            path.unlink(missing_ok=True)

    def stop(self) -> None:
        self._stopping.set()
