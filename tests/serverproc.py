"""Real `wxcube serve` processes for end-to-end tests (imported by several test modules).

    with running_server(db_path) as base_url:
        httpx.get(f"{base_url}/healthz")

The server runs as ``python -m wxcube --db DB serve --port PORT`` on a free loopback port; the
context waits for ``/healthz`` 200 and stops it with SIGTERM (then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A started server: ``url``, ``proc``, ``log()`` (its stderr so far)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
        self.proc, self.url, self._log = proc, url, log
        self._final: str | None = None

    def log(self) -> str:
        """Everything the server wrote to stdout/stderr so far (all of it after stop())."""
        if self._final is not None:
            return self._final
        with open(self._log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, then SIGKILL. Returns the exit code; keeps the log, removes its file."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # granian's worker is a child process: make sure none outlives the test (it would
        # keep holding the DuckDB file). The server runs in its own process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._final is None:
            self._final = self.log()
            self._log.close()
            os.unlink(self._log.name)
        return int(self.proc.returncode)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    db_path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    admin_key: str | None = None,
    wait: bool = True,
    timeout: float = START_TIMEOUT,
) -> ServerProcess:
    """Start a server and (by default) wait until /healthz answers 200."""
    port = port or free_port()
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("WXCUBE_") or k == "WXCUBE_AS_OF"
    }
    full_env["WXCUBE_ACCESS_LOG"] = "true"
    if admin_key is not None:
        full_env["WXCUBE_ADMIN_KEY"] = admin_key
    full_env.update(env or {})
    log = tempfile.NamedTemporaryFile(prefix="wxcube-server-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "wxcube", "--db", str(db_path), "serve", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    sp = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    if wait:
        try:
            wait_healthy(sp, timeout)
        except BaseException:
            sp.stop()
            raise
    return sp


def wait_healthy(sp: ServerProcess, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if sp.proc.poll() is not None:
            raise RuntimeError(f"server exited with {sp.proc.returncode}:\n{sp.log()[-3000:]}")
        try:
            r = httpx.get(f"{sp.url}/healthz", timeout=2.0)
            if r.status_code == 200:
                return
            last = r.status_code
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"server not healthy after {timeout} s (last: {last}):\n{sp.log()[-3000:]}")


@contextmanager
def running_server(
    db_path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    admin_key: str | None = None,
) -> Iterator[str]:
    """Yield the base URL of a healthy server on ``db_path``; stop it gracefully after."""
    sp = start_server(db_path, env=env, port=port, admin_key=admin_key)
    try:
        yield sp.url
    finally:
        sp.stop()


def make_app_with_data(
    db_path: str | os.PathLike[str],
    visits: list[tuple[str, int | float | str]] | None = None,
    *,
    name: str = "test",
    timezone: str = "Asia/Shanghai",
) -> tuple[str, str]:
    """Create an app in ``db_path`` (no server may hold it) and ingest ``visits``
    [(openid, ts)], through the real ingest path. Returns (appid, secret)."""
    from wxcube.ingest import ingest_records
    from wxcube.store import Store

    with Store(Path(db_path)) as store:
        app, secret = store.create_app(name, timezone)
        if visits:
            ingest_records(store, app.appid, [{"openid": o, "ts": t} for o, t in visits])
    return app.appid, secret


def get_token(base_url: str, appid: str, secret: str) -> str:
    r = httpx.get(
        f"{base_url}/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": appid, "secret": secret},
    )
    body = r.json()
    if "access_token" not in body:
        raise RuntimeError(f"no token: {body}")
    return str(body["access_token"])


# --- in-process helpers -------------------------------------------------------------------
class Clock:
    """An injectable clock for ``create_app(settings, clock=...)``: call it for the time."""

    def __init__(self, now: float) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InProcess:
    """Synchronous calls into an ASGI app through httpx.ASGITransport (no sockets)."""

    def __init__(self, app: Any) -> None:
        import asyncio

        self.app = app
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://wxcube.test"
        )

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kw))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def token(self, appid: str, secret: str) -> str:
        r = self.get(
            "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": appid, "secret": secret},
        )
        return str(r.json()["access_token"])

    def close(self) -> None:
        import asyncio

        self.app.close()
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(asyncio.sleep(0.01))  # let the app's tasks finish
        self.loop.close()


def sample_visits(
    seed: int = 7, users: int = 300, first_day: str = "2024-01-01", days: int = 100
) -> list[tuple[str, int]]:
    """Deterministic visits [(openid, unix seconds)] with churn and returning users."""
    import datetime as dt
    import random

    rnd = random.Random(seed)
    start = dt.datetime.fromisoformat(first_day + "T00:00:00+08:00").timestamp()
    out: list[tuple[str, int]] = []
    for u in range(users):
        d = rnd.randrange(days)
        stay = rnd.random()
        while d < days:
            out.append((f"o{u:05d}", int(start + d * 86400 + rnd.randrange(86400))))
            d += 1 + int(rnd.expovariate(stay + 0.05))
    rnd.shuffle(out)
    return out
