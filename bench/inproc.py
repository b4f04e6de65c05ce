"""In-process figures: retention latency of the bitmap path (cached and cold), the SQL path over
the activity table, DuckDB SQL over the raw visits and ClickHouse ``retention()`` (chdb) over the
raw Parquet; index rebuild and snapshot times. Every peer's answer is checked against the
bitmaps."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wxcube import snapshot
from wxcube.index import AppIndex
from wxcube.periods import DAY, KINDS, MONTH, WEEK, Kind, from_daynum
from wxcube.retention import Retain, bitmap_retain, sql_retain
from wxcube.store import Store

from .gen import Dataset

Period = tuple[Kind, int]


def stats(samples_ns: Sequence[int]) -> dict[str, Any]:
    """Median, p99 (nearest rank), mean, max in µs."""
    if not samples_ns:
        return {"n": 0}
    s = sorted(samples_ns)
    p99 = s[min(len(s) - 1, max(0, -(-99 * len(s) // 100) - 1))]
    return {
        "n": len(s),
        "median_us": round(statistics.median(s) / 1e3, 2),
        "p99_us": round(p99 / 1e3, 2),
        "mean_us": round(statistics.fmean(s) / 1e3, 2),
        "max_us": round(s[-1] / 1e3, 2),
    }


def periods(ds: Dataset, as_of: int) -> list[Period]:
    """Every day, week and month of the data that has ended by as_of."""
    first = (ds.first_day - from_daynum(0)).days
    out: list[Period] = []
    for kind in (DAY, WEEK, MONTH):
        out += [(kind, s) for s in kind.starts(first, as_of) if kind.end(s) <= as_of]
    return out


def sample(ps: Sequence[Period], per_kind: int) -> list[Period]:
    """``per_kind`` periods of each kind, evenly spread."""
    out: list[Period] = []
    for kind in KINDS.values():
        mine = [p for p in ps if p[0] is kind]
        if not mine or per_kind <= 0:
            continue
        n = min(per_kind, len(mine))
        idx = sorted({round(i * (len(mine) - 1) / max(1, n - 1)) for i in range(n)})
        out += [mine[i] for i in idx]
    return out


def _by_kind(samples: dict[str, list[int]]) -> dict[str, Any]:
    return {k: stats(v) for k, v in samples.items() if v}


def time_path(
    ps: Sequence[Period], fn: Callable[[Kind, int], Retain], reps: int = 1
) -> tuple[dict[str, Any], dict[Period, Retain]]:
    """Call ``fn`` on every period ``reps`` times; stats over every call, overall and per kind."""
    all_ns: list[int] = []
    per: dict[str, list[int]] = {k: [] for k in KINDS}
    answers: dict[Period, Retain] = {}
    clock = time.perf_counter_ns
    for kind, start in ps:
        for _ in range(reps):
            t0 = clock()
            r = fn(kind, start)
            dt = clock() - t0
            all_ns.append(dt)
            per[kind.name].append(dt)
        answers[(kind, start)] = r
    out = stats(all_ns)
    out["by_kind"] = _by_kind(per)
    return out, answers


def _disagree(want: dict[Period, Retain], got: dict[Period, Retain]) -> list[str]:
    return [
        f"{k.name} {from_daynum(s)}: {got[(k, s)]} != {want[(k, s)]}"
        for (k, s) in got
        if got[(k, s)] != want[(k, s)]
    ]


def counted_retain(idx: AppIndex, kind: Kind, start: int, as_of: int) -> Retain:
    """``bitmap_retain`` on the index's cached retention numbers (``AppIndex.counts``)."""
    kind.check_elapsed(start, as_of)
    present = kind.present_keys(start, as_of)
    got = idx.counts(kind, start, present)
    return Retain(
        kind.ref_date(start),
        tuple((k, n) for k, (n, _) in zip(present, got, strict=True)),
        tuple((k, a) for k, (_, a) in zip(present, got, strict=True)),
    )


# --- peers over the raw visits ------------------------------------------------------------
def _key_ranges(kind: Kind, start: int, as_of: int) -> list[tuple[int, str, str]]:
    out = []
    for k in kind.present_keys(start, as_of):
        p = kind.shift(start, k)
        out.append((k, str(from_daynum(p)), str(from_daynum(kind.end(p)))))
    return out


_DUCK_RAW = """
WITH v AS (SELECT DISTINCT openid, timezone('{tz}', ts)::DATE AS day FROM visits),
     f AS (SELECT openid, min(day) AS first_day FROM v GROUP BY openid),
     p AS (SELECT DISTINCT openid FROM v WHERE day BETWEEN DATE '{s}' AND DATE '{e}'),
     k AS (SELECT * FROM (VALUES {values}) k(key, s, e))
SELECT k.key,
       count(DISTINCT v.openid) FILTER (WHERE f.first_day BETWEEN DATE '{s}' AND DATE '{e}')
           AS visit_uv_new,
       count(DISTINCT v.openid) AS visit_uv
FROM k JOIN v ON v.day BETWEEN k.s AND k.e JOIN p USING (openid) JOIN f USING (openid)
GROUP BY k.key
"""


def duckdb_raw(ds: Dataset, as_of: int) -> tuple[Callable[[Kind, int], Retain], Callable[[], None]]:
    """DuckDB SQL over the raw visits, as a user would write it (table loaded once, untimed)."""
    import duckdb

    conn = duckdb.connect()
    conn.execute(f"CREATE TABLE visits AS SELECT * FROM read_parquet('{ds.parquet}')")

    def q(kind: Kind, start: int) -> Retain:
        keys = _key_ranges(kind, start, as_of)
        values = ", ".join(f"({k}, DATE '{s}', DATE '{e}')" for k, s, e in keys)
        rows = conn.execute(
            _DUCK_RAW.format(
                tz=ds.timezone,
                s=from_daynum(start),
                e=from_daynum(kind.end(start)),
                values=values,
            )
        ).fetchall()
        got = {int(k): (int(n), int(a)) for k, n, a in rows}
        return Retain(
            kind.ref_date(start),
            tuple((k, got.get(k, (0, 0))[0]) for k, _, _ in keys),
            tuple((k, got.get(k, (0, 0))[1]) for k, _, _ in keys),
        )

    return q, conn.close


def chdb_raw(ds: Dataset, as_of: int) -> Callable[[Kind, int], Retain]:
    """ClickHouse's ``retention()`` through chdb, straight over the raw Parquet file."""
    import chdb

    def q(kind: Kind, start: int) -> Retain:
        keys = _key_ranges(kind, start, as_of)
        s, e = from_daynum(start), from_daynum(kind.end(start))
        conds = ", ".join(
            [f"day BETWEEN toDate('{s}') AND toDate('{e}')"]
            + [f"day BETWEEN toDate('{a}') AND toDate('{b}')" for _, a, b in keys]
        )
        isnew = f"fd BETWEEN toDate('{s}') AND toDate('{e}')"
        cols = ", ".join(f"sum(r[{i + 2}] AND {isnew}), sum(r[{i + 2}])" for i in range(len(keys)))
        sql = (
            f"SELECT {cols} FROM (SELECT openid, min(day) AS fd, retention({conds}) AS r "
            f"FROM (SELECT assumeNotNull(openid) AS openid, "
            f"toDate(assumeNotNull(ts), '{ds.timezone}') AS day "
            f"FROM file('{ds.parquet}', Parquet)) GROUP BY openid)"
        )
        row = [int(x) for x in str(chdb.query(sql, "CSV")).strip().split(",")]
        return Retain(
            kind.ref_date(start),
            tuple((k, row[2 * i]) for i, (k, _, _) in enumerate(keys)),
            tuple((k, row[2 * i + 1]) for i, (k, _, _) in enumerate(keys)),
        )

    return q


# --- the whole in-process part --------------------------------------------------------------
def run(
    db: Path,
    appid: str,
    ds: Dataset,
    as_of: int,
    *,
    reps: int = 5,
    sql_per_kind: int = 8,
    raw_per_kind: int = 2,
    peers: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], dict[Period, Retain]]:
    """The figures, and the bitmap answer of every period (to check the server's)."""
    out: dict[str, Any] = {}
    with Store(db, read_only=True) as store:
        t0 = time.perf_counter()
        idx = AppIndex.load(store, appid)
        out["index_rebuild_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        warmed = idx.warm()
        out["index_warm_s"] = round(time.perf_counter() - t0, 4)
        out["unions_cached"] = warmed
        with tempfile.TemporaryDirectory() as tmp:
            snap = Path(tmp) / "bench.snapshot"
            fresh, _ = snapshot.load(store, snap, warm=False)  # no snapshot there: a rebuild
            t0 = time.perf_counter()
            snapshot.save(store, fresh, snap)
            out["snapshot_save_s"] = round(time.perf_counter() - t0, 3)
            out["snapshot_mib"] = round(snap.stat().st_size / 2**20, 1)
            t0 = time.perf_counter()
            loaded, info = snapshot.load(store, snap)
            out["snapshot_load_s"] = round(time.perf_counter() - t0, 3)
            assert info.loaded == [appid], info
            del fresh, loaded
        log(
            f"index: rebuilt from the store in {out['index_rebuild_s']} s; snapshot "
            f"{out['snapshot_mib']} MiB, loaded (with unions) in {out['snapshot_load_s']} s"
        )
        ps = periods(ds, as_of)
        out["periods"] = {k: sum(1 for p in ps if p[0].name == k) for k in KINDS}

        def bitmap(kind: Kind, start: int) -> Retain:
            return bitmap_retain(idx, kind, start, as_of)

        time_path(ps, bitmap)  # warm-up pass (every union is already cached by warm())
        cached, want = time_path(ps, bitmap, reps)
        out["bitmap_cached"] = cached
        active, new = idx.day_bitmaps("active"), idx.day_bitmaps("new")

        def cold(kind: Kind, start: int) -> Retain:
            return bitmap_retain(AppIndex(active, new), kind, start, as_of)

        out["bitmap_cold"], _ = time_path(ps, cold)

        def answers(kind: Kind, start: int) -> Retain:
            return counted_retain(idx, kind, start, as_of)

        out["bitmap_answers"], got = time_path(ps, answers, reps)
        out["bitmap_answers"]["disagree"] = _disagree(want, got)
        log(
            f"bitmap: cached median {cached['median_us']} µs p99 {cached['p99_us']} µs; cold "
            f"median {out['bitmap_cold']['median_us']} µs p99 {out['bitmap_cold']['p99_us']} µs "
            f"over {len(ps)} periods; answers cached median "
            f"{out['bitmap_answers']['median_us']} µs"
        )
        sub = sample(ps, sql_per_kind)
        cur = store.read()

        def sql(kind: Kind, start: int) -> Retain:
            return sql_retain(cur, appid, kind, start, as_of)

        sql(*sub[0])  # warm-up
        out["sql"], got = time_path(sub, sql)
        out["sql"]["disagree"] = _disagree(want, got)
        log(f"sql path: median {out['sql']['median_us'] / 1e3:.1f} ms over {len(sub)} periods")
    out["speedup_vs_sql"] = round(out["sql"]["median_us"] / cached["median_us"], 1)
    out["speedup_vs_sql_cold"] = round(out["sql"]["median_us"] / out["bitmap_cold"]["median_us"], 1)
    if peers:
        raw = sample(ps, raw_per_kind)
        try:
            t0 = time.perf_counter()
            q, close = duckdb_raw(ds, as_of)
            out["duckdb_raw_load_s"] = round(time.perf_counter() - t0, 2)
            out["duckdb_raw"], got = time_path(raw, q)
            out["duckdb_raw"]["disagree"] = _disagree(want, got)
            close()
            log(f"duckdb raw: median {out['duckdb_raw']['median_us'] / 1e3:.0f} ms")
        except Exception as e:  # a peer failing must not lose the run
            out["duckdb_raw"] = {"error": repr(e)}
        try:
            q2 = chdb_raw(ds, as_of)
            out["chdb_raw"], got = time_path(raw, q2)
            out["chdb_raw"]["disagree"] = _disagree(want, got)
            log(f"chdb retention(): median {out['chdb_raw']['median_us'] / 1e3:.0f} ms")
        except Exception as e:
            out["chdb_raw"] = {"error": repr(e)}
    return out, want
