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
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from moto import backends

SERVER_THREADS = 8  # Spark's two task threads and the driver, plus boto3 clients
# GET it for {"requests": N}, the requests answered so far (bench/local_platform.py). No
# bucket can be called "_dp": S3 bucket names start with a letter or digit.
STATS_PATH = "/_dp/stats"


class CountingApplication:
    """moto's WSGI application, counting the requests it answers."""

    def __init__(self, application):
        self.application, self.requests, self._lock = application, 0, threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == STATS_PATH:
            body = json.dumps({"requests": self.requests}).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        with self._lock:
            self.requests += 1
        return self.application(environ, start_response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's server on cheroot")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    # moto's Step Functions and SNS call back into the server at MOTO_PORT.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    from cheroot import wsgi
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    application = CountingApplication(DomainDispatcherApplication(create_backend_app))
    server = wsgi.Server((args.host, args.port), application, numthreads=SERVER_THREADS)
    print(f"moto (cheroot) on http://{args.host}:{args.port}", flush=True)
    try:
        server.start()
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
