"""The local endpoint's front door: a WSGI application in front of moto's. A request to an
operation one of the services answers (runtime/local/services/) is theirs; every other
request goes to moto, unchanged (through the journal, runtime/local/durable.py).

A request is recognised as the AWS SDKs send it: the JSON protocols' `X-Amz-Target`
(`AmazonAthena.StartQueryExecution`), or, for REST APIs, the method and path a service
routes (`POST /endpoints/<name>/invocations`). The region is the one the request was
signed for. `POST /moto-api/reset` resets the services too, before moto.
"""

from __future__ import annotations

import io
import json
import re
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dataplatform.runtime.local.durable import read_body
from dataplatform.runtime.local.services.base import AwsError, Call, Service

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


@dataclass
class RawResponse:
    """A REST answer as it is: status, headers and body bytes."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


class Dispatcher:
    """moto's application with the services' operations answered by the services."""

    def __init__(self, application, services: Iterable[Service]):
        self.application = application
        self.services = list(services)
        self.by_target = {s.target_prefix: s for s in self.services if s.target_prefix}

    # --- which service
    def _identify(self, environ) -> tuple[Service, str] | None:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target and "." in target:
            prefix, operation = target.rsplit(".", 1)
            service = self.by_target.get(prefix)
            if service is not None and operation in service.operations:
                return service, operation
            return None
        for service in self.services:
            operation = service.route(environ)
            if operation:
                return service, operation
        return None

    # --- WSGI
    def __call__(self, environ, start_response):
        if (
            environ.get("PATH_INFO") == "/moto-api/reset"
            and environ.get("REQUEST_METHOD") == "POST"
        ):
            for service in self.services:
                service.reset()
            return self.application(environ, start_response)
        found = self._identify(environ)
        if found is None:
            return self.application(environ, start_response)
        service, operation = found
        body = read_body(environ)
        try:
            answer = service.handle(self._call(environ, service, operation, body))
        except AwsError as error:
            return self._error(start_response, error)
        except Exception as exc:  # noqa: BLE001 - a bug here is a 500, as AWS's would be
            traceback.print_exc(file=sys.stderr)
            return self._error(
                start_response,
                AwsError("InternalFailure", f"{type(exc).__name__}: {exc}", status=500),
            )
        if isinstance(answer, RawResponse):
            start_response(
                _status_line(answer.status),
                [*answer.headers, ("Content-Length", str(len(answer.body)))],
            )
            return [answer.body]
        payload = json.dumps(answer if answer is not None else {}, default=_json_default).encode()
        start_response(
            "200 OK", [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(payload)))]
        )
        return [payload]

    def _call(self, environ, service: Service, operation: str, body: bytes) -> Call:
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        access_key, region = (match.group(1), match.group(2)) if match else ("", "us-east-1")
        parsed: dict = {}
        if environ.get("HTTP_X_AMZ_TARGET") and body:  # a JSON protocol; REST bodies as sent
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise AwsError("SerializationException", f"not JSON: {exc}") from None

        def forward(replacement: bytes | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
            answer: dict = {}

            def capture(status, headers, exc_info=None):
                answer["status"], answer["headers"] = int(status.split(" ", 1)[0]), headers

            sent = body if replacement is None else replacement
            forwarded = dict(environ, **{"wsgi.input": io.BytesIO(sent)})
            forwarded["CONTENT_LENGTH"] = str(len(sent))
            chunks = b"".join(self.application(forwarded, capture))
            return answer.get("status", 500), answer.get("headers", []), chunks

        headers = {
            k[len("HTTP_") :].replace("_", "-").lower(): v
            for k, v in environ.items()
            if k.startswith("HTTP_") and isinstance(v, str)
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        return Call(
            service=service.signing_name,
            operation=operation,
            region=region,
            body=parsed,
            raw=body,
            path=environ.get("PATH_INFO", ""),
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            access_key=access_key,
            forward=forward,
        )

    @staticmethod
    def _error(start_response, error: AwsError):
        body = json.dumps(
            {"__type": error.code, "message": error.message, **error.members}, default=_json_default
        ).encode()
        start_response(
            _status_line(error.status),
            [
                ("Content-Type", JSON_CONTENT_TYPE),
                ("x-amzn-ErrorType", error.code),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    def stop(self) -> None:
        for service in self.services:
            service.stop()
