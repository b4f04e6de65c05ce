"""A persisted snapshot of the index, so that `serve` starts in well under a second.

Rebuilding the bitmaps means reading every (day, uid) of the activity table; loading them back
from a snapshot is a few deserializations. The snapshot lives beside the database
(``wxcube.duckdb`` → ``wxcube.duckdb.snapshot``) and is validated **per app** against a cheap
fingerprint of the store (activity rows, sums of their uids and days, users, sum of first days,
next_uid): an app whose data changed since the snapshot was written is rebuilt from the store;
a missing, foreign or damaged snapshot is simply ignored. A snapshot can therefore never make
the server answer with stale numbers.

File format (little-endian): ``WXCSNAP1`` | u32 header length | JSON header | bitmap blobs. The
header maps each appid to its fingerprint and ``[day, offset, length]`` of each serialized
(portable roaring format) bitmap of active and of new users.

``Index.load_all`` (what ``serve`` calls at start) loads through the snapshot and rewrites it when
an app had to be rebuilt; a server should also :func:`save` at shutdown, so that a restart after
HTTP ingests finds it current. :func:`save` holds the store (``store.locked()``) so that the
fingerprint and the bitmaps are taken at the same moment: every ingest updates the index while
holding it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
from pyroaring import BitMap

from .index import WHICH, AppIndex, Index
from .store import Store

MAGIC = b"WXCSNAP1"
VERSION = 1
SUFFIX = ".snapshot"

_FINGERPRINT_SQL = """
SELECT a.appid, a.next_uid,
       coalesce(x.n, 0), coalesce(x.su, 0), coalesce(x.sd, 0), coalesce(x.hx, 0),
       coalesce(u.n, 0), coalesce(u.sd, 0), coalesce(u.hx, 0)
FROM apps a
LEFT JOIN (SELECT app, count(*) AS n, sum(uid) AS su, sum(day - DATE '1970-01-01') AS sd,
                  bit_xor(hash(day, uid)) AS hx
           FROM activity GROUP BY app) x ON x.app = a.appid
LEFT JOIN (SELECT app, count(*) AS n, sum(first_day - DATE '1970-01-01') AS sd,
                  bit_xor(hash(uid, first_day)) AS hx
           FROM users GROUP BY app) u ON u.app = a.appid
"""


@dataclass
class LoadInfo:
    """How an index was obtained: which apps came from the snapshot, which were rebuilt."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    reason: str = ""  # why the snapshot (or part of it) was not used

    @property
    def stale(self) -> bool:
        """True when the snapshot should be rewritten."""
        return bool(self.rebuilt) or bool(self.reason)


def path_for(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + SUFFIX)


def fingerprints(conn: duckdb.DuckDBPyConnection) -> dict[str, list[int]]:
    """Per app: [next_uid, activity rows, sum(uid), sum(day), xor of (day, uid) hashes,
    users, sum(first_day), xor of (uid, first_day) hashes]."""
    return {str(r[0]): [int(v) for v in r[1:]] for r in conn.execute(_FINGERPRINT_SQL).fetchall()}


def save(store: Store, index: Index, path: Path | None = None) -> Path:
    """Write the snapshot of ``index`` (atomically: a temp file, then a rename)."""
    path = path or path_for(store.path)
    header: dict[str, Any] = {"version": VERSION, "apps": {}}
    blobs: list[bytes] = []
    offset = 0
    with store.locked():
        fps = fingerprints(store.read())
        for appid, fp in fps.items():
            idx = index.apps.get(appid)
            if idx is None:
                if fp[1] or fp[6]:
                    continue  # has data the index does not hold: let the next start rebuild it
                idx = AppIndex({}, {})
            entry: dict[str, Any] = {"fingerprint": fp}
            for which in WHICH:
                items = []
                for day, bm in sorted(idx.day_bitmaps(which).items()):
                    blob = bm.serialize()
                    items.append([day, offset, len(blob)])
                    blobs.append(blob)
                    offset += len(blob)
                entry[which] = items
            header["apps"][appid] = entry
    head = orjson.dumps(header)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(head)) + head)
        for blob in blobs:
            f.write(blob)
    tmp.replace(path)
    return path


def _read(path: Path) -> tuple[dict[str, Any], memoryview] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < 12 or data[:8] != MAGIC:
        return None
    (n,) = struct.unpack_from("<I", data, 8)
    try:
        header = orjson.loads(data[12 : 12 + n])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(header, dict) or header.get("version") != VERSION:
        return None
    return header, memoryview(data)[12 + n :]


def _app_from(entry: dict[str, Any], body: memoryview) -> AppIndex:
    maps: list[dict[int, BitMap]] = []
    for which in WHICH:
        days: dict[int, BitMap] = {}
        for day, off, length in entry[which]:
            if off < 0 or off + length > len(body):
                raise ValueError("truncated snapshot")
            days[int(day)] = BitMap.deserialize(bytes(body[off : off + length]))
        maps.append(days)
    return AppIndex(maps[0], maps[1])


def load(store: Store, path: Path | None = None, *, warm: bool = True) -> tuple[Index, LoadInfo]:
    """The index of every app: from the snapshot where it is still valid, rebuilt from the store
    otherwise. ``warm`` precomputes every week and month union. The index is ready on return."""
    path = path or path_for(store.path)
    info = LoadInfo(path)
    index = Index()
    with store.locked():  # not across the rebuilds: token writes must not wait for them
        fps = fingerprints(store.read())
    got = _read(path)
    if got is None:
        info.reason = "no snapshot" if not path.exists() else "unreadable snapshot"
    header, body = got or ({"apps": {}}, memoryview(b""))
    for appid, fp in fps.items():
        entry = header["apps"].get(appid)
        idx: AppIndex | None = None
        if entry is not None and entry.get("fingerprint") == fp:
            try:
                idx = _app_from(entry, body)
                info.loaded.append(appid)
            except (ValueError, TypeError, KeyError):
                info.reason = "damaged snapshot"
        if idx is None:
            idx = AppIndex.load(store, appid)
            info.rebuilt.append(appid)
        index.apps[appid] = idx
    if warm:
        for idx in index.apps.values():
            idx.warm()
    index.ready = True
    return index, info


def load_or_rebuild(store: Store, path: Path | None = None) -> tuple[Index, LoadInfo]:
    """:func:`load`, then rewrite the snapshot if any app had to be rebuilt."""
    index, info = load(store, path)
    if info.stale:
        try_save(store, index, info.path)
    return index, info


def try_save(store: Store, index: Index, path: Path | None = None) -> Path | None:
    """:func:`save`, or None where the snapshot cannot be written (a read-only directory):
    the snapshot only ever saves time."""
    try:
        return save(store, index, path)
    except OSError:
        return None
