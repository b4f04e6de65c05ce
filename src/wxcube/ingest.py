"""Ingest: files (CSV / JSONL / Parquet, gzip'd or not) or HTTP records → the store → the index.

Everything is validated before anything is written; the bulk work happens inside DuckDB
(no Python loop per row on the file path). A bad row fails the whole run with file, line and
field named, and nothing is applied.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from .errors import DataFormatError, InputError, StoreError
from .index import Index
from .store import ApplyResult, Store, _check_timezone

FORMATS = ("csv", "jsonl", "parquet")
MAX_EPOCH = 4102444800.0  # 2100-01-01: anything later is a unit mistake (milliseconds?)
MAX_OPENID = 128
# What counts as blank in an openid, identically in SQL (files) and Python (HTTP records):
# ASCII whitespace only, all of it sorting before '!'.
WS = " \t\n\r\x0b\x0c"
_WS_SQL = "||".join(f"chr({ord(c)})" for c in WS)
SEGMENT_SPAN = 4 * 366 * 86400  # widest batch span bucketed by offset arithmetic
TS_HINT = "is not a Unix time or ISO-8601 timestamp"
OUT_OF_RANGE = "is out of range (Unix seconds 1970..2100; milliseconds?)"
Progress = Callable[[str, float], None]  # (label, percent 0..100)

_NUM_RE = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
_OFFSET_RE = r"\d:\d\d?(:\d\d?(\.\d*)?)?\s*([zZ]|[+-]\d\d(:?\d\d)?)\s*$"


@dataclass(frozen=True)
class Source:
    path: Path
    fmt: str
    openid_col: str = "openid"
    time_col: str = "ts"


def guess_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".gzip", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise InputError(str(path), None, None, "unknown format: pass --format csv|jsonl|parquet")


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


# --- timestamps ---------------------------------------------------------------------------
def epoch_from_text(col: str, naive_tz: str) -> str:
    """SQL: VARCHAR ``col`` → epoch seconds (DOUBLE) or NULL. Unix seconds (int or decimal),
    ISO-8601 with ``T`` or a space, with an offset or ``Z``, or naive (read in ``naive_tz``)."""
    return (  # plain digits first: the common case, and a far cheaper pattern
        f"CASE WHEN regexp_full_match({col}, '[0-9]{{1,15}}') THEN CAST({col} AS DOUBLE) "
        f"WHEN regexp_matches({col}, '{_NUM_RE}') THEN TRY_CAST(trim({col}) AS DOUBLE) "
        f"WHEN regexp_matches({col}, '{_OFFSET_RE}') "
        f"THEN epoch(TRY_CAST(trim({col}) AS TIMESTAMPTZ)) "
        f"ELSE epoch(timezone({_q(naive_tz)}, TRY_CAST(trim({col}) AS TIMESTAMP))) END"
    )


def _offset(z: ZoneInfo, t: float) -> int:
    off = dt.datetime.fromtimestamp(t, z).utcoffset()
    return int(off.total_seconds()) if off else 0


def tz_segments(tz: str, lo: float, hi: float) -> list[tuple[float, int]]:
    """UTC offset segments of ``tz`` covering [lo, hi]: [(from_epoch, offset_s), ...]."""
    z = ZoneInfo(tz)
    # whole seconds: offsets change on whole seconds, and integer bisection always ends
    lo_s = math.floor(max(0.0, lo))
    hi_s = math.ceil(min(MAX_EPOCH, max(hi, lo)))
    segs = [(float("-inf"), _offset(z, lo_s))]
    t = lo_s
    while t < hi_s:
        nxt = min(t + 3600, hi_s)
        if _offset(z, nxt) != segs[-1][1]:
            a, b = t, nxt  # offset(a) == current, offset(b) differs: find the change
            while b - a > 1:
                m = (a + b) // 2
                if _offset(z, m) == segs[-1][1]:
                    a = m
                else:
                    b = m
            segs.append((float(b), _offset(z, b)))
        t = nxt
    return segs


def _icu_day(epoch_col: str, tz: str) -> str:
    date = f"timezone({_q(tz)}, to_timestamp({epoch_col}))::DATE"
    return f"({date} - DATE '1970-01-01')::INTEGER"


def local_day_sql(epoch_col: str, tz: str, lo: float, hi: float) -> str:
    """SQL: epoch seconds → local day number in ``tz``. Arithmetic on the zone's offsets over
    the data's span (exact, and an order of magnitude faster than per-row ICU conversion)."""
    if hi - lo > SEGMENT_SPAN:  # rare wide spans: per-row ICU, not a long walk under the lock
        return _icu_day(epoch_col, tz)
    segs = tz_segments(tz, lo, hi)
    if len(segs) > 256:
        return _icu_day(epoch_col, tz)
    if len(segs) == 1:
        off = str(segs[0][1])
    else:
        whens = " ".join(
            f"WHEN {epoch_col} < {start!r} THEN {prev}"
            for (start, _), (_, prev) in zip(segs[1:], segs[:-1], strict=True)
        )
        off = f"(CASE {whens} ELSE {segs[-1][1]} END)"
    return f"floor(({epoch_col} + {off}) / 86400)::INTEGER"


# --- sources ------------------------------------------------------------------------------
def _columns(conn: duckdb.DuckDBPyConnection, relation_sql: str) -> dict[str, str]:
    rows = conn.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()
    return {r[0]: str(r[1]) for r in rows}


def _require_columns(src: Source, cols: Mapping[str, str]) -> None:
    for col, opt in ((src.openid_col, "--openid-col"), (src.time_col, "--time-col")):
        if col not in cols:
            raise InputError(
                str(src.path),
                None,
                col,
                f"no such column (columns: {', '.join(cols)}); choose one with {opt}",
            )


def _source_select(
    conn: duckdb.DuckDBPyConnection, src: Source, naive_tz: str, *, numbered: bool
) -> str:
    """SQL selecting ``line, openid, epoch, raw`` from the source (``line``: the record
    number for text formats, mapped to a physical line by ``_scan``; the row for Parquet)."""
    path = _q(str(src.path))
    o, t = _ident(src.openid_col), _ident(src.time_col)
    if src.fmt == "csv":
        header = _csv_header(src)
        cols = {c: "VARCHAR" for c in header}
        _require_columns(src, cols)
        spec = ", ".join(f"{_q(c)}: 'VARCHAR'" for c in header)
        # the dialect is stated, not sniffed: a ragged row is an error, never a new header
        rel = (
            f"read_csv({path}, header = true, auto_detect = false, delim = "
            f"{_q(_csv_delim(src.path))}, quote = '\"', escape = '\"', strict_mode = true, "
            f"columns = {{{spec}}})"
        )
        line = "row_number() OVER ()" if numbered else "NULL"
        return (
            f"SELECT {line} AS line, {o} AS openid, {epoch_from_text(t, naive_tz)} AS epoch, "
            f"{t} AS raw FROM {rel}"
        )
    if src.fmt == "jsonl":
        rel = f"read_ndjson_objects({path})"
        po, pt = _q(f'$."{src.openid_col}"'), _q(f'$."{src.time_col}"')
        line = "row_number() OVER ()" if numbered else "NULL"
        raw = f"json_extract_string(json, {pt})"
        return (
            f"SELECT {line} AS line, "
            f"CASE WHEN json_type(json, {po}) = 'VARCHAR' THEN json_extract_string(json, {po}) END "
            f"AS openid, "
            f"CASE json_type(json, {pt}) WHEN 'VARCHAR' THEN {epoch_from_text(raw, naive_tz)} "
            f"WHEN 'BIGINT' THEN TRY_CAST({raw} AS DOUBLE) "
            f"WHEN 'UBIGINT' THEN TRY_CAST({raw} AS DOUBLE) "
            f"WHEN 'DOUBLE' THEN TRY_CAST({raw} AS DOUBLE) END AS epoch, "
            f"coalesce({raw}, '(missing)') AS raw FROM {rel}"
        )
    # parquet: the time column's own type decides how to read it
    rel = f"read_parquet({path}, file_row_number = true)"
    cols = _columns(conn, rel)
    _require_columns(src, cols)
    tt = cols[src.time_col].upper()
    if "WITH TIME ZONE" in tt:
        epoch = f"epoch({t})"
    elif tt.startswith("TIMESTAMP") or tt == "DATE":
        epoch = f"epoch(timezone({_q(naive_tz)}, {t}::TIMESTAMP))"
    elif tt in ("VARCHAR", "BLOB"):
        epoch = epoch_from_text(f"{t}::VARCHAR", naive_tz)
    elif any(x in tt for x in ("INT", "DOUBLE", "FLOAT", "DECIMAL")):
        epoch = f"{t}::DOUBLE"
    else:
        raise InputError(str(src.path), None, src.time_col, f"unsupported column type {tt}")
    return (
        f"SELECT file_row_number + 1 AS line, {o}::VARCHAR AS openid, {epoch} AS epoch, "
        f"{t}::VARCHAR AS raw FROM {rel}"
    )


# Cheap tests guard the costly ones (DuckDB short-circuits, and prunes on min/max statistics):
# a string of spaces only sorts before '!', and a string of more than N characters has more
# than N bytes. Per-row trim()/length() over every openid cost more than the whole insert.
_BAD = (
    f"openid IS NULL OR (openid < '!' AND trim(openid, {_WS_SQL}) = '') "
    f"OR (strlen(openid) > {MAX_OPENID} AND length(openid) > {MAX_OPENID}) "
    f"OR epoch IS NULL OR isnan(epoch) OR epoch < 0 OR epoch >= {MAX_EPOCH}"
)


def _explain(openid: Any, epoch: Any, raw: Any, src: Source) -> tuple[str, str]:
    """(field, problem) of a bad row."""
    if openid is None or not str(openid).strip(WS):
        return src.openid_col, "missing or empty (or not a string)"
    if len(str(openid)) > MAX_OPENID:
        return src.openid_col, f"longer than {MAX_OPENID} characters"
    if epoch is not None and epoch == epoch:  # parsed, but out of range
        return src.time_col, f"{raw!r} {OUT_OF_RANGE}"
    return src.time_col, f"{raw!r} {TS_HINT}"


def _duck_error(src: Source, e: duckdb.Error) -> InputError:
    """A file DuckDB could not read: find the physical line in Python (failure path only)."""
    found = _scan(src, None)
    if found is not None and found[1] is not None:
        return InputError(str(src.path), found[0], None, found[1])
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    msg = "; ".join(x for x in lines[:4] if not x.startswith(("Original Line", "Possible fixes")))
    m = re.search(r"[Ll]ine:? (\d+)", str(e))
    return InputError(str(src.path), int(m.group(1)) if m else None, None, msg)


# --- physical lines (failure path only) ---------------------------------------------------
def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith((".gz", ".gzip")):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return path.open("r", encoding="utf-8", errors="replace", newline="")


def _csv_delim(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz").removesuffix(".gzip")
    return "\t" if name.endswith(".tsv") else ","


def _csv_header(src: Source) -> list[str]:
    try:
        with _open_text(src.path) as f:
            header = next(csv.reader(f, delimiter=_csv_delim(src.path)), None)
    except (OSError, csv.Error, EOFError) as e:
        raise InputError(str(src.path), 1, None, f"unreadable CSV header: {e}") from None
    if not header:
        raise InputError(str(src.path), 1, None, "empty: expected a header line such as openid,ts")
    return [h.lstrip("\ufeff") if i == 0 else h for i, h in enumerate(header)]


def _scan(src: Source, record: int | None) -> tuple[int, str | None] | None:
    """(first physical line of data record ``record`` (1-based; blank lines are not records),
    None) or, scanning from the top, (line, problem) of the first malformed record."""
    try:
        with _open_text(src.path) as f:
            if src.fmt == "csv":
                return _scan_csv(src, f, record)
            if src.fmt == "jsonl":
                return _scan_jsonl(f, record)
    except (OSError, EOFError, UnicodeError):
        return None
    return None


def _scan_csv(src: Source, f: IO[str], record: int | None) -> tuple[int, str | None] | None:
    reader = csv.reader(f, delimiter=_csv_delim(src.path), strict=True)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        return None
    n, prev = 0, reader.line_num
    try:
        for rec in reader:
            start, prev = prev + 1, reader.line_num
            if not rec:
                continue
            n += 1
            if len(rec) != len(header):
                names = ",".join(header)
                return start, f"expected {len(header)} fields ({names}), found {len(rec)}"
            if n == record:
                return start, None
    except csv.Error as e:
        return prev + 1, f"malformed CSV: {e}"
    return None


def _scan_jsonl(f: IO[str], record: int | None) -> tuple[int, str | None] | None:
    n = 0
    for lineno, text in enumerate(f, start=1):
        if not text.strip():
            continue
        n += 1
        try:
            obj = json.loads(text)
        except ValueError as e:
            return lineno, f"not valid JSON ({e.args[0] if e.args else e})"
        if not isinstance(obj, dict):
            return lineno, "expected one JSON object per line"
        if n == record:
            return lineno, None
    return None


# --- staging ------------------------------------------------------------------------------
def _run(conn: duckdb.DuckDBPyConnection, sql: str, label: str, progress: Progress | None) -> None:
    """Execute ``sql``, reporting DuckDB's own query progress while it runs."""
    if progress is None:
        conn.execute(sql)
        return
    err: list[BaseException] = []

    def work() -> None:
        try:
            conn.execute(sql)
        except BaseException as e:  # re-raised in the caller's thread
            err.append(e)

    th = threading.Thread(target=work, daemon=True)
    th.start()
    while th.is_alive():
        th.join(0.1)
        try:
            pct = conn.query_progress()
        except duckdb.Error:
            pct = -1
        if pct >= 0:
            progress(label, float(pct))
    progress(label, 100.0)
    if err:
        raise err[0]


def stage_files(
    conn: duckdb.DuckDBPyConnection,
    sources: Sequence[Source],
    naive_tz: str,
    app_tz: str,
    progress: Progress | None = None,
) -> str:
    """Read, parse and validate every source into temp table ``_staged(openid, day)``."""
    conn.execute("CREATE OR REPLACE TEMP TABLE _parsed (openid VARCHAR, epoch DOUBLE)")
    for src in sources:
        if not src.path.exists():
            raise InputError(str(src.path), None, None, "no such file")
        try:
            select = _source_select(conn, src, naive_tz, numbered=False)
            _run(
                conn,
                f"INSERT INTO _parsed SELECT openid, epoch FROM ({select})",
                f"reading {src.path.name}",
                progress,
            )
            bad = conn.execute(f"SELECT count(*) FROM _parsed WHERE {_BAD}").fetchall()[0]
        except duckdb.Error as e:
            raise _duck_error(src, e) from None
        if bad and bad[0]:
            _raise_first_bad(conn, src, naive_tz)
    return _finish_staging(conn, app_tz)


def _raise_first_bad(conn: duckdb.DuckDBPyConnection, src: Source, naive_tz: str) -> None:
    """The slow path, only on failure: number the lines to name the first bad one."""
    try:
        select = _source_select(conn, src, naive_tz, numbered=True)
        rows = conn.execute(
            f"SELECT line, openid, epoch, raw FROM ({select}) WHERE {_BAD} ORDER BY line LIMIT 1"
        ).fetchall()
    except duckdb.Error as e:
        raise _duck_error(src, e) from None
    if not rows:  # counted bad, yet no line found: never expected
        raise InputError(str(src.path), None, None, "a row is invalid (could not locate it)")
    row = rows[0]
    line = int(row[0])
    if src.fmt in ("csv", "jsonl"):  # record number -> physical line (blank/multi-line rows)
        found = _scan(src, line)
        if found is not None and found[1] is not None:
            raise InputError(str(src.path), found[0], None, found[1])
        line = found[0] if found is not None else line
    field, problem = _explain(row[1], row[2], row[3], src)
    raise InputError(str(src.path), line, field, problem)


def _finish_staging(conn: duckdb.DuckDBPyConnection, app_tz: str) -> str:
    lo, hi = conn.execute("SELECT min(epoch), max(epoch) FROM _parsed").fetchall()[0]
    day = local_day_sql("epoch", app_tz, float(lo or 0), float(hi or 0))
    conn.execute(
        f"CREATE OR REPLACE TEMP VIEW _staged AS "
        f"SELECT openid, DATE '1970-01-01' + {day} AS day FROM _parsed"
    )
    return "_staged"


_Columns = tuple[list[str | None], list[float | None], list[str | None]]


def _columns_checked(visits: list[Any]) -> _Columns:
    """(openids, numeric ts, text ts) of HTTP records; 47001 names the first bad row."""
    openids: list[str | None] = []
    nums: list[float | None] = []
    texts: list[str | None] = []
    for i, v in enumerate(visits):
        if not isinstance(v, dict):
            raise DataFormatError(f"visits[{i}]: expected an object with openid and ts")
        o, t = v.get("openid"), v.get("ts")
        if not isinstance(o, str) or not o.strip(WS) or len(o) > MAX_OPENID:
            raise DataFormatError(
                f"visits[{i}].openid: {o!r} is not a non-empty string "
                f"of at most {MAX_OPENID} characters"
            )
        openids.append(o)
        if isinstance(t, bool) or not isinstance(t, int | float | str):
            raise DataFormatError(f"visits[{i}].ts: {t!r} {TS_HINT}")
        try:
            nums.append(float(t) if isinstance(t, int | float) else None)
        except OverflowError:
            raise DataFormatError(f"visits[{i}].ts: {t!r} {OUT_OF_RANGE}") from None
        texts.append(t if isinstance(t, str) else None)
    return openids, nums, texts


MAX_INT_FLOAT = 2**1023  # ints at most this large convert to float without overflow


def _columns_fast(visits: list[Any]) -> _Columns | None:
    """The same columns as :func:`_columns_checked` for valid records, twice as fast (the
    common case: exact types first); None at the first doubt, and the checked loop then
    names the bad row."""
    openids: list[str | None] = []
    nums: list[float | None] = []
    texts: list[str | None] = []
    add_o, add_n, add_t = openids.append, nums.append, texts.append
    for v in visits:
        if not isinstance(v, dict):
            return None
        o = v.get("openid")
        t: Any = v.get("ts")
        if not isinstance(o, str) or len(o) > MAX_OPENID or not o.strip(WS):
            return None
        add_o(o)
        tt = type(t)
        if tt is int or tt is float:
            if tt is int and not -MAX_INT_FLOAT <= t <= MAX_INT_FLOAT:
                return None  # float() would overflow: the checked loop says out of range
            add_n(float(t))
            add_t(None)
        elif isinstance(t, str):
            add_n(None)
            add_t(t)
        else:
            return None  # bools, subclasses, anything else: the checked loop decides
    return openids, nums, texts


def stage_records(
    conn: duckdb.DuckDBPyConnection, visits: object, naive_tz: str, app_tz: str
) -> str:
    """Validate HTTP records ``[{"openid": str, "ts": number | str}, ...]`` (47001 names the
    row and field) and stage them like a file."""
    if not isinstance(visits, list):
        raise DataFormatError("visits: expected an array of {openid, ts} objects")
    try:
        fast = _columns_fast(visits)
    except OverflowError:  # an int beyond float range: the checked loop names it
        fast = None
    openids, nums, texts = fast or _columns_checked(visits)
    tbl = pa.table(
        {
            "openid": pa.array(openids, pa.string()),
            "num": pa.array(nums, pa.float64()),
            "txt": pa.array(texts, pa.string()),
        }
    )
    conn.register("_records", tbl)
    try:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _parsed AS SELECT openid, "
            f"coalesce(num, {epoch_from_text('txt', naive_tz)}) AS epoch, "
            "row_number() OVER () - 1 AS i, coalesce(txt, num::VARCHAR) AS raw FROM _records"
        )
    finally:
        conn.unregister("_records")
    rows = conn.execute(
        f"SELECT i, epoch, raw FROM _parsed WHERE {_BAD} ORDER BY i LIMIT 1"
    ).fetchall()
    if rows:
        row = rows[0]
        i, epoch, raw = row
        if epoch is not None and epoch == epoch:
            raise DataFormatError(f"visits[{i}].ts: {raw!r} {OUT_OF_RANGE}")
        raise DataFormatError(f"visits[{i}].ts: {raw!r} {TS_HINT}")
    return _finish_staging(conn, app_tz)


# --- the one entry point for both paths ---------------------------------------------------
def ingest_files(
    store: Store,
    appid: str,
    sources: Sequence[Source],
    *,
    naive_tz: str | None = None,
    index: Index | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    app = store.require_app(appid)
    tz = naive_tz or app.timezone
    _check_timezone(tz)
    for s in sources:
        if s.fmt not in FORMATS:
            raise InputError(
                str(s.path), None, None, f"unknown format {s.fmt!r}: csv, jsonl, parquet"
            )
    with store.locked():
        staged = stage_files(store.conn, sources, tz, app.timezone, progress)
        return _apply(store, appid, staged, index)


def ingest_records(
    store: Store, appid: str, visits: object, *, index: Index | None = None
) -> ApplyResult:
    app = store.require_app(appid)
    with store.locked():
        staged = stage_records(store.conn, visits, app.timezone, app.timezone)
        return _apply(store, appid, staged, index)


def _apply(store: Store, appid: str, staged: str, index: Index | None) -> ApplyResult:
    try:
        result = store.apply(appid, staged, want_delta=index is not None)
    except duckdb.Error as e:
        raise StoreError(f"ingest failed, nothing applied: {e}") from e
    finally:
        store.conn.execute("DROP VIEW IF EXISTS _staged")
        store.conn.execute("DROP TABLE IF EXISTS _parsed")
    if index is not None and result.delta is not None:
        index.apply(result.delta)  # only after the commit
    return result


# --- roll-ups written by `wxcube spark-rollup` --------------------------------------------
ROLLUP_MANIFEST = "manifest.json"
ROLLUP_FORMAT = "wxcube-rollup"


def read_manifest(directory: Path) -> dict[str, Any]:
    import json

    path = directory / ROLLUP_MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            str(directory),
            None,
            None,
            f"not a roll-up: no {ROLLUP_MANIFEST} (write one with wxcube spark-rollup)",
        ) from None
    except ValueError as e:
        raise InputError(str(path), None, None, f"unreadable manifest: {e}") from None
    if not isinstance(m, dict) or m.get("format") != ROLLUP_FORMAT:
        raise InputError(str(path), None, "format", f"expected {ROLLUP_FORMAT!r}")
    return m


def ingest_rollup(
    store: Store,
    appid: str,
    directory: Path,
    *,
    index: Index | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Load a roll-up ``DIR/day=YYYY-MM-DD/*.parquet`` (column ``openid``) plus manifest.
    Refuses a roll-up made for another app or timezone."""
    app = store.require_app(appid)
    m = read_manifest(directory)
    mpath = str(directory / ROLLUP_MANIFEST)
    if m.get("app") != appid:
        raise InputError(mpath, None, "app", f"roll-up is for {m.get('app')!r}, not {appid!r}")
    if m.get("timezone") != app.timezone:
        raise InputError(
            mpath,
            None,
            "timezone",
            f"roll-up days are in {m.get('timezone')!r} but {appid} uses "
            f"{app.timezone!r}; re-run spark-rollup with --timezone {app.timezone}",
        )
    glob = _q(str(directory / "day=*" / "*.parquet"))
    with store.locked():
        conn = store.conn
        if int(m.get("rows") or 0) == 0 and not list(directory.glob("day=*/*.parquet")):
            conn.execute("CREATE OR REPLACE TEMP TABLE _parsed (openid VARCHAR, epoch DOUBLE)")
            conn.execute(
                "CREATE OR REPLACE TEMP VIEW _staged AS "
                "SELECT openid, NULL::DATE AS day FROM _parsed"
            )
            return _apply(store, appid, "_staged", index)
        try:
            _run(
                conn,
                "CREATE OR REPLACE TEMP TABLE _rollup AS SELECT openid::VARCHAR AS openid, "
                f"day::DATE AS day FROM read_parquet({glob}, hive_partitioning = true, "
                "hive_types = {'day': DATE})",
                f"reading {directory.name}",
                progress,
            )
            n, bad = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE openid IS NULL "
                f"OR trim(openid, {_WS_SQL}) = '' "
                f"OR length(openid) > {MAX_OPENID} OR day IS NULL) FROM _rollup"
            ).fetchall()[0]
        except duckdb.Error as e:
            raise InputError(str(directory), None, None, str(e).splitlines()[0]) from None
        if bad:
            raise InputError(str(directory), None, "openid", f"{bad} rows without a valid openid")
        if "rows" in m and int(m["rows"]) != n:
            raise InputError(
                mpath,
                None,
                "rows",
                f"manifest says {m['rows']} rows but the files hold {n}: incomplete",
            )
        conn.execute("CREATE OR REPLACE TEMP VIEW _staged AS SELECT openid, day FROM _rollup")
        try:
            return _apply(store, appid, "_staged", index)
        finally:
            conn.execute("DROP TABLE IF EXISTS _rollup")
