"""The `wxcube` command. Commands are thin: they parse, call the package, and print.

Global options come from the settings table (`wxcube.settings.SETTINGS`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import APIError, WxcubeError
from ..settings import SETTINGS, Settings

F = TypeVar("F", bound=Callable[..., Any])
_HELP = {s.name: f"{s.help} [env {s.env}]" for s in SETTINGS}


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn wxcube's errors into one line on stderr and exit 1: never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except APIError as e:
            fail(f"{e.message} (errcode {e.errcode})")
        except WxcubeError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted; nothing was applied by an unfinished command", 130)

    return wrapper  # type: ignore[return-value]


def visit_input_options(naive_default: str) -> Callable[[F], F]:
    """The options that describe raw visit files, shared by `ingest` and `spark-rollup`
    (they must read the same files the same way)."""
    options = [
        click.option(
            "--format",
            "fmt_",
            type=click.Choice(["csv", "jsonl", "parquet"]),
            help="Input format (default: from each input's extension; .gz allowed).",
        ),
        click.option(
            "--openid-col", default="openid", show_default=True, help="Column with the openid."
        ),
        click.option(
            "--time-col", default="ts", show_default=True, help="Column with the visit time."
        ),
        click.option(
            "--naive-tz",
            help=f"Timezone of timestamps without an offset (default: {naive_default}).",
        ),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db", envvar="WXCUBE_DB", default="./wxcube.duckdb", show_default=True, help=_HELP["db"]
)
@click.option("--as-of", "as_of", envvar="WXCUBE_AS_OF", metavar="YYYYMMDD", help=_HELP["as_of"])
@click.version_option(package_name="wxcube")
@click.pass_context
def main(ctx: click.Context, db: str, as_of: str | None) -> None:
    """wxcube: a WeChat-compatible Mini Program retention datacube.

    \b
    Quick start:
      wxcube app create --name "My Mini Program"
      wxcube ingest visits.csv --app APPID
      wxcube retain daily 20240101 --app APPID --format json
    """
    if as_of:
        from ..periods import parse_date

        try:
            parse_date(as_of, "--as-of")
        except APIError as e:
            raise click.BadParameter(e.detail or e.message, param_hint="--as-of") from None
    ctx.obj = Settings.from_env(db=db, as_of=as_of)


def settings(ctx: click.Context) -> Settings:
    s = ctx.find_root().obj
    assert isinstance(s, Settings)
    return s


from . import admin, data, serve, spark  # noqa: E402  (register the commands)

for _mod in (data, serve, spark, admin):
    for _cmd in _mod.COMMANDS:
        main.add_command(_cmd)
