"""The canonical error body (SPEC §2), built in one place, pinned here."""

from __future__ import annotations

import re

from wxcube import errors

SPEC_TABLE = {  # SPEC §2, verbatim
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
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit must slower retry next minute",
    45002: "content size out of limit",
    47001: "data format error",
    61500: "date format error",
    61501: "date range error",
    61503: "计算延迟,请稍后再试",
}
RID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}")


def test_table_matches_spec() -> None:
    for code, msg in SPEC_TABLE.items():
        assert errors.ERRMSG[code] == msg
        assert errors.BY_CODE[code].errcode == code


def test_body_without_and_with_detail() -> None:
    rid = errors.new_rid()
    assert RID.fullmatch(rid)
    assert errors.InvalidCredential().body(rid) == {
        "errcode": 40001,
        "errmsg": f"invalid credential, access_token is invalid or not latest rid: {rid}",
    }
    body = errors.DataFormatError("visits[3].ts: 'abc' is not a timestamp").body(rid)
    assert body == {
        "errcode": 47001,
        "errmsg": f"data format error: visits[3].ts: 'abc' is not a timestamp rid: {rid}",
    }


def test_rids_are_random() -> None:
    assert len({errors.new_rid() for _ in range(100)}) == 100


def test_input_error_names_file_line_field() -> None:
    e = errors.InputError("visits.csv", 778, "ts", "'not-a-time' is not a Unix time")
    assert str(e) == "visits.csv:778: ts: 'not-a-time' is not a Unix time"
    assert str(errors.InputError("v.csv", None, None, "no such file")) == "v.csv: no such file"
