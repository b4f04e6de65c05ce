"""Every error wxcube raises, and the one place WeChat's errcode/errmsg table lives.

WxcubeError
├── APIError                    carries a WeChat errcode; rendered by the server as SPEC §2 body
│   ├── SystemError_            -1     system error
│   ├── InvalidCredential       40001
│   ├── InvalidGrantType        40002
│   ├── InvalidAppid            40013
│   ├── InvalidAppsecret        40125
│   ├── AccessTokenMissing      41001
│   ├── AppidMissing            41002
│   ├── AppsecretMissing        41004
│   ├── AccessTokenExpired      42001
│   ├── RequirePost             43002
│   ├── EmptyPostData           44002
│   ├── ContentTooLarge         45002
│   ├── DailyQuotaExceeded      45009
│   ├── MinuteQuotaExceeded     45011
│   ├── DataFormatError         47001
│   ├── DateFormatError         61500
│   ├── DateRangeError          61501
│   └── IndexLoading            61503
├── InputError                  a bad row in a file: names file, line and field (CLI)
└── StoreError                  the database cannot be used as asked
    └── StoreLocked             another process (a running server) holds the file
"""

from __future__ import annotations

import secrets

# errcode -> errmsg, exactly as WeChat words them (SPEC §2).
ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    42001: "access_token expired",
    43002: "require POST method",
    44002: "empty post data",
    45002: "content size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit must slower retry next minute",
    47001: "data format error",
    40066: "invalid url",
    61500: "date format error",
    61501: "date range error",
    61503: "计算延迟,请稍后再试",
}


def new_rid() -> str:
    """A request id as WeChat prints it: three groups of 8 lowercase hex digits."""
    h = secrets.token_hex(12)
    return f"{h[0:8]}-{h[8:16]}-{h[16:24]}"


class WxcubeError(Exception):
    """Root of every error wxcube raises on purpose."""


class APIError(WxcubeError):
    """An error with a WeChat errcode. ``detail`` (optional) says which row or field."""

    errcode: int = -1

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(self.message)

    @property
    def errmsg(self) -> str:
        return ERRMSG[self.errcode]

    @property
    def message(self) -> str:
        """errmsg plus detail, without the rid: ``data format error: visits[3].ts: …``."""
        return f"{self.errmsg}: {self.detail}" if self.detail else self.errmsg

    def body(self, rid: str) -> dict[str, object]:
        """The canonical error body (SPEC §2). The only place it is built."""
        return {"errcode": self.errcode, "errmsg": f"{self.message} rid: {rid}"}


class SystemError_(APIError):
    """Unexpected failure (-1); the real cause is logged with the rid, never sent."""

    errcode = -1


class InvalidCredential(APIError):
    errcode = 40001


class InvalidGrantType(APIError):
    errcode = 40002


class InvalidAppid(APIError):
    errcode = 40013


class InvalidAppsecret(APIError):
    errcode = 40125


class AccessTokenMissing(APIError):
    errcode = 41001


class AppidMissing(APIError):
    errcode = 41002


class AppsecretMissing(APIError):
    errcode = 41004


class AccessTokenExpired(APIError):
    errcode = 42001


class RequirePost(APIError):
    errcode = 43002


class EmptyPostData(APIError):
    errcode = 44002


class ContentTooLarge(APIError):
    errcode = 45002


class DailyQuotaExceeded(APIError):
    errcode = 45009


class MinuteQuotaExceeded(APIError):
    errcode = 45011


class InvalidUrl(APIError):
    errcode = 40066


class DataFormatError(APIError):
    errcode = 47001


class DateFormatError(APIError):
    errcode = 61500


class DateRangeError(APIError):
    errcode = 61501


class IndexLoading(APIError):
    errcode = 61503


BY_CODE: dict[int, type[APIError]] = {
    cls.errcode: cls for cls in APIError.__subclasses__() if cls is not APIError
}


class InputError(WxcubeError):
    """A bad input row. ``str()`` is ``file:line: field: problem`` for the CLI."""

    def __init__(self, source: str, line: int | None, field: str | None, problem: str) -> None:
        self.source, self.line, self.field, self.problem = source, line, field, problem
        where = source if line is None else f"{source}:{line}"
        what = f"{field}: {problem}" if field else problem
        super().__init__(f"{where}: {what}")


class StoreError(WxcubeError):
    """The database cannot be used as asked (missing app, bad file, ...)."""


class StoreLocked(StoreError):
    """Another process holds the DuckDB file (one writer); usually a running server."""
