"""`wxcube ingest` on real files of every format, and every bad input it must refuse whole."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import reference as ref
from wxcube.cli import main
from wxcube.store import Store

SH = ZoneInfo("Asia/Shanghai")
# a visit a second before and one at local midnight (Beijing) of 2024-03-05, and a late one
VISITS = [
    ("alice", dt.datetime(2024, 3, 4, 23, 59, 59, tzinfo=SH)),
    ("alice", dt.datetime(2024, 3, 5, 0, 0, 0, tzinfo=SH)),
    ("bob", dt.datetime(2024, 3, 5, 12, 0, 0, tzinfo=SH)),
    ("bob", dt.datetime(2024, 3, 5, 12, 0, 0, tzinfo=SH)),  # exact duplicate
    ("carol", dt.datetime(2024, 3, 12, 9, 30, tzinfo=SH)),
    ("alice", dt.datetime(2024, 3, 12, 20, 0, tzinfo=SH)),
    ("bob", dt.datetime(2024, 3, 1, 8, 0, tzinfo=SH)),  # late: bob's real first day
]
AS_OF = "20240430"


def run(db: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", str(db), "--as-of", AS_OF, *args])


def new_app(db: Path, tz: str = "Asia/Shanghai") -> str:
    r = run(db, "app", "create", "--name", "t", "--timezone", tz, "--json")
    assert r.exit_code == 0, r.output
    return str(json.loads(r.stdout)["appid"])


def state(db: Path) -> tuple[Any, ...]:
    with Store(db, read_only=True) as s:
        c = s.read()
        return (
            c.execute("SELECT * FROM users ORDER BY app, uid").fetchall(),
            c.execute("SELECT * FROM activity ORDER BY app, day, uid").fetchall(),
            c.execute("SELECT appid, next_uid FROM apps ORDER BY appid").fetchall(),
        )


def expected(kind: str, start: str) -> dict[str, Any]:
    visits = [(o, t.timestamp()) for o, t in VISITS]
    s = dt.datetime.strptime(start, "%Y%m%d").date()
    return ref.retain(visits, "Asia/Shanghai", kind, s, dt.date(2024, 4, 30))


def retain_json(db: Path, appid: str, kind: str, begin: str) -> dict[str, Any]:
    r = run(db, "retain", kind, begin, "--app", appid, "--format", "json")
    assert r.exit_code == 0, r.output
    return dict(json.loads(r.stdout))


def csv_text() -> str:
    lines = ["openid,ts"]
    for i, (o, t) in enumerate(VISITS):  # every accepted spelling of a time
        spell = [
            str(int(t.timestamp())),
            f"{t.timestamp():.3f}",
            t.isoformat(),
            t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            t.replace(tzinfo=None).isoformat(sep=" "),  # naive: the app's timezone
        ][i % 5]
        lines.append(f"{o},{spell}")
    return "\n".join(lines) + "\n"


def check_all(db: Path, appid: str) -> None:
    assert retain_json(db, appid, "daily", "20240305") == expected("day", "20240305")
    assert retain_json(db, appid, "daily", "20240304") == expected("day", "20240304")
    assert retain_json(db, appid, "weekly", "20240304") == expected("week", "20240304")
    assert retain_json(db, appid, "monthly", "20240301") == expected("month", "20240301")


@pytest.mark.parametrize("gz", [False, True])
def test_csv(db_path: Path, tmp_path: Path, gz: bool) -> None:
    appid = new_app(db_path)
    f = tmp_path / ("v.csv.gz" if gz else "v.csv")
    f.write_bytes(gzip.compress(csv_text().encode()) if gz else csv_text().encode())
    r = run(db_path, "ingest", str(f), "--app", appid)
    assert r.exit_code == 0, r.output
    assert "7 accepted" in r.stdout and "3 new users" in r.stdout and "1 duplicate" in r.stdout
    check_all(db_path, appid)
    before = state(db_path)
    assert run(db_path, "ingest", str(f), "--app", appid).exit_code == 0  # replay: no change
    assert state(db_path) == before


def test_jsonl_numbers_and_strings(db_path: Path, tmp_path: Path) -> None:
    appid = new_app(db_path)
    f = tmp_path / "v.jsonl"
    rows = []
    for i, (o, t) in enumerate(VISITS):
        ts: Any = [int(t.timestamp()), t.timestamp() + 0.5, t.isoformat()][i % 3]
        rows.append(json.dumps({"uid": o, "time": ts, "extra": [1, 2]}))
    f.write_text("\n".join(rows) + "\n")
    r = run(db_path, "ingest", str(f), "--app", appid, "--openid-col", "uid", "--time-col", "time")
    assert r.exit_code == 0, r.output
    check_all(db_path, appid)


@pytest.mark.parametrize("kind", ["tz-aware", "naive", "seconds"])
def test_parquet_time_columns(db_path: Path, tmp_path: Path, kind: str) -> None:
    appid = new_app(db_path)
    f = tmp_path / "v.parquet"
    if kind == "tz-aware":
        col = pa.array([t for _, t in VISITS], pa.timestamp("us", tz="Asia/Shanghai"))
    elif kind == "naive":  # read in --naive-tz: here UTC wall-clock times
        col = pa.array(
            [t.astimezone(dt.UTC).replace(tzinfo=None) for _, t in VISITS], pa.timestamp("ms")
        )
    else:
        col = pa.array([int(t.timestamp()) for _, t in VISITS], pa.int64())
    pq.write_table(pa.table({"openid": [o for o, _ in VISITS], "ts": col}), f)
    extra = ["--naive-tz", "UTC"] if kind == "naive" else []
    r = run(db_path, "ingest", str(f), "--app", appid, *extra)
    assert r.exit_code == 0, r.output
    check_all(db_path, appid)


def test_batches_in_any_order_give_the_same_answer(db_path: Path, tmp_path: Path) -> None:
    appid = new_app(db_path)
    lines = csv_text().splitlines()
    for n, chunk in enumerate([lines[5:], lines[1:3], lines[3:5]]):  # late rows first
        f = tmp_path / f"part{n}.csv"
        f.write_text("openid,ts\n" + "\n".join(chunk) + "\n")
        assert run(db_path, "ingest", str(f), "--app", appid).exit_code == 0
    check_all(db_path, appid)


BAD = [
    ("openid,ts\na,1709600000\nb,not-a-time\n", "v.csv:3: ts: 'not-a-time' is not a Unix time"),
    ("openid,ts\na,1709600000\n,1709600000\n", "v.csv:3: openid: missing or empty"),
    ("openid,ts\na,1709600000000\n", "v.csv:2: ts: '1709600000000' is out of range"),
    ("openid,ts\na,2024-02-30 10:00:00\n", "v.csv:2: ts: '2024-02-30 10:00:00' is not a Unix"),
    ("user,ts\na,1709600000\n", "v.csv: openid: no such column (columns: user, ts)"),
    ("openid,time\na,1709600000\n", "v.csv: ts: no such column"),
]


@pytest.mark.parametrize(("content", "message"), BAD)
def test_bad_rows_name_file_line_and_field_and_apply_nothing(
    db_path: Path, tmp_path: Path, content: str, message: str
) -> None:
    appid = new_app(db_path)
    good = tmp_path / "good.csv"
    good.write_text("openid,ts\nz,1709000000\n")
    assert run(db_path, "ingest", str(good), "--app", appid).exit_code == 0
    before = state(db_path)
    f = tmp_path / "v.csv"
    f.write_text(content)
    ok = tmp_path / "ok.csv"  # a good file in the same run is not applied either
    ok.write_text("openid,ts\ny,1709600000\n")
    r = run(db_path, "ingest", str(ok), str(f), "--app", appid)
    assert r.exit_code == 1
    assert message in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert state(db_path) == before


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "short.csv",
            "openid,ts\nu1,1709251200\nu2\n",
            "short.csv:3: expected 2 fields (openid,ts), found 1",
        ),
        (
            "long.csv",
            "openid,ts\nu1,1709251200\nu2,1,x\n",
            "long.csv:3: expected 2 fields (openid,ts), found 3",
        ),
        ("blank.csv", "openid,ts\nu1,1709251200\n\n\nu2,xx\n", "blank.csv:5: ts: 'xx' is not"),
        ("multi.csv", 'openid,ts\n"u\n1",1709251200\nu3,bad\n', "multi.csv:4: ts: 'bad' is not"),
        ("empty.csv", "", "empty.csv:1: empty: expected a header line"),
        ("bad.jsonl", '{"openid":"a","ts":1}\n{bad\n', "bad.jsonl:2: not valid JSON"),
        (
            "gap.jsonl",
            '{"openid":"a","ts":1}\n\n{"openid":"b","ts":"xx"}\n',
            "gap.jsonl:3: ts: 'xx' is",
        ),
        ("arr.json", '[{"openid":"a","ts":1}]\n', "arr.json:1: expected one JSON object per line"),
    ],
)
def test_malformed_files_name_the_physical_line(
    db_path: Path, tmp_path: Path, name: str, content: str, message: str
) -> None:
    appid = new_app(db_path)
    f = tmp_path / name
    f.write_text(content)
    before = state(db_path)
    r = run(db_path, "ingest", str(f), "--app", appid)
    assert r.exit_code == 1
    assert message in r.stderr, r.stderr
    assert state(db_path) == before


def test_bad_jsonl_line_is_named(db_path: Path, tmp_path: Path) -> None:
    appid = new_app(db_path)
    f = tmp_path / "v.jsonl"
    f.write_text('{"openid": "a", "ts": 1709600000}\n{"openid": 42, "ts": 1709600000}\n')
    r = run(db_path, "ingest", str(f), "--app", appid)
    assert r.exit_code == 1
    assert "v.jsonl:2: openid:" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "missing.csv: no such file"),
        (["v.xyz"], "unknown format: pass --format csv|jsonl|parquet"),
        (["v.csv", "--naive-tz", "Mars/Olympus"], "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_invocations(db_path: Path, tmp_path: Path, args: list[str], message: str) -> None:
    appid = new_app(db_path)
    (tmp_path / "v.csv").write_text("openid,ts\na,1709600000\n")
    (tmp_path / "v.xyz").write_text("openid,ts\na,1709600000\n")
    args = [str(tmp_path / args[0]), *args[1:]]
    before = state(db_path)
    r = run(db_path, "ingest", *args, "--app", appid)
    assert r.exit_code != 0
    assert message in r.stderr, r.stderr
    assert state(db_path) == before


def test_unknown_app(db_path: Path, tmp_path: Path) -> None:
    new_app(db_path)
    f = tmp_path / "v.csv"
    f.write_text("openid,ts\na,1709600000\n")
    r = run(db_path, "ingest", str(f), "--app", "wx0000000000000000")
    assert r.exit_code == 1
    assert "no app 'wx0000000000000000'" in r.stderr
