"""The Apache Spark roll-up (SPEC §7): raw visit logs at any scale → canonical (openid, day) pairs.

Runs three ways, all through :func:`run`:

- ``wxcube spark-rollup --input PATH … --app APPID --timezone TZ --output DIR`` (local Spark),
- ``spark-submit src/wxcube/spark.py --input PATH … --app … --timezone … --output …``,
- ``python -m wxcube.spark …``.

This module imports only the standard library at the top (pyspark lazily, inside :func:`run`) and
nothing else from wxcube, so ``spark-submit`` can ship it alone to a cluster. Executors run no
Python at all: every step is a Spark SQL expression.

The rules are exactly those of the single-machine ``wxcube ingest`` (``wxcube.ingest``):

- timestamps are Unix seconds (integer or decimal, also as text), ISO-8601 with ``T`` or a space,
  with an offset or ``Z``, or naive (read in ``--naive-tz``); Parquet timestamp columns with or
  without a zone, dates, or numbers of seconds; valid epochs are [0, 4102444800);
- an openid is a non-empty string of at most 128 characters (JSONL: a JSON string);
- the local day is computed by the same arithmetic as ``wxcube.ingest.local_day_sql``: the
  timezone's UTC offsets come from Python's ``zoneinfo`` on the driver (``tz_segments``, the
  algorithm of ``wxcube.ingest``, over every valid epoch) and become a binary CASE tree, so days
  match the single-machine path bit for bit, DST included. Spark's own zone rules (the JVM's tz
  database) and its lenient timestamp parser are never used: the session time zone is UTC and
  text is parsed by strict regular expressions.
  Naive wall times that fall in a DST gap or overlap resolve as DuckDB/ICU resolves them in
  ``wxcube ingest``: a skipped time takes the offset before the change, a repeated one the offset
  after it.

One pass over the input: parse, validate (rows and bad rows counted by an ``Observation``),
bucket, shuffle once by day and deduplicate; the distinct pairs are kept (memory, then disk) for
the manifest's figures and the write. Only when there are bad rows is the input read again, for
a few examples naming file, field and value.

Output: ``DIR/day=YYYY-MM-DD/*.parquet`` (one string column ``openid``, distinct per day) and,
written last, ``DIR/manifest.json`` (see :func:`manifest`): an interrupted job leaves no manifest,
which ``wxcube ingest --rollup`` refuses.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import itertools
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

FORMATS = ("csv", "jsonl", "parquet")
MAX_EPOCH = 4102444800.0  # as wxcube.ingest: 2100-01-01
MAX_OPENID = 128
TS_HINT = "is not a Unix time or ISO-8601 timestamp"
ROLLUP_FORMAT = "wxcube-rollup"
ROLLUP_VERSION = 1
ROLLUP_MANIFEST = "manifest.json"
INSTALL_HINT = (
    "pyspark is not installed: pip install 'wxcube[spark]' "
    "(Spark also needs a Java 17+ runtime, e.g. Debian's openjdk-17-jre-headless)"
)
EXAMPLES = 5

# Java regular expressions (Spark's regexp_extract). Whitespace is what RE2's \s is in ingest.
_WS = "[ \\t\\n\\f\\r]*"
NUM_RE = f"^{_WS}([+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?){_WS}$"
# groups: 1 year, (2 separator), 3 month, 4 day, 5 hour, 6 minute, 7 second, 8 fraction, 9 offset
ISO_RE = (
    "^ *(\\d{4})([-/])(\\d{1,2})\\2(\\d{1,2})"
    "(?:(?:T| +)(\\d{1,2}):(\\d{1,2})(?::(\\d{1,2})(?:\\.(\\d*))?)?"
    "(Z|[+-]\\d\\d(?::?\\d\\d)?)?)? *$"
)


class RollupError(Exception):
    """The roll-up cannot run as asked (bad arguments, unreadable input, too many bad rows)."""


class SparkMissing(RollupError):
    """pyspark (or Java) is not available."""


@dataclass(frozen=True)
class RollupConfig:
    inputs: tuple[str, ...]
    app: str
    timezone: str
    output: str
    fmt: str | None = None
    openid_col: str = "openid"
    time_col: str = "ts"
    naive_tz: str | None = None
    master: str | None = None
    max_bad: int = 0
    overwrite: bool = False
    shuffle_partitions: int | None = None


@dataclass
class RollupResult:
    output: str
    rows_read: int  # input rows (visits), bad ones included
    bad_rows: int
    rows: int  # distinct (openid, day) rows written
    min_day: str | None
    max_day: str | None
    days: int
    seconds: float  # the job itself, without starting Spark
    examples: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def visits_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


# --- zone offsets (the same algorithm as wxcube.ingest.tz_segments) ------------------------
def check_timezone(tz: str, option: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RollupError(
            f"{option}: unknown timezone {tz!r} (use an IANA name such as Asia/Shanghai)"
        ) from None


def _offset(z: ZoneInfo, t: float) -> int:
    off = dt.datetime.fromtimestamp(t, z).utcoffset()
    return int(off.total_seconds()) if off else 0


def tz_segments(tz: str, lo: float, hi: float) -> list[tuple[float, int]]:
    """UTC offset segments of ``tz`` covering [lo, hi]: [(from_epoch, offset_s), ...].
    Kept identical to ``wxcube.ingest.tz_segments`` (a test compares them) so that this
    module needs nothing but the standard library on a Spark driver."""
    z = ZoneInfo(tz)
    lo, hi = max(0.0, lo), min(MAX_EPOCH, max(hi, lo))
    segs = [(float("-inf"), _offset(z, lo))]
    t = lo
    while t < hi:
        nxt = min(t + 3600.0, hi)
        if _offset(z, nxt) != segs[-1][1]:
            a, b = t, nxt  # offset(a) == current, offset(b) differs: find the change
            while b - a > 1:
                m = (a + b) // 2
                if _offset(z, m) == segs[-1][1]:
                    a = m
                else:
                    b = m
            segs.append((b, _offset(z, b)))
        t = nxt
    return segs


@functools.lru_cache(maxsize=8)
def zone_segments(tz: str) -> list[tuple[float, int]]:
    """The offsets of ``tz`` over every valid epoch, [0, MAX_EPOCH): the offsets that
    ``wxcube.ingest`` finds over any data span, found once, so the job needs no pass over the
    data to learn its span. (About a second of driver time per zone.)"""
    return tz_segments(tz, 0.0, MAX_EPOCH)


def _tree(x: Column, bounds: Sequence[float | int], values: Sequence[int]) -> Column:
    """Piecewise constant: values[i] where bounds[i-1] <= x < bounds[i] (binary CASE tree)."""
    from pyspark.sql import functions as F

    if len(values) == 1:
        return F.lit(values[0])
    mid = len(values) // 2
    return F.when(x < F.lit(bounds[mid - 1]), _tree(x, bounds[:mid], values[:mid])).otherwise(
        _tree(x, bounds[mid:], values[mid:])
    )


def offset_at_epoch(epoch: Column, segs: list[tuple[float, int]]) -> Column:
    """UTC offset (s) in effect at ``epoch`` (DOUBLE seconds), as ``local_day_sql`` picks it."""
    return _tree(epoch, [float(s) for s, _ in segs[1:]], [o for _, o in segs])


def offset_at_wall(wall_us: Column, segs: list[tuple[float, int]]) -> Column:
    """UTC offset (s) for a naive wall time (µs since 1970-01-01 as if UTC), resolved as
    DuckDB's ``timezone(tz, timestamp)`` (ICU) does: a change at instant s from offset a to b
    applies to wall times from s + b on, so a skipped wall time keeps a and a repeated one
    takes b."""
    bounds = [int(s + o) * 1_000_000 for s, o in segs[1:]]
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds)):
        raise RollupError("timezone changes closer together than their size; cannot resolve")
    return _tree(wall_us, bounds, [o for _, o in segs])


def local_day(epoch: Column, segs: list[tuple[float, int]]) -> Column:
    """Local day number: floor((epoch + offset) / 86400), the arithmetic of ``local_day_sql``."""
    from pyspark.sql import functions as F

    return F.floor((epoch + offset_at_epoch(epoch, segs)) / F.lit(86400.0)).cast("int")


# --- parsing ------------------------------------------------------------------------------
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_frame(df: DataFrame) -> DataFrame:
    """Columns ``text`` (a timestamp as text, or NULL), ``num`` (epoch seconds already known)
    and ``wall0`` (naive wall µs already known) → ``epoch`` (DOUBLE: Unix seconds or zoned ISO)
    and ``wall`` (BIGINT µs: naive ISO, to be read in --naive-tz); both NULL for a bad value.
    Two projections, so that each regular expression runs once per row."""
    from pyspark.sql import functions as F

    text = F.col("text")
    groups = ",".join(f"${i}" for i in (1, 3, 4, 5, 6, 7, 8, 9))
    staged = df.select(
        *(c for c in df.columns if c not in ("text",)),
        F.when(text.rlike(NUM_RE), F.regexp_extract(text, NUM_RE, 1)).alias("_num"),
        F.when(text.rlike(ISO_RE), F.split(F.regexp_replace(text, ISO_RE, groups), ",")).alias(
            "_iso"
        ),
    )
    iso = F.col("_iso")

    def g(i: int) -> Column:  # ISO part: 0 year, 1 month, 2 day, 3 hour, 4 minute, 5 second,
        return F.element_at(iso, i + 1)  # 6 fraction, 7 offset ('' when absent)

    is_iso = iso.isNotNull()
    has_time = g(3) != F.lit("")
    hour = F.when(has_time, g(3).cast("int")).otherwise(F.lit(0))
    minute = F.when(has_time, g(4).cast("int")).otherwise(F.lit(0))
    sec = F.when(g(5) != F.lit(""), g(5).cast("int")).otherwise(F.lit(0))
    frac_us = F.when(
        g(6) != F.lit(""), F.rpad(F.substring(g(6), 1, 6), 6, "0").cast("long")
    ).otherwise(F.lit(0).cast("long"))
    y, mo, d = g(0).cast("int"), g(1).cast("int"), g(2).cast("int")
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    mo_ok = (mo >= 1) & (mo <= 12)
    month_days = F.element_at(
        F.array(*(F.lit(n) for n in _MONTH_DAYS)), F.when(mo_ok, mo).otherwise(F.lit(1))
    ) + F.when((mo == 2) & leap, 1).otherwise(0)
    date_ok = is_iso & mo_ok & (d >= 1) & (d <= month_days)
    time_ok = (
        (minute < 60)
        & (sec < 60)
        & ((hour < 24) | ((hour == 24) & (minute == 0) & (sec == 0) & (frac_us == 0)))
    )
    date = F.when(date_ok, F.make_date(y, mo, d))  # guarded: never an ANSI error
    wall_us = F.when(
        date_ok & time_ok,
        (F.unix_date(date).cast("long") * 86400 + hour * 3600 + minute * 60 + sec) * 1_000_000
        + frac_us,
    )
    off = g(7)
    digits = F.regexp_replace(off, "[^0-9]", "")
    off_s = F.when(off == F.lit("Z"), F.lit(0)).otherwise(
        F.when(F.substring(off, 1, 1) == F.lit("-"), F.lit(-1)).otherwise(F.lit(1))
        * (
            F.substring(digits, 1, 2).cast("int") * 3600
            + F.coalesce(F.nullif(F.substring(digits, 3, 2), F.lit("")).cast("int"), F.lit(0)) * 60
        )
    )
    off_ok = (F.length(digits) < 3) | (F.substring(digits, 3, 2).cast("int") < 60)
    zoned = is_iso & (off != F.lit(""))
    epoch = F.coalesce(
        F.col("num"),
        F.col("_num").cast("double"),
        F.when(zoned & off_ok, (wall_us - off_s.cast("long") * 1_000_000) / F.lit(1e6)),
    )
    wall = F.coalesce(F.col("wall0"), F.when(is_iso & (off == F.lit("")), wall_us))
    keep = [c for c in staged.columns if c not in ("num", "wall0", "_num", "_iso")]
    return staged.select(*keep, epoch.alias("epoch"), wall.alias("wall"))


def resolve_epoch(epoch: Column, wall_us: Column, wall_segs: list[tuple[float, int]]) -> Column:
    """The final epoch (DOUBLE seconds): ``epoch`` if known, else the naive ``wall_us`` read in
    the zone whose segments are ``wall_segs``."""
    from pyspark.sql import functions as F

    off_us = offset_at_wall(wall_us, wall_segs).cast("long") * 1_000_000
    return F.coalesce(epoch, (wall_us - off_us) / F.lit(1e6))


def _read(spark: SparkSession, path: str, fmt: str, cfg: RollupConfig) -> DataFrame:
    """One input → DataFrame(file, openid, text, num, wall0, raw) for :func:`parse_frame`."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    def need(cols: Sequence[str]) -> None:
        for col, opt in ((cfg.openid_col, "--openid-col"), (cfg.time_col, "--time-col")):
            if col not in cols:
                raise RollupError(
                    f"{path}: {col}: no such column (columns: {', '.join(cols)}); "
                    f"choose one with {opt}"
                )

    no_num, no_wall = F.lit(None).cast("double"), F.lit(None).cast("long")
    file = F.col("_metadata.file_path").alias("file")
    try:
        if fmt == "csv":
            df = (
                spark.read.option("header", True)
                .option("inferSchema", False)
                .option("mode", "PERMISSIVE")
                .option("escape", '"')  # RFC 4180 doubled quotes, as DuckDB reads them
                .csv(path)
            )
            need(df.columns)
            t = F.col(f"`{cfg.time_col}`")
            return df.select(
                file,
                F.col(f"`{cfg.openid_col}`").alias("openid"),
                t.alias("text"),
                no_num.alias("num"),
                no_wall.alias("wall0"),
                t.alias("raw"),
            )
        if fmt == "jsonl":
            lines = spark.read.text(path)
            v = lines.where(F.trim(F.col("value")) != F.lit("")).select(
                file, F.try_parse_json(F.col("value")).alias("v")
            )
            po, pt = _json_path(cfg.openid_col), _json_path(cfg.time_col)
            fields = v.select(
                "file",
                F.try_variant_get(F.col("v"), po, "variant").alias("vo"),
                F.try_variant_get(F.col("v"), pt, "variant").alias("vt"),
            ).select(
                "file",
                "vo",
                "vt",
                F.schema_of_variant(F.col("vo")).alias("otype"),
                F.schema_of_variant(F.col("vt")).alias("ttype"),
            )
            vo, vt, ttype = F.col("vo"), F.col("vt"), F.col("ttype")
            numeric = ttype.rlike("^(TINYINT|SMALLINT|INT|BIGINT|FLOAT|DOUBLE|DECIMAL.*)$")
            return fields.select(
                "file",
                F.when(
                    F.col("otype") == F.lit("STRING"), F.try_variant_get(vo, "$", "string")
                ).alias("openid"),
                F.when(ttype == F.lit("STRING"), F.try_variant_get(vt, "$", "string")).alias(
                    "text"
                ),
                F.when(numeric, F.try_variant_get(vt, "$", "double")).alias("num"),
                no_wall.alias("wall0"),
                F.coalesce(F.to_json(vt), F.lit("(missing)")).alias("raw"),
            )
        df = spark.read.parquet(path)
    except RollupError:
        raise
    except Exception as e:  # AnalysisException (missing path, unreadable file, ...)
        raise RollupError(f"{path}: {_first_line(e)}") from None
    need(df.columns)
    t = F.col(f"`{cfg.time_col}`")
    tt = df.schema[cfg.time_col].dataType
    text, num, wall = F.lit(None).cast("string"), no_num, no_wall
    if isinstance(tt, T.TimestampType):  # with a zone (isAdjustedToUTC)
        num = F.unix_micros(t) / F.lit(1e6)
    elif isinstance(tt, T.TimestampNTZType):  # naive: the session zone is UTC, so µs = wall
        wall = F.unix_micros(t.cast("timestamp"))
    elif isinstance(tt, T.DateType):
        wall = F.unix_date(t).cast("long") * 86400 * 1_000_000
    elif isinstance(tt, T.StringType | T.BinaryType):
        text = t.cast("string")
    elif isinstance(tt, T.NumericType):
        num = t.cast("double")
    else:
        raise RollupError(f"{path}: {cfg.time_col}: unsupported column type {tt.simpleString()}")
    return df.select(
        file,
        F.col(f"`{cfg.openid_col}`").cast("string").alias("openid"),
        text.alias("text"),
        num.alias("num"),
        wall.alias("wall0"),
        t.cast("string").alias("raw"),
    )


def _json_path(name: str) -> str:
    if name.isidentifier():
        return f"$.{name}"
    if "'" in name:
        raise RollupError(f"JSON field names with a quote are not supported: {name!r}")
    return f"$['{name}']"


def display_path(uri: str) -> str:
    """Spark's file URI as the user wrote it: ``file:/tmp/a%20b.csv`` → ``/tmp/a b.csv``."""
    if uri.startswith("file:"):
        from urllib.parse import unquote

        return "/" + unquote(uri.removeprefix("file:")).lstrip("/")
    return uri


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def guess_format(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".gzip", ".zst", ".bz2"):
        name = name.removesuffix(suffix)
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise RollupError(f"{path}: unknown format: pass --format csv|jsonl|parquet")


def explain(openid: Any, epoch: Any, raw: Any, openid_col: str, time_col: str) -> tuple[str, str]:
    """(field, problem) of a bad row, worded as ``wxcube ingest`` words it."""
    if openid is None or not str(openid).strip(" "):
        return openid_col, "missing or empty (or not a string)"
    if len(str(openid)) > MAX_OPENID:
        return openid_col, f"longer than {MAX_OPENID} characters"
    if epoch is not None and epoch == epoch:
        return time_col, f"{raw!r} is out of range (Unix seconds 1970..2100; milliseconds?)"
    return time_col, f"{raw!r} {TS_HINT}"


# --- Spark --------------------------------------------------------------------------------
def find_java_home() -> str | None:
    """JAVA_HOME, or the JDK that ``java`` on PATH belongs to, or None."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        return None
    return str(Path(os.path.realpath(java)).parent.parent)


def import_pyspark() -> None:
    """Import pyspark, or raise :class:`SparkMissing` saying how to install it."""
    try:
        import pyspark
    except ImportError:
        raise SparkMissing(INSTALL_HINT) from None
    with warnings.catch_warnings():
        # pyspark.sql.functions.lit imports pyspark.testing.utils, which warns about the pandas
        # version at import; import it once here, quietly (pytest turns warnings into errors)
        warnings.simplefilter("ignore")
        with contextlib.suppress(ImportError):
            import pyspark.testing.utils  # noqa: F401


def spark_session(master: str | None = None, shuffle_partitions: int | None = None) -> Any:
    """A quiet SparkSession for the roll-up (reuses the one spark-submit started)."""
    import_pyspark()
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    conf = SparkConf()
    submitted = conf.contains("spark.master")  # under spark-submit (or pyspark's shell)
    if not submitted:
        home = find_java_home()
        if home is None:
            raise SparkMissing(
                "Spark needs a Java 17+ runtime and none was found: install one (Debian: "
                "apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        os.environ["JAVA_HOME"] = home
    builder = SparkSession.builder.appName("wxcube-rollup").config(conf=conf)
    if master or not submitted:
        builder = builder.master(master or "local[*]")
    local = (master or conf.get("spark.master", "local[*]")).startswith("local")
    builder = builder.config("spark.ui.enabled", "false").config(
        "spark.ui.showConsoleProgress", "false"
    )
    if not conf.contains("spark.log.level"):
        builder = builder.config("spark.log.level", "WARN")
    if shuffle_partitions or local:
        n = shuffle_partitions or max(2, 2 * (os.cpu_count() or 1))
        builder = builder.config("spark.sql.shuffle.partitions", str(n))
    if local:
        builder = builder.config("spark.driver.memory", os.environ.get("WXCUBE_SPARK_MEM", "2g"))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _prepare(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # all zone arithmetic is explicit
    spark.conf.set("spark.sql.parquet.inferTimestampNTZ.enabled", "true")


def _hadoop_fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def run(cfg: RollupConfig, spark: SparkSession | None = None) -> RollupResult:
    """Run the roll-up; raises :class:`RollupError` (nothing valid written) on failure."""
    if not cfg.inputs:
        raise RollupError("--input: give at least one file, directory or glob")
    if cfg.fmt is not None and cfg.fmt not in FORMATS:
        raise RollupError(f"--format: {cfg.fmt!r} is not one of {', '.join(FORMATS)}")
    check_timezone(cfg.timezone, "--timezone")
    naive_tz = cfg.naive_tz or cfg.timezone
    check_timezone(naive_tz, "--naive-tz")
    if cfg.max_bad < 0:
        raise RollupError("--max-bad must be >= 0")
    fmts = [(p, cfg.fmt or guess_format(p)) for p in cfg.inputs]
    if spark is None:
        spark = spark_session(cfg.master, cfg.shuffle_partitions)
    _prepare(spark)
    return _rollup(spark, cfg, fmts, naive_tz)


def _rollup(
    spark: SparkSession, cfg: RollupConfig, fmts: list[tuple[str, str]], naive_tz: str
) -> RollupResult:
    from pyspark import StorageLevel
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    fs, out = _hadoop_fs(spark, cfg.output)
    manifest_fs, manifest_path = _hadoop_fs(spark, _join(cfg.output, ROLLUP_MANIFEST))
    if fs.exists(out) and len(fs.listStatus(out)) > 0:
        if not cfg.overwrite:
            raise RollupError(f"{cfg.output} exists and is not empty: pass --overwrite")
        manifest_fs.delete(manifest_path, False)  # first: a half-rewritten dir is never valid

    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = time.perf_counter() - t0 - sum(timings.values())

    frames = [_read(spark, p, f, cfg) for p, f in fmts]
    raw = frames[0]
    for f in frames[1:]:
        raw = raw.unionByName(f)
    parsed = parse_frame(raw)  # file, openid, raw, epoch, wall
    wsegs, segs = zone_segments(naive_tz), zone_segments(cfg.timezone)
    lap("zones")

    def check(df: DataFrame, *keep: str) -> DataFrame:
        epoch = resolve_epoch(F.col("epoch"), F.col("wall"), wsegs)
        o = F.col("openid")
        bad = (
            o.isNull()
            | (F.trim(o) == F.lit(""))
            | (F.length(o) > MAX_OPENID)
            | epoch.isNull()
            | F.isnan(epoch)
            | (epoch < F.lit(0.0))
            | (epoch >= F.lit(MAX_EPOCH))
        )
        return df.select(*keep, "openid", epoch.alias("epoch"), bad.alias("bad"))

    # one pass over the input: count rows and bad rows on the way, keep the distinct pairs
    counts = Observation("wxcube-rollup-rows")
    checked = check(parsed.select("openid", "epoch", "wall")).observe(
        counts,
        F.count(F.lit(1)).alias("n"),
        F.coalesce(F.sum(F.col("bad").cast("long")), F.lit(0)).alias("bad"),
    )
    # no Filter before the barrier (the cache): Spark would push it down and inline the offset
    # trees into one enormous predicate; bad rows collapse into one (NULL, NULL) pair instead
    bad = F.col("bad")
    day = F.date_from_unix_date(local_day(F.col("epoch"), segs))
    parts = int(spark.conf.get("spark.sql.shuffle.partitions") or "200")
    pairs = (
        checked.select(
            F.when(~bad, F.col("openid")).alias("openid"), F.when(~bad, day).alias("day")
        )
        .repartition(parts, "day")  # one shuffle: dedup within a day's partition
        .distinct()
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    good = pairs.where(F.col("day").isNotNull())
    try:
        out_st = good.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_distinct("day").alias("days"),
            F.min("day").alias("d0"),
            F.max("day").alias("d1"),
        ).collect()[0]
        lap("read+dedup")
        n_rows, n_bad = int(counts.get["n"]), int(counts.get["bad"])
        examples = []
        if n_bad:  # the slow path, only with bad rows: which file, which value
            top = check(parsed, "file", "raw").orderBy(F.col("bad").desc()).limit(EXAMPLES)
            for r in (r for r in top.collect() if r["bad"]):  # top-k: no Filter to push down
                fld, problem = explain(
                    r["openid"], r["epoch"], r["raw"], cfg.openid_col, cfg.time_col
                )
                examples.append(f"{display_path(r['file'])}: {fld}: {problem}")
            lap("examples")
        if n_bad > cfg.max_bad:
            raise TooManyBadRows(n_bad, n_rows, cfg.max_bad, examples)
        writer = good.sortWithinPartitions("day", "openid").write.partitionBy("day")
        writer = writer.option("compression", "zstd")
        writer.mode("overwrite" if cfg.overwrite else "errorifexists").parquet(cfg.output)
        lap("write")
    finally:
        pairs.unpersist()
    rows, days = int(out_st["rows"]), int(out_st["days"])
    d0 = out_st["d0"].strftime("%Y%m%d") if out_st["d0"] else None
    d1 = out_st["d1"].strftime("%Y%m%d") if out_st["d1"] else None
    if not fs.exists(out):  # no valid rows: an empty roll-up is still a roll-up
        fs.mkdirs(out)
    lap("manifest")
    seconds = time.perf_counter() - t0
    result = RollupResult(cfg.output, n_rows, n_bad, rows, d0, d1, days, seconds, examples, timings)
    text = json.dumps(manifest(cfg, result, spark.version), indent=2) + "\n"
    stream = manifest_fs.create(manifest_path, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()
    return result


class TooManyBadRows(RollupError):
    def __init__(self, bad: int, rows: int, max_bad: int, examples: list[str]) -> None:
        self.bad, self.rows, self.max_bad, self.examples = bad, rows, max_bad, examples
        lines = [
            f"{bad:,} of {rows:,} rows are bad (more than --max-bad {max_bad}); "
            "nothing was written. Examples:"
        ]
        lines += [f"  {e}" for e in examples]
        super().__init__("\n".join(lines))


def manifest(cfg: RollupConfig, result: RollupResult, spark_version: str) -> dict[str, Any]:
    """The roll-up's manifest (read by ``wxcube.ingest.read_manifest``)."""
    return {
        "format": ROLLUP_FORMAT,
        "version": ROLLUP_VERSION,
        "app": cfg.app,
        "timezone": cfg.timezone,
        "rows": result.rows,
        "min_day": result.min_day,
        "max_day": result.max_day,
        "days": result.days,
        "bad_rows": result.bad_rows,
        "visits": result.rows_read - result.bad_rows,
        "inputs": list(cfg.inputs),
        "format_in": cfg.fmt,
        "openid_col": cfg.openid_col,
        "time_col": cfg.time_col,
        "naive_tz": cfg.naive_tz or cfg.timezone,
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spark": spark_version,
    }


def summary(r: RollupResult) -> str:
    span = f"{r.min_day}..{r.max_day}" if r.min_day else "no days"
    return (
        f"rolled up {r.rows_read:,} visits ({r.bad_rows:,} bad) into {r.rows:,} (openid, day) rows "
        f"over {r.days:,} days ({span}) in {r.seconds:.1f} s "
        f"({r.visits_per_second:,.0f} visits/s) → {r.output}"
    )


# --- spark-submit / python -m entry point -------------------------------------------------
def arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wxcube-spark-rollup",
        description="Roll raw visit logs up into wxcube's (openid, day) Parquet roll-up.",
    )
    p.add_argument("--input", nargs="+", action="extend", required=True, metavar="PATH")
    p.add_argument("--format", choices=FORMATS, dest="fmt")
    p.add_argument("--openid-col", default="openid")
    p.add_argument("--time-col", default="ts")
    p.add_argument("--naive-tz")
    p.add_argument("--app", required=True)
    p.add_argument("--timezone", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--master")
    p.add_argument("--max-bad", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--shuffle-partitions", type=int)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = arg_parser().parse_args(argv)
    cfg = RollupConfig(
        inputs=tuple(a.input),
        app=a.app,
        timezone=a.timezone,
        output=a.output,
        fmt=a.fmt,
        openid_col=a.openid_col,
        time_col=a.time_col,
        naive_tz=a.naive_tz,
        master=a.master,
        max_bad=a.max_bad,
        overwrite=a.overwrite,
        shuffle_partitions=a.shuffle_partitions,
    )
    try:
        result = run(cfg)
    except RollupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for ex in result.examples:
        print(f"warning: bad row skipped: {ex}", file=sys.stderr)
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
