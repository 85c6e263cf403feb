"""The local platform's Firehose: reads a delivery stream's Kinesis source and delivers it to
S3 the way Firehose does, by the delivery stream's own definition (`DeliveryConfig`: its
prefixes, processor, compression, key and buffering hints); moto's Firehose never reads a
Kinesis source, never gzips and leaves `!{...}` in keys: see docs/moto.md. The local
endpoint's Firehose service (services/firehose.py) runs one `Delivery` per delivery stream
in the background; `deliver()` is one pass of it for a dataset's stream, as the
StreamingStack defines it.

What it reproduces: Firehose-shaped transform events (at most BufferSizeInMBs=1 of data per
invocation) handed to the project's transform in-process; the transform's contract (one
output per recordId, Ok or ProcessingFailed) enforced; Ok records grouped by the
partitionKeys the transform returns and written as gzip JSON lines under the stack's
prefix; ProcessingFailed records written in Firehose's error format under the error prefix.

Where it differs: one buffer for all partitions (Firehose keeps one per partition), flushed
when it reaches the buffer size or its oldest record the buffer interval (`due()`), and
whenever asked (`flush()`: a `deliver()` pass reads until the stream is caught up, then
flushes).

Redelivery writes nothing twice. The per-shard checkpoint moves only after the objects are
written, so a crash in between hands the same records to the next run; an object's name
is made from what it holds (the stream's creation time, the first record of the flush and
the partition, where Firehose puts a random string) and from the arrival time of its
oldest record (which is what Firehose's timestamps use), so the next run writes the same
keys again rather than second copies.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dataplatform import layout
from dataplatform.spec import Dataset

# The StreamingStack's processor buffer (TRANSFORM_BUFFER_MB in stacks/constructs/stream_to_lake.py).
INVOCATION_MAX_BYTES = 1024 * 1024
DEFAULT_BUFFER_BYTES = 64 * 2**20
GET_RECORDS_LIMIT = 10_000
MAX_EMPTY_POLLS = 5
RESULTS = ("Ok", "ProcessingFailed")
PROCESSING_FAILED_MESSAGE = (
    "The data transformation Lambda function marked the record as ProcessingFailed."
)


class TransformContractError(RuntimeError):
    """The transform's response breaks Firehose's contract; nothing of that invocation is
    delivered and the checkpoint does not move."""


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be used."""


@dataclass(frozen=True)
class DeliveryConfig:
    """What a delivery stream from a Kinesis source does (DescribeDeliveryStream's
    ExtendedS3DestinationDescription, or the StreamingStack's definition)."""

    name: str
    arn: str
    source_stream: str  # the Kinesis stream's name
    bucket: str
    prefix: str  # with Firehose's !{...} expressions
    error_prefix: str
    compression: str = "GZIP"  # GZIP | UNCOMPRESSED
    file_extension: str | None = None
    kms_key: str | None = None
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    buffer_seconds: int = 300
    processor: str | None = None  # the transform Lambda's ARN
    processor_retries: int = 3
    invocation_max_bytes: int = INVOCATION_MAX_BYTES

    @property
    def partition_keys(self) -> list[str]:
        """The keys the prefix takes from the transform's metadata."""
        return re.findall(r"!\{partitionKeyFromLambda:([^}]+)\}", self.prefix)

    @property
    def extension(self) -> str:
        if self.file_extension is not None:
            return self.file_extension
        return ".gz" if self.compression == "GZIP" else ""

    @classmethod
    def from_description(cls, description: dict) -> DeliveryConfig:
        """From DescribeDeliveryStream's DeliveryStreamDescription."""
        source = (description.get("Source") or {}).get("KinesisStreamSourceDescription") or {}
        destination = description["Destinations"][0].get(
            "ExtendedS3DestinationDescription"
        ) or description["Destinations"][0].get("S3DestinationDescription", {})
        hints = destination.get("BufferingHints") or {}
        kms = (destination.get("EncryptionConfiguration") or {}).get("KMSEncryptionConfig") or {}
        processor, retries, invocation_bytes = None, 3, INVOCATION_MAX_BYTES
        processing = destination.get("ProcessingConfiguration") or {}
        for item in processing.get("Processors") or [] if processing.get("Enabled") else []:
            if item.get("Type") != "Lambda":
                continue
            parameters = {
                p["ParameterName"]: p["ParameterValue"] for p in item.get("Parameters", [])
            }
            processor = parameters.get("LambdaArn")
            retries = int(parameters.get("NumberOfRetries", 3))
            invocation_bytes = int(float(parameters.get("BufferSizeInMBs", 1)) * 1024 * 1024)
        return cls(
            name=description["DeliveryStreamName"],
            arn=description["DeliveryStreamARN"],
            source_stream=source.get("KinesisStreamARN", "").rsplit("/", 1)[-1],
            bucket=destination["BucketARN"].rsplit(":", 1)[-1],
            prefix=destination.get("Prefix") or "",
            error_prefix=destination.get("ErrorOutputPrefix") or "",
            compression=destination.get("CompressionFormat") or "UNCOMPRESSED",
            file_extension=destination.get("FileExtension"),
            kms_key=kms.get("AWSKMSKeyARN"),
            buffer_bytes=int(hints.get("SizeInMBs", 5)) * 1024 * 1024,
            buffer_seconds=int(hints.get("IntervalInSeconds", 300)),
            processor=processor,
            processor_retries=retries,
            invocation_max_bytes=invocation_bytes,
        )


class InvocationFailed(RuntimeError):
    """The transform Lambda failed (it raised or timed out): after the processor's retries,
    Firehose sends the invocation's records to the error prefix with this message."""


@dataclass
class DeliverySummary:
    records_read: int = 0
    delivered_ok: int = 0
    processing_failed: int = 0
    objects_written: int = 0
    keys: list[str] = field(default_factory=list)
    invocations: int = 0
    # (record bytes, the transform's reason) of the records sent to the error prefix,
    # when the caller's transform reports them (LocalPlatform.deliver)
    rejected: list[tuple[bytes, str]] = field(default_factory=list)
    failed_records: list[bytes] = field(default_factory=list)  # those sent to the error prefix
    # the delivery's position per shard once done: every record up to it is delivered
    checkpoint: dict[str, str] = field(default_factory=dict)


@dataclass
class _Pending:
    """A record read from the stream and not yet handed to the transform."""

    record_id: str
    data: bytes
    arrival_ms: int
    shard_id: str
    sequence_number: str
    partition_key: str


def _epoch_ms(value) -> int:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value * 1000)
    return int(datetime.now(UTC).timestamp() * 1000)


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(
    path: Path, stream_name: str, stream_created: int | None = None
) -> dict[str, str]:
    """Per-shard last delivered sequence number ({} when the file does not exist yet, or
    when it was written for an earlier stream of that name: a stream created again numbers
    its records from the start, and the old positions would skip them)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot read the delivery checkpoint ({exc}); fix or "
            "delete it (deleting re-delivers the whole stream)"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("shards"), dict):
        raise CheckpointError(
            f"{path}: not a delivery checkpoint (expected "
            '{"stream": ..., "shards": {shard id: sequence number}})'
        )
    if data.get("stream") != stream_name:
        raise CheckpointError(
            f"{path}: checkpoint of stream {data.get('stream')!r}, not "
            f"{stream_name!r}; give each stream its own checkpoint file"
        )
    if stream_created is not None and data.get("stream_created") not in (None, stream_created):
        return {}
    return {str(k): str(v) for k, v in data["shards"].items()}


def save_checkpoint(
    path: Path, stream_name: str, shards: dict[str, str], stream_created: int | None = None
) -> None:
    """Atomic: a crash leaves the old or the new checkpoint, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "stream": stream_name,
                "stream_created": stream_created,
                "shards": dict(sorted(shards.items())),
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    os.replace(tmp, path)


def stream_created_ms(kinesis, stream_name: str) -> int:
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    return _epoch_ms(summary.get("StreamCreationTimestamp"))


def undelivered(
    kinesis, stream_name: str, checkpoint_path: Path, positions: list[tuple[str, str]]
) -> int:
    """How many of these (shard, sequence number) records no delivery has passed yet, by
    whichever run (another command's delivery may have taken them)."""
    checkpoint = load_checkpoint(
        checkpoint_path, stream_name, stream_created_ms(kinesis, stream_name)
    )
    return sum(1 for shard, sequence in positions if int(sequence) > int(checkpoint.get(shard, 0)))


# ----------------------------------------------------------------------------- the transform contract


def _check_response(
    response: object, records: list[_Pending], partition_keys: list[str] | tuple = ("dt", "hour")
) -> list[tuple[dict, bytes | None]]:
    """The response's records in input order with their decoded data (None for
    ProcessingFailed), or TransformContractError."""
    if not isinstance(response, dict) or not isinstance(response.get("records"), list):
        raise TransformContractError(
            "the transform must return {'records': [...]}, got "
            f"{type(response).__name__}{' without records' if isinstance(response, dict) else ''}"
        )
    expected = {r.record_id for r in records}
    by_id: dict[str, tuple[dict, bytes | None]] = {}
    for output in response["records"]:
        if not isinstance(output, dict):
            raise TransformContractError(
                f"an output record is a {type(output).__name__}, not an object"
            )
        record_id = output.get("recordId")
        if not isinstance(record_id, str) or record_id not in expected:
            raise TransformContractError(
                f"the transform returned recordId {record_id!r}, which was not in the invocation"
            )
        if record_id in by_id:
            raise TransformContractError(f"the transform returned recordId {record_id!r} twice")
        result = output.get("result")
        if result not in RESULTS:
            raise TransformContractError(
                f"record {record_id!r}: result {result!r}; the platform's "
                f"transform returns {' or '.join(RESULTS)}"
            )
        decoded = None
        if result == "Ok":
            keys = (output.get("metadata") or {}).get("partitionKeys")
            if partition_keys and (
                not isinstance(keys, dict) or not set(partition_keys) <= set(keys)
            ):
                raise TransformContractError(
                    f"Ok record {record_id!r} has no metadata.partitionKeys "
                    f"{{{', '.join(partition_keys)}}}, which the S3 prefix needs"
                )
            if not isinstance(output.get("data"), str):
                raise TransformContractError(f"Ok record {record_id!r} has no base64 data")
            try:
                decoded = base64.b64decode(output["data"], validate=True)
            except (binascii.Error, ValueError):
                raise TransformContractError(
                    f"Ok record {record_id!r}: data is not base64"
                ) from None
        by_id[record_id] = (output, decoded)
    missing = [r.record_id for r in records if r.record_id not in by_id]
    if missing:
        raise TransformContractError(
            f"the transform returned no output for {len(missing)} "
            f"record(s), e.g. {missing[:3]}; Firehose needs one per "
            "recordId"
        )
    return [by_id[r.record_id] for r in records]


# ----------------------------------------------------------------------------- delivery


class Delivery:
    """One delivery stream's reader, buffer and writer. `read()` takes what is new on the
    source (transformed as it goes, one invocation per `invocation_max_bytes`); `due()`
    says whether the buffering hints ask for a flush; `flush()` writes the buffer and moves
    the checkpoint. A long-lived Delivery (the Firehose service's) keeps its buffer between
    reads, as Firehose does."""

    def __init__(
        self,
        kinesis,
        s3,
        config: DeliveryConfig,
        *,
        checkpoint_path: Path,
        transform: Callable[[dict], dict] | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kinesis, self.s3, self.config = kinesis, s3, config
        self.checkpoint_path, self.transform = Path(checkpoint_path), transform
        self.now, self.clock = now, clock
        summary = kinesis.describe_stream_summary(StreamName=config.source_stream)[
            "StreamDescriptionSummary"
        ]
        self.stream_arn = summary["StreamARN"]
        # a stream deleted and created again numbers its records from 1 again
        self.stream_created = _epoch_ms(summary.get("StreamCreationTimestamp"))
        self.stream_identity = f"{self.stream_arn}@{self.stream_created}"
        self.region = kinesis.meta.region_name
        self.summary = DeliverySummary()
        self.checkpoint = load_checkpoint(
            self.checkpoint_path, config.source_stream, self.stream_created
        )
        self.read_positions = dict(self.checkpoint)
        self.invocation: list[_Pending] = []
        self.invocation_bytes = 0
        self.groups: dict[tuple[tuple[str, str], ...], list[bytes]] = {}
        self.errors: list[bytes] = []
        self.buffered = 0
        self.buffered_since: float | None = None  # clock() when the buffer got its first record
        self.flush_first: _Pending | None = None  # the first record of the current flush
        self.group_oldest: dict[tuple, int] = {}  # arrival ms of each object's oldest
        self.errors_oldest: int | None = None

    # --- reading
    def shards(self) -> list[str]:
        ids, token = [], None
        while True:
            page = (
                self.kinesis.list_shards(NextToken=token)
                if token
                else self.kinesis.list_shards(StreamName=self.config.source_stream)
            )
            ids += [s["ShardId"] for s in page["Shards"]]
            token = page.get("NextToken")
            if not token:
                return sorted(ids)

    def read(self, limit: int = GET_RECORDS_LIMIT) -> int:
        """Everything on the source after the read positions, into the buffer; the number of
        records read."""
        before = self.summary.records_read
        for shard_id in self.shards():
            self.read_shard(shard_id, limit)
        return self.summary.records_read - before

    def read_shard(self, shard_id: str, limit: int) -> None:
        after = self.read_positions.get(shard_id)
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.config.source_stream,
            ShardId=shard_id,
            **(
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
                if after
                else {"ShardIteratorType": "TRIM_HORIZON"}
            ),
        )["ShardIterator"]
        empty_polls = 0
        while iterator:
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=limit)
            records = page.get("Records", [])
            behind = page.get("MillisBehindLatest", 0)
            for record in records:
                self.add(
                    _Pending(
                        record_id=f"{shard_id}:{record['SequenceNumber']}",
                        data=record["Data"],
                        arrival_ms=_epoch_ms(record.get("ApproximateArrivalTimestamp")),
                        shard_id=shard_id,
                        sequence_number=record["SequenceNumber"],
                        partition_key=record.get("PartitionKey", ""),
                    )
                )
                self.read_positions[shard_id] = record["SequenceNumber"]
            iterator = page.get("NextShardIterator")
            if not records:
                empty_polls += 1
                if behind == 0 or empty_polls >= MAX_EMPTY_POLLS:
                    return
            else:
                empty_polls = 0
                # caught up; a full page may be followed by records that arrived in the same ms
                if behind == 0 and len(records) < limit:
                    return

    # --- transforming
    def add(self, record: _Pending) -> None:
        self.summary.records_read += 1
        if self.flush_first is None:
            self.flush_first = record
        if self.buffered_since is None:
            self.buffered_since = self.clock()
        if (
            self.invocation
            and self.invocation_bytes + len(record.data) > self.config.invocation_max_bytes
        ):
            self.invoke()
        self.invocation.append(record)
        self.invocation_bytes += len(record.data)
        if self.buffered + self.invocation_bytes >= self.config.buffer_bytes:
            self.flush()

    def due(self) -> bool:
        """Whether the buffering hints ask for a flush now (size, or the oldest record's
        time in the buffer)."""
        if self.buffered_since is None:
            return False
        if self.buffered + self.invocation_bytes >= self.config.buffer_bytes:
            return True
        return self.clock() - self.buffered_since >= self.config.buffer_seconds

    def _event(self, records: list[_Pending]) -> dict:
        return {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": self.config.arn,
            "sourceKinesisStreamArn": self.stream_arn,
            "region": self.region,
            "records": [
                {
                    "recordId": r.record_id,
                    "approximateArrivalTimestamp": r.arrival_ms,
                    "data": base64.b64encode(r.data).decode("ascii"),
                    "kinesisRecordMetadata": {
                        "shardId": r.shard_id,
                        "partitionKey": r.partition_key,
                        "approximateArrivalTimestamp": r.arrival_ms,
                        "sequenceNumber": r.sequence_number,
                        "subsequenceNumber": 0,
                    },
                }
                for r in records
            ],
        }

    def invoke(self) -> None:
        if not self.invocation:
            return
        records, self.invocation, self.invocation_bytes = self.invocation, [], 0
        attempt_end = _epoch_ms(self.now())
        if self.transform is None:  # no processor: the records as they came
            for record in records:
                self._keep(record, record.data, {})
            return
        self.summary.invocations += 1
        failure = None
        for _attempt in range(1 + self.config.processor_retries):
            try:
                response = self.transform(self._event(records))
                break
            except InvocationFailed as exc:
                failure = str(exc)
        else:
            for record in records:
                self._error(record, attempt_end, "Lambda.FunctionError", failure or "")
            return
        outputs = _check_response(response, records, self.config.partition_keys)
        for record, (output, data) in zip(records, outputs, strict=True):
            if output["result"] == "Ok":
                assert data is not None  # _check_response decodes every Ok record's data
                keys = (output.get("metadata") or {}).get("partitionKeys") or {}
                self._keep(record, data, {k: str(keys[k]) for k in self.config.partition_keys})
            else:
                self._error(
                    record, attempt_end, "Lambda.ProcessingFailed", PROCESSING_FAILED_MESSAGE
                )

    def _keep(self, record: _Pending, data: bytes, keys: dict[str, str]) -> None:
        group = tuple(sorted(keys.items()))
        self.groups.setdefault(group, []).append(data)
        self.group_oldest[group] = min(
            self.group_oldest.get(group, record.arrival_ms), record.arrival_ms
        )
        self.buffered += len(data)
        self.summary.delivered_ok += 1

    def _error(self, record: _Pending, attempt_end: int, code: str, message: str) -> None:
        line = (
            json.dumps(
                {
                    "attemptsMade": 1,
                    "arrivalTimestamp": record.arrival_ms,
                    "errorCode": code,
                    "errorMessage": message,
                    "attemptEndingTimestamp": attempt_end,
                    "rawData": base64.b64encode(record.data).decode("ascii"),
                    "lambdaArn": self.config.processor or "",
                },
                separators=(",", ":"),
            )
            + "\n"
        ).encode("utf-8")
        self.errors.append(line)
        self.errors_oldest = min(self.errors_oldest or record.arrival_ms, record.arrival_ms)
        self.buffered += len(line)
        self.summary.processing_failed += 1
        self.summary.failed_records.append(record.data)

    # --- writing
    def object_name(self, oldest_ms: int, part: str) -> str:
        """Firehose's `<delivery stream>-<yyyy-MM-dd-HH-mm-ss>-<random>`, the time being the
        object's oldest record's arrival and the random part derived from the stream, the
        first record of this flush and the partition: the same records redelivered get the
        same names."""
        stamp = datetime.fromtimestamp(oldest_ms / 1000, UTC).strftime("%Y-%m-%d-%H-%M-%S")
        first = self.flush_first.record_id if self.flush_first else ""
        suffix = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stream_identity}/{first}/{part}")
        return f"{self.config.name}-{stamp}-{suffix}{self.config.extension}"

    def put(self, key: str, chunks: list[bytes]) -> None:
        body = b"".join(chunks)
        if self.config.compression == "GZIP":
            body = gzip.compress(body, mtime=0)
        encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.kms_key}
            if self.config.kms_key
            else {}
        )
        self.s3.put_object(Bucket=self.config.bucket, Key=key, Body=body, **encryption)
        self.summary.objects_written += 1
        self.summary.keys.append(key)

    def flush(self) -> None:
        """Transform what is pending, write every buffered group, then move the checkpoint."""
        self.invoke()
        for group, chunks in sorted(self.groups.items()):
            oldest = self.group_oldest[group]
            prefix = layout.render_firehose_prefix(
                self.config.prefix or _DEFAULT_PREFIX,
                partition_keys=dict(group),
                arrival=datetime.fromtimestamp(oldest / 1000, UTC),
            )
            part = "/".join(f"{k}={v}" for k, v in group)
            self.put(prefix + self.object_name(oldest, part), chunks)
        if self.errors:
            assert self.errors_oldest is not None  # set with the first error line
            oldest = self.errors_oldest
            prefix = layout.render_firehose_prefix(
                self.config.error_prefix or _DEFAULT_ERROR_PREFIX,
                error_output_type="processing-failed",
                arrival=datetime.fromtimestamp(oldest / 1000, UTC),
            )
            self.put(prefix + self.object_name(oldest, "processing-failed"), self.errors)
        self.groups, self.errors, self.buffered = {}, [], 0
        self.group_oldest, self.errors_oldest, self.flush_first = {}, None, None
        self.buffered_since = None
        if self.read_positions != self.checkpoint:
            save_checkpoint(
                self.checkpoint_path,
                self.config.source_stream,
                self.read_positions,
                self.stream_created,
            )
            self.checkpoint = dict(self.read_positions)


# Firehose's prefixes when a delivery stream sets none: the arrival hour, UTC
_DEFAULT_PREFIX = "!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/!{timestamp:HH}/"
_DEFAULT_ERROR_PREFIX = "!{firehose:error-output-type}/" + _DEFAULT_PREFIX


def dataset_config(
    dataset: Dataset,
    *,
    stream_name: str,
    raw_bucket: str,
    delivery_stream: str,
    region: str,
    account: str,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> DeliveryConfig:
    """A dataset's delivery stream as the StreamingStack defines it (its prefixes, gzip with
    the raw extension, the transform; SSE from the bucket's default)."""
    return DeliveryConfig(
        name=delivery_stream,
        arn=f"arn:aws:firehose:{region}:{account}:deliverystream/{delivery_stream}",
        source_stream=stream_name,
        bucket=raw_bucket,
        prefix=layout.firehose_prefix(dataset.name),
        error_prefix=layout.firehose_error_prefix(dataset.name),
        compression="GZIP",
        file_extension=layout.RAW_STREAM_FILE_EXTENSION,
        buffer_bytes=buffer_bytes,
        processor="local",
    )


def deliver(
    kinesis,
    s3,
    *,
    stream_name: str,
    raw_bucket: str,
    dataset: Dataset,
    checkpoint_path: Path,
    transform: Callable[[dict], dict],
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    now: datetime | None = None,
    delivery_stream: str | None = None,
    read_limit: int = GET_RECORDS_LIMIT,
) -> DeliverySummary:
    """Deliver everything in `stream_name` after the checkpoint to `raw_bucket`, as the
    dataset's delivery stream would, in one pass.

    `transform(event) -> response` is the Firehose transform, called in-process (e.g.
    `lambda e: transform_batch(e, dataset).response`). `now` is the delivery attempt's time
    (the error records' attemptEndingTimestamp; default: the current UTC time); object
    names and the error prefix take the arrival time of their oldest record, as Firehose's.
    `delivery_stream` names the objects as the deployed delivery stream does (default
    `<stream_name>-to-raw`, as in naming.Names). Raises TransformContractError when the
    transform breaks Firehose's contract.
    """
    if buffer_bytes < 1:
        raise ValueError(f"buffer_bytes must be positive, not {buffer_bytes}")
    attempt = now or datetime.now(UTC)
    attempt = attempt.replace(tzinfo=UTC) if attempt.tzinfo is None else attempt
    stream_arn = kinesis.describe_stream_summary(StreamName=stream_name)[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    config = dataset_config(
        dataset,
        stream_name=stream_name,
        raw_bucket=raw_bucket,
        delivery_stream=delivery_stream or f"{stream_name}-to-raw",
        region=kinesis.meta.region_name,
        account=stream_arn.split(":")[4],
        buffer_bytes=buffer_bytes,
    )
    delivery = Delivery(
        kinesis,
        s3,
        config,
        checkpoint_path=checkpoint_path,
        transform=transform,
        now=lambda: attempt,
    )
    delivery.read(read_limit)
    delivery.flush()
    return delivery.summary
