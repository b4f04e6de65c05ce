"""`wxcube demo` and `wxcube serve`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from ..periods import Kind
from ..settings import SETTINGS, Settings
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
        demo_app = next((a for a in store.apps() if a.name == DEMO_NAME), None)
        if demo_app is not None:
            info = store.app_info(demo_app.appid)
            secret = store.rotate_secret(demo_app.appid)  # shown once: a new one to print
            if info["last_day"] is not None and from_daynum(info["last_day"]) >= end:
                return demo_app.appid, secret, demo_app.timezone
            store.clear_data(demo_app.appid)  # a stale demo year: regenerate it in place
            app = demo_app
        else:
            app, secret = store.create_app(DEMO_NAME, DEFAULT_TZ)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-visits.parquet"
            pq.write_table(generate(end, timezone=app.timezone), path)
            ingest_files(store, app.appid, [Source(path, "parquet")])
    return app.appid, secret, app.timezone


def run_server(s: Settings) -> None:
    """Serve ``s`` with granian: one worker process owns the store (SIGTERM/SIGINT: graceful).

    The worker builds its settings with ``Settings.from_env``, so every setting is exported.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    from ..errors import WxcubeError
    from ..quotas import parse_overrides
    from ..store import Store

    try:
        parse_overrides(s.quotas)
    except ValueError as e:
        raise WxcubeError(f"WXCUBE_QUOTAS: {e}") from None
    Store(s.db).close()  # fail here, plainly, if another process holds the file
    for st in SETTINGS:
        value = getattr(s, st.name)
        if value is None:
            os.environ.pop(st.env, None)
        else:
            os.environ[st.env] = str(value).lower() if isinstance(value, bool) else str(value)
    Server(
        "wxcube.server:app_from_env",
        address=s.host,
        port=s.port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        http=HTTPModes.http1,  # what WeChat clients speak; measured faster than auto
        websockets=False,
        log_access=False,  # wxcube writes its own structured access log, with the rid
        backlog=2048,
    ).serve()


@click.command("serve")
@click.option(
    "--host", default=None, help="Address to listen on [default 127.0.0.1; env WXCUBE_HOST]."
)
@click.option("--port", type=int, default=None, help="Port [default 8000; env WXCUBE_PORT].")
@click.pass_context
@handle_errors
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the WeChat-compatible API, the wxcube extensions and the dashboard.

    \b
    One process owns the database: while it runs, use the store commands with --url
    (`wxcube retain ... --url http://HOST:PORT --secret S`; `wxcube app ... --url` with
    WXCUBE_ADMIN_KEY). SIGTERM or Ctrl-C stops it gracefully.
    """
    s = settings(ctx).replace(**{k: v for k, v in (("host", host), ("port", port)) if v})
    click.echo(
        f"wxcube serving {s.db} on http://{s.host}:{s.port}  "
        f"(dashboard: http://{s.host}:{s.port}/dashboard)",
        err=True,
    )
    run_server(s)


def _last_complete(kind: Kind, as_of: int) -> int:
    start = kind.start_of(as_of)
    return start if kind.end(start) <= as_of else kind.shift(start, -1)


@click.command("demo")
@click.option("--port", type=int, default=None, help="Port [default 8000; env WXCUBE_PORT].")
@click.option(
    "--host", default=None, help="Address to listen on [default 127.0.0.1; env WXCUBE_HOST]."
)
@click.pass_context
@handle_errors
def demo(ctx: click.Context, port: int | None, host: str | None) -> None:
    """Create a demo app with a realistic year of visits ending yesterday, then serve it."""
    from ..periods import DAY, MONTH, WEEK, fmt, from_daynum
    from ..settings import as_of_day

    s = settings(ctx).replace(**{k: v for k, v in (("host", host), ("port", port)) if v})
    host, port = s.host, s.port
    click.echo(f"building the demo app in {s.db} (a year of visits) ...", err=True)
    appid, secret, tz = build_demo(s.db, s.as_of)
    as_of = as_of_day(s.as_of, tz)
    base = f"http://{host}:{port}"
    # periods old enough for every key to be present (WeChat leaves out unfinished ones)
    day = fmt(as_of - 30)
    week = WEEK.shift(_last_complete(WEEK, as_of), -4)
    month = MONTH.shift(_last_complete(MONTH, as_of), -1)
    tok = (
        f'TOKEN=$(curl -s "{base}/cgi-bin/token?grant_type=client_credential'
        f'&appid={appid}&secret={secret}" | python3 -c '
        "\"import sys, json; print(json.load(sys.stdin)['access_token'])\")"
    )
    lines = [
        f"demo app ready in {s.db}",
        f"  appid:  {appid}",
        f"  secret: {secret}",
        "",
        "curl (get a token, then ask WeChat's datacube API, now served locally):",
        f"  {tok}",
        f'  curl -s -X POST "{base}{DAY.path}?access_token=$TOKEN" '
        f'-d \'{{"begin_date":"{day}","end_date":"{day}"}}\'',
        f'  curl -s -X POST "{base}{WEEK.path}?access_token=$TOKEN" '
        f'-d \'{{"begin_date":"{fmt(week)}","end_date":"{fmt(WEEK.end(week))}"}}\'',
        f'  curl -s -X POST "{base}{MONTH.path}?access_token=$TOKEN" '
        f'-d \'{{"begin_date":"{fmt(month)}","end_date":"{fmt(MONTH.end(month))}"}}\'',
        f'  curl -s -X POST "{base}/cgi-bin/stable_token" '
        f'-d \'{{"grant_type":"client_credential","appid":"{appid}","secret":"{secret}"}}\'',
        f'  curl -s "{base}/wxcube/v1/info?access_token=$TOKEN"',
        f'  curl -s -X POST "{base}/wxcube/v1/retain?access_token=$TOKEN" '
        f'-d \'{{"kind":"week","begin_date":"{fmt(WEEK.shift(week, -3))}","end_date":"{day}"}}\'',
        f'  curl -s -X POST "{base}/wxcube/v1/visits?access_token=$TOKEN" '
        f'-d \'{{"visits":[{{"openid":"o-new-user",'
        f'"ts":"{from_daynum(as_of).isoformat()}T12:00:00+08:00"}}]}}\'',
        "",
        "Python SDK:",
        "  from wxcube.client import WeChatClient",
        f'  client = WeChatClient("{appid}", "{secret}", base_url="{base}")',
        f'  print(client.analysis.get_daily_retain("{day}", "{day}"))',
        "",
        f"dashboard: {base}/dashboard",
        f"metrics:   {base}/metrics     API description: {base}/openapi.json",
        "",
        "serving; Ctrl-C to stop",
    ]
    click.echo("\n".join(lines))
    run_server(s)


COMMANDS: list[click.Command] = [demo, serve]
