"""Every date rule of SPEC §2: 61500 for anything not a real yyyymmdd, 61501 for shapes."""

from __future__ import annotations

import datetime as dt

import pytest

from wxcube.errors import DateFormatError, DateRangeError
from wxcube.periods import DAY, MONTH, WEEK, Kind, fmt, kind, parse_date, parse_period


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01",
        "2024011",
        "202401011",
        "20240230",
        "20241301",
        "abcdefgh",
        "",
        None,
        20240101,
        " 20240101",
    ],
)
def test_61500_date_format(value: object) -> None:
    with pytest.raises(DateFormatError) as e:
        parse_period(DAY, value, "20240101")
    assert e.value.errcode == 61500
    assert e.value.message.startswith("date format error: begin_date: ")


VALID = [
    (DAY, "20170313", "20170313", "20170313"),
    (DAY, "20240229", "20240229", "20240229"),
    (WEEK, "20170306", "20170312", "20170306-20170312"),
    (WEEK, "20241230", "20250105", "20241230-20250105"),  # across a year end
    (MONTH, "20170201", "20170228", "201702"),
    (MONTH, "20240201", "20240229", "202402"),  # leap February
    (MONTH, "20241201", "20241231", "202412"),
]


@pytest.mark.parametrize(("k", "begin", "end", "ref"), VALID)
def test_valid_shapes(k: Kind, begin: str, end: str, ref: str) -> None:
    assert k.ref_date(parse_period(k, begin, end)) == ref


INVALID = [
    (DAY, "20170313", "20170314"),  # daily: begin == end
    (DAY, "20170314", "20170313"),  # begin after end
    (WEEK, "20170307", "20170313"),  # not a Monday
    (WEEK, "20170306", "20170311"),  # not the Sunday of that week
    (WEEK, "20170306", "20170319"),  # two weeks
    (MONTH, "20170202", "20170228"),  # not the 1st
    (MONTH, "20170201", "20170227"),  # not the last day
    (MONTH, "20240201", "20240228"),  # leap year: the 29th is the last day
    (MONTH, "20170101", "20170228"),  # two months
]


@pytest.mark.parametrize(("k", "begin", "end"), INVALID)
def test_61501_date_range(k: Kind, begin: str, end: str) -> None:
    with pytest.raises(DateRangeError) as e:
        parse_period(k, begin, end)
    assert e.value.errcode == 61501


def test_end_after_as_of_is_61501() -> None:
    start = parse_period(WEEK, "20240304", "20240310")
    WEEK.check_elapsed(start, parse_date("20240310"))
    with pytest.raises(DateRangeError, match="has not ended by as_of 20240309"):
        WEEK.check_elapsed(start, parse_date("20240309"))


def test_shift_and_present_keys_for_each_kind() -> None:
    jan31 = parse_date("20240131")
    assert fmt(MONTH.shift(MONTH.start_of(jan31), 1)) == "20240201"
    assert fmt(MONTH.shift(parse_date("20241201"), 1)) == "20250101"
    assert fmt(MONTH.shift(parse_date("20250101"), -1)) == "20241201"
    assert fmt(WEEK.start_of(parse_date("20240310"))) == "20240304"  # Sunday -> its Monday
    assert fmt(WEEK.start_of(parse_date("20240304"))) == "20240304"
    d = parse_date("20240301")
    assert DAY.present_keys(d, parse_date("20240308")) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert DAY.present_keys(d, parse_date("20240331")) == [0, 1, 2, 3, 4, 5, 6, 7, 14, 30]
    assert DAY.present_keys(d, d, keys=(3, 0)) == [0]


def test_kind_names() -> None:
    assert kind("day") is DAY and kind("weekly") is WEEK and kind("monthly") is MONTH
    with pytest.raises(ValueError, match="unknown period kind"):
        kind("yearly")


def test_dates_objects_are_accepted() -> None:
    assert parse_date(dt.date(2024, 3, 1)) == parse_date("20240301")


def test_count_equals_len_of_starts() -> None:
    for k in (DAY, WEEK, MONTH):
        for b in ("20231225", "20240101", "20240226"):
            for e in ("20231224", "20240101", "20240229", "20240310", "20250105"):
                begin, end = k.start_of(parse_date(b)), parse_date(e)
                assert k.count(begin, end) == len(k.starts(begin, end)), (k.name, b, e)
