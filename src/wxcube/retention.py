"""Retention answers, two independent ways: bitmaps (the product) and SQL (the check).

Both return :class:`Retain`, WeChat-shaped. For a period P and offset k:
``visit_uv_new[k]`` = |new in P ∩ active in P+k|; ``visit_uv[k]`` = |active in P ∩ active in P+k|.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from .index import AppIndex
from .periods import Kind, from_daynum


@dataclass(frozen=True)
class Retain:
    ref_date: str
    visit_uv_new: tuple[tuple[int, int], ...]
    visit_uv: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict[str, Any]:
        """Exactly WeChat's success body: no errcode."""
        return {
            "ref_date": self.ref_date,
            "visit_uv_new": [{"key": k, "value": v} for k, v in self.visit_uv_new],
            "visit_uv": [{"key": k, "value": v} for k, v in self.visit_uv],
        }


def bitmap_retain(
    idx: AppIndex, kind: Kind, start: int, as_of: int, keys: Sequence[int] | None = None
) -> Retain:
    kind.check_elapsed(start, as_of)
    present = kind.present_keys(start, as_of, tuple(keys) if keys else None)
    # |new0 ∩ P+k| and |active0 ∩ P+k| per key, computed from cached period unions under the
    # index lock (one state, never half a batch) and cached until an ingest touches P or P+k
    got = idx.counts(kind, start, present)
    return Retain(
        kind.ref_date(start),
        tuple((k, n) for k, (n, _) in zip(present, got, strict=True)),
        tuple((k, a) for k, (_, a) in zip(present, got, strict=True)),
    )


_SQL = """
WITH keys AS (SELECT * FROM (VALUES {values}) k(key, s, e)),
     base AS (SELECT DISTINCT uid FROM activity WHERE app = $app AND day BETWEEN $s AND $e),
     newu AS (SELECT uid FROM users WHERE app = $app AND first_day BETWEEN $s AND $e),
     act  AS (SELECT DISTINCT k.key, a.uid FROM activity a JOIN keys k ON a.day BETWEEN k.s AND k.e
              WHERE a.app = $app)
SELECT act.key,
       count(newu.uid) AS visit_uv_new,
       count(base.uid) AS visit_uv
FROM act LEFT JOIN newu USING (uid) LEFT JOIN base USING (uid)
GROUP BY act.key
"""


def sql_retain(
    conn: duckdb.DuckDBPyConnection,
    appid: str,
    kind: Kind,
    start: int,
    as_of: int,
    keys: Sequence[int] | None = None,
) -> Retain:
    """The same answer from DuckDB over the activity table (the independent path)."""
    kind.check_elapsed(start, as_of)
    present = kind.present_keys(start, as_of, tuple(keys) if keys else None)
    if not present:
        return Retain(kind.ref_date(start), (), ())
    values = ", ".join(
        f"({k}, DATE '{from_daynum(kind.shift(start, k))}', "
        f"DATE '{from_daynum(kind.end(kind.shift(start, k)))}')"
        for k in present
    )
    rows = conn.execute(
        _SQL.format(values=values),
        {"app": appid, "s": from_daynum(start), "e": from_daynum(kind.end(start))},
    ).fetchall()
    got = {int(k): (int(n), int(a)) for k, n, a in rows}
    return Retain(
        kind.ref_date(start),
        tuple((k, got.get(k, (0, 0))[0]) for k in present),
        tuple((k, got.get(k, (0, 0))[1]) for k in present),
    )
