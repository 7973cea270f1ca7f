"""Signing keys across restarts and rotation; settings; the command line and its subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jwt
import pytest

from mock_server import ScryptParams, Settings, parse_duration
from mock_server.__main__ import main
from mock_server.keys import new_key_record
from mock_server.passwords import (
    demo_users,
    dummy_hash,
    hash_password,
    load_users,
    parse_hash,
    verify_password,
)
from mock_server.settings import default_db_path
from mock_server.store import SqliteStore
from tests.server.helpers import FAST_HASH, FakeClock, app_client, bearer, refresh_grant, sign_in


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_restart_on_the_same_database_keeps_keys_and_sessions(
    clock: FakeClock, tmp_path: Path
) -> None:
    db = str(tmp_path / "state.sqlite3")
    with app_client(clock, db_path=db) as first:
        tokens = sign_in(first)
        jwks = first.get("/.well-known/jwks.json").json()
    with app_client(clock, db_path=db) as second:
        assert second.get("/.well-known/jwks.json").json() == jwks
        assert second.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
        assert refresh_grant(second, tokens["refresh_token"]).status_code == 200


def test_rotated_key_stays_published_until_its_tokens_expire(
    clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "state.sqlite3")
    with app_client(clock, db_path=db, access_ttl=900.0) as client:
        old = sign_in(client)
        assert main(["rotate-key", "--db", db]) == 0
        assert "New signing key" in capsys.readouterr().out
        new = sign_in(client)
        assert kid_of(new["access_token"]) != kid_of(old["access_token"])
        kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
        assert sorted(kids) == sorted([kid_of(old["access_token"]), kid_of(new["access_token"])])
        assert client.get("/userinfo", headers=bearer(old["access_token"])).status_code == 200
        # Refreshing an old sign-in gets a token from the new key.
        refreshed = refresh_grant(client, old["refresh_token"]).json()
        assert kid_of(refreshed["access_token"]) == kid_of(new["access_token"])
        clock.advance(900)
        assert client.get("/userinfo", headers=bearer(old["access_token"])).status_code == 401
        # Published a little past its last token's end (it notes its use 5 minutes ahead).
        clock.advance(300)
        kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
        assert kids == [kid_of(new["access_token"])]


def test_one_active_key_even_when_two_processes_create_it(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.sqlite3"))
    try:
        assert store.add_signing_key(new_key_record(1.0), retire_current=False)
        assert not store.add_signing_key(new_key_record(2.0), retire_current=False)
        assert [k.retired_at for k in store.signing_keys()] == [None]
    finally:
        store.close()


def test_database_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    SqliteStore(str(db)).close()
    assert db.stat().st_mode & 0o077 == 0


def test_key_record_repr_hides_the_private_key() -> None:
    record = new_key_record(1.0)
    assert "PRIVATE" not in repr(record)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("15m", 900), ("2h", 7200), ("3d", 259200), ("90", 90), ("1.5m", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0s", "-5m", "3w", "m", "15 minutes", "99999999999d", "3651d", "1" + "0" * 400]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("issuer", ["http://example.org/realms/demo", "ftp://example.org", "x"])
def test_settings_refuse_an_issuer_the_routes_cannot_serve(issuer: str) -> None:
    with pytest.raises(ValueError, match=r"issuer cannot have a path|not an http"):
        Settings(issuer=issuer)


@pytest.mark.parametrize("issuer", ["http://example.org", "https://example.org/"])
def test_settings_accept_an_issuer_at_the_root(issuer: str) -> None:
    assert Settings(issuer=issuer).issuer == issuer


def test_default_settings_follow_the_article() -> None:
    settings = Settings()
    assert settings.access_ttl == 15 * 60
    assert settings.refresh_ttl == 3 * 86400
    assert settings.issuer == "http://127.0.0.1:8765"
    assert settings.clients == ("jwt-desktop",)
    assert settings.testing_clock is False
    # OWASP's scrypt minimum: N=2^15 with p=3 (or equivalents).
    assert settings.password_cost == ScryptParams(log2_n=15, r=8, p=3)


def test_default_database_is_in_the_user_data_dir() -> None:
    path = default_db_path()
    assert path.name.endswith(".sqlite3")
    assert "jwt-mock-server" in str(path)


def test_password_hash_is_salted_scrypt() -> None:
    one, two = hash_password("pw", FAST_HASH), hash_password("pw", FAST_HASH)
    assert one != two
    assert one.startswith("$scrypt$ln=10,r=8,p=1$")
    assert verify_password("pw", one)
    assert not verify_password("pW", one)
    assert not verify_password("pw", dummy_hash(FAST_HASH))
    with pytest.raises(ValueError):
        parse_hash("$2b$12$bcrypt-is-not-accepted")


def test_demo_users_at_the_default_cost() -> None:
    users = demo_users(ScryptParams())
    assert parse_hash(users["alice"].password_hash)[0] == ScryptParams()
    assert verify_password("wonderland", users["alice"].password_hash)
    assert users["alice"].groups == ("staff", "admin")
    assert users["bob"].groups == ("staff",)
    assert "scrypt" not in repr(users["alice"])


def test_add_user_then_sign_in_as_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    users_file = tmp_path / "users.json"
    monkeypatch.setattr(sys, "stdin", _Stdin("s3cret pass\n"))
    argv = ["--testing-password-cost", "10", "add-user", str(users_file), "carol"]
    argv += ["--name", "Carol Danvers", "--email", "carol@example.org", "--group", "staff"]
    assert main([*argv, "--password-stdin"]) == 0
    entry = json.loads(users_file.read_text())["users"][0]
    assert entry["username"] == "carol"
    assert "s3cret" not in users_file.read_text()
    assert users_file.stat().st_mode & 0o077 == 0
    users = load_users(users_file)
    with app_client(clock, users=users) as client:
        response = client.post(
            "/token",
            data={
                "grant_type": "password",
                "username": "carol",
                "password": "s3cret pass",
                "client_id": "jwt-desktop",
                "scope": "openid profile groups",
            },
        )
        assert response.status_code == 200
        profile = client.get("/userinfo", headers=bearer(response.json()["access_token"])).json()
        assert profile["name"] == "Carol Danvers"
        assert profile["groups"] == ["staff"]
        # Alice is not in this users file.
        assert sign_in_status(client, "alice", "wonderland") == 400


def test_add_user_replaces_an_entry_and_hashes_at_the_default_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users_file = tmp_path / "users.json"
    for password in ("first", "second"):
        monkeypatch.setattr(sys, "stdin", _Stdin(password + "\n"))
        assert main(["add-user", str(users_file), "dave", "--password-stdin"]) == 0
    users = load_users(users_file)
    assert list(users) == ["dave"]
    assert parse_hash(users["dave"].password_hash)[0] == ScryptParams()
    assert verify_password("second", users["dave"].password_hash)


def test_add_user_refuses_an_empty_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin("\n"))
    assert main(["add-user", str(tmp_path / "u.json"), "eve", "--password-stdin"]) == 1
    assert not (tmp_path / "u.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"users": {}}',
        '{"users": [{"username": "x"}]}',
        '{"users": [{"username": "a b", "password_hash": "x"}]}',
    ],
)
def test_bad_users_file_stops_the_server_with_a_message(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(content)
    assert main(["--port", "0", "--db", ":memory:", "--users", str(users_file)]) == 2
    assert "cannot read the users file" in capsys.readouterr().err


def test_durations_reach_ten_years() -> None:
    assert parse_duration("3650d") == 3650 * 86400


@pytest.mark.parametrize("ttl", ["access_ttl", "refresh_ttl"])
@pytest.mark.parametrize("seconds", [0.0, 3651 * 86400.0, float("inf")])
def test_settings_refuse_a_lifetime_out_of_range(ttl: str, seconds: float) -> None:
    with pytest.raises(ValueError, match="at most 10 years"):
        Settings(**{ttl: seconds})


def test_a_huge_refresh_ttl_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        # An address no interface has: were the option accepted, the server would not start.
        main(["--host", "192.0.2.1", "--refresh-ttl", "99999999999d"])
    assert stopped.value.code == 2
    assert "at most 10 years" in capsys.readouterr().err


def test_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--access-ttl", "soon"])
    assert stopped.value.code == 2
    assert "not a duration" in capsys.readouterr().err


def test_help_lists_the_options_but_not_the_test_only_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for option in (
        "--host",
        "--port",
        "--db",
        "--users",
        "--access-ttl",
        "--refresh-ttl",
        "--issuer",
    ):
        assert option in out
    assert "add-user" in out and "rotate-key" in out
    assert "--testing" not in out


class _Stdin:
    def __init__(self, text: str) -> None:
        self._text = text

    def readline(self) -> str:
        return self._text


def sign_in_status(client: object, username: str, password: str) -> int:
    response = client.post(  # type: ignore[attr-defined]
        "/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": "jwt-desktop",
        },
    )
    return int(response.status_code)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "not a port number"),
        (["--port", "http"], "not a port number"),
        (["--issuer", "ftp://example.org"], "not an http(s) URL"),
        (["--issuer", "http://example.org/?x=1"], "not an http(s) URL"),
        # An address no interface has: were the option accepted, the server would not start.
        (
            ["--host", "192.0.2.1", "--issuer", "http://example.org/realms/demo"],
            "the issuer cannot have a path",
        ),
        (["--host", "192.0.2.1", "--issuer", "https://example.org/x/"], "the issuer cannot"),
        (["--log-level", "chatty"], "invalid choice"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
