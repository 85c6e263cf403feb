"""The local platform's Firehose: reads a dataset's Kinesis stream and delivers it to the raw
bucket the way the StreamingStack's delivery stream does (moto's Firehose never reads a
Kinesis source, never gzips and leaves `!{...}` in keys: see docs/moto.md).

What it reproduces: Firehose-shaped transform events (at most BufferSizeInMBs=1 of data per
invocation) handed to the project's transform in-process; the transform's contract (one
output per recordId, Ok or ProcessingFailed) enforced; Ok records grouped by the
partitionKeys the transform returns and written as gzip JSON lines under the stack's
prefix; ProcessingFailed records written in Firehose's error format under the error prefix.

Where it differs: one buffer for all partitions (Firehose keeps one per partition) flushed
when it reaches `buffer_bytes` and at the end of a run (there is no buffer interval); a
run reads until the stream is caught up and returns.

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


def _check_response(response: object, records: list[_Pending]) -> list[tuple[dict, bytes | None]]:
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
            if not isinstance(keys, dict) or not {"dt", "hour"} <= set(keys):
                raise TransformContractError(
                    f"Ok record {record_id!r} has no metadata."
                    "partitionKeys {dt, hour}, which the S3 prefix needs"
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


class _Delivery:
    def __init__(
        self,
        kinesis,
        s3,
        *,
        stream_name: str,
        raw_bucket: str,
        dataset: Dataset,
        checkpoint_path: Path,
        transform: Callable[[dict], dict],
        buffer_bytes: int,
        now: datetime,
        delivery_stream: str,
    ) -> None:
        self.kinesis, self.s3 = kinesis, s3
        self.stream_name, self.raw_bucket, self.dataset = stream_name, raw_bucket, dataset
        self.checkpoint_path, self.transform = Path(checkpoint_path), transform
        self.buffer_bytes, self.now, self.delivery_stream = buffer_bytes, now, delivery_stream
        summary = kinesis.describe_stream_summary(StreamName=stream_name)[
            "StreamDescriptionSummary"
        ]
        self.stream_arn = summary["StreamARN"]
        # a stream deleted and created again numbers its records from 1 again
        self.stream_created = _epoch_ms(summary.get("StreamCreationTimestamp"))
        self.stream_identity = f"{self.stream_arn}@{self.stream_created}"
        account = self.stream_arn.split(":")[4]
        self.region = kinesis.meta.region_name
        self.delivery_stream_arn = (
            f"arn:aws:firehose:{self.region}:{account}:deliverystream/{delivery_stream}"
        )
        self.summary = DeliverySummary()
        self.checkpoint = load_checkpoint(self.checkpoint_path, stream_name, self.stream_created)
        self.read_positions = dict(self.checkpoint)
        self.invocation: list[_Pending] = []
        self.invocation_bytes = 0
        self.groups: dict[tuple[str, str], list[bytes]] = {}
        self.errors: list[bytes] = []
        self.buffered = 0
        self.flush_first: _Pending | None = None  # the first record of the current flush
        self.group_oldest: dict[tuple[str, str], int] = {}  # arrival ms of each object's oldest
        self.errors_oldest: int | None = None

    # --- reading
    def shards(self) -> list[str]:
        ids, token = [], None
        while True:
            page = (
                self.kinesis.list_shards(NextToken=token)
                if token
                else self.kinesis.list_shards(StreamName=self.stream_name)
            )
            ids += [s["ShardId"] for s in page["Shards"]]
            token = page.get("NextToken")
            if not token:
                return sorted(ids)

    def read_shard(self, shard_id: str, limit: int) -> None:
        after = self.read_positions.get(shard_id)
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.stream_name,
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
        if self.invocation and self.invocation_bytes + len(record.data) > INVOCATION_MAX_BYTES:
            self.invoke()
        self.invocation.append(record)
        self.invocation_bytes += len(record.data)
        if self.buffered + self.invocation_bytes >= self.buffer_bytes:
            self.flush()

    def invoke(self) -> None:
        if not self.invocation:
            return
        records, self.invocation, self.invocation_bytes = self.invocation, [], 0
        event = {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": self.delivery_stream_arn,
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
        self.summary.invocations += 1
        outputs = _check_response(self.transform(event), records)
        attempt_end = _epoch_ms(self.now)
        for record, (output, data) in zip(records, outputs, strict=True):
            if output["result"] == "Ok":
                assert data is not None  # _check_response decodes every Ok record's data
                keys = output["metadata"]["partitionKeys"]
                group = (str(keys["dt"]), str(keys["hour"]))
                self.groups.setdefault(group, []).append(data)
                self.group_oldest[group] = min(
                    self.group_oldest.get(group, record.arrival_ms), record.arrival_ms
                )
                self.buffered += len(data)
                self.summary.delivered_ok += 1
            else:
                line = (
                    json.dumps(
                        {
                            "attemptsMade": 1,
                            "arrivalTimestamp": record.arrival_ms,
                            "errorCode": "Lambda.ProcessingFailed",
                            "errorMessage": PROCESSING_FAILED_MESSAGE,
                            "attemptEndingTimestamp": attempt_end,
                            "rawData": base64.b64encode(record.data).decode("ascii"),
                            "lambdaArn": "local",
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                ).encode("utf-8")
                self.errors.append(line)
                self.errors_oldest = min(self.errors_oldest or record.arrival_ms, record.arrival_ms)
                self.buffered += len(line)
                self.summary.processing_failed += 1

    # --- writing
    def object_name(self, oldest_ms: int, part: str) -> str:
        """Firehose's `<delivery stream>-<yyyy-MM-dd-HH-mm-ss>-<random>`, the time being the
        object's oldest record's arrival and the random part derived from the stream, the
        first record of this flush and the partition: the same records redelivered get the
        same names."""
        stamp = datetime.fromtimestamp(oldest_ms / 1000, UTC).strftime("%Y-%m-%d-%H-%M-%S")
        first = self.flush_first.record_id if self.flush_first else ""
        suffix = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stream_identity}/{first}/{part}")
        return f"{self.delivery_stream}-{stamp}-{suffix}{layout.RAW_STREAM_FILE_EXTENSION}"

    def put(self, key: str, chunks: list[bytes]) -> None:
        self.s3.put_object(
            Bucket=self.raw_bucket, Key=key, Body=gzip.compress(b"".join(chunks), mtime=0)
        )
        self.summary.objects_written += 1
        self.summary.keys.append(key)

    def flush(self) -> None:
        """Transform what is pending, write every buffered group, then move the checkpoint."""
        self.invoke()
        data_template = layout.firehose_prefix(self.dataset.name)
        for (dt, hour), chunks in sorted(self.groups.items()):
            oldest = self.group_oldest[(dt, hour)]
            prefix = layout.render_firehose_prefix(
                data_template,
                partition_keys={"dt": dt, "hour": hour},
                arrival=datetime.fromtimestamp(oldest / 1000, UTC),
            )
            self.put(prefix + self.object_name(oldest, f"dt={dt}/hour={hour}"), chunks)
        if self.errors:
            assert self.errors_oldest is not None  # set with the first error line
            oldest = self.errors_oldest
            prefix = layout.render_firehose_prefix(
                layout.firehose_error_prefix(self.dataset.name),
                error_output_type="processing-failed",
                arrival=datetime.fromtimestamp(oldest / 1000, UTC),
            )
            self.put(prefix + self.object_name(oldest, "processing-failed"), self.errors)
        self.groups, self.errors, self.buffered = {}, [], 0
        self.group_oldest, self.errors_oldest, self.flush_first = {}, None, None
        if self.read_positions != self.checkpoint:
            save_checkpoint(
                self.checkpoint_path, self.stream_name, self.read_positions, self.stream_created
            )
            self.checkpoint = dict(self.read_positions)


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
    """Deliver everything in `stream_name` after the checkpoint to `raw_bucket`.

    `transform(event) -> response` is the Firehose transform, called in-process (e.g.
    `lambda e: transform_batch(e, dataset).response`). `now` is the delivery attempt's time
    (the error records' attemptEndingTimestamp; default: the current UTC time); object
    names and the error prefix take the arrival time of their oldest record, as Firehose's. `delivery_stream` names the objects as
    the deployed delivery stream does (default `<stream_name>-to-raw`, as in naming.Names).
    Raises TransformContractError when the transform breaks Firehose's contract.
    """
    if buffer_bytes < 1:
        raise ValueError(f"buffer_bytes must be positive, not {buffer_bytes}")
    now = now or datetime.now(UTC)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    delivery = _Delivery(
        kinesis,
        s3,
        stream_name=stream_name,
        raw_bucket=raw_bucket,
        dataset=dataset,
        checkpoint_path=checkpoint_path,
        transform=transform,
        buffer_bytes=buffer_bytes,
        now=now,
        delivery_stream=delivery_stream or f"{stream_name}-to-raw",
    )
    for shard_id in delivery.shards():
        delivery.read_shard(shard_id, read_limit)
    delivery.flush()
    return delivery.summary
