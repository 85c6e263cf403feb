"""EventBridge Scheduler's schedules fire on the local endpoint (moto keeps them and fires
nothing): a background thread looks at every ENABLED schedule every TICK_S seconds and, when
its `rate(...)` or `cron(...)` expression (in its time zone, within its start and end dates)
came due since it last looked, calls the schedule's target the way Scheduler does:

- a universal target `arn:aws:scheduler:::aws-sdk:<service>:<action>` is that API call,
  the target's Input its parameters (the platform's scheduled OPTIMIZE / VACUUM are Athena
  StartQueryExecution calls);
- a Lambda function is invoked asynchronously with the Input; a state machine gets an
  execution with it.
Times missed while the platform was down are not made up: a schedule fires once for what
came due, as Scheduler does after an outage with its retry window spent. Each firing is
kept (the schedule's last firings, with the call's answer or error) and readable through
the primitive below.

`POST /_dp/scheduler/tick {"Now": "<ISO time>"}` looks at the schedules as of that time
(default: now) and answers what fired: the local platform's primitive for tests and for
`dp`, since AWS has nothing to call.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dataplatform.runtime.local.services.base import AwsError, Call, Records, Service, snake_case
from dataplatform.runtime.local.services.dispatch import RawResponse

TICK_S = 30.0
TICK_PATH = "/_dp/scheduler/tick"
KEEP_FIRINGS = 20
# Scheduler's SDK service names that boto3 names otherwise
_BOTO3_NAMES = {"sfn": "stepfunctions"}
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split(), 1)}  # AWS: 1 = SUN


class ScheduleError(ValueError):
    """An expression the local Scheduler cannot evaluate."""


# ----------------------------------------------------------------------------- expressions


def _values(field: str, low: int, high: int, names: dict[str, int]) -> set[int] | None:
    """The values an AWS cron field allows; None for `*` and `?` (any)."""
    if field in ("*", "?"):
        return None
    found: set[int] = set()
    for part in field.upper().split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = names.get(a) or int(a), names.get(b) or int(b)
        elif part in names:
            start = names[part]
            end = start if step == 1 else high
        elif part.isdigit():
            start = int(part)
            end = start if step == 1 else high
        else:
            raise ScheduleError(
                f"cron field {field!r}: {part!r} is not a value the local Scheduler reads "
                "(L, W and # are not supported locally)"
            )
        found.update(range(start, end + 1, step))
    return found


def cron_matches(expression: str, moment: datetime) -> bool:
    """Whether AWS's 6-field cron (minutes hours day-of-month month day-of-week year) fires
    at this minute (a wall-clock time in the schedule's zone)."""
    fields = expression.split()
    if len(fields) != 6:
        raise ScheduleError(f"cron({expression}): AWS cron has 6 fields")
    minutes, hours, dom, month, dow, year = fields
    checks: tuple[tuple[str, int, int, dict[str, int], int], ...] = (
        (minutes, 0, 59, {}, moment.minute),
        (hours, 0, 23, {}, moment.hour),
        (dom, 1, 31, {}, moment.day),
        (month, 1, 12, _MONTHS, moment.month),
        (dow, 1, 7, _DAYS, moment.isoweekday() % 7 + 1),
        (year, 1970, 2199, {}, moment.year),
    )
    for field, low, high, names, value in checks:
        allowed = _values(field, low, high, names)
        if allowed is not None and value not in allowed:
            return False
    return True


def due(expression: str, zone: str, since: datetime, now: datetime) -> datetime | None:
    """The latest time in (since, now] the schedule expression fires, or None. `rate()`
    counts from `since` (the schedule's creation or its last firing)."""
    text = expression.strip()
    match = _RATE.match(text)
    if match:
        period = int(match.group(1)) * _UNIT_S[match.group(2).rstrip("s")]
        if period <= 0:
            raise ScheduleError(f"{expression}: the rate must be positive")
        passed = int((now - since).total_seconds() // period)
        return since + timedelta(seconds=passed * period) if passed >= 1 else None
    if text.startswith("cron(") and text.endswith(")"):
        tz = ZoneInfo(zone or "UTC")
        # minute by minute, newest first, at most a day back (missed firings are not made up)
        moment = now.astimezone(tz).replace(second=0, microsecond=0)
        oldest = max(since, now - timedelta(days=1))
        while moment > oldest.astimezone(tz):
            if cron_matches(text[len("cron(") : -1], moment):
                return moment.astimezone(UTC)
            moment -= timedelta(minutes=1)
        return None
    if text.startswith("at("):
        at = datetime.fromisoformat(text[3:-1]).replace(tzinfo=ZoneInfo(zone or "UTC"))
        return at.astimezone(UTC) if since < at <= now else None
    raise ScheduleError(f"{expression}: not a rate(), cron() or at() expression")


# ----------------------------------------------------------------------------- the service


class Scheduler(Service):
    signing_name = "scheduler"
    operations = ("Tick",)

    def __init__(self, server):
        super().__init__(server)
        self.firings = Records(server.folder("scheduler", "firings"))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def route(self, environ) -> str | None:
        if environ.get("PATH_INFO") == TICK_PATH and environ.get("REQUEST_METHOD") == "POST":
            return "Tick"
        return None

    def tick(self, call: Call) -> RawResponse:
        body = json.loads(call.raw or b"{}")
        try:
            now = datetime.fromisoformat(body["Now"]) if body.get("Now") else datetime.now(UTC)
        except ValueError as exc:
            raise AwsError("ValidationException", f"Now: {exc}") from None
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        fired = self.fire_due(body.get("Region") or call.region, now)
        return RawResponse(
            200, json.dumps({"Fired": fired}).encode(), [("Content-Type", "application/json")]
        )

    def _run(self) -> None:
        while not self._stopping.wait(TICK_S):
            try:
                from moto.scheduler.models import scheduler_backends

                from dataplatform.runtime.local.services.base import ACCOUNT

                # only regions that hold schedules: a tick asks the server nothing otherwise
                # (its requests are what clients asked; `/_dp/stats` counts them)
                regions = [
                    region
                    for region, backend in list(scheduler_backends[ACCOUNT].items())
                    if backend.schedules
                ]
                for region in regions:
                    self.fire_due(region, datetime.now(UTC))
            except Exception as exc:  # noqa: BLE001 - the thread goes on; the next tick retries
                print(f"scheduler: {type(exc).__name__}: {exc}", flush=True)

    def fire_due(self, region: str, now: datetime) -> list[dict]:
        """Fire every ENABLED schedule of the region that came due by `now`; what fired."""
        scheduler = self.server.client("scheduler", region)
        fired = []
        with self._lock:
            for page in scheduler.get_paginator("list_schedules").paginate():
                for summary in page.get("Schedules", []):
                    schedule = scheduler.get_schedule(
                        Name=summary["Name"], GroupName=summary.get("GroupName", "default")
                    )
                    firing = self._fire_if_due(region, schedule, now)
                    if firing is not None:
                        fired.append(firing)
        return fired

    def _fire_if_due(self, region: str, schedule: dict, now: datetime) -> dict | None:
        key = f"{region}:{schedule.get('GroupName', 'default')}:{schedule['Name']}"
        record = self.firings.get(key) or {"Key": key, "Firings": []}
        if schedule.get("State", "ENABLED") != "ENABLED":
            return None
        created = schedule.get("CreationDate") or now
        since = datetime.fromisoformat(record["Last"]) if record.get("Last") else created
        if schedule.get("StartDate") and schedule["StartDate"] > since:
            since = schedule["StartDate"]
        if schedule.get("EndDate") and now > schedule["EndDate"]:
            now = schedule["EndDate"]
        when = due(
            schedule["ScheduleExpression"],
            schedule.get("ScheduleExpressionTimezone", "UTC"),
            since,
            now,
        )
        if when is None:
            return None
        firing = {"Schedule": schedule["Name"], "Time": when.isoformat(), **self._call(schedule)}
        record["Last"] = when.isoformat()
        record["Firings"] = (record["Firings"] + [firing])[-KEEP_FIRINGS:]
        self.firings.put(key, record)
        return firing

    def _call(self, schedule: dict) -> dict:
        """Call the schedule's target as Scheduler does; the answer or the error."""
        target = schedule["Target"]
        arn, text = target["Arn"], target.get("Input") or "{}"
        region = schedule["Arn"].split(":")[3]
        try:
            if arn.startswith("arn:aws:scheduler:::aws-sdk:"):
                service, action = arn.split(":")[-2:]
                client = self.server.client(_BOTO3_NAMES.get(service, service), region)
                answer = getattr(client, snake_case(action[0].upper() + action[1:]))(
                    **json.loads(text)
                )
            elif ":lambda:" in arn:
                answer = self.server.client("lambda", region).invoke(
                    FunctionName=arn, InvocationType="Event", Payload=text.encode()
                )
            elif ":states:" in arn:
                answer = self.server.client("stepfunctions", region).start_execution(
                    stateMachineArn=arn, input=text
                )
            else:
                return {"Error": f"target {arn}: not a target the local Scheduler calls"}
        except Exception as exc:  # noqa: BLE001 - a failed call is the firing's outcome
            return {"Error": f"{type(exc).__name__}: {exc}"}
        answer = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        return {"Answer": json.loads(json.dumps(answer, default=str))}

    def reset(self) -> None:
        self.firings.clear()

    def stop(self) -> None:
        self._stopping.set()
