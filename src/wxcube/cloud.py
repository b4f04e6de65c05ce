"""``wx-server-sdk``'s cloud call, in Python: the code of a cloud function ports line by line.

    from wxcube import cloud

    cloud.init(env=cloud.DYNAMIC_CURRENT_ENV)

    def main(event, context):
        try:
            return cloud.openapi.analysis.getMonthlyRetain(
                {"beginDate": "20170201", "endDate": "20170228"}
            )
        except cloud.CloudSDKError as err:
            return {"errCode": err.errCode, "errMsg": err.errMsg}

In an ``async def`` function use the awaitable twin, ``cloud.async_openapi``:

    result = await cloud.async_openapi.analysis.getMonthlyRetain({...})

Parameters and results are camelCase (``beginDate`` -> ``begin_date`` on the wire,
``visit_uv_new`` -> ``visitUvNew`` back); a success carries ``errMsg
"openapi.analysis.<api>:ok"`` and ``errCode 0``; a failure raises :class:`CloudSDKError`.

As in WeChat, the function's ``config.json`` must grant the API:
``{"permissions": {"openapi": ["analysis.getMonthlyRetain"]}}``. It is looked up in the working
directory, then beside the running script; no file, or the API not listed, is errCode -604101.

The server and the credentials come from the environment: ``WXCUBE_URL`` (default
``https://api.weixin.qq.com``), ``WX_APPID``, ``WX_SECRET`` (or ``init()`` arguments).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .client import DEFAULT_BASE_URL, WeChatAPIError, WeChatClient
from .periods import DAY, MONTH, WEEK, Kind

__all__ = [
    "DYNAMIC_CURRENT_ENV",
    "NO_PERMISSION",
    "Cloud",
    "CloudSDKError",
    "async_openapi",
    "config_paths",
    "init",
    "openapi",
]

DYNAMIC_CURRENT_ENV = "DYNAMIC_CURRENT_ENV"
"""``cloud.DYNAMIC_CURRENT_ENV``: the environment the function runs in (accepted, not needed)."""

NO_PERMISSION = -604101
"""errCode when config.json does not grant the API (wx-server-sdk: "function has no permission
to call this API"; its errMsg reads ``"openapi.<api>:fail system error: error code: -604101"``)."""


class CloudSDKError(Exception):
    """A failed cloud call, shaped as wx-server-sdk's error: ``errCode``, ``errMsg``
    (``"openapi.analysis.<api>:fail <errmsg>"``) and ``str() == "errCode: X | errMsg: …"``.
    ``rid`` is the bare request id when the server sent one."""

    def __init__(self, errCode: int, errMsg: str, rid: str | None = None) -> None:
        self.errCode = errCode
        self.errMsg = errMsg
        self.rid = rid
        super().__init__(errCode, errMsg)

    def __str__(self) -> str:
        return f"errCode: {self.errCode} | errMsg: {self.errMsg}"

    def __repr__(self) -> str:
        return f"CloudSDKError({self.errCode!r}, {self.errMsg!r})"


# --- camelCase <-> snake_case -------------------------------------------------------------
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _convert(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        return {key(k): _convert(v, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_convert(v, key) for v in value]
    return value


# --- config.json permissions --------------------------------------------------------------
def config_paths() -> list[Path]:
    """Where the function's config.json is looked for, in order: the working directory, then
    beside the running script (``sys.argv[0]``, else ``__main__.__file__``)."""
    paths = [Path.cwd() / "config.json"]
    main = sys.modules.get("__main__")
    for script in (sys.argv[0] if sys.argv else "", getattr(main, "__file__", None) or ""):
        if script and script not in ("-c", "-m") and Path(script).is_file():
            candidate = Path(script).resolve().parent / "config.json"
            if candidate not in paths:
                paths.append(candidate)
            break
    return paths


def _check_permission(api: str) -> None:
    """Raise -604101 unless the first config.json found lists ``analysis.<api>``."""
    name = f"analysis.{api}"
    for path in config_paths():
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            granted = config["permissions"]["openapi"]
        except (OSError, ValueError, KeyError, TypeError):
            granted = []
        if isinstance(granted, list) and name in granted:
            return
        why = f"{path} does not list {name!r} under permissions.openapi"
        break
    else:
        why = "no config.json found (looked in " + ", ".join(map(str, config_paths())) + ")"
    err = CloudSDKError(
        NO_PERMISSION, f"openapi.{name}:fail system error: error code: {NO_PERMISSION}"
    )
    err.add_note(
        f"function has no permission to call this API: {why}; "
        f'grant it with {{"permissions": {{"openapi": ["{name}"]}}}}'
    )
    raise err


# --- the cloud object ---------------------------------------------------------------------
class Cloud:
    """One ``wx-server-sdk`` instance. The module-level ``init``/``openapi``/``async_openapi``
    are those of a default instance; make your own for several apps in one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: WeChatClient | None = None
        self._configured = False
        self.env: str | None = None
        self.openapi = OpenAPI(self)
        self.async_openapi = AsyncOpenAPI(self)

    def init(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        base_url: str | None = None,
        appid: str | None = None,
        secret: str | None = None,
        stable_token: bool = False,
        http_client: httpx.Client | None = None,
    ) -> None:
        """``cloud.init({"env": cloud.DYNAMIC_CURRENT_ENV})`` or ``cloud.init(env=…)``.

        ``base_url``/``appid``/``secret`` default to ``$WXCUBE_URL`` (else real WeChat),
        ``$WX_APPID`` and ``$WX_SECRET``. Calling it again replaces the previous settings."""
        env = env or (config or {}).get("env") or DYNAMIC_CURRENT_ENV
        url = base_url or os.environ.get("WXCUBE_URL") or DEFAULT_BASE_URL
        appid = appid or os.environ.get("WX_APPID", "")
        secret = secret or os.environ.get("WX_SECRET", "")
        client = (
            WeChatClient(appid, secret, url, http_client=http_client, stable_token=stable_token)
            if appid and secret
            else None
        )
        with self._lock:
            old, self._client, self.env = self._client, client, env
            self._configured = True
        if old is not None:
            old.close()

    def close(self) -> None:
        """Close the HTTP connections; a later call initializes again from the environment."""
        with self._lock:
            old, self._client, self._configured = self._client, None, False
        if old is not None:
            old.close()

    def _get_client(self, api: str) -> WeChatClient:
        with self._lock:
            configured = self._configured
        if not configured:
            self.init()  # wx-server-sdk works without an explicit init() too
        client = self._client
        if client is None:
            raise CloudSDKError(
                41002,
                f"openapi.analysis.{api}:fail appid missing: set WX_APPID and WX_SECRET "
                "(and WXCUBE_URL for a wxcube server), or pass them to cloud.init()",
            )
        return client

    def call(self, kind: Kind, data: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """``openapi.analysis.<kind.api>(data)``: the blocking cloud call."""
        api = kind.api
        _check_permission(api)
        params = {**(data or {}), **kwargs}
        body = {_snake(k): v for k, v in params.items()}
        client = self._get_client(api)
        try:
            answer = client.post(kind.path, body)
        except WeChatAPIError as e:
            raise CloudSDKError(e.errcode, f"openapi.analysis.{api}:fail {e.errmsg}", e.rid) from e
        result = _convert(answer, _camel)
        result.pop("errcode", None)
        result.pop("errmsg", None)
        result["errMsg"] = f"openapi.analysis.{api}:ok"
        result["errCode"] = 0
        return result

    async def acall(self, kind: Kind, data: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """The awaitable cloud call: the blocking one on a worker thread, so it shares the
        token cache with blocking calls and works from any event loop."""
        return await asyncio.to_thread(self.call, kind, data, **kwargs)


class _Analysis:
    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud


class Analysis(_Analysis):
    """``cloud.openapi.analysis``."""

    def getDailyRetain(
        self, data: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        """``{"beginDate", "endDate"}`` (one day) -> ``{"refDate", "visitUvNew", "visitUv",
        "errMsg", "errCode"}``."""
        result: dict[str, Any] = self._cloud.call(DAY, data, **kwargs)
        return result

    def getWeeklyRetain(
        self, data: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        """``{"beginDate": Monday, "endDate": Sunday}``."""
        result: dict[str, Any] = self._cloud.call(WEEK, data, **kwargs)
        return result

    def getMonthlyRetain(
        self, data: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        """``{"beginDate": the 1st, "endDate": the last day of the month}``."""
        result: dict[str, Any] = self._cloud.call(MONTH, data, **kwargs)
        return result


class AsyncAnalysis(_Analysis):
    """``cloud.async_openapi.analysis``: the same calls, awaitable."""

    async def getDailyRetain(
        self, data: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._cloud.acall(DAY, data, **kwargs)
        return result

    async def getWeeklyRetain(
        self, data: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._cloud.acall(WEEK, data, **kwargs)
        return result

    async def getMonthlyRetain(
        self, data: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._cloud.acall(MONTH, data, **kwargs)
        return result


class OpenAPI:
    """``cloud.openapi``."""

    def __init__(self, cloud: Cloud) -> None:
        self.analysis = Analysis(cloud)


class AsyncOpenAPI:
    """``cloud.async_openapi``."""

    def __init__(self, cloud: Cloud) -> None:
        self.analysis = AsyncAnalysis(cloud)


# wx-server-sdk is used as a module: `cloud.init()`, `cloud.openapi…`. These are the default
# instance's (the only module-level state; it holds no settings until init() reads them).
_default = Cloud()
init = _default.init
close = _default.close
openapi = _default.openapi
async_openapi = _default.async_openapi
