"""POST /token: the password and refresh_token grants, rotation, reuse detection, expiry."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import (
    ALL_SCOPES,
    CLIENT_ID,
    ISSUER,
    OTHER_CLIENT_ID,
    FakeClock,
    app_client,
    bearer,
    password_grant,
    refresh_grant,
    sign_in,
)


def error_of(response: object) -> tuple[int, str]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "error_description"}
    assert body["error_description"]
    return response.status_code, body["error"]  # type: ignore[attr-defined]


def test_password_grant_returns_a_token_set(client: TestClient) -> None:
    response = password_grant(client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "id_token",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    # The default scope: who the person is, not what they may do (least privilege).
    assert body["scope"] == "openid profile email"
    assert len(body["refresh_token"]) >= 43  # 256 bits in base64url


def test_access_token_is_an_rfc9068_jwt(client: TestClient, clock: FakeClock) -> None:
    body = sign_in(client, scope=ALL_SCOPES)
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    jwks = client.get("/.well-known/jwks.json").json()
    assert header["kid"] in [k["kid"] for k in jwks["keys"]]
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWK(jwks["keys"][0]).key,
        algorithms=["RS256"],
        audience=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == ISSUER
    assert claims["client_id"] == CLIENT_ID
    assert claims["groups"] == ["staff", "admin"]
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 900
    assert {"sub", "jti", "sid", "scope"} <= set(claims)
    assert claims["sub"] != "alice"


def test_refresh_tokens_are_stored_only_as_hashes(
    clock: FakeClock, tmp_path: pytest.TempPathFactory
) -> None:
    db = tmp_path / "state.sqlite3"  # type: ignore[operator]
    with app_client(clock, db_path=str(db)) as client:
        refresh_token = sign_in(client)["refresh_token"]
    assert refresh_token.encode() not in db.read_bytes()


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"client_id": CLIENT_ID}, 400, "invalid_request"),
        ({"grant_type": "password", "username": "alice", "password": "x"}, 400, "invalid_client"),
        (
            {"grant_type": "password", "username": "a", "password": "x", "client_id": "nope"},
            400,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": CLIENT_ID},
            400,
            "unsupported_grant_type",
        ),
        (
            {"grant_type": "implicit", "client_id": CLIENT_ID},
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "password", "client_id": CLIENT_ID}, 400, "invalid_request"),
        (
            {"grant_type": "password", "username": "alice", "client_id": CLIENT_ID},
            400,
            "invalid_request",
        ),
        ({"grant_type": "refresh_token", "client_id": CLIENT_ID}, 400, "invalid_request"),
        (
            {
                "grant_type": "password",
                "username": "alice",
                "password": "nope",
                "client_id": CLIENT_ID,
            },
            400,
            "invalid_grant",
        ),
        (
            {
                "grant_type": "password",
                "username": "alice",
                "password": "wonderland",
                "client_id": CLIENT_ID,
                "scope": "openid admin",
            },
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "refresh_token", "refresh_token": "made-up", "client_id": CLIENT_ID},
            400,
            "invalid_grant",
        ),
    ],
)
def test_token_errors(client: TestClient, data: dict[str, str], status: int, error: str) -> None:
    response = client.post("/token", data=data)
    assert error_of(response) == (status, error)
    assert response.headers["Cache-Control"] == "no-store"


def test_requested_scope_narrows_the_grant(client: TestClient) -> None:
    response = password_grant(client, scope="openid email")
    assert response.json()["scope"] == "openid email"
    profile = client.get("/userinfo", headers=bearer(response.json()["access_token"])).json()
    assert set(profile) == {"sub", "email", "email_verified"}


def test_refresh_rotates_within_the_family(client: TestClient, clock: FakeClock) -> None:
    first = sign_in(client)
    clock.advance(60)
    second = refresh_grant(client, first["refresh_token"])
    assert second.status_code == 200
    assert second.headers["Cache-Control"] == "no-store"
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    old = jwt.decode(first["access_token"], options={"verify_signature": False})
    new = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert new["sid"] == old["sid"]
    assert new["iat"] == old["iat"] + 60
    third = refresh_grant(client, body["refresh_token"])
    assert third.status_code == 200


def test_reusing_a_spent_token_revokes_the_whole_family(client: TestClient) -> None:
    first = sign_in(client)
    second = refresh_grant(client, first["refresh_token"]).json()
    reuse = refresh_grant(client, first["refresh_token"])
    assert error_of(reuse) == (400, "invalid_grant")
    assert "already used" in reuse.json()["error_description"]
    # The newest token of the family dies with it, and so do its access tokens.
    newest = refresh_grant(client, second["refresh_token"])
    assert error_of(newest) == (400, "invalid_grant")
    assert client.get("/userinfo", headers=bearer(second["access_token"])).status_code == 401
    # Another sign-in of the same person is a separate family and lives on.
    other = sign_in(client)
    assert refresh_grant(client, other["refresh_token"]).status_code == 200


def test_refresh_token_bound_to_its_client(client: TestClient) -> None:
    tokens = sign_in(client)
    stolen = refresh_grant(client, tokens["refresh_token"], client_id=OTHER_CLIENT_ID)
    assert error_of(stolen) == (400, "invalid_grant")
    # The refusal did not spend it for its own client.
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


def test_access_token_is_not_a_refresh_token(client: TestClient) -> None:
    tokens = sign_in(client)
    assert error_of(refresh_grant(client, tokens["access_token"])) == (400, "invalid_grant")


def test_refresh_token_expires_at_the_family_absolute_expiry(clock: FakeClock) -> None:
    with app_client(clock, refresh_ttl=3600.0, access_ttl=900.0) as client:
        tokens = sign_in(client)
        # Rotating often never pushes the end of the sign-in further out.
        for _ in range(3):
            clock.advance(1000)
            response = refresh_grant(client, tokens["refresh_token"])
            assert response.status_code == 200
            tokens = response.json()
        clock.advance(500)  # 3500 s after sign-in: the access token is cut to the family's end
        last = refresh_grant(client, tokens["refresh_token"])
        assert last.status_code == 200
        assert last.json()["expires_in"] == 100
        clock.advance(100)
        expired = refresh_grant(client, last.json()["refresh_token"])
        assert error_of(expired) == (400, "invalid_grant")
        assert expired.json()["error_description"] == "The refresh token has expired"


def test_refresh_with_a_wider_scope_is_refused_without_spending(client: TestClient) -> None:
    tokens = password_grant(client, scope="openid profile").json()
    wider = refresh_grant(client, tokens["refresh_token"], scope="openid profile email")
    assert error_of(wider) == (400, "invalid_scope")
    narrower = refresh_grant(client, tokens["refresh_token"], scope="openid")
    assert narrower.status_code == 200
    assert narrower.json()["scope"] == "openid"
    # The family keeps its original scope for later refreshes.
    later = refresh_grant(client, narrower.json()["refresh_token"])
    assert later.json()["scope"] == "openid profile"


@pytest.mark.parametrize("scope", ["admin", "", "openid"])
def test_replaying_a_spent_token_with_a_scope_still_revokes_the_family(
    client: TestClient, scope: str
) -> None:
    first = sign_in(client)
    second = refresh_grant(client, first["refresh_token"]).json()
    replay = refresh_grant(client, first["refresh_token"], scope=scope)
    assert error_of(replay) == (400, "invalid_grant")
    assert "already used" in replay.json()["error_description"]
    assert error_of(refresh_grant(client, second["refresh_token"])) == (400, "invalid_grant")
    assert client.get("/userinfo", headers=bearer(second["access_token"])).status_code == 401


def _revoked(client: TestClient, clock: FakeClock) -> str:
    token = sign_in(client)["refresh_token"]
    client.post("/revoke", data={"token": token, "client_id": CLIENT_ID})
    return token


def _expired(client: TestClient, clock: FakeClock) -> str:
    token = sign_in(client)["refresh_token"]
    clock.advance(3 * 86400)
    return token


def _unknown(client: TestClient, clock: FakeClock) -> str:
    return "never-issued"


@pytest.mark.parametrize("make_token", [_revoked, _expired, _unknown])
@pytest.mark.parametrize("scope", ["admin", ""])
def test_a_dead_token_answers_invalid_grant_whatever_the_scope(
    client: TestClient, clock: FakeClock, make_token: Any, scope: str
) -> None:
    token = make_token(client, clock)
    assert error_of(refresh_grant(client, token, scope=scope)) == (400, "invalid_grant")


def test_another_clients_token_answers_invalid_grant_whatever_the_scope(
    client: TestClient,
) -> None:
    tokens = sign_in(client)
    stolen = refresh_grant(client, tokens["refresh_token"], client_id=OTHER_CLIENT_ID, scope="x")
    assert error_of(stolen) == (400, "invalid_grant")
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


def test_revoke_ends_the_family(client: TestClient) -> None:
    tokens = sign_in(client)
    response = client.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": CLIENT_ID}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert error_of(refresh_grant(client, tokens["refresh_token"])) == (400, "invalid_grant")
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401


def test_revoke_by_access_token_ends_the_family(client: TestClient) -> None:
    tokens = sign_in(client)
    response = client.post(
        "/revoke",
        data={
            "token": tokens["access_token"],
            "token_type_hint": "access_token",
            "client_id": CLIENT_ID,
        },
    )
    assert response.status_code == 200
    assert error_of(refresh_grant(client, tokens["refresh_token"])) == (400, "invalid_grant")


def test_revoke_unknown_token_is_200(client: TestClient) -> None:
    response = client.post("/revoke", data={"token": "never-issued", "client_id": CLIENT_ID})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"client_id": CLIENT_ID}, 400, "invalid_request"),
        ({"token": "x"}, 400, "invalid_client"),
        ({"token": "x", "client_id": "nope"}, 400, "invalid_client"),
    ],
)
def test_revoke_errors(client: TestClient, data: dict[str, str], status: int, error: str) -> None:
    assert error_of(client.post("/revoke", data=data)) == (status, error)


def test_revoke_refuses_another_clients_token(client: TestClient) -> None:
    tokens = sign_in(client)
    response = client.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": OTHER_CLIENT_ID}
    )
    assert error_of(response) == (400, "unauthorized_client")
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("path", ["/token", "/revoke"])
def test_client_credentials_in_basic_auth_are_refused(client: TestClient, path: str) -> None:
    response = client.post(
        path,
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "wonderland",
            "client_id": CLIENT_ID,
            "token": "x",
        },
        auth=(CLIENT_ID, "a-secret"),
    )
    assert error_of(response) == (401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="jwt-mock-server"'


@pytest.mark.parametrize("path", ["/token", "/revoke"])
@pytest.mark.parametrize(
    ("data", "auth"),
    [
        ({"grant_type": "password", "username": "alice", "password": "x", "token": "x"}, None),
        ({"grant_type": "password", "client_id": "nope", "token": "x"}, None),
        ({"grant_type": "password", "client_id": "nope", "token": "x"}, ("nope", "secret")),
        ({"grant_type": "password", "token": "x"}, (CLIENT_ID, "")),
    ],
)
def test_invalid_client_is_401_only_with_a_challenge(
    client: TestClient, path: str, data: dict[str, str], auth: tuple[str, str] | None
) -> None:
    response = client.post(path, data=data, auth=auth)
    assert response.json()["error"] == "invalid_client"
    # RFC 6749 §5.2: 401 with the scheme the client tried, else 400; RFC 9110 §11.6.1: a 401
    # always carries WWW-Authenticate.
    if auth is None:
        assert response.status_code == 400
        assert "WWW-Authenticate" not in response.headers
    else:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="jwt-mock-server"'
