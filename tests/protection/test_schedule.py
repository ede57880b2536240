"""Schedule text → slots, across time zones and weekdays; bad text gets a clear message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protection.schedule import ScheduleError, parse_schedule


def at(text: str, zone: str = "UTC") -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def test_daily_times_give_the_latest_and_next_slot():
    schedule = parse_schedule("daily 14:00,02:00")
    assert str(schedule) == "daily 02:00,14:00"
    assert schedule.latest_slot(at("2026-03-10 13:59")) == at("2026-03-10 02:00")
    assert schedule.latest_slot(at("2026-03-10 14:00")) == at("2026-03-10 14:00")
    assert schedule.next_slot(at("2026-03-10 14:00")) == at("2026-03-11 02:00")


def test_every_n_hours_counts_from_the_start_time():
    schedule = parse_schedule("every 6h from 01:00")
    assert schedule.latest_slot(at("2026-03-10 12:30")) == at("2026-03-10 07:00")
    assert schedule.next_slot(at("2026-03-10 23:30")) == at("2026-03-11 01:00")
    assert parse_schedule("every 4h").latest_slot(at("2026-03-10 03:59")) == at("2026-03-10 00:00")


def test_weekdays_skip_the_other_days():
    schedule = parse_schedule("fri,mon 22:00")  # 2026-03-13 is a Friday
    assert str(schedule) == "mon,fri 22:00"
    assert schedule.latest_slot(at("2026-03-15 12:00")) == at("2026-03-13 22:00")
    assert schedule.next_slot(at("2026-03-13 22:00")) == at("2026-03-16 22:00")


def test_slots_are_in_the_schedule_time_zone():
    schedule = parse_schedule("daily 02:00", "Europe/Berlin")
    slot = schedule.latest_slot(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert slot.astimezone(UTC) == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # 02:00 CEST
    assert schedule.describe() == "Every day at 02:00 (Europe/Berlin)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Give a schedule"),
        ("daily 25:00", "'25:00' is not a time of day"),
        ("daily 02:00,02:00", "same time is given twice"),
        ("every 0h", "from 1 to 24"),
        ("every 30h", "from 1 to 24"),
        ("someday 02:00", "is not a schedule"),
        ("mon,funday 02:00", "is not a schedule"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, message):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(text)


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(ScheduleError, match="Unknown time zone"):
        parse_schedule("daily 02:00", "Mars/Olympus")
