"""`wxcube backup DIR` / `wxcube restore DIR`: a consistent, portable copy of the store.

A backup is a directory with one Parquet file per table and ``wxcube-backup.json`` (format,
schema version, row counts, column types and a SHA-256 per file). Parquet rather than a copy
of the DuckDB file: it is read back by any later DuckDB, and the manifest lets a restore check
it is complete and untouched before it replaces anything.

- Backup reads every table inside one transaction (one snapshot) and writes into a hidden
  sibling directory that is renamed to DIR only once complete, so DIR is never half written.
- Restore rebuilds the schema at the backup's version (replaying the migrations), loads the
  rows, checks the counts, migrates to the current version, and only then swaps the new file
  into place. It refuses a backup from a newer wxcube, a damaged backup, and a database that
  already holds data unless ``force``.
- A running server holds the DuckDB file exclusively: both refuse, naming the process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .errors import StoreError, StoreLocked
from .store import MIGRATIONS, SCHEMA_VERSION, Store

FORMAT = "wxcube-backup"
MANIFEST = "wxcube-backup.json"
# The schema_version table is created by Store.migrate outside MIGRATIONS; same DDL here.
_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)"
)
_DATA_TABLES = ("apps", "users", "activity", "tokens")


@dataclass(frozen=True)
class Summary:
    """What a backup or restore handled."""

    directory: Path
    db: Path
    schema_version: int
    rows: dict[str, int]

    def describe(self) -> str:
        r = self.rows
        return (
            f"{r.get('apps', 0):,} apps, {r.get('users', 0):,} users, "
            f"{r.get('activity', 0):,} (user, day) pairs, {r.get('tokens', 0):,} tokens "
            f"(schema version {self.schema_version})"
        )


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _holder(err: Exception) -> str:
    """`process 123 (wxcube serve --port 8000)` from DuckDB's lock error, as far as known."""
    m = re.search(r"PID (\d+)", str(err))
    if not m:
        return "another process"
    pid = m.group(1)
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmd = " ".join(
            Path(a).name if i == 0 else a for i, a in enumerate(raw.decode().split("\0")) if a
        )
    except OSError:
        cmd = ""
    return f"process {pid} ({cmd})" if cmd else f"process {pid}"


def _connect(path: Path, *, read_only: bool, doing: str, cmd: str) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as e:
        if "lock" not in str(e).lower():
            raise StoreError(f"cannot open {path}: {e}") from None
        raise StoreLocked(
            f"cannot {doing} {path}: it is held by {_holder(e)}, usually a running "
            "`wxcube serve`. DuckDB lets one process open the file, so stop the server "
            f"(Ctrl-C it, or kill the process), run `wxcube {cmd}` again, then start it again."
        ) from None
    except duckdb.Error as e:
        raise StoreError(f"cannot open {path}: {e}") from None


def _tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    if "schema_version" not in _tables(conn):
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _count(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# --- backup -------------------------------------------------------------------------------
def backup_connection(conn: duckdb.DuckDBPyConnection, directory: Path, source: str) -> Summary:
    """Write every table of ``conn`` to ``directory`` from one snapshot.

    Usable in process by whoever holds the store (``with store.locked() as c: ...``), which is
    how a running server could back itself up.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise StoreError(f"{directory} exists and is not empty: give a new directory")
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{directory.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)  # the backup holds secret and token hashes
    try:
        tables: dict[str, Any] = {}
        conn.execute("BEGIN TRANSACTION")
        try:
            version = _schema_version(conn)
            if version == 0:
                raise StoreError(f"{source} is not a wxcube database (no schema_version table)")
            for t in _tables(conn):
                cols = conn.execute(f"DESCRIBE {_ident(t)}").fetchall()
                rows = _count(conn, f"SELECT count(*) FROM {_ident(t)}")
                conn.execute(
                    f"COPY {_ident(t)} TO {_q(str(tmp / (t + '.parquet')))} (FORMAT parquet)"
                )
                tables[t] = {
                    "file": f"{t}.parquet",
                    "rows": rows,
                    "columns": [[str(c[0]), str(c[1])] for c in cols],
                }
        finally:
            conn.execute("COMMIT")
        for meta in tables.values():
            meta["sha256"] = _sha256(tmp / meta["file"])
        from . import __version__

        manifest = {
            "format": FORMAT,
            "schema_version": version,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "wxcube_version": __version__,
            "duckdb_version": duckdb.__version__,
            "source": source,
            "tables": tables,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if directory.exists():
            directory.rmdir()  # empty, checked above
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Summary(directory, Path(source), version, {t: m["rows"] for t, m in tables.items()})


def backup(db: str | Path, directory: str | Path) -> Summary:
    """Back up the database file ``db`` (which no server may hold) into ``directory``."""
    db = Path(db)
    if not db.exists():
        raise StoreError(f"{db} does not exist: nothing to back up")
    conn = _connect(db, read_only=True, doing="back up", cmd="backup")
    try:
        return backup_connection(conn, Path(directory), str(db))
    finally:
        conn.close()


# --- restore ------------------------------------------------------------------------------
def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(
            f"{directory} is not a wxcube backup (no {MANIFEST}; make one with wxcube backup)"
        ) from None
    except (OSError, ValueError) as e:
        raise StoreError(f"{path} is unreadable: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise StoreError(f"{path} is not a wxcube backup manifest (format != {FORMAT!r})")
    version = m.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"{path}: schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{directory} holds schema version {version}; this wxcube knows up to "
            f"{SCHEMA_VERSION}. Restore it with a newer wxcube."
        )
    tables = m.get("tables")
    if not isinstance(tables, dict) or not all(t in tables for t in _DATA_TABLES):
        raise StoreError(f"{path}: incomplete (expected tables {', '.join(_DATA_TABLES)})")
    for t, meta in tables.items():
        f = directory / str(meta.get("file", ""))
        if not f.is_file() or f.parent != directory:
            raise StoreError(f"{directory}: {t}'s file {meta.get('file')!r} is missing")
        if _sha256(f) != meta.get("sha256"):
            raise StoreError(f"{f} does not match its checksum: the backup is damaged")
    return m


def _contents(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    have = set(_tables(conn))
    return {t: _count(conn, f"SELECT count(*) FROM {t}") for t in _DATA_TABLES if t in have}


@contextlib.contextmanager
def _cleanup(*paths: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def restore(directory: str | Path, db: str | Path, *, force: bool = False) -> Summary:
    """Restore the backup in ``directory`` into the database file ``db``.

    Refuses if ``db`` holds data unless ``force`` (then it is replaced as a whole).
    """
    directory, db = Path(directory), Path(db)
    manifest = read_manifest(directory)
    version: int = manifest["schema_version"]
    tables: dict[str, Any] = manifest["tables"]
    if db.exists():
        conn = _connect(db, read_only=True, doing="restore into", cmd="restore")
        try:
            held = {t: n for t, n in _contents(conn).items() if n}
        finally:
            conn.close()
        if held and not force:
            what = ", ".join(f"{n:,} {t}" for t, n in held.items())
            raise StoreError(
                f"{db} already holds data ({what}); restoring would replace all of it. "
                f"Pass --force to replace it (back it up first: wxcube --db {db} backup DIR), "
                "or restore into a new file with --db."
            )
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.parent / f".{db.name}.restore-{os.getpid()}-{time.monotonic_ns()}"
    tmp_wal = tmp.with_name(tmp.name + ".wal")
    with _cleanup(tmp, tmp_wal):
        conn = duckdb.connect(str(tmp))
        try:
            conn.execute("BEGIN TRANSACTION")
            conn.execute(_SCHEMA_VERSION_DDL)
            for sql in MIGRATIONS[:version]:
                conn.execute(sql)
            known = set(_tables(conn))
            for t, meta in tables.items():
                if t not in known:
                    raise StoreError(f"{directory}: table {t!r} is not in schema {version}")
                cols = ", ".join(_ident(str(c[0])) for c in meta["columns"])
                conn.execute(
                    f"INSERT INTO {_ident(t)} ({cols}) SELECT {cols} "
                    f"FROM read_parquet({_q(str(directory / meta['file']))})"
                )
                got = _count(conn, f"SELECT count(*) FROM {_ident(t)}")
                if got != meta["rows"]:
                    raise StoreError(
                        f"{directory}: {t} has {got} rows but the manifest says {meta['rows']}"
                    )
            conn.execute("COMMIT")
            conn.execute("CHECKPOINT")
        except duckdb.Error as e:
            raise StoreError(f"cannot restore {directory}: {e}") from None
        finally:
            conn.close()
        with Store(tmp) as s:  # migrate to the current schema; proves the file opens
            rows = _contents(s.conn)
            s.conn.execute("CHECKPOINT")
        wal = db.with_name(db.name + ".wal")
        wal.unlink(missing_ok=True)  # a stale WAL must never be replayed onto the new file
        # the replaced database's index snapshot (wxcube.snapshot) describes other data
        db.with_name(db.name + ".snapshot").unlink(missing_ok=True)
        os.replace(tmp, db)
    return Summary(directory, db, version, rows)
