"""Per app, per API call quotas: 45011 past the minute quota, 45009 past the daily one.

Windows are calendar minutes and calendar days in the app's timezone (WeChat resets daily
quotas at local midnight). Limits come from settings; ``WXCUBE_QUOTAS`` overrides them per app.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from zoneinfo import ZoneInfo

from .errors import DailyQuotaExceeded, MinuteQuotaExceeded


def parse_overrides(spec: str | None) -> dict[str, tuple[int | None, int | None]]:
    """``APPID=MINUTE/DAILY[,APPID=MINUTE/DAILY...]``; either number may be left empty."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        appid, sep, limits = part.partition("=")
        minute, _, daily = limits.partition("/")
        if not sep or not appid.strip():
            raise ValueError(f"quota override {part!r}: expected APPID=MINUTE/DAILY")
        try:
            out[appid.strip()] = (
                int(minute) if minute.strip() else None,
                int(daily) if daily.strip() else None,
            )
        except ValueError:
            raise ValueError(f"quota override {part!r}: limits must be integers") from None
    return out


class Quotas:
    def __init__(
        self,
        minute: int,
        daily: int,
        clock: Callable[[], float],
        overrides: dict[str, tuple[int | None, int | None]] | None = None,
    ) -> None:
        self.minute, self.daily, self.clock = minute, daily, clock
        self.overrides = overrides or {}
        # (appid, api) -> [minute bucket, calls in it, day bucket, calls in it]
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._offsets: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def limits(self, appid: str) -> tuple[int, int]:
        m, d = self.overrides.get(appid, (None, None))
        return (self.minute if m is None else m, self.daily if d is None else d)

    def _offset(self, tz: str, now: float) -> int:
        """UTC offset of ``tz`` in seconds, cached per 15 minutes (offsets change rarely)."""
        key = (tz, int(now // 900))
        off = self._offsets.get(key)
        if off is None:
            u = dt.datetime.fromtimestamp(now, ZoneInfo(tz)).utcoffset()
            off = int(u.total_seconds()) if u else 0
            if len(self._offsets) > 1024:
                self._offsets.clear()
            self._offsets[key] = off
        return off

    def hit(self, appid: str, api: str, tz: str) -> None:
        """Count one call, or raise 45009 / 45011 (a refused call is not counted)."""
        now = self.clock()
        local = now + self._offset(tz, now)
        minute, day = int(local // 60), int(local // 86400)
        per_minute, per_day = self.limits(appid)
        with self._lock:
            c = self._counts.get((appid, api))
            if c is None:
                c = self._counts[(appid, api)] = [minute, 0, day, 0]
            if c[0] != minute:
                c[0], c[1] = minute, 0
            if c[2] != day:
                c[2], c[3] = day, 0
            if c[3] >= per_day:
                raise DailyQuotaExceeded(f"{api}: {per_day} calls a day")
            if c[1] >= per_minute:
                raise MinuteQuotaExceeded(f"{api}: {per_minute} calls a minute")
            c[1] += 1
            c[3] += 1
