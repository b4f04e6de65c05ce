"""`wxcube demo` and `wxcube serve`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from . import handle_errors, settings

DEMO_NAME = "demo"


def build_demo(db: str, as_of: str | None) -> tuple[str, str, str]:
    """Create (or refresh) the demo app: a seeded year of visits ending as_of (yesterday).
    Returns (appid, secret, timezone). Goes through the real file-ingest path."""
    import pyarrow.parquet as pq

    from ..demo import generate
    from ..ingest import Source, ingest_files
    from ..periods import from_daynum
    from ..settings import as_of_day
    from ..store import DEFAULT_TZ, Store

    end = from_daynum(as_of_day(as_of, DEFAULT_TZ))
    with Store(db) as store:
        for a in store.apps():
            if a.name == DEMO_NAME:
                info = store.app_info(a.appid)
                if info["last_day"] is not None and from_daynum(info["last_day"]) >= end:
                    return a.appid, store.rotate_secret(a.appid), a.timezone
        app, secret = store.create_app(DEMO_NAME, DEFAULT_TZ)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-visits.parquet"
            pq.write_table(generate(end, timezone=app.timezone), path)
            ingest_files(store, app.appid, [Source(path, "parquet")])
    return app.appid, secret, app.timezone


@click.command("demo")
@click.option("--port", default=8000, show_default=True, help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, port: int, host: str) -> None:
    """Create a demo app with a realistic year of visits ending yesterday, then show it."""
    from ..periods import MONTH, WEEK, fmt
    from ..retention import sql_retain
    from ..settings import as_of_day
    from ..store import Store

    s = settings(ctx)
    appid, secret, tz = build_demo(s.db, s.as_of)
    as_of = as_of_day(s.as_of, tz)
    click.echo(f"demo app ready in {s.db}\n  appid:  {appid}\n  secret: {secret}\n")
    with Store(s.db, read_only=False) as store:
        for kind, n in ((WEEK, 6), (MONTH, 4)):
            last = kind.shift(kind.start_of(as_of), -1)
            if kind.end(kind.start_of(as_of)) <= as_of:
                last = kind.start_of(as_of)
            rows = [
                sql_retain(store.read(), appid, kind, kind.shift(last, -i), as_of).as_dict()
                for i in range(n - 1, -1, -1)
            ]
            from .data import _tables

            click.echo(f"{kind.name}ly retention up to {fmt(as_of)}:")
            _tables(rows, list(kind.keys))


COMMANDS: list[click.Command] = [demo]
