"""wxcube.cloud, the wx-server-sdk-style cloud call, against the server in process and on a real
port: camelCase in and out, errMsg/errCode, CloudSDKError shapes, config.json permissions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_client import (
    ADMIN_KEY,
    AS_OF,
    PERIODS,
    RID,
    Calls,
    Demo,
    InProcess,
    in_process,
    make_demo,
)
from wxcube import cloud
from wxcube.cloud import DYNAMIC_CURRENT_ENV, NO_PERMISSION, Cloud, CloudSDKError

API = {"daily": "getDailyRetain", "weekly": "getWeeklyRetain", "monthly": "getMonthlyRetain"}
GRANT_ALL = {"permissions": {"openapi": [f"analysis.{api}" for api in API.values()]}}


def expected(demo: Demo, kind: str, begin: str) -> dict[str, Any]:
    """The CLI's body, spelled as wx-server-sdk answers."""
    body = json.loads(demo.expected[(kind, begin)])
    return {
        "refDate": body["ref_date"],
        "visitUvNew": body["visit_uv_new"],
        "visitUv": body["visit_uv"],
        "errMsg": f"openapi.analysis.{API[kind]}:ok",
        "errCode": 0,
    }


def write_config(directory: Path, config: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (directory / "config.json").write_text(text, encoding="utf-8")


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def inproc(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(demo.copy(tmp_path_factory.mktemp("inproc")), demo.quotas()) as ip:
        yield ip


@pytest.fixture(scope="module")
def server(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from serverproc import running_server

    db = demo.copy(tmp_path_factory.mktemp("server"))
    env = {"WXCUBE_AS_OF": AS_OF, "WXCUBE_ACCESS_LOG": "false"}
    with running_server(db, env=env, admin_key=ADMIN_KEY) as url:
        yield url


@pytest.fixture
def function_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cloud function's directory as the working directory; the running script is elsewhere
    (in an empty directory), so only the working directory's config.json counts."""
    fn = tmp_path / "function"
    fn.mkdir()
    elsewhere = tmp_path / "bin"
    elsewhere.mkdir()
    script = elsewhere / "runner.py"
    script.write_text("", encoding="utf-8")
    monkeypatch.chdir(fn)
    monkeypatch.setattr(sys, "argv", [str(script)])
    return fn


@pytest.fixture
def local_cloud(inproc: InProcess, demo: Demo) -> Iterator[tuple[Cloud, Calls]]:
    calls = Calls()
    c = Cloud()
    c.init(
        env=DYNAMIC_CURRENT_ENV,
        base_url=inproc.url,
        appid=demo.appid,
        secret=demo.secret,
        http_client=inproc.http(calls),
    )
    yield c, calls
    c.close()


# --- success: camelCase in and out, the same numbers as the CLI ---------------------------
def test_every_api_in_process_matches_cli(
    function_dir: Path, local_cloud: tuple[Cloud, Calls], demo: Demo
) -> None:
    write_config(function_dir, GRANT_ALL)
    c, calls = local_cloud
    for kind, begin, end in PERIODS:
        call = getattr(c.openapi.analysis, API[kind])
        result = call({"beginDate": begin, "endDate": end})
        assert result == expected(demo, kind, begin)
        assert list(result) == ["refDate", "visitUvNew", "visitUv", "errMsg", "errCode"]
        assert call(beginDate=begin, endDate=end) == result  # keyword style
    assert calls.tokens == 1 and calls.datacube == 2 * len(PERIODS)


def test_module_level_cloud_on_real_port_from_environment(
    function_dir: Path, server: str, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(function_dir, GRANT_ALL)
    monkeypatch.setenv("WXCUBE_URL", server)
    monkeypatch.setenv("WX_APPID", demo.appid)
    monkeypatch.setenv("WX_SECRET", demo.secret)
    try:
        cloud.init({"env": cloud.DYNAMIC_CURRENT_ENV})
        for kind, begin, end in PERIODS:
            result = getattr(cloud.openapi.analysis, API[kind])(
                {"beginDate": begin, "endDate": end}
            )
            assert result == expected(demo, kind, begin)
    finally:
        cloud.close()


def test_async_openapi(function_dir: Path, server: str, demo: Demo) -> None:
    write_config(function_dir, GRANT_ALL)
    c = Cloud()
    c.init(env=DYNAMIC_CURRENT_ENV, base_url=server, appid=demo.appid, secret=demo.secret)

    async def run() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    getattr(c.async_openapi.analysis, API[kind])(
                        {"beginDate": begin, "endDate": end}
                    )
                    for kind, begin, end in PERIODS
                )
            )
        )

    try:
        results = asyncio.run(run())
    finally:
        c.close()
    assert results == [expected(demo, kind, begin) for kind, begin, _ in PERIODS]


# --- failures -----------------------------------------------------------------------------
def test_server_errors_become_cloud_sdk_errors(
    function_dir: Path, local_cloud: tuple[Cloud, Calls]
) -> None:
    write_config(function_dir, GRANT_ALL)
    c, _ = local_cloud
    with pytest.raises(CloudSDKError) as err:
        c.openapi.analysis.getWeeklyRetain({"beginDate": "20240604", "endDate": "20240610"})
    e = err.value
    assert e.errCode == 61501 and RID.match(e.rid or "")
    assert e.errMsg.startswith("openapi.analysis.getWeeklyRetain:fail date range error")
    assert e.errMsg.endswith(f" rid: {e.rid}")
    assert str(e) == f"errCode: 61501 | errMsg: {e.errMsg}"

    with pytest.raises(CloudSDKError) as err:
        c.openapi.analysis.getDailyRetain({"beginDate": "20240601"})  # no endDate
    assert err.value.errCode == 61500
    assert err.value.errMsg.startswith("openapi.analysis.getDailyRetain:fail date format error")


def test_wrong_or_missing_credentials(
    function_dir: Path, inproc: InProcess, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(function_dir, GRANT_ALL)
    c = Cloud()
    c.init(base_url=inproc.url, appid=demo.appid, secret="wrong", http_client=inproc.http())
    with pytest.raises(CloudSDKError) as err:
        c.openapi.analysis.getMonthlyRetain({"beginDate": "20240501", "endDate": "20240531"})
    assert err.value.errCode == 40001
    assert err.value.errMsg.startswith("openapi.analysis.getMonthlyRetain:fail invalid credential")
    for var in ("WX_APPID", "WX_SECRET", "WXCUBE_URL"):
        monkeypatch.delenv(var, raising=False)
    c.init()
    with pytest.raises(CloudSDKError) as err:
        c.openapi.analysis.getMonthlyRetain({"beginDate": "20240501", "endDate": "20240531"})
    assert err.value.errCode == 41002 and "WX_APPID" in err.value.errMsg
    assert str(err.value).startswith(
        "errCode: 41002 | errMsg: openapi.analysis.getMonthlyRetain:fail"
    )


def test_permission_denied_without_config(
    function_dir: Path, local_cloud: tuple[Cloud, Calls]
) -> None:
    c, calls = local_cloud
    with pytest.raises(CloudSDKError) as err:
        c.openapi.analysis.getMonthlyRetain({"beginDate": "20240501", "endDate": "20240531"})
    e = err.value
    assert e.errCode == NO_PERMISSION == -604101
    assert e.errMsg == "openapi.analysis.getMonthlyRetain:fail system error: error code: -604101"
    assert str(e) == (
        "errCode: -604101 | errMsg: "
        "openapi.analysis.getMonthlyRetain:fail system error: error code: -604101"
    )
    assert any("no config.json" in n for n in e.__notes__)
    assert calls.paths == []  # refused before any request


def test_permission_denied_when_not_listed(
    function_dir: Path, local_cloud: tuple[Cloud, Calls], demo: Demo
) -> None:
    c, calls = local_cloud
    write_config(function_dir, {"permissions": {"openapi": ["analysis.getWeeklyRetain"]}})
    with pytest.raises(CloudSDKError) as err:
        c.openapi.analysis.getMonthlyRetain({"beginDate": "20240501", "endDate": "20240531"})
    assert err.value.errCode == -604101
    assert any("analysis.getMonthlyRetain" in n for n in err.value.__notes__)
    assert calls.paths == []
    week = c.openapi.analysis.getWeeklyRetain({"beginDate": "20240610", "endDate": "20240616"})
    assert week == expected(demo, "weekly", "20240610")
    for broken in ("{not json", '{"permissions": {"openapi": "analysis.getWeeklyRetain"}}'):
        write_config(function_dir, broken)
        with pytest.raises(CloudSDKError) as err:
            c.openapi.analysis.getWeeklyRetain({"beginDate": "20240610", "endDate": "20240616"})
        assert err.value.errCode == -604101


SCRIPT = """
import json
from wxcube import cloud

cloud.init(env=cloud.DYNAMIC_CURRENT_ENV)


def main(event, context):
    out = {}
    for api in ("getWeeklyRetain", "getDailyRetain"):
        try:
            out[api] = getattr(cloud.openapi.analysis, api)(event[api])
        except cloud.CloudSDKError as err:
            out[api] = str(err)
    return out


print(json.dumps(main({
    "getWeeklyRetain": {"beginDate": "20240610", "endDate": "20240616"},
    "getDailyRetain": {"beginDate": "20240601", "endDate": "20240601"},
}, {})))
"""


def test_config_beside_the_running_script(tmp_path: Path, server: str, demo: Demo) -> None:
    fn = tmp_path / "cloudfunctions" / "retention"
    write_config(fn, {"permissions": {"openapi": ["analysis.getWeeklyRetain"]}})
    (fn / "index.py").write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "WXCUBE_URL": server, "WX_APPID": demo.appid, "WX_SECRET": demo.secret}

    def run(cwd: Path) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, str(fn / "index.py")],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    denied = "errCode: -604101 | errMsg: openapi.analysis.getDailyRetain:fail system error: "
    result = run(elsewhere)  # no config.json in the working directory: the script's counts
    assert result["getWeeklyRetain"] == expected(demo, "weekly", "20240610")
    assert result["getDailyRetain"] == denied + "error code: -604101"

    write_config(elsewhere, {"permissions": {"openapi": []}})  # the working directory wins
    result = run(elsewhere)
    assert result["getWeeklyRetain"].startswith("errCode: -604101 | ")


def test_cloud_sdk_error_repr() -> None:
    e = CloudSDKError(45011, "openapi.analysis.getDailyRetain:fail api minute-quota …")
    assert (
        repr(e) == "CloudSDKError(45011, 'openapi.analysis.getDailyRetain:fail api minute-quota …')"
    )
    assert isinstance(e, Exception) and e.rid is None


def test_quota_errors_keep_their_errcode(function_dir: Path, inproc: InProcess, demo: Demo) -> None:
    write_config(function_dir, GRANT_ALL)
    c = Cloud()
    c.init(
        base_url=inproc.url,
        appid=demo.quota_daily_app[0],
        secret=demo.quota_daily_app[1],
        http_client=inproc.http(),
    )
    codes = []
    for _ in range(3):
        try:
            c.openapi.analysis.getDailyRetain({"beginDate": "20240601", "endDate": "20240601"})
        except CloudSDKError as e:
            codes.append(e.errCode)
            assert e.errMsg.startswith(
                "openapi.analysis.getDailyRetain:fail reach max api daily quota limit"
            )
    c.close()
    assert codes == [45009]


def test_close_then_call_initializes_again_from_environment(
    function_dir: Path, server: str, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(function_dir, GRANT_ALL)
    monkeypatch.setenv("WXCUBE_URL", server)
    monkeypatch.setenv("WX_APPID", demo.appid)
    monkeypatch.setenv("WX_SECRET", demo.secret)
    c = Cloud()  # no init(): wx-server-sdk works without one too
    try:
        first = c.openapi.analysis.getDailyRetain(beginDate="20240601", endDate="20240601")
        c.close()
        again = c.openapi.analysis.getDailyRetain(beginDate="20240601", endDate="20240601")
    finally:
        c.close()
    assert first == again == expected(demo, "daily", "20240601")
    assert c.env == DYNAMIC_CURRENT_ENV
