"""`python -m dataplatform.runtime.local.moto_main -H 127.0.0.1 -p PORT`: moto's own
application (the one `python -m moto.server` serves), served faster.

Spark's S3A client makes thousands of small requests per job (about 7 per raw file read,
a dozen per file written), so moto's cost per request is what local Spark jobs wait on.
Two changes, measured on the demo's curate of 21,705 events in 1,057 raw objects
(bench/local_platform.py):

- cheroot, a WSGI server with HTTP keep-alive and a thread pool, instead of werkzeug's
  development server, which closes the connection after every response (so every request
  paid a new connection and a new thread);
- moto's dispatcher asks `backends.list_of_moto_modules()` on every request, which lists
  moto's package folder and stats its ~180 entries; the folder does not change while the
  server runs, so it is read once.

Together they took that curate from 85 s to 57 s (and a HEAD from 3.8 to 2.1 ms).
Then S3 LIST by prefix from a sorted index of each bucket's keys (`indexed_s3_listing`):
and ListObjectsV2 walks that index and stops after max-keys: 3.5 ms -> 1.35 ms a LIST; with
the curate job's glob reads, the telecom curate took 26 s -> 18 s warm, house_sales 30 -> 25 s.

`/_dp/stats` answers the counts by kind (HEAD, LIST, COPY, Glue's API targets...) and the
seconds the server spent on each; DP_MOTO_ACCESS_LOG=path logs one line per request.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from moto import backends

from dataplatform.runtime.local import durable

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

# Spark's two task threads and the driver, boto3 clients, and the services' own requests to
# the server (an Athena query reads the catalog and S3 through the front door)
SERVER_THREADS = 16
# GET it for {"requests": N}, the requests answered so far (bench/local_platform.py). No
# bucket can be called "_dp": S3 bucket names start with a letter or digit.
STATS_PATH = "/_dp/stats"


def request_kind(environ) -> str:
    """What a request does, for the counts: an API target (Glue, Kinesis, ...), or for S3
    the method and whether it lists, copies or deletes in bulk."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    method, query = environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", "")
    if method == "GET" and ("list-type" in query or "delimiter" in query or "prefix=" in query):
        return "S3 LIST"
    if method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
        return "S3 COPY"
    if method == "POST" and query.startswith("delete"):
        return "S3 DELETE (bulk)"
    return f"{method} {'S3' if 'HTTP_X_AMZ_CONTENT_SHA256' in environ else 'other'}"


class CountingApplication:
    """moto's WSGI application, counting the requests it answers, by kind."""

    def __init__(self, application, journal=None):
        self.application, self.requests, self._lock = application, 0, threading.Lock()
        self.journal = journal
        self.kinds: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        # DP_MOTO_ACCESS_LOG=path: one line per request (to see what a Spark job asks)
        log_path = os.environ.get("DP_MOTO_ACCESS_LOG")
        self.access_log = open(log_path, "a", buffering=1) if log_path else None

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == STATS_PATH:
            body = json.dumps(
                {
                    "requests": self.requests,
                    "by_kind": self.kinds,
                    "seconds_by_kind": self.seconds,
                    "journal": None
                    if self.journal is None
                    else {
                        "entries": self.journal.seq,
                        "replayed": self.journal.replayed,
                        "path": str(self.journal.path),
                    },
                }
            ).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        kind = request_kind(environ)
        if self.access_log is not None:
            self.access_log.write(
                f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
                f"?{environ.get('QUERY_STRING', '')} {kind}\n"
            )
        started = time.perf_counter()
        try:
            # moto answers with a list of bytes, so the response is complete here
            return self.application(environ, start_response)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.requests += 1
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
                self.seconds[kind] = self.seconds.get(kind, 0.0) + elapsed


def indexed_s3_listing() -> None:
    """moto's S3 LIST walks every key of the bucket, through a Python generator that looks
    each key up again (`_VersionedKeyStore.items`), and a versioned bucket keeps every key
    it ever had (deleted ones as delete markers): each curate rerun leaves ~800 more in the
    curated bucket (Spark's staging files). LIST was then the server's costliest request
    (3.5 ms, 2,600 of them per telecom curate). Each key store here keeps its names sorted,
    and inside `list_objects` the store yields only the names under the prefix; moto's own
    code still filters, groups and sorts them. One answer differs from moto's, and is
    S3's: moto listed a prefix holding only deleted keys as a CommonPrefix, so Spark saw a
    partition folder that a static overwrite had deleted, and failed listing it
    (tests/local/test_server_and_provision.py compares the answers with plain moto's on
    the live keys)."""
    from moto.s3.models import FakeDeleteMarker, S3Backend
    from moto.s3.utils import _VersionedKeyStore

    lock = threading.RLock()
    listing = threading.local()  # the prefix of the list_objects call on this thread

    def sorted_names(store) -> list[str]:
        names = store.__dict__.get("_dp_sorted_names")
        if names is None:
            names = store.__dict__["_dp_sorted_names"] = sorted(dict.keys(store))
        return names

    def adding(method):
        def wrapper(store, key, value):
            with lock:
                new = not dict.__contains__(store, key)
                result = method(store, key, value)
                if new and "_dp_sorted_names" in store.__dict__:
                    bisect.insort(store.__dict__["_dp_sorted_names"], key)
                return result

        return wrapper

    def removing(method):
        def wrapper(store, key, *args):
            with lock:
                result = method(store, key, *args)
                names = store.__dict__.get("_dp_sorted_names")
                if names is not None and not dict.__contains__(store, key):
                    at = bisect.bisect_left(names, key)
                    if at < len(names) and names[at] == key:
                        del names[at]
                return result

        return wrapper

    def latest_items(store):
        prefix = getattr(listing, "prefix", None)
        with lock:
            if not prefix:
                found = [(key, versions[-1]) for key, versions in dict.items(store)]
            else:
                names = sorted_names(store)
                found = []
                for at in range(bisect.bisect_left(names, prefix), len(names)):
                    if not names[at].startswith(prefix):
                        break
                    found.append((names[at], dict.__getitem__(store, names[at])[-1]))
            if getattr(listing, "active", False):
                # a LIST: S3 lists no key whose latest version is a delete marker, and no
                # prefix made only of such keys (moto grouped them into CommonPrefixes)
                found = [
                    (key, item) for key, item in found if not isinstance(item, FakeDeleteMarker)
                ]
            return found

    def has_live_key(store, names: list[str], at: int, folder: str) -> bool:
        while at < len(names) and names[at].startswith(folder):
            if not isinstance(dict.__getitem__(store, names[at])[-1], FakeDeleteMarker):
                return True
            at += 1
        return False

    original_list_objects = S3Backend.list_objects
    original_list_objects_v2 = S3Backend.list_objects_v2

    def list_objects_v2(
        backend, bucket, prefix, delimiter, continuation_token, start_after, max_keys
    ):
        """ListObjectsV2 as moto answers it (keys and common prefixes merged in name order,
        md5 continuation tokens), but as S3 does for deleted keys: a key whose latest version
        is a delete marker is listed neither as a key nor inside a common prefix. Walks the
        sorted names under the prefix and stops after max_keys: S3A's probes ask for 2 keys
        under prefixes with thousands of (dead) keys."""
        limit = (
            backend._pagination_tokens.get(continuation_token)
            if continuation_token
            else start_after
        )
        if type(bucket).__name__ == "FakeTableStorageBucket" or (
            continuation_token and limit is None
        ):
            return original_list_objects_v2(
                backend, bucket, prefix, delimiter, continuation_token, start_after, max_keys
            )
        prefix = prefix or ""
        store = bucket.keys
        found: list = []
        with lock:
            names = sorted_names(store)
            at = bisect.bisect_right(names, limit) if limit else bisect.bisect_left(names, prefix)
            at = max(at, bisect.bisect_left(names, prefix))
            while at < len(names) and len(found) <= max_keys:
                name = names[at]
                if not name.startswith(prefix):
                    break
                rest = name[len(prefix) :]
                cut = rest.find(delimiter) if delimiter else -1
                if cut >= 0:
                    folder = prefix + rest[:cut] + delimiter
                    if (not limit or folder > limit) and has_live_key(store, names, at, folder):
                        found.append(folder)
                    # every name below the folder folds into it: skip them
                    at = bisect.bisect_left(names, folder[:-1] + chr(ord(folder[-1]) + 1), at)
                    continue
                key = dict.__getitem__(store, name)[-1]
                if not isinstance(key, FakeDeleteMarker):
                    found.append(key)
                at += 1
        return backend._truncate_result(found, max_keys)

    def list_objects(backend, bucket, prefix, *args, **kwargs):
        listing.prefix, listing.active = prefix, True
        try:
            return original_list_objects(backend, bucket, prefix, *args, **kwargs)
        finally:
            listing.prefix, listing.active = None, False

    # moto's methods replaced in place (by setattr: a type checker rightly refuses an
    # assignment to a method, which is what a patch is)
    patches: list[tuple[type, str, object]] = [
        (_VersionedKeyStore, "__setitem__", adding(_VersionedKeyStore.__setitem__)),
        (_VersionedKeyStore, "setlist", adding(_VersionedKeyStore.setlist)),
        (_VersionedKeyStore, "pop", removing(_VersionedKeyStore.pop)),
        (_VersionedKeyStore, "__delitem__", removing(dict.__delitem__)),
        (_VersionedKeyStore, "items", latest_items),
        (_VersionedKeyStore, "iteritems", latest_items),
        (S3Backend, "list_objects", list_objects),
        (S3Backend, "list_objects_v2", list_objects_v2),
    ]
    for owner, name, function in patches:
        setattr(owner, name, function)


# ----------------------------------------------------------------------------- Kinesis
# moto's Shard finds its last sequence number with `list(self.records)[-1]` on every put,
# and GetRecords walks the shard from its first record to the iterator's position: both
# grow with the stream, so a stream's cost is quadratic in its length (re-scoring a
# 90,000-record scores stream spent 62 s of 120 in PutRecords). A shard's sequence numbers
# are 1, 2, 3...: put_record gives max + 1 and a split re-puts its records in order, so the
# last one is the last key and the records after a position are found by number.


def shard_min_sequence_number(shard) -> int:
    return next(iter(shard.records), 0)


def shard_max_sequence_number(shard) -> int:
    return next(reversed(shard.records), 0)


def shard_records_after(shard, last_sequence_id: str, limit: int | None):
    """moto's Shard.get_records, by number: the same records, position and lag."""
    records = shard.records
    first, last = shard_min_sequence_number(shard), shard_max_sequence_number(shard)
    # Not 1, 2, 3... (never seen), or a limit below 1 (AWS refuses it; moto's walk has its
    # own answer): moto's own walk.
    if (records and last - first + 1 != len(records)) or (limit is not None and limit < 1):
        assert _moto_get_records is not None
        return _moto_get_records(shard, last_sequence_id, limit)
    position = int(last_sequence_id)
    start = max(position + 1, first)
    stop = last if limit is None else min(last, start + limit - 1)
    results = [records[number] for number in range(start, stop + 1)]
    if not results:
        return [], position, 0
    very_last = records[last]
    lag_ms = int((very_last.created_at - results[-1].created_at) * 1000)
    return results, results[-1].sequence_number, lag_ms


_moto_get_records: Callable | None = None  # moto's Shard.get_records, once replaced


def constant_time_kinesis_shards() -> None:
    global _moto_get_records
    from moto.kinesis.models import Shard

    _moto_get_records = Shard.get_records
    for name, function in (
        ("get_min_sequence_number", shard_min_sequence_number),
        ("get_max_sequence_number", shard_max_sequence_number),
        ("get_records", shard_records_after),
    ):
        setattr(Shard, name, function)


# ----------------------------------------------------------------------------- DynamoDB
# moto answers through its generic response serializer, which walks the botocore model for
# every value: each DynamoDB attribute is an AttributeValue structure of ten members, each
# looked up through five alias rules. For the stream scorer's BatchGetItems (100 customer
# items a call) that walk was the server's largest cost: a replay of the demo's stream
# (22,549 records, `dp score churn --from-start`) took 41 s without this, 37 s with it.
# `attribute_value_json` builds the same JSON for one AttributeValue directly, member by
# member as the serializer does (strings as str, binaries in base64, None members left out,
# maps without their None entries, lists with theirs); the serializer still does everything
# around the attributes (tests/local/test_server_and_provision.py compares the answers
# with plain moto's).

ATTRIBUTE_VALUE_MEMBERS = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")
_MEMBERS = frozenset(ATTRIBUTE_VALUE_MEMBERS)


def _serialized_string(value):
    # moto's JSON serializer: str() of anything but None, {} and []
    return str(value) if value not in [None, {}, []] else value


def _base64(value) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).strip().decode("utf-8")


def attribute_value_json(value: dict) -> dict:
    """One AttributeValue ({"S": ...}, {"M": {...}}, ...) as moto's serializer writes it."""
    out = {}
    for member in ATTRIBUTE_VALUE_MEMBERS:
        item = value.get(member)
        if item is None:
            continue
        if member in ("S", "N"):
            out[member] = _serialized_string(item)
        elif member == "B":
            out[member] = _base64(item)
        elif member in ("SS", "NS"):
            out[member] = [_serialized_string(v) for v in item]
        elif member == "BS":
            out[member] = [_base64(v) for v in item]
        elif member == "M":
            out[member] = {k: attribute_value_json(v) for k, v in item.items() if v is not None}
        elif member == "L":
            out[member] = [attribute_value_json(v) if v is not None else None for v in item]
        else:  # NULL, BOOL: as they are
            out[member] = item
    return out


def direct_dynamodb_attribute_values() -> None:
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure
    if getattr(original, "_dp_direct", False):
        return

    def serialize_structure(self, serialized, value, shape, key):
        if (
            key
            and shape.name == "AttributeValue"
            and isinstance(value, dict)
            and self.operation_model.service_model.endpoint_prefix == "dynamodb"
            and value.keys() <= _MEMBERS  # anything else: moto's own walk
        ):
            self._default_serialize(serialized, attribute_value_json(value), shape, key)
            return
        original(self, serialized, value, shape, key)

    vars(serialize_structure)["_dp_direct"] = True
    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def emr_region_from_the_signature() -> None:
    """moto's EMR takes the region from the host name only (elasticmapreduce.<region>.
    amazonaws.com), so behind an endpoint URL every cluster landed in us-east-1 whatever
    region the client signed for: ClusterArn and the Availability Zone said us-east-1. The
    other services fall back to the signature's region, as this makes EMR do."""
    from moto.core.responses import BaseResponse
    from moto.emr.responses import ElasticMapReduceResponse

    def get_region_from_url(self, request, full_url: str) -> str:
        for regex in ElasticMapReduceResponse.emr_region_regex:
            match = regex.search(self.parsed_url.netloc)
            if match:
                return match.group(1)
        return BaseResponse.get_region_from_url(self, request, full_url)

    ElasticMapReduceResponse.get_region_from_url = get_region_from_url  # type: ignore[method-assign]


def werkzeug_like_gateway():
    """cheroot's WSGI gateway with what moto reads from werkzeug's (its own server's)
    environ and cheroot does not set: RAW_URI, the path as sent (moto takes an S3 key from
    it; without it a key with `?`, `%2F` or `%25xx`, such as a Hive-escaped partition value
    `12%3A30%3A00`, was stored under another name), and the original spelling of
    `x-amz-meta-*` header names with underscores (an environ key folds `_` and `-`
    together, so metadata keys came back with hyphens)."""
    from cheroot import wsgi
    from moto.core.request import (
        PRESERVED_HEADER_NAMES_ENVIRON_KEY,
        environ_key_for_header,
        should_preserve_original_header_name,
    )

    class Gateway(wsgi.Gateway_10):
        def get_environ(self):
            environ = super().get_environ()
            environ["RAW_URI"] = environ.get("REQUEST_URI", "")
            sent = [
                name.decode("latin-1") if isinstance(name, bytes) else str(name)
                for name in self.req.inheaders
            ]
            dashed = {environ_key_for_header(n) for n in sent if "_" not in n}
            names: dict[str, str] = {}
            for name in sent:
                key = environ_key_for_header(name)
                # an underscored header never stands in for a dashed one (as moto's own)
                if should_preserve_original_header_name(name) and key not in dashed:
                    names.setdefault(key, name)
            environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
            return environ

    return Gateway


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's server on cheroot")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help="keep the server's state in this folder (journal, replayed on start)",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="the platform's state folder, where the services keep their records and runs "
        "(default: the --state folder's parent)",
    )
    args = parser.parse_args(argv)
    # moto's Step Functions and SNS call back into the server at MOTO_PORT.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    durable.install_replay_clock()  # before moto's services load (they bind utcnow)
    durable.deterministic_upload_ids()
    durable.bucket_creation_in_request_time()
    indexed_s3_listing()
    constant_time_kinesis_shards()
    direct_dynamodb_attribute_values()
    emr_region_from_the_signature()

    from cheroot import wsgi
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from dataplatform.runtime.local.services import cloudwatch, events, services, states
    from dataplatform.runtime.local.services.dispatch import Dispatcher

    # The port is bound first, then the journal replayed: a port chosen free and bound only
    # after a long replay could be taken meanwhile. Until the platform is restored every
    # request is answered 503, so nobody takes the server for ready (or empty).
    gate = StartingGate()
    server = wsgi.Server((args.host, args.port), gate, numthreads=SERVER_THREADS)
    server.gateway = werkzeug_like_gateway()
    server.prepare()

    home = args.home or (args.state.parent if args.state is not None else None)
    if home is None:
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="dp-services-"))
    states.install(home)  # before the replay: it restores executions rather than rerun them
    # before the replay too: a replayed PutEvents reaches rules' Lambda, SNS and Step
    # Functions targets (moto's own rules raise NotImplementedError, which stopped the
    # start), and a replayed PutMetricAlarm makes the alarm CloudWatch makes
    events.install(None)  # the Lambda service comes later: replayed events invoke nothing
    cloudwatch.install()

    application: WSGIApplication = DomainDispatcherApplication(create_backend_app)
    journal = None
    if args.state is not None:
        journal = application = durable.JournaledApplication(application, args.state)
        started = time.perf_counter()
        replayed = journal.restore()
        print(
            f"restored {replayed} requests from {journal.path} in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    dispatcher = Dispatcher(application, services(f"http://{args.host}:{args.port}", home))
    gate.application = CountingApplication(dispatcher, journal)
    # `dp local down` sends SIGTERM: stop serving, then close the journal (fsynced)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
    print(f"moto (cheroot) on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve()
    finally:
        server.stop()
        dispatcher.stop()
        if journal is not None:
            journal.close()


class StartingGate:
    """503 to every request until `application` is set (the platform restored), then it."""

    def __init__(self):
        self.application = None

    def __call__(self, environ, start_response):
        application = self.application
        if application is None:
            body = b"the local platform is starting (its journal is being replayed)"
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return application(environ, start_response)


if __name__ == "__main__":
    main(sys.argv[1:])
