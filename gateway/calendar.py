"""The working-day calendar behind the overdue rule (Nghị định 30/2020/NĐ-CP, Điều 21).

A document that reaches an agency must be registered "trong ngày, chậm nhất là trong ngày làm việc tiếp
theo": a recipient that has not confirmed arrival (status 01) by the **end of the next working day** after
the hub received the package is overdue.

Decisions:

* Days are counted in Vietnam time, a fixed UTC+07:00 (no daylight saving), whatever the server's zone.
  Times go in and come out as *aware* datetimes; naive ones are refused because a silent guess of their
  zone is exactly the bug this module exists to prevent. The deadline is returned in UTC, the way the
  store keeps every time.
* "Next working day" is the first working day strictly after the day of receipt, so a package received
  on Friday is due by Monday 23:59:59.999999 and one received on Saturday is also due by Monday.
* Working days are Monday-Friday, minus the configured days off (public holidays, *nghỉ bù*, and the
  weekdays swapped away), plus the configured make-up Saturdays/Sundays (*ngày làm bù*). The annual
  schedule is decided by the government each year, so it is data (``config/holidays.toml``), not code.
* A confirmation that came after the deadline still marks the exchange overdue ("was it confirmed in
  time?"); callers that want only the open cases also check that no confirmation exists.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

VN_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")
"""Vietnam time (Asia/Ho_Chi_Minh has been a fixed +07:00 since 1975)."""

END_OF_DAY = dt.time(23, 59, 59, 999999)


@dataclass(frozen=True, slots=True, kw_only=True)
class Holidays:
    """A working-day calendar: weekdays off and weekend days worked.

    ``names`` maps a date to why it is special, for people reading a timeline; it does not affect
    the computation.
    """

    days_off: frozenset[dt.date] = frozenset()
    working_days: frozenset[dt.date] = frozenset()
    names: dict[dt.date, str] = field(default_factory=dict, compare=False, hash=False)

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.working_days:
            return True
        if day in self.days_off:
            return False
        return day.weekday() < 5

    def next_working_day(self, day: dt.date) -> dt.date:
        """The first working day strictly after ``day``."""
        nxt = day + dt.timedelta(days=1)
        for _ in range(366):
            if self.is_working_day(nxt):
                return nxt
            nxt += dt.timedelta(days=1)
        raise ConfigError("config.invalid", f"no working day within a year after {day}")

    @classmethod
    def of(cls, holidays: HolidaysLike) -> Holidays:
        """Accept a :class:`Holidays`, a plain iterable of days off, or ``None`` (weekends only)."""
        if isinstance(holidays, Holidays):
            return holidays
        if holidays is None:
            return cls()
        return cls(days_off=frozenset(holidays))

    @classmethod
    def parse(cls, text: str, *, source: str = "<holidays>") -> Holidays:
        """Read the TOML format of ``config/holidays.toml``.

        ``[[holiday]]`` and ``[[working_day]]`` tables each have either ``date`` or ``from``/``to``
        (inclusive) and an optional ``name``. Weekend dates inside a holiday range are harmless.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config.invalid", f"{source}: {exc}") from exc
        days_off: set[dt.date] = set()
        working: set[dt.date] = set()
        names: dict[dt.date, str] = {}
        for key, into in (("holiday", days_off), ("working_day", working)):
            entries = data.get(key, [])
            if not isinstance(entries, list):
                raise ConfigError("config.invalid", f"{source}: {key} must be an array of tables ([[{key}]])")
            for entry in entries:
                for day in _days_of(entry, source=source, key=key):
                    into.add(day)
                    names.setdefault(day, str(entry.get("name", key.replace("_", " "))))
        clash = days_off & working
        if clash:
            raise ConfigError("config.invalid", f"{source}: dates both off and working: {sorted(clash)}")
        return cls(days_off=frozenset(days_off), working_days=frozenset(working), names=names)

    @classmethod
    def load(cls, path: str | Path) -> Holidays:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("config.invalid", f"cannot read the holiday list {path}: {exc}") from exc
        return cls.parse(text, source=str(path))


HolidaysLike = Holidays | Iterable[dt.date] | None


def _days_of(entry: Any, *, source: str, key: str) -> list[dt.date]:
    if not isinstance(entry, dict):
        raise ConfigError("config.invalid", f"{source}: each {key} must be a table")
    if "date" in entry:
        day = entry["date"]
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise ConfigError("config.invalid", f"{source}: {key}.date must be a TOML date (YYYY-MM-DD)")
        return [day]
    start, end = entry.get("from"), entry.get("to")
    for value in (start, end):
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise ConfigError("config.invalid", f"{source}: {key} needs date, or from and to (TOML dates)")
    assert isinstance(start, dt.date)
    assert isinstance(end, dt.date)
    if end < start or (end - start).days > 31:
        raise ConfigError("config.invalid", f"{source}: {key} range {start}..{end} is not a plausible range")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _require_aware(name: str, value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (got a naive {value!r})")


def vn_display(value: str | dt.datetime | None) -> str:
    """A time as clerks read it: Vietnam local time, to the second (``""`` for none).

    Stored and API times are UTC; a deadline of 16:59:59Z is 23:59:59 in Tây Ninh, and showing the UTC
    figure would read as a 5 p.m. deadline. Naive values are taken as UTC.
    """
    if value is None or value == "":
        return ""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")


def vn_date(moment: dt.datetime) -> dt.date:
    """The calendar day in Vietnam at ``moment``."""
    _require_aware("moment", moment)
    return moment.astimezone(VN_TZ).date()


def month_key(moment: dt.datetime) -> int:
    """``yyyymm`` of ``moment`` in Vietnam time: the month a report files an exchange under."""
    day = vn_date(moment)
    return day.year * 100 + day.month


def deadline_for(received_at: dt.datetime, holidays: HolidaysLike = None) -> dt.datetime:
    """End of the next working day after ``received_at`` (Vietnam time), returned as aware UTC."""
    _require_aware("received_at", received_at)
    cal = Holidays.of(holidays)
    due_day = cal.next_working_day(vn_date(received_at))
    return dt.datetime.combine(due_day, END_OF_DAY, tzinfo=VN_TZ).astimezone(dt.UTC)


def is_overdue(
    received_at: dt.datetime,
    now: dt.datetime,
    confirmed_at: dt.datetime | None,
    holidays: HolidaysLike = None,
) -> bool:
    """Whether arrival was (or still is) not confirmed by the deadline.

    Unconfirmed: overdue once ``now`` is past the deadline. Confirmed: overdue if the confirmation came
    after it (a fact that does not change with time).
    """
    _require_aware("now", now)
    deadline = deadline_for(received_at, holidays)
    if confirmed_at is not None:
        _require_aware("confirmed_at", confirmed_at)
        return confirmed_at > deadline
    return now > deadline
