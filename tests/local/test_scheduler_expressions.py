"""The local Scheduler's schedule expressions (services/scheduler.py): AWS's 6-field cron
in the schedule's time zone, rate() from the last firing, at(); pure, fixed times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataplatform.runtime.local.services.scheduler import ScheduleError, cron_matches, due


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_cron_fields_days_of_week_and_steps():
    # 2026-12-06 is a Sunday (AWS day 1)
    assert cron_matches("0 4 ? * SUN *", at("2026-12-06T04:00"))
    assert not cron_matches("0 4 ? * SUN *", at("2026-12-07T04:00"))
    assert cron_matches("0 4 ? * 1 *", at("2026-12-06T04:00"))
    assert cron_matches("*/15 9-17 ? * MON-FRI *", at("2026-12-07T09:45"))
    assert not cron_matches("*/15 9-17 ? * MON-FRI *", at("2026-12-07T09:50"))
    assert cron_matches("0 3 1 JAN,JUL ? 2027", at("2027-07-01T03:00"))
    with pytest.raises(ScheduleError, match="6 fields"):
        cron_matches("0 3 * * ?", at("2027-07-01T03:00"))
    with pytest.raises(ScheduleError, match="not supported locally"):
        cron_matches("0 3 L * ? *", at("2027-07-01T03:00"))


def test_due_gives_the_latest_firing_since_the_last_look():
    daily = "cron(0 3 * * ? *)"
    assert due(daily, "UTC", at("2026-12-05T03:30"), at("2026-12-06T02:59")) is None
    assert due(daily, "UTC", at("2026-12-05T03:30"), at("2026-12-06T03:00")) == at(
        "2026-12-06T03:00"
    )
    # in the schedule's zone: 03:00 in Berlin is 02:00 UTC in winter
    assert due(daily, "Europe/Berlin", at("2026-12-05T12:00"), at("2026-12-06T02:10")) == at(
        "2026-12-06T02:00"
    )
    assert due("rate(7 days)", "UTC", at("2026-12-01T00:00"), at("2026-12-07T23:00")) is None
    assert due("rate(7 days)", "UTC", at("2026-12-01T00:00"), at("2026-12-15T01:00")) == at(
        "2026-12-15T00:00"
    )
    assert due("at(2026-12-24T18:00:00)", "UTC", at("2026-12-01T00:00"), at("2026-12-25T00:00"))
    with pytest.raises(ScheduleError):
        due("every day", "UTC", at("2026-12-01T00:00"), at("2026-12-25T00:00"))
