"""The pytest plugin's ``jwt_mock_server`` fixture and ``running_server``, used as a
stranger's test suite uses them (the plugin is loaded from the installed entry point)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from mock_server.testing import MockServer, ServerError, Tokens, running_server


def userinfo(server: MockServer, tokens: Tokens) -> httpx.Response:
    return httpx.get(f"{server.url}/userinfo", headers=tokens.authorization)


def test_the_plugin_comes_from_the_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("jwt_mock_server")
    assert plugin is not None and plugin.__name__ == "mock_server.testing"


def test_the_fixture_serves_the_demo_users(jwt_mock_server: MockServer) -> None:
    assert jwt_mock_server.url.startswith("http://127.0.0.1:")
    assert jwt_mock_server.issuer == jwt_mock_server.url
    assert set(jwt_mock_server.users) == {"alice", "bob"}
    discovery = httpx.get(f"{jwt_mock_server.url}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == jwt_mock_server.issuer
    tokens = jwt_mock_server.sign_in("alice")
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["iss"] == jwt_mock_server.issuer
    assert userinfo(jwt_mock_server, tokens).json()["preferred_username"] == "alice"
    assert "access_token" not in repr(tokens) and tokens.access_token not in repr(tokens)


@pytest.mark.jwt_mock_server(access_ttl="1m")
def test_advance_expires_the_access_token(jwt_mock_server: MockServer) -> None:
    tokens = jwt_mock_server.sign_in("bob")
    assert tokens.expires_in == 60
    jwt_mock_server.advance(59)
    assert userinfo(jwt_mock_server, tokens).status_code == 200
    jwt_mock_server.advance(2)
    expired = userinfo(jwt_mock_server, tokens)
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert tokens.refresh_token is not None
    assert userinfo(jwt_mock_server, jwt_mock_server.refresh(tokens.refresh_token)).is_success


def test_revoke_all_ends_every_sign_in(jwt_mock_server: MockServer) -> None:
    signed_in = [jwt_mock_server.sign_in(name) for name in ("alice", "bob", "alice")]
    assert jwt_mock_server.revoke_all() == 3
    for tokens in signed_in:
        assert userinfo(jwt_mock_server, tokens).status_code == 401
        assert tokens.refresh_token is not None
        with pytest.raises(ServerError) as refused:
            jwt_mock_server.refresh(tokens.refresh_token)
        assert (refused.value.status, refused.value.error) == (400, "invalid_grant")


CAROL: dict[str, Any] = {
    "password": "correct horse",
    "groups": ["staff"],
    "email": "carol@example.org",
    "claims": {"employee_id": "E-1047", "birthdate": "1990-04-01"},
}


@pytest.mark.parametrize("jwt_mock_server", [{"users": {"carol": CAROL}}], indirect=True)
def test_users_with_extra_claims_by_parametrisation(jwt_mock_server: MockServer) -> None:
    assert jwt_mock_server.users == {"carol": "correct horse"}
    tokens = jwt_mock_server.sign_in("carol")
    full = userinfo(jwt_mock_server, tokens).json()
    assert full["employee_id"] == "E-1047"  # a custom claim: released with profile
    assert full["birthdate"] == "1990-04-01"  # a standard profile claim
    assert full["groups"] == ["staff"]
    assert tokens.id_token is not None
    id_claims = jwt.decode(tokens.id_token, options={"verify_signature": False})
    assert (id_claims["employee_id"], id_claims["birthdate"]) == ("E-1047", "1990-04-01")
    narrow_tokens = jwt_mock_server.sign_in("carol", scope="openid email")
    assert narrow_tokens.id_token is not None
    narrow_id = jwt.decode(narrow_tokens.id_token, options={"verify_signature": False})
    assert "employee_id" not in narrow_id and "birthdate" not in narrow_id
    narrow = userinfo(jwt_mock_server, narrow_tokens)
    assert narrow.json() == {
        "sub": full["sub"],
        "email": "carol@example.org",
        "email_verified": False,
    }
    with pytest.raises(ServerError):
        jwt_mock_server.sign_in("alice", "wonderland")  # the demo users are replaced


@pytest.mark.jwt_mock_server(reuse_grace="30s")
def test_the_reuse_grace_is_an_option(jwt_mock_server: MockServer) -> None:
    tokens = jwt_mock_server.sign_in("alice")
    assert tokens.refresh_token is not None
    jwt_mock_server.refresh(tokens.refresh_token)  # as if its answer were lost
    assert jwt_mock_server.refresh(tokens.refresh_token).refresh_token


def test_running_server_without_pytest_stops_after_the_block() -> None:
    with running_server(refresh_ttl=120) as server:
        tokens = server.sign_in("alice")
        server.advance(121)
        assert tokens.refresh_token is not None
        with pytest.raises(ServerError):
            server.refresh(tokens.refresh_token)
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
