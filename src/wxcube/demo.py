"""A seeded, realistic year of visits ending yesterday, for `wxcube demo` and the tests.

Acquisition comes in waves (a launch, two campaigns, a steady trickle), visits follow a weekly
rhythm (weekends busier) and each user churns along a heavy-tailed curve, so the cohort
triangles look like a real Mini Program's.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa


def generate(
    end_day: dt.date,
    *,
    users: int = 20_000,
    days: int = 365,
    timezone: str = "Asia/Shanghai",
    seed: int = 20170201,
) -> pa.Table:
    """Visits ``(openid: string, ts: int64 Unix seconds)`` over ``days`` days ending ``end_day``."""
    rng = np.random.default_rng(seed)
    start = end_day - dt.timedelta(days=days - 1)
    t = np.arange(days)
    # acquisition intensity: launch spike, two campaign waves, steady base, slow growth
    intensity = (
        1.0
        + 8.0 * np.exp(-t / 6.0)
        + 4.0 * np.exp(-(((t - days * 0.4) / 5.0) ** 2))
        + 3.0 * np.exp(-(((t - days * 0.75) / 4.0) ** 2))
        + t / days
    )
    first = rng.choice(days, size=users, p=intensity / intensity.sum())
    # engagement: most users are casual; lifetime (days) heavy-tailed
    lifetime = np.minimum(rng.pareto(1.1, users) * 6.0, days).astype(np.int64)
    rate = rng.beta(1.2, 6.0, users)  # visit probability per day while alive
    weekday = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.35, 1.3])  # Mon..Sun
    start_wd = start.weekday()

    uid_parts, day_parts = [np.arange(users)], [first]  # everyone visits on their first day
    for offset in range(1, days):
        alive = (lifetime >= offset) & (first + offset < days)
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            continue
        d = first[idx] + offset
        p = rate[idx] * weekday[(start_wd + d) % 7] * (0.6 + 0.4 * np.exp(-offset / 30))
        hit = idx[rng.random(idx.size) < np.clip(p, 0, 1)]
        uid_parts.append(hit)
        day_parts.append(first[hit] + offset)
    uid = np.concatenate(uid_parts)
    day = np.concatenate(day_parts)
    repeat = rng.poisson(0.6, uid.size) + 1  # several visits a day, some exact duplicates
    uid, day = np.repeat(uid, repeat), np.repeat(day, repeat)
    # local time of day: evening-heavy, converted to UTC with the zone's offset at that day
    hour = np.clip(rng.normal(19.0, 4.0, uid.size), 0, 23.999)
    tz = ZoneInfo(timezone)
    midnight = np.array(
        [
            dt.datetime.combine(start + dt.timedelta(days=int(i)), dt.time(), tz).timestamp()
            for i in range(days)
        ],
        dtype=np.int64,
    )
    ts = midnight[day] + (hour * 3600).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    openid = np.char.add("o", np.char.zfill(uid[order].astype(str), 8))
    return pa.table({"openid": pa.array(openid.tolist(), pa.string()), "ts": ts[order]})
