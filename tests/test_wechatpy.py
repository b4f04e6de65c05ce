"""Third-party clients against a real server: wechatpy 1.8 (base URL and token URL pointed at
wxcube; it sends bodies without a Content-Type) and the parsing that WxJava, EasyWeChat and
the Go SDKs do (typed {key, value} arrays with integer values; no errcode on success)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from serverproc import make_app_with_data, running_server, sample_visits

# wechatpy imports its message-crypto backend at import time (cryptography or pycryptodome),
# although the API client never uses it: the test extra must install wechatpy[cryptography].
pytest.importorskip("cryptography", reason="wechatpy 1.8 needs cryptography to import")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from wechatpy.client import WeChatClient
    from wechatpy.exceptions import WeChatClientException

AS_OF = "20240410"


def wxcube_client(base: str, appid: str, secret: str) -> Any:
    """wechatpy's own client with only its URLs changed: nothing else of ours is involved."""

    class Client(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = f"{base}/cgi-bin/"

        def fetch_access_token(self) -> Any:
            return self._fetch_access_token(
                url=f"{base}/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret,
                },
            )

    client = Client(appid, secret, timeout=10)
    client.datacube.API_BASE_URL = f"{base}/datacube/"
    return client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    db = tmp_path_factory.mktemp("wechatpy") / "w.duckdb"
    appid, secret = make_app_with_data(db, sample_visits())
    with running_server(db, env={"WXCUBE_AS_OF": AS_OF}) as url:
        yield url, appid, secret


def test_wechatpy_datacube_retain_calls(served: tuple[str, str, str]) -> None:
    url, appid, secret = served
    client = wxcube_client(url, appid, secret)
    daily = client.datacube._post(
        "getweanalysisappiddailyretaininfo",
        data={"begin_date": "20240301", "end_date": "20240301"},
    )
    assert daily["ref_date"] == "20240301" and "errcode" not in daily
    assert [kv["key"] for kv in daily["visit_uv"]] == [0, 1, 2, 3, 4, 5, 6, 7, 14, 30]
    weekly = client.datacube._post(
        "getweanalysisappidweeklyretaininfo",
        data={"begin_date": "20240304", "end_date": "20240310"},
    )
    assert weekly["ref_date"] == "20240304-20240310"
    monthly = client.datacube._post(
        "getweanalysisappidmonthlyretaininfo",
        data={"begin_date": "20240201", "end_date": "20240229"},
    )
    assert monthly["ref_date"] == "202402" and [kv["key"] for kv in monthly["visit_uv"]] == [0, 1]


def test_wechatpy_refreshes_a_bad_token_and_retries(served: tuple[str, str, str]) -> None:
    url, appid, secret = served
    client = wxcube_client(url, appid, secret)
    client.session.set(client.access_token_key, "stale-token-from-a-previous-life")
    client.expires_at = 2**40
    got = client.datacube._post(
        "getweanalysisappiddailyretaininfo",
        data={"begin_date": "20240301", "end_date": "20240301"},
    )
    assert got["ref_date"] == "20240301"  # 40001 → fetched a new token → retried once
    assert client.access_token != "stale-token-from-a-previous-life"


def test_wechatpy_raises_wechat_errors(served: tuple[str, str, str]) -> None:
    url, appid, secret = served
    client = wxcube_client(url, appid, secret)
    with pytest.raises(WeChatClientException) as e:
        client.datacube._post(
            "getweanalysisappiddailyretaininfo",
            data={"begin_date": "20240301", "end_date": "20240302"},
        )
    assert e.value.errcode == 61501 and "rid: " in e.value.errmsg
    bad = wxcube_client(url, appid, "wrong-secret")
    with pytest.raises(WeChatClientException) as e:
        bad.fetch_access_token()
    assert e.value.errcode == 40001


# --- typed parsing, as the Java / PHP / Go SDKs do ------------------------------------------
@dataclass(frozen=True)
class RetainInfo:  # WxJava WxMaRetainInfo; silenceper/wechat RetainResult; EasyWeChat array
    ref_date: str
    visit_uv_new: dict[int, int]
    visit_uv: dict[int, int]


def strict_parse(raw: bytes) -> RetainInfo:
    """Parse like a strict, typed SDK: fail on an errcode, on a non-int, on a missing field."""
    body = json.loads(raw)
    if body.get("errcode", 0) != 0:
        raise AssertionError(f"error body: {body}")
    assert isinstance(body["ref_date"], str)

    def kv(items: list[dict[str, Any]]) -> dict[int, int]:
        out = {}
        for item in items:
            assert set(item) == {"key", "value"}
            assert type(item["key"]) is int and type(item["value"]) is int
            out[item["key"]] = item["value"]
        return out

    return RetainInfo(body["ref_date"], kv(body["visit_uv_new"]), kv(body["visit_uv"]))


def test_typed_parsing(served: tuple[str, str, str], tmp_path: Path) -> None:
    import httpx

    url, appid, secret = served
    token = httpx.get(
        f"{url}/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": appid, "secret": secret},
    ).json()["access_token"]
    r = httpx.post(
        f"{url}/datacube/getweanalysisappiddailyretaininfo",
        params={"access_token": token},
        content=b'{"begin_date":"20240301","end_date":"20240301"}',
    )
    assert r.headers["content-type"].startswith("application/json")
    info = strict_parse(r.content)
    assert info.ref_date == "20240301"
    assert info.visit_uv[0] >= info.visit_uv[1] >= 0
    assert info.visit_uv_new[0] <= info.visit_uv[0]
    assert b'"errcode"' not in r.content
