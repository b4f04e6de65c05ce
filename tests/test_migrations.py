"""Upgrades: a database made by the first schema opens and migrates under the current code;
a database from a newer wxcube is refused with a clear message; schema_version records it.

The first schema is frozen here as text (not imported from ``store.MIGRATIONS``), so an edit
to the shipped first migration, which would break every existing database, fails this file.
"""

from __future__ import annotations

import datetime as dt
import gc
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from wxcube.cli import main
from wxcube.errors import StoreError
from wxcube.index import AppIndex
from wxcube.ingest import ingest_records
from wxcube.periods import DAY, MONTH, WEEK, parse_date
from wxcube.retention import bitmap_retain, sql_retain
from wxcube.store import MIGRATIONS, SCHEMA_VERSION, Store, hash_secret

SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL);
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
    app VARCHAR NOT NULL, openid VARCHAR NOT NULL, uid INTEGER NOT NULL, first_day DATE NOT NULL
);
CREATE TABLE activity (app VARCHAR NOT NULL, day DATE NOT NULL, uid INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1, TIMESTAMP '2024-01-01 00:00:00');
"""
APPID = "wx00112233445566aa"
SECRET = "0123456789abcdef0123456789abcdef"
AS_OF = parse_date("20240331")


def _v1_database(path: Path) -> None:
    """A database as the first wxcube wrote it, filled by hand (no current code involved)."""
    c = duckdb.connect(str(path))
    c.execute(SCHEMA_V1)
    c.execute(
        "INSERT INTO apps VALUES (?, 'old app', 'Asia/Shanghai', ?, 1700000000.0, 3)",
        [APPID, hash_secret(SECRET)],
    )
    c.execute(
        "INSERT INTO tokens VALUES (?, ?, 'token', 1700000000.0, 1700007200.0, NULL)",
        ["ff" * 32, APPID],
    )
    c.execute(
        "INSERT INTO users VALUES (?, 'alice', 0, DATE '2024-01-01'), "
        "(?, 'bob', 1, DATE '2024-01-01'), (?, 'carol', 2, DATE '2024-01-02')",
        [APPID, APPID, APPID],
    )
    c.execute(
        "INSERT INTO activity VALUES "
        "(?, DATE '2024-01-01', 0), (?, DATE '2024-01-01', 1), (?, DATE '2024-01-02', 2), "
        "(?, DATE '2024-01-02', 0), (?, DATE '2024-01-08', 1)",
        [APPID] * 5,
    )
    c.close()


def test_the_first_migration_is_the_frozen_first_schema(tmp_path: Path) -> None:
    """Creating a new database must produce exactly the first schema's tables and columns."""
    frozen, fresh = duckdb.connect(), duckdb.connect(str(tmp_path / "fresh.duckdb"))
    frozen.execute(SCHEMA_V1)
    fresh.execute(MIGRATIONS[0])

    def columns(c: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
        rows = c.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_name <> 'schema_version' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        return [tuple(map(str, r)) for r in rows]  # type: ignore[misc]

    assert columns(fresh) == columns(frozen)


def test_a_v1_database_opens_and_migrates(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    _v1_database(db)
    with Store(db) as s:
        assert s.schema_version() == SCHEMA_VERSION
        rows = (
            s.read().execute("SELECT version, applied_at FROM schema_version ORDER BY 1").fetchall()
        )
        assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
        assert rows[0][1] == dt.datetime(2024, 1, 1)  # history is kept, not rewritten
        assert all(isinstance(r[1], dt.datetime) for r in rows)
        # the old data reads and answers as before
        assert s.check_secret(APPID, SECRET)
        assert not s.check_secret(APPID, SECRET[::-1])
        assert s.app_info(APPID) == {
            "first_day": parse_date("20240101"),
            "last_day": parse_date("20240108"),
            "users": 3,
        }
        d = parse_date("20240101")
        r = sql_retain(s.read(), APPID, DAY, d, AS_OF).as_dict()
        assert r["visit_uv_new"][:2] == [{"key": 0, "value": 2}, {"key": 1, "value": 1}]
        assert r["visit_uv"][:2] == [{"key": 0, "value": 2}, {"key": 1, "value": 1}]
    with Store(db) as s:
        # the write path continues from the stored next_uid
        ingest_records(
            s,
            APPID,
            [{"openid": "dave", "ts": "2024-01-08T09:00:00+08:00"}, {"openid": "alice", "ts": 1}],
        )
        uids = dict(s.read().execute("SELECT openid, uid FROM users").fetchall())
        assert uids["dave"] == 3 and uids["alice"] == 0
        assert s.app_info(APPID)["first_day"] == parse_date("19700101")  # alice moved earlier
        idx = AppIndex.load(s, APPID)
        for kind in (DAY, WEEK, MONTH):
            start = kind.start_of(parse_date("20240101"))
            assert bitmap_retain(idx, kind, start, AS_OF) == sql_retain(
                s.read(), APPID, kind, start, AS_OF
            )
    with Store(db) as s:  # opening again changes nothing
        assert s.read().execute("SELECT count(*) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
        )


def test_a_new_database_records_its_version(tmp_path: Path) -> None:
    with Store(tmp_path / "new.duckdb") as s:
        rows = s.read().execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


def _newer(db: Path) -> None:
    with Store(db) as s:
        s.create_app("future")
        s.conn.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])


def test_a_newer_database_is_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "newer.duckdb"
    _newer(db)
    msg = ""
    try:
        Store(db)
    except StoreError as e:  # not kept: its traceback holds the refused connection
        msg = str(e)
    assert f"schema version {SCHEMA_VERSION + 1}" in msg
    assert f"knows up to {SCHEMA_VERSION}" in msg and "Upgrade wxcube" in msg
    res = CliRunner().invoke(main, ["--db", str(db), "app", "create", "--name", "x"])
    assert res.exit_code == 1
    assert "Upgrade wxcube" in res.output and "Traceback" not in res.output
    del res  # its exc_info holds the refused Store (Store.__init__ does not close on refusal)
    gc.collect()
    c = duckdb.connect(str(db), read_only=True)  # the refused opens changed nothing
    assert c.execute("SELECT max(version), count(*) FROM schema_version").fetchone() == (
        SCHEMA_VERSION + 1,
        SCHEMA_VERSION + 1,
    )
    assert c.execute("SELECT count(*) FROM apps").fetchone() == (1,)
    c.close()


def test_a_newer_database_is_refused_read_only_too(tmp_path: Path) -> None:
    db = tmp_path / "newer.duckdb"
    _newer(db)
    with pytest.raises(StoreError, match="Upgrade wxcube"):
        Store(db, read_only=True)
