"""The DuckDB store: apps, tokens, users, activity. One connection, one serialized write path.

Activity per (user, local day) is the sufficient statistic for retention, so raw events are not
kept. Uniqueness of (app, openid) in ``users`` and of (app, day, uid) in ``activity`` is kept by
the write path (anti-joins inside one transaction) rather than by DuckDB indexes: ART indexes
cost memory and slow bulk inserts several-fold, and there is exactly one writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from .errors import StoreError, StoreLocked
from .periods import EPOCH, to_daynum

SCHEMA_VERSION = 1

# Each entry upgrades the schema from version i to i+1 (index 0 creates version 1).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE apps (
        appid VARCHAR NOT NULL PRIMARY KEY,
        name VARCHAR NOT NULL,
        timezone VARCHAR NOT NULL,
        secret_hash VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        next_uid BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        token_hash VARCHAR NOT NULL PRIMARY KEY,
        appid VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        issued_at DOUBLE NOT NULL,
        expires_at DOUBLE NOT NULL,
        revoked_at DOUBLE
    );
    CREATE TABLE users (
        app VARCHAR NOT NULL,
        openid VARCHAR NOT NULL,
        uid INTEGER NOT NULL,
        first_day DATE NOT NULL
    );
    CREATE TABLE activity (
        app VARCHAR NOT NULL,
        day DATE NOT NULL,
        uid INTEGER NOT NULL
    );
    """,
]

_APPID = re.compile(r"wx[0-9a-f]{16}")
DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class App:
    appid: str
    name: str
    timezone: str
    created_at: float


@dataclass
class Delta:
    """What one applied batch changed, for the in-memory index (ascending arrays)."""

    appid: str
    pair_days: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    pair_uids: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    # users whose first day is new or moved earlier: uid, old first day (-1 if new), new first day
    first_uids: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    first_old: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    first_new: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))


@dataclass(frozen=True)
class ApplyResult:
    visits: int  # rows offered
    pairs_added: int  # new (user, day) pairs
    duplicates: int  # rows that added nothing new
    new_users: int
    delta: Delta | None


# --- secrets -------------------------------------------------------------------------------
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_secret(secret: str) -> str:
    """Salted scrypt, stored as ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${h.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, want = stored.split("$")
        got = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), want)


def new_secret() -> str:
    return secrets.token_hex(16)  # 32 hex characters, like a WeChat AppSecret


def _check_timezone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise StoreError(
            f"unknown timezone {tz!r} (use an IANA name such as Asia/Shanghai)"
        ) from None


def _lock_message(path: Path, err: Exception) -> str:
    pid = re.search(r"PID (\d+)", str(err))
    who = f" (process {pid.group(1)})" if pid else ""
    return (
        f"{path} is held by another process{who}, usually a running `wxcube serve`. "
        "DuckDB allows one writer: stop it, or send the command to the server with "
        "--url http://HOST:PORT (and --secret for an app, or WXCUBE_ADMIN_KEY for `app`)."
    )


class Store:
    """One DuckDB file. All writes go through :meth:`write` (serialized by a lock)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        # apps whose users (openid -> uid, first_day) are mirrored in an in-memory temp table,
        # see _users_source
        self._mirrored: set[str] = set()
        self._before_close: list[Callable[[], None]] = []
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path} does not exist (create an app first: wxcube app create)")
        try:
            self.conn = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise StoreLocked(_lock_message(self.path, e)) from None
            raise StoreError(f"cannot open {self.path}: {e}") from None
        except duckdb.Error as e:
            raise StoreError(f"cannot open {self.path}: {e}") from None
        try:
            if read_only:
                self._check_version(self.schema_version())
            else:
                self.migrate()
        except BaseException:
            self.conn.close()
            raise

    # --- lifecycle ---------------------------------------------------------------------
    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (with the store still open) when the store is closed: an index loaded
        from this store writes its snapshot then (see ``Index.load_all``)."""
        self._before_close.append(fn)

    def close(self) -> None:
        with self._lock:
            hooks, self._before_close = self._before_close, []
            for fn in hooks:
                # a snapshot only saves time: never fail a close for it
                with contextlib.suppress(Exception):
                    fn()
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        n = _one(
            self.conn,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'",
        )
        return _one(self.conn, "SELECT max(version) FROM schema_version") if n else 0

    def _check_version(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}; this wxcube knows up to "
                f"{SCHEMA_VERSION}. Upgrade wxcube."
            )

    def migrate(self) -> None:
        with self.write() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
            current = self.schema_version()
            self._check_version(current)
            for v in range(current, SCHEMA_VERSION):
                c.execute(MIGRATIONS[v])
                c.execute("INSERT INTO schema_version VALUES (?, now())", [v + 1])

    @contextmanager
    def locked(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the connection for a multi-step job (staging temp tables, then a write)."""
        with self._lock:
            yield self.conn

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The one write path: serialized, one transaction, all or nothing."""
        with self._lock:
            self.conn.execute("BEGIN TRANSACTION")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def read(self) -> duckdb.DuckDBPyConnection:
        """A cursor for reads; DuckDB gives it a consistent snapshot per query."""
        return self.conn.cursor()

    # --- apps --------------------------------------------------------------------------
    def create_app(self, name: str = "", timezone: str = DEFAULT_TZ) -> tuple[App, str]:
        """Create an app; returns it and its secret (shown once, stored only as a hash)."""
        _check_timezone(timezone)
        appid = "wx" + secrets.token_hex(8)
        secret = new_secret()
        app = App(appid, name or appid, timezone, time.time())
        with self.write() as c:
            c.execute(
                "INSERT INTO apps (appid, name, timezone, secret_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [app.appid, app.name, app.timezone, hash_secret(secret), app.created_at],
            )
        return app, secret

    def apps(self) -> list[App]:
        rows = (
            self.read()
            .execute("SELECT appid, name, timezone, created_at FROM apps ORDER BY created_at")
            .fetchall()
        )
        return [App(*r) for r in rows]

    def app(self, appid: str) -> App | None:
        if not isinstance(appid, str) or not _APPID.fullmatch(appid):
            return None
        r = (
            self.read()
            .execute("SELECT appid, name, timezone, created_at FROM apps WHERE appid = ?", [appid])
            .fetchone()
        )
        return App(*r) if r else None

    def require_app(self, appid: str) -> App:
        app = self.app(appid)
        if app is None:
            raise StoreError(f"no app {appid!r} in {self.path} (see: wxcube app list)")
        return app

    def check_secret(self, appid: str, secret: str) -> bool:
        r = self.read().execute("SELECT secret_hash FROM apps WHERE appid = ?", [appid]).fetchone()
        return r is not None and verify_secret(secret, r[0])

    def rotate_secret(self, appid: str, now: float | None = None) -> str:
        """New secret; every token issued under the old one is revoked at once."""
        self.require_app(appid)
        secret = new_secret()
        with self.write() as c:
            c.execute(
                "UPDATE apps SET secret_hash = ? WHERE appid = ?", [hash_secret(secret), appid]
            )
            c.execute(
                "UPDATE tokens SET revoked_at = ? WHERE appid = ? AND revoked_at IS NULL",
                [time.time() if now is None else now, appid],
            )
        return secret

    # --- data --------------------------------------------------------------------------
    def clear_data(self, appid: str) -> None:
        """Forget an app's users and visits (the demo regenerates its year this way)."""
        with self.write() as c:
            c.execute("DELETE FROM activity WHERE app = ?", [appid])
            c.execute("DELETE FROM users WHERE app = ?", [appid])
            c.execute("UPDATE apps SET next_uid = 0 WHERE appid = ?", [appid])
        self._mirrored.discard(appid)  # the users mirror is rebuilt from the table next time

    def app_info(self, appid: str) -> dict[str, Any]:
        r = (
            self.read()
            .execute("SELECT min(day), max(day) FROM activity WHERE app = ?", [appid])
            .fetchone()
        )
        u = self.read().execute("SELECT count(*) FROM users WHERE app = ?", [appid]).fetchone()
        first, last = r or (None, None)
        return {
            "first_day": to_daynum(first) if first else None,
            "last_day": to_daynum(last) if last else None,
            "users": int(u[0]) if u else 0,
        }

    def apply(self, appid: str, staged: str, *, want_delta: bool = False) -> ApplyResult:
        """Apply validated visits from the relation ``staged(openid VARCHAR, day DATE)``.

        validate (done by the caller) → map openids to uids → insert new (uid, day) →
        lower first_day where needed → commit. The caller updates the index afterwards.
        """
        mirror = _mirror_name(appid) if want_delta or appid in self._mirrored else None
        try:
            result = self._apply(appid, staged, mirror, want_delta)
        except BaseException:
            self._mirrored.discard(appid)  # rolled back with the transaction
            raise
        if mirror is not None:
            self._mirrored.add(appid)  # only once the transaction that made it committed
        return result

    def mirror_users(self, appid: str) -> None:
        """Build the in-memory users mirror of ``appid`` now, so that the first small batch of
        a long-lived writer (the server, at start) does not pay for it."""
        mirror = _mirror_name(appid)
        if mirror is None or appid in self._mirrored:
            return
        with self.write() as c:
            self._users_source(c, appid, mirror)
        self._mirrored.add(appid)

    def _users_source(self, c: duckdb.DuckDBPyConnection, appid: str, mirror: str | None) -> str:
        """Where to look openids up. A long-lived writer (the server: callers that maintain an
        index) keeps each app's users in an in-memory temp table: scanning 2M openids there
        costs a quarter of decompressing them from the users table, for every small batch.
        The mirror is created and updated inside the write transaction, so it never drifts."""
        if mirror is None:
            return "(SELECT openid, uid, first_day FROM users WHERE app = $app)"
        if appid not in self._mirrored:
            c.execute(
                f"CREATE OR REPLACE TEMP TABLE {mirror} AS "
                "SELECT hash(openid) AS h, openid, uid, first_day FROM users WHERE app = ?",
                [appid],
            )
        # join on the (integer) hash first, then on the openid itself: exact, and the scan
        # never hashes two million strings
        return (
            f"(SELECT m.openid, m.uid, m.first_day FROM {mirror} m "
            "JOIN (SELECT DISTINCT hash(openid) AS h FROM _firsts) q USING (h))"
        )

    def _apply(self, appid: str, staged: str, mirror: str | None, want_delta: bool) -> ApplyResult:
        with self.write() as c:
            users = self._users_source(c, appid, mirror)
            c.execute(
                f"CREATE OR REPLACE TEMP TABLE _pairs AS SELECT DISTINCT openid, day FROM {staged}"
            )
            visits = _one(c, f"SELECT count(*) FROM {staged}")
            c.execute(
                "CREATE OR REPLACE TEMP TABLE _firsts AS "
                "SELECT openid, min(day) AS d FROM _pairs GROUP BY openid"
            )
            c.execute(
                "CREATE OR REPLACE TEMP TABLE _map AS "
                "SELECT f.openid, f.d, u.uid, u.first_day AS old_first FROM _firsts f "
                f"LEFT JOIN {users} u USING (openid)",
                {"app": appid} if mirror is None else None,
            )
            base = _one(c, "SELECT next_uid FROM apps WHERE appid = ?", [appid])
            c.execute(
                "CREATE OR REPLACE TEMP TABLE _newusers AS "
                "SELECT openid, d, ($base + row_number() OVER (ORDER BY d, openid) - 1)::INTEGER "
                "AS uid FROM _map WHERE uid IS NULL",
                {"base": base},
            )
            new_users = _one(c, "SELECT count(*) FROM _newusers")
            if new_users:  # (statements that would change nothing are skipped: small batches)
                c.execute(
                    "INSERT INTO users SELECT $app, openid, uid, d FROM _newusers", {"app": appid}
                )
                if mirror is not None:
                    c.execute(
                        f"INSERT INTO {mirror} SELECT hash(openid), openid, uid, d FROM _newusers"
                    )
                c.execute(
                    "UPDATE apps SET next_uid = next_uid + ? WHERE appid = ?", [new_users, appid]
                )
            c.execute(
                "CREATE OR REPLACE TEMP TABLE _moved AS "
                "SELECT uid, old_first, d FROM _map WHERE uid IS NOT NULL AND d < old_first"
            )
            if _one(c, "SELECT count(*) FROM _moved"):
                c.execute(
                    "UPDATE users SET first_day = m.d FROM _moved m "
                    "WHERE users.app = $app AND users.uid = m.uid",
                    {"app": appid},
                )
                if mirror is not None:
                    c.execute(
                        f"UPDATE {mirror} SET first_day = m.d FROM _moved m "
                        f"WHERE {mirror}.uid = m.uid"
                    )
            c.execute(
                "CREATE OR REPLACE TEMP TABLE _new AS "
                "WITH ids AS (SELECT openid, uid FROM _map WHERE uid IS NOT NULL "
                "             UNION ALL SELECT openid, uid FROM _newusers), "
                "     bounds AS (SELECT min(day) AS lo, max(day) AS hi FROM _pairs) "
                "SELECT p.day, ids.uid FROM _pairs p JOIN ids USING (openid) "
                "ANTI JOIN (SELECT day, uid FROM activity, bounds "
                "           WHERE app = $app AND day BETWEEN bounds.lo AND bounds.hi) a "
                "ON a.day = p.day AND a.uid = ids.uid",
                {"app": appid},
            )
            c.execute("INSERT INTO activity SELECT $app, day, uid FROM _new", {"app": appid})
            added = _one(c, "SELECT count(*) FROM _new")
            delta = self._delta(c, appid) if want_delta else None
            for t in ("_pairs", "_firsts", "_map", "_newusers", "_moved", "_new"):
                c.execute(f"DROP TABLE {t}")
        return ApplyResult(visits, added, visits - added, new_users, delta)

    @staticmethod
    def _delta(c: duckdb.DuckDBPyConnection, appid: str) -> Delta:
        epoch = f"DATE '{EPOCH.isoformat()}'"
        pairs = c.execute(
            f"SELECT (day - {epoch})::INTEGER AS d, uid FROM _new ORDER BY d, uid"
        ).fetchnumpy()
        firsts = c.execute(
            f"SELECT uid, -1 AS old, (d - {epoch})::INTEGER AS new FROM _newusers "
            f"UNION ALL SELECT uid, (old_first - {epoch})::INTEGER, (d - {epoch})::INTEGER "
            "FROM _moved"
        ).fetchnumpy()
        i32 = np.int32
        return Delta(
            appid,
            np.asarray(pairs["d"], i32),
            np.asarray(pairs["uid"], i32),
            np.asarray(firsts["uid"], i32),
            np.asarray(firsts["old"], i32),
            np.asarray(firsts["new"], i32),
        )

    def activity_arrays(
        self, appid: str
    ) -> tuple[
        npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]
    ]:
        """(days, uids) of activity sorted by day then uid, and (first_days, uids) of users."""
        epoch = f"DATE '{EPOCH.isoformat()}'"
        cur = self.read()
        a = cur.execute(
            f"SELECT (day - {epoch})::INTEGER AS d, uid FROM activity WHERE app = ? "
            "ORDER BY d, uid",
            [appid],
        ).fetchnumpy()
        u = cur.execute(
            f"SELECT (first_day - {epoch})::INTEGER AS d, uid FROM users WHERE app = ? "
            "ORDER BY d, uid",
            [appid],
        ).fetchnumpy()
        i32 = np.int32
        return (
            np.asarray(a["d"], i32),
            np.asarray(a["uid"], i32),
            np.asarray(u["d"], i32),
            np.asarray(u["uid"], i32),
        )


def _mirror_name(appid: str) -> str | None:
    return f"_users_{appid}" if _APPID.fullmatch(appid) else None


def _one(c: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> int:
    """First column of the first row as int (0 for none). ``fetchall``, never ``fetchone``:
    an unfinished result left on the shared connection breaks the next statement."""
    rows = c.execute(sql, params).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0
