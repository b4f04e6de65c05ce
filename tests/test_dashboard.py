"""The web dashboard in a real headless Chromium against a real `wxcube serve` on demo data.

Every number the page shows is checked against what /wxcube/v1/retain answers for the same
periods; the CSV download, the error messages, the language toggle and the phone layout too.
Screenshots (desktop and phone width) are saved under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from serverproc import make_app_with_data, running_server
from wxcube.cli.serve import build_demo

pytestmark = pytest.mark.slow

AS_OF = "20261119"  # a Thursday: the week of Nov 16 and November itself have not ended
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
KEYS = {"day": [0, 1, 2, 3, 4, 5, 6, 7, 14, 30], "week": [0, 1, 2, 3, 4], "month": [0, 1]}
METRICS = ("visit_uv_new", "visit_uv")


class Site:
    def __init__(self, url: str, appid: str, secret: str, empty_appid: str, empty_secret: str):
        self.url, self.appid, self.secret = url, appid, secret
        self.empty_appid, self.empty_secret = empty_appid, empty_secret


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = tmp_path_factory.mktemp("dashboard") / "wxcube.duckdb"
    appid, secret, _tz = build_demo(str(db), AS_OF)
    empty_appid, empty_secret = make_app_with_data(db, None, name="empty")
    with running_server(db, env={"WXCUBE_AS_OF": AS_OF}) as url:
        yield Site(url, appid, secret, empty_appid, empty_secret)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        pytest.fail("Debian chromium is not installed: run `make system-deps`")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Tab:
    """A page in a fresh browser context that records console errors and page errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    contexts = []

    def make(viewport: dict[str, int] | None = None) -> Tab:
        # a browser far from the app's timezone: day arithmetic must not use local time
        ctx = browser.new_context(
            viewport=viewport or DESKTOP,
            accept_downloads=True,
            timezone_id="America/Los_Angeles",
        )
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        return Tab(ctx.new_page())

    yield make
    for ctx in contexts:
        ctx.close()


def sign_in(tab: Tab, site: Site, appid: str | None = None, secret: str | None = None) -> None:
    page = tab.page
    page.goto(f"{site.url}/dashboard")
    page.fill("input[name=appid]", appid or site.appid)
    page.fill("input[name=secret]", secret or site.secret)
    page.press("input[name=secret]", "Enter")


def wait_table(page: Page, kind: str, metric: str) -> None:
    page.wait_for_selector(
        f"#cohort[data-kind={kind}][data-metric={metric}] td[data-key='0']", state="attached"
    )
    page.wait_for_function("!document.querySelector('#results').classList.contains('busy')")


def token_of(page: Page) -> str:
    token = page.evaluate("JSON.parse(sessionStorage.getItem('wxcube.session')).token")
    assert isinstance(token, str) and token
    return token


def api_retain(site: Site, token: str, kind: str, begin: str, end: str) -> list[dict[str, Any]]:
    r = httpx.post(
        f"{site.url}/wxcube/v1/retain",
        params={"access_token": token},
        json={"kind": kind, "begin_date": begin, "end_date": end},
    )
    body = r.json()
    assert body["errcode"] == 0, body
    items: list[dict[str, Any]] = body["items"]
    return items


def shown_cells(page: Page) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = page.eval_on_selector_all(
        "#cohort td[data-period]",
        """tds => tds.map(td => ({period: td.dataset.period, key: +td.dataset.key,
            metric: td.dataset.metric, value: td.dataset.value ?? null,
            empty: td.classList.contains('empty'), text: td.innerText.trim()}))""",
    )
    return cells


def expected(items: list[dict[str, Any]], metric: str, ref: str, key: int) -> int | None:
    item = next(i for i in items if i["ref_date"] == ref)
    return next((e["value"] for e in item[metric] if e["key"] == key), None)


def pct(v: int, base: int) -> str:
    """v/base as the page shows it: one decimal, rounded half up (exactly, in integers)."""
    permille = (2000 * v + base) // (2 * base)
    return f"{permille // 10}.{permille % 10}%"


def check_table_against_api(page: Page, site: Site, kind: str, metric: str) -> list[dict]:
    """Every cell shown equals the API's number; absent keys are blank; returns the items."""
    rows = page.eval_on_selector_all("#cohort tbody tr", "trs => trs.map(tr => tr.dataset.period)")
    assert rows, "no rows shown"
    begin, end = rows[0][:8], rows[-1][-8:]
    if kind == "month":
        end = page.input_value("#range-to").replace("-", "")
    items = api_retain(site, token_of(page), kind, begin + ("01" if kind == "month" else ""), end)
    assert [i["ref_date"] for i in items] == rows
    cells = shown_cells(page)
    assert len(cells) == len(rows) * len(KEYS[kind])
    for c in cells:
        assert c["metric"] == metric
        want = expected(items, metric, c["period"], c["key"])
        if want is None:
            assert c["empty"] and c["text"] == "" and c["value"] is None, c
        else:
            base = expected(items, metric, c["period"], 0)
            assert base is not None
            assert not c["empty"] and int(c["value"]) == want, (c, want)
            number, share = c["text"].split("\n")
            assert int(number.replace(",", "")) == want
            assert share == (pct(want, base) if base else "—")
    return items


def test_sign_in_switch_kinds_and_metrics_match_api(
    site: Site, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab()
    page = tab.page
    sign_in(tab, site)
    wait_table(page, "day", "visit_uv_new")
    assert page.is_hidden("#signin") and page.is_visible("[data-testid=dashboard]")
    assert page.get_attribute("html", "lang") == "zh-CN"  # Chinese by default
    assert page.inner_text("[data-testid=kind-week]") == "周"
    assert "2026-11-19" in page.inner_text("[data-testid=app-meta]")

    # default ranges: the latest periods that have ended by as_of
    rows = page.eval_on_selector_all("#cohort tbody tr", "trs => trs.map(tr => tr.dataset.period)")
    assert rows[-1] == AS_OF and rows[0] == "20261021" and len(rows) == 30
    check_table_against_api(page, site, "day", "visit_uv_new")

    for kind, metric, last in (
        ("week", "visit_uv_new", "20261109-20261115"),
        ("week", "visit_uv", "20261109-20261115"),
        ("month", "visit_uv", "202610"),
        ("month", "visit_uv_new", "202610"),
        ("day", "visit_uv", AS_OF),
    ):
        page.click(f"[data-testid=kind-{kind}]")
        page.click(f"[data-testid=metric-{metric}]")
        wait_table(page, kind, metric)
        assert page.get_attribute(f"[data-testid=kind-{kind}]", "aria-pressed") == "true"
        assert page.get_attribute(f"[data-testid=metric-{metric}]", "aria-pressed") == "true"
        items = check_table_against_api(page, site, kind, metric)
        assert items[-1]["ref_date"] == last
        # the triangle: the latest period has only key 0, the first one has every key
        # the range allows (all of them for weeks and months)
        assert [e["key"] for e in items[-1][metric]] == [0]
        if kind != "day":
            assert [e["key"] for e in items[0][metric]] == KEYS[kind]

    # the curve: the average point of key 1 is the pooled share of what is shown
    items = check_table_against_api(page, site, "day", "visit_uv")
    with_k1 = [i for i in items if expected(items, "visit_uv", i["ref_date"], 1) is not None]
    pooled = sum(expected(items, "visit_uv", i["ref_date"], 1) or 0 for i in with_k1) / sum(
        expected(items, "visit_uv", i["ref_date"], 0) or 0 for i in with_k1
    )
    share = page.get_attribute("circle[data-series=avg][data-key='1']", "data-share")
    assert share is not None and abs(float(share) - pooled) < 1e-6
    assert page.locator("circle[data-series=avg]").count() == 9  # key 30 not elapsed yet
    assert page.locator("polyline.avg").count() == 1

    # the metric and kind are remembered in the session, the token survives a reload
    page.reload()
    wait_table(page, "day", "visit_uv")
    assert tab.errors == []
    # self-contained: every request goes to the wxcube server itself (no CDN, no fonts)
    assert tab.requests and all(u.startswith(site.url + "/") for u in tab.requests), tab.requests
    assert f"{site.url}/dashboard/app.js" in tab.requests


def test_range_picker_snaps_to_whole_periods(site: Site, open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    page = tab.page
    sign_in(tab, site)
    page.click("[data-testid=kind-week]")
    wait_table(page, "week", "visit_uv_new")
    # a Wednesday to a Tuesday: the weeks containing them, the last one cut at as_of
    page.fill("#range-from", "2026-08-05")
    page.fill("#range-to", "2026-12-01")
    page.click("[data-testid=range-apply]")
    page.wait_for_function("document.querySelector('#range-from').value === '2026-08-03'")
    wait_table(page, "week", "visit_uv_new")
    assert page.input_value("#range-to") == "2026-11-15"
    items = check_table_against_api(page, site, "week", "visit_uv_new")
    assert items[0]["ref_date"] == "20260803-20260809"
    assert items[-1]["ref_date"] == "20261109-20261115"
    assert len(items) == 15
    page.click("[data-testid=range-latest]")
    page.wait_for_function("document.querySelector('#range-from').value === '2026-09-21'")
    assert page.locator("#cohort tbody tr").count() == 8

    # months across a year boundary, dates given in reverse order
    page.click("[data-testid=kind-month]")
    wait_table(page, "month", "visit_uv_new")
    page.fill("#range-from", "2026-02-03")
    page.fill("#range-to", "2025-12-15")
    page.click("[data-testid=range-apply]")
    page.wait_for_function("document.querySelector('#range-from').value === '2025-12-01'")
    wait_table(page, "month", "visit_uv_new")
    assert page.input_value("#range-to") == "2026-02-28"
    items = check_table_against_api(page, site, "month", "visit_uv_new")
    assert [i["ref_date"] for i in items] == ["202512", "202601", "202602"]
    assert tab.errors == []


def test_csv_download_is_what_is_shown(site: Site, open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    page = tab.page
    sign_in(tab, site)
    page.click("[data-testid=kind-week]")
    page.click("[data-testid=metric-visit_uv]")
    wait_table(page, "week", "visit_uv")
    with page.expect_download() as info:
        page.click("[data-testid=csv-download]")
    download = info.value
    assert download.suggested_filename == f"{site.appid}-week-visit_uv-20260921-20261115.csv"
    text = Path(download.path()).read_text("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header = ["ref_date", "metric"] + [f"key_{k}{s}" for k in KEYS["week"] for s in ("", "_pct")]
    assert rows[0] == header
    items = api_retain(site, token_of(page), "week", "20260921", "20261115")
    assert len(rows) == 1 + len(items) == 9
    for row, item in zip(rows[1:], items, strict=True):
        assert row[:2] == [item["ref_date"], "visit_uv"]
        got = dict(zip(header, row, strict=True))
        values = {e["key"]: e["value"] for e in item["visit_uv"]}
        for k in KEYS["week"]:
            if k in values:
                assert int(got[f"key_{k}"]) == values[k]
                assert got[f"key_{k}_pct"] + "%" == pct(values[k], values[0])
            else:
                assert got[f"key_{k}"] == got[f"key_{k}_pct"] == ""
    assert tab.errors == []


def test_wrong_secret_and_dead_token_are_explained(
    site: Site, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab()
    page = tab.page
    sign_in(tab, site, secret="0" * 32)
    page.wait_for_selector("[data-testid=error]", state="visible")
    assert "AppSecret 不正确" in page.inner_text("[data-testid=error]")
    assert "40125" in page.inner_text("[data-testid=error]")
    assert page.is_visible("#signin") and page.is_hidden("[data-testid=dashboard]")
    page.click("[data-testid=lang-toggle]")  # the message follows the language
    assert "Wrong AppID or AppSecret" in page.inner_text("[data-testid=error]")
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("[data-testid=signin-submit]") == "Sign in"

    sign_in(tab, site, appid="wx0000000000000000")
    page.wait_for_selector("[data-testid=error]:has-text('No such AppID')")

    # a token the server no longer accepts: back to the sign-in form, with words
    page.evaluate(
        "s => sessionStorage.setItem('wxcube.session', JSON.stringify(s))",
        {"appid": site.appid, "token": "bogus"},
    )
    page.reload()
    page.wait_for_selector("[data-testid=error]:has-text('sign in again')")
    assert page.is_visible("#signin")
    assert page.input_value("input[name=appid]") == site.appid
    assert page.evaluate("sessionStorage.getItem('wxcube.session')") is None
    assert tab.errors == []


def test_no_data_yet_and_network_failure(site: Site, open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    page = tab.page
    sign_in(tab, site, site.empty_appid, site.empty_secret)
    page.wait_for_selector("[data-testid=empty]:has-text('还没有访问数据')")
    assert page.is_hidden("#results") and page.is_hidden("[data-testid=error]")
    assert tab.errors == []

    page.click("[data-testid=sign-out]")
    assert page.is_visible("#signin")
    page.route("**/wxcube/v1/retain*", lambda route: route.abort())
    sign_in(tab, site)
    page.wait_for_selector("[data-testid=error]:has-text('无法连接')")
    assert page.is_visible("[data-testid=dashboard]")
    page.unroute("**/wxcube/v1/retain*")
    page.click("#error-retry")
    wait_table(page, "day", "visit_uv_new")
    assert page.is_hidden("[data-testid=error]")
    # the aborted request is the only console error (Chromium logs failed loads)
    assert len(tab.errors) == 1 and "ERR_FAILED" in tab.errors[0], tab.errors


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots_and_phone_width(
    site: Site, open_tab: Callable[..., Tab], name: str, viewport: dict[str, int]
) -> None:
    tab = open_tab(viewport)
    page = tab.page
    sign_in(tab, site)
    wait_table(page, "day", "visit_uv_new")
    page.click("[data-testid=kind-week]")
    wait_table(page, "week", "visit_uv_new")
    # nothing wider than the screen: the triangle scrolls inside its card
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    box = page.locator("[data-testid=curve-svg]").bounding_box()
    assert box is not None and box["width"] <= viewport["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
    assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000
    assert tab.errors == []
