"""Settings: one table drives the CLI options, their environment variables, --help and docs.

``Settings`` is built once (``Settings.from_env``, then CLI overrides) and passed down:
``create_app(settings)``; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from .periods import parse_date, to_daynum


@dataclass(frozen=True)
class Setting:
    name: str  # attribute of Settings
    env: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "WXCUBE_DB", "./wxcube.duckdb", "DuckDB file holding apps, tokens and data."),
    Setting(
        "as_of",
        "WXCUBE_AS_OF",
        None,
        "Last complete day (yyyymmdd); default: yesterday in each app's timezone.",
    ),
    Setting(
        "admin_key",
        "WXCUBE_ADMIN_KEY",
        None,
        "Key for the admin endpoints (`wxcube app ... --url`); unset = admin API off.",
    ),
    Setting("host", "WXCUBE_HOST", "127.0.0.1", "Address `serve` listens on."),
    Setting("port", "WXCUBE_PORT", 8000, "Port `serve` listens on."),
    Setting("token_ttl", "WXCUBE_TOKEN_TTL", 7200, "Lifetime of an access_token, seconds."),
    Setting(
        "quota_daily", "WXCUBE_QUOTA_DAILY", 10_000_000, "Calls per app, API and day before 45009."
    ),
    Setting(
        "quota_minute",
        "WXCUBE_QUOTA_MINUTE",
        100_000,
        "Calls per app, API and minute before 45011.",
    ),
    Setting(
        "max_body_bytes",
        "WXCUBE_MAX_BODY_BYTES",
        16 * 1024 * 1024,
        "Largest request body accepted (45002 beyond).",
    ),
    Setting(
        "max_batch",
        "WXCUBE_MAX_BATCH",
        100_000,
        "Most visits in one POST /wxcube/v1/visits (45002 beyond).",
    ),
    Setting("request_timeout", "WXCUBE_REQUEST_TIMEOUT", 30.0, "Seconds before a request fails."),
    Setting(
        "quotas",
        "WXCUBE_QUOTAS",
        None,
        "Per-app quota overrides: APPID=MINUTE/DAILY[,APPID=MINUTE/DAILY...].",
    ),
    Setting(
        "dashboard_dir",
        "WXCUBE_DASHBOARD_DIR",
        None,
        "Directory served at /dashboard (default: the dashboard shipped with wxcube).",
    ),
    Setting(
        "access_log",
        "WXCUBE_ACCESS_LOG",
        True,
        "Write one JSON access-log line per request (with its rid) to stderr.",
    ),
)


@dataclass(frozen=True)
class Settings:
    db: str = "./wxcube.duckdb"
    as_of: str | None = None
    admin_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token_ttl: int = 7200
    quota_daily: int = 10_000_000
    quota_minute: int = 100_000
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch: int = 100_000
    request_timeout: float = 30.0
    quotas: str | None = None
    dashboard_dir: str | None = None
    access_log: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for s in SETTINGS:
            if s.env in env and env[s.env] != "":
                raw = env[s.env]
                t = types[s.name]
                if t == "int":
                    values[s.name] = int(raw)
                elif t == "float":
                    values[s.name] = float(raw)
                elif t == "bool":
                    values[s.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    values[s.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def as_of_day(settings_as_of: str | None, timezone: str, now: dt.datetime | None = None) -> int:
    """as_of as a day number: the override, else yesterday in ``timezone`` by the clock."""
    if settings_as_of:
        return int(parse_date(settings_as_of, "as_of"))
    now = now or dt.datetime.now(dt.UTC)
    return to_daynum(now.astimezone(ZoneInfo(timezone)).date()) - 1
