"""Send records to a dataset's Kinesis stream, for both targets (a deployed environment and
the local platform): every function takes the boto3 Kinesis client to use.

`put_records` keeps to the PutRecords limits (500 records and 5 MiB per request, 1 MiB per
record, partition keys included), and retries only the entries Kinesis rejected
(ProvisionedThroughputExceededException, InternalFailure), with exponential backoff and
full jitter. A record that cannot be sent is counted `failed` with its reason, never
dropped silently.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplatform.runtime import errors
from dataplatform.spec import Dataset

# PutRecords limits (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html)
MAX_RECORDS_PER_REQUEST = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024  # data + partition keys of the whole request
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key of one record
MAX_PARTITION_KEY_CHARS = 256
RETRYABLE_ERRORS = ("ProvisionedThroughputExceededException", "InternalFailure")
MAX_BACKOFF_SECONDS = 5.0

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)


@dataclass(frozen=True)
class RecordFailure:
    """A record that did not reach the stream: its position in the input and why."""

    index: int
    reason: str


@dataclass
class IngestSummary:
    """`sent`: records Kinesis accepted. `retried`: re-sends of rejected entries (one record
    retried twice counts 2). `failed`: records that never reached the stream (too large,
    not serializable, or still rejected after `max_attempts`); `failures` says why."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    requests: int = 0
    failures: list[RecordFailure] = field(default_factory=list)
    # (shard id, sequence number) of every record the stream accepted
    positions: list[tuple[str, str]] = field(default_factory=list)

    def _fail(self, index: int, reason: str) -> None:
        self.failed += 1
        self.failures.append(RecordFailure(index, reason))


# ----------------------------------------------------------------------------- partition keys


def _bounded_key(key: str) -> str:
    """Kinesis partition keys are 1-256 Unicode characters; longer ones are hashed."""
    if 0 < len(key) <= MAX_PARTITION_KEY_CHARS:
        return key
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def record_hash_key(record: dict) -> str:
    """A stable key from the record's content (for datasets without a primary key)."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def partition_key_for(dataset: Dataset) -> Callable[[dict], str]:
    """The partition key function of a dataset: its primary key values joined with '|', so
    every version of an entity lands on one shard, in order. Records without a complete
    primary key (and datasets without one) fall back to a hash of the record."""
    columns = tuple(dataset.primary_key)

    def key(record: dict) -> str:
        if columns and isinstance(record, dict):
            values = [record.get(c) for c in columns]
            if all(v is not None and v != "" for v in values):
                return _bounded_key("|".join(str(v) for v in values))
        return record_hash_key(record if isinstance(record, dict) else {"value": record})

    return key


# ----------------------------------------------------------------------------- put_records


def serialize(record: Any) -> bytes:
    """Compact JSON bytes (UTF-8); datetimes and decimals become strings; NaN is refused
    (it is not JSON)."""
    return json.dumps(
        record, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
    ).encode("utf-8")


def backoff_delay(
    attempt: int, base_delay: float, rng: random.Random, max_delay: float = MAX_BACKOFF_SECONDS
) -> float:
    """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(attempt - 1))], where
    `attempt` is the attempt that just failed (1 = the first call)."""
    return rng.uniform(0.0, min(max_delay, base_delay * (2 ** (attempt - 1))))


def _key_source(data: bytes) -> Any:
    """What a partition key is computed from for a record given as bytes: its JSON object
    if it is one, else its text (bytes that are not JSON still get a stable key)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data.decode("utf-8", errors="replace")


def _batches(
    records: Iterable[dict | bytes], partition_key: Callable[[dict], str], summary: IngestSummary
) -> Iterator[list[tuple[int, dict]]]:
    """Requests' entries as (input index, PutRecords entry), within the request limits.
    Dicts are serialized as compact JSON; bytes are sent as they are (a producer's record:
    the Firehose transform, not the sender, decides whether it is valid). Records that can
    never be sent are counted failed here."""
    batch: list[tuple[int, dict]] = []
    batch_bytes = 0
    for index, record in enumerate(records):
        if isinstance(record, bytes):
            data, record = record, _key_source(record)
        else:
            try:
                data = serialize(record)
            except (TypeError, ValueError) as exc:
                summary._fail(index, f"not serializable as JSON: {exc}")
                continue
        try:
            key = _bounded_key(str(partition_key(record)))
        except Exception as exc:  # a user's key function: report, do not stop the ingest
            summary._fail(index, f"partition key function failed: {type(exc).__name__}: {exc}")
            continue
        size = len(data) + len(key.encode("utf-8"))
        if size > MAX_RECORD_BYTES:
            summary._fail(
                index,
                f"record is {size} bytes (data + partition key); Kinesis "
                f"accepts at most {MAX_RECORD_BYTES} bytes per record",
            )
            continue
        if batch and (
            len(batch) == MAX_RECORDS_PER_REQUEST or batch_bytes + size > MAX_REQUEST_BYTES
        ):
            yield batch
            batch, batch_bytes = [], 0
        batch.append((index, {"Data": data, "PartitionKey": key}))
        batch_bytes += size
    if batch:
        yield batch


def put_records(
    kinesis,
    stream_name: str,
    records: Iterable[dict | bytes],
    *,
    partition_key: Callable[[dict], str],
    max_attempts: int = 8,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
    rng: random.Random | None = None,
    max_delay: float = MAX_BACKOFF_SECONDS,
) -> IngestSummary:
    """Send `records` (dicts, serialized as compact JSON; bytes as they are) to `stream_name`.

    Each request holds at most 500 records and 5 MiB. Entries Kinesis rejects with an
    ErrorCode are re-sent alone after a full-jitter exponential backoff (`sleep` and `rng`
    are injectable); after `max_attempts` calls they are counted failed. `progress(n)` is
    called after each request with the number of records newly settled (sent or failed).
    Request-level errors (no such stream, access denied, the endpoint gone, ...) raise
    SendInterrupted with how many input records were answered before: boto3 already
    retries throttled requests.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    rng = rng or random.Random()
    summary = IngestSummary()
    reported = 0

    def report() -> None:
        nonlocal reported
        settled = summary.sent + summary.failed
        if progress is not None and settled > reported:
            progress(settled - reported)
        reported = settled

    settled_input = 0  # input records before the batch being sent: all answered
    for batch in _batches(records, partition_key, summary):
        pending = batch
        attempt = 1
        while True:
            try:
                response = kinesis.put_records(
                    StreamName=stream_name, Records=[entry for _, entry in pending]
                )
            except Exception as exc:  # the caller needs to know what was sent before it
                raise errors.SendInterrupted(summary, settled_input, exc) from exc
            summary.requests += 1
            results = response.get("Records", [])
            if len(results) != len(pending):  # an answer cut off (the endpoint died mid-reply)
                raise errors.SendInterrupted(
                    summary,
                    settled_input,
                    RuntimeError(
                        f"PutRecords to {stream_name} returned {len(results)} results for "
                        f"{len(pending)} records"
                    ),
                )
            rejected: list[tuple[tuple[int, dict], dict]] = []
            for item, result in zip(pending, results, strict=True):
                if result.get("ErrorCode"):
                    rejected.append((item, result))
                else:
                    summary.sent += 1
                    summary.positions.append(
                        (result.get("ShardId", ""), result.get("SequenceNumber", "0"))
                    )
            if not rejected:
                break
            if attempt >= max_attempts:
                for (index, _), result in rejected:
                    summary._fail(
                        index,
                        f"{result.get('ErrorCode')} after {attempt} attempts: "
                        f"{result.get('ErrorMessage', '')}".rstrip(": "),
                    )
                break
            # Anything else (a new ErrorCode) is not known to be transient: do not retry it.
            retry = []
            for item, result in rejected:
                if result["ErrorCode"] in RETRYABLE_ERRORS:
                    retry.append(item)
                else:
                    summary._fail(
                        item[0],
                        f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}".rstrip(": "),
                    )
            report()
            if not retry:
                break
            sleep(backoff_delay(attempt, base_delay, rng, max_delay))
            attempt += 1
            summary.retried += len(retry)
            pending = retry
        report()
        settled_input = batch[-1][0] + 1
    report()
    return summary


# ----------------------------------------------------------------------------- reading files


def _suffixes(path: Path) -> tuple[str, bool]:
    """(format suffix, gzipped) of a file name such as events.jsonl.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), gzipped


def read_records(path: str | Path) -> Iterator[dict]:
    """Records of a file: JSON lines (.json, .jsonl, .ndjson; a .json file holding one JSON
    array also works) or CSV with a header row (.csv; empty cells become None), each
    optionally gzipped (.gz). Raises FileNotFoundError or ValueError naming the file;
    rows are read lazily."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; give the path of a JSON lines or CSV file")
    suffix, gzipped = _suffixes(path)
    if suffix not in JSON_SUFFIXES + CSV_SUFFIXES:
        known = ", ".join(s + z for s in JSON_SUFFIXES + CSV_SUFFIXES for z in ("", ".gz"))
        raise ValueError(
            f"{path}: unknown file type {''.join(path.suffixes) or '(none)'!r}; "
            f"records are read from {known}"
        )

    def open_text() -> io.TextIOBase:
        if gzipped:
            return gzip.open(path, "rt", encoding="utf-8", newline="")
        return open(path, encoding="utf-8", newline="")

    if suffix in CSV_SUFFIXES:
        return _read_csv(path, open_text)
    return _read_json(path, open_text)


def _file_bytes(path: Path, gzipped: bool) -> bytes:
    raw = path.read_bytes()
    if not gzipped:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable gzip file: {exc}") from None


@dataclass(frozen=True)
class StreamRecord:
    """One record of a file for a stream: where it is in the file and the bytes to send."""

    line: int
    data: bytes


def read_stream_records(path: str | Path) -> list[StreamRecord]:
    """The records of a file as a producer sends them to a stream. JSON lines: every
    non-blank line's bytes exactly as written (not parsed: a line that is not a JSON object
    is still sent, and the Firehose transform routes it to the error prefix with its
    reason). CSV and JSON-array files have no per-record bytes: their rows are serialized.
    Raises FileNotFoundError / ValueError naming the file, as read_records does."""
    path = Path(path)
    suffix, gzipped = _suffixes(path) if path.is_file() else ("", False)
    if suffix not in JSON_SUFFIXES:
        return [StreamRecord(i, serialize(r)) for i, r in enumerate(read_records(path), start=1)]
    raw = _file_bytes(path, gzipped)
    if raw.lstrip()[:1] == b"[":  # one JSON array rather than JSON lines
        return [StreamRecord(i, serialize(r)) for i, r in enumerate(read_records(path), start=1)]
    records = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if line.strip():
            records.append(StreamRecord(number, line))
    return records


def send_to_stream(
    kinesis,
    stream_name: str,
    dataset: Dataset,
    *,
    file: Path | None = None,
    records: Iterable[dict] | None = None,
    from_line: int = 1,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[StreamRecord], int, IngestSummary]:
    """Send `records`, or a file's records from line `from_line` on (read_stream_records),
    to the stream: (the file's lines sent, how many records, the summary). A file's send
    that stops part way raises IngestInterrupted naming the first line to send again:
    requests go in file order, so every line before it was answered."""
    if records is not None:
        rows = list(records)
        return (
            [],
            len(rows),
            put_records(
                kinesis,
                stream_name,
                rows,
                progress=progress,
                partition_key=partition_key_for(dataset),
            ),
        )
    if file is None:
        raise TypeError("send_to_stream needs a file or records")
    lines = [r for r in read_stream_records(file) if r.line >= from_line]
    try:
        summary = put_records(
            kinesis,
            stream_name,
            [r.data for r in lines],
            partition_key=partition_key_for(dataset),
            progress=progress,
        )
    except errors.SendInterrupted as exc:
        last = lines[-1].line if lines else from_line - 1
        resend = lines[exc.settled].line if exc.settled < len(lines) else last + 1
        raise errors.IngestInterrupted(
            dataset.name, file, exc.summary.sent, resend, last, exc.cause, during="the send"
        ) from exc.cause
    return lines, len(lines), summary


def check_batch_file(path: str | Path) -> tuple[int, list[tuple[int, str]]]:
    """(good records, [(line, reason)] of the bad ones) of a file uploaded to a batch
    dataset as it is: a bad JSON line does not hold back the good ones (the curate job
    quarantines it with its text). CSV and JSON-array files are read whole (read_records's
    errors name the file and line)."""
    path = Path(path)
    suffix, gzipped = _suffixes(path) if path.is_file() else ("", False)
    if suffix not in JSON_SUFFIXES + CSV_SUFFIXES:
        return sum(1 for _ in read_records(path)), []  # raises, naming the file
    text = _file_bytes(path, gzipped).decode("utf-8", "replace")
    if suffix in CSV_SUFFIXES:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        good, bad = 0, []
        for row in reader:
            if None in row:
                width = len(reader.fieldnames or [])
                bad.append(
                    (
                        reader.line_num,
                        f"{width + len(row[None])} cells, the header has {width} "
                        f"(the curate job reads the first {width})",
                    )
                )
            else:
                good += 1
        return good, bad
    if text.lstrip()[:1] == "[":
        return sum(1 for _ in read_records(path)), []
    good, bad = 0, []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            bad.append((number, f"not valid JSON: {exc}"))
            continue
        if isinstance(row, dict):
            good += 1
        else:
            bad.append((number, f"a JSON {type(row).__name__}, not an object"))
    return good, bad


def _read_csv(path: Path, open_text) -> Iterator[dict]:
    with open_text() as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:
                raise ValueError(
                    f"{path}: line {reader.line_num} has more cells than the header "
                    f"({len(reader.fieldnames)} columns)"
                )
            yield {k: (v if v != "" else None) for k, v in row.items()}


def _read_json(path: Path, open_text) -> Iterator[dict]:
    with open_text() as handle:
        first_line = True
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if first_line and line.lstrip().startswith("["):
                # a .json file holding one JSON array rather than JSON lines
                try:
                    rows = json.loads(line + handle.read())
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{path}: neither JSON lines nor a JSON array: {exc}"
                    ) from None
                for item, row in enumerate(rows if isinstance(rows, list) else [rows], start=1):
                    if not isinstance(row, dict):
                        raise ValueError(
                            f"{path}: item {item} of the array is a JSON "
                            f"{type(row).__name__}, not an object"
                        )
                    yield row
                return
            first_line = False
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}: line {number} is a JSON {type(row).__name__}, not an object"
                )
            yield row


def rejected_lines(lines: list[StreamRecord], failed: list[bytes], dataset: Dataset) -> list:
    """(line, reason) of the file's lines among the records Firehose's transform sent to
    the error prefix (`failed`, their bytes as delivered there). The reason is the
    transform Lambda's own verdict on the record (its plain function: Firehose keeps no
    reason with a ProcessingFailed record, the Lambda logs it)."""
    import base64

    transform_batch = transform_function()
    line_numbers: dict[bytes, list[int]] = {}
    for line in lines:
        line_numbers.setdefault(line.data, []).append(line.line)
    found = []
    for data in failed:
        event = {"records": [{"recordId": "r", "data": base64.b64encode(data).decode("ascii")}]}
        verdict = transform_batch(event, dataset)
        reason = next(
            (f"{why}: {detail}" if detail else why for _, why, detail in verdict.failures),
            "processing failed",
        )
        numbers = line_numbers.get(data) or [0]
        found.append((numbers.pop(0) if len(numbers) > 1 else numbers[0], reason))
    return sorted(found)


def transform_function():
    """The Firehose transform Lambda's plain function, imported from its source folder."""
    import sys

    from dataplatform.paths import REPO_ROOT

    folder = REPO_ROOT / "lambdas" / "firehose_transform"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    import firehose_records  # the Lambda's own module, unchanged

    return firehose_records.transform_batch
