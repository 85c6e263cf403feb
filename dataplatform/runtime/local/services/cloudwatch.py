"""CloudWatch metric alarms that evaluate, on the local endpoint.

moto keeps alarms (PutMetricAlarm) and metric data (PutMetricData) but never evaluates an
alarm: its state stays what it was created with (OK, where AWS starts an alarm at
INSUFFICIENT_DATA) and nothing hears of a breach. The platform's monitoring needs the
breach: an alarm's change to ALARM is what EventBridge rules (start the ML pipeline) and
the alarm's SNS actions (tell people) act on. This adds, as CloudWatch does:

- an alarm starts at INSUFFICIENT_DATA, and PutMetricAlarm on an existing alarm keeps its
  state (moto replaced it with a new one, OK): `install`, a patch of moto's backend;
- PutMetricData (stored by moto) then evaluates every simple alarm (one metric, a
  Statistic; no metric math, anomaly band or percentile) of the region whose Namespace,
  MetricName and Dimensions are those of a datum just put: the last EvaluationPeriods
  periods (aligned on the period, as CloudWatch aggregates) ending with the newest datum's,
  each aggregated with the Statistic and compared with the Threshold; DatapointsToAlarm
  of them breaching is ALARM, and missing periods count as TreatMissingData says. The time
  is the data's own (the newest Timestamp), never the wall clock. A state that differs
  from the alarm's is set with SetAlarmState;
- SetAlarmState (moto's), whoever calls it, that changes the alarm's state: the state
  change event on the account's default bus (source aws.cloudwatch, detail-type
  "CloudWatch Alarm State Change") and the new state's SNS actions, the alarm's JSON
  message published to each topic. An unchanged state emits nothing.

Durability: the SetAlarmState, PutEvents and Publish requests go through the front door,
so the journal keeps each; a restart replays them into moto (the alarm's state, the
event's deliveries) without evaluating anything again. `install` runs before the replay
(moto_main), so a replayed PutMetricAlarm makes the same alarm.

Clients: the JSON protocol (boto3, the AWS CLI) and the query protocol are recognised.

Not done: time passing without data evaluates nothing (CloudWatch evaluates every period;
here a datum does), nor does PutMetricAlarm (the next datum does); CloudWatch's look
further back than N periods when data is missing; percentiles (ExtendedStatistic), metric
math, anomaly detection and composite alarms keep moto's state.
"""

from __future__ import annotations

import functools
import json
import operator
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from dataplatform.runtime.local.durable import read_body
from dataplatform.runtime.local.services import events
from dataplatform.runtime.local.services.base import ACCOUNT, Call, Service
from dataplatform.runtime.local.services.dispatch import RawResponse

TARGET_PREFIX = "GraniteServiceVersion20100801"  # CloudWatch's X-Amz-Target prefix
ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
# ComparisonOperator: the test, and how a reason says it
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")
STATE_REASON_MAX = 1023  # SetAlarmState's limits
STATE_REASON_DATA_MAX = 4000


def install() -> None:
    """Alarms start at INSUFFICIENT_DATA and keep their state when PutMetricAlarm updates
    them, as on AWS (moto creates each at OK and replaces it on an update)."""
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.put_metric_alarm
    if getattr(original, "_dp_alarm_state", False):
        return

    def put_metric_alarm(self, *args, **kwargs):
        name = kwargs["name"] if "name" in kwargs else args[0]
        existing = self.alarms.get(name)
        alarm = original(self, *args, **kwargs)
        if existing is None:
            alarm.state_value = INSUFFICIENT_DATA  # the reason stays moto's "Unchecked: ..."
        else:
            alarm.state_value, alarm.state_reason = existing.state_value, existing.state_reason
            alarm.state_reason_data = existing.state_reason_data
            alarm.state_updated_timestamp = existing.state_updated_timestamp
            alarm.history = existing.history
        return alarm

    vars(put_metric_alarm)["_dp_alarm_state"] = True
    CloudWatchBackend.put_metric_alarm = put_metric_alarm  # type: ignore[method-assign]


class CloudWatch(Service):
    signing_name = "monitoring"
    target_prefix = TARGET_PREFIX
    operations = ("PutMetricData", "SetAlarmState")

    def __init__(self, server):
        super().__init__(server)
        # one PutMetricData at a time: the data it added are the backend's new tail
        self._putting = threading.Lock()
        # a state's before and after, and its event, one SetAlarmState at a time: a
        # transition is announced once
        self._setting = threading.Lock()

    def route(self, environ) -> str | None:
        """The query protocol's requests (the JSON protocol's come by X-Amz-Target)."""
        if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            return None
        if f"/{self.signing_name}/aws4_request" not in environ.get("HTTP_AUTHORIZATION", ""):
            return None
        form = parse_qs(read_body(environ).decode("utf-8", "replace"))
        action = form.get("Action", [""])[0]
        return action if action in self.operations else None

    # --- PutMetricData: moto stores, then the alarms of what was put are evaluated
    def put_metric_data(self, call: Call) -> RawResponse:
        backend = _backend(call.region)
        with self._putting:
            before = len(backend.metric_data)
            answer = call.forward()
            put = backend.metric_data[before:] if answer[0] < 400 else []
            keys = {_metric_key(datum.namespace, datum.name, datum.dimensions) for datum in put}
            for alarm in list(backend.alarms.values()):
                if _is_simple(alarm) and _alarm_key(alarm) in keys:
                    try:
                        self._evaluate(call.region, backend, alarm)
                    except Exception as exc:  # noqa: BLE001 - the data are stored all the same
                        print(f"alarm {alarm.name}: not evaluated: {exc}", file=sys.stderr)
        return _raw(answer)

    def _evaluate(self, region: str, backend, alarm) -> None:
        key = _alarm_key(alarm)
        data = [
            d
            for d in list(backend.metric_data)
            if _metric_key(d.namespace, d.name, d.dimensions) == key
            and (alarm.unit is None or d.unit == alarm.unit)
        ]
        if not data:
            return
        evaluation = evaluate(alarm, data)
        if evaluation is None or evaluation.state == alarm.state_value:
            return  # no transition: CloudWatch sets and emits nothing
        self.server.client("cloudwatch", region).set_alarm_state(
            AlarmName=alarm.name,
            StateValue=evaluation.state,
            StateReason=evaluation.reason[:STATE_REASON_MAX],
            StateReasonData=_reason_data_text(evaluation.reason_data),
        )

    # --- SetAlarmState: moto sets; a change of state is announced
    def set_alarm_state(self, call: Call) -> RawResponse:
        name = _field(call, "AlarmName")
        with self._setting:
            backend = _backend(call.region)
            alarm = backend.alarms.get(name)
            before = None if alarm is None else _state(alarm)
            answer = call.forward()
            after = backend.alarms.get(name)
            if answer[0] < 400 and before is not None and after is not None:
                if after.state_value != before["value"]:
                    self._announce(call.region, after, before)
        return _raw(answer)

    def _announce(self, region: str, alarm, previous: dict) -> None:
        """The event and the actions of a state change, as CloudWatch sends them."""
        events.emit(
            self.server,
            region,
            "aws.cloudwatch",
            "CloudWatch Alarm State Change",
            {
                "alarmName": alarm.name,
                "state": _state(alarm),
                "previousState": previous,
                "configuration": _configuration(alarm),
            },
            resources=[alarm.alarm_arn],
        )
        if not alarm.actions_enabled:
            return
        actions = {
            ALARM: alarm.alarm_actions,
            OK: alarm.ok_actions,
            INSUFFICIENT_DATA: alarm.insufficient_data_actions,
        }[alarm.state_value]
        for arn in actions or []:
            if arn.split(":")[2:3] != ["sns"]:
                continue  # Auto Scaling, EC2, Systems Manager actions: nothing to do locally
            try:
                self.server.client("sns", arn.split(":")[3]).publish(
                    TopicArn=arn,
                    Subject=f'{alarm.state_value}: "{alarm.name}" in {_region_name(region)}'[:100],
                    Message=json.dumps(_sns_message(region, alarm, previous)),
                )
            except Exception as exc:  # noqa: BLE001 - a failed action leaves the state set
                print(f"alarm {alarm.name}: action {arn} failed: {exc}", file=sys.stderr)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    state: str
    reason: str
    reason_data: dict


def evaluate(alarm, data: list) -> Evaluation | None:
    """The state a simple alarm's data put it in (None: keep the state, TreatMissingData
    ignore with no data). `data` are moto's data of the alarm's metric, at least one."""
    period, count = int(alarm.period), int(alarm.evaluation_periods)
    needed = int(alarm.datapoints_to_alarm or count)
    compare, words = COMPARISONS[alarm.comparison_operator]
    threshold = float(alarm.threshold)
    timed = [(_epoch(d.timestamp), d) for d in data]
    newest = max(t for t, _ in timed)
    last = newest - newest % period
    starts = [last - (count - 1 - i) * period for i in range(count)]  # oldest first
    values = [
        aggregate([d for t, d in timed if start <= t < start + period], alarm.statistic)
        for start in starts
    ]
    missing = alarm.treat_missing_data or "missing"
    breaches = [None if v is None else compare(v, threshold) for v in values]
    state = decide(breaches, needed, missing, alarm.state_value)
    if state is None:
        return None
    if missing in ("breaching", "notBreaching"):  # missing periods counted as said
        breaches = [missing == "breaching" if b is None else b for b in breaches]
    present = [(start, v) for start, v in zip(starts, values, strict=True) if v is not None]
    counted = breaches.count(state == ALARM)  # the periods that made the state
    reason = _reason(
        state, alarm.state_value, present, counted, count, needed, missing, words, threshold
    )
    reason_data = {
        "version": "1.0",
        "queryDate": _aws_time(newest),
        "startDate": _aws_time(starts[0]),
        "statistic": alarm.statistic,
        "period": period,
        "recentDatapoints": [v for _, v in present],
        "threshold": threshold,
        "evaluatedDatapoints": [
            {"timestamp": _aws_time(start), "value": v} for start, v in reversed(present)
        ],
    }
    return Evaluation(state, reason, reason_data)


def decide(
    breaches: list[bool | None], needed: int, treat_missing: str, current: str
) -> str | None:
    """The alarm's state from its periods, oldest first (True breaching, False not, None
    no data), as CloudWatch decides "M (needed) out of N" with TreatMissingData; None keeps
    the current state (ignore, with no data at all)."""
    if treat_missing in ("breaching", "notBreaching"):
        filled = [treat_missing == "breaching" if b is None else b for b in breaches]
        return ALARM if filled.count(True) >= needed else OK
    present = [b for b in breaches if b is not None]
    if not present:
        return INSUFFICIENT_DATA if treat_missing == "missing" else None
    if present.count(True) >= needed:
        return ALARM
    # Fewer than M datapoints can still be ALARM: when the oldest breaching one is at least
    # M periods old and every later period breaches or is missing (CloudWatch's "avoiding
    # premature transitions to alarm state")
    first = next((i for i, b in enumerate(breaches) if b), None)
    if first is not None and len(breaches) - first >= needed and False not in breaches[first:]:
        return ALARM
    return OK


def aggregate(data: Iterable, statistic: str) -> float | None:
    """A period's data (moto's single values and statistic sets) as the statistic; None
    for no data."""
    count, total = 0.0, 0.0
    low: float | None = None
    high: float | None = None
    for datum in data:
        if hasattr(datum, "value"):  # a single value
            n, s, lo, hi = 1.0, datum.value, datum.value, datum.value
        else:  # StatisticValues
            n, s, lo, hi = datum.sample_count, datum.sum, datum.min, datum.max
        count, total = count + n, total + s
        low = lo if low is None else min(low, lo)
        high = hi if high is None else max(high, hi)
    if not count:
        return None
    return {
        "SampleCount": count,
        "Sum": total,
        "Average": total / count,
        "Minimum": low,
        "Maximum": high,
    }[statistic]


def _reason(state, previous, present, counted, count, needed, missing, words, threshold) -> str:
    """StateReason in CloudWatch's words."""
    plural = "s" if count > 1 else ""
    if not present:
        if state == INSUFFICIENT_DATA:
            return f"Insufficient Data: {count} datapoint{plural} {_was(count)} unknown."
        treated = "Breaching" if missing == "breaching" else "NonBreaching"
        return (
            f"Threshold Crossed: no datapoints were received for {count} period{plural} and "
            f"{count} missing datapoint{plural} {_was(count)} treated as [{treated}]."
        )
    listed = ", ".join(
        f"{v} ({datetime.fromtimestamp(start, UTC):%d/%m/%y %H:%M:%S})"
        for start, v in reversed(present)
    )
    # OK takes N - M + 1 fine periods (fewer and M could still breach)
    minimum, negation = (needed, "") if state == ALARM else (count - needed + 1, "not ")
    return (
        f"Threshold Crossed: {counted} out of the last {count} datapoints "
        f"[{listed}] {_was(counted)} {negation}{words} the threshold ({threshold}) "
        f"(minimum {minimum} datapoint{'s' if minimum > 1 else ''} for {previous} -> {state} "
        "transition)."
    )


def _reason_data_text(reason_data: dict) -> str:
    """StateReasonData as JSON within SetAlarmState's limit: without the datapoints' lists
    when many periods make it longer."""
    text = json.dumps(reason_data)
    if len(text) > STATE_REASON_DATA_MAX:
        short = {k: v for k, v in reason_data.items() if not isinstance(v, list)}
        text = json.dumps(short)
    return text


def _was(n: int) -> str:
    return "was" if n == 1 else "were"


# ----------------------------------------------------------------------------- helpers


def _backend(region: str):
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[ACCOUNT][region]


def _raw(answer: tuple[int, list[tuple[str, str]], bytes]) -> RawResponse:
    """moto's answer as it is (the dispatcher sets its length)."""
    status, headers, body = answer
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return RawResponse(status, body, kept)


def _field(call: Call, name: str) -> str:
    """A top-level string member of the request, in either protocol."""
    if call.body:
        return str(call.body.get(name, ""))
    return parse_qs(call.raw.decode("utf-8", "replace")).get(name, [""])[0]


def _metric_key(namespace, name, dimensions) -> tuple:
    return namespace, name, frozenset((d.name, d.value) for d in dimensions)


def _alarm_key(alarm) -> tuple:
    return _metric_key(alarm.namespace, alarm.metric_name, alarm.dimensions)


def _is_simple(alarm) -> bool:
    """One metric and a Statistic: what the evaluation here covers."""
    return (
        alarm.rule is None
        and not alarm.metric_data_queries
        and not alarm.threshold_metric_id
        and alarm.statistic in STATISTICS
        and alarm.comparison_operator in COMPARISONS
        and bool(alarm.metric_name)
        and bool(alarm.period)
    )


def _epoch(value: datetime) -> float:
    """moto keeps a datum's time as given, naive (UTC) when moto's clock gave it."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _aws_time(value: datetime | float) -> str:
    """A time as CloudWatch writes it in events and messages: 2026-01-05T10:00:00.000+0000."""
    if isinstance(value, datetime):
        value = _epoch(value)
    moment = datetime.fromtimestamp(value, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+0000"


def _state(alarm) -> dict:
    state = {
        "value": alarm.state_value,
        "reason": alarm.state_reason,
        "timestamp": _aws_time(alarm.state_updated_timestamp),
    }
    if alarm.state_reason_data and alarm.state_reason_data != "{}":
        state["reasonData"] = alarm.state_reason_data
    return state


def _configuration(alarm) -> dict:
    """The event's `configuration`: the alarm's description and metrics."""
    configuration: dict[str, Any] = {"description": alarm.description or ""}
    if alarm.metric_name:
        configuration["metrics"] = [
            {
                # CloudWatch's id of the alarm's one metric, stable per alarm here
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.alarm_arn)),
                "metricStat": {
                    "metric": {
                        "namespace": alarm.namespace,
                        "name": alarm.metric_name,
                        "dimensions": {d.name: d.value for d in alarm.dimensions},
                    },
                    "period": alarm.period,
                    "stat": alarm.statistic or alarm.extended_statistic,
                },
                "returnData": True,
            }
        ]
    else:  # metric math: its queries
        configuration["metrics"] = [
            {"id": q.id, "expression": q.expression, "returnData": q.return_data is not False}
            for q in alarm.metric_data_queries
        ]
    return configuration


def _sns_message(region: str, alarm, previous: dict) -> dict:
    """The JSON message CloudWatch publishes to an alarm's topic."""
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": ACCOUNT,
        "AlarmConfigurationUpdatedTimestamp": _aws_time(alarm.configuration_updated_timestamp),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _aws_time(alarm.state_updated_timestamp),
        "Region": _region_name(region),
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": previous["value"],
        "OKActions": list(alarm.ok_actions or []),
        "AlarmActions": list(alarm.alarm_actions or []),
        "InsufficientDataActions": list(alarm.insufficient_data_actions or []),
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "Statistic",
            "Statistic": (alarm.statistic or "").upper(),
            "Unit": alarm.unit,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm or alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
            "EvaluateLowSampleCountPercentile": "",
        },
    }


@functools.cache
def _region_name(region: str) -> str:
    """A region as CloudWatch's messages name it ("Europe (Ireland)")."""
    import botocore.loaders

    for partition in botocore.loaders.create_loader().load_data("endpoints")["partitions"]:
        if region in partition["regions"]:
            return partition["regions"][region].get("description", region)
    return region
