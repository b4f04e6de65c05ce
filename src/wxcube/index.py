"""The in-memory index: roaring bitmaps of active and new users per app and day.

Period unions (weeks, months) are cached and dropped when an ingest touches one of their days,
so a retention answer is a handful of ``intersection_cardinality`` calls on cached bitmaps.
The index is only ever updated after the store has committed (see ``Index.apply``).
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from .periods import DAY, KINDS, Kind
from .store import Delta, Store

Which = Literal["active", "new"]
_EMPTY = BitMap()


def _group(days: npt.NDArray[np.int32], uids: npt.NDArray[np.int32]) -> dict[int, BitMap]:
    """Bitmaps per day from arrays sorted by day."""
    out: dict[int, BitMap] = {}
    if len(days) == 0:
        return out
    bounds = np.flatnonzero(np.diff(days)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(days)]))
    u = uids.astype(np.uint32, copy=False)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        out[int(days[s])] = BitMap(u[s:e])
    return out


class AppIndex:
    """Bitmaps of one app. Thread-safe: a lock guards updates and cached unions."""

    def __init__(self, active: dict[int, BitMap], new: dict[int, BitMap]) -> None:
        self._days: dict[Which, dict[int, BitMap]] = {"active": active, "new": new}
        self._cache: dict[tuple[str, int, Which], BitMap] = {}
        self._lock = threading.RLock()

    @classmethod
    def load(cls, store: Store, appid: str) -> AppIndex:
        days, uids, fdays, fuids = store.activity_arrays(appid)
        return cls(_group(days, uids), _group(fdays, fuids))

    # --- reads -------------------------------------------------------------------------
    def period(self, kind: Kind, start: int, which: Which) -> BitMap:
        """Users active in (or new in) the period starting at ``start``. Do not mutate."""
        days = self._days[which]
        if kind is DAY:
            return days.get(start, _EMPTY)
        key = (kind.name, start, which)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                parts = [days[d] for d in kind.days(start) if d in days]
                hit = BitMap.union(*parts) if parts else BitMap()
                self._cache[key] = hit
            return hit

    def day_range(self) -> tuple[int, int] | None:
        active = self._days["active"]
        return (min(active), max(active)) if active else None

    def users(self) -> int:
        return sum(len(b) for b in self._days["new"].values())

    # --- writes ------------------------------------------------------------------------
    def apply(self, delta: Delta) -> None:
        """Apply a committed batch. Days touched drop their cached week/month unions."""
        touched: set[int] = set()
        with self._lock:
            active, new = self._days["active"], self._days["new"]
            for day, bm in _group(delta.pair_days, delta.pair_uids).items():
                # copy-on-write: a reader holding the old bitmap keeps a consistent view
                active[day] = active[day] | bm if day in active else bm
                touched.add(day)
            moved = delta.first_old >= 0
            o = np.argsort(delta.first_old[moved], kind="stable")
            for day, bm in _group(delta.first_old[moved][o], delta.first_uids[moved][o]).items():
                if day in new:
                    new[day] = new[day] - bm
                    touched.add(day)
            o = np.argsort(delta.first_new, kind="stable")
            for day, bm in _group(delta.first_new[o], delta.first_uids[o]).items():
                new[day] = new[day] | bm if day in new else bm
                touched.add(day)
            for kind in KINDS.values():
                if kind is DAY:
                    continue
                for start in {kind.start_of(d) for d in touched}:
                    self._cache.pop((kind.name, start, "active"), None)
                    self._cache.pop((kind.name, start, "new"), None)


class Index:
    """Every app's bitmaps. ``ready`` is False until :meth:`load_all` has finished."""

    def __init__(self) -> None:
        self.apps: dict[str, AppIndex] = {}
        self.ready = False
        self._lock = threading.Lock()

    def load_all(self, store: Store) -> None:
        for app in store.apps():
            self.apps[app.appid] = AppIndex.load(store, app.appid)
        self.ready = True

    def app(self, appid: str) -> AppIndex:
        with self._lock:
            idx = self.apps.get(appid)
            if idx is None:
                idx = self.apps[appid] = AppIndex({}, {})
            return idx

    def apply(self, delta: Delta) -> None:
        self.app(delta.appid).apply(delta)
