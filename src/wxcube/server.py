"""The WeChat-compatible HTTP server: a bare ASGI callable (SPEC §2, §3).

``create_app(settings, clock=...)`` opens the store, loads apps and tokens, starts loading the
index in a background thread (the port opens at once; datacube calls answer 61503 and
``/healthz`` 503 until it is ready) and returns the ASGI app. One process owns the DuckDB
file; every write (token issue, ingest, app admin) runs on one writer thread through
``Store.write`` / ``ingest_records(..., index=)``, off the event loop. Reads of retention come
from the in-memory index (``bitmap_retain``) on the event loop: no framework, no thread hop.

Every API error is HTTP 200 with ``APIError.body(rid)``; nothing else builds error bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import mimetypes
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson

from . import openapi
from .errors import (
    AccessTokenMissing,
    APIError,
    AppidMissing,
    AppsecretMissing,
    ContentTooLarge,
    DataFormatError,
    DateRangeError,
    EmptyPostData,
    IndexLoading,
    InvalidAppid,
    InvalidAppsecret,
    InvalidCredential,
    InvalidGrantType,
    InvalidUrl,
    RequirePost,
    StoreError,
    SystemError_,
    new_rid,
)
from .index import Index
from .metrics import Metrics
from .periods import DAY, KINDS, MONTH, WEEK, Kind, fmt, parse_date, parse_period
from .quotas import Quotas, parse_overrides
from .retention import bitmap_retain
from .settings import Settings, as_of_day
from .store import App, ApplyResult, Store
from .tokens import TokenBook

T = TypeVar("T")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json; charset=utf-8"
DASHBOARD_DIR = Path(__file__).parent / "dashboard"
MAX_KEYS = 64
MAX_KEY = 3660
MAX_PERIODS = 3700
MAX_ANSWERS = 65536  # memoized datacube answers (cleared when full)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".woff2": "font/woff2",
}

log = logging.getLogger("wxcube.server")
access_log = logging.getLogger("wxcube.access")


class AccessLog:
    """Structured access-log lines, written in batches (one ``logging`` record per flush, at
    most 0.1 s late): per-request logging would cost more than answering the request."""

    DELAY = 0.1
    BATCH = 512

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.scheduled = False

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.BATCH:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(self.DELAY, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.lines:
            lines, self.lines = self.lines, []
            access_log.info("\n".join(lines))


class ClientGone(Exception):
    """The client disconnected before the body was read."""


@dataclass
class Request:
    scope: Scope
    receive: Receive
    rid: str
    appid: str | None = None
    _query: dict[str, str] | None = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            qs: bytes = self.scope.get("query_string", b"")
            if not qs:
                self._query = {}
            elif b"%" in qs or b"+" in qs:
                self._query = dict(parse_qsl(qs.decode("latin-1")))
            else:  # the common case, without percent-encoding: split it directly
                out: dict[str, str] = {}
                for part in qs.decode("latin-1").split("&"):
                    k, sep, v = part.partition("=")
                    if k and sep and v and k not in out:
                        out[k] = v
                self._query = out
        return self._query

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.scope.get("headers", ()):
            if k == name:
                return bytes(v)
        return None


@dataclass
class Response:
    body: bytes
    status: int = 200
    content_type: bytes = JSON
    errcode: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    error: str | None = None  # errmsg without the rid, for the access log


def ok(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload))


def ext_ok(**fields: Any) -> Response:
    """Success of a wxcube extension endpoint: ``errcode: 0``."""
    return Response(orjson.dumps({"errcode": 0, "errmsg": "ok", **fields}))


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    name: str
    handler: Handler
    post_only: bool = False


class WxcubeApp:
    """The ASGI application. Build it with :func:`create_app`."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] | None = None,
        *,
        load_index: bool = True,
    ) -> None:
        self.settings = settings
        self.clock: Callable[[], float] = clock or time.time
        self.started = time.time()
        _setup_logging()
        self.store = Store(settings.db)
        self.index = Index()
        self.metrics = Metrics()
        self.access = AccessLog()
        self.quotas = Quotas(
            settings.quota_minute,
            settings.quota_daily,
            self.clock,
            parse_overrides(settings.quotas),
        )
        self.apps: dict[str, App] = {a.appid: a for a in self.store.apps()}
        self.tokens = TokenBook(self.store, settings.token_ttl, self.clock)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="wxcube-writer")
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="wxcube-reader")
        self.load_error: BaseException | None = None
        self._secret_ok: dict[tuple[str, str], bool] = {}
        self._as_of_cache: dict[tuple[str, int], int] = {}
        self._generation: dict[str, int] = {}
        self._answers: dict[tuple[str, str, bytes, int], tuple[int, bytes]] = {}
        self._reading: dict[asyncio.Task[Any], float] = {}  # requests reading a body: deadline
        self._timed_out: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        # lifespan.shutdown closes the store; test clients that cycle lifespans may turn it off
        self.close_on_shutdown = True
        self.dashboard_dir = Path(settings.dashboard_dir or DASHBOARD_DIR).resolve()
        self._loader = threading.Thread(target=self._load_index, name="wxcube-index", daemon=True)
        if load_index:
            self.start_loading()
        r = self._routes = {
            "/cgi-bin/token": Route("token", self.h_token),
            "/cgi-bin/stable_token": Route("stable_token", self.h_stable_token, post_only=True),
            "/wxcube/v1/visits": Route("visits", self.h_visits, post_only=True),
            "/wxcube/v1/retain": Route("retain", self.h_retain, post_only=True),
            "/wxcube/v1/info": Route("info", self.h_info),
            "/wxcube/v1/admin/apps": Route("admin_apps", self.h_admin_apps),
            "/wxcube/v1/admin/apps/rotate_secret": Route(
                "admin_rotate_secret", self.h_admin_rotate, post_only=True
            ),
            "/healthz": Route("healthz", self.h_healthz),
            "/metrics": Route("metrics", self.h_metrics),
            "/openapi.json": Route("openapi", self.h_openapi),
        }
        for kind in (DAY, WEEK, MONTH):
            r[kind.path] = Route(kind.api, self._datacube(kind), post_only=True)

    # --- lifecycle -----------------------------------------------------------------------
    def _load_index(self) -> None:
        t0 = time.perf_counter()
        try:
            self.index.load_all(self.store)
        except BaseException as e:  # logged; /healthz stays 503
            if not self._closed:
                self.load_error = e
                log.exception("index load failed")
            return
        log.info("index ready: %d app(s) in %.2f s", len(self.index.apps), time.perf_counter() - t0)
        # warm the users mirror of every app on the writer thread, so the first HTTP batch
        # does not pay for it (~0.4 s on 2M users)
        for appid in list(self.index.apps):
            with contextlib.suppress(RuntimeError):  # the writer is shut down
                self.writer.submit(self._warm_mirror, appid)

    def _warm_mirror(self, appid: str) -> None:
        if not self._closed:
            try:
                self.store.mirror_users(appid)
            except Exception:  # an optimisation only: the write path builds it when needed
                log.exception("users mirror for %s", appid)

    def start_loading(self) -> None:
        """Load the index in the background (``create_app`` does, unless told not to)."""
        if not self._loader.is_alive() and not self.index.ready:
            self._loader.start()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        if self._loader.is_alive():
            self._loader.join(timeout)
        return self.index.ready

    def close(self) -> None:
        """Finish pending writes and close the store (graceful shutdown)."""
        if self._closed:
            return
        self._closed = True
        reaper = self._reaper
        if reaper is not None and not reaper.done() and not reaper.get_loop().is_closed():
            reaper.get_loop().call_soon_threadsafe(reaper.cancel)
        self.access.flush()
        self.writer.shutdown(wait=True)
        self.readers.shutdown(wait=True)
        if self._loader.is_alive():
            self._loader.join(5.0)
        self.store.close()

    # --- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        typ = scope["type"]
        if typ == "http":
            await self._http(scope, receive, send)
        elif typ == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.close_on_shutdown:
                    await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        req = Request(scope, receive, new_rid())
        path: str = scope["path"]
        route = self._routes.get(path)
        name = route.name if route else "static" if path.startswith("/dashboard") else "unknown"
        try:
            if route is not None:
                if route.post_only and req.method != "POST":
                    raise RequirePost(f"{path} takes POST")
                resp = await route.handler(req)
            elif name == "static":
                resp = self.static(path)
            else:
                raise InvalidUrl(f"no endpoint {path[:200]!r}")
        except APIError as e:
            resp = self._error(e, req)
        except ClientGone:
            return
        except Exception:
            log.exception("unexpected failure rid: %s path: %s", req.rid, path)
            resp = self._error(SystemError_(), req)
        headers = [
            (b"content-type", resp.content_type),
            (b"content-length", str(len(resp.body)).encode()),
            (b"x-request-id", req.rid.encode()),
            *resp.headers,
        ]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if req.method == "HEAD" else resp.body}
        )
        elapsed = time.perf_counter() - t0
        self.metrics.observe(name, resp.errcode, elapsed)
        if self.settings.access_log:
            entry = {
                "ts": round(time.time(), 3),
                "rid": req.rid,
                "method": req.method,
                "path": path[:200],
                "status": resp.status,
                "errcode": resp.errcode,
                "ms": round(elapsed * 1000, 3),
                "appid": req.appid,
            }
            if resp.error is not None:
                entry["error"] = resp.error
            self.access.add(orjson.dumps(entry).decode())

    def _error(self, e: APIError, req: Request) -> Response:
        """The error body; the error is logged with its rid in the access log (and -1 here)."""
        # SPEC §2: every API error is HTTP 200, unknown API paths (40066) too; a missing
        # dashboard asset is a plain web 404, which is what browsers expect
        static = str(req.scope.get("path", "")).startswith("/dashboard/")
        status = 404 if static and isinstance(e, InvalidUrl) else 200
        if e.errcode == -1:
            log.error("rid: %s system error", req.rid)
        return Response(
            orjson.dumps(e.body(req.rid)), status=status, errcode=e.errcode, error=e.message[:300]
        )

    # --- request helpers -----------------------------------------------------------------
    async def body(self, req: Request) -> bytes:
        limit = self.settings.max_body_bytes
        cl = req.header(b"content-length")
        if cl is not None and cl.isdigit() and int(cl) > limit:
            raise ContentTooLarge(f"body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        task = self._watch_body()
        try:
            while True:
                msg = await req.receive()
                if msg["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = msg.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise ContentTooLarge(f"body larger than {limit} bytes")
                    chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if task is None or task not in self._timed_out:
                raise
            self._timed_out.discard(task)
            task.uncancel()
            raise SystemError_(
                f"request body not received within {self.settings.request_timeout:g} s"
            ) from None
        finally:
            if task is not None:
                self._reading.pop(task, None)
        return b"".join(chunks)

    def _watch_body(self) -> asyncio.Task[Any] | None:
        """Register the current request for the body timeout (``request_timeout``). One reaper
        task per loop cancels requests past their deadline: cheaper than a timer per request."""
        timeout = self.settings.request_timeout
        if timeout <= 0:
            return None
        task = asyncio.current_task()
        if task is None:
            return None
        self._reading[task] = time.monotonic() + timeout
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap(timeout))
        return task

    async def _reap(self, timeout: float) -> None:
        while self._reading:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            for task, deadline in list(self._reading.items()):
                if deadline < now and task not in self._timed_out:
                    self._timed_out.add(task)
                    task.cancel()

    async def json_body(self, req: Request) -> dict[str, Any]:
        """The body as a JSON object, whatever the Content-Type (44002, 45002, 47001)."""
        return self.parse_json(await self.body(req))

    @staticmethod
    def parse_json(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise EmptyPostData()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise DataFormatError("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise DataFormatError("body is not a JSON object")
        return data

    def authenticate(self, req: Request) -> App:
        """The app of ``access_token`` (or ``cloudbase_access_token``): 41001/40001/42001."""
        q = req.query
        token = q.get("access_token") or q.get("cloudbase_access_token")
        if not token:
            raise AccessTokenMissing()
        appid = self.tokens.check(token)
        app = self.apps.get(appid)
        if app is None:
            raise InvalidCredential()
        req.appid = appid
        return app

    def as_of(self, tz: str) -> int:
        now = self.clock()
        key = (tz, int(now // 60))
        v = self._as_of_cache.get(key)
        if v is None:
            v = as_of_day(self.settings.as_of, tz, dt.datetime.fromtimestamp(now, dt.UTC))
            if len(self._as_of_cache) > 256:
                self._as_of_cache.clear()
            self._as_of_cache[key] = v
        return v

    def require_ready(self) -> None:
        if not self.index.ready:
            raise IndexLoading("the index is still loading")

    async def on_writer(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn)

    async def on_reader(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.readers, fn)

    async def check_secret(self, appid: str, secret: str) -> bool:
        """scrypt off the loop; successful checks are remembered until the secret rotates."""
        from .tokens import token_hash

        key = (appid, token_hash(secret))
        if self._secret_ok.get(key):
            return True
        good = await self.on_reader(lambda: self.store.check_secret(appid, secret))
        if good:
            self._secret_ok[key] = True
        return good

    # --- token endpoints -----------------------------------------------------------------
    async def _credentials(self, req: Request, fields: dict[str, Any], stable: bool) -> App:
        grant, appid, secret = fields.get("grant_type"), fields.get("appid"), fields.get("secret")
        if appid is None or appid == "":
            raise AppidMissing()
        if secret is None or secret == "":
            raise AppsecretMissing()
        if grant != "client_credential":
            raise InvalidGrantType("grant_type must be client_credential")
        if not isinstance(appid, str) or not isinstance(secret, str):
            raise DataFormatError("appid and secret must be strings")
        app = self.apps.get(appid)
        if app is None:
            raise InvalidAppid()
        req.appid = appid
        if not await self.check_secret(appid, secret):
            if stable:
                raise InvalidAppsecret()
            raise InvalidCredential("invalid appsecret")
        self.quotas.hit(appid, "stable_token" if stable else "token", app.timezone)
        return app

    async def h_token(self, req: Request) -> Response:
        app = await self._credentials(req, dict(req.query), stable=False)
        token, expires_in = await self.on_writer(lambda: self.tokens.issue(app.appid))
        return ok({"access_token": token, "expires_in": expires_in})

    async def h_stable_token(self, req: Request) -> Response:
        data = await self.json_body(req)
        force = data.get("force_refresh", False)
        if not isinstance(force, bool):
            raise DataFormatError(f"force_refresh: {force!r} is not a boolean")
        app = await self._credentials(req, data, stable=True)
        token, expires_in = await self.on_writer(lambda: self.tokens.stable(app.appid, force))
        return ok({"access_token": token, "expires_in": expires_in})

    # --- datacube ------------------------------------------------------------------------
    def _datacube(self, kind: Kind) -> Handler:
        async def handler(req: Request) -> Response:
            app = self.authenticate(req)
            self.quotas.hit(app.appid, kind.api, app.timezone)
            raw = await self.body(req)
            as_of = self.as_of(app.timezone)
            # answers are memoized per app generation (bumped by every ingest into the app)
            gen = self._generation.get(app.appid, 0)
            key = (app.appid, kind.name, raw, as_of) if len(raw) <= 256 else None
            hit = self._answers.get(key) if key else None
            if hit is not None and hit[0] == gen:
                return Response(hit[1])
            data = self.parse_json(raw)
            start = parse_period(kind, data.get("begin_date"), data.get("end_date"))
            kind.check_elapsed(start, as_of)
            self.require_ready()
            result = bitmap_retain(self.index.app(app.appid), kind, start, as_of)
            body = orjson.dumps(result.as_dict())
            if key:
                if len(self._answers) >= MAX_ANSWERS:
                    self._answers.clear()
                self._answers[key] = (gen, body)
            return Response(body)

        return handler

    # --- wxcube extensions ---------------------------------------------------------------
    async def h_visits(self, req: Request) -> Response:
        app = self.authenticate(req)
        self.quotas.hit(app.appid, "visits", app.timezone)
        data = await self.json_body(req)
        visits = data.get("visits")
        if not isinstance(visits, list):
            raise DataFormatError("visits: expected an array of {openid, ts} objects")
        if len(visits) > self.settings.max_batch:
            raise ContentTooLarge(
                f"{len(visits)} visits in one batch; at most {self.settings.max_batch}"
            )
        self.require_ready()
        result = await self.on_writer(lambda: self._ingest(app.appid, visits))
        self.metrics.ingested(result.visits)
        return ext_ok(
            accepted=result.visits,
            pairs_added=result.pairs_added,
            duplicates=result.duplicates,
            new_users=result.new_users,
        )

    def _ingest(self, appid: str, visits: list[Any]) -> ApplyResult:
        """On the writer thread: one all-or-nothing batch, then the index (ingest_records)."""
        from .ingest import ingest_records

        result = ingest_records(self.store, appid, visits, index=self.index)
        self._generation[appid] = self._generation.get(appid, 0) + 1
        return result

    async def h_retain(self, req: Request) -> Response:
        app = self.authenticate(req)
        self.quotas.hit(app.appid, "retain", app.timezone)
        data = await self.json_body(req)
        kname = data.get("kind")
        if not isinstance(kname, str) or kname not in KINDS:
            raise DataFormatError(f"kind: {kname!r} is not one of day, week, month")
        kind = KINDS[kname]
        keys = _keys(data.get("keys"))
        begin = parse_date(data.get("begin_date"), "begin_date")
        end = parse_date(data.get("end_date"), "end_date") if "end_date" in data else begin
        if kind.start_of(begin) != begin:
            raise DateRangeError(f"begin_date {fmt(begin)} does not start {kind.describe}")
        if end < begin:
            raise DateRangeError(f"end_date {fmt(end)} is before begin_date {fmt(begin)}")
        as_of = self.as_of(app.timezone)
        starts = kind.starts(begin, min(end, as_of))
        if len(starts) > MAX_PERIODS:
            raise DateRangeError(f"at most {MAX_PERIODS} periods per request")
        done = [s for s in starts if kind.end(s) <= as_of]
        if not done:
            kind.check_elapsed(kind.start_of(begin), as_of)
        left_out = kind.count(begin, end) - len(done)
        self.require_ready()
        idx = self.index.app(app.appid)
        with idx.locked():  # every period of the range from one state
            results = [bitmap_retain(idx, kind, s, as_of, keys) for s in done]
        items = [r.as_dict() for r in results]
        return ext_ok(as_of=fmt(as_of), left_out=left_out, items=items)

    async def h_info(self, req: Request) -> Response:
        app = self.authenticate(req)
        self.quotas.hit(app.appid, "info", app.timezone)
        self.require_ready()
        idx = self.index.app(app.appid)
        with idx.locked():
            span, users = idx.day_range(), idx.users()
        return ext_ok(
            appid=app.appid,
            name=app.name,
            timezone=app.timezone,
            as_of=fmt(self.as_of(app.timezone)),
            first_day=fmt(span[0]) if span else None,
            last_day=fmt(span[1]) if span else None,
            users=users,
        )

    # --- admin (WXCUBE_ADMIN_KEY) --------------------------------------------------------
    def admin(self, req: Request) -> None:
        if "access_token" in req.query or "cloudbase_access_token" in req.query:
            raise InvalidCredential("admin endpoints take the admin key, not an access_token")
        key = self.settings.admin_key
        if not key:
            raise InvalidCredential("the admin API is off: start the server with WXCUBE_ADMIN_KEY")
        auth = req.header(b"authorization") or b""
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        if not given or not hmac.compare_digest(given, key.encode()):
            raise InvalidCredential("admin key missing or wrong (Authorization: Bearer KEY)")

    async def h_admin_apps(self, req: Request) -> Response:
        self.admin(req)
        if req.method == "POST":
            data = await self.json_body(req)
            name, tz = data.get("name", ""), data.get("timezone", "Asia/Shanghai")
            if not isinstance(name, str) or not isinstance(tz, str):
                raise DataFormatError("name and timezone must be strings")
            try:
                app, secret = await self.on_writer(lambda: self.store.create_app(name, tz))
            except StoreError as e:
                raise DataFormatError(str(e)) from None
            self.apps[app.appid] = app
            return ext_ok(appid=app.appid, secret=secret, name=app.name, timezone=app.timezone)
        apps = list(self.apps.values())
        infos = await self.on_reader(lambda: [self.store.app_info(a.appid) for a in apps])
        return ext_ok(
            apps=[
                {
                    "appid": a.appid,
                    "name": a.name,
                    "timezone": a.timezone,
                    "users": i["users"],
                    "first_day": None if i["first_day"] is None else fmt(i["first_day"]),
                    "last_day": None if i["last_day"] is None else fmt(i["last_day"]),
                }
                for a, i in zip(apps, infos, strict=True)
            ]
        )

    async def h_admin_rotate(self, req: Request) -> Response:
        self.admin(req)
        data = await self.json_body(req)
        appid = data.get("appid")
        if not appid:
            raise AppidMissing()
        if not isinstance(appid, str) or appid not in self.apps:
            raise InvalidAppid()

        def rotate() -> str:
            now = self.clock()
            secret = self.store.rotate_secret(appid, now=now)
            self.tokens.revoked_app(appid, now)
            for k in list(self._secret_ok):
                if k[0] == appid:
                    self._secret_ok.pop(k, None)
            return secret

        return ext_ok(appid=appid, secret=await self.on_writer(rotate))

    # --- operations ----------------------------------------------------------------------
    async def h_healthz(self, req: Request) -> Response:
        if self.index.ready:
            return ext_ok(status="ready", apps=len(self.apps))
        if self.load_error is not None:
            e: APIError = SystemError_("index load failed")
        else:
            e = IndexLoading("the index is still loading")
        return Response(orjson.dumps(e.body(req.rid)), status=503, errcode=e.errcode)

    async def h_metrics(self, req: Request) -> Response:
        text = self.metrics.render(index_ready=self.index.ready, apps=len(self.apps))
        return Response(text.encode(), content_type=b"text/plain; version=0.0.4; charset=utf-8")

    async def h_openapi(self, req: Request) -> Response:
        return ok(openapi.spec())

    def static(self, path: str) -> Response:
        """The dashboard: ``/dashboard`` is index.html; files below it, never outside."""
        if path != "/dashboard" and not path.startswith("/dashboard/"):
            raise InvalidUrl(f"no endpoint {path[:200]!r}")
        rel = path[len("/dashboard/") :] or "index.html"
        parts = rel.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
            raise InvalidUrl("no such dashboard file")
        root = self.dashboard_dir
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise InvalidUrl("no such dashboard file")
        ctype = _TYPES.get(target.suffix.lower())
        if ctype is None:
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Response(
            target.read_bytes(),
            content_type=ctype.encode(),
            headers=[(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")],
        )


def _keys(raw: object) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or not raw
        or len(raw) > MAX_KEYS
        or not all(
            isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= MAX_KEY for k in raw
        )
    ):
        raise DataFormatError(
            f"keys: expected a non-empty array of at most {MAX_KEYS} integers 0..{MAX_KEY}"
        )
    return tuple(sorted(set(raw)))


def _setup_logging() -> None:
    """wxcube's own loggers write plain lines (JSON for the access log) to stderr."""
    for name in ("wxcube.server", "wxcube.access"):
        lg = logging.getLogger(name)
        if not lg.handlers:
            h = logging.StreamHandler(sys.stderr)
            h.setFormatter(logging.Formatter("%(message)s"))
            lg.addHandler(h)
            lg.setLevel(logging.INFO)
            lg.propagate = False


def create_app(
    settings: Settings, *, clock: Callable[[], float] | None = None, load_index: bool = True
) -> WxcubeApp:
    """The ASGI app for ``settings``. ``clock``: seconds since the epoch (tests inject one).
    ``load_index=False`` leaves the index unloaded (61503) until ``app.start_loading()``."""
    return WxcubeApp(settings, clock, load_index=load_index)


def app_from_env() -> WxcubeApp:
    """Factory for granian (``wxcube serve`` passes its settings through the environment)."""
    return create_app(Settings.from_env())
