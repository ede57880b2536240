"""Backup schedules: parse the administrator's text form and compute slots. Plain Python.

Forms (times are local to the schedule's time zone):
    daily 02:00[,14:00...]        every day at those times
    every 4h [from 01:00]          every N hours (1-24), counted from a start time (default 00:00)
    mon,wed,fri 22:00[,...]        on those weekdays at those times
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ScheduleError(ValueError):
    """The schedule text is not understood; the message says what is wrong and gives an example."""


@dataclass(frozen=True)
class Schedule:
    kind: str  # "daily", "hourly" or "weekly"
    times: tuple[time, ...] = ()
    every_hours: int = 0
    weekdays: tuple[int, ...] = ()  # 0 = Monday
    timezone: str = "UTC"

    def __str__(self) -> str:
        times = ",".join(t.strftime("%H:%M") for t in self.times)
        if self.kind == "hourly":
            start = self.times[0].strftime("%H:%M") if self.times else "00:00"
            return f"every {self.every_hours}h" + (f" from {start}" if start != "00:00" else "")
        if self.kind == "weekly":
            return f"{','.join(WEEKDAYS[d] for d in self.weekdays)} {times}"
        return f"daily {times}"

    def describe(self) -> str:
        """A sentence for pages: "Every day at 02:00 and 14:00 (Europe/Berlin)"."""
        times = " and ".join(t.strftime("%H:%M") for t in self.times)
        if self.kind == "hourly":
            start = self.times[0].strftime("%H:%M") if self.times else "00:00"
            text = f"Every {self.every_hours} hour{'s' if self.every_hours > 1 else ''} from {start}"
        elif self.kind == "weekly":
            text = f"{', '.join(WEEKDAYS[d].capitalize() for d in self.weekdays)} at {times}"
        else:
            text = f"Every day at {times}"
        return f"{text} ({self.timezone})"

    def _slots_on(self, day: date, zone: ZoneInfo) -> list[datetime]:
        if self.kind == "weekly" and day.weekday() not in self.weekdays:
            return []
        if self.kind == "hourly":
            start = self.times[0] if self.times else time(0)
            first = start.hour * 60 + start.minute
            minutes = [m for m in range(first % (self.every_hours * 60), 24 * 60, self.every_hours * 60)]
            local = [time(m // 60, m % 60) for m in minutes]
        else:
            local = list(self.times)
        return [datetime.combine(day, t, tzinfo=zone) for t in local]

    def latest_slot(self, now: datetime) -> datetime | None:
        """The most recent slot at or before `now` (within the last 8 days), as an aware datetime."""
        zone = ZoneInfo(self.timezone)
        local_now = now.astimezone(zone)
        for back in range(0, 9):
            slots = [s for s in self._slots_on(local_now.date() - timedelta(days=back), zone) if s <= local_now]
            if slots:
                return max(slots)
        return None

    def next_slot(self, now: datetime) -> datetime | None:
        zone = ZoneInfo(self.timezone)
        local_now = now.astimezone(zone)
        for ahead in range(0, 9):
            slots = [s for s in self._slots_on(local_now.date() + timedelta(days=ahead), zone) if s > local_now]
            if slots:
                return min(slots)
        return None


def _times(text: str) -> tuple[time, ...]:
    values = []
    for part in text.split(","):
        match = _TIME.match(part.strip())
        if not match:
            raise ScheduleError(f"{part.strip()!r} is not a time of day: write it as HH:MM, like 02:30.")
        values.append(time(int(match[1]), int(match[2])))
    if len(set(values)) != len(values):
        raise ScheduleError("The same time is given twice.")
    return tuple(sorted(values))


def parse_schedule(text: str, timezone: str = "UTC") -> Schedule:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"Unknown time zone {timezone!r}; use a name like Europe/Berlin or UTC.") from None
    words = text.strip().lower().split()
    if not words:
        raise ScheduleError("Give a schedule, like “daily 02:00”, “every 4h” or “mon,wed,fri 22:00”.")
    if words[0] == "daily" and len(words) == 2:
        return Schedule(kind="daily", times=_times(words[1]), timezone=timezone)
    if words[0] == "every" and len(words) in (2, 4):
        match = re.fullmatch(r"(\d+)h", words[1])
        if not match or not 1 <= int(match[1]) <= 24:
            raise ScheduleError("“every” takes a number of hours from 1 to 24, like “every 4h”.")
        start = _times(words[3]) if len(words) == 4 and words[2] == "from" else (time(0),)
        if len(words) == 4 and words[2] != "from":
            raise ScheduleError("Write “every 4h from 01:00”.")
        return Schedule(kind="hourly", every_hours=int(match[1]), times=start[:1], timezone=timezone)
    if len(words) == 2 and all(day in WEEKDAYS for day in words[0].split(",")):
        days = tuple(sorted({WEEKDAYS.index(day) for day in words[0].split(",")}))
        return Schedule(kind="weekly", weekdays=days, times=_times(words[1]), timezone=timezone)
    raise ScheduleError(f"“{text}” is not a schedule: write “daily 02:00”, “every 4h” or “mon,wed,fri 22:00”.")
