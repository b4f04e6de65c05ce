"""Isolation: a token of one app never reads or writes another app's data, on any endpoint;
and a query during ingests sees each batch entirely or not at all.

One real server process (module scope) holds three apps: A and B with different data, C for
the concurrent-ingest test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from serverproc import get_token, make_app_with_data, sample_visits, start_server
from wxcube.periods import DAY, MONTH, WEEK, parse_date
from wxcube.retention import sql_retain
from wxcube.store import Store

AS_OF = "20240430"
ADMIN = "iso-admin-key-0123456789"
PERIODS = {
    DAY: ("20240301", "20240301"),
    WEEK: ("20240304", "20240310"),
    MONTH: ("20240301", "20240331"),
}


@dataclass
class World:
    url: str
    db: Path
    apps: dict[str, tuple[str, str]]  # name -> (appid, secret)
    tokens: dict[str, str]
    expected: dict[tuple[str, str], dict[str, Any]]  # (app name, kind) -> datacube body


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db = tmp_path_factory.mktemp("iso") / "iso.duckdb"
    apps = {
        "A": make_app_with_data(db, sample_visits(seed=1, users=200, days=90), name="A"),
        "B": make_app_with_data(db, sample_visits(seed=2, users=90, days=90), name="B"),
        "C": make_app_with_data(db, None, name="C", timezone="UTC"),
    }
    expected = {}
    with Store(db) as s:
        for name in ("A", "B"):
            for kind, (b, _) in PERIODS.items():
                expected[(name, kind.name)] = sql_retain(
                    s.read(), apps[name][0], kind, parse_date(b), parse_date(AS_OF)
                ).as_dict()
    for kind in PERIODS:  # the data differ, or this file proves nothing
        assert expected[("A", kind.name)] != expected[("B", kind.name)]
    sp = start_server(db, env={"WXCUBE_AS_OF": AS_OF}, admin_key=ADMIN)
    try:
        tokens = {n: get_token(sp.url, *apps[n]) for n in apps}
        yield World(sp.url, db, apps, tokens, expected)
    finally:
        sp.stop()


def post(w: World, path: str, token: str | None, body: Any, **params: str) -> dict[str, Any]:
    if token is not None:
        params["access_token"] = token
    r = httpx.post(f"{w.url}{path}", params=params, content=orjson.dumps(body), timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def get(w: World, path: str, token: str | None, **params: str) -> dict[str, Any]:
    if token is not None:
        params["access_token"] = token
    r = httpx.get(f"{w.url}{path}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_datacube_answers_only_the_tokens_app(world: World) -> None:
    a, b = world.apps["A"][0], world.apps["B"][0]
    for kind, (begin, end) in PERIODS.items():
        want_a = world.expected[("A", kind.name)]
        plain = {"begin_date": begin, "end_date": end}
        # every way of naming the other app: body, query, cloudbase token, both tokens
        assert post(world, kind.path, world.tokens["A"], plain) == want_a
        assert post(world, kind.path, world.tokens["A"], {**plain, "appid": b}) == want_a
        assert post(world, kind.path, world.tokens["A"], plain, appid=b) == want_a
        assert (
            post(world, kind.path, None, plain, cloudbase_access_token=world.tokens["A"]) == want_a
        )
        assert (
            post(
                world,
                kind.path,
                world.tokens["A"],
                plain,
                cloudbase_access_token=world.tokens["B"],
            )
            == want_a
        )
        assert post(world, kind.path, world.tokens["B"], plain) == world.expected[("B", kind.name)]
        # a token that is B's token with a character changed is no token at all
        forged = world.tokens["B"][:-1] + ("A" if world.tokens["B"][-1] != "A" else "B")
        assert post(world, kind.path, forged, plain)["errcode"] == 40001
        assert a != b


def test_info_and_retain_answer_only_the_tokens_app(world: World) -> None:
    a, b = world.apps["A"][0], world.apps["B"][0]
    info = get(world, "/wxcube/v1/info", world.tokens["A"], appid=b)
    assert info["appid"] == a and info["name"] == "A"
    users_b = get(world, "/wxcube/v1/info", world.tokens["B"])["users"]
    assert users_b != info["users"]
    body = {"kind": "day", "begin_date": "20240301", "end_date": "20240301", "appid": b}
    items = post(world, "/wxcube/v1/retain", world.tokens["A"], body, appid=b)["items"]
    assert items == [world.expected[("A", "day")]]


def test_visits_land_only_in_the_tokens_app(world: World) -> None:
    a, b = world.apps["A"][0], world.apps["B"][0]
    before_b = get(world, "/wxcube/v1/info", world.tokens["B"])["users"]
    visits = [{"openid": "iso-intruder", "ts": 1709280000, "appid": b, "app": b}]
    r = post(world, "/wxcube/v1/visits", world.tokens["A"], {"visits": visits, "appid": b}, appid=b)
    assert r["errcode"] == 0 and r["accepted"] == 1
    assert get(world, "/wxcube/v1/info", world.tokens["B"])["users"] == before_b
    info_a = get(world, "/wxcube/v1/info", world.tokens["A"])
    assert info_a["appid"] == a
    # B's numbers are untouched on every kind
    for kind, (begin, end) in PERIODS.items():
        got = post(world, kind.path, world.tokens["B"], {"begin_date": begin, "end_date": end})
        assert got == world.expected[("B", kind.name)]


def test_credentials_of_one_app_never_open_another(world: World) -> None:
    (a, sa), (b, sb) = world.apps["A"], world.apps["B"]
    r = get(world, "/cgi-bin/token", None, grant_type="client_credential", appid=b, secret=sa)
    assert r["errcode"] == 40001 and "access_token" not in r
    r = post(
        world,
        "/cgi-bin/stable_token",
        None,
        {"grant_type": "client_credential", "appid": b, "secret": sa},
    )
    assert r["errcode"] == 40125 and "access_token" not in r
    # an app's secret is not the admin key, nor is its token
    for bearer in (sa, world.tokens["A"]):
        r = httpx.get(
            f"{world.url}/wxcube/v1/admin/apps", headers={"Authorization": f"Bearer {bearer}"}
        ).json()
        assert r["errcode"] == 40001 and "apps" not in r
    r = httpx.get(
        f"{world.url}/wxcube/v1/admin/apps", params={"access_token": world.tokens["A"]}
    ).json()
    assert r["errcode"] == 40001 and "apps" not in r
    r = httpx.post(
        f"{world.url}/wxcube/v1/admin/apps/rotate_secret",
        params={"access_token": world.tokens["A"]},
        headers={"Authorization": f"Bearer {world.tokens['A']}"},
        content=orjson.dumps({"appid": b}),
    ).json()
    assert r["errcode"] == 40001 and "secret" not in r
    # B still works with its own secret and token
    assert "access_token" in get(
        world, "/cgi-bin/token", None, grant_type="client_credential", appid=b, secret=sb
    )
    assert get(world, "/wxcube/v1/info", world.tokens["B"])["appid"] == b
    assert a != b


# --- atomicity under concurrency ------------------------------------------------------------
K = 25  # users per batch
C_DAY = parse_date("20240304")  # a Monday


def _c_batch(i: int) -> list[dict[str, Any]]:
    """K brand-new users, each visiting C_DAY and C_DAY + 1 (UTC), and K more on a day no
    batch has touched yet (so the index grows new days while readers iterate it)."""
    return [
        {"openid": f"c{i}.{j}", "ts": (C_DAY + d) * 86400 + 3600 * (j % 20)}
        for j in range(K)
        for d in (0, 1)
    ] + [{"openid": f"f{i}.{j}", "ts": (C_DAY + 14 + i) * 86400 + j} for j in range(K)]


def test_concurrent_readers_see_whole_batches(world: World) -> None:
    """While batches stream in, every answer is a state between two batches: on C_DAY all
    users are new and come back the next day, so all four figures are equal and a multiple
    of K; /info grows by multiples of 2K; and an acknowledged batch shows in the next query."""
    token = world.tokens["C"]
    day = {"begin_date": "20240304", "end_date": "20240304"}
    week = {"begin_date": "20240304", "end_date": "20240310"}
    batches = 30
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def reader(n: int) -> None:
        last_users = 0
        with httpx.Client(base_url=world.url, timeout=30) as c:
            while not stop.is_set():
                q = {"access_token": token}
                r = c.post(DAY.path, params=q, content=orjson.dumps(day)).json()
                vals = {
                    r["visit_uv_new"][0]["value"],
                    r["visit_uv_new"][1]["value"],
                    r["visit_uv"][0]["value"],
                    r["visit_uv"][1]["value"],
                }
                if len(vals) != 1 or next(iter(vals)) % K:
                    problems.append(f"reader {n}: torn daily answer {r}")
                w = c.post(WEEK.path, params=q, content=orjson.dumps(week)).json()
                if w["visit_uv_new"][0]["value"] != w["visit_uv"][0]["value"] or (
                    w["visit_uv"][0]["value"] % K
                ):
                    problems.append(f"reader {n}: torn weekly answer {w}")
                users = c.get("/wxcube/v1/info", params=q).json()["users"]
                if users % (2 * K) or users < last_users:
                    problems.append(f"reader {n}: /info users {users} after {last_users}")
                last_users = users
                reads[0] += 3

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=world.url, timeout=30) as c:
            q = {"access_token": token}
            for i in range(batches):
                r = c.post(
                    "/wxcube/v1/visits", params=q, content=orjson.dumps({"visits": _c_batch(i)})
                ).json()
                assert r["errcode"] == 0 and r["new_users"] == 2 * K, r
                got = c.post(DAY.path, params=q, content=orjson.dumps(day)).json()
                assert got["visit_uv_new"][0]["value"] == K * (i + 1), "ack not visible"
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    print(f"\n{batches} batches ingested under {reads[0]} concurrent reads")
    assert reads[0] > batches
    assert not problems, problems[:5]
