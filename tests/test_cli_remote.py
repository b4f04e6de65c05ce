"""The store commands through a running server (`--url`, SPEC §5)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from serverproc import get_token, make_app_with_data, running_server, sample_visits
from wxcube.cli import main

AS_OF = "20240410"
KEY = "admin-key-for-tests-0123456789"


def write_csv(path: Path) -> None:
    lines = ["openid,ts"]
    for i, (o, t) in enumerate(sample_visits(seed=11, users=150)):
        if i % 3 == 0:  # ISO with offset
            lines.append(f"{o},{dt.datetime.fromtimestamp(t, dt.UTC).isoformat()}")
        elif i % 3 == 1:  # naive: read in the app's timezone
            local = dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=8)))
            lines.append(f"{o},{local.replace(tzinfo=None).isoformat(sep=' ')}")
        else:
            lines.append(f"{o},{t}")
    path.write_text("\n".join(lines) + "\n")


def cli(db: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["--db", str(db), "--as-of", AS_OF, *args], env=env)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str, str]]:
    tmp = tmp_path_factory.mktemp("remote")
    db = tmp / "served.duckdb"
    appid, secret = make_app_with_data(db, [], name="remote")
    with running_server(db, env={"WXCUBE_AS_OF": AS_OF}, admin_key=KEY) as url:
        yield db, url, appid, secret


def test_ingest_and_retain_through_the_server_match_the_local_path(
    served: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    db, url, appid, secret = served
    csv = tmp_path / "visits.csv"
    write_csv(csv)
    code, out, err = cli(
        db, "ingest", str(csv), "--app", appid, "--url", url, "--secret", secret,
        "--batch-size", "500", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "batch(es)" in out and "0 rejected" in out
    remote: dict[str, str] = {}
    for kind, begin, end in (
        ("daily", "20240101", "20240420"),
        ("weekly", "20240101", "20240420"),
        ("monthly", "20240101", "20240420"),
    ):
        code, out, err = cli(
            db, "retain", kind, begin, end, "--app", appid, "--format", "json",
            "--url", url, "--secret", secret,
        )  # fmt: skip
        assert code == 0, err
        assert "left out" in err
        remote[kind] = out
    # the same file ingested locally into a fresh database gives byte-identical output
    local_db = tmp_path / "local.duckdb"
    local_app, _ = make_app_with_data(local_db, [], name="local")
    code, _, err = cli(local_db, "ingest", str(csv), "--app", local_app, "-q")
    assert code == 0, err
    for kind, out in remote.items():
        code, local_out, err = cli(
            local_db, "retain", kind, "20240101", "20240420", "--app", local_app, "--format", "json"
        )
        assert code == 0, err
        assert local_out == out, kind
        first = orjson.loads(out.splitlines()[0])
        assert set(first) == {"ref_date", "visit_uv_new", "visit_uv"}
    assert sum(orjson.loads(x)["visit_uv_new"][0]["value"] for x in remote["daily"].splitlines())


def test_remote_ingest_bad_row_names_file_and_line_and_sends_nothing(
    served: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    db, url, appid, secret = served
    bad = tmp_path / "bad.csv"
    bad.write_text("openid,ts\nzz-1,1712282400\nzz-2,yesterday\n")
    token = get_token(url, appid, secret)

    def users() -> int:
        info = httpx.get(f"{url}/wxcube/v1/info", params={"access_token": token}).json()
        return int(info["users"])

    before = users()
    code, _, err = cli(db, "ingest", str(bad), "--app", appid, "--url", url, "--secret", secret)
    assert code == 1
    assert f"{bad}:3: ts:" in err and "Traceback" not in err
    assert users() == before  # the good first row was not sent either


def test_remote_needs_the_app_secret(served: tuple[Path, str, str, str]) -> None:
    db, url, appid, _ = served
    code, _, err = cli(db, "retain", "daily", "20240101", "--app", appid, "--url", url)
    assert code == 2 and "--secret" in err
    code, _, err = cli(
        db, "retain", "daily", "20240101", "--app", appid, "--url", url, "--secret", "nope"
    )
    assert code == 1 and "errcode 40125" in err and "rid: " in err  # stable_token: 40125


def test_app_commands_through_the_server_use_the_admin_key(
    served: tuple[Path, str, str, str],
) -> None:
    db, url, appid, secret = served
    env = {"WXCUBE_ADMIN_KEY": KEY}
    code, out, err = cli(db, "app", "create", "--name", "via-url", "--json", "--url", url, env=env)
    assert code == 0, err
    created = orjson.loads(out)
    assert set(created) == {"appid", "secret"}
    code, out, err = cli(db, "app", "list", "--json", "--url", url, env=env)
    assert code == 0, err
    names = {orjson.loads(x)["appid"]: orjson.loads(x)["name"] for x in out.splitlines()}
    assert names[created["appid"]] == "via-url" and names[appid] == "remote"
    code, out, err = cli(db, "app", "list", "--url", url, env=env)
    assert code == 0 and "via-url" in out
    code, out, err = cli(db, "app", "rotate-secret", created["appid"], "--url", url, env=env)
    assert code == 0 and "secret:" in out
    new_secret = out.split("secret: ")[1].split()[0]
    assert new_secret != created["secret"]
    # never with an app's secret, never without the key
    code, _, err = cli(db, "app", "list", "--url", url, env={"WXCUBE_ADMIN_KEY": secret})
    assert code == 1 and "errcode 40001" in err
    code, _, err = cli(db, "app", "list", "--url", url, env={"WXCUBE_ADMIN_KEY": ""})
    assert code == 2 and "WXCUBE_ADMIN_KEY" in err


def test_a_token_dying_mid_upload_is_renewed_and_everything_lands(tmp_path: Path) -> None:
    """Tokens live 1 s here, the upload takes longer: every batch must still be applied
    (the CLI renews the stable token and resends the refused batch once)."""
    db = tmp_path / "ttl.duckdb"
    appid, secret = make_app_with_data(db, [], name="ttl")
    csv = tmp_path / "many.csv"
    base = 1712000000
    csv.write_text("openid,ts\n" + "".join(f"u{i},{base + i}\n" for i in range(20_000)))
    with running_server(db, env={"WXCUBE_AS_OF": AS_OF, "WXCUBE_TOKEN_TTL": "1"}) as url:
        code, out, err = cli(
            db, "ingest", str(csv), "--app", appid, "--url", url, "--secret", secret,
            "--batch-size", "250", "-q",
        )  # fmt: skip
        assert code == 0, err
        assert "20,000 accepted" in out
        info = httpx.get(
            f"{url}/wxcube/v1/info", params={"access_token": get_token(url, appid, secret)}
        ).json()
    assert info["users"] == 20_000
