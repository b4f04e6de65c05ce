"""`make bench` keeps working: the whole benchmark at a tiny scale (not a timed test: only that it
runs, that every path agrees with the bitmaps, and that it writes sane results)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gen  # noqa: E402
from bench.run import main  # noqa: E402


def test_generator_is_seeded_and_shaped() -> None:
    a = gen.generate(0.001, seed=3)
    b = gen.generate(0.001, seed=3)
    visits, users = gen.sizes(0.001)
    assert a.equals(b)
    assert a.num_rows == visits
    ids = a["openid"]
    assert pc.count_distinct(ids).as_py() == users
    assert set(pc.utf8_length(ids).unique().to_pylist()) == {28}
    ts = a["ts"].cast("int64").to_numpy()
    assert (ts[1:] >= ts[:-1]).all()  # sorted by time, like a log
    assert not gen.generate(0.001, seed=4).equals(a)


@pytest.mark.slow
def test_bench_runs_at_tiny_scale(tmp_path: Path) -> None:
    http = shutil.which("wrk") is not None
    args = ["--scale", "0.01", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path)]
    args += ["--reps", "1", "--sql-per-kind", "2", "--raw-per-kind", "1"]
    args += ["--wrk-seconds", "1", "--http-batches", "3", "--http-batch", "1000"]
    if not http:
        args.append("--no-http")
    assert main(args) == 0
    (result,) = tmp_path.glob("*-scale0.01*.json")
    res = json.loads(result.read_text())
    visits, _ = gen.sizes(0.01)
    assert res["dataset"]["visits"] == visits
    for fmt in ("parquet", "csv"):
        assert res["ingest"][fmt]["visits"] == visits
        assert res["ingest"][fmt]["visits_per_s"] > 0
    q = res["query"]
    assert q["periods"] == {"day": 365, "week": 52, "month": 12}
    assert q["bitmap_cached"]["n"] == 429
    for path in ("sql", "duckdb_raw", "chdb_raw"):
        assert q[path].get("disagree") == [], (path, q[path])
    assert 0 < q["bitmap_cached"]["median_us"] < q["sql"]["median_us"]
    keys = {t["key"] for t in res["targets"]}
    assert len(keys) == 10
    measured = {t["key"]: t["measured"] for t in res["targets"]}
    assert all(v is not None and v > 0 for k, v in measured.items() if not k.startswith("http"))
    if http:
        h = res["http"]
        assert h["datacube"]["error_bodies"] == 0 and h["datacube"]["non_2xx"] == 0
        assert h["datacube"]["req_per_s"] > 0
        assert h["ingest"]["visits"] > 0
        assert h["cold_start_s"] > 0 and h["memory"]["worker_hwm_mib"] > 0
        assert all(v is not None for v in measured.values())
    md = (tmp_path / "latest-scale0.01.md").read_text()
    assert "| figure | target | measured | met |" in md
    assert md.count("\n| ") >= 11
