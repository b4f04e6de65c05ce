"""Days, Mon–Sun weeks and natural months: one abstraction for all three.

Days are plain ``int`` day numbers (days since 1970-01-01, the same number DuckDB gives for
``day - DATE '1970-01-01'``), so periods are ranges of ints and the index keys are ints.
A period is identified by the day number of its first day.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from .errors import DateFormatError, DateRangeError

EPOCH = dt.date(1970, 1, 1)
KindName = Literal["day", "week", "month"]
_YYYYMMDD = re.compile(r"[0-9]{8}")  # ASCII digits only (\d admits full-width ones)


def to_daynum(d: dt.date) -> int:
    return (d - EPOCH).days


def from_daynum(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=n)


def fmt(n: int) -> str:
    """Day number -> ``yyyymmdd`` (zero-padded years too, unlike strftime)."""
    d = from_daynum(n)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def parse_date(value: object, field: str = "date") -> int:
    """``yyyymmdd`` of a real date -> day number; anything else is 61500."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return to_daynum(value)
    if not isinstance(value, str) or not _YYYYMMDD.fullmatch(value):
        raise DateFormatError(f"{field}: {value!r} is not yyyymmdd")
    try:
        return to_daynum(dt.date(int(value[:4]), int(value[4:6]), int(value[6:])))
    except ValueError:
        raise DateFormatError(f"{field}: {value!r} is not a real date") from None


@dataclass(frozen=True)
class Kind:
    """A kind of period. ``DAY``, ``WEEK`` and ``MONTH`` are the only instances."""

    name: KindName
    keys: tuple[int, ...]
    api: str  # WeChat's cloud-call name, e.g. getMonthlyRetain
    path: str  # WeChat's HTTPS path

    def start_of(self, day: int) -> int:
        """First day of the period that contains ``day``."""
        if self.name == "day":
            return day
        if self.name == "week":
            return day - (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        return to_daynum(from_daynum(day).replace(day=1))

    def shift(self, start: int, k: int) -> int:
        """First day of P+k, for P starting at ``start``."""
        if self.name == "day":
            return start + k
        if self.name == "week":
            return start + 7 * k
        d = from_daynum(start)
        m = d.year * 12 + d.month - 1 + k
        return to_daynum(dt.date(m // 12, m % 12 + 1, 1))

    def end(self, start: int) -> int:
        """Last day of the period starting at ``start``."""
        return self.shift(start, 1) - 1

    def days(self, start: int) -> range:
        return range(start, self.end(start) + 1)

    def ref_date(self, start: int) -> str:
        if self.name == "day":
            return fmt(start)
        if self.name == "week":
            return f"{fmt(start)}-{fmt(self.end(start))}"
        return fmt(start)[:6]

    def present_keys(
        self, start: int, as_of: int, keys: tuple[int, ...] | None = None
    ) -> list[int]:
        """Keys whose period P+k has ended on or before ``as_of``, ascending."""
        return [k for k in sorted(keys or self.keys) if self.end(self.shift(start, k)) <= as_of]

    def check_shape(self, begin: int, end: int) -> None:
        """WeChat's rule: exactly one period, given by its first and last day (61501)."""
        if begin > end:
            raise DateRangeError(f"begin_date {fmt(begin)} is after end_date {fmt(end)}")
        if self.start_of(begin) != begin or self.end(begin) != end:
            raise DateRangeError(f"{fmt(begin)}-{fmt(end)} is not {self.describe}")

    def check_elapsed(self, start: int, as_of: int) -> None:
        if self.end(start) > as_of:
            raise DateRangeError(f"{self.ref_date(start)} has not ended by as_of {fmt(as_of)}")

    def starts(self, begin: int, end: int) -> list[int]:
        """Starts of every period from the one starting at ``begin`` up to the one containing
        ``end`` (used by ranges: the CLI and ``/wxcube/v1/retain``)."""
        out, p = [], self.start_of(begin)
        while p <= end:
            out.append(p)
            p = self.shift(p, 1)
        return out

    def count(self, begin: int, end: int) -> int:
        """len(self.starts(begin, end)), without building the list (ranges can be huge)."""
        first, last = self.start_of(begin), self.start_of(end)
        if last < first:
            return 0
        if self.name == "day":
            return last - first + 1
        if self.name == "week":
            return (last - first) // 7 + 1
        a, b = from_daynum(first), from_daynum(last)
        return (b.year - a.year) * 12 + b.month - a.month + 1

    @property
    def describe(self) -> str:
        return {
            "day": "one day (begin_date == end_date)",
            "week": "one Monday-Sunday week",
            "month": "one natural month (the 1st to its last day)",
        }[self.name]


DAY = Kind(
    "day",
    (0, 1, 2, 3, 4, 5, 6, 7, 14, 30),
    "getDailyRetain",
    "/datacube/getweanalysisappiddailyretaininfo",
)
WEEK = Kind(
    "week", (0, 1, 2, 3, 4), "getWeeklyRetain", "/datacube/getweanalysisappidweeklyretaininfo"
)
MONTH = Kind("month", (0, 1), "getMonthlyRetain", "/datacube/getweanalysisappidmonthlyretaininfo")
KINDS: dict[str, Kind] = {"day": DAY, "week": WEEK, "month": MONTH}
# CLI spellings: `wxcube retain daily|weekly|monthly`
ADVERBS: dict[str, Kind] = {"daily": DAY, "weekly": WEEK, "monthly": MONTH}


def kind(name: str) -> Kind:
    try:
        return KINDS[name] if name in KINDS else ADVERBS[name]
    except KeyError:
        raise ValueError(f"unknown period kind {name!r}: day, week or month") from None


def parse_period(k: Kind, begin_date: object, end_date: object) -> int:
    """Validate a WeChat request's dates (61500, then 61501) and return the period start."""
    begin = parse_date(begin_date, "begin_date")
    end = parse_date(end_date, "end_date")
    k.check_shape(begin, end)
    return begin
