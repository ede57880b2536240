"""Retention rules (pure functions, no database): local retention by age and count, and GFS retention
by day, ISO week, month and year in the configured time zone. Expected outcomes are written out by
hand as dates, never recomputed with the algorithm under test."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vault.retention import Decision, PointRef, gfs_retention, local_retention

AMS = ZoneInfo("Europe/Amsterdam")
SYD = ZoneInfo("Australia/Sydney")
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def at(y: int, m: int, d: int, hh: int = 22, mm: int = 0, tz=AMS) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def point(created: datetime, *, locked_until: datetime | None = None) -> PointRef:
    """A point whose id is its local creation time, e.g. '2026-10-31 22:00', so results read as dates."""
    return PointRef(id=created.strftime("%Y-%m-%d %H:%M"), created=created, locked_until=locked_until)


def ids(points: list[PointRef]) -> list[str]:
    return [p.id for p in points]


def nightly(first: date, last: date, hh: int = 22, tz=AMS) -> list[PointRef]:
    """One point a night at hh:00 local time, first to last inclusive."""
    days = (last - first).days
    return [point(at(d.year, d.month, d.day, hh, tz=tz)) for d in (first + timedelta(n) for n in range(days + 1))]


def gfs(points, *, daily=0, weekly=0, monthly=0, yearly=0, tz=AMS, now=None) -> Decision:
    return gfs_retention(points, daily=daily, weekly=weekly, monthly=monthly, yearly=yearly, tz=tz, now=now)


def assert_partition(decision: Decision, points: list[PointRef]) -> None:
    """keep and remove split the input exactly, both newest first, and every point has a reason."""
    assert sorted(ids(decision.keep) + ids(decision.remove)) == sorted(ids(points))
    for side in (decision.keep, decision.remove):
        assert [p.created for p in side] == sorted((p.created for p in side), reverse=True)
    assert set(decision.reasons) == set(ids(points))
    assert all(reason.strip() for reason in decision.reasons.values())


# --- GFS: a two-year nightly history -------------------------------------------------------------------

TWO_YEARS = nightly(date(2024, 11, 1), date(2026, 10, 31))
TWO_YEARS_NOW = at(2026, 11, 1, 9)

# daily=7, weekly=4, monthly=12, yearly=3. 2026-10-31 is a Saturday.
EXPECTED_TWO_YEARS = {
    # daily 1..7: the last seven nights
    "2026-10-31 22:00": "newest of 2026-10-31 (daily 1 of 7)",
    "2026-10-30 22:00": "newest of 2026-10-30 (daily 2 of 7)",
    "2026-10-29 22:00": "newest of 2026-10-29 (daily 3 of 7)",
    "2026-10-28 22:00": "newest of 2026-10-28 (daily 4 of 7)",
    "2026-10-27 22:00": "newest of 2026-10-27 (daily 5 of 7)",
    "2026-10-26 22:00": "newest of 2026-10-26 (daily 6 of 7)",
    "2026-10-25 22:00": "newest of 2026-10-25 (daily 7 of 7)",
    # weekly 1 and 2 are Saturday 10-31 (W44) and Sunday 10-25 (W43), already kept as dailies;
    # weekly 3 and 4 are the Sundays before.
    "2026-10-18 22:00": "newest of week 2026-W42 (weekly 3 of 4)",
    "2026-10-11 22:00": "newest of week 2026-W41 (weekly 4 of 4)",
    # monthly 1 is 10-31 (a daily); monthly 2..12 are the last nights of 2026-09 back to 2025-11.
    "2026-09-30 22:00": "newest of 2026-09 (monthly 2 of 12)",
    "2026-08-31 22:00": "newest of 2026-08 (monthly 3 of 12)",
    "2026-07-31 22:00": "newest of 2026-07 (monthly 4 of 12)",
    "2026-06-30 22:00": "newest of 2026-06 (monthly 5 of 12)",
    "2026-05-31 22:00": "newest of 2026-05 (monthly 6 of 12)",
    "2026-04-30 22:00": "newest of 2026-04 (monthly 7 of 12)",
    "2026-03-31 22:00": "newest of 2026-03 (monthly 8 of 12)",
    "2026-02-28 22:00": "newest of 2026-02 (monthly 9 of 12)",
    "2026-01-31 22:00": "newest of 2026-01 (monthly 10 of 12)",
    "2025-12-31 22:00": "newest of 2025-12 (monthly 11 of 12)",
    "2025-11-30 22:00": "newest of 2025-11 (monthly 12 of 12)",
    # yearly 1 and 2 are 2026-10-31 and 2025-12-31, already kept; yearly 3 is the last night of 2024.
    "2024-12-31 22:00": "newest of 2024 (yearly 3 of 3)",
}


def test_two_year_nightly_history_keeps_exactly_the_expected_gfs_set():
    decision = gfs(TWO_YEARS, daily=7, weekly=4, monthly=12, yearly=3, now=TWO_YEARS_NOW)

    assert len(TWO_YEARS) == 730
    assert set(ids(decision.keep)) == set(EXPECTED_TWO_YEARS)
    assert len(decision.keep) == 21
    assert len(decision.remove) == 730 - 21
    assert_partition(decision, TWO_YEARS)


def test_two_year_history_explains_every_point_naming_the_first_rule_that_keeps_it():
    decision = gfs(TWO_YEARS, daily=7, weekly=4, monthly=12, yearly=3, now=TWO_YEARS_NOW)

    assert {i: decision.reasons[i] for i in EXPECTED_TWO_YEARS} == EXPECTED_TWO_YEARS
    assert decision.reasons["2026-10-24 22:00"] == "not kept by any rule"
    assert decision.reasons["2024-11-01 22:00"] == "not kept by any rule"
    assert decision.keep[0].id == "2026-10-31 22:00"
    assert decision.keep[-1].id == "2024-12-31 22:00"


def test_history_shorter_than_the_counts_keeps_one_point_per_period_that_has_points():
    # Only periods that have points count: four months and two years here, so monthly=12 and yearly=5
    # keep four points (the newest of 2026 and of 2025 are already kept as monthlies).
    history = nightly(date(2025, 11, 1), date(2026, 2, 27))
    decision = gfs(history, monthly=12, yearly=5, now=at(2026, 3, 1, 9))

    assert ids(decision.keep) == [
        "2026-02-27 22:00",
        "2026-01-31 22:00",
        "2025-12-31 22:00",
        "2025-11-30 22:00",
    ]
    assert decision.reasons["2026-02-27 22:00"] == "newest of 2026-02 (monthly 1 of 12)"
    assert decision.reasons["2025-12-31 22:00"] == "newest of 2025-12 (monthly 3 of 12)"
    assert decision.reasons["2025-11-30 22:00"] == "newest of 2025-11 (monthly 4 of 12)"


# --- GFS: buckets ----------------------------------------------------------------------------------


def test_several_points_a_day_keep_only_the_newest_of_each_day():
    history = [point(at(2026, 5, d, hh)) for d in range(1, 6) for hh in (2, 8, 14, 20)]
    decision = gfs(history, daily=3, now=at(2026, 5, 6, 9))

    assert ids(decision.keep) == ["2026-05-05 20:00", "2026-05-04 20:00", "2026-05-03 20:00"]
    assert decision.reasons["2026-05-05 14:00"] == "not kept by any rule"
    assert_partition(decision, history)


def test_week_boundary_sunday_to_monday_uses_local_time_on_the_night_clocks_go_back():
    # Clocks go back in Amsterdam at 03:00 on Sunday 2026-10-25. Both points below are on that Sunday in
    # UTC (22:30 and 23:30), but the second is on Monday in Amsterdam: a new ISO week. `now` is in
    # summer time, so a fixed +02:00 offset would put both on Monday: wrong too.
    friday = point(at(2026, 10, 23, 20))
    sunday = point(at(2026, 10, 25, 23, 30))
    monday = point(at(2026, 10, 26, 0, 30))
    assert sunday.created.astimezone(UTC).date() == monday.created.astimezone(UTC).date() == date(2026, 10, 25)

    decision = gfs([friday, sunday, monday], weekly=2, now=at(2027, 6, 1, 12))

    assert ids(decision.keep) == ["2026-10-26 00:30", "2026-10-25 23:30"]
    assert decision.reasons["2026-10-26 00:30"] == "newest of week 2026-W44 (weekly 1 of 2)"
    assert decision.reasons["2026-10-25 23:30"] == "newest of week 2026-W43 (weekly 2 of 2)"
    assert ids(decision.remove) == ["2026-10-23 20:00"]


def test_week_boundary_sunday_to_monday_uses_local_time_on_the_night_clocks_go_forward():
    # Clocks go forward in Amsterdam at 02:00 on Sunday 2026-03-29; Monday 00:30 CEST is Sunday 22:30 UTC,
    # and a fixed +01:00 offset (winter `now`) would call it Sunday 23:30.
    friday = point(at(2026, 3, 27, 20))
    sunday = point(at(2026, 3, 29, 23, 30))
    monday = point(at(2026, 3, 30, 0, 30))

    decision = gfs([monday, friday, sunday], weekly=2, now=at(2027, 1, 15, 12))

    assert ids(decision.keep) == ["2026-03-30 00:30", "2026-03-29 23:30"]
    assert decision.reasons["2026-03-30 00:30"] == "newest of week 2026-W14 (weekly 1 of 2)"
    assert decision.reasons["2026-03-29 23:30"] == "newest of week 2026-W13 (weekly 2 of 2)"


def test_same_utc_day_counts_as_two_days_when_local_midnight_lies_between():
    before = point(at(2026, 10, 25, 23, 30))
    after = point(at(2026, 10, 26, 0, 30))

    assert len(gfs([before, after], daily=2, now=at(2027, 1, 1, 12)).keep) == 2
    assert ids(gfs([before, after], daily=2, tz=UTC, now=at(2027, 1, 1, 12)).keep) == ["2026-10-26 00:30"]


@pytest.mark.parametrize(
    ("tz", "now"),
    [
        # Amsterdam: New Year in winter time; `now` in summer time (+02:00).
        (AMS, datetime(2026, 6, 15, 12, tzinfo=AMS)),
        # Sydney: New Year in summer time (+11:00, 00:30 is 13:30 UTC the day before); `now` in winter
        # time (+10:00), where a fixed offset would put 00:30 back into 2025.
        (SYD, datetime(2026, 6, 15, 12, tzinfo=SYD)),
    ],
)
def test_year_and_month_boundaries_use_local_time_across_dst_changes(tz, now):
    morning = point(at(2025, 12, 31, 8, tz=tz))
    new_years_eve = point(at(2025, 12, 31, 23, 30, tz=tz))
    new_year = point(at(2026, 1, 1, 0, 30, tz=tz))
    history = [morning, new_years_eve, new_year]
    assert new_year.created.astimezone(UTC).year == 2025

    yearly = gfs(history, yearly=2, tz=tz, now=now)
    assert ids(yearly.keep) == ["2026-01-01 00:30", "2025-12-31 23:30"]
    assert yearly.reasons["2026-01-01 00:30"] == "newest of 2026 (yearly 1 of 2)"
    assert yearly.reasons["2025-12-31 23:30"] == "newest of 2025 (yearly 2 of 2)"

    monthly = gfs(history, monthly=2, tz=tz, now=now)
    assert ids(monthly.keep) == ["2026-01-01 00:30", "2025-12-31 23:30"]
    assert monthly.reasons["2025-12-31 23:30"] == "newest of 2025-12 (monthly 2 of 2)"

    assert ids(gfs(history, yearly=2, tz=UTC, now=now).keep) == ["2026-01-01 00:30"]


def test_weeks_follow_the_iso_year_not_the_calendar_year():
    # Monday 2024-12-30 is in ISO week 2025-W01, with New Year's Day; Sunday 2024-12-29 is 2024-W52.
    history = [point(at(2024, 12, 29, 12)), point(at(2024, 12, 30, 12)), point(at(2025, 1, 1, 12))]
    decision = gfs(history, weekly=2, now=at(2025, 2, 1, 12))

    assert ids(decision.keep) == ["2025-01-01 12:00", "2024-12-29 12:00"]
    assert decision.reasons["2025-01-01 12:00"] == "newest of week 2025-W01 (weekly 1 of 2)"
    assert decision.reasons["2024-12-29 12:00"] == "newest of week 2024-W52 (weekly 2 of 2)"


# --- GFS: locks, the newest point, points in the future --------------------------------------------


def test_locked_point_is_kept_and_does_not_use_a_slot():
    history = nightly(date(2026, 5, 1), date(2026, 5, 5))
    locked = {
        "2026-05-05 22:00": datetime(2027, 1, 1, tzinfo=AMS),  # the newest point
        "2026-05-01 22:00": datetime(2027, 1, 1, 14, 30, tzinfo=AMS),  # an old one
    }
    history = [PointRef(p.id, p.created, locked.get(p.id)) for p in history]

    decision = gfs(history, daily=2, now=at(2026, 5, 6, 9))

    # Two daily slots still go to unlocked points: 05-04 and 05-03.
    assert ids(decision.keep) == ["2026-05-05 22:00", "2026-05-04 22:00", "2026-05-03 22:00", "2026-05-01 22:00"]
    assert ids(decision.remove) == ["2026-05-02 22:00"]
    assert decision.reasons["2026-05-05 22:00"] == "locked until 2027-01-01"
    assert decision.reasons["2026-05-01 22:00"] == "locked until 2027-01-01 14:30 CET"
    assert decision.reasons["2026-05-04 22:00"] == "newest of 2026-05-04 (daily 1 of 2)"
    assert decision.reasons["2026-05-03 22:00"] == "newest of 2026-05-03 (daily 2 of 2)"


def test_locked_newest_point_of_a_day_leaves_the_day_to_the_next_newest_point():
    morning = point(at(2026, 5, 5, 10))
    evening = point(at(2026, 5, 5, 20), locked_until=FAR_FUTURE)
    decision = gfs([morning, evening], daily=1, now=at(2026, 5, 6, 9))

    assert ids(decision.keep) == ["2026-05-05 20:00", "2026-05-05 10:00"]
    assert decision.reasons["2026-05-05 10:00"] == "newest of 2026-05-05 (daily 1 of 1)"


def test_expired_lock_protects_nothing():
    history = [point(at(2026, 5, 4)), point(at(2026, 5, 5)), point(at(2026, 5, 3), locked_until=at(2026, 5, 6, 9))]
    decision = gfs(history, daily=1, now=at(2026, 5, 6, 9))

    assert ids(decision.keep) == ["2026-05-05 22:00"]
    assert decision.reasons["2026-05-03 22:00"] == "not kept by any rule"


def test_all_counts_zero_keep_only_the_newest_and_the_locked_points():
    history = nightly(date(2026, 5, 1), date(2026, 5, 5))
    history[0] = PointRef(history[0].id, history[0].created, FAR_FUTURE)
    decision = gfs(history, now=at(2026, 5, 6, 9))

    assert ids(decision.keep) == ["2026-05-05 22:00", "2026-05-01 22:00"]
    assert decision.reasons["2026-05-05 22:00"] == (
        "newest point: every count is 0, but a prune never removes the latest point"
    )
    assert decision.reasons["2026-05-01 22:00"].startswith("locked until 2099-01-01")
    assert_partition(decision, history)


def test_points_dated_in_the_future_are_kept_and_do_not_use_a_slot():
    history = [point(at(2026, 5, 4)), point(at(2026, 5, 5)), point(at(2026, 5, 7))]
    decision = gfs(history, daily=1, weekly=1, monthly=1, yearly=1, now=at(2026, 5, 6, 9))

    assert ids(decision.keep) == ["2026-05-07 22:00", "2026-05-05 22:00"]
    assert "clock" in decision.reasons["2026-05-07 22:00"]
    assert decision.reasons["2026-05-05 22:00"] == "newest of 2026-05-05 (daily 1 of 1)"


def test_now_defaults_to_the_current_time():
    history = [point(at(2020, 1, 1)), point(at(2020, 1, 2)), point(at(2019, 6, 1), locked_until=FAR_FUTURE)]
    decision = gfs_retention(history, daily=0, weekly=0, monthly=0, yearly=0, tz=AMS)

    assert ids(decision.keep) == ["2020-01-02 22:00", "2019-06-01 22:00"]


def test_empty_input_gives_an_empty_decision():
    assert gfs([], daily=7, now=TWO_YEARS_NOW) == Decision(keep=[], remove=[], reasons={})
    assert local_retention([], days=7, count=3, now=TWO_YEARS_NOW) == Decision(keep=[], remove=[], reasons={})


# --- Input order, ties, invalid input --------------------------------------------------------------


def test_input_order_does_not_matter():
    expected = gfs(TWO_YEARS, daily=7, weekly=4, monthly=12, yearly=3, now=TWO_YEARS_NOW)
    shuffled = list(TWO_YEARS)
    random.Random(20261101).shuffle(shuffled)

    for order in (shuffled, list(reversed(TWO_YEARS))):
        assert gfs(order, daily=7, weekly=4, monthly=12, yearly=3, now=TWO_YEARS_NOW) == expected
        assert local_retention(order, days=10, count=30, now=TWO_YEARS_NOW) == local_retention(
            TWO_YEARS, days=10, count=30, now=TWO_YEARS_NOW
        )


def test_points_created_at_the_same_moment_are_ordered_by_id_whatever_the_input_order():
    a = PointRef("a", at(2026, 5, 5))
    b = PointRef("b", at(2026, 5, 5))
    for order in ([a, b], [b, a]):
        decision = gfs(order, daily=1, now=at(2026, 5, 6, 9))
        assert ids(decision.keep) == ["b"]
        assert ids(decision.remove) == ["a"]


def test_input_may_be_any_iterable():
    decision = gfs(iter(TWO_YEARS), daily=7, weekly=4, monthly=12, yearly=3, now=TWO_YEARS_NOW)
    assert set(ids(decision.keep)) == set(EXPECTED_TWO_YEARS)


def test_duplicate_ids_are_refused():
    history = [PointRef("p1", at(2026, 5, 4)), PointRef("p2", at(2026, 5, 5)), PointRef("p1", at(2026, 5, 6))]
    with pytest.raises(ValueError, match="duplicate point ids: p1"):
        gfs(history, daily=7, now=at(2026, 5, 7))
    with pytest.raises(ValueError, match="duplicate point ids: p1"):
        local_retention(history, days=7, count=3, now=at(2026, 5, 7))


@pytest.mark.parametrize(
    "bad",
    [
        [PointRef("naive", datetime(2026, 5, 5, 22))],
        [PointRef("naive lock", at(2026, 5, 5), locked_until=datetime(2027, 1, 1))],
    ],
)
def test_naive_times_are_refused(bad):
    with pytest.raises(ValueError, match="time-zone-aware"):
        gfs(bad, daily=1, now=at(2026, 5, 6))
    with pytest.raises(ValueError, match="time-zone-aware"):
        local_retention(bad, days=1, count=1, now=at(2026, 5, 6))
    with pytest.raises(ValueError, match="time-zone-aware"):
        local_retention([], days=1, count=1, now=datetime(2026, 5, 6))


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="weekly"):
        gfs([], daily=1, weekly=-1, now=at(2026, 5, 6))
    with pytest.raises(ValueError, match="days"):
        local_retention([], days=-1, count=1, now=at(2026, 5, 6))


# --- Local retention -------------------------------------------------------------------------------

LOCAL_NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
THIRTY_DAYS = [point(datetime(2026, 6, d, 12, tzinfo=UTC)) for d in range(1, 31)]  # noon UTC, 06-01..06-30


def test_local_keeps_points_younger_than_the_given_days():
    decision = local_retention(THIRTY_DAYS, days=3, count=0, now=LOCAL_NOW)

    # 06-27 12:00 is exactly 3 days old: no longer younger than 3 days.
    assert ids(decision.keep) == ["2026-06-30 12:00", "2026-06-29 12:00", "2026-06-28 12:00"]
    assert decision.reasons["2026-06-28 12:00"] == "within the last 3 days"
    assert decision.reasons["2026-06-27 12:00"] == "not kept by any rule"
    assert_partition(decision, THIRTY_DAYS)


def test_local_keeps_the_newest_count_points():
    history = [point(datetime(2026, 6, d, 12, tzinfo=UTC)) for d in (2, 9, 16, 23)]
    decision = local_retention(history, days=0, count=2, now=LOCAL_NOW)

    assert ids(decision.keep) == ["2026-06-23 12:00", "2026-06-16 12:00"]
    assert decision.reasons["2026-06-16 12:00"] == "one of the newest 2"
    assert decision.reasons["2026-06-09 12:00"] == "not kept by any rule"


def test_local_keeps_a_point_that_either_rule_keeps():
    # days=10 keeps 06-30 and 06-23 (06-20 12:00 is exactly 10 days old); count=4 keeps the four newest,
    # 06-20 and 06-16 included, although they are 10 and 14 days old.
    history = [point(datetime(2026, 6, d, 12, tzinfo=UTC)) for d in (2, 9, 16, 20, 23)] + [
        point(datetime(2026, 6, 30, 11, tzinfo=UTC))
    ]
    decision = local_retention(history, days=10, count=4, now=LOCAL_NOW)

    assert ids(decision.keep) == ["2026-06-30 11:00", "2026-06-23 12:00", "2026-06-20 12:00", "2026-06-16 12:00"]
    assert decision.reasons["2026-06-23 12:00"] == "within the last 10 days"
    assert decision.reasons["2026-06-20 12:00"] == "one of the newest 4"
    assert decision.reasons["2026-06-16 12:00"] == "one of the newest 4"

    wide = local_retention(history, days=30, count=1, now=LOCAL_NOW)
    assert len(wide.keep) == len(history)


def test_local_never_removes_the_newest_point():
    old = [point(datetime(2026, 1, d, 12, tzinfo=UTC)) for d in (1, 2, 3)]
    for days, count in ((1, 0), (0, 0)):
        decision = local_retention(old, days=days, count=count, now=LOCAL_NOW)
        assert ids(decision.keep) == ["2026-01-03 12:00"]
        assert decision.reasons["2026-01-03 12:00"] == "newest point: the latest point of a VM is never removed"
        assert_partition(decision, old)


def test_local_keeps_locked_points_without_counting_them():
    history = [
        point(datetime(2026, 1, 1, 12, tzinfo=UTC), locked_until=datetime(2027, 1, 1, tzinfo=UTC)),
        point(datetime(2026, 6, 1, 12, tzinfo=UTC)),
        point(datetime(2026, 6, 2, 12, tzinfo=UTC)),
        point(datetime(2026, 6, 3, 12, tzinfo=UTC), locked_until=datetime(2026, 6, 29, tzinfo=UTC)),  # expired
        point(datetime(2026, 6, 4, 12, tzinfo=UTC), locked_until=datetime(2026, 7, 15, 8, tzinfo=UTC)),
    ]
    decision = local_retention(history, days=7, count=2, now=LOCAL_NOW)

    assert ids(decision.keep) == ["2026-06-04 12:00", "2026-06-03 12:00", "2026-06-02 12:00", "2026-01-01 12:00"]
    assert ids(decision.remove) == ["2026-06-01 12:00"]
    assert decision.reasons["2026-06-04 12:00"] == "locked until 2026-07-15 08:00 UTC"
    assert decision.reasons["2026-01-01 12:00"] == "locked until 2027-01-01"
    assert decision.reasons["2026-06-02 12:00"] == "one of the newest 2 (not counting locked or future-dated points)"


def test_local_keeps_points_dated_in_the_future():
    history = [point(datetime(2026, 6, 1, 12, tzinfo=UTC)), point(datetime(2026, 7, 2, 12, tzinfo=UTC))]
    decision = local_retention(history, days=0, count=0, now=LOCAL_NOW)

    # The future point is kept, and the newest real point too.
    assert ids(decision.keep) == ["2026-07-02 12:00", "2026-06-01 12:00"]
    assert "clock" in decision.reasons["2026-07-02 12:00"]
