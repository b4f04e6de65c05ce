"""Nothing lost: durability under SIGKILL, consistent index after a crash, backup and restore.

Real server processes on loopback ports, real DuckDB files; the crash is a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from serverproc import get_token, make_app_with_data, sample_visits, start_server
from wxcube.backup import MANIFEST, backup, restore
from wxcube.cli import main
from wxcube.errors import StoreError, StoreLocked
from wxcube.index import AppIndex, Index
from wxcube.ingest import ingest_records
from wxcube.periods import DAY, MONTH, WEEK, parse_date
from wxcube.retention import bitmap_retain, sql_retain
from wxcube.store import SCHEMA_VERSION, Store

BATCH = 40  # users per batch in the durability test
D0 = parse_date("20240105")
AS_OF = "20240331"


def _table(store: Store, name: str) -> list[tuple[Any, ...]]:
    return sorted(store.read().execute(f"SELECT * FROM {name}").fetchall(), key=repr)


# --- durability -----------------------------------------------------------------------------
def _batch(i: int) -> list[dict[str, Any]]:
    """Batch i: BATCH brand-new users, each visiting D0 + i % 5 and the day after."""
    day = D0 + i % 5
    return [
        {"openid": f"b{i:04d}.{j}", "ts": (day + d) * 86400 - 8 * 3600 + 600 + j}
        for j in range(BATCH)
        for d in (0, 1)
    ]


class Streamer:
    """Sends batches one after another; records which were acknowledged and which one was in
    flight when the connection broke."""

    def __init__(self, url: str, token: str, first: int) -> None:
        self.url, self.token, self.next = url, token, first
        self.acked: list[int] = []
        self.in_flight: int | None = None
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while True:
                i = self.next
                self.in_flight = i
                try:
                    r = c.post(
                        f"{self.url}/wxcube/v1/visits",
                        params={"access_token": self.token},
                        content=json.dumps({"visits": _batch(i)}),
                    )
                except httpx.HTTPError:
                    return  # the server is gone; batch i may or may not have landed
                body = r.json()
                if body.get("errcode") != 0 or body.get("accepted") != 2 * BATCH:
                    self.errors.append(f"batch {i}: {body}")
                    return
                self.acked.append(i)
                self.in_flight = None
                self.next = i + 1

    def join(self) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive()


def server_pids(sp: Any) -> list[int]:
    """The server's worker processes (which hold the database), then granian's main one."""
    pid = sp.proc.pid
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return [*kids, pid]


def _kill_mid_stream(sp: Any, token: str, first: int, acks: int) -> Streamer:
    s = Streamer(sp.url, token, first)
    deadline = time.monotonic() + 60
    while len(s.acked) < acks and time.monotonic() < deadline and not s.errors:
        time.sleep(0.005)
    pids = server_pids(sp)
    for pid in pids:  # the worker that owns the store first, no chance to clean up
        os.kill(pid, signal.SIGKILL)
    sp.proc.wait(10)
    _wait_gone(pids)
    s.join()
    assert not s.errors, s.errors
    assert len(s.acked) >= acks
    sp.stop()
    return s


def test_acknowledged_batches_survive_sigkill(db_path: Path) -> None:
    appid, secret = make_app_with_data(db_path)
    env = {"WXCUBE_AS_OF": AS_OF}
    acked: list[int] = []
    maybe: list[int] = []  # in flight at a kill: all or nothing
    first = 0
    for acks in (12, 7):  # two crashes, the second after a restart on the crashed file
        sp = start_server(db_path, env=env)
        token = get_token(sp.url, appid, secret)
        s = _kill_mid_stream(sp, token, first, acks)
        acked += s.acked
        if s.in_flight is not None:
            maybe.append(s.in_flight)
        first = s.next + 1
    print(f"\nbatches acknowledged before the kills: {len(acked)} ({len(acked) * BATCH} users)")

    # After the crash: a fresh server's index must agree with the store, and hold every ack;
    # the token issued before the last kill is still valid (tokens are committed when issued).
    sp = start_server(db_path, env=env)
    try:
        info0 = httpx.get(f"{sp.url}/wxcube/v1/info", params={"access_token": token}).json()
        assert info0["errcode"] == 0, info0
        token = get_token(sp.url, appid, secret)
        info = httpx.get(f"{sp.url}/wxcube/v1/info", params={"access_token": token}).json()
        http_days = {}
        for k in range(5):
            r = httpx.post(
                f"{sp.url}/datacube/getweanalysisappiddailyretaininfo",
                params={"access_token": token},
                json={"begin_date": _ymd(D0 + k), "end_date": _ymd(D0 + k)},
            ).json()
            http_days[D0 + k] = r
    finally:
        sp.stop()
    with Store(db_path) as store:
        openids = {r[0] for r in store.read().execute("SELECT openid FROM users").fetchall()}
        by_batch: dict[int, int] = {}
        for o in openids:
            b = int(o[1:5])
            by_batch[b] = by_batch.get(b, 0) + 1
        for i in acked:
            assert by_batch.get(i) == BATCH, f"acknowledged batch {i} lost: {by_batch.get(i)}"
        for i, n in by_batch.items():
            assert i in acked or i in maybe, f"batch {i} was never sent but is stored"
            assert n == BATCH, f"batch {i} is half applied: {n} of {BATCH} users"
        assert info["users"] == len(openids)
        as_of = parse_date(AS_OF)
        for day, body in http_days.items():
            assert body == sql_retain(store.read(), appid, DAY, day, as_of).as_dict()
            assert body["visit_uv"][0]["value"] % BATCH == 0


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes {alive} survived SIGKILL")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _ymd(day: int) -> str:
    from wxcube.periods import fmt

    return fmt(day)


# --- atomicity of the in-memory index -------------------------------------------------------
def test_readers_never_see_half_a_batch_in_the_index(store: Store) -> None:
    app, _ = store.create_app("race", "UTC")
    idx = Index()
    idx.load_all(store)
    ndays = 366
    torn: list[tuple[int, int, int]] = []
    stop = threading.Event()
    a = idx.app(app.appid)

    def reader() -> None:
        k = 0
        while not stop.is_set() and not torn:
            d = D0 + k % ndays
            k += 7
            with a.locked():  # one state, as bitmap_retain reads it
                new, active = len(a.period(DAY, d, "new")), len(a.period(DAY, d, "active"))
            if new != active:  # every user is new on the only day it visits
                torn.append((d, new, active))

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # switch threads often: shake the race out quickly
    th = threading.Thread(target=reader)
    th.start()
    try:
        deadline = time.monotonic() + 20
        i = 0
        while not torn and time.monotonic() < deadline:
            visits = [{"openid": f"r{i}.{d}", "ts": (D0 + d) * 86400 + 5} for d in range(ndays)]
            ingest_records(store, app.appid, visits, index=idx)
            i += 1
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    assert not torn, f"a reader saw (day, new, active) = {torn[0]} mid-batch"


def test_index_readers_never_crash_while_days_are_added(store: Store) -> None:
    app, _ = store.create_app("grow", "UTC")
    idx = Index()
    idx.load_all(store)
    a = idx.app(app.appid)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set() and not errors:
            try:
                a.users()
                a.day_range()
            except Exception as e:
                errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    th = threading.Thread(target=reader)
    th.start()
    try:
        deadline = time.monotonic() + 20
        i = 0
        while not errors and time.monotonic() < deadline and i < 40:  # (stays before 2100)
            base = D0 + 400 * i  # every batch brings 366 days the index has not seen
            visits = [{"openid": f"g{i}.{d}", "ts": (base + d) * 86400 + 5} for d in range(366)]
            ingest_records(store, app.appid, visits, index=idx)
            i += 1
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    assert not errors, repr(errors[0])


def test_index_only_changes_after_the_commit(store: Store) -> None:
    """A refused batch (47001) and a batch that fails in the store leave the index as it was."""
    app, _ = store.create_app("x", "UTC")
    idx = Index()
    idx.load_all(store)
    ingest_records(store, app.appid, [{"openid": "a", "ts": D0 * 86400}], index=idx)
    before = bitmap_retain(idx.app(app.appid), DAY, D0, D0 + 40).as_dict()
    from wxcube.errors import DataFormatError

    with pytest.raises(DataFormatError):
        ingest_records(
            store,
            app.appid,
            [{"openid": "b", "ts": D0 * 86400}, {"openid": "c", "ts": "yesterday"}],
            index=idx,
        )
    assert bitmap_retain(idx.app(app.appid), DAY, D0, D0 + 40).as_dict() == before
    assert store.app_info(app.appid)["users"] == 1
    # a rebuilt index equals the incrementally maintained one
    fresh = AppIndex.load(store, app.appid)
    for kind, start in ((DAY, D0), (WEEK, WEEK.start_of(D0)), (MONTH, MONTH.start_of(D0))):
        assert bitmap_retain(fresh, kind, start, D0 + 70) == bitmap_retain(
            idx.app(app.appid), kind, start, D0 + 70
        )


# --- backup and restore ---------------------------------------------------------------------
@pytest.fixture
def filled(db_path: Path) -> tuple[Path, str, str, str]:
    """Two apps with data and a token row; returns (db, appid A, secret A, appid B)."""
    a, sa = make_app_with_data(db_path, sample_visits(users=120, days=40), name="A")
    b, _ = make_app_with_data(
        db_path, sample_visits(seed=3, users=50, days=20), name="B", timezone="UTC"
    )
    with Store(db_path) as s, s.write() as c:
        c.execute("INSERT INTO tokens VALUES (?, ?, 'token', 1.0, 9e9, NULL)", ["ab" * 32, a])
    return db_path, a, sa, b


TABLES = ("apps", "tokens", "users", "activity", "schema_version")


def test_backup_then_restore_is_identical(filled: tuple[Path, str, str, str], tmp_path: Path):
    db, a, secret, b = filled
    summary = backup(db, tmp_path / "bk")
    assert summary.rows["activity"] > 0 and summary.rows["apps"] == 2
    assert summary.schema_version == SCHEMA_VERSION
    m = json.loads((tmp_path / "bk" / MANIFEST).read_text())
    assert m["format"] == "wxcube-backup" and set(TABLES) <= set(m["tables"])
    assert oct((tmp_path / "bk").stat().st_mode & 0o777) == "0o700"
    restored = tmp_path / "restored.duckdb"
    r = restore(tmp_path / "bk", restored)
    assert r.rows == {t: n for t, n in summary.rows.items() if t != "schema_version"}
    with Store(db) as s1, Store(restored) as s2:
        for t in TABLES:
            assert _table(s1, t) == _table(s2, t), t
        assert s2.check_secret(a, secret)
        as_of = parse_date(AS_OF)
        for kind in (DAY, WEEK, MONTH):
            start = kind.start_of(parse_date("20240108"))
            for appid in (a, b):
                assert sql_retain(s1.read(), appid, kind, start, as_of) == sql_retain(
                    s2.read(), appid, kind, start, as_of
                )
        # the restored file is a working store: ingest continues where it left off
        ingest_records(s2, b, [{"openid": "late", "ts": 1704067200}])
        assert s2.app_info(b)["users"] == s1.app_info(b)["users"] + 1


def test_restore_refuses_to_overwrite_data_unless_forced(
    filled: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    db, a, _, _ = filled
    backup(db, tmp_path / "bk")
    other = tmp_path / "other.duckdb"
    c_appid, _ = make_app_with_data(other, [("x", 1704067200)], name="C")
    runner = CliRunner()
    res = runner.invoke(main, ["--db", str(other), "restore", str(tmp_path / "bk")])
    assert res.exit_code == 1
    assert "already holds data" in res.output and "--force" in res.output
    with Store(other) as s:
        assert [x.appid for x in s.apps()] == [c_appid]  # untouched
    stale = Path(f"{other}.snapshot")  # the index snapshot of the data being replaced
    stale.write_bytes(b"WXCSNAP1 stale")
    res = runner.invoke(main, ["--db", str(other), "restore", "--force", str(tmp_path / "bk")])
    assert res.exit_code == 0, res.output
    assert not stale.exists()
    assert "restored 2 apps" in res.output
    with Store(db, read_only=True) as s:
        want = {x.appid for x in s.apps()}
    with Store(other) as s:
        assert {x.appid for x in s.apps()} == want
        assert s.app(c_appid) is None and s.app(a) is not None


def test_backup_into_a_non_empty_directory_is_refused(
    filled: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    db = filled[0]
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, ["--db", str(db), "backup", str(tmp_path / "bk")])
    assert res.exit_code == 1 and "not empty" in res.output
    assert os.listdir(tmp_path / "bk") == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bk")]


def test_damaged_or_newer_backups_are_refused(
    filled: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    db = filled[0]
    backup(db, tmp_path / "bk")
    target = tmp_path / "t.duckdb"
    # a flipped byte in a data file
    f = tmp_path / "bk" / "activity.parquet"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="checksum"):
        restore(tmp_path / "bk", target)
    assert not target.exists()
    # a backup written by a newer wxcube
    backup(db, tmp_path / "bk2")
    m = json.loads((tmp_path / "bk2" / MANIFEST).read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "bk2" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*newer wxcube"):
        restore(tmp_path / "bk2", target)
    # a missing file, a missing manifest
    backup(db, tmp_path / "bk3")
    (tmp_path / "bk3" / "users.parquet").unlink()
    with pytest.raises(StoreError, match="missing"):
        restore(tmp_path / "bk3", target)
    with pytest.raises(StoreError, match="not a wxcube backup"):
        restore(tmp_path, target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]


def test_backup_refused_while_served_then_restored_copy_serves_the_same(
    filled: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    """While a server holds the file, backup and restore refuse, naming it; once it stops,
    the backup restored elsewhere serves the same answers to a token issued before."""
    db, a, secret, _ = filled
    runner = CliRunner()
    body = orjson.dumps({"begin_date": "20240108", "end_date": "20240114"})
    sp = start_server(db, env={"WXCUBE_AS_OF": AS_OF})
    try:
        pids = server_pids(sp)
        token = get_token(sp.url, a, secret)
        before = httpx.post(
            f"{sp.url}{WEEK.path}", params={"access_token": token}, content=body
        ).json()
        assert "ref_date" in before, before
        res = runner.invoke(main, ["--db", str(db), "backup", str(tmp_path / "bk")])
        assert res.exit_code == 1
        msg = res.output
        named = [p for p in pids if f"process {p} (" in msg]
        assert named and "wxcube" in msg and "serve" in msg, msg
        pid = named[0]
        assert "stop the server" in msg and "`wxcube backup` again" in msg
        assert "Traceback" not in msg
        assert not (tmp_path / "bk").exists()
        with pytest.raises(StoreLocked, match=f"process {pid}"):
            backup(db, tmp_path / "bk")
        # restore into the held file is refused too (from a backup of another database)
        src = tmp_path / "copy.duckdb"
        make_app_with_data(src, [("x", 1704067200)])
        backup(src, tmp_path / "other")
        res = runner.invoke(main, ["--db", str(db), "restore", "--force", str(tmp_path / "other")])
        assert res.exit_code == 1 and f"process {pid}" in res.output, res.output
    finally:
        sp.stop()
    backup(db, tmp_path / "bk")
    copy = tmp_path / "restored.duckdb"
    restore(tmp_path / "bk", copy)
    sp = start_server(copy, env={"WXCUBE_AS_OF": AS_OF})
    try:
        again = httpx.post(f"{sp.url}{WEEK.path}", params={"access_token": token}, content=body)
        assert again.json() == before
    finally:
        sp.stop()


def test_backup_restore_cli_round_trip_in_a_subprocess(
    filled: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    """The installed entry point, end to end: exit codes and messages."""
    db = filled[0]
    run = [sys.executable, "-m", "wxcube", "--db"]
    out = subprocess.run(
        [*run, str(db), "backup", str(tmp_path / "bk")], capture_output=True, text=True, check=True
    ).stdout
    assert "backed up 2 apps" in out and "tokens" in out
    new = tmp_path / "new.duckdb"
    out = subprocess.run(
        [*run, str(new), "restore", str(tmp_path / "bk")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"into {new}" in out
    listed = subprocess.run(
        [*run, str(new), "app", "list", "--json"], capture_output=True, text=True, check=True
    ).stdout
    assert {json.loads(x)["name"] for x in listed.splitlines()} == {"A", "B"}


def _wait_open(pid: int, path: Path) -> None:
    """Until process ``pid`` has ``path`` open (or has exited)."""
    target = str(path.resolve())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return
            except OSError:
                continue
        time.sleep(0.005)


# --- a killed CLI ingest --------------------------------------------------------------------
def test_a_killed_ingest_applies_all_or_nothing(db_path: Path, tmp_path: Path) -> None:
    """SIGKILL `wxcube ingest` at several moments: each file is applied whole or not at all."""
    import duckdb

    appid, _ = make_app_with_data(db_path, name="cli", timezone="UTC")
    n = 300_000
    files = []
    for k in range(3):
        f = tmp_path / f"v{k}.csv"
        c = duckdb.connect()
        c.execute(
            f"COPY (SELECT 'k{k}_' || (i % {n // 2}) AS openid, 1704067200 + i * 7 AS ts "
            f"FROM range({n}) t(i)) TO '{f}' (HEADER)"
        )
        c.close()
        files.append(f)
    outcomes = []
    cmd = [sys.executable, "-m", "wxcube", "--db", str(db_path), "ingest", "--app", appid, "-q"]
    for k, (f, delay) in enumerate(zip(files, (0.05, 0.3, None), strict=True)):
        p = subprocess.Popen([*cmd, str(f)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_open(p.pid, db_path)  # the ingest has the database open: it is at work
        if delay is not None:
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
        code = p.wait(60)  # the last one runs to its end, then is checked the same way
        with Store(db_path) as s:
            users = (
                s.read()
                .execute("SELECT count(*) FROM users WHERE starts_with(openid, ?)", [f"k{k}_"])
                .fetchall()[0][0]
            )
        assert users in (0, n // 2), f"file {k} half applied: {users} users"
        assert code == 0 or code == -signal.SIGKILL
        if code == 0:
            assert users == n // 2, "ingest exited 0 but its visits are missing"
        outcomes.append("applied" if users else "nothing")
    print(f"\nkilled ingests: {outcomes}")
    with Store(db_path) as s:  # the file still works after the kills
        assert s.app_info(appid)["users"] == outcomes.count("applied") * (n // 2)
