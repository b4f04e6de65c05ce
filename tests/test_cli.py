"""`wxcube app` and `wxcube retain` on a real DuckDB file (ingest has tests/test_ingest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from wxcube.cli import main
from wxcube.store import Store


def run(db: Path, *args: str, as_of: str = "20240331") -> Result:
    return CliRunner().invoke(main, ["--db", str(db), "--as-of", as_of, *args])


def setup_app(db: Path, tmp: Path) -> str:
    r = run(db, "app", "create", "--name", "shop", "--json")
    appid = str(json.loads(r.stdout)["appid"])
    f = tmp / "v.csv"
    # 2024-03-04 is a Monday; a: days 4, 5, 11; b: days 5, 12; c: 2024-02-27 only
    f.write_text(
        "openid,ts\na,2024-03-04T10:00:00+08:00\na,2024-03-05T10:00:00+08:00\n"
        "b,2024-03-05T11:00:00+08:00\na,2024-03-11T10:00:00+08:00\n"
        "b,2024-03-12T10:00:00+08:00\nc,2024-02-27T10:00:00+08:00\n"
    )
    assert run(db, "ingest", str(f), "--app", appid).exit_code == 0
    return appid


def test_app_create_list_rotate(db_path: Path) -> None:
    r = run(db_path, "app", "create", "--name", "My Mini Program", "--timezone", "UTC")
    assert r.exit_code == 0 and "shown once" in r.stdout
    appid = r.stdout.split()[1]
    secret = r.stdout.split()[3]
    with Store(db_path) as s:
        assert s.check_secret(appid, secret)
    listed = run(db_path, "app", "list", "--json")
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["appid"] == appid and row["timezone"] == "UTC" and row["first_day"] is None
    r2 = run(db_path, "app", "rotate-secret", appid)
    new_secret = r2.stdout.split()[3]
    with Store(db_path) as s:
        assert not s.check_secret(appid, secret)
        assert s.check_secret(appid, new_secret)
    bad = run(db_path, "app", "create", "--timezone", "Nowhere/Land")
    assert bad.exit_code == 1 and "unknown timezone" in bad.stderr


def test_retain_json_is_the_http_body(db_path: Path, tmp_path: Path) -> None:
    appid = setup_app(db_path, tmp_path)
    r = run(db_path, "retain", "weekly", "20240304", "--app", appid, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "ref_date": "20240304-20240310",
        "visit_uv_new": [{"key": k, "value": v} for k, v in [(0, 2), (1, 2), (2, 0), (3, 0)]],
        "visit_uv": [{"key": k, "value": v} for k, v in [(0, 2), (1, 2), (2, 0), (3, 0)]],
    }
    # key 4 (week of 20240401) has not ended by as_of 20240331 and is left out


def test_retain_range_one_line_per_elapsed_period(db_path: Path, tmp_path: Path) -> None:
    appid = setup_app(db_path, tmp_path)
    r = run(db_path, "retain", "daily", "20240327", "20240405", "--app", appid, "--format", "json")
    assert r.exit_code == 0
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["ref_date"] for x in lines] == [
        "20240327",
        "20240328",
        "20240329",
        "20240330",
        "20240331",
    ]
    assert "5 later period(s) have not ended by as_of 20240331" in r.stderr
    monthly = run(
        db_path, "retain", "monthly", "20240201", "20240331", "--app", appid, "--format", "json"
    )
    feb, mar = (json.loads(x) for x in monthly.stdout.splitlines())
    assert feb["visit_uv_new"] == [{"key": 0, "value": 1}, {"key": 1, "value": 0}]
    assert mar["visit_uv_new"] == [{"key": 0, "value": 2}]


def test_retain_csv_and_table(db_path: Path, tmp_path: Path) -> None:
    appid = setup_app(db_path, tmp_path)
    r = run(db_path, "retain", "daily", "20240305", "--app", appid, "--format", "csv")
    rows = r.stdout.splitlines()
    assert rows[0] == "ref_date,metric,key,value"
    assert "20240305,visit_uv_new,0,1" in rows and "20240305,visit_uv,0,2" in rows
    assert "20240305,visit_uv,7,1" in rows  # b came back on the 12th
    t = run(db_path, "retain", "weekly", "20240304", "--app", appid)
    assert "retention of new users" in t.stdout and "20240304-20240310" in t.stdout
    assert "2 (100%)" in t.stdout


def test_retain_refusals(db_path: Path, tmp_path: Path) -> None:
    appid = setup_app(db_path, tmp_path)
    cases = [
        (["weekly", "20240305"], "does not start a period: one Monday-Sunday week"),
        (["monthly", "20240302"], "does not start a period"),
        (["daily", "2024-03-01"], "date format error: BEGIN: '2024-03-01' is not yyyymmdd"),
        (["daily", "20240305", "20240301"], "END 20240301 is before BEGIN 20240305"),
        (["monthly", "20240301"], "202403 has not ended by as_of"),
    ]
    for args, message in cases:
        r = run(db_path, "retain", *args, "--app", appid, as_of="20240330")
        assert r.exit_code == 1, args
        assert message in r.stderr, (args, r.stderr)
    r = run(db_path, "retain", "daily", "20240305", "--app", appid, as_of="2024-03-30")
    assert r.exit_code == 2 and "--as-of" in r.output


def test_help_names_the_spec_commands() -> None:
    r = CliRunner().invoke(main, ["--help"])
    for name in ("app", "ingest", "retain", "serve", "demo", "spark-rollup", "backup", "restore"):
        assert f"  {name} " in r.stdout or f"  {name}\n" in r.stdout, name
    assert "WXCUBE_DB" in r.stdout and "WXCUBE_AS_OF" in r.stdout


def test_app_list_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    r = run(db, "app", "list")
    assert r.exit_code == 0 and "no apps yet" in r.stdout
    assert not db.exists()


def test_demo_refreshes_a_stale_demo_app_in_place(db_path: Path) -> None:
    from wxcube.cli.serve import build_demo

    a1, s1, _ = build_demo(str(db_path), "20240331")
    a2, s2, _ = build_demo(str(db_path), "20240331")  # same day: reused, new secret shown
    a3, _, _ = build_demo(str(db_path), "20240415")  # later: regenerated in place
    assert a1 == a2 == a3 and s1 != s2
    with Store(db_path) as s:
        assert [a.appid for a in s.apps()] == [a1]
        info = s.app_info(a1)
        assert info["last_day"] is not None
        from wxcube.periods import fmt

        assert fmt(info["last_day"]) == "20240415"
