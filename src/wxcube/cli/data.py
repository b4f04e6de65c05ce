"""Store commands: `app`, `ingest`, `retain`."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from ..periods import ADVERBS, fmt, parse_date
from . import handle_errors, settings, visit_input_options

F = TypeVar("F", bound=Callable[..., Any])


def open_store(ctx: click.Context, *, read_only: bool = False) -> Any:
    from ..store import Store

    return Store(settings(ctx).db, read_only=read_only)


def url_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--url",
        metavar="URL",
        help=f"Send to a running server (http://HOST:PORT) instead of opening --db; {what}.",
    )


def secret_option() -> Callable[[F], F]:
    return click.option(
        "--secret",
        envvar="WX_SECRET",
        help="The app's secret, with --url [env WX_SECRET].",
    )


def remote(url: str) -> Any:
    from ..remote import Remote

    return Remote(url)


def admin_key(ctx: click.Context) -> str:
    key = settings(ctx).admin_key
    if not key:
        raise click.UsageError(
            "--url needs the admin key the server was started with: set WXCUBE_ADMIN_KEY"
        )
    return key


def app_token(r: Any, appid: str, secret: str | None) -> str:
    if not secret:
        raise click.UsageError("--url needs the app's --secret (or env WX_SECRET)")
    return str(r.token(appid, secret))


# --- app ----------------------------------------------------------------------------------
@click.group("app")
def app_group() -> None:
    """Create and list apps; rotate an app's secret."""


@app_group.command("create")
@click.option("--name", default="", help="Display name (default: the appid).")
@click.option(
    "--timezone",
    default="Asia/Shanghai",
    show_default=True,
    help="IANA timezone whose calendar days the app's retention uses.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"appid", "secret"} as JSON.')
@url_option("needs WXCUBE_ADMIN_KEY")
@click.pass_context
@handle_errors
def app_create(
    ctx: click.Context, name: str, timezone: str, as_json: bool, url: str | None
) -> None:
    """Create an app. Its secret is shown once: keep it."""
    if url:
        with remote(url) as r:
            got = r.create_app(admin_key(ctx), name, timezone)
        appid, secret, name, timezone = got["appid"], got["secret"], got["name"], got["timezone"]
    else:
        with open_store(ctx) as store:
            app, secret = store.create_app(name, timezone)
        appid, name, timezone = app.appid, app.name, app.timezone
    if as_json:
        click.echo(orjson.dumps({"appid": appid, "secret": secret}).decode())
    else:
        click.echo(
            f"appid:    {appid}\nsecret:   {secret}   (shown once: store it now)\n"
            f"name:     {name}\ntimezone: {timezone}"
        )


@app_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per app.")
@url_option("needs WXCUBE_ADMIN_KEY")
@click.pass_context
@handle_errors
def app_list(ctx: click.Context, as_json: bool, url: str | None) -> None:
    """List apps with their timezone, users and days of data."""
    if url:
        with remote(url) as r:
            rows = r.list_apps(admin_key(ctx))
    elif not Path(settings(ctx).db).exists():
        rows = []  # listing creates nothing
    else:
        with open_store(ctx, read_only=True) as store:
            rows = []
            for a in store.apps():
                info = store.app_info(a.appid)
                first, last = info["first_day"], info["last_day"]
                rows.append(
                    {
                        "appid": a.appid,
                        "name": a.name,
                        "timezone": a.timezone,
                        "users": info["users"],
                        "first_day": fmt(first) if first is not None else None,
                        "last_day": fmt(last) if last is not None else None,
                    }
                )
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    if not rows:
        click.echo("no apps yet: wxcube app create --name NAME")
        return
    for a in rows:
        span = f"{a['first_day']}..{a['last_day']}" if a["first_day"] is not None else "no data"
        click.echo(
            f"{a['appid']}  {a['name']:<20}  {a['timezone']:<16}  {a['users']:>9,} users  {span}"
        )


@app_group.command("rotate-secret")
@click.argument("appid")
@url_option("needs WXCUBE_ADMIN_KEY")
@click.pass_context
@handle_errors
def app_rotate(ctx: click.Context, appid: str, url: str | None) -> None:
    """Issue a new secret; the old one and every token issued with it stop working."""
    if url:
        with remote(url) as r:
            secret = r.rotate_secret(admin_key(ctx), appid)
    else:
        with open_store(ctx) as store:
            secret = store.rotate_secret(appid)
    click.echo(f"appid:  {appid}\nsecret: {secret}   (shown once: store it now)")


# --- ingest -------------------------------------------------------------------------------
@click.command("ingest")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--app", "appid", required=True, help="APPID the visits belong to.")
@visit_input_options("the app's")
@click.option(
    "--rollup",
    type=click.Path(path_type=Path),
    help="Load a roll-up directory written by `wxcube spark-rollup` instead of FILES.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@url_option("files are parsed here and sent in batches")
@secret_option()
@click.option(
    "--batch-size",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Visits per request with --url.",
)
@click.pass_context
@handle_errors
def ingest(
    ctx: click.Context,
    files: tuple[Path, ...],
    appid: str,
    fmt_: str | None,
    openid_col: str,
    time_col: str,
    naive_tz: str | None,
    rollup: Path | None,
    quiet: bool,
    url: str | None,
    secret: str | None,
    batch_size: int,
) -> None:
    """Ingest visit logs (CSV / JSONL / Parquet, optionally gzip'd).

    Timestamps: Unix seconds (integer or decimal) or ISO-8601 (`T` or space; with an offset or
    `Z`, or naive and read in --naive-tz). All or nothing: a bad row names file, line and field,
    and nothing is applied. Duplicates and replays change nothing.
    """
    from ..ingest import Source, guess_format, ingest_files, ingest_rollup

    if bool(files) == bool(rollup):
        raise click.UsageError("give visit FILES, or --rollup DIR (not both)")
    if url and rollup:
        raise click.UsageError("--rollup loads into a local database; stop the server first")
    sources = [Source(f, fmt_ or guess_format(f), openid_col, time_col) for f in files]
    read = f"read {{:,}} visits from {len(files)} file(s)"
    if url:
        with remote(url) as r, _progress(quiet) as progress:
            token = app_token(r, appid, secret)
            result = r.ingest(
                token, sources, naive_tz=naive_tz, batch=batch_size, progress=progress
            )
        read += f", sent to {url} in {result.batches} batch(es)"
    else:
        with open_store(ctx) as store, _progress(quiet) as progress:
            if rollup:
                result = ingest_rollup(store, appid, rollup, progress=progress)
                read = f"read {{:,}} (openid, day) rows from roll-up {rollup}"
            else:
                result = ingest_files(store, appid, sources, naive_tz=naive_tz, progress=progress)
    click.echo(
        f"{read.format(result.visits)}: {result.visits:,} accepted, {result.pairs_added:,} new "
        f"(user, day) pairs, {result.duplicates:,} duplicate, {result.new_users:,} new users, "
        "0 rejected"
    )


class _progress:
    """A rich progress bar fed by DuckDB's query progress (stderr; off when not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet or not sys.stderr.isatty()
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.__enter__()
        return self.update

    def update(self, label: str, pct: float) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=100)
        self.bar.update(self.tasks[label], completed=pct)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# --- retain -------------------------------------------------------------------------------
@click.command("retain")
@click.argument("kind", type=click.Choice(list(ADVERBS)))
@click.argument("begin")
@click.argument("end", required=False)
@click.option("--app", "appid", required=True, help="APPID to report on.")
@click.option(
    "--format",
    "out",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="json prints exactly the HTTP response body, one line each.",
)
@url_option("answers come from its live index")
@secret_option()
@click.pass_context
@handle_errors
def retain(
    ctx: click.Context,
    kind: str,
    begin: str,
    end: str | None,
    appid: str,
    out: str,
    url: str | None,
    secret: str | None,
) -> None:
    """Retention of new and active users, as WeChat's getDaily/Weekly/MonthlyRetain.

    BEGIN (yyyymmdd) must start a period: any day, a Monday for weekly, the 1st for monthly.
    With END, every period from BEGIN up to END that has ended by as_of, one per line.
    """
    from ..errors import DateRangeError
    from ..retention import sql_retain
    from ..settings import as_of_day

    k = ADVERBS[kind]
    b = parse_date(begin, "BEGIN")
    if k.start_of(b) != b:
        raise DateRangeError(f"BEGIN {begin} does not start a period: {k.describe}")
    e = parse_date(end, "END") if end else b
    if e < b:
        raise DateRangeError(f"END {end} is before BEGIN {begin}")
    if url:
        with remote(url) as r:
            token = app_token(r, appid, secret)
            bodies, as_of_s, left_out = r.retain(token, k.name, fmt(b), fmt(e))
        wanted = settings(ctx).as_of
        if wanted and wanted != as_of_s:
            click.echo(
                f"note: the server answers as of {as_of_s}; --as-of {wanted} applies only to "
                "a local database (start the server with WXCUBE_AS_OF to replay history)",
                err=True,
            )
    else:
        with open_store(ctx, read_only=True) as store:
            app = store.require_app(appid)
            as_of = as_of_day(settings(ctx).as_of, app.timezone)
            starts = k.starts(b, e)
            done = [s for s in starts if k.end(s) <= as_of]
            if not done:
                k.check_elapsed(starts[0], as_of)  # raises the 61501 explanation
            results = [sql_retain(store.read(), appid, k, s, as_of) for s in done]
        bodies = [r.as_dict() for r in results]
        as_of_s, left_out = fmt(as_of), len(starts) - len(done)
    if left_out:
        click.echo(
            f"note: {left_out} later period(s) have not ended by as_of {as_of_s} and are left out",
            err=True,
        )
    if out == "json":
        for body in bodies:
            click.echo(orjson.dumps(body).decode())
    elif out == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["ref_date", "metric", "key", "value"])
        for body in bodies:
            for metric in ("visit_uv_new", "visit_uv"):
                for item in body[metric]:
                    w.writerow([body["ref_date"], metric, item["key"], item["value"]])
        click.echo(buf.getvalue(), nl=False)
    else:
        _tables(bodies, list(k.keys))


def _tables(bodies: list[dict[str, Any]], keys: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for metric, title in (("visit_uv_new", "new users"), ("visit_uv", "active users")):
        t = Table(title=f"retention of {title}", title_justify="left")
        t.add_column("ref_date")
        for key in keys:
            t.add_column(f"+{key}" if key else "0", justify="right")
        for body in bodies:
            vals = {it["key"]: it["value"] for it in body[metric]}
            base = vals.get(0) or 0
            cells = []
            for key in keys:
                if key not in vals:
                    cells.append("")
                elif key == 0 or not base:
                    cells.append(f"{vals[key]:,}")
                else:
                    cells.append(f"{vals[key]:,} ({100 * vals[key] / base:.0f}%)")
            t.add_row(body["ref_date"], *cells)
        console.print(t)


COMMANDS: list[click.Command] = [app_group, ingest, retain]
