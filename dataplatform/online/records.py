"""One stream record through the curate job's rules, in Python (the job applies them in
Spark: dataplatform/transforms/curate.py, whose module doc is the definition): values
trimmed of edge whitespace, empty = null, safe typing per column type, then the rules
required / allowed / min / max. A record that breaks one is left out (the curate job
quarantines it, with the same reasons), so the online features see the rows the curated
table has. tests/online checks both agree on every record of the demo's data."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from dataplatform.spec import Column, Dataset

_EDGE_WHITESPACE = " \t\n\r\f\u000b\u00a0"  # as curate.py trims
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
EPOCH_MILLIS_FROM = 100_000_000_000
_EPOCH = re.compile(r"^[+-]?[0-9]{1,15}([.][0-9]+)?$")
_INTEGRAL_FLOAT = re.compile(r"^[+-]?[0-9]+[.]0*$")
_INT_LIMITS = {"int": 2**31, "bigint": 2**63}
_INTEGER = re.compile(r"^[+-]?[0-9]+$")  # ASCII digits only, no `_` (Python's int() takes both)
_DOUBLE = re.compile(r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?[dDfF]?$")
_UNTYPED = object()  # a non-empty value that does not cast


def raw_string(value: Any) -> str | None:
    """The value as the raw zone's string column holds it (JSON true -> "true")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def typed(raw: str | None, type_: str) -> Any:
    """The safe cast: None for a null or empty value, _UNTYPED when a value does not cast."""
    if raw is None:
        return None
    text = raw.strip(_EDGE_WHITESPACE)
    if text == "":
        return None
    if type_ == "string":
        return text
    if type_ in ("int", "bigint"):
        candidate = text.split(".")[0] if _INTEGRAL_FLOAT.match(text) else text
        if not _INTEGER.match(candidate):
            return _UNTYPED
        number = int(candidate)
        limit = _INT_LIMITS[type_]
        return number if -limit <= number < limit else _UNTYPED
    if type_ == "double":
        if not _DOUBLE.match(text):  # NaN and infinities are not measurements either
            return _UNTYPED
        measured = float(text.rstrip("dDfF"))
        return _UNTYPED if math.isinf(measured) else measured
    if type_ == "boolean":
        word = text.lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else _UNTYPED
    if type_ == "date":
        try:
            return date.fromisoformat(text[:10]) if len(text) >= 10 else _UNTYPED
        except ValueError:
            return _UNTYPED
    if type_ == "timestamp":
        return _timestamp(text)
    raise ValueError(f"unsupported column type {type_!r}")


def _timestamp(text: str) -> Any:
    if _EPOCH.match(text):
        try:
            seconds = Decimal(text)
        except InvalidOperation:
            return _UNTYPED
        if abs(seconds) >= EPOCH_MILLIS_FROM:
            seconds = seconds / 1000
        micros = int((seconds * 1_000_000).to_integral_value())
        return datetime.fromtimestamp(0, UTC) + _micros(micros)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return _UNTYPED
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # no offset means UTC, as in the curate job
    return moment.astimezone(UTC)


def _micros(micros: int):
    from datetime import timedelta

    return timedelta(microseconds=micros)


def violations(column: Column, raw: str | None, value: Any) -> list[str]:
    """The curate job's reason tokens for one value, in its rule order."""
    reasons = []
    clean = None if raw is None else (raw.strip(_EDGE_WHITESPACE) or None)
    if clean is not None and value is _UNTYPED:
        reasons.append(f"{column.name}:type")
    if column.required and clean is None:
        reasons.append(f"{column.name}:required")
    if value is None or value is _UNTYPED:
        return reasons
    if column.allowed is not None and value not in column.allowed:
        reasons.append(f"{column.name}:allowed")
    if column.min is not None and value < column.min:
        reasons.append(f"{column.name}:min")
    if column.max is not None and value > column.max:
        reasons.append(f"{column.name}:max")
    return reasons


def curated_row(record: dict, dataset: Dataset) -> tuple[dict | None, str]:
    """(the typed row, "") when the record passes the dataset's rules, else (None, the
    reasons joined with ';' as the quarantine's `reason` column has them). Imputation is
    the batch job's (it needs every row's statistics); nulls stay nulls here."""
    row: dict[str, Any] = {}
    reasons: list[str] = []
    for column in dataset.kept_columns:
        raw = raw_string(record.get(column.name))
        value = typed(raw, column.type)
        reasons += violations(column, raw, value)
        row[column.name] = None if value is _UNTYPED else value
    if dataset.event_time and row.get(dataset.event_time) is None and not reasons:
        reasons.append("dt:required")
    return (None, ";".join(reasons)) if reasons else (row, "")
