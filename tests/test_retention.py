"""Bitmap path == SQL path == brute-force reference, on random visits (hypothesis).

Random data includes duplicates, out-of-order and late visits (a later batch holding a user's
earlier first visit), several apps sharing openids, visits a second before and after local
midnight, DST and DST-free timezones, and as_of inside the data.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import reference as ref
from wxcube.index import Index
from wxcube.ingest import Source, ingest_files, ingest_records
from wxcube.periods import KINDS, to_daynum
from wxcube.retention import bitmap_retain, sql_retain
from wxcube.store import Store

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/Berlin", "UTC", "Australia/Lord_Howe"]
ANCHOR = dt.date(2024, 2, 26)  # a Monday; 60 days cover the US and EU spring DST changes
SPAN = 60


@st.composite
def visit(draw: st.DrawFn, tz: str) -> tuple[str, float]:
    openid = draw(st.sampled_from([f"o{i}" for i in range(8)]))
    day = ANCHOR + dt.timedelta(days=draw(st.integers(0, SPAN - 1)))
    midnight = dt.datetime.combine(day, dt.time(), ZoneInfo(tz)).timestamp()
    where = draw(st.sampled_from(["before", "after", "any", "any"]))
    if where == "before":
        t = midnight - 1
    elif where == "after":
        t = midnight
    else:
        t = midnight + draw(st.integers(0, 86399))
    return openid, float(t) + draw(st.sampled_from([0.0, 0.0, 0.25]))


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, object]:
    apps = []
    for _ in range(draw(st.integers(1, 2))):
        tz = draw(st.sampled_from(ZONES))
        visits = draw(st.lists(visit(tz), min_size=0, max_size=40))
        visits += draw(st.lists(st.sampled_from(visits), max_size=5)) if visits else []  # dups
        order = draw(st.permutations(range(len(visits))))
        visits = [visits[i] for i in order]
        cuts = sorted(draw(st.lists(st.integers(0, len(visits)), max_size=3)))
        batches = [visits[a:b] for a, b in zip([0, *cuts], [*cuts, len(visits)], strict=True)]
        apps.append({"tz": tz, "visits": visits, "batches": batches})
    as_of = ANCHOR + dt.timedelta(days=draw(st.integers(0, SPAN + 40)))
    return {"apps": apps, "as_of": as_of, "use_files": draw(st.booleans())}


def _write_csv(path: Path, batch: list[tuple[str, float]], tz: str) -> None:
    """Mix the accepted timestamp spellings; all denote the same instants."""
    lines = ["openid,ts"]
    for i, (o, t) in enumerate(batch):
        inst = dt.datetime.fromtimestamp(t, dt.UTC)
        style = i % 4
        if style == 0:
            lines.append(f"{o},{t!r}" if t % 1 else f"{o},{int(t)}")
        elif style == 1:
            lines.append(f"{o},{inst.isoformat().replace('+00:00', 'Z')}")
        elif style == 2:
            local = inst.astimezone(ZoneInfo(tz))
            lines.append(f"{o},{local.isoformat(sep=' ')}")
        else:
            lines.append(f"{o},{inst.astimezone(dt.timezone(dt.timedelta(hours=-3))).isoformat()}")
    path.write_text("\n".join(lines) + "\n")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_bitmap_equals_sql_equals_reference(sc: dict[str, object]) -> None:
    apps_spec: list[dict[str, object]] = sc["apps"]  # type: ignore[assignment]
    as_of: dt.date = sc["as_of"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "t.duckdb") as store:
        live = Index()
        live.ready = True
        made = []
        for spec in apps_spec:
            tz = str(spec["tz"])
            app, _ = store.create_app("t", tz)
            made.append((app.appid, spec))
            for n, batch in enumerate(spec["batches"]):  # type: ignore[attr-defined]
                if not batch:
                    continue
                if sc["use_files"]:
                    p = Path(tmp) / f"{app.appid}-{n}.csv"
                    _write_csv(p, batch, tz)
                    ingest_files(store, app.appid, [Source(p, "csv")], index=live)
                else:
                    recs = [{"openid": o, "ts": t} for o, t in batch]
                    ingest_records(store, app.appid, recs, index=live)
        fresh = Index()
        fresh.load_all(store)
        for appid, spec in made:
            visits: list[tuple[str, float]] = spec["visits"]  # type: ignore[assignment]
            tz = str(spec["tz"])
            lo = ANCHOR - dt.timedelta(days=1)
            for kname, kind in KINDS.items():
                for start in ref.period_starts(kname, lo, as_of):
                    want = ref.retain(visits, tz, kname, start, as_of)
                    s, a = to_daynum(start), to_daynum(as_of)
                    got_live = bitmap_retain(live.app(appid), kind, s, a).as_dict()
                    got_fresh = bitmap_retain(fresh.app(appid), kind, s, a).as_dict()
                    got_sql = sql_retain(store.read(), appid, kind, s, a).as_dict()
                    assert got_live == want, (kname, start)
                    assert got_fresh == want, (kname, start)
                    assert got_sql == want, (kname, start)


def test_seed_examples_shapes() -> None:
    """The seeds' ref_date shapes and key lists."""
    from wxcube.periods import DAY, MONTH, WEEK, parse_period

    w = parse_period(WEEK, "20170306", "20170312")
    assert WEEK.ref_date(w) == "20170306-20170312"
    m = parse_period(MONTH, "20170201", "20170228")
    assert MONTH.ref_date(m) == "201702"
    d = parse_period(DAY, "20170313", "20170313")
    assert DAY.ref_date(d) == "20170313"
    assert WEEK.keys == (0, 1, 2, 3, 4)
    assert MONTH.keys == (0, 1)
    assert DAY.keys == (0, 1, 2, 3, 4, 5, 6, 7, 14, 30)
    # keys of periods that have not ended are left out, ascending
    assert WEEK.present_keys(w, to_daynum(dt.date(2017, 3, 19))) == [0, 1]
    assert MONTH.present_keys(m, to_daynum(dt.date(2017, 3, 30))) == [0]
    assert MONTH.present_keys(m, to_daynum(dt.date(2017, 3, 31))) == [0, 1]


def test_late_visit_moves_new_day(store: Store) -> None:
    """A late visit earlier than a user's known first visit moves that user's "new" day."""
    app, _ = store.create_app("late", "Asia/Shanghai")
    live = Index()
    d1 = dt.datetime(2024, 5, 10, 12, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    d0 = dt.datetime(2024, 5, 3, 12, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    ingest_records(store, app.appid, [{"openid": "u", "ts": d1}], index=live)
    as_of = to_daynum(dt.date(2024, 6, 30))
    day = KINDS["day"]
    s10, s3 = to_daynum(dt.date(2024, 5, 10)), to_daynum(dt.date(2024, 5, 3))
    assert bitmap_retain(live.app(app.appid), day, s10, as_of).visit_uv_new[0] == (0, 1)
    ingest_records(store, app.appid, [{"openid": "u", "ts": d0}], index=live)
    assert bitmap_retain(live.app(app.appid), day, s10, as_of).visit_uv_new[0] == (0, 0)
    got = bitmap_retain(live.app(app.appid), day, s3, as_of)
    assert got.visit_uv_new[0] == (0, 1)
    assert dict(got.visit_uv_new)[7] == 1  # retained 7 days later
    assert sql_retain(store.read(), app.appid, day, s3, as_of) == got
