"""The store: apps, secrets, the one write path's invariants."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from wxcube.errors import StoreError
from wxcube.ingest import ingest_records
from wxcube.store import Store, verify_secret


def test_secret_is_a_salted_slow_hash(store: Store) -> None:
    app, secret = store.create_app("a")
    stored = (
        store.read()
        .execute("SELECT secret_hash FROM apps WHERE appid = ?", [app.appid])
        .fetchall()[0][0]
    )
    assert stored.startswith("scrypt$") and secret not in stored
    assert verify_secret(secret, stored) and not verify_secret(secret + "x", stored)
    assert len(app.appid) == 18 and app.appid.startswith("wx")


def test_uniqueness_and_first_day_invariants(store: Store) -> None:
    """users (app, openid) unique with dense uids; activity (app, day, uid) unique;
    first_day == min(day) per user, for two apps sharing openids."""
    a, _ = store.create_app("a", "UTC")
    b, _ = store.create_app("b", "Asia/Shanghai")
    base = dt.datetime(2024, 1, 10, tzinfo=dt.UTC).timestamp()
    for appid in (a.appid, b.appid):
        for shift in (5, 0, 9, 0, -3):  # out of order, repeated, late
            visits = [{"openid": f"u{i}", "ts": base + 86400 * (shift + i % 4)} for i in range(50)]
            ingest_records(store, appid, visits)
    c = store.read()
    assert c.execute(
        "SELECT count(*) FROM (SELECT app, openid FROM users GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall() == [(0,)]
    assert c.execute(
        "SELECT count(*) FROM (SELECT app, day, uid FROM activity GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall() == [(0,)]
    assert c.execute(
        "SELECT app, min(uid), max(uid), count(*) FROM users GROUP BY app ORDER BY app"
    ).fetchall() == sorted([(a.appid, 0, 49, 50), (b.appid, 0, 49, 50)])
    assert c.execute(
        "SELECT count(*) FROM users u JOIN (SELECT app, uid, min(day) AS d FROM activity "
        "GROUP BY ALL) m USING (app, uid) WHERE u.first_day <> m.d"
    ).fetchall() == [(0,)]


def test_missing_database_read_only(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope.duckdb", read_only=True)
