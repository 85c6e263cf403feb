"""The model quality gate, as plain functions (handler.py is a thin adapter).

Reads a training run's metrics.json (training/train.py) from S3, either directly
(`metrics_uri`) or from inside SageMaker's model.tar.gz (`model_artifacts_uri`), and checks
its `test` metrics against the model's quality_gate:

  {"auc": 0.75}              auc, accuracy, precision, recall, f1, r2: value >= 0.75
  {"rmse": 50000}            rmse, mae (lower is better): value <= 50000
  {"auc": {"min": 0.75}}     explicit bounds; {"rmse": {"max": 50000}}; both may be given

Anything that prevents a verdict (no metrics file, unparsable JSON, a gated metric that
metrics.json does not have, a malformed gate) raises GateError, so a Step Functions Catch can
route it: the gate never passes by default.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from typing import Any

# The spec's quality-gate metrics: the Lambda's bundle carries the `dataplatform` package
# (dataplatform/bundle.py, stage_lambda), whose spec modules import the standard library only.
from dataplatform.spec import GATE_METRICS

# metric -> higher is better
HIGHER_IS_BETTER = {metric: higher for metric, (_, higher) in GATE_METRICS.items()}
METRICS_FILE = "metrics.json"
MAX_METRICS_BYTES = 10 * 1024 * 1024


class GateError(Exception):
    """The gate cannot decide; the message says why."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise GateError(f"not an S3 URI: {uri!r}; expected s3://bucket/key")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise GateError(f"not an S3 object URI: {uri!r}; expected s3://bucket/key")
    return bucket, key


def _get_object(s3, uri: str) -> bytes:
    bucket, key = parse_s3_uri(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:  # noqa: BLE001 - botocore's ClientError and friends
        code = getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
        raise GateError(f"cannot read {uri}: {code}") from e


def metrics_from_tar(data: bytes, uri: str) -> bytes:
    """metrics.json from SageMaker's model.tar.gz (at its top level, or the shallowest one)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and m.name.rsplit("/", 1)[-1] == METRICS_FILE
            ]
            if not members:
                raise GateError(
                    f"{uri} has no {METRICS_FILE}; was the model trained by training/train.py?"
                )
            member = min(members, key=lambda m: m.name.count("/"))
            if member.size > MAX_METRICS_BYTES:
                raise GateError(f"{member.name} in {uri} is too large ({member.size} bytes)")
            handle = archive.extractfile(member)
            return handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise GateError(f"{uri} is not a readable tar.gz: {e}") from e


def load_metrics(s3, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(metrics.json as a dict, where it came from)."""
    if event.get("metrics_uri"):
        uri = event["metrics_uri"]
        raw = _get_object(s3, uri)
    elif event.get("model_artifacts_uri"):
        uri = event["model_artifacts_uri"]
        raw = metrics_from_tar(_get_object(s3, uri), uri)
        uri = f"{uri}!{METRICS_FILE}"
    else:
        raise GateError(
            "the event names no metrics: give metrics_uri "
            "(s3://.../metrics.json) or model_artifacts_uri (s3://.../model.tar.gz)"
        )
    try:
        metrics = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise GateError(f"{uri} is not valid JSON: {e}") from e
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        raise GateError(
            f"{uri} has no 'test' metrics section; expected training/train.py's metrics.json"
        )
    return metrics, uri


def _bounds(metric: str, rule: Any) -> list[tuple[str, float]]:
    """[(direction, threshold)] with direction "min" (value >= threshold) or "max"."""

    def number(value: Any, where: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise GateError(f"quality_gate.{where} must be a finite number, not {value!r}")
        return float(value)

    if isinstance(rule, dict):
        unknown = sorted(set(rule) - {"min", "max"})
        if unknown or not rule:
            raise GateError(
                f"quality_gate.{metric} must be a number or {{min: x}} / {{max: x}}, not {rule!r}"
            )
        return [(d, number(rule[d], f"{metric}.{d}")) for d in ("min", "max") if d in rule]
    if metric not in HIGHER_IS_BETTER:
        raise GateError(
            f"quality_gate.{metric}: unknown metric, so its direction is unknown; "
            f"use one of {', '.join(HIGHER_IS_BETTER)} or give "
            f"{{min: x}} / {{max: x}}"
        )
    return [("min" if HIGHER_IS_BETTER[metric] else "max", number(rule, metric))]


def validate_gate(gate: Any) -> dict[str, list[tuple[str, float]]]:
    """metric -> [(direction, threshold)]; GateError for an empty or malformed gate."""
    if not isinstance(gate, dict) or not gate:
        raise GateError(
            'the quality gate is empty; give at least one metric threshold, e.g. {"auc": 0.75}'
        )
    return {metric: _bounds(metric, rule) for metric, rule in gate.items()}


def evaluate(
    test_metrics: dict[str, Any], gate: dict[str, Any], source: str = "metrics.json"
) -> tuple[bool, list[dict[str, Any]]]:
    """(passed, checks). Every check must pass; an empty gate is an error, not a pass."""
    rules = validate_gate(gate)
    checks = []
    for metric, bounds in rules.items():
        if metric not in test_metrics:
            raise GateError(
                f"metric {metric!r} is not in {source}'s test metrics (it has: "
                f"{', '.join(sorted(test_metrics)) or 'none'}); fix the quality "
                "gate or the model's problem type"
            )
        value = test_metrics[metric]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise GateError(f"metric {metric!r} in {source} is {value!r}, not a finite number")
        for direction, threshold in bounds:
            passed = value >= threshold if direction == "min" else value <= threshold
            checks.append(
                {
                    "metric": metric,
                    "value": float(value),
                    "threshold": threshold,
                    "direction": direction,
                    "passed": bool(passed),
                }
            )
    return all(c["passed"] for c in checks), checks


# SageMaker's CustomerMetadataProperties values: letters, digits, spaces and _.:/=+-@ only,
# at most 256 characters (CreateModelPackage refuses JSON's braces, quotes and commas).
REGISTRY_VALUE_MAX = 256


def registry_metrics(metrics: dict[str, Any]) -> str:
    """The test metrics as a model package's metadata value: `accuracy=0.82 auc=0.861`,
    sorted by name, 10 significant digits, finite numbers only, whole pairs up to 256
    characters."""
    text = ""
    for name in sorted(metrics):
        value = metrics[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            continue
        candidate = f"{text} {name}={float(value):.10g}".strip()
        if len(candidate) > REGISTRY_VALUE_MAX:
            break
        text = candidate
    return text


def parse_registry_metrics(text: str) -> dict[str, float]:
    """registry_metrics read back; pairs that are not name=number are skipped."""
    metrics = {}
    for pair in (text or "").split():
        name, _, value = pair.partition("=")
        try:
            metrics[name] = float(value)
        except ValueError:
            continue
    return metrics


def run_gate(event: dict[str, Any], s3) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise GateError(f"the event must be an object, not {type(event).__name__}")
    gate = event.get("quality_gate")
    if not isinstance(gate, dict) or not gate:
        raise GateError('the event has no quality_gate, e.g. {"auc": 0.75}')
    validate_gate(gate)  # before reading S3: a malformed gate is the caller's error
    metrics, source = load_metrics(s3, event)
    passed, checks = evaluate(metrics["test"], gate, source)
    return {
        "model": event.get("model"),
        "passed": passed,
        "checks": checks,
        "metrics": metrics["test"],
        "registry_metrics": registry_metrics(metrics["test"]),
    }


def summary(result: dict[str, Any]) -> str:
    parts = [
        f"{c['metric']}={c['value']:.6g} {'>=' if c['direction'] == 'min' else '<='} "
        f"{c['threshold']:.6g}: {'ok' if c['passed'] else 'FAIL'}"
        for c in result["checks"]
    ]
    verdict = "passed" if result["passed"] else "failed"
    return f"model {result.get('model')} {verdict} its quality gate ({'; '.join(parts)})"
