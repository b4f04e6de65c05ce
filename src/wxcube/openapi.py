"""The OpenAPI 3.0 document served at ``/openapi.json``: every endpoint the server answers."""

from __future__ import annotations

from typing import Any

from .errors import ERRMSG

DATE = {"type": "string", "pattern": "^[0-9]{8}$", "example": "20170313"}
KV = {
    "type": "object",
    "required": ["key", "value"],
    "properties": {"key": {"type": "integer"}, "value": {"type": "integer"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _answer(success: str) -> dict[str, Any]:
    """WeChat's convention: HTTP 200 with either the success body or an error body."""
    return {
        "200": {
            "description": "Success body, or a WeChat error body (errcode, errmsg with rid).",
            **_json({"oneOf": [_ref(success), _ref("Error")]}),
        }
    }


TOKEN_Q = [
    {"name": "access_token", "in": "query", "required": False, "schema": {"type": "string"}},
    {
        "name": "cloudbase_access_token",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Accepted in place of access_token.",
    },
]


def _datacube(kind: str, example: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"WeChat analysis.get{kind}Retain",
            "operationId": f"get{kind}Retain",
            "tags": ["datacube"],
            "parameters": TOKEN_Q,
            "requestBody": {"required": True, **_json(_ref("DateRange"))},
            "responses": _answer("Retain"),
            "description": f"ref_date looks like {example}. No errcode on success.",
        }
    }


def _ext(method: str, op: str, summary: str, success: str, body: str | None) -> dict[str, Any]:
    o: dict[str, Any] = {
        "summary": summary,
        "operationId": op,
        "tags": ["wxcube"],
        "parameters": TOKEN_Q,
        "responses": _answer(success),
    }
    if body:
        o["requestBody"] = {"required": True, **_json(_ref(body))}
    return {method: o}


def spec() -> dict[str, Any]:
    ok = {"errcode": {"type": "integer", "enum": [0]}, "errmsg": {"type": "string"}}
    admin_sec: list[dict[str, list[str]]] = [{"adminKey": []}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "wxcube",
            "version": "0.1.0",
            "description": (
                "WeChat-compatible Mini Program retention datacube. Errors are HTTP 200 with "
                '{"errcode": N, "errmsg": "... rid: xxxxxxxx-xxxxxxxx-xxxxxxxx"}. Bodies are '
                "parsed as JSON whatever the Content-Type."
            ),
        },
        "paths": {
            "/cgi-bin/token": {
                "get": {
                    "summary": "Get an access_token (a new one each call; the previous stays "
                    "valid 5 minutes)",
                    "operationId": "getAccessToken",
                    "tags": ["auth"],
                    "parameters": [
                        {
                            "name": "grant_type",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": ["client_credential"]},
                        },
                        {
                            "name": "appid",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "secret",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": _answer("Token"),
                }
            },
            "/cgi-bin/stable_token": {
                "post": {
                    "summary": "Get the stable access_token",
                    "operationId": "getStableAccessToken",
                    "tags": ["auth"],
                    "requestBody": {"required": True, **_json(_ref("StableTokenRequest"))},
                    "responses": _answer("Token"),
                }
            },
            "/datacube/getweanalysisappiddailyretaininfo": _datacube("Daily", "20170313"),
            "/datacube/getweanalysisappidweeklyretaininfo": _datacube(
                "Weekly", "20170306-20170312"
            ),
            "/datacube/getweanalysisappidmonthlyretaininfo": _datacube("Monthly", "201702"),
            "/wxcube/v1/visits": _ext(
                "post",
                "ingestVisits",
                "Ingest a batch of visits (all or nothing)",
                "Accepted",
                "Visits",
            ),
            "/wxcube/v1/retain": _ext(
                "post",
                "retainRange",
                "Retention of every period in a range",
                "RetainRange",
                "RetainRangeRequest",
            ),
            "/wxcube/v1/info": _ext("get", "appInfo", "The app and its data span", "Info", None),
            "/wxcube/v1/admin/apps": {
                "get": {
                    "summary": "List apps (admin key)",
                    "operationId": "adminListApps",
                    "tags": ["admin"],
                    "security": admin_sec,
                    "responses": _answer("AppList"),
                },
                "post": {
                    "summary": "Create an app (admin key); the secret is shown once",
                    "operationId": "adminCreateApp",
                    "tags": ["admin"],
                    "security": admin_sec,
                    "requestBody": {"required": True, **_json(_ref("AppCreate"))},
                    "responses": _answer("AppSecret"),
                },
            },
            "/wxcube/v1/admin/apps/rotate_secret": {
                "post": {
                    "summary": "Rotate an app's secret (admin key); revokes its tokens",
                    "operationId": "adminRotateSecret",
                    "tags": ["admin"],
                    "security": admin_sec,
                    "requestBody": {"required": True, **_json(_ref("AppRef"))},
                    "responses": _answer("AppSecret"),
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Readiness: 200 once the index is loaded, 503 (61503) before",
                    "operationId": "healthz",
                    "tags": ["operations"],
                    "responses": {
                        "200": {"description": "ready", **_json(_ref("Health"))},
                        "503": {"description": "loading", **_json(_ref("Error"))},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "tags": ["operations"],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "tags": ["operations"],
                    "responses": {"200": {"description": "OpenAPI 3", **_json({"type": "object"})}},
                }
            },
            "/dashboard": {
                "get": {
                    "summary": "The web dashboard",
                    "operationId": "dashboard",
                    "tags": ["operations"],
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        "404": {"description": "no dashboard installed", **_json(_ref("Error"))},
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["errcode", "errmsg"],
                    "properties": {
                        "errcode": {"type": "integer", "enum": sorted([*ERRMSG, 40066])},
                        "errmsg": {
                            "type": "string",
                            "pattern": " rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$",
                        },
                    },
                },
                "Token": {
                    "type": "object",
                    "required": ["access_token", "expires_in"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "expires_in": {"type": "integer"},
                    },
                    "additionalProperties": False,
                },
                "StableTokenRequest": {
                    "type": "object",
                    "required": ["grant_type", "appid", "secret"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credential"]},
                        "appid": {"type": "string"},
                        "secret": {"type": "string"},
                        "force_refresh": {"type": "boolean", "default": False},
                    },
                },
                "DateRange": {
                    "type": "object",
                    "required": ["begin_date", "end_date"],
                    "properties": {"begin_date": DATE, "end_date": DATE},
                },
                "Retain": {
                    "type": "object",
                    "required": ["ref_date", "visit_uv_new", "visit_uv"],
                    "properties": {
                        "ref_date": {"type": "string"},
                        "visit_uv_new": {"type": "array", "items": KV},
                        "visit_uv": {"type": "array", "items": KV},
                    },
                    "additionalProperties": False,
                },
                "Visits": {
                    "type": "object",
                    "required": ["visits"],
                    "properties": {
                        "visits": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["openid", "ts"],
                                "properties": {
                                    "openid": {"type": "string", "maxLength": 128},
                                    "ts": {
                                        "description": "Unix seconds or ISO-8601",
                                        "oneOf": [{"type": "number"}, {"type": "string"}],
                                    },
                                },
                            },
                        }
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["errcode", "errmsg", "accepted"],
                    "properties": {
                        **ok,
                        "accepted": {"type": "integer"},
                        "pairs_added": {"type": "integer"},
                        "duplicates": {"type": "integer"},
                        "new_users": {"type": "integer"},
                    },
                },
                "RetainRangeRequest": {
                    "type": "object",
                    "required": ["kind", "begin_date", "end_date"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["day", "week", "month"]},
                        "begin_date": DATE,
                        "end_date": DATE,
                        "keys": {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 0, "maximum": 3660},
                            "minItems": 1,
                            "maxItems": 64,
                        },
                    },
                },
                "RetainRange": {
                    "type": "object",
                    "required": ["errcode", "errmsg", "items"],
                    "properties": {
                        **ok,
                        "as_of": {"type": "string"},
                        "left_out": {"type": "integer"},
                        "items": {"type": "array", "items": _ref("Retain")},
                    },
                },
                "Info": {
                    "type": "object",
                    "required": [
                        "errcode",
                        "errmsg",
                        "appid",
                        "name",
                        "timezone",
                        "as_of",
                        "first_day",
                        "last_day",
                        "users",
                    ],
                    "properties": {
                        **ok,
                        "appid": {"type": "string"},
                        "name": {"type": "string"},
                        "timezone": {"type": "string"},
                        "as_of": {"type": "string"},
                        "first_day": {"type": "string", "nullable": True},
                        "last_day": {"type": "string", "nullable": True},
                        "users": {"type": "integer"},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["errcode", "errmsg"],
                    "properties": {**ok, "status": {"type": "string"}, "apps": {"type": "integer"}},
                },
                "AppCreate": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "timezone": {"type": "string", "default": "Asia/Shanghai"},
                    },
                },
                "AppRef": {
                    "type": "object",
                    "required": ["appid"],
                    "properties": {"appid": {"type": "string"}},
                },
                "AppSecret": {
                    "type": "object",
                    "required": ["errcode", "errmsg", "appid", "secret"],
                    "properties": {
                        **ok,
                        "appid": {"type": "string"},
                        "secret": {"type": "string"},
                        "name": {"type": "string"},
                        "timezone": {"type": "string"},
                    },
                },
                "AppList": {
                    "type": "object",
                    "required": ["errcode", "errmsg", "apps"],
                    "properties": {**ok, "apps": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
    }
