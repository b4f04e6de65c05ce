"""A real `wxcube serve` process on a free loopback port: start, query, restart, stop."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import orjson
from click.testing import CliRunner

from serverproc import get_token, make_app_with_data, running_server, sample_visits, start_server
from wxcube.cli import main
from wxcube.periods import DAY

ENV = {"WXCUBE_AS_OF": "20240410"}
BODY = orjson.dumps({"begin_date": "20240301", "end_date": "20240301"})


def query(url: str, token: str, body: bytes = BODY) -> dict[str, object]:
    r = httpx.post(f"{url}{DAY.path}", params={"access_token": token}, content=body)
    assert r.status_code == 200
    return dict(r.json())


def test_serve_answers_and_stops_gracefully(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    appid, secret = make_app_with_data(db, sample_visits())
    sp = start_server(db, env=ENV)
    try:
        health = httpx.get(f"{sp.url}/healthz")
        assert health.status_code == 200 and health.json()["errcode"] == 0
        token = get_token(sp.url, appid, secret)
        got = query(sp.url, token)
        assert got["ref_date"] == "20240301" and "errcode" not in got
        r = httpx.get(f"{sp.url}/nowhere")
        assert r.status_code == 200 and r.json()["errcode"] == 40066
        bad = httpx.post(f"{sp.url}{DAY.path}", params={"access_token": token}, content=b"")
        rid = bad.json()["errmsg"].rsplit("rid: ", 1)[1]
        assert bad.headers["x-request-id"] == rid
        assert "text/plain" in httpx.get(f"{sp.url}/metrics").headers["content-type"]
    finally:
        code = sp.stop()
    log = sp.log()
    assert code == 0, log
    assert rid in log  # the structured access log names the rid
    assert secret not in log and token not in log
    lines = [orjson.loads(x) for x in log.splitlines() if x.startswith('{"ts"')]
    assert any(x["rid"] == rid and x["errcode"] == 44002 for x in lines)


def test_restart_keeps_tokens_and_data(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    appid, secret = make_app_with_data(db, sample_visits())
    visit = {"visits": [{"openid": "late-1", "ts": "2024-03-01T08:00:00+08:00"}]}
    with running_server(db, env=ENV) as url:
        token = get_token(url, appid, secret)
        stable = httpx.post(
            f"{url}/cgi-bin/stable_token",
            content=orjson.dumps(
                {"grant_type": "client_credential", "appid": appid, "secret": secret}
            ),
        ).json()["access_token"]
        r = httpx.post(f"{url}/wxcube/v1/visits", params={"access_token": token}, json=visit)
        assert r.json()["accepted"] == 1
        before = query(url, token)
    with running_server(db, env=ENV) as url:
        assert query(url, token) == before
        assert query(url, stable) == before


def test_local_commands_say_the_server_holds_the_database(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    appid, _ = make_app_with_data(db, [("a", 1_704_200_000)])
    with running_server(db, env=ENV):
        runner = CliRunner()
        for args in (
            ["retain", "daily", "20240102", "--app", appid],
            ["app", "list"],
            ["ingest", str(tmp_path / "x.csv"), "--app", appid],
            ["serve", "--port", "1"],
        ):
            (tmp_path / "x.csv").write_text("openid,ts\na,1704200000\n")
            res = runner.invoke(main, ["--db", str(db), *args])
            assert res.exit_code == 1, res.output
            assert "held by another process" in res.output and "--url" in res.output
            assert "Traceback" not in res.output


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "i.duckdb"
    make_app_with_data(db, [("a", 1_704_200_000)])
    with start_server(db, env=ENV) as sp:
        sp.proc.send_signal(signal.SIGINT)
        assert sp.proc.wait(15) in (0, -signal.SIGINT, 130)
    # the database is free again
    from wxcube.store import Store

    Store(db).close()


def test_demo_prints_working_curl_lines_and_serves(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys
    import time

    from serverproc import ServerProcess, free_port, wait_healthy

    port = free_port()
    out = open(tmp_path / "demo.out", "wb")  # noqa: SIM115 (closed by ServerProcess.stop)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXCUBE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxcube", "--db", str(tmp_path / "demo.duckdb"), "demo",
         "--port", str(port)],
        stdout=out, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    with ServerProcess(proc, f"http://127.0.0.1:{port}", out) as sp:
        wait_healthy(sp, 60)
        deadline = time.monotonic() + 10
        while "serving; Ctrl-C" not in sp.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = sp.log()
        assert re.search(r"appid:  wx[0-9a-f]{16}", text)
        assert f"dashboard: http://127.0.0.1:{port}/dashboard" in text
        assert "from wxcube.client import WeChatClient" in text
        lines = [
            x.strip() for x in text.splitlines() if x.strip().startswith(("TOKEN=", "curl -s"))
        ]
        assert len(lines) == 8
        script = "set -e\n" + lines[0] + "\n" + "\necho\n".join(lines[1:]) + "\n"
        got = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        bodies = [orjson.loads(x) for x in got.stdout.splitlines() if x.strip()]
        daily, weekly, monthly = bodies[:3]
        assert [kv["key"] for kv in daily["visit_uv"]] == [0, 1, 2, 3, 4, 5, 6, 7, 14, 30]
        assert [kv["key"] for kv in weekly["visit_uv"]] == [0, 1, 2, 3, 4]
        assert [kv["key"] for kv in monthly["visit_uv"]] == [0, 1]
        assert daily["visit_uv"][0]["value"] > 0
        assert all(b.get("errcode", 0) == 0 for b in bodies)


def test_concurrent_ingest_tokens_and_queries(tmp_path: Path) -> None:
    """Writers (ingest, tokens, admin) and readers at once: no system error, and the final
    answers equal the SQL path over the database the server leaves behind."""
    from concurrent.futures import ThreadPoolExecutor

    from wxcube.periods import parse_date
    from wxcube.retention import sql_retain
    from wxcube.store import Store

    db = tmp_path / "c.duckdb"
    appid, secret = make_app_with_data(db, sample_visits(users=100))
    batches = [
        [{"openid": f"c{b}-{i % 37}", "ts": 1_709_251_200 + 3600 * (i + 7 * b)} for i in range(200)]
        for b in range(24)
    ]
    days = ["20240301", "20240302", "20240305", "20240310"]
    with running_server(db, env=ENV, admin_key="k") as url:
        token = get_token(url, appid, secret)
        with httpx.Client(base_url=url, timeout=30) as http:

            def ingest(batch: list[dict[str, object]]) -> int:
                r = http.post(
                    "/wxcube/v1/visits",
                    params={"access_token": token},
                    json={"visits": batch},
                )
                return int(r.json()["accepted"])

            def read(i: int) -> dict[str, object]:
                d = days[i % len(days)]
                body = orjson.dumps({"begin_date": d, "end_date": d})
                r = http.post(DAY.path, params={"access_token": token}, content=body)
                return dict(r.json())

            def tokens(i: int) -> dict[str, object]:
                if i % 2:
                    return dict(
                        http.get(
                            "/cgi-bin/token",
                            params={
                                "grant_type": "client_credential",
                                "appid": appid,
                                "secret": secret,
                            },
                        ).json()
                    )
                return dict(
                    http.get("/wxcube/v1/admin/apps", headers={"authorization": "Bearer k"}).json()
                )

            with ThreadPoolExecutor(8) as pool:
                ingests = [pool.submit(ingest, b) for b in batches]
                reads = [pool.submit(read, i) for i in range(200)]
                toks = [pool.submit(tokens, i) for i in range(20)]
                assert sum(f.result() for f in ingests) == 24 * 200
                for f in reads:
                    assert "ref_date" in f.result(), f.result()
                for f in toks:
                    assert f.result().get("errcode", 0) == 0, f.result()
            final = {d: read(days.index(d)) for d in days}
    with Store(db, read_only=True) as store:
        as_of = parse_date(ENV["WXCUBE_AS_OF"])
        for d, got in final.items():
            assert got == sql_retain(store.read(), appid, DAY, parse_date(d), as_of).as_dict()
