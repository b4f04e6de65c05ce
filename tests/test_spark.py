"""The Spark roll-up equals the single-machine ingest (SPEC §7), with Spark in local mode.

One SparkSession (local[2]) for the module. Timestamps are checked string by string against
DuckDB's own parsing in ``wxcube.ingest``; whole data sets (timezone edges, DST, late, out-of-order
and duplicate visits, six files in every format) are rolled up, loaded with ``ingest_rollup`` and
compared with a direct ``ingest_files`` of the same files for every day, week and month.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from wxcube import ingest
from wxcube import spark as wspark
from wxcube.cli import main as cli
from wxcube.demo import generate
from wxcube.errors import InputError
from wxcube.index import Index
from wxcube.ingest import Source, ingest_files, ingest_rollup
from wxcube.periods import DAY, MONTH, WEEK, to_daynum
from wxcube.retention import bitmap_retain, sql_retain
from wxcube.store import Store

pytestmark = pytest.mark.slow

DATE_ONLY = re.compile(r"^ *\d{4}-\d\d-\d\d *$")
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/Berlin"]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = wspark.spark_session("local[2]", 2)
    yield session
    session.stop()


# --- the rules are the single-machine rules -----------------------------------------------
def test_constants_and_zone_segments_are_ingests() -> None:
    assert (wspark.MAX_EPOCH, wspark.MAX_OPENID, wspark.TS_HINT) == (
        ingest.MAX_EPOCH,
        ingest.MAX_OPENID,
        ingest.TS_HINT,
    )
    assert (wspark.ROLLUP_FORMAT, wspark.ROLLUP_MANIFEST) == (
        ingest.ROLLUP_FORMAT,
        ingest.ROLLUP_MANIFEST,
    )
    for tz in [*ZONES, "Australia/Lord_Howe", "UTC"]:
        for lo, hi in [(0, 86400 * 400), (1.7e9, 1.7e9 + 86400 * 800), (1.2e9, 1.2e9)]:
            assert wspark.tz_segments(tz, lo, hi) == ingest.tz_segments(tz, lo, hi)


def _corpus(tz: str) -> list[str]:
    z = ZoneInfo(tz)
    out = [
        "1700000000", "  1700000000.5 ", "\t17\t", "1e9", "1.7E9", "1E+9", "+5", "-5", ".5",
        "5.", "0", "-0", "00017", "20240101", "4102444799", "4102444800", "4102444799.999",
        "nan", "inf", "0x10", "1,5", "", "  ", "abc", "１２３", "1d",
        "2024-01-01 12:00", "2024-01-01T12:00:00", "2024-1-5 1:2:3", "2024-01-01 12:0:0",
        "2024-01-01 1:00", "2024-01-01  12:00:00", " 2024-01-01 12:00:00 ",
        "2024-01-01 12:00:00Z", "2024-01-01T12:00:00+0800", "2024-01-01T12:00:00+08",
        "2024-01-01T12:00:00.5-05:30", "2024-01-01 12:00:00-0530", "2024-01-01 12:00:00+00:30",
        "2024-01-01 12:00:00.123456789", "2024-01-01T12:00:00.1234567Z",
        "2024-01-01T12:00:00.000000999Z", "2024-01-01 12:00:00.", "2024-01-01 12:00:00.5Z",
        "2024-01-01 12:00Z", "2024-01-01T1:2:3Z", "2024-01-01T12:00:00+99:00",
        "2024-01-01T12:00:00+15:59", "1970-01-01 00:00:00Z", "1969-12-31 23:59:59Z",
        "2099-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2024-01-01 24:00:00",
        "2024-01-01 24:30:00", "2024-01-01 23:59:60", "2024-02-30 10:00:00",
        "2024-02-29 10:00:00", "2023-02-29 10:00:00", "2024-13-01 10:00:00",
        "2024-01-01 12", "2024-01-01T", "2024-01-01", " 2024-03-10 ", "2024-00-10 01:00",
        "2024-01-01Z", "2024-01-01 12:00:00 +08:00",
        "2024-01-01T12:00:00 Z", "2024-01-01T12:00:00z", "2024-01-01t12:00:00Z",
        "2024-01-01T12:00:00+8", "2024/01/01", "2024/01/01 10:00:00", "2024/1/1", "2024/01-01",
        "1 ", "2024-01-01-01", "2024-1-1", "2024-01-1",
    ]  # fmt: skip
    # wall times a second either side of local midnight, and inside DST gaps and overlaps
    for day in ["2024-03-10", "2024-03-31", "2024-11-03", "2024-10-27", "2024-06-30"]:
        d = dt.date.fromisoformat(day)
        midnight = dt.datetime.combine(d, dt.time(), z)
        for s in (-1, 0, 1):
            t = midnight + dt.timedelta(seconds=s)
            out += [t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y-%m-%dT%H:%M:%S%z")]
            out.append(str(int(midnight.timestamp()) + s))
        for hh in ("01:30:00", "02:00:00", "02:30:00", "02:59:59", "03:00:00", "00:59:59"):
            out += [f"{day} {hh}", f"{day}T{hh}.25"]
    return out


@pytest.mark.parametrize("tz", ZONES)
def test_text_timestamps_parse_exactly_as_ingest(spark: Any, tz: str) -> None:
    from pyspark.sql import functions as F

    corpus = _corpus(tz)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    want = [
        con.execute(
            f"SELECT {ingest.epoch_from_text('x', tz)} FROM (SELECT ?::VARCHAR x)", [s]
        ).fetchone()[0]  # type: ignore[index]
        for s in corpus
    ]
    for i, s in enumerate(corpus):
        if DATE_ONLY.match(s):
            # SPEC: a date without a time or offset is naive (midnight in --naive-tz). ingest's
            # offset pattern takes its "-DD" for an offset and reads it in DuckDB's session zone
            # instead (reported to the lead); the roll-up follows the SPEC.
            want[i] = dt.datetime.combine(
                dt.date.fromisoformat(s.strip()), dt.time(), ZoneInfo(tz)
            ).timestamp()
    df = spark.createDataFrame([(i, s) for i, s in enumerate(corpus)], "i int, text string").select(
        "i",
        "text",
        F.lit(None).cast("double").alias("num"),
        F.lit(None).cast("long").alias("wall0"),
    )
    parsed = wspark.parse_frame(df)
    segs = wspark.zone_segments(tz)  # what the job uses
    got_rows = parsed.select(
        "i", wspark.resolve_epoch(F.col("epoch"), F.col("wall"), segs).alias("e")
    ).collect()
    got = {r["i"]: r["e"] for r in got_rows}
    mismatches = [(s, want[i], got[i]) for i, s in enumerate(corpus) if want[i] != got[i]]
    assert mismatches == []


# --- whole data sets: roll-up + ingest --rollup == direct ingest --------------------------
EDGE_DAYS = [
    "2023-11-04", "2023-11-05", "2023-11-06",  # US fall back (late visits: before the data)
    "2024-02-25", "2024-02-26", "2024-02-29", "2024-03-01",  # week and month edges, leap day
    "2024-03-09", "2024-03-10", "2024-03-11", "2024-03-31", "2024-04-01",  # US / EU spring DST
]  # fmt: skip
DST_WALLS = [
    "2024-03-10 02:30:00",
    "2023-11-05 01:30:00",
    "2024-03-31 02:30:00",
    "2023-10-29 02:30:00",
]


def _visits(tz: str) -> tuple[list[str], list[float]]:
    """(openids, epochs): a demo-like base, edge visits a second around local midnight, late
    visits (before a user's first visit), and duplicates; shuffled (out of order)."""
    import numpy as np

    base = generate(dt.date(2024, 4, 20), users=600, days=75, timezone=tz, seed=7)
    openids: list[str] = base.column("openid").to_pylist()
    epochs: list[float] = [float(t) for t in base.column("ts").to_pylist()]
    z = ZoneInfo(tz)
    for i, day in enumerate(EDGE_DAYS):
        midnight = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), z).timestamp()
        for j in range(6):
            who = f"o{(i * 7 + j * 13) % 600:08d}"  # existing users: late and edge visits
            openids += [who, f"edge{j}"]
            epochs += [midnight + (-1, 0, 1, 86399, 0.5, -0.25)[j]] * 2
    rng = np.random.default_rng(3)
    dup = rng.choice(len(openids), size=len(openids) // 10)
    openids += [openids[k] for k in dup]
    epochs += [epochs[k] for k in dup]
    order = rng.permutation(len(openids))
    return [openids[k] for k in order], [epochs[k] for k in order]


def _iso(t: float, z: ZoneInfo, naive: bool, sep: str) -> str:
    d = dt.datetime.fromtimestamp(t, z)
    frac = f"{d.microsecond / 1e6:.6f}"[1:].rstrip("0").rstrip(".") if d.microsecond else ""
    s = d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac
    return s if naive else s + d.strftime("%z")


def write_inputs(d: Path, tz: str) -> list[tuple[Path, str]]:
    """The same visits spread over six files in every format (paths, formats)."""
    d.mkdir(parents=True)
    openids, epochs = _visits(tz)
    z = ZoneInfo(tz)
    parts = [list(range(k, len(openids), 6)) for k in range(6)]
    files: list[tuple[Path, str]] = []

    p = d / "visits.csv"  # Unix seconds as text, integer and decimal; an extra column
    with p.open("w") as f:
        f.write("page,openid,ts\n")
        for k in parts[0]:
            f.write(f"/index,{openids[k]},{epochs[k]!r}\n")
        # quoting (RFC 4180) and spaces are part of the openid, as DuckDB reads them
        f.write('/q,"o,1",1709913600\n/q," sp ",1709913600\n/q,"q""x",1709999999.5\n')
    files.append((p, "csv"))

    p = d / "visits.csv.gz"  # ISO-8601 with an offset, T or a space
    with gzip.open(p, "wt") as f:
        f.write("openid,ts\n")
        for n, k in enumerate(parts[1]):
            f.write(f"{openids[k]},{_iso(epochs[k], z, False, 'T' if n % 2 else ' ')}\n")
        for w in DST_WALLS:  # naive wall times in DST gaps and overlaps
            f.write(f"dst,{w}\n")
    files.append((p, "csv"))

    p = d / "visits.jsonl"  # numbers, ISO with Z, naive ISO
    with p.open("w") as f:
        for n, k in enumerate(parts[2]):
            t = epochs[k]
            ts: object = [t, _iso(t, dt.UTC, True, "T") + "Z", _iso(t, z, True, " ")][n % 3]
            if isinstance(ts, float) and ts.is_integer():
                ts = int(ts)
            f.write(json.dumps({"openid": openids[k], "ts": ts, "n": n}) + "\n")
    files.append((p, "jsonl"))

    def table(idx: list[int], ts: pa.Array) -> pa.Table:
        return pa.table({"openid": pa.array([openids[k] for k in idx]), "ts": ts})

    us = [round(epochs[k] * 1e6) for k in parts[3]]
    p = d / "aware.parquet"
    pq.write_table(table(parts[3], pa.array(us, pa.timestamp("us", tz="UTC"))), p)
    files.append((p, "parquet"))

    walls = []
    for k in parts[4]:
        w = dt.datetime.fromtimestamp(epochs[k], z).replace(tzinfo=None)
        walls.append(int((w - dt.datetime(1970, 1, 1)).total_seconds() * 1e6))
    p = d / "naive.parquet"
    pq.write_table(table(parts[4], pa.array(walls, pa.timestamp("us"))), p)
    files.append((p, "parquet"))

    secs = [int(epochs[k]) for k in parts[5]]  # integer seconds (truncated: a different second)
    p = d / "seconds.parquet"
    pq.write_table(table(parts[5], pa.array(secs, pa.int64())), p)
    files.append((p, "parquet"))
    return files


def _tables(store: Store, appid: str) -> tuple[list[Any], list[Any]]:
    users = store.conn.execute(
        "SELECT openid, first_day FROM users WHERE app = ? ORDER BY openid", [appid]
    ).fetchall()
    activity = store.conn.execute(
        "SELECT u.openid, a.day FROM activity a JOIN users u ON u.app = a.app AND u.uid = a.uid "
        "WHERE a.app = ? ORDER BY 1, 2",
        [appid],
    ).fetchall()
    return users, activity


def _all_bodies(store: Store, appid: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(sql_retain body, bitmap_retain body) for every day, week and month of the data."""
    lo, hi = store.conn.execute(
        "SELECT min(day), max(day) FROM activity WHERE app = ?", [appid]
    ).fetchone()  # type: ignore[misc]
    first, last = to_daynum(lo), to_daynum(hi)
    as_of = last + 70
    index = Index()
    index.load_all(store)
    app_index = index.app(appid)
    out = []
    for kind in (DAY, WEEK, MONTH):
        for start in kind.starts(first, last):
            out.append(
                (
                    sql_retain(store.conn, appid, kind, start, as_of).as_dict(),
                    bitmap_retain(app_index, kind, start, as_of).as_dict(),
                )
            )
    return out


@pytest.fixture(scope="module", params=["Asia/Shanghai", "America/New_York"])
def rolled(
    request: pytest.FixtureRequest, spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Inputs, a direct ingest of them, and a roll-up of them (for one app timezone)."""
    tz: str = request.param
    root = tmp_path_factory.mktemp("rollup")
    files = write_inputs(root / "in", tz)
    direct = Store(root / "direct.duckdb")
    app_a, _ = direct.create_app("direct", tz)
    result_direct = ingest_files(direct, app_a.appid, [Source(p, f) for p, f in files])
    via = Store(root / "via.duckdb")
    app_b, _ = via.create_app("via", tz)
    out = root / "rollup"
    cfg = wspark.RollupConfig(
        inputs=tuple(str(p) for p, _ in files), app=app_b.appid, timezone=tz, output=str(out)
    )
    result = wspark.run(cfg, spark)
    yield {
        "tz": tz, "files": files, "out": out, "result": result, "direct": direct,
        "a": app_a.appid, "via": via, "b": app_b.appid, "direct_result": result_direct,
    }  # fmt: skip
    direct.close()
    via.close()


def test_rollup_then_ingest_equals_direct_ingest(rolled: dict[str, Any]) -> None:
    direct, via, a, b = rolled["direct"], rolled["via"], rolled["a"], rolled["b"]
    loaded = ingest_rollup(via, b, rolled["out"])
    m = json.loads((rolled["out"] / "manifest.json").read_text())
    users_a, activity_a = _tables(direct, a)
    users_b, activity_b = _tables(via, b)
    assert len(activity_a) > 1500 and len(users_a) > 500  # the data is not trivial
    assert users_b == users_a
    assert activity_b == activity_a
    assert m["rows"] == len(activity_a) == loaded.pairs_added == rolled["result"].rows
    assert m["visits"] == rolled["direct_result"].visits and m["bad_rows"] == 0
    assert (m["app"], m["timezone"], m["format"], m["version"]) == (
        b,
        rolled["tz"],
        "wxcube-rollup",
        1,
    )
    assert m["min_day"] == min(r[1] for r in activity_a).strftime("%Y%m%d") == "20231029"
    assert m["max_day"] == max(r[1] for r in activity_a).strftime("%Y%m%d")
    bodies_a, bodies_b = _all_bodies(direct, a), _all_bodies(via, b)
    assert len(bodies_a) > 180
    assert all(sql == bitmap for sql, bitmap in bodies_a)
    assert [sql for sql, _ in bodies_b] == [sql for sql, _ in bodies_a]
    assert [bitmap for _, bitmap in bodies_b] == [bitmap for _, bitmap in bodies_a]
    # loading the same roll-up again changes nothing (duplicates)
    ingest_rollup(via, b, rolled["out"])
    assert _tables(via, b) == (users_a, activity_a)


def test_ingest_rollup_refuses_another_app_or_timezone(
    rolled: dict[str, Any], tmp_path: Path
) -> None:
    with Store(tmp_path / "other.duckdb") as store:
        other, _ = store.create_app("other", rolled["tz"])
        with pytest.raises(InputError, match="roll-up is for"):
            ingest_rollup(store, other.appid, rolled["out"])
    m = json.loads((rolled["out"] / "manifest.json").read_text())
    other_tz = "Europe/Berlin"
    with Store(tmp_path / "tz.duckdb") as store:
        app, _ = store.create_app("tz", other_tz)
        d = tmp_path / "copy"
        import shutil

        shutil.copytree(rolled["out"], d)
        (d / "manifest.json").write_text(json.dumps({**m, "app": app.appid}))
        with pytest.raises(InputError, match="re-run spark-rollup with --timezone Europe/Berlin"):
            ingest_rollup(store, app.appid, d)
        assert store.conn.execute("SELECT count(*) FROM activity").fetchone() == (0,)


# --- bad rows, the CLI end to end, and life without pyspark ---------------------------------
def test_cli_bad_rows_max_bad_then_ingest_rollup(spark: Any, tmp_path: Path) -> None:
    csv = tmp_path / "visits.csv"
    csv.write_text(
        "openid,ts\n"
        "u1,1700000000\n"
        ",1700000000\n"  # empty openid
        "u2,abc\n"  # not a timestamp
        "u3,1700000000000\n"  # milliseconds: out of range
        f"{'x' * 129},1700000000\n"  # too long
        "u4,2024-01-01T00:00:00+08:00\n"
    )
    jsonl = tmp_path / "visits.jsonl"
    jsonl.write_text('{"openid": 12345, "ts": 1700000000}\n{"openid": "u5", "ts": 1700086400}\n')
    out = tmp_path / "rollup"
    db = tmp_path / "wx.duckdb"
    runner = CliRunner()
    created = runner.invoke(cli, ["--db", str(db), "app", "create", "--json"])
    assert created.exit_code == 0, created.output
    appid = json.loads(created.output)["appid"]
    args = ["spark-rollup", "--input", str(csv), str(jsonl), "--app", appid]
    args += ["--timezone", "Asia/Shanghai", "--output", str(out), "--master", "local[2]"]

    failed = runner.invoke(cli, args)
    assert failed.exit_code == 1
    assert "5 of 8 rows are bad (more than --max-bad 0); nothing was written" in failed.output
    assert f"\n  {csv}: ts: 'abc' is not a Unix time or ISO-8601 timestamp" in failed.output
    assert f"{csv}: ts: '1700000000000' is out of range" in failed.output
    assert f"{csv}: openid: longer than 128 characters" in failed.output
    assert f"{jsonl}: openid: missing or empty (or not a string)" in failed.output
    assert not (out / "manifest.json").exists()

    assert runner.invoke(cli, [*args, "--max-bad", "4"]).exit_code == 1
    ok = runner.invoke(cli, [*args, "--max-bad", "5"])
    assert ok.exit_code == 0, ok.output
    assert "rolled up 8 visits (5 bad) into 3 (openid, day) rows over 3 days" in ok.output
    assert f"warning: bad row skipped: {csv}: ts: 'abc'" in ok.output, ok.output
    m = json.loads((out / "manifest.json").read_text())
    assert (m["rows"], m["bad_rows"], m["visits"], m["min_day"], m["max_day"]) == (
        3, 5, 3, "20231115", "20240101"
    )  # fmt: skip
    again = runner.invoke(cli, [*args, "--max-bad", "5"])
    assert again.exit_code == 1 and "exists and is not empty: pass --overwrite" in again.output
    assert runner.invoke(cli, [*args, "--max-bad", "5", "--overwrite"]).exit_code == 0

    loaded = runner.invoke(cli, ["--db", str(db), "ingest", "--rollup", str(out), "--app", appid])
    assert loaded.exit_code == 0, loaded.output
    assert "3 accepted, 3 new (user, day) pairs" in loaded.output
    with Store(db) as store:
        assert _tables(store, appid)[1] == [
            ("u1", dt.date(2023, 11, 15)),
            ("u4", dt.date(2024, 1, 1)),
            ("u5", dt.date(2023, 11, 16)),
        ]


def test_without_pyspark_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['pyspark'] = None; from wxcube.cli import main; main()"
    args = ["spark-rollup", "--input", "v.csv", "--app", "wx1", "--timezone", "UTC"]
    args += ["--output", str(tmp_path / "out")]
    r = subprocess.run([sys.executable, "-c", hide, *args], capture_output=True, text=True)
    assert r.returncode == 1
    assert "pip install 'wxcube[spark]'" in r.stderr
    assert "Traceback" not in r.stderr
    # the module runs alone as a script (what spark-submit ships), standard library only
    script = [sys.executable, "-S", "-I", wspark.__file__]
    r = subprocess.run([*script, *args[1:]], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, f"error: {wspark.INSTALL_HINT}\n")
    r = subprocess.run([*script, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--max-bad" in r.stdout


def test_all_rows_bad_gives_an_empty_rollup_that_loads(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"openid": "a", "ts": true}\nnot json\n\n{"openid": "b", "ts": -1}\n')
    out = tmp_path / "empty"
    cfg = wspark.RollupConfig((str(src),), "wx1", "UTC", str(out), max_bad=3)
    result = wspark.run(cfg, spark)
    assert (result.rows_read, result.bad_rows, result.rows, result.min_day) == (3, 3, 0, None)
    assert sorted(e.split(": ", 1)[1] for e in result.examples) == [
        "openid: missing or empty (or not a string)",
        "ts: '-1' is out of range (Unix seconds 1970..2100; milliseconds?)",
        "ts: 'true' is not a Unix time or ISO-8601 timestamp",
    ]
    with Store(tmp_path / "wx.duckdb") as store:
        app, _ = store.create_app("e", "UTC")
        m = json.loads((out / "manifest.json").read_text())
        (out / "manifest.json").write_text(json.dumps({**m, "app": app.appid}))
        assert ingest_rollup(store, app.appid, out).pairs_added == 0


def test_naive_tz_other_than_the_apps(spark: Any, tmp_path: Path) -> None:
    walls = [f"2024-03-{d:02d} {h:02d}:30:00" for d in (9, 10, 11) for h in range(24)]
    walls += [f"2024-11-03 {h:02d}:{m:02d}:00" for h in range(4) for m in (0, 30, 59)]
    csv = tmp_path / "naive.csv"
    csv.write_text("openid,ts\n" + "".join(f"u{i % 7},{w}\n" for i, w in enumerate(walls)))
    naive = [dt.datetime.fromisoformat(w) for w in walls]
    pqf = tmp_path / "naive.parquet"
    pq.write_table(pa.table({"openid": [f"p{i % 5}" for i in range(len(naive))], "ts": naive}), pqf)
    with Store(tmp_path / "a.duckdb") as a, Store(tmp_path / "b.duckdb") as b:
        app_a, _ = a.create_app("a", "Asia/Shanghai")
        app_b, _ = b.create_app("b", "Asia/Shanghai")
        sources = [Source(csv, "csv"), Source(pqf, "parquet")]
        ingest_files(a, app_a.appid, sources, naive_tz="America/New_York")
        out = tmp_path / "rollup"
        cfg = wspark.RollupConfig(
            (str(csv), str(pqf)), app_b.appid, "Asia/Shanghai", str(out),
            naive_tz="America/New_York",
        )  # fmt: skip
        wspark.run(cfg, spark)
        ingest_rollup(b, app_b.appid, out)
        assert _tables(b, app_b.appid) == _tables(a, app_a.appid)
        assert len(_tables(a, app_a.appid)[1]) > 25
