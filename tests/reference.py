"""The obviously-correct reference: retention from plain Python sets of (openid, local day).

Nothing here is shared with the engine except the period arithmetic's *definition*, which is
re-derived below from datetime (Mon–Sun weeks, natural months) rather than imported.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

EPOCH = dt.date(1970, 1, 1)


def local_day(epoch: float, tz: str) -> dt.date:
    return dt.datetime.fromtimestamp(epoch, ZoneInfo(tz)).date()


def period_days(kind: str, start: dt.date, k: int) -> tuple[dt.date, dt.date]:
    """First and last day of P+k for P starting at ``start``."""
    if kind == "day":
        d = start + dt.timedelta(days=k)
        return d, d
    if kind == "week":
        assert start.weekday() == 0
        d = start + dt.timedelta(weeks=k)
        return d, d + dt.timedelta(days=6)
    assert start.day == 1
    m = start.year * 12 + start.month - 1 + k
    first = dt.date(m // 12, m % 12 + 1, 1)
    m += 1
    nxt = dt.date(m // 12, m % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


KEYS = {"day": [0, 1, 2, 3, 4, 5, 6, 7, 14, 30], "week": [0, 1, 2, 3, 4], "month": [0, 1]}


def retain(
    visits: list[tuple[str, float]], tz: str, kind: str, start: dt.date, as_of: dt.date
) -> dict[str, object]:
    """WeChat-shaped body for one period, by brute force over sets."""
    pairs = {(o, local_day(t, tz)) for o, t in visits}
    first: dict[str, dt.date] = {}
    for o, d in pairs:
        if o not in first or d < first[o]:
            first[o] = d
    lo, hi = period_days(kind, start, 0)
    active0 = {o for o, d in pairs if lo <= d <= hi}
    new0 = {o for o, f in first.items() if lo <= f <= hi}
    uv_new, uv = [], []
    for k in KEYS[kind]:
        a, b = period_days(kind, start, k)
        if b > as_of:
            continue
        later = {o for o, d in pairs if a <= d <= b}
        uv_new.append({"key": k, "value": len(new0 & later)})
        uv.append({"key": k, "value": len(active0 & later)})
    if kind == "day":
        ref = start.strftime("%Y%m%d")
    elif kind == "week":
        ref = f"{start:%Y%m%d}-{hi:%Y%m%d}"
    else:
        ref = f"{start:%Y%m}"
    return {"ref_date": ref, "visit_uv_new": uv_new, "visit_uv": uv}


def period_starts(kind: str, lo: dt.date, hi: dt.date) -> list[dt.date]:
    """Every period of ``kind`` that ends on or before ``hi`` and overlaps [lo, hi]."""
    if kind == "day":
        s = lo
    elif kind == "week":
        s = lo - dt.timedelta(days=lo.weekday())
    else:
        s = lo.replace(day=1)
    out = []
    while True:
        a, b = period_days(kind, s, 0)
        if a > hi:
            return out
        if b <= hi:
            out.append(a)
        s = period_days(kind, s, 1)[0]
