"""The local platform's state kept on disk: a journal of every request that changed the
moto server's state, replayed into a fresh server when it starts again.

moto keeps everything in memory, so a stopped or crashed server used to lose every object,
table, stream record and model. Here each request that changes state (a PUT or DELETE, a
POST whose action is not a read) is applied under one lock and then appended to
`journal.bin` before its answer leaves the server: an answered request is on disk. A
`kill -9` loses only requests nobody was told had succeeded. The file is written through
to the operating system on every request (which survives the process); it is fsynced
every FSYNC_EVERY_S seconds and on shutdown, so a power cut can lose the last second.

Replaying gives the same identifiers and times as the first run: before each journaled
request the moto random source is seeded with the request's sequence number, and moto's
clock (`moto.core.utils.utcnow`) answers the request's time, when it is first handled and
when it is replayed. So a Glue
run id in `.dp/runs/`, a Kinesis sequence number in a Firehose checkpoint and a record's
arrival time mean the same after a restart.

An entry is framed as length (4 bytes), CRC-32 (4 bytes), then a pickle of
{seq, time, environ, body}; a torn last entry (the process killed mid-write) fails its
length or CRC check and is cut off on the next start. `moto-api/reset` empties the
journal with the server.
"""

from __future__ import annotations

import base64
import io
import os
import pickle
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

JOURNAL_NAME = "journal.bin"
FSYNC_EVERY_S = 1.0
_HEADER = struct.Struct(">II")

# API actions that only read (JSON protocols' X-Amz-Target, query protocols' Action)
READ_ACTION_PREFIXES = (
    "Describe",
    "Get",
    "List",
    "BatchGet",
    "Search",
    "Query",
    "Scan",
    "Select",
    "Lookup",
    "Head",
    "Check",
    "Validate",
    "Test",
    "Preview",
)
# environ keys a replayed request needs (the WSGI server's own keys are left out)
_KEPT_KEYS = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "SCRIPT_NAME",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REQUEST_URI",
    "RAW_URI",
)


def _action(environ, body: bytes) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return None


def changes_state(environ, body: bytes) -> bool:
    """Whether a request may change what the server holds (and so must be journaled)."""
    method = environ.get("REQUEST_METHOD", "GET")
    if environ.get("PATH_INFO", "").startswith(("/moto-api/", "/_dp/")):
        return False
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    if method != "POST":
        return True  # PUT, DELETE, PATCH
    action = _action(environ, body)
    if action is not None:
        return not action.startswith(READ_ACTION_PREFIXES)
    if "select" in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True):
        return False  # S3 SelectObjectContent
    return True  # S3 POST (multipart, bulk delete) and REST APIs' creates


def read_body(environ) -> bytes:
    """The request body, read whole (and put back, as a seekable stream, for moto)."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    if stream is None:
        body = b""
    elif length:
        body = stream.read(int(length))
    elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return body


# moto's record of header names whose underscores must stay (x-amz-meta-my_key), which
# the WSGI environ alone cannot carry (moto_main's gateway sets it)
PRESERVED_HEADER_NAMES = "moto.preserved_header_names"


def _kept(environ) -> dict:
    kept: dict = {
        k: v
        for k, v in environ.items()
        if isinstance(v, str)
        and (k.startswith("HTTP_") or k in _KEPT_KEYS or k == "CONTENT_LENGTH")
    }
    if isinstance(environ.get(PRESERVED_HEADER_NAMES), dict):
        kept[PRESERVED_HEADER_NAMES] = dict(environ[PRESERVED_HEADER_NAMES])
    return kept


@dataclass
class Entry:
    seq: int
    time: float
    environ: dict
    body: bytes


def encode(entry: Entry) -> bytes:
    payload = pickle.dumps((entry.seq, entry.time, entry.environ, entry.body), protocol=5)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_entries(path: Path) -> tuple[list[Entry], int]:
    """The whole entries of a journal and the byte length they take (a torn tail after it)."""
    entries: list[Entry] = []
    if not path.exists():
        return entries, 0
    data = path.read_bytes()
    at = 0
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        payload = data[at + _HEADER.size : at + _HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        seq, stamp, environ, body = pickle.loads(payload)
        entries.append(Entry(seq, stamp, environ, body))
        at += _HEADER.size + length
    return entries, at


# --------------------------------------------------------------------------- moto's clock

_replaying = threading.local()
# True while the journal is replayed at start: what a request did outside moto the first
# time (a Lambda invoked by an event rule) must not be done again
_restoring = threading.Event()


def restoring() -> bool:
    """Whether the server is replaying its journal (not answering a client)."""
    return _restoring.is_set()


def install_replay_clock() -> None:
    """moto's `utcnow` answers the request's journaled time while it is handled. Installed
    before moto's services are imported (they bind the name when they load), and rebound in
    the modules that already hold it."""
    from moto.core import utils

    original = utils.utcnow
    if getattr(original, "_dp_replay_clock", False):
        return

    def utcnow():
        stamp = getattr(_replaying, "time", None)
        if stamp is None:
            return original()
        return utils.utcfromtimestamp(stamp)

    vars(utcnow)["_dp_replay_clock"] = True
    for module in list(sys.modules.values()):
        if (
            getattr(module, "__name__", "").startswith("moto")
            and getattr(module, "utcnow", None) is original
        ):
            vars(module)["utcnow"] = utcnow
    utils.utcnow = utcnow


def bucket_creation_in_request_time() -> None:
    """moto dates a bucket's creation with the wall clock, not its `utcnow`: after a
    restart, every bucket's CreationDate was the restart's time. It is the request's time
    here, as for the other resources (the journaled one, when replayed)."""
    import datetime

    from moto.s3 import models

    original = models.FakeBucket.__init__
    if getattr(original, "_dp_request_time", False):
        return

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        stamp = getattr(_replaying, "time", None)
        if stamp is not None:
            self.creation_date = datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC)

    vars(init)["_dp_request_time"] = True
    models.FakeBucket.__init__ = init  # type: ignore[method-assign]


def deterministic_upload_ids() -> None:
    """moto names a multipart upload with `os.urandom`, the one id of the S3 calls the
    platform makes that the seeded random source does not give: a replayed
    CreateMultipartUpload got a new id, and the journaled UploadPart after it failed, so
    the server did not start again after Spark's committer had written (its uploads are
    multipart). The id is drawn here from moto's random source, seeded per request, in
    the same alphabet and length as moto's."""
    from moto.moto_api._internal import mock_random
    from moto.s3 import models

    original = models.FakeMultipart.__init__
    if getattr(original, "_dp_deterministic", False):
        return

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        drawn = mock_random.getrandbits(8 * models.UPLOAD_ID_BYTES)
        encoded = base64.b64encode(drawn.to_bytes(models.UPLOAD_ID_BYTES, "big"))
        self.id = encoded.decode().replace("=", "").replace("+", "").replace("/", "")

    vars(init)["_dp_deterministic"] = True
    models.FakeMultipart.__init__ = init  # type: ignore[method-assign]


def _seed(seq: int) -> None:
    from moto.moto_api._internal import mock_random

    mock_random.seed(seq)


# --------------------------------------------------------------------------- the journal


class JournaledApplication:
    """A WSGI application wrapped so that what changes its state is journaled in
    `directory`, and replayed from there when it starts."""

    def __init__(self, application, directory: Path):
        self.application = application
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / JOURNAL_NAME
        self._lock = threading.Lock()
        self.seq = 0
        self.replayed = 0
        self.file: io.FileIO | None = None  # the journal, open from restore() to close()

    # --- start: replay what is there, cut a torn tail, then append
    def restore(self) -> int:
        entries, good_length = read_entries(self.path)
        _restoring.set()
        try:
            for entry in entries:
                self._apply(entry.environ, entry.body, entry.seq, entry.time)
        finally:
            _restoring.clear()
        self.seq = entries[-1].seq if entries else 0
        self.replayed = len(entries)
        if self.path.exists() and self.path.stat().st_size != good_length:
            with open(self.path, "r+b") as file:
                file.truncate(good_length)
        self.file = open(self.path, "ab", buffering=0)
        threading.Thread(target=self._sync_every_second, name="journal-fsync", daemon=True).start()
        return self.replayed

    def _apply(self, environ: dict, body: bytes, seq: int, stamp: float) -> None:
        environ = dict(
            environ,
            **{
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
                "wsgi.url_scheme": "http",
                "wsgi.version": (1, 0),
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            },
        )
        _replaying.time = stamp
        try:
            _seed(seq)
            for _ in self.application(environ, lambda status, headers, exc_info=None: None):
                pass
        finally:
            _replaying.time = None

    def _journal(self) -> io.FileIO:
        """The open journal file: requests are served between restore() and close()."""
        if self.file is None:
            raise RuntimeError("the journal is not open (restore() opens it)")
        return self.file

    def close(self) -> None:
        if self.file is not None:
            with self._lock:
                os.fsync(self.file.fileno())
                self.file.close()
                self.file = None

    # --- serving
    def __call__(self, environ, start_response):
        body = read_body(environ)
        if (
            environ.get("PATH_INFO") == "/moto-api/reset"
            and environ.get("REQUEST_METHOD") == "POST"
        ):
            with self._lock:
                chunks = list(self.application(environ, start_response))
                self._journal().truncate(0)
                self.seq = 0
            return chunks
        if not changes_state(environ, body):
            return self.application(environ, start_response)
        answer: dict = {}

        def capture(status, headers, exc_info=None):
            answer["status"] = status
            return start_response(status, headers, exc_info)

        with self._lock:
            seq, stamp = self.seq + 1, time.time()
            kept = _kept(environ)
            _seed(seq)
            # moto's clock reads the request's time throughout it, as it will in a replay;
            # the answer is built here (moto answers with a list of bytes) and is only
            # sent once the journal holds the request
            _replaying.time = stamp
            try:
                chunks = list(self.application(environ, capture))
            finally:
                _replaying.time = None
            if int(answer.get("status", "500").split(" ", 1)[0]) < 400:
                self._journal().write(encode(Entry(seq, stamp, kept, body)))
                self.seq = seq
        return chunks

    def _sync_every_second(self) -> None:
        """fsync outside the request lock: a request never waits for the disk."""
        synced = 0
        while self.file is not None:
            time.sleep(FSYNC_EVERY_S)
            file, seq = self.file, self.seq
            if file is not None and seq != synced:
                try:
                    os.fsync(file.fileno())
                    synced = seq
                except (OSError, ValueError):  # closed meanwhile
                    return
