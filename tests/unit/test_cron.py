"""The crontab's schedule: read at start-up (a wrong one fails there, by name), and each tick's
jobRunId named by the scheduled time nearest to when the timer fired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_monitoring.streams.settings import load_settings
from model_monitoring.tables.trigger import cron_fields, cron_job_run_id

WEEKLY = "0 6 * * 0"


def test_the_weekly_tick_is_named_by_its_minute_in_utc() -> None:
    sunday_six = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    for late in (timedelta(0), timedelta(milliseconds=3), timedelta(seconds=40)):
        assert cron_job_run_id(WEEKLY, sunday_six + late) == "cron-20261129T0600"
    # a timer that woke a little early names the tick it was waiting for, not the week before
    assert cron_job_run_id(WEEKLY, sunday_six - timedelta(milliseconds=2)) == "cron-20261129T0600"
    # the schedule read in another timezone: the id is still in UTC
    berlin = datetime(2026, 11, 29, 6, 0, 0, 5000, tzinfo=ZoneInfo("Europe/Berlin"))
    assert cron_job_run_id(WEEKLY, berlin) == "cron-20261129T0500"


def test_a_seconds_field_names_the_tick_to_the_second() -> None:
    every_ten = "* * * * * */10"
    fired = datetime(2026, 11, 29, 4, 30, 10, 4000, tzinfo=UTC)
    assert cron_job_run_id(every_ten, fired) == "cron-20261129T043010"
    assert cron_job_run_id(every_ten, fired - timedelta(milliseconds=8)) == "cron-20261129T043010"
    assert cron_job_run_id(every_ten, fired + timedelta(seconds=10)) == "cron-20261129T043020"


@given(tick=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
           lambda d: d.replace(second=d.second // 10 * 10, microsecond=0, tzinfo=UTC)),
       skew_ms=st.integers(-4_000, 4_000))
def test_every_firing_within_half_a_period_names_the_same_tick(tick: datetime, skew_ms: int) -> None:
    """Two leaders firing one tick, each a little early or late, publish one jobRunId."""
    fired = tick + timedelta(milliseconds=skew_ms)
    assert cron_job_run_id("* * * * * */10", fired) == "cron-" + tick.strftime("%Y%m%dT%H%M%S")


@pytest.mark.parametrize("cron", ["0 6 * * 0", "*/5 * * * *", "* * * * * */10", "0 6 * * sun 30"])
def test_five_or_six_fields_are_read(cron: str) -> None:
    assert cron_fields(cron) == len(cron.split())


@pytest.mark.parametrize("cron", ["", "weekly", "0 6 * *", "61 * * * *", "0 6 * * 0 0 2026", "* * * * * 75"])
def test_a_schedule_the_crontab_cannot_read_fails_at_start_up_by_name(cron: str) -> None:
    with pytest.raises(ValueError, match="is not a crontab"):
        cron_fields(cron)
    with pytest.raises(ValueError, match=r"cron .* is not a crontab of 5 fields"):
        load_settings({"MODEL_MONITORING_CRON": cron})
