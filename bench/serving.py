"""HTTP figures against a real `wxcube serve` process: cold start to the first correct answer,
datacube throughput and latency under wrk (64 connections), HTTP ingest with 10k-visit batches,
and the server's memory (VmHWM / VmRSS of its process tree)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from wxcube.periods import Kind, fmt
from wxcube.retention import Retain

Period = tuple[Kind, int]
BATCH = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m wxcube --db DB --as-of D serve`` on a free port, quotas out of the way."""

    def __init__(self, db: Path, as_of: int, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("WXCUBE_")}
        full.update(
            {
                "WXCUBE_QUOTA_MINUTE": str(10**9),
                "WXCUBE_QUOTA_DAILY": str(10**12),
                "WXCUBE_MAX_BATCH": str(100_000),
            }
        )
        full.update(env)
        self.log = open(log_path, "ab")  # noqa: SIM115  (closed in stop())
        cmd = [sys.executable, "-m", "wxcube", "--db", str(db), "--as-of", fmt(as_of)]
        cmd += ["serve", "--port", str(self.port)]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=full, stdout=self.log, stderr=subprocess.STDOUT)

    def pids(self) -> list[int]:
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in task.read_text().split()]
        return out

    def memory(self) -> dict[str, float]:
        """Peak and current resident memory (MiB): the largest process and the whole tree."""
        hwm, rss = [], []
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(
                line.split(":", 1) for line in status.splitlines() if line.startswith("Vm")
            )
            hwm.append(int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
            rss.append(int(fields.get("VmRSS", "0 kB").split()[0]) / 1024)
        return {
            "worker_hwm_mib": round(max(hwm, default=0), 1),
            "tree_rss_mib": round(sum(rss), 1),
            "tree_hwm_mib": round(sum(hwm), 1),
        }

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return int(self.proc.returncode)


def first_answer(
    srv: Server, appid: str, secret: str, probe: Period, want: Retain, timeout: float = 120.0
) -> tuple[float, str]:
    """Seconds from process start to the first correct datacube answer, and the token."""
    kind, start = probe
    body = orjson.dumps({"begin_date": fmt(start), "end_date": fmt(kind.end(start))})
    expected = want.as_dict()
    token = ""
    with httpx.Client(timeout=5.0) as c:
        while time.perf_counter() - srv.t0 < timeout:
            if srv.proc.poll() is not None:
                raise RuntimeError(f"server exited with {srv.proc.returncode}")
            try:
                if not token:
                    params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
                    r = c.get(f"{srv.url}/cgi-bin/token", params=params)
                    token = str(r.json().get("access_token", ""))
                if token:
                    r = c.post(
                        f"{srv.url}{kind.path}", params={"access_token": token}, content=body
                    )
                    if r.json() == expected:
                        return time.perf_counter() - srv.t0, token
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.005)
    raise TimeoutError("no correct answer from the server")


_LUA = """
local paths = {%(paths)s}
local bodies = {%(bodies)s}
local reqs = {}
local i = 0
bad = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  for n = 1, #paths do
    reqs[n] = wrk.format("POST", paths[n], {["Content-Type"] = "application/json"}, bodies[n])
  end
  i = math.random(#reqs)
end
function request()
  i = i %% #reqs + 1
  return reqs[i]
end
function response(status, headers, body)
  if status ~= 200 or string.find(body, "errcode", 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.write(string.format("BAD %%d\\n", b))
end
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ms(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    if not m:
        raise ValueError(v)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["req_per_s"] = round(float(m.group(1)))
    for pct in ("50", "75", "90", "99"):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M):
            out[f"p{pct}_ms"] = round(_ms(m.group(1)), 2)
    if m := re.search(r"(\d+) requests in ([\d.]+\w+)", text):
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = m.group(1).strip() if m else ""
    m = re.search(r"^BAD (\d+)", text, re.M)
    out["error_bodies"] = int(m.group(1)) if m else None
    return out


def wrk(
    url: str, token: str, ps: Sequence[Period], work: Path, *, conns: int, seconds: int
) -> dict[str, Any]:
    paths = ", ".join(_lua_str(f"{k.path}?access_token={token}") for k, _ in ps)
    bodies = ", ".join(
        _lua_str(orjson.dumps({"begin_date": fmt(s), "end_date": fmt(k.end(s))}).decode())
        for k, s in ps
    )
    script = work / "datacube.lua"
    script.write_text(_LUA % {"paths": paths, "bodies": bodies})
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    out = parse_wrk(r.stdout)
    out["command"] = " ".join(["wrk", *cmd[1:-3], "datacube.lua", "URL"])
    out["raw"] = r.stdout
    return out


def ingest_batches(ds_parquet: Path, tz: str, max_batches: int, batch: int = BATCH) -> list[bytes]:
    """The last 7 local days' visits moved one week later (new days for known users, after
    as_of: the traffic a live app posts), as JSON bodies of 10k visits."""
    import duckdb

    conn = duckdb.connect()
    day = f"timezone('{tz}', ts)::DATE"
    rows = conn.execute(
        f"SELECT openid, epoch(ts)::BIGINT + 7 * 86400 AS ts FROM read_parquet('{ds_parquet}') "
        f"WHERE {day} > (SELECT max({day}) FROM read_parquet('{ds_parquet}')) - 7 "
        f"ORDER BY ts LIMIT {max_batches * batch}"
    ).fetchall()
    conn.close()
    return [
        orjson.dumps({"visits": [{"openid": o, "ts": t} for o, t in rows[i : i + batch]]})
        for i in range(0, len(rows), batch)
    ]


def http_ingest(
    url: str, token: str, bodies: list[bytes], clients: int = 2, batch: int = BATCH
) -> dict[str, Any]:
    """POST every batch; the first one alone and untimed (it builds the server's users mirror,
    a one-time cost reported as ``first_batch_s``), then the rest from ``clients`` concurrent
    connections (a live app posts from more than one process)."""
    from concurrent.futures import ThreadPoolExecutor

    def post(c: httpx.Client, b: bytes) -> int:
        r = c.post(f"{url}/wxcube/v1/visits", params={"access_token": token}, content=b)
        body = r.json()
        if body.get("errcode") != 0:
            raise RuntimeError(f"ingest failed: {body}")
        return int(body["accepted"])

    def worker(part: list[bytes]) -> int:
        with httpx.Client(timeout=120.0) as c:
            return sum(post(c, b) for b in part)

    t0 = time.perf_counter()
    first = worker(bodies[:1])
    first_s = time.perf_counter() - t0
    rest = bodies[1:]
    parts = [rest[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        visits = sum(pool.map(worker, parts))
    dt = time.perf_counter() - t0
    return {
        "batches": len(rest),
        "batch_size": batch,
        "clients": clients,
        "visits": visits,
        "seconds": round(dt, 3),
        "visits_per_s": round(visits / dt) if dt and visits else None,
        "first_batch_visits": first,
        "first_batch_s": round(first_s, 3),
    }


def run(
    db: Path,
    appid: str,
    secret: str,
    as_of: int,
    ps: Sequence[Period],
    want: dict[Period, Retain],
    ds_parquet: Path,
    tz: str,
    work: Path,
    *,
    conns: int = 64,
    seconds: int = 10,
    max_batches: int = 50,
    clients: int = 2,
    batch: int = BATCH,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    probe = next(p for p in reversed(ps) if p[0].name == "day")
    logf = work / "server.log"
    srv = Server(db, as_of, logf, env or {})
    try:
        first, token = first_answer(srv, appid, secret, probe, want[probe])
        out["cold_start_first_s"] = round(first, 3)
        out["memory_after_start"] = srv.memory()
        log(f"serve: first correct answer {first:.2f} s after start (no snapshot yet)")
        if shutil.which("wrk"):
            out["datacube"] = wrk(srv.url, token, ps, work, conns=conns, seconds=seconds)
            d = out["datacube"]
            log(
                f"wrk -c{conns}: {d.get('req_per_s')} req/s, p50 {d.get('p50_ms')} ms, "
                f"p99 {d.get('p99_ms')} ms, error bodies {d.get('error_bodies')}"
            )
        else:
            out["datacube"] = {"error": "wrk not installed (make system-deps)"}
        out["memory_after_wrk"] = srv.memory()
        bodies = ingest_batches(ds_parquet, tz, max_batches + 1, batch)
        out["ingest"] = http_ingest(srv.url, token, bodies, clients, batch)
        log(f"HTTP ingest: {out['ingest']['visits_per_s']} visits/s")
        out["memory"] = srv.memory()
    finally:
        out["stop_rc"] = srv.stop()
    srv = Server(db, as_of, logf, env or {})
    try:
        second, _ = first_answer(srv, appid, secret, probe, want[probe])
        out["cold_start_s"] = round(second, 3)
        out["memory_after_restart"] = srv.memory()
        log(f"serve (restart): first correct answer {second:.2f} s after start")
    except (RuntimeError, TimeoutError) as e:
        out["cold_start_error"] = repr(e)
    finally:
        srv.stop()
    if "cold_start_error" in out:  # the server's own words, only when something went wrong
        out["log_tail"] = logf.read_text(errors="replace")[-2000:]
    return out
