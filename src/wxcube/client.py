"""A WeChat Mini Program analytics client that works unchanged against api.weixin.qq.com and
against a wxcube server.

    from wxcube.client import WeChatClient

    with WeChatClient(APPID, SECRET, base_url="http://127.0.0.1:8000") as client:
        r = client.analysis.get_monthly_retain("20170201", "20170228")
        r.ref_date, r.visit_uv_new[0].value, r.to_json()

What it does for you (SPEC §4):

- caches the ``access_token`` until 5 minutes before it expires (half its lifetime if that is
  shorter), fetching it at most once however many threads (or tasks) need it at the same time;
- on 40001 / 40014 / 42001 (token invalid, revoked or expired) fetches a new token and retries
  the call once, never more;
- retries -1 (system error), network errors and HTTP 5xx with bounded exponential backoff;
- raises :class:`WeChatQuotaError` on 45009 / 45011 and :class:`WeChatAPIError` on every other
  failure, with ``errcode``, ``errmsg`` and the bare ``rid``.

``AsyncWeChatClient`` is the same client for asyncio. This module only needs httpx: it never
imports DuckDB or any server module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from .periods import DAY, MONTH, WEEK, Kind, from_daynum, to_daynum

__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncWeChatClient",
    "RetainItem",
    "RetainResult",
    "WeChatAPIError",
    "WeChatClient",
    "WeChatQuotaError",
    "month_of",
    "week_of",
]

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})  # refresh the token and retry once
QUOTA_ERRCODES = frozenset({45009, 45011})
SYSTEM_ERROR = -1  # retried with backoff
REFRESH_MARGIN = 300.0  # seconds before expiry at which a cached token is replaced
_RID = re.compile(r"\s*\brid:\s*([0-9A-Za-z]+(?:-[0-9A-Za-z]+)*)\s*$")

DateLike = str | dt.date


# --- errors -------------------------------------------------------------------------------
class WeChatAPIError(Exception):
    """A call failed. ``errcode``/``errmsg`` are WeChat's (``errmsg`` verbatim, rid included);
    ``rid`` is the bare request id parsed from ``"… rid: xxxxxxxx-xxxxxxxx-xxxxxxxx"`` (or None).
    Network failures and unusable responses are errcode -1 with the cause chained."""

    def __init__(self, errcode: int, errmsg: str, rid: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.rid = rid
        self.retryable = errcode == SYSTEM_ERROR  # -1: retried with backoff by the clients
        super().__init__(errcode, errmsg, rid)

    @property
    def message(self) -> str:
        """``errmsg`` without the trailing ``rid: …``."""
        return _RID.sub("", self.errmsg)

    def __str__(self) -> str:
        return f"errcode {self.errcode}: {self.errmsg}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.errcode!r}, {self.errmsg!r}, {self.rid!r})"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> WeChatAPIError:
        """The error a WeChat error body stands for (a :class:`WeChatQuotaError` for quotas)."""
        errcode = int(body.get("errcode", SYSTEM_ERROR))
        errmsg = str(body.get("errmsg", ""))
        m = _RID.search(errmsg)
        kind = WeChatQuotaError if errcode in QUOTA_ERRCODES else WeChatAPIError
        return kind(errcode, errmsg, m.group(1) if m else None)


class WeChatQuotaError(WeChatAPIError):
    """45009 (daily quota) or 45011 (minute quota): slow down; retrying now will not help."""


# --- results ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetainItem:
    """One ``{"key": k, "value": n}``: k periods after the queried one, n users."""

    key: int
    value: int


@dataclass(frozen=True, slots=True)
class RetainResult:
    """A getDaily/Weekly/MonthlyRetain answer. ``as_dict()`` / ``to_json()`` give back exactly
    the body WeChat sent (key order included)."""

    ref_date: str
    visit_uv_new: tuple[RetainItem, ...]
    visit_uv: tuple[RetainItem, ...]

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> RetainResult:
        def items(name: str) -> tuple[RetainItem, ...]:
            return tuple(RetainItem(int(i["key"]), int(i["value"])) for i in body.get(name, []))

        try:
            return cls(str(body["ref_date"]), items("visit_uv_new"), items("visit_uv"))
        except (KeyError, TypeError, ValueError) as e:
            raise WeChatAPIError(SYSTEM_ERROR, f"unexpected retain body: {body!r}") from e

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref_date": self.ref_date,
            "visit_uv_new": [{"key": i.key, "value": i.value} for i in self.visit_uv_new],
            "visit_uv": [{"key": i.key, "value": i.value} for i in self.visit_uv],
        }

    def to_json(self) -> str:
        """Compact JSON, byte-identical to wxcube's response body."""
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)

    @property
    def new(self) -> dict[int, int]:
        """``visit_uv_new`` as ``{key: value}``."""
        return {i.key: i.value for i in self.visit_uv_new}

    @property
    def active(self) -> dict[int, int]:
        """``visit_uv`` as ``{key: value}``."""
        return {i.key: i.value for i in self.visit_uv}


# --- dates --------------------------------------------------------------------------------
def _yyyymmdd(value: DateLike, name: str) -> str:
    if isinstance(value, dt.date):  # datetime.datetime too: its calendar date
        return value.strftime("%Y%m%d")
    if isinstance(value, str):
        return value  # passed through: the server says 61500 if it is not a real yyyymmdd
    raise TypeError(f"{name} must be a 'yyyymmdd' string or a datetime.date, not {value!r}")


def _as_date(value: DateLike) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{8}", value):
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    raise TypeError(f"expected a 'yyyymmdd' string or a datetime.date, not {value!r}")


def _period_of(kind: Kind, day: DateLike) -> tuple[dt.date, dt.date]:
    start = kind.start_of(to_daynum(_as_date(day)))
    return from_daynum(start), from_daynum(kind.end(start))


def week_of(day: DateLike) -> tuple[dt.date, dt.date]:
    """(Monday, Sunday) of the week containing ``day``."""
    return _period_of(WEEK, day)


def month_of(day: DateLike) -> tuple[dt.date, dt.date]:
    """(1st, last day) of the natural month containing ``day``."""
    return _period_of(MONTH, day)


# --- shared request logic (no I/O) --------------------------------------------------------
class _Policy:
    """What both clients share: URLs, request bodies, response parsing, retry decisions."""

    def __init__(
        self,
        appid: str,
        secret: str,
        base_url: str,
        stable_token: bool,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        clock: Callable[[], float],
    ) -> None:
        if not appid or not secret:
            raise ValueError("appid and secret are required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.appid, self.secret = appid, secret
        self.base_url = base_url.rstrip("/")
        self.stable_token = stable_token
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.clock = clock
        self.state: tuple[str, float] | None = None  # (token, refresh at): replaced atomically
        self.token_fetches = 0  # how many tokens this client has fetched (diagnostics)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def token_request(self) -> tuple[str, str, dict[str, Any] | None, bytes | None]:
        """(method, url, query params, body) of the token request."""
        if self.stable_token:
            body = {
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self.secret,
                "force_refresh": False,
            }
            return "POST", self.url("/cgi-bin/stable_token"), None, _dumps(body)
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        return "GET", self.url("/cgi-bin/token"), params, None

    def cached(self, stale: str | None) -> str | None:
        """The cached token if it is fresh and is not ``stale`` (the one the server refused)."""
        state = self.state
        if state is not None and state[0] != stale and self.clock() < state[1]:
            return state[0]
        return None

    def store_token(self, body: dict[str, Any]) -> str:
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeChatAPIError(SYSTEM_ERROR, f"token response without access_token: {body!r}")
        expires_in = float(body.get("expires_in", 7200))
        margin = min(REFRESH_MARGIN, expires_in / 2)
        self.state = (token, self.clock() + expires_in - margin)
        self.token_fetches += 1
        return token

    def delay(self, attempt: int) -> float:
        """Backoff before retry ``attempt`` (1-based): exponential, capped, with jitter."""
        base: float = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


def _dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _parse(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a response whatever its Content-Type, or an error to raise.

    A WeChat error body (``errcode`` not 0) raises WeChatAPIError; an HTTP 5xx or an unreadable
    body raises WeChatAPIError(-1) (retried)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        if body.get("errcode", 0) not in (0, None):
            raise WeChatAPIError.from_body(body)
        if response.status_code < 400:
            return body
    err = WeChatAPIError(
        SYSTEM_ERROR, f"unexpected HTTP {response.status_code} response: {response.text[:200]!r}"
    )
    err.retryable = response.status_code >= 500 or response.status_code < 400
    raise err


def _transport_error(e: httpx.HTTPError) -> WeChatAPIError:
    return WeChatAPIError(SYSTEM_ERROR, f"network error: {type(e).__name__}: {e}")


def _kind(kind: Kind | str) -> Kind:
    if isinstance(kind, Kind):
        return kind
    for k in (DAY, WEEK, MONTH):
        if kind in (k.name, k.api):
            return k
    raise ValueError(f"unknown retain kind {kind!r}")


# --- sync client --------------------------------------------------------------------------
class WeChatClient:
    """Blocking client. Thread-safe: share one per process.

    ``http_client`` (an ``httpx.Client``) is used as given and not closed by this client; ``sleep``
    and ``clock`` are injectable (tests). ``max_retries`` bounds the retries of -1 / network
    errors, with backoff ``backoff * 2**n`` seconds capped at ``max_backoff``.
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http_client: httpx.Client | None = None,
        stable_token: bool = False,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._p = _Policy(
            appid, secret, base_url, stable_token, max_retries, backoff, max_backoff, clock
        )
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._timeout = timeout
        self._sleep = sleep
        self._lock = threading.Lock()
        self.analysis = Analysis(self)

    @property
    def appid(self) -> str:
        return self._p.appid

    @property
    def base_url(self) -> str:
        return self._p.base_url

    @property
    def token_fetches(self) -> int:
        """How many access tokens this client has fetched so far."""
        return self._p.token_fetches

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # tokens
    def get_access_token(self, *, stale: str | None = None) -> str:
        """The cached token, or a new one. ``stale``: a token the server refused; if it is still
        the cached one it is replaced. One fetch however many threads ask at once."""
        token = self._p.cached(stale)
        if token is not None:
            return token
        with self._lock:
            token = self._p.cached(stale)
            if token is not None:
                return token
            method, url, params, content = self._p.token_request()
            body = self._send(method, url, params, content)
            return self._p.store_token(body)

    def invalidate_token(self) -> None:
        """Forget the cached token; the next call fetches a new one."""
        with self._lock:
            self._p.state = None

    # raw calls
    def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, content: bytes | None
    ) -> dict[str, Any]:
        """One logical request: retries -1, network errors and 5xx with bounded backoff."""
        attempt = 0
        while True:
            try:
                try:
                    response = self._http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        headers={"Content-Type": "application/json"} if content else None,
                        timeout=self._timeout,
                    )
                except httpx.HTTPError as e:
                    raise _transport_error(e) from e
                return _parse(response)
            except WeChatAPIError as e:
                if not e.retryable or attempt >= self._p.max_retries:
                    raise
                attempt += 1
                self._sleep(self._p.delay(attempt))

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to a token-authenticated WeChat API (``path`` like
        ``/datacube/getweanalysisappidmonthlyretaininfo``) and return the JSON answer.
        Refreshes the token and retries once on 40001/40014/42001."""
        return self._authed("POST", path, None, _dumps(body))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET a token-authenticated WeChat API (e.g. ``/wxcube/v1/info``)."""
        return self._authed("GET", path, params, None)

    def _authed(
        self, method: str, path: str, params: Mapping[str, Any] | None, content: bytes | None
    ) -> dict[str, Any]:
        url = self._p.url(path)
        token = self.get_access_token()
        try:
            return self._send(method, url, {**(params or {}), "access_token": token}, content)
        except WeChatAPIError as e:
            if e.errcode not in TOKEN_ERRCODES:
                raise
        token = self.get_access_token(stale=token)  # refresh once, retry once
        return self._send(method, url, {**(params or {}), "access_token": token}, content)


class Analysis:
    """``client.analysis``: the datacube retention APIs."""

    def __init__(self, client: WeChatClient) -> None:
        self._client = client

    def get_retain(self, kind: Kind | str, begin: DateLike, end: DateLike) -> RetainResult:
        """``kind``: ``"day"|"week"|"month"`` (or the API name, e.g. ``getMonthlyRetain``)."""
        k = _kind(kind)
        body = {"begin_date": _yyyymmdd(begin, "begin"), "end_date": _yyyymmdd(end, "end")}
        return RetainResult.from_dict(self._client.post(k.path, body))

    def get_daily_retain(self, begin: DateLike, end: DateLike) -> RetainResult:
        """getDailyRetain: one day (``begin == end``); keys 0-7, 14, 30."""
        return self.get_retain(DAY, begin, end)

    def get_weekly_retain(self, begin: DateLike, end: DateLike) -> RetainResult:
        """getWeeklyRetain: one Monday..Sunday week; keys 0-4."""
        return self.get_retain(WEEK, begin, end)

    def get_monthly_retain(self, begin: DateLike, end: DateLike) -> RetainResult:
        """getMonthlyRetain: one natural month (the 1st to its last day); keys 0-1."""
        return self.get_retain(MONTH, begin, end)

    def get_daily_retain_for(self, day: DateLike) -> RetainResult:
        """The daily retention of ``day``."""
        return self.get_retain(DAY, day, day)

    def get_weekly_retain_for(self, day: DateLike) -> RetainResult:
        """The weekly retention of the Monday..Sunday week containing ``day``."""
        return self.get_retain(WEEK, *week_of(day))

    def get_monthly_retain_for(self, day: DateLike) -> RetainResult:
        """The monthly retention of the natural month containing ``day``."""
        return self.get_retain(MONTH, *month_of(day))


# --- async client -------------------------------------------------------------------------
class AsyncWeChatClient:
    """The asyncio twin of :class:`WeChatClient` (same arguments; ``http_client`` is an
    ``httpx.AsyncClient``, ``sleep`` a coroutine function). Token refresh is serialized by an
    ``asyncio.Lock``: one fetch however many tasks need it. Use it from one event loop."""

    def __init__(
        self,
        appid: str,
        secret: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http_client: httpx.AsyncClient | None = None,
        stable_token: bool = False,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._p = _Policy(
            appid, secret, base_url, stable_token, max_retries, backoff, max_backoff, clock
        )
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.analysis = AsyncAnalysis(self)

    @property
    def appid(self) -> str:
        return self._p.appid

    @property
    def base_url(self) -> str:
        return self._p.base_url

    @property
    def token_fetches(self) -> int:
        return self._p.token_fetches

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def get_access_token(self, *, stale: str | None = None) -> str:
        token = self._p.cached(stale)
        if token is not None:
            return token
        async with self._lock:
            token = self._p.cached(stale)
            if token is not None:
                return token
            method, url, params, content = self._p.token_request()
            body = await self._send(method, url, params, content)
            return self._p.store_token(body)

    def invalidate_token(self) -> None:
        self._p.state = None

    async def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, content: bytes | None
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                try:
                    response = await self._http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        headers={"Content-Type": "application/json"} if content else None,
                        timeout=self._timeout,
                    )
                except httpx.HTTPError as e:
                    raise _transport_error(e) from e
                return _parse(response)
            except WeChatAPIError as e:
                if not e.retryable or attempt >= self._p.max_retries:
                    raise
                attempt += 1
                await self._sleep(self._p.delay(attempt))

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._authed("POST", path, None, _dumps(body))

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._authed("GET", path, params, None)

    async def _authed(
        self, method: str, path: str, params: Mapping[str, Any] | None, content: bytes | None
    ) -> dict[str, Any]:
        url = self._p.url(path)
        token = await self.get_access_token()
        try:
            return await self._send(method, url, {**(params or {}), "access_token": token}, content)
        except WeChatAPIError as e:
            if e.errcode not in TOKEN_ERRCODES:
                raise
        token = await self.get_access_token(stale=token)
        return await self._send(method, url, {**(params or {}), "access_token": token}, content)


class AsyncAnalysis:
    """``async_client.analysis``: awaitable twins of :class:`Analysis`."""

    def __init__(self, client: AsyncWeChatClient) -> None:
        self._client = client

    async def get_retain(self, kind: Kind | str, begin: DateLike, end: DateLike) -> RetainResult:
        k = _kind(kind)
        body = {"begin_date": _yyyymmdd(begin, "begin"), "end_date": _yyyymmdd(end, "end")}
        return RetainResult.from_dict(await self._client.post(k.path, body))

    async def get_daily_retain(self, begin: DateLike, end: DateLike) -> RetainResult:
        return await self.get_retain(DAY, begin, end)

    async def get_weekly_retain(self, begin: DateLike, end: DateLike) -> RetainResult:
        return await self.get_retain(WEEK, begin, end)

    async def get_monthly_retain(self, begin: DateLike, end: DateLike) -> RetainResult:
        return await self.get_retain(MONTH, begin, end)

    async def get_daily_retain_for(self, day: DateLike) -> RetainResult:
        return await self.get_retain(DAY, day, day)

    async def get_weekly_retain_for(self, day: DateLike) -> RetainResult:
        return await self.get_retain(WEEK, *week_of(day))

    async def get_monthly_retain_for(self, day: DateLike) -> RetainResult:
        return await self.get_retain(MONTH, *month_of(day))
