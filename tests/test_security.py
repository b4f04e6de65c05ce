"""Nothing leaked, nothing unbounded: secrets and tokens at rest and in logs, secret
rotation, quotas (45009 / 45011), body and batch limits (45002), request timeouts.

Real server processes for what crosses a process boundary (logs, files on disk, restarts);
the in-process ASGI app with an injected clock for quota windows (minutes and local days).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from click.testing import CliRunner

from serverproc import (
    Clock,
    InProcess,
    get_token,
    make_app_with_data,
    sample_visits,
    start_server,
)
from wxcube.cli import main
from wxcube.errors import ERRMSG
from wxcube.periods import DAY
from wxcube.server import create_app
from wxcube.settings import Settings
from wxcube.store import Store, hash_secret, verify_secret

AS_OF = "20240410"
ENV = {"WXCUBE_AS_OF": AS_OF}
ADMIN = "sec-admin-key-5f0c9e1d7b3a"
SCRYPT = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([0-9a-f]{32})\$([0-9a-f]{64})")
DAY_BODY = orjson.dumps({"begin_date": "20240301", "end_date": "20240301"})


def token_params(appid: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credential", "appid": appid, "secret": secret}


def errcode(r: httpx.Response) -> int:
    assert r.status_code == 200, r.text
    return int(r.json().get("errcode", 0))


def assert_error(r: httpx.Response, code: int) -> None:
    body = r.json()
    assert body["errcode"] == code, body
    assert re.fullmatch(
        re.escape(ERRMSG[code]) + r"(: .*)? rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}",
        body["errmsg"],
    ), body


def db_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}.wal")) if p.exists())


# --- secrets at rest ------------------------------------------------------------------------
def test_secrets_are_stored_as_salted_scrypt(store: Store, db_path: Path) -> None:
    apps = [store.create_app(f"app{i}") for i in range(2)]
    rows = dict(store.read().execute("SELECT appid, secret_hash FROM apps").fetchall())
    for app, secret in apps:
        stored = rows[app.appid]
        m = SCRYPT.fullmatch(stored)
        assert m, f"not scrypt$n$r$p$salt$hash: {stored[:20]}..."
        n, r, p, salt, want = m.groups()
        assert int(n) >= 2**14 and int(r) >= 8 and int(p) >= 1
        got = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
        assert got.hex() == want  # really scrypt of the secret with that salt
        assert secret not in stored
    # the same secret never hashes the same way twice; both verify, neither verifies another
    same = "0123456789abcdef0123456789abcdef"
    with store.write() as c:
        for app, _ in apps:
            c.execute(
                "UPDATE apps SET secret_hash = ? WHERE appid = ?", [hash_secret(same), app.appid]
            )
    h1, h2 = (r[0] for r in store.read().execute("SELECT secret_hash FROM apps").fetchall())
    m1, m2 = SCRYPT.fullmatch(h1), SCRYPT.fullmatch(h2)
    assert h1 != h2 and m1 and m2 and m1.group(4) != m2.group(4)  # different salts
    assert all(store.check_secret(app.appid, same) for app, _ in apps)
    assert not store.check_secret(apps[0][0].appid, same.upper())
    assert not verify_secret(same, "scrypt$garbage") and not verify_secret(same, "")
    store.conn.execute("CHECKPOINT")
    raw = db_bytes(db_path)
    for _, secret in apps:
        assert secret.encode() not in raw


# --- a whole session: nothing in the logs, nothing plain on disk ----------------------------
def test_no_secret_or_token_in_logs_or_on_disk(db_path: Path) -> None:
    appid, secret = make_app_with_data(db_path, sample_visits(users=60, days=40))
    env = {**ENV, "WXCUBE_MAX_BODY_BYTES": "4096"}
    sp = start_server(db_path, env=env, admin_key=ADMIN)
    tokens: list[str] = []
    secrets_ = [secret, ADMIN]
    try:
        u = sp.url
        tokens.append(get_token(u, appid, secret))
        tokens.append(get_token(u, appid, secret))
        st = {"grant_type": "client_credential", "appid": appid, "secret": secret}
        tokens.append(httpx.post(f"{u}/cgi-bin/stable_token", json=st).json()["access_token"])
        forced = {**st, "force_refresh": True}
        tokens.append(httpx.post(f"{u}/cgi-bin/stable_token", json=forced).json()["access_token"])
        for t in tokens[-2:]:
            httpx.post(f"{u}{DAY.path}", params={"access_token": t}, content=DAY_BODY)
            httpx.post(f"{u}{DAY.path}", params={"cloudbase_access_token": t}, content=DAY_BODY)
        # failures that carry a credential: wrong secrets, forged tokens, bad bodies
        wrong = secret[::-1]
        secrets_.append(wrong)
        assert errcode(httpx.get(f"{u}/cgi-bin/token", params=token_params(appid, wrong))) == 40001
        assert (
            errcode(httpx.post(f"{u}/cgi-bin/stable_token", json={**st, "secret": wrong})) == 40125
        )
        forged = tokens[-1][::-1]
        tokens.append(forged)
        r = httpx.post(f"{u}{DAY.path}", params={"access_token": forged}, content=DAY_BODY)
        assert errcode(r) == 40001
        r = httpx.post(f"{u}/wxcube/v1/visits", params={"access_token": tokens[-2]}, content=b"{")
        assert errcode(r) == 47001
        # oversize, chunked (no Content-Length): 45002 and nothing read past the limit
        chunks = (b'{"visits": [' + b" " * 1000 for _ in range(6))
        r = httpx.post(f"{u}/wxcube/v1/visits", params={"access_token": tokens[-2]}, content=chunks)
        assert errcode(r) == 45002
        # admin: a new app's secret and a rotated secret are shown once, never logged
        h = {"Authorization": f"Bearer {ADMIN}"}
        made = httpx.post(f"{u}/wxcube/v1/admin/apps", headers=h, json={"name": "n"}).json()
        secrets_.append(made["secret"])
        rot = httpx.post(
            f"{u}/wxcube/v1/admin/apps/rotate_secret", headers=h, json={"appid": appid}
        ).json()
        secrets_.append(rot["secret"])
        assert (
            errcode(
                httpx.get(
                    f"{u}/wxcube/v1/admin/apps", headers={"Authorization": "Bearer x" + ADMIN}
                )
            )
            == 40001
        )
    finally:
        sp.stop()
    log = sp.log()
    assert '"rid"' in log  # the access log was on: there was something to leak into
    for s in secrets_ + tokens:
        assert s not in log, f"a credential ({s[:4]}…) is in the server log"
        assert s[:12] not in log, f"a prefix of a credential ({s[:4]}…) is in the server log"
    # on disk: token hashes only, and no plain credential in the database files
    with Store(db_path) as s:
        stored = {r[0] for r in s.read().execute("SELECT token_hash FROM tokens").fetchall()}
        s.conn.execute("CHECKPOINT")
    issued = tokens[:4]
    assert {hashlib.sha256(t.encode()).hexdigest() for t in issued} <= stored
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored)
    raw = db_bytes(db_path)
    for cred in secrets_ + issued:
        assert cred.encode() not in raw, f"a plain credential ({cred[:4]}…) is in the database"


# --- rotation -------------------------------------------------------------------------------
def test_rotate_secret_invalidates_the_old_secret_and_its_tokens(db_path: Path) -> None:
    appid, old = make_app_with_data(db_path, sample_visits(users=30, days=40))
    st = {"grant_type": "client_credential", "appid": appid, "secret": old}

    def query(url: str, token: str) -> int:
        return errcode(
            httpx.post(f"{url}{DAY.path}", params={"access_token": token}, content=DAY_BODY)
        )

    # 1) offline, with the CLI, between two server runs
    sp = start_server(db_path, env=ENV, admin_key=ADMIN)
    try:
        t_old = get_token(sp.url, appid, old)
        s_old = httpx.post(f"{sp.url}/cgi-bin/stable_token", json=st).json()["access_token"]
        assert query(sp.url, t_old) == 0 and query(sp.url, s_old) == 0
    finally:
        sp.stop()
    res = CliRunner().invoke(main, ["--db", str(db_path), "app", "rotate-secret", appid])
    assert res.exit_code == 0, res.output
    new = re.search(r"secret: ([0-9a-f]{32})", res.output).group(1)  # type: ignore[union-attr]
    assert new != old
    sp = start_server(db_path, env=ENV, admin_key=ADMIN)
    try:
        u = sp.url
        assert query(u, t_old) == 40001 and query(u, s_old) == 40001
        assert errcode(httpx.get(f"{u}/cgi-bin/token", params=token_params(appid, old))) == 40001
        assert errcode(httpx.post(f"{u}/cgi-bin/stable_token", json=st)) == 40125
        t_new = get_token(u, appid, new)
        assert query(u, t_new) == 0
        # 2) online, through the admin API: the old secret was just accepted (and may be
        # remembered), yet after the rotation it and its tokens stop at once
        assert query(u, get_token(u, appid, new)) == 0
        h = {"Authorization": f"Bearer {ADMIN}"}
        newer = httpx.post(
            f"{u}/wxcube/v1/admin/apps/rotate_secret", headers=h, json={"appid": appid}
        ).json()["secret"]
        assert query(u, t_new) == 40001
        assert errcode(httpx.get(f"{u}/cgi-bin/token", params=token_params(appid, new))) == 40001
        assert query(u, get_token(u, appid, newer)) == 0
    finally:
        sp.stop()


# --- quotas ---------------------------------------------------------------------------------
TZ = "Asia/Shanghai"
# 10:00 local on 2024-04-11: the local day ends at 16:00 UTC, the UTC day 8 hours later
T0 = dt.datetime(2024, 4, 11, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp()


@pytest.fixture
def quota_api(db_path: Path) -> Iterator[tuple[InProcess, Clock, dict[str, tuple[str, str]]]]:
    apps = {
        "A": make_app_with_data(db_path, sample_visits(users=30, days=40), name="A"),
        "B": make_app_with_data(db_path, sample_visits(users=30, days=40), name="B"),
    }
    clock = Clock(T0)
    s = Settings(
        db=str(db_path),
        as_of=AS_OF,
        access_log=False,
        quota_minute=3,
        quota_daily=7,
        token_ttl=2 * 86400,
    )
    api = InProcess(create_app(s, clock=clock))
    api.app.wait_ready()
    try:
        yield api, clock, apps
    finally:
        api.close()


def test_minute_and_daily_quotas_per_app_and_api(
    quota_api: tuple[InProcess, Clock, dict[str, tuple[str, str]]],
) -> None:
    api, clock, apps = quota_api
    ta = api.token(*apps["A"])  # /cgi-bin/token: call 1 of A's "token" API
    tb = api.token(*apps["B"])

    def daily(tok: str) -> httpx.Response:
        return api.post(DAY.path, params={"access_token": tok}, content=DAY_BODY)

    for _ in range(3):
        assert errcode(daily(ta)) == 0
    assert_error(daily(ta), 45011)
    assert_error(daily(ta), 45011)  # refused calls are not counted
    assert errcode(daily(tb)) == 0  # another app has its own count
    assert errcode(api.get("/wxcube/v1/info", params={"access_token": ta})) == 0  # another API
    clock.advance(60)  # next minute: 3 more (6 of 7 today)
    for _ in range(3):
        assert errcode(daily(ta)) == 0
    assert_error(daily(ta), 45011)
    clock.advance(60)
    assert errcode(daily(ta)) == 0  # 7 of 7
    assert_error(daily(ta), 45009)
    # the day is the app's local day: still refused at 23:59 local (15:59 UTC) ...
    clock.now = T0 + 13 * 3600 + 59 * 60
    assert_error(daily(ta), 45009)
    # ... and allowed again a minute later, at local midnight, long before UTC midnight
    clock.now = T0 + 14 * 3600 + 1
    assert errcode(daily(ta)) == 0
    # the token API is quota'd too
    for _ in range(2):
        api.token(*apps["A"])
    r = api.get("/cgi-bin/token", params=token_params(*apps["A"]))
    assert errcode(r) == 0
    assert_error(api.get("/cgi-bin/token", params=token_params(*apps["A"])), 45011)


def test_force_refresh_at_most_once_per_30_seconds(
    quota_api: tuple[InProcess, Clock, dict[str, tuple[str, str]]],
) -> None:
    api, clock, apps = quota_api
    appid, secret = apps["A"]
    body = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    first = api.post("/cgi-bin/stable_token", json={**body, "force_refresh": True}).json()
    assert "access_token" in first
    clock.advance(10)
    assert_error(api.post("/cgi-bin/stable_token", json={**body, "force_refresh": True}), 45011)
    # the refused refresh did not revoke the token it would have replaced
    assert (
        errcode(
            api.post(DAY.path, params={"access_token": first["access_token"]}, content=DAY_BODY)
        )
        == 0
    )
    clock.advance(21)
    second = api.post("/cgi-bin/stable_token", json={**body, "force_refresh": True}).json()
    assert second["access_token"] != first["access_token"]
    r = api.post(DAY.path, params={"access_token": first["access_token"]}, content=DAY_BODY)
    assert errcode(r) == 40001


def test_quota_settings_reach_a_real_server(db_path: Path) -> None:
    appid, secret = make_app_with_data(db_path, sample_visits(users=30, days=40))
    other, other_secret = make_app_with_data(db_path, sample_visits(users=30, days=40))
    env = {**ENV, "WXCUBE_QUOTA_MINUTE": "1000", "WXCUBE_QUOTAS": f"{appid}=/2"}
    sp = start_server(db_path, env=env)
    try:
        tok = get_token(sp.url, appid, secret)
        url = f"{sp.url}{DAY.path}"
        for _ in range(2):
            assert errcode(httpx.post(url, params={"access_token": tok}, content=DAY_BODY)) == 0
        assert_error(httpx.post(url, params={"access_token": tok}, content=DAY_BODY), 45009)
        tok2 = get_token(sp.url, other, other_secret)
        for _ in range(3):
            assert errcode(httpx.post(url, params={"access_token": tok2}, content=DAY_BODY)) == 0
    finally:
        sp.stop()


# --- limits ---------------------------------------------------------------------------------
def test_body_and_batch_limits_apply_nothing(db_path: Path) -> None:
    appid, secret = make_app_with_data(db_path, sample_visits(users=30, days=40))
    s = Settings(db=str(db_path), as_of=AS_OF, access_log=False, max_body_bytes=2048, max_batch=10)
    api = InProcess(create_app(s, clock=Clock(T0)))
    api.app.wait_ready()
    try:
        tok = api.token(appid, secret)
        q = {"access_token": tok}
        users = api.get("/wxcube/v1/info", params=q).json()["users"]

        def visits(n: int, pad: int = 0) -> bytes:
            v = [{"openid": f"lim{i}", "ts": 1712282400} for i in range(n)]
            body = orjson.dumps({"visits": v, "pad": "x" * pad})
            return body

        eleven = visits(11)
        assert len(eleven) < 2048
        assert_error(api.post("/wxcube/v1/visits", params=q, content=eleven), 45002)
        exact = visits(10)
        exact = visits(10, 2048 - len(exact))
        assert len(exact) == 2048
        assert api.post("/wxcube/v1/visits", params=q, content=exact).json()["accepted"] == 10
        over = visits(3, 2049 - len(visits(3)))
        assert len(over) == 2049
        assert_error(api.post("/wxcube/v1/visits", params=q, content=over), 45002)

        async def chunked() -> Any:
            yield b'{"visits": ['
            for i in range(200):
                yield orjson.dumps({"openid": f"ch{i}", "ts": 1712282400}) + b","
            yield b"{}]}"

        assert_error(api.post("/wxcube/v1/visits", params=q, content=chunked()), 45002)
        assert_error(api.post(DAY.path, params=q, content=b" " * 5000), 45002)
        info = api.get("/wxcube/v1/info", params=q).json()
        assert info["users"] == users + 10  # only the accepted batch
    finally:
        api.close()


def test_a_request_that_never_finishes_its_body_times_out(db_path: Path) -> None:
    appid, secret = make_app_with_data(db_path, [("a", 1712282400)])
    sp = start_server(db_path, env={**ENV, "WXCUBE_REQUEST_TIMEOUT": "1"})
    try:
        tok = get_token(sp.url, appid, secret)
        port = int(sp.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(3)
            s.sendall(
                f"POST /wxcube/v1/visits?access_token={tok} HTTP/1.1\r\nHost: x\r\n"
                'Content-Length: 100\r\n\r\n{"vis'.encode()
            )
            t0 = time.monotonic()
            raw = b""
            try:
                while chunk := s.recv(65536):
                    raw += chunk
                    head, sep, body = raw.partition(b"\r\n\r\n")
                    m = re.search(rb"(?i)content-length: *(\d+)", head)
                    if sep and m and len(body) >= int(m.group(1)):
                        break
            except TimeoutError:
                pytest.fail(f"no (whole) answer 3 s after a 1 s request timeout: {raw!r}")
            assert time.monotonic() - t0 < 3
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        answer = orjson.loads(body)
        assert answer["errcode"] == -1 and "not received within 1 s" in answer["errmsg"], answer
    finally:
        sp.stop()
