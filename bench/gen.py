"""Seeded benchmark data: the visits of a Mini Program over a year, as Parquet and CSV.

Standard data (scale 1): 20,000,000 visits by 2,000,000 users over 365 days ending
2025-12-31 in Asia/Shanghai. ``scale`` multiplies visits and users (5 → 100M / 10M); the span
stays a year. Everything is vectorized (numpy + pyarrow): the standard data takes seconds.

Shape: users arrive in waves (launch, campaigns, growth); each user is active on a heavy-tailed
number of days spaced by geometric gaps (casual users churn, a few are daily); an active day has
one or more visits (exact duplicates included); times of day are evening-heavy. openids look like
WeChat's (28 characters, ``o`` + base64url), unique by construction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

VISITS = 20_000_000
USERS = 2_000_000
DAYS = 365
END = dt.date(2025, 12, 31)
TIMEZONE = "Asia/Shanghai"
SEED = 20170201
_B64 = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)


@dataclass(frozen=True)
class Dataset:
    parquet: Path
    csv: Path
    visits: int
    users: int
    days: int
    first_day: dt.date
    last_day: dt.date
    timezone: str
    seed: int


def sizes(scale: float) -> tuple[int, int]:
    return max(1000, round(VISITS * scale)), max(100, round(USERS * scale))


def openids(n: int, rng: np.random.Generator) -> pa.StringArray:
    """``n`` distinct 28-character openids: ``o`` + 6 characters that encode a bijection of the
    index (so they are unique) + 21 random base64url characters."""
    width = 28
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, 0] = ord("o")
    mixed = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B1)) & np.uint64((1 << 36) - 1)
    for i in range(6):
        buf[:, 1 + i] = _B64[((mixed >> np.uint64(6 * (5 - i))) & np.uint64(63)).astype(np.intp)]
    buf[:, 7:] = _B64[rng.integers(0, 64, size=(n, width - 7))]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf.tobytes()))


def generate(
    scale: float = 1.0, *, seed: int = SEED, days: int = DAYS, end: dt.date = END
) -> pa.Table:
    """Visits ``(openid: string, ts: timestamp[s, UTC])``, sorted by time."""
    n_visits, n_users = sizes(scale)
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    intensity = (
        1.0
        + 8.0 * np.exp(-t / 6.0)
        + 4.0 * np.exp(-(((t - days * 0.4) / 5.0) ** 2))
        + 3.0 * np.exp(-(((t - days * 0.75) / 4.0) ** 2))
        + 1.5 * t / days
    )
    first = rng.choice(days, size=n_users, p=intensity / intensity.sum()).astype(np.int64)
    # active days beyond the first: heavy-tailed (Lomax), ~9 before the end of the data cuts them
    extra = np.minimum(np.floor(rng.pareto(1.35, n_users) * 3.2), days).astype(np.int64)
    # spacing between active days: each user has their own rhythm (1 = daily)
    p_gap = rng.beta(1.3, 3.0, n_users) * 0.95 + 0.05
    owner = np.repeat(np.arange(n_users, dtype=np.int64), extra)
    gaps = rng.geometric(p_gap[owner])
    csum = np.cumsum(gaps)
    seg_start = np.concatenate(([0], np.cumsum(extra)[:-1]))
    before = np.concatenate(([0], csum))[seg_start]  # cumulative sum before each user's run
    later = first[owner] + csum - np.repeat(before, extra)
    keep = later < days
    pair_user = np.concatenate((np.arange(n_users, dtype=np.int64), owner[keep]))
    pair_day = np.concatenate((first, later[keep]))
    n_pairs = pair_user.size
    if n_pairs > n_visits:  # keep every first day; drop later days at random
        drop = rng.choice(np.arange(n_users, n_pairs), n_pairs - n_visits, replace=False)
        mask = np.ones(n_pairs, bool)
        mask[drop] = False
        pair_user, pair_day = pair_user[mask], pair_day[mask]
        n_pairs = pair_user.size
    # every pair is visited once; the rest of the visits land on random pairs (repeat visits)
    repeat = 1 + np.bincount(rng.integers(0, n_pairs, n_visits - n_pairs), minlength=n_pairs)
    user = np.repeat(pair_user, repeat)
    day = np.repeat(pair_day, repeat)
    # local time of day: evening-heavy; converted to UTC with the zone's offset on that day
    tz = ZoneInfo(TIMEZONE)
    start = end - dt.timedelta(days=days - 1)
    midnight = np.array(
        [
            int(dt.datetime.combine(start + dt.timedelta(days=i), dt.time(), tz).timestamp())
            for i in range(days)
        ],
        dtype=np.int64,
    )
    secs = np.clip(rng.normal(19.5 * 3600, 4.5 * 3600, n_visits), 0, 86399).astype(np.int64)
    ts = midnight[day] + secs
    order = np.argsort(ts, kind="stable")
    ids = openids(n_users, rng).take(pa.array(user[order]))
    return pa.table({"openid": ids, "ts": pa.array(ts[order], pa.timestamp("s", tz="UTC"))})


def ensure(data_dir: Path, scale: float = 1.0, *, seed: int = SEED, log: bool = True) -> Dataset:
    """The dataset for (scale, seed) under ``data_dir``, generated unless already there."""
    n_visits, n_users = sizes(scale)
    stem = f"visits-{n_visits}-{n_users}-{seed}"
    parquet, csv = data_dir / f"{stem}.parquet", data_dir / f"{stem}.csv"
    if not (parquet.exists() and csv.exists()):
        data_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        table = generate(scale, seed=seed)
        t1 = time.perf_counter()
        tmp = parquet.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, row_group_size=1 << 20)
        tmp.rename(parquet)
        csv_table = table.set_column(1, "ts", pc.cast(table["ts"], pa.int64()))
        tmp = csv.with_suffix(".csv.tmp")
        pacsv.write_csv(csv_table, tmp, pacsv.WriteOptions(quoting_style="none"))
        tmp.rename(csv)
        if log:
            print(
                f"generated {n_visits:,} visits by {n_users:,} users in {t1 - t0:.1f} s "
                f"(written in {time.perf_counter() - t1:.1f} s): {parquet.name}, {csv.name}"
            )
    return Dataset(
        parquet,
        csv,
        n_visits,
        n_users,
        DAYS,
        END - dt.timedelta(days=DAYS - 1),
        END,
        TIMEZONE,
        seed,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "data")
    a = ap.parse_args()
    ds = ensure(a.data_dir, a.scale, seed=a.seed)
    print(ds)


if __name__ == "__main__":
    main()
