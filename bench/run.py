"""`python -m bench`: one run of every SPEC §8 figure, side by side, written to
``bench/results/<date>.json`` and ``bench/results/latest.md`` and printed."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import gen

HERE = Path(__file__).resolve().parent

# (key, figure, target text, test on the measured value)
TARGETS: list[tuple[str, str, str, Any]] = [
    ("query_cached_us", "retention query, bitmap, warm index (median)", "≤ 50 µs", 50.0),
    ("query_cold_us", "retention query, bitmap, cold (median)", "≤ 1 ms", 1000.0),
    ("speedup_vs_sql", "bitmap vs SQL path, same run (median ratio)", "≥ 100×", -100.0),
    ("http_req_per_s", "HTTP datacube, wrk 64 connections", "≥ 5,000 req/s", -5000.0),
    ("http_p99_ms", "HTTP datacube p99 latency", "≤ 20 ms", 20.0),
    ("ingest_parquet", "`wxcube ingest` Parquet, end to end", "≥ 2,000,000 visits/s", -2e6),
    ("ingest_csv", "`wxcube ingest` CSV, end to end", "≥ 1,000,000 visits/s", -1e6),
    ("http_ingest", "HTTP ingest, 10k-visit batches", "≥ 200,000 visits/s", -2e5),
    ("cold_start_s", "cold start of `serve` to first correct answer", "≤ 2 s", 2.0),
    ("rss_mib", "server RSS (peak, worker)", "≤ 1 GiB", 1024.0),
]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        m = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1) if m else ""
    except OSError:
        pass
    mem = 0.0
    try:
        m = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        mem = int(m.group(1)) / 2**20 if m else 0.0
    except OSError:
        pass
    import duckdb
    import pyroaring

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyroaring": getattr(pyroaring, "__version__", "?"),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def wxcube(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wxcube", *args],
        capture_output=capture,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("WXCUBE_")},
    )


def cli_ingest(db: Path, src: Path) -> dict[str, Any]:
    """A fresh database, an app, then `wxcube ingest` timed end to end (process included)."""
    db.unlink(missing_ok=True)
    app = json.loads(wxcube("--db", str(db), "app", "create", "--name", "bench", "--json").stdout)
    t0 = time.perf_counter()
    r = wxcube("--db", str(db), "ingest", str(src), "--app", app["appid"], "-q")
    seconds = time.perf_counter() - t0
    m = re.search(r"read ([\d,]+) visits", r.stdout)
    visits = int(m.group(1).replace(",", "")) if m else 0
    return {
        "seconds": round(seconds, 3),
        "visits": visits,
        "visits_per_s": round(visits / seconds),
        "output": r.stdout.strip(),
        "appid": app["appid"],
        "secret": app["secret"],
    }


def measured(res: dict[str, Any]) -> dict[str, float | None]:
    q, h = res.get("query", {}), res.get("http", {})
    dc = h.get("datacube", {})

    def get(d: dict[str, Any], *path: str) -> float | None:
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return None
            d = d[p]
        return float(d) if isinstance(d, int | float) else None

    return {
        "query_cached_us": get(q, "bitmap_cached", "median_us"),
        "query_cold_us": get(q, "bitmap_cold", "median_us"),
        "speedup_vs_sql": get(q, "speedup_vs_sql"),
        "http_req_per_s": get(dc, "req_per_s"),
        "http_p99_ms": get(dc, "p99_ms"),
        "ingest_parquet": get(res, "ingest", "parquet", "visits_per_s"),
        "ingest_csv": get(res, "ingest", "csv", "visits_per_s"),
        "http_ingest": get(h, "ingest", "visits_per_s"),
        "cold_start_s": get(h, "cold_start_s"),
        "rss_mib": get(h, "memory", "worker_hwm_mib"),
    }


def _fmt(key: str, v: float | None) -> str:
    if v is None:
        return "not measured"
    if key.endswith("_us"):
        return f"{v:,.1f} µs"
    if key == "speedup_vs_sql":
        return f"{v:,.0f}×"
    if key == "http_req_per_s":
        return f"{v:,.0f} req/s"
    if key.endswith("_ms"):
        return f"{v:,.1f} ms"
    if key.endswith("_s"):
        return f"{v:,.2f} s"
    if key == "rss_mib":
        return f"{v:,.0f} MiB"
    return f"{v:,.0f} visits/s"


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    got = measured(res)
    out = []
    for key, figure, target, bound in TARGETS:
        v = got[key]
        met = None if v is None else (v >= -bound if bound < 0 else v <= bound)
        out.append({"key": key, "figure": figure, "target": target, "measured": v, "met": met})
    return out


def _lat(d: dict[str, Any] | None, unit: str = "us") -> str:
    if not d or "median_us" not in d:
        return (d or {}).get("error", "—") if d else "—"
    if unit == "ms":
        return f"{d['median_us'] / 1e3:,.1f} ms / {d['p99_us'] / 1e3:,.1f} ms"
    return f"{d['median_us']:,.1f} µs / {d['p99_us']:,.1f} µs"


def markdown(res: dict[str, Any]) -> str:
    m, ds, q, h = res["machine"], res["dataset"], res.get("query", {}), res.get("http", {})
    lines = [
        f"# wxcube benchmark — {res['date']}",
        "",
        f"`{res['command']}` on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, "
        f"Python {m['python']}, DuckDB {m['duckdb']}; load average (1/5/15 min) at start "
        f"{m['load_avg_at_start']}, at end {m.get('load_avg_at_end')} (the machine is shared: "
        "a load above 2 means other processes took CPU from the run).",
        f"Data: {ds['visits']:,} visits by {ds['users']:,} users over {ds['days']} days "
        f"({ds['first_day']}..{ds['last_day']}, {ds['timezone']}), seed {ds['seed']}.",
        "",
        "| figure | target | measured | met |",
        "|---|---|---|---|",
    ]
    for t in res["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        lines.append(f"| {t['figure']} | {t['target']} | {_fmt(t['key'], t['measured'])} | {met} |")
    if q:
        p = q.get("periods", {})
        lines += [
            "",
            f"Retention latency, median / p99 (periods: {p.get('day')} days, {p.get('week')} "
            f"weeks, {p.get('month')} months; SQL paths on an even sample):",
            "",
            "| path | median / p99 | n | answers agree with bitmaps |",
            "|---|---|---|---|",
        ]
        rows = [
            (
                "bitmap_retain, warm index (cached unions and per-period answers)",
                "bitmap_cached",
                "us",
            ),
            ("bitmap, cold (fresh index, no cached unions)", "bitmap_cold", "us"),
            ("`AppIndex.counts` called directly (no result object)", "bitmap_answers", "us"),
            ("SQL path (DuckDB over the activity table)", "sql", "ms"),
            ("DuckDB SQL over the raw visits", "duckdb_raw", "ms"),
            ("ClickHouse retention() (chdb) over the raw Parquet", "chdb_raw", "ms"),
        ]
        for label, key, unit in rows:
            d = q.get(key)
            if not d:
                continue
            agree = "—" if "disagree" not in d else ("yes" if not d["disagree"] else "**no**")
            lines.append(f"| {label} | {_lat(d, unit)} | {d.get('n', '')} | {agree} |")
        by = q.get("bitmap_cached", {}).get("by_kind", {})
        cold = q.get("bitmap_cold", {}).get("by_kind", {})
        if by:
            lines += [
                "",
                "Bitmap path by kind (median): "
                + ", ".join(
                    f"{k} {by[k]['median_us']:.1f} µs cached / "
                    f"{cold.get(k, {}).get('median_us', 0):.1f} µs cold"
                    for k in by
                )
                + f". Index rebuilt from the store in {q.get('index_rebuild_s')} s; snapshot "
                f"{q.get('snapshot_mib')} MiB, loaded with every union in "
                f"{q.get('snapshot_load_s')} s.",
            ]
    ing = res.get("ingest", {})
    if ing:
        lines += [""]
        for f in ("parquet", "csv"):
            if f in ing:
                lines.append(
                    f"- `wxcube ingest` {f}: {ing[f]['visits']:,} visits in "
                    f"{ing[f]['seconds']} s = {ing[f]['visits_per_s']:,} visits/s"
                )
    if h:
        d = h.get("datacube", {})
        if "req_per_s" in d:
            lines.append(
                f"- HTTP datacube (`{d.get('command')}`, every period in turn): "
                f"{d['req_per_s']:,} req/s, p50 {d.get('p50_ms')} ms, p99 {d.get('p99_ms')} ms, "
                f"{d.get('error_bodies')} error bodies, {d.get('non_2xx')} non-2xx"
            )
        if "ingest" in h:
            i = h["ingest"]
            lines.append(
                f"- HTTP ingest: {i['visits']:,} visits in {i['batches']} batches of "
                f"{i['batch_size']:,} from {i['clients']} connections in {i['seconds']} s = "
                f"{i['visits_per_s']:,} visits/s (after a first, untimed batch of "
                f"{i['first_batch_visits']:,} that took {i['first_batch_s']} s)"
            )
        if "cold_start_s" in h:
            lines.append(
                f"- `serve` to first correct answer: {h.get('cold_start_first_s')} s on the "
                f"first start after `wxcube ingest`, {h['cold_start_s']} s on a restart"
            )
        if "memory" in h:
            mm = h["memory"]
            lines.append(
                f"- server memory after wrk and HTTP ingest: worker peak (VmHWM) "
                f"{mm['worker_hwm_mib']} MiB; process tree RSS {mm['tree_rss_mib']} MiB"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0, help="1 = 20M visits / 2M users")
    ap.add_argument("--seed", type=int, default=gen.SEED)
    ap.add_argument("--data-dir", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per period (bitmaps)")
    ap.add_argument("--sql-per-kind", type=int, default=8)
    ap.add_argument("--raw-per-kind", type=int, default=2)
    ap.add_argument("--no-peers", action="store_true", help="skip DuckDB-raw and chdb")
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--http-batches", type=int, default=50)
    ap.add_argument("--http-clients", type=int, default=2, help="concurrent ingest connections")
    ap.add_argument("--http-batch", type=int, default=10_000, help="visits per HTTP batch")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args(argv)

    from wxcube.periods import to_daynum

    from . import inproc, serving

    def log(msg: str) -> None:
        print(msg, flush=True)

    cmd = "python -m bench" + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": cmd.strip(),
        "machine": machine(),
    }
    ds = gen.ensure(a.data_dir, a.scale, seed=a.seed)
    res["dataset"] = {
        "visits": ds.visits,
        "users": ds.users,
        "days": ds.days,
        "first_day": str(ds.first_day),
        "last_day": str(ds.last_day),
        "timezone": ds.timezone,
        "seed": ds.seed,
        "parquet_mib": round(ds.parquet.stat().st_size / 2**20, 1),
        "csv_mib": round(ds.csv.stat().st_size / 2**20, 1),
    }
    as_of = to_daynum(ds.last_day)
    work = Path(tempfile.mkdtemp(prefix="wxcube-bench-"))
    try:
        log(f"data: {ds.visits:,} visits, {ds.users:,} users; work dir {work}")
        ing: dict[str, Any] = {}
        ing["csv"] = cli_ingest(work / "csv.duckdb", ds.csv)
        log(f"ingest csv: {ing['csv']['visits_per_s']:,} visits/s ({ing['csv']['seconds']} s)")
        (work / "csv.duckdb").unlink()
        db = work / "bench.duckdb"
        ing["parquet"] = cli_ingest(db, ds.parquet)
        log(
            f"ingest parquet: {ing['parquet']['visits_per_s']:,} visits/s "
            f"({ing['parquet']['seconds']} s)"
        )
        appid, secret = ing["parquet"].pop("appid"), ing["parquet"].pop("secret")
        ing["csv"].pop("appid")
        ing["csv"].pop("secret")
        res["ingest"] = ing
        q, want = inproc.run(
            db,
            appid,
            ds,
            as_of,
            reps=a.reps,
            sql_per_kind=a.sql_per_kind,
            raw_per_kind=a.raw_per_kind,
            peers=not a.no_peers,
            log=log,
        )
        res["query"] = q
        if not a.no_http:
            ps = list(want)
            res["http"] = serving.run(
                db,
                appid,
                secret,
                as_of,
                ps,
                want,
                ds.parquet,
                ds.timezone,
                work,
                conns=a.connections,
                seconds=a.wrk_seconds,
                max_batches=a.http_batches,
                clients=a.http_clients,
                batch=a.http_batch,
                log=log,
            )
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["targets"] = targets(res)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = res["date"][:10] if a.scale == 1 else f"{res['date'][:10]}-scale{a.scale:g}"
    path, n = a.out / f"{stem}.json", 1
    while path.exists():  # a second run the same day keeps the first
        n += 1
        path = a.out / f"{stem}-{n}.json"
    path.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    md = markdown(res)
    (a.out / ("latest.md" if a.scale == 1 else f"latest-scale{a.scale:g}.md")).write_text(md)
    print()
    print(md)
    return 0
