"""The persisted index snapshot, and the caches that make the bitmap path fast: cached retention
numbers (``AppIndex.counts``) and the server's in-memory users mirror must never drift from the
store, whatever the order of ingests, late visits and restarts."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from wxcube import snapshot
from wxcube.index import AppIndex, Index
from wxcube.ingest import Source, ingest_files, ingest_records
from wxcube.periods import KINDS, Kind, to_daynum
from wxcube.retention import Retain, bitmap_retain, sql_retain
from wxcube.store import Store

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
AS_OF = to_daynum(dt.date(2024, 4, 30))


def _visits(rnd: random.Random, n: int, users: int, lo_day: int, hi_day: int) -> list[dict]:
    return [
        {
            "openid": f"o{rnd.randrange(users):04d}",
            "ts": int(START + rnd.randrange(lo_day, hi_day) * 86400 + rnd.randrange(86400)),
        }
        for _ in range(n)
    ]


def _periods() -> list[tuple[Kind, int]]:
    """Every week and month, every third day (the SQL path is the slow part of this test)."""
    first = to_daynum(dt.date(2024, 1, 1))
    out = []
    for kind in KINDS.values():
        starts = [s for s in kind.starts(first, AS_OF) if kind.end(s) <= AS_OF]
        out += [(kind, s) for s in (starts[::3] if kind.name == "day" else starts)]
    return out


def _answers(idx: AppIndex, counted: bool) -> dict[str, Retain]:
    out = {}
    for kind, s in _periods():
        if counted:
            keys = kind.present_keys(s, AS_OF)
            got = idx.counts(kind, s, keys)
            r = Retain(
                kind.ref_date(s),
                tuple((k, n) for k, (n, _) in zip(keys, got, strict=True)),
                tuple((k, a) for k, (_, a) in zip(keys, got, strict=True)),
            )
        else:
            r = bitmap_retain(idx, kind, s, AS_OF)
        out[f"{kind.name}:{s}"] = r
    return out


def _sql(store: Store, appid: str) -> dict[str, Retain]:
    cur = store.read()
    return {f"{k.name}:{s}": sql_retain(cur, appid, k, s, AS_OF) for k, s in _periods()}


def test_caches_follow_ingests_and_snapshot_round_trips(store: Store, tmp_path: Path) -> None:
    rnd = random.Random(5)
    app, _ = store.create_app("s")
    other, _ = store.create_app("empty")  # an app without data is part of the snapshot too
    index = Index()
    index.ready = True
    ingest_records(store, app.appid, _visits(rnd, 3000, 400, 30, 90), index=index)
    live = index.app(app.appid)
    live.warm()  # every union and every answer cached, then invalidated piecemeal below
    assert _answers(live, True) == _sql(store, app.appid)
    batches = [
        _visits(rnd, 500, 500, 85, 120),  # new days, new users
        _visits(rnd, 300, 450, 0, 40),  # late visits: first days move earlier
        _visits(rnd, 200, 400, 60, 61),  # one day, only known users
    ]
    for batch in batches:
        ingest_records(store, app.appid, batch, index=index)  # through the users mirror
        assert _answers(live, True) == _sql(store, app.appid)
        assert _answers(live, False) == _sql(store, app.appid)
    # a file ingest without an index on the same store keeps the mirror right too
    csv = tmp_path / "late.csv"
    rows = _visits(rnd, 300, 600, 10, 100)
    csv.write_text("openid,ts\n" + "".join(f"{v['openid']},{v['ts']}\n" for v in rows))
    ingest_files(store, app.appid, [Source(csv, "csv")])
    ingest_records(store, app.appid, _visits(rnd, 200, 700, 0, 120), index=Index())
    n, distinct = store.read().execute(
        "SELECT count(*), count(DISTINCT openid) FROM users WHERE app = ?", [app.appid]
    ).fetchone() or (0, 0)
    assert n == distinct  # a stale mirror would have given a known openid a second uid

    want = _sql(store, app.appid)
    rebuilt, info = snapshot.load(store)
    assert set(info.rebuilt) == {app.appid, other.appid}
    assert info.reason == "no snapshot" and info.stale
    path = snapshot.save(store, rebuilt)
    assert path == snapshot.path_for(store.path) and path.exists()
    loaded, info = snapshot.load(store)
    assert sorted(info.loaded) == sorted([app.appid, other.appid]) and not info.stale
    assert _answers(loaded.apps[app.appid], False) == want
    assert _answers(loaded.apps[app.appid], True) == want
    assert loaded.apps[other.appid].day_range() is None
    assert loaded.ready

    # the store moves on: that app is rebuilt, never served from the stale snapshot
    ingest_records(store, app.appid, _visits(rnd, 50, 900, 100, 110))
    again, info = snapshot.load(store)
    assert info.rebuilt == [app.appid] and info.loaded == [other.appid]
    assert _answers(again.apps[app.appid], False) == _sql(store, app.appid)


def test_damaged_or_foreign_snapshot_is_ignored(store: Store) -> None:
    app, _ = store.create_app("s")
    ingest_records(store, app.appid, _visits(random.Random(1), 500, 100, 0, 60))
    path = snapshot.path_for(store.path)
    for junk in (b"", b"not a snapshot", snapshot.MAGIC + b"\xff\xff\xff\x7f{"):
        path.write_bytes(junk)
        index, info = snapshot.load(store)
        assert info.rebuilt == [app.appid] and info.reason == "unreadable snapshot"
        assert _answers(index.apps[app.appid], False) == _sql(store, app.appid)
    index, info = snapshot.load_or_rebuild(store)  # rewrites it
    data = bytearray(path.read_bytes())
    assert data.startswith(snapshot.MAGIC)
    path.write_bytes(bytes(data[: len(data) - 40]))  # truncated bitmaps
    index, info = snapshot.load(store)
    assert info.rebuilt == [app.appid] and info.reason == "damaged snapshot"
    assert _answers(index.apps[app.appid], False) == _sql(store, app.appid)


def test_load_all_goes_through_the_snapshot(store: Store) -> None:
    app, _ = store.create_app("s")
    ingest_records(store, app.appid, _visits(random.Random(2), 800, 150, 0, 100))
    want = _sql(store, app.appid)
    first = Index()
    first.load_all(store)  # rebuilds, then writes the snapshot
    assert first.ready and snapshot.path_for(store.path).exists()
    _, info = snapshot.load(store)
    assert info.loaded == [app.appid] and not info.stale
    second = Index()
    second.load_all(store)
    assert _answers(second.app(app.appid), False) == want
    assert _answers(first.app(app.appid), True) == want


def test_closing_the_store_saves_what_was_ingested_since(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    with Store(db) as store:
        app, _ = store.create_app("s")
        ingest_records(store, app.appid, _visits(random.Random(3), 600, 150, 0, 60))
        live = Index()
        live.load_all(store)
        ingest_records(store, app.appid, _visits(random.Random(4), 300, 200, 50, 100), index=live)
        want = _sql(store, app.appid)
    with Store(db) as store:
        index, info = snapshot.load(store)
        assert info.loaded == [app.appid] and not info.stale  # written at close, current
        assert _answers(index.apps[app.appid], False) == want
