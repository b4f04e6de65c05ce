"""Property tests from /openapi.json (schemathesis) against a real server process: no 5xx,
every body WeChat-shaped and conforming to the documented schema, with and without a token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serverproc import get_token, make_app_with_data, running_server, sample_visits
from wxcube import openapi

ADMIN = "schemathesis-admin-key"
RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


# the document the server serves at /openapi.json (test_served_document_is_this_one)
schema = schemathesis.openapi.from_dict(openapi.spec())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    db = Path(tmp_path_factory.mktemp("schemathesis")) / "st.duckdb"
    appid, secret = make_app_with_data(db, sample_visits(users=60, days=40))
    env = {"WXCUBE_AS_OF": "20240301", "WXCUBE_MAX_BATCH": "50", "WXCUBE_ACCESS_LOG": "false"}
    with running_server(db, env=env, admin_key=ADMIN) as url:
        yield {"url": url, "token": get_token(url, appid, secret)}


def test_served_document_is_this_one(server: dict[str, str]) -> None:
    import httpx

    assert httpx.get(f"{server['url']}/openapi.json").json() == openapi.spec()


def wechat_shaped(response: Any) -> None:
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype.startswith("application/json"):
        return
    body = orjson.loads(response.content)
    assert isinstance(body, dict), body
    if "errcode" in body and body["errcode"] != 0:
        assert set(body) == {"errcode", "errmsg"}, body
        assert isinstance(body["errcode"], int)
        assert RID.search(body["errmsg"]), body
        assert "Traceback" not in body["errmsg"]
        assert body["errcode"] != -1, body  # nothing generated should be an unexpected failure


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_from_openapi(case: Any, server: dict[str, str]) -> None:
    params: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    names = {p.name for p in case.operation.query}
    if "access_token" in names and hash(str(case.body)) % 4 != 0:
        params["access_token"] = server["token"]  # mostly authorized, sometimes as generated
    if case.path.startswith("/wxcube/v1/admin") and hash(str(case.body)) % 3 != 0:
        headers["authorization"] = f"Bearer {ADMIN}"
    response = case.call(
        base_url=server["url"], params=params or None, headers=headers or None, timeout=30
    )
    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    wechat_shaped(response)
