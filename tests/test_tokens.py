"""Token lifecycle with an injected clock (SPEC §3): grace, expiry, stable tokens, restart."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from serverproc import Clock, InProcess, make_app_with_data
from test_server import assert_error
from wxcube.periods import DAY
from wxcube.server import create_app
from wxcube.settings import Settings

T0 = 1_712_900_000.0
QUERY = orjson.dumps({"begin_date": "20240102", "end_date": "20240102"})


class Tokens:
    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "tok.duckdb"
        self.appid, self.secret = make_app_with_data(self.db, [("a", 1_704_200_000)])
        self.clock = Clock(T0)
        self.settings = Settings(db=str(self.db), as_of="20240110", access_log=False)
        self.start()

    def start(self) -> None:
        self.app = create_app(self.settings, clock=self.clock)
        self.app.wait_ready()
        self.api = InProcess(self.app)

    def restart(self) -> None:
        self.api.close()
        self.start()

    def token(self) -> dict[str, Any]:
        r = self.api.get(
            "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
        return dict(r.json())

    def stable(self, force: bool | None = None) -> Any:
        body: dict[str, Any] = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
        }
        if force is not None:
            body["force_refresh"] = force
        return self.api.post("/cgi-bin/stable_token", content=orjson.dumps(body))

    def query(self, token: str) -> Any:
        return self.api.post(DAY.path, params={"access_token": token}, content=QUERY)

    def valid(self, token: str) -> bool:
        return "ref_date" in self.query(token).json()


@pytest.fixture
def t(tmp_path: Path) -> Iterator[Tokens]:
    w = Tokens(tmp_path)
    yield w
    w.api.close()


def test_token_expires_after_7200_s(t: Tokens) -> None:
    got = t.token()
    assert got["expires_in"] == 7200 and len(got["access_token"]) >= 100
    assert t.valid(got["access_token"])
    t.clock.advance(7199)
    assert t.valid(got["access_token"])
    t.clock.advance(1)
    assert_error(t.query(got["access_token"]), 42001)


def test_new_token_gives_the_previous_one_5_minutes(t: Tokens) -> None:
    first = t.token()["access_token"]
    t.clock.advance(100)
    second = t.token()["access_token"]
    assert second != first
    assert t.valid(second)  # a just-issued token is always accepted
    t.clock.advance(299)
    assert t.valid(first) and t.valid(second)
    t.clock.advance(1)
    assert_error(t.query(first), 40001, "superseded")
    assert t.valid(second)
    # a third token does not extend the first one's grace, and starts the second's
    t.clock.advance(10)
    third = t.token()["access_token"]
    assert_error(t.query(first), 40001)
    assert t.valid(second) and t.valid(third)
    t.clock.advance(300)
    assert_error(t.query(second), 40001)
    assert t.valid(third)


def test_many_quick_token_calls_all_work(t: Tokens) -> None:
    """wechatpy retries on 40001 by fetching a new token: each fresh token must work."""
    for _ in range(5):
        assert t.valid(t.token()["access_token"])


def test_stable_token_is_stable_and_renewed_5_minutes_early(t: Tokens) -> None:
    a = t.stable().json()
    assert set(a) == {"access_token", "expires_in"} and a["expires_in"] == 7200
    t.clock.advance(1000)
    b = t.stable(False).json()
    assert b["access_token"] == a["access_token"] and b["expires_in"] == 6200
    t.clock.advance(6200 - 301)
    assert t.stable().json()["access_token"] == a["access_token"]
    t.clock.advance(2)  # now within 5 minutes of expiry: renewed
    c = t.stable().json()
    assert c["access_token"] != a["access_token"] and c["expires_in"] == 7200
    assert t.valid(a["access_token"]) and t.valid(c["access_token"])  # both valid meanwhile
    assert t.stable().json()["access_token"] == c["access_token"]
    t.clock.advance(300)
    assert_error(t.query(a["access_token"]), 42001)
    assert t.valid(c["access_token"])


def test_force_refresh_once_per_30_s(t: Tokens) -> None:
    a = t.stable().json()["access_token"]
    b = t.stable(True).json()["access_token"]
    assert b != a
    assert_error(t.query(a), 40001)  # force_refresh invalidates the previous stable token
    assert t.valid(b)
    t.clock.advance(29)
    assert_error(t.stable(True), 45011, "force_refresh")
    assert t.stable().json()["access_token"] == b  # normal mode still works
    t.clock.advance(1)
    c = t.stable(True).json()["access_token"]
    assert c != b and t.valid(c)
    assert_error(t.query(b), 40001)


def test_token_kinds_are_separate(t: Tokens) -> None:
    s = t.stable().json()["access_token"]
    plain = t.token()["access_token"]
    t.clock.advance(60)
    t.token()
    t.clock.advance(400)  # the first plain token's grace is over
    assert_error(t.query(plain), 40001)
    assert t.valid(s)  # /cgi-bin/token does not touch stable tokens
    assert t.stable().json()["access_token"] == s
    latest = t.token()["access_token"]
    t.clock.advance(31)
    t.stable(True)
    assert t.valid(latest)  # force_refresh does not touch /cgi-bin/token tokens


def test_tokens_are_stored_hashed_and_survive_restart(t: Tokens) -> None:
    plain = t.token()["access_token"]
    stable = t.stable().json()["access_token"]
    rows = t.app.store.read().execute("SELECT token_hash, kind FROM tokens").fetchall()
    hashes = {h for h, _ in rows}
    assert hashlib.sha256(plain.encode()).hexdigest() in hashes
    assert hashlib.sha256(stable.encode()).hexdigest() in hashes
    assert plain not in hashes and stable not in hashes
    t.restart()
    t.clock.advance(60)
    assert t.valid(plain) and t.valid(stable)
    # plain tokens are not kept: after a restart stable_token hands out a new one
    again = t.stable().json()
    assert again["access_token"] != stable and t.valid(again["access_token"])
    assert t.valid(stable)
    # grace is remembered across restarts too
    t.token()
    t.restart()
    t.clock.advance(301)
    assert_error(t.query(plain), 40001)
    t.clock.advance(7200)
    assert_error(t.query(stable), 42001)


def test_tokens_table_is_the_source_of_truth_on_disk(tmp_path: Path) -> None:
    t = Tokens(tmp_path)
    tok = t.token()["access_token"]
    t.api.close()
    from wxcube.store import Store

    with Store(t.db) as store:
        rows = store.read().execute("SELECT appid, kind, expires_at - issued_at FROM tokens")
        assert rows.fetchall() == [(t.appid, "token", 7200.0)]
    t.start()
    try:
        assert t.valid(tok)
    finally:
        t.api.close()
