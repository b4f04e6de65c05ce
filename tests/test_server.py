"""The server in process (httpx.ASGITransport): endpoints, the whole error table, limits."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from serverproc import Clock, InProcess, make_app_with_data, sample_visits
from wxcube.errors import ERRMSG
from wxcube.periods import DAY, KINDS, MONTH, WEEK, fmt, parse_date
from wxcube.retention import sql_retain
from wxcube.server import create_app
from wxcube.settings import Settings

AS_OF = "20240410"
NOW = 1_712_900_000.0  # 2024-04-12, after AS_OF
RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")
DAILY, WEEKLY, MONTHLY = DAY.path, WEEK.path, MONTH.path


def assert_error(r: Any, errcode: int, detail: str | None = None, status: int = 200) -> None:
    """Exactly SPEC §2's error body."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"errcode", "errmsg"}, body
    assert body["errcode"] == errcode, body
    msg = body["errmsg"]
    assert RID.search(msg), msg
    if errcode in ERRMSG:
        assert msg.startswith(ERRMSG[errcode]), msg
    if detail is not None:
        assert detail in msg, msg
    assert "Traceback" not in r.text


_TEMPLATES: dict[str, tuple[bytes, str, str, str, str]] = {}


def _template() -> tuple[bytes, str, str, str, str]:
    """One database with two apps, built once per session and copied into each test."""
    if "db" not in _TEMPLATES:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "template.duckdb"
            appid, secret = make_app_with_data(db, sample_visits())
            other, other_secret = make_app_with_data(db, [("someone", 1_704_200_000)], name="other")
            _TEMPLATES["db"] = (db.read_bytes(), appid, secret, other, other_secret)
    return _TEMPLATES["db"]


class World:
    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.db = tmp / "wx.duckdb"
        data, self.appid, self.secret, self.other, self.other_secret = _template()
        self.db.write_bytes(data)
        self.clock = Clock(NOW)
        self.settings = Settings(db=str(self.db), as_of=AS_OF, access_log=False, **overrides)
        self.start()

    def start(self, **kw: Any) -> None:
        self.app = create_app(self.settings, clock=self.clock, **kw)
        if kw.get("load_index", True):
            assert self.app.wait_ready()
        self.api = InProcess(self.app)

    def restart(self) -> None:
        self.api.close()
        self.start()

    def token(self) -> str:
        return self.api.token(self.appid, self.secret)

    def post(self, path: str, body: Any, token: str | None = None, **kw: Any) -> Any:
        params = {"access_token": token} if token else {}
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.api.post(path, params=params, content=content, **kw)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.api.close()


def day_body(d: str) -> dict[str, str]:
    return {"begin_date": d, "end_date": d}


# --- success ------------------------------------------------------------------------------
def test_datacube_matches_sql_path_for_every_period(world: World) -> None:
    tok = world.token()
    as_of = parse_date(AS_OF)
    store = world.app.store
    checked = 0
    for kind in (DAY, WEEK, MONTH):
        start = kind.start_of(parse_date("20240101"))
        while kind.end(start) <= as_of:
            body = {"begin_date": fmt(start), "end_date": fmt(kind.end(start))}
            r = world.post(kind.path, body, tok)
            assert r.status_code == 200
            got = r.json()
            assert "errcode" not in got
            assert got == sql_retain(store.read(), world.appid, kind, start, as_of).as_dict()
            checked += 1
            start = kind.shift(start, 1)
    assert checked > 100
    # spot check the shape that WxJava / EasyWeChat / Go clients parse
    got = world.post(DAILY, day_body("20240301"), tok).json()
    assert list(got) == ["ref_date", "visit_uv_new", "visit_uv"]
    assert [kv["key"] for kv in got["visit_uv"]] == [0, 1, 2, 3, 4, 5, 6, 7, 14, 30]
    assert all(type(kv["value"]) is int and set(kv) == {"key", "value"} for kv in got["visit_uv"])
    assert got["visit_uv"][0]["value"] > 0


def test_monthly_and_weekly_ref_dates_and_missing_keys(world: World) -> None:
    tok = world.token()
    m = world.post(MONTHLY, {"begin_date": "20240301", "end_date": "20240331"}, tok).json()
    assert m["ref_date"] == "202403"
    assert [kv["key"] for kv in m["visit_uv"]] == [0]  # April has not ended by as_of
    w = world.post(WEEKLY, {"begin_date": "20240318", "end_date": "20240324"}, tok).json()
    assert w["ref_date"] == "20240318-20240324"
    assert [kv["key"] for kv in w["visit_uv"]] == [0, 1, 2]


def test_body_is_json_whatever_the_content_type(world: World) -> None:
    tok = world.token()
    raw = orjson.dumps(day_body("20240301"))
    want = world.post(DAILY, raw, tok).json()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        r = world.post(DAILY, raw, tok, headers={"content-type": ctype})
        assert r.json() == want


def test_cloudbase_access_token_is_accepted(world: World) -> None:
    tok = world.token()
    r = world.api.post(
        DAILY, params={"cloudbase_access_token": tok}, content=orjson.dumps(day_body("20240301"))
    )
    assert "ref_date" in r.json()


def test_a_token_reads_only_its_own_app(world: World) -> None:
    mine = world.post(DAILY, day_body("20240102"), world.token()).json()
    theirs = world.post(
        DAILY, day_body("20240102"), world.api.token(world.other, world.other_secret)
    ).json()
    assert theirs["visit_uv"][0]["value"] == 1
    assert mine["visit_uv"][0]["value"] != 1
    info = world.api.get("/wxcube/v1/info", params={"access_token": world.token()}).json()
    assert info["appid"] == world.appid


def test_info(world: World) -> None:
    r = world.api.get("/wxcube/v1/info", params={"access_token": world.token()})
    body = r.json()
    assert body == {
        "errcode": 0,
        "errmsg": "ok",
        "appid": world.appid,
        "name": "test",
        "timezone": "Asia/Shanghai",
        "as_of": AS_OF,
        "first_day": "20240101",
        "last_day": body["last_day"],
        "users": 300,
    }
    assert "20240401" <= body["last_day"] <= "20240409"


def test_retain_range_and_custom_keys(world: World) -> None:
    tok = world.token()
    store = world.app.store
    r = world.post(
        "/wxcube/v1/retain",
        {"kind": "week", "begin_date": "20240101", "end_date": "20240430"},
        tok,
    ).json()
    assert r["errcode"] == 0 and r["as_of"] == AS_OF
    refs = [it["ref_date"] for it in r["items"]]
    assert refs[0] == "20240101-20240107" and refs[-1] == "20240401-20240407"
    assert r["left_out"] == 4  # weeks from 0408 to 0429 have not ended
    assert (
        r["items"][3]
        == world.post(WEEKLY, {"begin_date": "20240122", "end_date": "20240128"}, tok).json()
    )
    r = world.post(
        "/wxcube/v1/retain",
        {"kind": "day", "begin_date": "20240110", "end_date": "20240111", "keys": [60, 0, 2, 2]},
        tok,
    ).json()
    as_of = parse_date(AS_OF)
    assert [it["ref_date"] for it in r["items"]] == ["20240110", "20240111"]
    for it in r["items"]:
        start = parse_date(it["ref_date"])
        assert it == sql_retain(store.read(), world.appid, DAY, start, as_of, (0, 2, 60)).as_dict()
    assert_error(
        world.post("/wxcube/v1/retain", {"kind": "year", "begin_date": "20240101"}, tok), 47001
    )
    assert_error(
        world.post(
            "/wxcube/v1/retain",
            {"kind": "day", "begin_date": "20240101", "end_date": "20240101", "keys": [-1]},
            tok,
        ),
        47001,
        "keys",
    )
    assert_error(
        world.post(
            "/wxcube/v1/retain",
            {"kind": "week", "begin_date": "20240102", "end_date": "20240131"},
            tok,
        ),
        61501,
    )


def test_visits_are_durable_and_visible_to_the_next_query(world: World) -> None:
    tok = world.token()
    before = world.post(DAILY, day_body("20240405"), tok).json()["visit_uv_new"][0]["value"]
    r = world.post(
        "/wxcube/v1/visits",
        {
            "visits": [
                {"openid": "fresh-1", "ts": "2024-04-05T09:00:00+08:00"},
                {"openid": "fresh-2", "ts": "2024-04-05 10:00:00"},  # naive: app timezone
                {"openid": "fresh-2", "ts": 1712282400.5},  # duplicate (user, day)
            ]
        },
        tok,
    )
    body = r.json()
    assert body["errcode"] == 0 and body["errmsg"] == "ok" and body["accepted"] == 3
    assert body["new_users"] == 2 and body["duplicates"] == 1
    after = world.post(DAILY, day_body("20240405"), tok).json()["visit_uv_new"][0]["value"]
    assert after == before + 2
    as_of = parse_date(AS_OF)
    got = world.post(DAILY, day_body("20240405"), tok).json()
    want = sql_retain(world.app.store.read(), world.appid, DAY, parse_date("20240405"), as_of)
    assert got == want.as_dict()
    metrics = world.api.get("/metrics").text
    assert "wxcube_visits_ingested_total 3" in metrics
    world.restart()  # acknowledged means durable
    got2 = world.post(DAILY, day_body("20240405"), world.token()).json()
    assert got2 == got


def test_bad_visit_row_names_row_and_field_and_applies_nothing(world: World) -> None:
    tok = world.token()
    before = world.api.get("/wxcube/v1/info", params={"access_token": tok}).json()["users"]
    r = world.post(
        "/wxcube/v1/visits",
        {"visits": [{"openid": "x1", "ts": 1712282400}, {"openid": "x2", "ts": "abc"}]},
        tok,
    )
    assert_error(r, 47001, "visits[1].ts: 'abc'")
    r = world.post("/wxcube/v1/visits", {"visits": [{"openid": 5, "ts": 1}]}, tok)
    assert_error(r, 47001, "visits[0].openid")
    after = world.api.get("/wxcube/v1/info", params={"access_token": tok}).json()["users"]
    assert after == before
    # a rejected batch leaves the server able to take the next one
    r = world.post("/wxcube/v1/visits", {"visits": [{"openid": "x1", "ts": 1712282400}]}, tok)
    assert r.json()["accepted"] == 1


# --- the error table ----------------------------------------------------------------------
def test_token_request_errors(world: World) -> None:
    def tok(**params: str) -> Any:
        return world.api.get("/cgi-bin/token", params=params)

    cc = "client_credential"
    assert_error(tok(grant_type=cc, secret=world.secret), 41002)
    assert_error(tok(grant_type=cc, appid=world.appid), 41004)
    assert_error(tok(grant_type="password", appid=world.appid, secret=world.secret), 40002)
    assert_error(tok(appid=world.appid, secret=world.secret), 40002)
    assert_error(tok(grant_type=cc, appid="wx0000000000000000", secret="x"), 40013)
    assert_error(tok(grant_type=cc, appid=world.appid, secret="wrong"), 40001)
    ok = tok(grant_type=cc, appid=world.appid, secret=world.secret).json()
    assert set(ok) == {"access_token", "expires_in"} and ok["expires_in"] == 7200

    def stable(body: Any) -> Any:
        return world.post("/cgi-bin/stable_token", body)

    base = {"grant_type": cc, "appid": world.appid, "secret": world.secret}
    assert_error(stable({**base, "secret": "wrong"}), 40125)
    assert_error(stable({k: v for k, v in base.items() if k != "appid"}), 41002)
    assert_error(stable({k: v for k, v in base.items() if k != "secret"}), 41004)
    assert_error(stable({**base, "grant_type": "x"}), 40002)
    assert_error(stable({**base, "appid": "wx0000000000000001"}), 40013)
    assert_error(stable({**base, "force_refresh": "yes"}), 47001, "force_refresh")
    assert_error(stable(b""), 44002)
    assert_error(stable(b"[1, 2]"), 47001, "not a JSON object")
    assert_error(world.api.get("/cgi-bin/stable_token"), 43002)


def test_datacube_request_errors(world: World) -> None:
    tok = world.token()
    good = day_body("20240301")
    assert_error(world.post(DAILY, good), 41001)
    assert_error(world.post(DAILY, good, "not-a-token"), 40001)
    assert_error(world.api.get(DAILY, params={"access_token": tok}), 43002)
    assert_error(world.post(DAILY, b"", tok), 44002)
    assert_error(world.post(DAILY, b"   ", tok), 44002)
    assert_error(world.post(DAILY, b"{not json", tok), 47001, "not valid JSON")
    assert_error(world.post(DAILY, b'"20240301"', tok), 47001, "not a JSON object")
    assert_error(world.post(DAILY, {"begin_date": "20240301"}, tok), 61500, "end_date")
    assert_error(world.post(DAILY, day_body("2024-03-01"), tok), 61500)
    assert_error(world.post(DAILY, day_body("20240230"), tok), 61500, "not a real date")
    assert_error(world.post(DAILY, {"begin_date": 20240301, "end_date": 20240301}, tok), 61500)
    assert_error(world.post(DAILY, {"begin_date": "20240302", "end_date": "20240301"}, tok), 61501)
    assert_error(world.post(DAILY, {"begin_date": "20240301", "end_date": "20240302"}, tok), 61501)
    assert_error(world.post(DAILY, day_body("20240411"), tok), 61501, "as_of")
    bad_week = {"begin_date": "20240319", "end_date": "20240325"}
    assert_error(world.post(WEEKLY, bad_week, tok), 61501, "Monday-Sunday")
    bad_month = {"begin_date": "20240301", "end_date": "20240330"}
    assert_error(world.post(MONTHLY, bad_month, tok), 61501, "natural month")
    assert_error(
        world.post(MONTHLY, {"begin_date": "20240401", "end_date": "20240430"}, tok), 61501
    )


def test_unknown_paths_get_json(world: World) -> None:
    for path in ("/", "/cgi-bin/unknown", "/datacube/getweanalysisappiddailyvisittrend", "/x.html"):
        r = world.api.get(path)
        assert_error(r, 40066, status=200)
        assert r.headers["content-type"].startswith("application/json")


def test_index_loading_is_61503_and_healthz_503(tmp_path: Path) -> None:
    w = World(tmp_path)
    tok = w.token()
    w.api.close()
    w.start(load_index=False)
    try:
        assert_error(w.api.get("/healthz"), 61503, status=503)
        assert_error(w.post(DAILY, day_body("20240301"), tok), 61503)
        assert_error(w.post("/wxcube/v1/visits", {"visits": []}, tok), 61503)
        assert_error(w.api.get("/wxcube/v1/info", params={"access_token": tok}), 61503)
        w.app.start_loading()
        assert w.app.wait_ready()
        assert w.api.get("/healthz").status_code == 200
        assert "ref_date" in w.post(DAILY, day_body("20240301"), tok).json()
    finally:
        w.api.close()


def test_quotas(tmp_path: Path) -> None:
    w = World(tmp_path, quota_minute=3, quota_daily=5)
    try:
        tok = w.token()
        for _ in range(3):
            assert "ref_date" in w.post(DAILY, day_body("20240301"), tok).json()
        assert_error(w.post(DAILY, day_body("20240301"), tok), 45011)
        # per API: the weekly one has its own count
        body = {"begin_date": "20240304", "end_date": "20240310"}
        assert "ref_date" in w.post(WEEKLY, body, tok).json()
        w.clock.advance(60)
        for _ in range(2):
            assert "ref_date" in w.post(DAILY, day_body("20240301"), tok).json()
        assert_error(w.post(DAILY, day_body("20240301"), tok), 45009)
        w.clock.advance(86400)
        assert "ref_date" in w.post(DAILY, day_body("20240301"), w.token()).json()
    finally:
        w.api.close()


def test_per_app_quota_override(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    appid, secret = make_app_with_data(db, [("a", 1_704_200_000)])
    s = Settings(db=str(db), as_of=AS_OF, access_log=False, quotas=f"{appid}=1/")
    api = InProcess(create_app(s, clock=Clock(NOW)))
    try:
        api.app.wait_ready()
        tok = api.token(appid, secret)
        body = orjson.dumps(day_body("20240102"))
        assert "ref_date" in api.post(DAILY, params={"access_token": tok}, content=body).json()
        assert_error(api.post(DAILY, params={"access_token": tok}, content=body), 45011)
    finally:
        api.close()


def test_size_limits(tmp_path: Path) -> None:
    w = World(tmp_path, max_body_bytes=2000, max_batch=3)
    try:
        tok = w.token()
        big = {"visits": [{"openid": f"u{i}", "ts": 1712282400} for i in range(100)]}
        assert_error(w.post("/wxcube/v1/visits", big, tok), 45002, "2000 bytes")
        four = {"visits": [{"openid": f"u{i}", "ts": 1712282400} for i in range(4)]}
        assert_error(w.post("/wxcube/v1/visits", four, tok), 45002, "at most 3")
        assert_error(w.post(DAILY, b" " * 3000, tok), 45002)
        three = {"visits": four["visits"][:3]}
        assert w.post("/wxcube/v1/visits", three, tok).json()["accepted"] == 3
    finally:
        w.api.close()


def test_system_error_is_logged_with_rid_never_sent(world: World) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = Keep()
    logging.getLogger("wxcube.server").addHandler(h)
    try:
        tok = world.token()
        world.app.store.conn.close()  # the database goes away underneath the server
        r = world.post("/wxcube/v1/visits", {"visits": [{"openid": "a", "ts": 1712282400}]}, tok)
    finally:
        logging.getLogger("wxcube.server").removeHandler(h)
    assert_error(r, -1)
    assert r.json()["errmsg"].startswith("system error rid: ")
    rid = r.json()["errmsg"].rsplit("rid: ", 1)[1]
    logged = [rec for rec in records if rid in rec.getMessage()]
    assert logged and any(rec.exc_info for rec in logged)


def test_errcode_table_is_covered() -> None:
    """Every errcode of SPEC §2 appears in an assertion of this module or test_tokens.py."""
    here = Path(__file__).read_text() + (Path(__file__).parent / "test_tokens.py").read_text()
    for code in ERRMSG:
        assert re.search(rf"assert_error\([^\n]*\b{code}\b", here) or (
            f"assert_error(r, {code})" in here
        ), code


# --- operations ---------------------------------------------------------------------------
def test_healthz_metrics_openapi(world: World) -> None:
    r = world.api.get("/healthz")
    assert r.status_code == 200 and r.json()["errcode"] == 0
    world.post(DAILY, day_body("20240301"), world.token())
    world.post(DAILY, b"", world.token())
    text = world.api.get("/metrics").text
    assert 'wxcube_requests_total{endpoint="getDailyRetain",errcode="0"} 1' in text
    assert 'wxcube_requests_total{endpoint="getDailyRetain",errcode="44002"} 1' in text
    assert 'wxcube_request_duration_seconds_bucket{endpoint="getDailyRetain",le="+Inf"} 2' in text
    assert "wxcube_index_ready 1" in text
    spec = world.api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in world.app._routes:
        assert path in spec["paths"], path
    assert "/dashboard" in spec["paths"]


def test_dashboard_static_files(tmp_path: Path) -> None:
    dash = tmp_path / "dash"
    (dash / "img").mkdir(parents=True)
    (dash / "index.html").write_text("<!doctype html><title>wxcube</title>")
    (dash / "app.js").write_text("console.log(1)")
    (dash / "style.css").write_text("body{}")
    (dash / "img" / "logo.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    w = World(tmp_path, dashboard_dir=str(dash))
    try:
        for path, ctype in (
            ("/dashboard", "text/html"),
            ("/dashboard/", "text/html"),
            ("/dashboard/app.js", "text/javascript"),
            ("/dashboard/style.css", "text/css"),
            ("/dashboard/img/logo.svg", "image/svg+xml"),
        ):
            r = w.api.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith(ctype), path
        assert "wxcube" in w.api.get("/dashboard").text
        for path in (
            "/dashboard/../secret.txt",
            "/dashboard/..%2Fsecret.txt",
            "/dashboard/img/../../secret.txt",
            "/dashboard/nope.js",
            "/dashboardx",
            "/dashboard/img",
        ):
            r = w.api.get(path)
            # 404 under /dashboard/; a path the client normalised out of it is an API 40066
            assert r.status_code == (404 if r.url.path.startswith("/dashboard/") else 200), path
            assert "outside" not in r.text
            assert r.json()["errcode"] == 40066
    finally:
        w.api.close()


def test_shipped_dashboard_is_served(world: World) -> None:
    from wxcube.server import DASHBOARD_DIR

    if not (DASHBOARD_DIR / "index.html").exists():
        pytest.skip("the dashboard is not built into this checkout")
    r = world.api.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")


# --- admin --------------------------------------------------------------------------------
def test_admin_endpoints_need_the_admin_key(tmp_path: Path) -> None:
    w = World(tmp_path, admin_key="k" * 32)
    try:
        auth = {"authorization": "Bearer " + "k" * 32}
        assert_error(w.api.get("/wxcube/v1/admin/apps"), 40001, "admin key")
        assert_error(
            w.api.get("/wxcube/v1/admin/apps", headers={"authorization": "Bearer " + w.secret}),
            40001,
        )
        assert_error(
            w.api.get("/wxcube/v1/admin/apps", params={"access_token": w.token()}, headers=auth),
            40001,
            "not an access_token",
        )
        apps = w.api.get("/wxcube/v1/admin/apps", headers=auth).json()["apps"]
        assert {a["appid"] for a in apps} == {w.appid, w.other}
        created = w.api.post(
            "/wxcube/v1/admin/apps", headers=auth, content=b'{"name": "new", "timezone": "UTC"}'
        ).json()
        assert created["errcode"] == 0 and created["timezone"] == "UTC"
        new_tok = w.api.token(created["appid"], created["secret"])
        info = w.api.get("/wxcube/v1/info", params={"access_token": new_tok}).json()
        assert info["users"] == 0 and info["first_day"] is None
        bad_tz = w.api.post("/wxcube/v1/admin/apps", headers=auth, content=b'{"timezone": "Mars"}')
        assert_error(bad_tz, 47001, "timezone")
        old_tok = w.token()
        rot = w.api.post(
            "/wxcube/v1/admin/apps/rotate_secret",
            headers=auth,
            content=orjson.dumps({"appid": w.appid}),
        ).json()
        assert rot["errcode"] == 0 and rot["secret"] != w.secret
        assert_error(w.post(DAILY, day_body("20240301"), old_tok), 40001)
        assert_error(
            w.api.get(
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": w.appid, "secret": w.secret},
            ),
            40001,
        )
        assert (
            "access_token"
            in w.api.get(
                "/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": w.appid,
                    "secret": rot["secret"],
                },
            ).json()
        )
        assert_error(
            w.api.post(
                "/wxcube/v1/admin/apps/rotate_secret",
                headers=auth,
                content=b'{"appid": "wx0000000000000000"}',
            ),
            40013,
        )
    finally:
        w.api.close()


def test_admin_api_is_off_without_a_key(world: World) -> None:
    assert_error(
        world.api.get("/wxcube/v1/admin/apps", headers={"authorization": "Bearer x"}),
        40001,
        "WXCUBE_ADMIN_KEY",
    )


def test_access_log_has_rid_and_no_secrets(tmp_path: Path) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    w = World(tmp_path)
    w.api.close()
    w.settings = w.settings.replace(access_log=True)
    w.start()
    h = Keep()
    logging.getLogger("wxcube.access").addHandler(h)
    try:
        tok = w.token()
        r = w.post(DAILY, b"", tok)
        w.app.access.flush()
    finally:
        logging.getLogger("wxcube.access").removeHandler(h)
        w.api.close()
    rid = r.headers["x-request-id"]
    lines = [orjson.loads(x) for rec in records for x in rec.splitlines()]
    assert any(
        x["rid"] == rid and x["errcode"] == 44002 and x["error"] == "empty post data" for x in lines
    )
    assert all(set(x) >= {"ts", "rid", "method", "path", "status", "errcode", "ms"} for x in lines)
    joined = "\n".join(records)
    assert tok not in joined and w.secret not in joined


def test_every_kind_has_a_route(world: World) -> None:
    for kind in KINDS.values():
        assert kind.path in world.app._routes


def test_a_body_that_never_arrives_times_out(tmp_path: Path) -> None:
    import asyncio
    import time

    w = World(tmp_path, request_timeout=0.3)
    try:
        tok = w.token()
        sent: list[dict[str, Any]] = []

        async def call() -> None:
            chunks = [{"type": "http.request", "body": b'{"vis', "more_body": True}]

            async def receive() -> dict[str, Any]:
                if chunks:
                    return chunks.pop()
                await asyncio.sleep(3600)  # the rest of the body never comes
                raise AssertionError("unreachable")

            async def send(msg: dict[str, Any]) -> None:
                sent.append(msg)

            scope = {
                "type": "http",
                "method": "POST",
                "path": "/wxcube/v1/visits",
                "query_string": f"access_token={tok}".encode(),
                "headers": [],
            }
            await w.app(scope, receive, send)

        t0 = time.monotonic()
        w.api.loop.run_until_complete(asyncio.wait_for(call(), 5))
        assert time.monotonic() - t0 < 2
        body = orjson.loads(sent[1]["body"])
        assert body["errcode"] == -1 and "not received within 0.3 s" in body["errmsg"]
        # the server goes on answering
        r = w.post("/wxcube/v1/visits", {"visits": [{"openid": "t", "ts": 1712282400}]}, tok)
        assert r.json()["accepted"] == 1
    finally:
        w.api.close()


def test_queries_during_an_ingest_never_see_half_a_batch(tmp_path: Path) -> None:
    """Each batch's users visit once, on one day: new == active on that day, before and
    after the batch, and so for every answer given while the writer thread applies it."""
    import asyncio
    import sys

    w = World(tmp_path)
    try:
        tok = w.token()
        day = "20240405"
        body = orjson.dumps(day_body(day))
        client = w.api.client
        torn: list[Any] = []
        # the template's users on that day are not all new: measure the offset once
        base = w.post(DAILY, body, tok).json()
        offset = base["visit_uv"][0]["value"] - base["visit_uv_new"][0]["value"]

        async def query_until(done: asyncio.Event) -> None:
            k = 0
            while not done.is_set():
                k += 1  # a different body each time: no memoized answer, computed every time
                varied = orjson.dumps({**day_body(day), "n": k})
                r = await client.post(DAILY, params={"access_token": tok}, content=varied)
                got = r.json()
                new, act = got["visit_uv_new"][0]["value"], got["visit_uv"][0]["value"]
                if act - new != offset:
                    torn.append((new, act))
                await asyncio.sleep(0)

        async def round_(i: int) -> None:
            done = asyncio.Event()
            readers = [asyncio.ensure_future(query_until(done)) for _ in range(4)]
            # 200 days ending on the queried one: it is the last day each half of the batch
            # touches, so a reader between the halves would see its active users but not new
            visits = [
                {"openid": f"race{i}-{u}", "ts": 1712246400 + 100 - (u % 200) * 86400}
                for u in range(4000)
            ]
            r = await client.post(
                "/wxcube/v1/visits", params={"access_token": tok}, json={"visits": visits}
            )
            assert r.json()["accepted"] == 4000
            done.set()
            await asyncio.gather(*readers)

        old = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        try:
            for i in range(8):
                w.api.loop.run_until_complete(round_(i))
        finally:
            sys.setswitchinterval(old)
        assert not torn, torn[:3]
    finally:
        w.api.close()
