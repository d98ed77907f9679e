"""An attendance gallery's schedule (local time) and the time zone it is read in.

Marks are stored in UTC; the schedule (``HH:MM`` start and end, working days, grace minutes) is in the
local time of the ``timezone`` setting (an IANA name; default: the machine's local zone).

    >>> parse_days("mon-fri")
    'mon,tue,wed,thu,fri'
    >>> parse_days("sat, sun")
    'sat,sun'
    >>> parse_hhmm("9:05")
    '09:05'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vigil.core.config import Settings
from vigil.core.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names in ``date.weekday()`` order."""


def parse_hhmm(text: str) -> str:
    """``H:MM`` or ``HH:MM`` (24-hour clock) as ``HH:MM``; ValueError otherwise."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2 or len(hours) > 2:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError(f"{text!r} is not a time of day HH:MM (00:00 to 23:59)")
    return f"{h:02d}:{m:02d}"


_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(token: str) -> int:
    key = token.strip().lower()
    if key in DAYS:
        return DAYS.index(key)
    if key in _FULL:
        return _FULL.index(key)
    raise ValueError(f"{token.strip()!r} is not a day (mon, tue, wed, thu, fri, sat, sun)")


def parse_days(text: str) -> str:
    """Working days such as ``mon-fri``, ``mon,wed,fri`` or ``sat-mon`` (wrapping), in week order,
    comma-separated; ValueError when a token is not a day or nothing is left."""
    chosen: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            continue
        first, sep, last = part.partition("-")
        a = _day(first)
        b = _day(last) if sep else a
        chosen.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    if not chosen:
        raise ValueError(f"{text!r} names no working day; use for example mon-fri")
    return ",".join(DAYS[i] for i in sorted(chosen))


@dataclass(frozen=True)
class Schedule:
    """A gallery's schedule; any part may be unset (then lateness or absences are not computed)."""

    start: time | None
    end: time | None
    days: frozenset[int]
    """Working days, ``date.weekday()`` numbers (Monday 0)."""
    grace_min: int

    @classmethod
    def of(cls, start: str | None, end: str | None, days: str | None, grace_min: int | None) -> Schedule:
        return cls(
            start=time.fromisoformat(start) if start else None,
            end=time.fromisoformat(end) if end else None,
            days=frozenset(DAYS.index(d) for d in days.split(",")) if days else frozenset(),
            grace_min=grace_min or 0,
        )

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.days

    def late_after(self, day: date, zone: ZoneInfo) -> datetime | None:
        """The local moment after which an arrival on ``day`` is late (start + grace); None: no start."""
        if self.start is None:
            return None
        return datetime.combine(day, self.start, zone) + timedelta(minutes=self.grace_min)

    def end_at(self, day: date, zone: ZoneInfo) -> datetime | None:
        return None if self.end is None else datetime.combine(day, self.end, zone)


def _machine_zone_name() -> str:
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    timezone_file = Path("/etc/timezone")
    if timezone_file.is_file():
        name = timezone_file.read_text(encoding="utf-8").strip()
        if name:
            return name
    return "UTC"


def local_zone(settings: Settings) -> ZoneInfo:
    """The zone schedules and reports are read in: the ``timezone`` setting, else the machine's."""
    name = settings.timezone or _machine_zone_name()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {name!r}",
            hint="set VIGIL_TIMEZONE to an IANA name such as Europe/Paris or America/New_York",
        ) from exc
