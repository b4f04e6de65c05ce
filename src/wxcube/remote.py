"""The store commands through a running server (``--url``, SPEC §5).

A running server holds the DuckDB file, so `wxcube ingest|retain --url URL --secret S` talk to
it as the app (a stable token, renewed if it dies during a long upload) and
`wxcube app ... --url URL` as the admin (``WXCUBE_ADMIN_KEY``). Files are parsed locally with
exactly the rules of the local path (``ingest.stage_files`` on an in-memory DuckDB) and sent in
batches to ``/wxcube/v1/visits``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import WxcubeError
from .ingest import Progress, Source

DEFAULT_BATCH = 10_000
LOADING_WAIT = 60.0  # seconds to wait for a server that is still loading its index (61503)


class RemoteError(WxcubeError):
    """The server answered with an errcode (its errmsg carries the rid)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        self.errcode, self.errmsg = errcode, errmsg
        super().__init__(f"{errmsg} (errcode {errcode})")


@dataclass
class IngestTotals:
    visits: int = 0
    pairs_added: int = 0
    duplicates: int = 0
    new_users: int = 0
    batches: int = 0


class Remote:
    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise WxcubeError(f"--url {url!r}: expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)
        self._creds: tuple[str, str] | None = None  # (appid, secret) once signed in
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        admin_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
        deadline = time.monotonic() + LOADING_WAIT
        while True:
            data = self._once(method, path, params, body, headers)
            if data.get("errcode") == 61503 and time.monotonic() < deadline:
                time.sleep(0.5)  # the server is still loading its index
                continue
            break
        code = data.get("errcode", 0)
        if code:
            raise RemoteError(int(code), str(data.get("errmsg", "")))
        return data

    def _once(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        headers: dict[str, str],
    ) -> dict[str, Any]:
        try:
            r = self.http.request(
                method, self.url + path, params=params, json=body, headers=headers
            )
        except httpx.HTTPError as e:
            raise WxcubeError(f"cannot reach {self.url}: {e}") from None
        try:
            data = r.json()
        except ValueError:
            raise WxcubeError(
                f"{self.url}{path} answered HTTP {r.status_code} without JSON: "
                "is this a wxcube server?"
            ) from None
        if not isinstance(data, dict):
            raise WxcubeError(f"{self.url}{path} answered {data!r}")
        return data

    # --- as the app ------------------------------------------------------------------------
    def token(self, appid: str, secret: str) -> str:
        """Sign in as the app with a *stable* token: unlike ``/cgi-bin/token`` it does not
        retire the token the app's own back end is using. Remembered for :meth:`app_call`."""
        self._creds = (appid, secret)
        data = self.call(
            "POST",
            "/cgi-bin/stable_token",
            body={
                "grant_type": "client_credential",
                "appid": appid,
                "secret": secret,
                "force_refresh": False,
            },
        )
        self._token = str(data["access_token"])
        return self._token

    def app_call(self, method: str, path: str, token: str, body: Any = None) -> dict[str, Any]:
        """A call as the app; a token that died meanwhile (expired, superseded) is renewed
        once and the same request sent again (safe: a batch applies all or nothing and
        duplicates change nothing)."""
        current = self._token or token
        try:
            return self.call(method, path, params={"access_token": current}, body=body)
        except RemoteError as e:
            if e.errcode not in (40001, 40014, 42001) or self._creds is None:
                raise
            fresh = self.token(*self._creds)
            return self.call(method, path, params={"access_token": fresh}, body=body)

    def retain(
        self, token: str, kind: str, begin: str, end: str
    ) -> tuple[list[dict[str, Any]], str, int]:
        """(WeChat-shaped bodies, as_of yyyymmdd, periods left out) for a range."""
        data = self.app_call(
            "POST",
            "/wxcube/v1/retain",
            token,
            body={"kind": kind, "begin_date": begin, "end_date": end},
        )
        return list(data["items"]), str(data["as_of"]), int(data.get("left_out", 0))

    def ingest(
        self,
        token: str,
        sources: Sequence[Source],
        *,
        naive_tz: str | None = None,
        batch: int = DEFAULT_BATCH,
        progress: Progress | None = None,
    ) -> IngestTotals:
        """Parse and validate every file locally (a bad row fails before anything is sent),
        then send batches; each batch is applied all or nothing by the server."""
        import duckdb

        from .ingest import stage_files

        info = self.app_call("GET", "/wxcube/v1/info", token)
        app_tz = str(info["timezone"])
        conn = duckdb.connect()
        try:
            stage_files(conn, sources, naive_tz or app_tz, app_tz, progress)
            cur = conn.execute("SELECT openid, epoch FROM _parsed")
            totals = IngestTotals()
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                try:
                    data = self.app_call(
                        "POST",
                        "/wxcube/v1/visits",
                        token,
                        body={"visits": [{"openid": o, "ts": t} for o, t in rows]},
                    )
                except WxcubeError as e:
                    if not totals.batches:
                        raise
                    raise WxcubeError(
                        f"{e}; {totals.batches} earlier batch(es) ({totals.visits:,} visits) "
                        "were applied. Running the same command again is safe: duplicates "
                        "change nothing"
                    ) from None
                totals.visits += int(data["accepted"])
                totals.pairs_added += int(data.get("pairs_added", 0))
                totals.duplicates += int(data.get("duplicates", 0))
                totals.new_users += int(data.get("new_users", 0))
                totals.batches += 1
        finally:
            conn.close()
        return totals

    # --- as the admin ----------------------------------------------------------------------
    def create_app(self, key: str, name: str, timezone: str) -> dict[str, Any]:
        return self.call(
            "POST",
            "/wxcube/v1/admin/apps",
            body={"name": name, "timezone": timezone},
            admin_key=key,
        )

    def list_apps(self, key: str) -> list[dict[str, Any]]:
        return list(self.call("GET", "/wxcube/v1/admin/apps", admin_key=key)["apps"])

    def rotate_secret(self, key: str, appid: str) -> str:
        data = self.call(
            "POST", "/wxcube/v1/admin/apps/rotate_secret", body={"appid": appid}, admin_key=key
        )
        return str(data["secret"])
