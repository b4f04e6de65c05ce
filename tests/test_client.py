"""wxcube.client against the real server: in process (through an httpx transport) and on a real
port (a `wxcube serve` subprocess). Numbers are compared with `wxcube retain --format json`.

Helpers used by tests/test_cloud.py too: ``Demo``, ``make_demo``, ``SyncASGIBridge``,
``InProcess``, ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from wxcube.cli import main as cli
from wxcube.cli.serve import build_demo
from wxcube.client import (
    AsyncWeChatClient,
    RetainItem,
    RetainResult,
    WeChatAPIError,
    WeChatClient,
    WeChatQuotaError,
    month_of,
    week_of,
)
from wxcube.server import create_app
from wxcube.settings import Settings
from wxcube.store import Store

AS_OF = "20240630"
ADMIN_KEY = "test-admin-key"
RID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")
# (CLI kind, begin, end) of the periods every style is checked on
PERIODS = [
    ("daily", "20240601", "20240601"),
    ("daily", "20240627", "20240627"),
    ("weekly", "20240527", "20240602"),
    ("weekly", "20240610", "20240616"),
    ("monthly", "20240501", "20240531"),
    ("monthly", "20240601", "20240630"),
]


def ymd(s: str) -> dt.date:
    return dt.date(int(s[:4]), int(s[4:6]), int(s[6:]))


# --- the demo app, its CLI answers, and servers on copies of it ---------------------------
@dataclass
class Demo:
    db: Path  # the pristine demo database; copy it before serving
    appid: str
    secret: str
    expected: dict[tuple[str, str], str]  # (CLI kind, begin) -> the CLI's JSON line
    quota_minute_app: tuple[str, str]  # an app limited to 3 calls a minute per API
    quota_daily_app: tuple[str, str]  # an app limited to 2 calls a day per API

    def copy(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / self.db.name
        shutil.copy(self.db, target)
        return target

    def quotas(self) -> str:
        return f"{self.quota_minute_app[0]}=3/,{self.quota_daily_app[0]}=/2"


def make_demo(root: Path) -> Demo:
    db = root / "demo.duckdb"
    appid, secret, _tz = build_demo(str(db), AS_OF)
    with Store(db) as store:
        qm, qm_secret = store.create_app("quota-minute")
        qd, qd_secret = store.create_app("quota-daily")
    runner = CliRunner()
    expected = {}
    for kind, begin, _end in PERIODS:
        args = ["--db", str(db), "--as-of", AS_OF, "retain", kind, begin, "--app", appid]
        res = runner.invoke(cli, [*args, "--format", "json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        expected[(kind, begin)] = res.stdout.strip()
    return Demo(db, appid, secret, expected, (qm.appid, qm_secret), (qd.appid, qd_secret))


class ManualClock:
    """The server's clock (seconds since the epoch): frozen at creation, moved only by the test
    (so quota minutes and token lifetimes never roll over by themselves)."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SyncASGIBridge(httpx.BaseTransport):
    """Lets a blocking ``httpx.Client`` talk to an ASGI app in process: every request is run by
    ``httpx.ASGITransport`` on an event loop in a background thread."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def run() -> tuple[int, httpx.Headers, bytes]:
            response = await self._asgi.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)
        return httpx.Response(status, headers=headers, content=content)

    def close(self) -> None:
        """Closing an httpx.Client that uses the bridge leaves it running (it is shared)."""

    def shutdown(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


@dataclass
class Calls:
    """Answered requests seen by an httpx response hook: paths in order, safe across threads.
    (A request the server dropped without answering is retried by the client, not counted.)"""

    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, response: httpx.Response) -> None:
        with self.lock:
            self.paths.append(response.request.url.path)

    async def ahook(self, response: httpx.Response) -> None:
        self.hook(response)

    def count(self, prefix: str) -> int:
        return sum(p.startswith(prefix) for p in self.paths)

    @property
    def tokens(self) -> int:
        return self.count("/cgi-bin/")

    @property
    def datacube(self) -> int:
        return self.count("/datacube/")


@dataclass
class InProcess:
    """The server's ASGI app in this process, with a manual clock."""

    app: Any
    clock: ManualClock
    bridge: SyncASGIBridge
    url: str = "http://wxcube.test"

    def http(self, calls: Calls | None = None) -> httpx.Client:
        hooks = {"response": [calls.hook]} if calls else {}
        return httpx.Client(transport=self.bridge, event_hooks=hooks)

    def ahttp(self, calls: Calls | None = None) -> httpx.AsyncClient:
        hooks = {"response": [calls.ahook]} if calls else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), event_hooks=hooks)

    def client(self, appid: str, secret: str, calls: Calls | None = None, **kw: Any) -> Any:
        return WeChatClient(appid, secret, self.url, http_client=self.http(calls), **kw)

    def admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.http() as h:
            r = h.post(
                f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
        out: dict[str, Any] = r.json()
        assert out.get("errcode") == 0, out
        return out

    def new_app(self) -> tuple[str, str]:
        out = self.admin("/wxcube/v1/admin/apps", {"name": "t"})
        return out["appid"], out["secret"]


@contextmanager
def in_process(db: Path, quotas: str | None = None) -> Iterator[InProcess]:
    clock = ManualClock()
    settings = Settings(
        db=str(db), as_of=AS_OF, admin_key=ADMIN_KEY, quotas=quotas, access_log=False
    )
    app = create_app(settings, clock=clock)
    bridge = SyncASGIBridge(app)
    try:
        assert app.wait_ready(30)
        yield InProcess(app, clock, bridge)
    finally:
        bridge.shutdown()
        app.close()


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def inproc(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(demo.copy(tmp_path_factory.mktemp("inproc")), demo.quotas()) as ip:
        yield ip


@pytest.fixture(scope="module")
def server(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from serverproc import running_server

    db = demo.copy(tmp_path_factory.mktemp("server"))
    env = {"WXCUBE_AS_OF": AS_OF, "WXCUBE_QUOTAS": demo.quotas(), "WXCUBE_ACCESS_LOG": "false"}
    with running_server(db, env=env, admin_key=ADMIN_KEY) as url:
        yield url


# --- helpers for the tests ----------------------------------------------------------------
METHOD = {
    "daily": "get_daily_retain",
    "weekly": "get_weekly_retain",
    "monthly": "get_monthly_retain",
}


def variants(kind: str, begin: str, end: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every way to ask for one period: strings, date objects, datetimes, the *_for helper."""
    b, e = ymd(begin), ymd(end)
    mid = b + (e - b) // 2
    name = METHOD[kind]
    return [
        (name, (begin, end)),
        (name, (b, e)),
        (name, (dt.datetime.combine(b, dt.time(23, 59)), dt.datetime.combine(e, dt.time(0, 1)))),
        (f"{name}_for", (mid,)),
        (f"{name}_for", (mid.strftime("%Y%m%d"),)),
    ]


def check_result(r: RetainResult, demo: Demo, kind: str, begin: str) -> None:
    expected = demo.expected[(kind, begin)]
    assert isinstance(r, RetainResult)
    assert r.to_json() == expected
    assert r.as_dict() == json.loads(expected)
    assert all(isinstance(i, RetainItem) for i in (*r.visit_uv_new, *r.visit_uv))


class Faults(httpx.BaseTransport):
    """Network-level fault injection in front of a real transport: the next ``n`` datacube
    requests get ``reply()`` (what WeChat or a proxy would answer) instead of the server."""

    def __init__(self, inner: httpx.BaseTransport, reply: Callable[[], httpx.Response], n: int):
        self.inner, self.reply, self.n = inner, reply, n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/datacube/") and self.n > 0:
            self.n -= 1
            return self.reply()
        return self.inner.handle_request(request)


def wechat_error(errcode: int) -> Callable[[], httpx.Response]:
    from wxcube.errors import BY_CODE, new_rid

    return lambda: httpx.Response(200, json=BY_CODE[errcode]().body(new_rid()))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    """The client's monotonic clock, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- import weight ------------------------------------------------------------------------
def test_sdk_import_leaves_out_duckdb_and_the_server() -> None:
    code = (
        "import sys, wxcube.client, wxcube.cloud; "
        "heavy = {'duckdb', 'pyroaring', 'pyarrow', 'wxcube.store', 'wxcube.server'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- every method, both styles, in process and on a real port -----------------------------
def test_demo_has_real_numbers(demo: Demo) -> None:
    for (kind, _begin), line in demo.expected.items():
        body = json.loads(line)
        assert body["visit_uv"][0]["value"] > 0, (kind, line)
    monthly = json.loads(demo.expected[("monthly", "20240501")])
    assert [i["key"] for i in monthly["visit_uv"]] == [0, 1]  # June ended on as_of


def test_sync_client_in_process_matches_cli(inproc: InProcess, demo: Demo) -> None:
    calls = Calls()
    with inproc.client(demo.appid, demo.secret, calls) as client:
        for kind, begin, end in PERIODS:
            for method, args in variants(kind, begin, end):
                check_result(getattr(client.analysis, method)(*args), demo, kind, begin)
        assert (
            client.analysis.get_retain("month", "20240501", "20240531").to_json()
            == (demo.expected[("monthly", "20240501")])
        )
    assert calls.tokens == 1  # one token for all of them


def test_async_client_in_process_matches_cli(inproc: InProcess, demo: Demo) -> None:
    async def run() -> None:
        calls = Calls()
        async with inproc.ahttp(calls) as http:
            client = AsyncWeChatClient(demo.appid, demo.secret, inproc.url, http_client=http)
            for kind, begin, end in PERIODS:
                for method, args in variants(kind, begin, end):
                    r = await getattr(client.analysis, method)(*args)
                    check_result(r, demo, kind, begin)
            r = await client.analysis.get_retain("getWeeklyRetain", "20240610", "20240616")
            check_result(r, demo, "weekly", "20240610")
            assert calls.tokens == 1 and client.token_fetches == 1

    asyncio.run(run())


def test_sync_client_on_real_port_matches_cli(server: str, demo: Demo) -> None:
    for stable in (False, True):
        calls = Calls()
        http = httpx.Client(event_hooks={"response": [calls.hook]})
        with (
            http,
            WeChatClient(
                demo.appid, demo.secret, server, http_client=http, stable_token=stable
            ) as client,
        ):
            for kind, begin, end in PERIODS:
                for method, args in variants(kind, begin, end):
                    check_result(getattr(client.analysis, method)(*args), demo, kind, begin)
        token_path = "/cgi-bin/stable_token" if stable else "/cgi-bin/token"
        assert calls.count(token_path) == 1 and calls.tokens == 1


def test_async_client_on_real_port_matches_cli(server: str, demo: Demo) -> None:
    async def run() -> None:
        async with AsyncWeChatClient(demo.appid, demo.secret, base_url=server) as client:
            results = await asyncio.gather(
                *(
                    getattr(client.analysis, method)(*args)
                    for kind, begin, end in PERIODS
                    for method, args in variants(kind, begin, end)
                )
            )
            expected = [
                (kind, begin) for kind, begin, end in PERIODS for _ in variants(kind, begin, end)
            ]
            for r, (kind, begin) in zip(results, expected, strict=True):
                check_result(r, demo, kind, begin)
            assert client.token_fetches == 1  # gathered calls waited for one fetch

    asyncio.run(run())


# --- tokens -------------------------------------------------------------------------------
def test_token_is_cached_until_5_minutes_before_expiry(inproc: InProcess, demo: Demo) -> None:
    calls, clock = Calls(), Clock()
    with inproc.client(demo.appid, demo.secret, calls, clock=clock) as client:
        client.analysis.get_daily_retain("20240601", "20240601")
        clock.now += 7200 - 300 - 1  # the server's token lives 7200 s
        client.analysis.get_daily_retain("20240601", "20240601")
        assert calls.tokens == 1
        clock.now += 2
        client.analysis.get_daily_retain("20240601", "20240601")
        assert calls.tokens == 2 and client.token_fetches == 2
        assert calls.datacube == 3  # renewed ahead of time: no call was refused


def test_superseded_token_is_refreshed_once(inproc: InProcess, demo: Demo) -> None:
    calls, errors = Calls(), []

    def seen(response: httpx.Response) -> None:
        response.read()
        errors.append(response.json().get("errcode"))

    http = httpx.Client(transport=inproc.bridge, event_hooks={"response": [calls.hook, seen]})
    with http, WeChatClient(demo.appid, demo.secret, inproc.url, http_client=http) as client:
        client.analysis.get_monthly_retain("20240501", "20240531")
        with inproc.client(demo.appid, demo.secret) as other:  # supersedes client's token
            other.get_access_token()
        inproc.clock.advance(301)  # past the 5-minute grace
        r = client.analysis.get_monthly_retain("20240501", "20240531")
    check_result(r, demo, "monthly", "20240501")
    tok, mon = "/cgi-bin/token", "/datacube/getweanalysisappidmonthlyretaininfo"
    assert calls.paths == [tok, mon, mon, tok, mon]
    assert errors == [None, None, 40001, None, None]


def test_expired_token_is_refreshed_once(inproc: InProcess, demo: Demo) -> None:
    calls = Calls()
    with inproc.client(demo.appid, demo.secret, calls) as client:
        client.analysis.get_weekly_retain("20240610", "20240616")
        inproc.clock.advance(7201)  # server-side expiry; the client's clock has not moved
        token = client.get_access_token()
        with inproc.http() as h:
            raw = h.post(
                f"{inproc.url}/datacube/getweanalysisappidweeklyretaininfo",
                params={"access_token": token},
                json={"begin_date": "20240610", "end_date": "20240616"},
            ).json()
        assert raw["errcode"] == 42001
        check_result(
            client.analysis.get_weekly_retain("20240610", "20240616"), demo, "weekly", "20240610"
        )
    assert calls.tokens == 2 and calls.datacube == 3


def test_refresh_is_tried_once_and_never_loops(inproc: InProcess) -> None:
    appid, secret = inproc.new_app()
    calls = Calls()
    # the server keeps refusing the token (WeChat does this when another party holds it)
    faults = Faults(inproc.bridge, wechat_error(40001), n=10)
    http = httpx.Client(transport=faults, event_hooks={"response": [calls.hook]})
    with (
        http,
        WeChatClient(appid, secret, inproc.url, http_client=http) as client,
        pytest.raises(WeChatAPIError) as err,
    ):
        client.analysis.get_daily_retain("20240601", "20240601")
    assert err.value.errcode == 40001 and RID.match(err.value.rid or "")
    assert calls.tokens == 2 and calls.datacube == 2  # one refresh, one retry

    # a rotated secret revokes the token and the refresh itself fails: raised, not looped
    calls = Calls()
    with inproc.client(appid, secret, calls) as client:
        client.analysis.get_daily_retain("20240601", "20240601")
        inproc.admin("/wxcube/v1/admin/apps/rotate_secret", {"appid": appid})
        with pytest.raises(WeChatAPIError) as err:
            client.analysis.get_daily_retain("20240601", "20240601")
    assert err.value.errcode == 40001
    assert calls.paths == [
        "/cgi-bin/token",
        "/datacube/getweanalysisappiddailyretaininfo",
        "/datacube/getweanalysisappiddailyretaininfo",
        "/cgi-bin/token",
    ]


def test_wrong_credentials(inproc: InProcess, demo: Demo) -> None:
    calls = Calls()
    with (
        inproc.client(demo.appid, "not-the-secret", calls) as client,
        pytest.raises(WeChatAPIError) as err,
    ):
        client.analysis.get_daily_retain("20240601", "20240601")
    assert err.value.errcode == 40001 and calls.paths == ["/cgi-bin/token"]
    with (
        inproc.client(demo.appid, "not-the-secret", stable_token=True) as client,
        pytest.raises(WeChatAPIError) as err,
    ):
        client.get_access_token()
    assert err.value.errcode == 40125
    with inproc.client("wx0000000000000000", "x") as client, pytest.raises(WeChatAPIError) as err:
        client.get_access_token()
    assert err.value.errcode == 40013


def test_threads_share_one_token_fetch(server: str) -> None:
    with httpx.Client() as h:
        created = h.post(
            f"{server}/wxcube/v1/admin/apps",
            json={"name": "threads"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ).json()
    appid, secret = created["appid"], created["secret"]
    # answered requests as (path, errcode); a request the server dropped (keep-alive race) is
    # retried by the client and not counted here
    answered: list[tuple[str, int | None]] = []

    def seen(response: httpx.Response) -> None:
        response.read()
        answered.append((response.request.url.path, response.json().get("errcode")))

    def count(prefix: str, errcode: int | None) -> int:
        return sum(p.startswith(prefix) and e == errcode for p, e in answered)

    http = httpx.Client(event_hooks={"response": [seen]})
    n = 12
    client = WeChatClient(appid, secret, server, http_client=http, stable_token=True)

    def burst() -> list[RetainResult]:
        barrier = threading.Barrier(n)
        out: list[RetainResult] = []

        def work() -> None:
            barrier.wait()
            out.append(client.analysis.get_daily_retain("20240601", "20240601"))

        threads = [threading.Thread(target=work) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return out

    with http, client:
        assert len(burst()) == n
        assert count("/cgi-bin/", None) == 1 and count("/datacube/", None) == n
        # someone else force-refreshes the stable token: every thread is refused at once
        with httpx.Client() as h:
            forced = h.post(
                f"{server}/cgi-bin/stable_token",
                json={
                    "grant_type": "client_credential",
                    "appid": appid,
                    "secret": secret,
                    "force_refresh": True,
                },
            ).json()
        assert "access_token" in forced
        assert len(burst()) == n
        assert count("/cgi-bin/", None) == 2  # one refresh for all of them
        assert count("/datacube/", None) == 2 * n
        assert 1 <= count("/datacube/", 40001) <= n  # each thread refused at most once
        assert len(answered) == 2 + 2 * n + count("/datacube/", 40001)  # nothing else
        assert client.get_access_token() == forced["access_token"]


def test_async_tasks_share_one_token_fetch(inproc: InProcess, demo: Demo) -> None:
    async def run() -> None:
        calls = Calls()
        async with inproc.ahttp(calls) as http:
            client = AsyncWeChatClient(demo.appid, demo.secret, inproc.url, http_client=http)
            day = client.analysis.get_daily_retain_for
            await asyncio.gather(*(day("20240601") for _ in range(20)))
            assert calls.tokens == 1
            with inproc.client(demo.appid, demo.secret) as other:
                other.get_access_token()  # supersedes
            inproc.clock.advance(301)
            results = await asyncio.gather(*(day("20240601") for _ in range(20)))
            assert calls.tokens == 2
            for r in results:
                check_result(r, demo, "daily", "20240601")

    asyncio.run(run())


# --- retries and errors -------------------------------------------------------------------
def test_system_error_is_retried_with_bounded_backoff(inproc: InProcess, demo: Demo) -> None:
    sleeps: list[float] = []
    faults = Faults(inproc.bridge, wechat_error(-1), n=2)
    with WeChatClient(
        demo.appid,
        demo.secret,
        inproc.url,
        http_client=httpx.Client(transport=faults),
        sleep=sleeps.append,
        backoff=0.5,
    ) as client:
        r = client.analysis.get_monthly_retain("20240501", "20240531")
        check_result(r, demo, "monthly", "20240501")
        assert len(sleeps) == 2
        assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0

        sleeps.clear()
        faults.n = 100  # WeChat keeps failing: give up after max_retries
        with pytest.raises(WeChatAPIError) as err:
            client.analysis.get_monthly_retain("20240501", "20240531")
        assert faults.n == 100 - 4  # 1 try + 3 retries
        assert len(sleeps) == 3 and max(sleeps) <= 2.0
    assert err.value.errcode == -1 and err.value.message == "system error"
    assert RID.match(err.value.rid or "")


def test_backoff_is_capped(inproc: InProcess, demo: Demo) -> None:
    sleeps: list[float] = []
    faults = Faults(inproc.bridge, wechat_error(-1), n=100)
    http = httpx.Client(transport=faults)
    with (
        WeChatClient(
            demo.appid,
            demo.secret,
            inproc.url,
            http_client=http,
            sleep=sleeps.append,
            max_retries=8,
            backoff=1.0,
            max_backoff=3.0,
        ) as client,
        pytest.raises(WeChatAPIError),
    ):
        client.analysis.get_daily_retain("20240601", "20240601")
    assert len(sleeps) == 8 and max(sleeps) <= 3.0 and min(sleeps[3:]) >= 1.5


def test_http_5xx_is_retried_and_4xx_is_not(inproc: InProcess, demo: Demo) -> None:
    sleeps: list[float] = []
    bad_gateway = Faults(inproc.bridge, lambda: httpx.Response(502, text="<html>502</html>"), 1)
    with WeChatClient(
        demo.appid,
        demo.secret,
        inproc.url,
        http_client=httpx.Client(transport=bad_gateway),
        sleep=sleeps.append,
    ) as client:
        check_result(client.analysis.get_daily_retain_for("20240601"), demo, "daily", "20240601")
    assert len(sleeps) == 1
    not_found = Faults(inproc.bridge, lambda: httpx.Response(404, text="no such page"), 5)
    with (
        WeChatClient(
            demo.appid,
            demo.secret,
            inproc.url,
            http_client=httpx.Client(transport=not_found),
            sleep=sleeps.append,
        ) as client,
        pytest.raises(WeChatAPIError) as err,
    ):
        client.analysis.get_daily_retain_for("20240601")
    assert err.value.errcode == -1 and "HTTP 404" in err.value.errmsg and not_found.n == 4
    assert len(sleeps) == 1  # not retried


def test_network_errors_are_retried_then_raised() -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{closed_port()}"
    with (
        WeChatClient("wxapp", "secret", url, max_retries=2, sleep=sleeps.append) as client,
        pytest.raises(WeChatAPIError) as err,
    ):
        client.analysis.get_daily_retain("20240601", "20240601")
    assert err.value.errcode == -1 and err.value.errmsg.startswith("network error: ConnectError")
    assert isinstance(err.value.__cause__, httpx.ConnectError) and len(sleeps) == 2

    async def run() -> None:
        asleeps: list[float] = []

        async def sleep(s: float) -> None:
            asleeps.append(s)

        async with AsyncWeChatClient("wxapp", "secret", url, max_retries=1, sleep=sleep) as c:
            with pytest.raises(WeChatAPIError) as aerr:
                await c.analysis.get_weekly_retain_for("20240605")
        assert aerr.value.errcode == -1 and len(asleeps) == 1

    asyncio.run(run())


def test_quota_errors(inproc: InProcess, demo: Demo) -> None:
    calls = Calls()
    with inproc.client(*demo.quota_minute_app, calls) as client:
        for _ in range(3):
            client.analysis.get_daily_retain("20240601", "20240601")
        with pytest.raises(WeChatQuotaError) as minute:
            client.analysis.get_daily_retain("20240601", "20240601")
        # the quota is per API: the weekly API still answers
        client.analysis.get_weekly_retain("20240610", "20240616")
    assert minute.value.errcode == 45011 and calls.datacube == 5  # never retried
    assert isinstance(minute.value, WeChatAPIError) and RID.match(minute.value.rid or "")
    assert minute.value.message.startswith(
        "api minute-quota reach limit must slower retry next minute"
    )
    with inproc.client(*demo.quota_daily_app) as client:
        for _ in range(2):
            client.analysis.get_monthly_retain("20240501", "20240531")
        with pytest.raises(WeChatQuotaError) as daily:
            client.analysis.get_monthly_retain("20240501", "20240531")
    assert daily.value.errcode == 45009


def test_quota_errors_on_real_port(server: str, demo: Demo) -> None:
    with WeChatClient(*demo.quota_daily_app, server) as client:
        for _ in range(2):
            client.analysis.get_daily_retain("20240601", "20240601")
        with pytest.raises(WeChatQuotaError) as daily:
            client.analysis.get_daily_retain("20240601", "20240601")
        assert daily.value.errcode == 45009
    with WeChatClient(*demo.quota_minute_app, server) as client:
        codes = []
        for _ in range(7):  # 3 a minute: a 45011 even if a minute boundary passes meanwhile
            try:
                client.analysis.get_weekly_retain("20240610", "20240616")
            except WeChatQuotaError as e:
                codes.append(e.errcode)
        assert codes and set(codes) == {45011}


def test_error_shapes(inproc: InProcess, demo: Demo) -> None:
    with inproc.client(demo.appid, demo.secret) as client, pytest.raises(WeChatAPIError) as err:
        client.analysis.get_weekly_retain("20240604", "20240610")  # a Tuesday
        e = err.value
        assert type(e) is WeChatAPIError and e.errcode == 61501
        assert RID.match(e.rid or "") and e.errmsg.endswith(f" rid: {e.rid}")
        assert e.message.startswith("date range error") and "rid:" not in e.message
        assert str(e) == f"errcode 61501: {e.errmsg}"
        assert repr(e) == f"WeChatAPIError(61501, {e.errmsg!r}, {e.rid!r})"

        with pytest.raises(WeChatAPIError) as err:
            client.analysis.get_daily_retain("2024-06-01", "2024-06-01")
        assert err.value.errcode == 61500
        with pytest.raises(WeChatAPIError) as err:
            client.analysis.get_monthly_retain_for(dt.date(2024, 7, 3))  # not over by as_of
        assert err.value.errcode == 61501
        with pytest.raises(TypeError):
            client.analysis.get_daily_retain(20240601, 20240601)  # type: ignore[arg-type]
        # other token-authenticated endpoints through the same client
        info = client.get("/wxcube/v1/info")
        assert info["appid"] == demo.appid and info["as_of"] == AS_OF


def test_error_from_body() -> None:
    e = WeChatAPIError.from_body({"errcode": 40014, "errmsg": "invalid access_token"})
    assert e.rid is None and e.message == "invalid access_token"
    q = WeChatAPIError.from_body(
        {
            "errcode": 45009,
            "errmsg": "reach max api daily quota limit rid: 64b8f0d2-1a2b3c4d-5e6f7a8b",
        }
    )
    assert isinstance(q, WeChatQuotaError) and q.rid == "64b8f0d2-1a2b3c4d-5e6f7a8b"


# --- results and dates --------------------------------------------------------------------
def test_result_is_frozen_and_round_trips() -> None:
    body = {
        "ref_date": "20170306-20170312",
        "visit_uv_new": [{"key": 0, "value": 0}, {"key": 1, "value": 16853}],
        "visit_uv": [{"key": 0, "value": 0}, {"key": 1, "value": 99310}],
    }
    r = RetainResult.from_dict(body)
    assert r.visit_uv_new == (RetainItem(0, 0), RetainItem(1, 16853))
    assert r.as_dict() == body and json.loads(r.to_json()) == body
    assert list(json.loads(r.to_json())) == ["ref_date", "visit_uv_new", "visit_uv"]
    assert r.new == {0: 0, 1: 16853} and r.active[1] == 99310
    assert r == RetainResult.from_dict(body) and hash(r) == hash(RetainResult.from_dict(body))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.ref_date = "x"  # type: ignore[misc]
    with pytest.raises(WeChatAPIError):
        RetainResult.from_dict({"visit_uv": []})


def test_week_of_and_month_of() -> None:
    assert week_of(dt.date(2017, 3, 8)) == (dt.date(2017, 3, 6), dt.date(2017, 3, 12))
    assert week_of("20170312") == (dt.date(2017, 3, 6), dt.date(2017, 3, 12))
    assert week_of(dt.date(2017, 3, 13))[0] == dt.date(2017, 3, 13)
    assert month_of("20240215") == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert month_of(dt.datetime(2023, 12, 31, 23, 59)) == (
        dt.date(2023, 12, 1),
        dt.date(2023, 12, 31),
    )
    with pytest.raises(TypeError):
        week_of("2017-03-08")
