"""Discovery, JWKS, /userinfo and the admin-only /api/sessions, with RFC 6750 challenges."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.oauth2 import rfc9207
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from fastapi.testclient import TestClient

from mock_server.settings import MAX_DURATION
from tests.server.helpers import (
    ALL_SCOPES,
    BARE_CHALLENGE,
    CLIENT_ID,
    DPOP_CHALLENGE,
    ISSUER,
    FakeClock,
    app_client,
    bearer,
    challenge,
    refresh_grant,
    sign_in,
)


def test_discovery_names_every_endpoint(client: TestClient) -> None:
    doc = client.get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert doc["token_endpoint"] == f"{ISSUER}/token"
    assert doc["device_authorization_endpoint"] == f"{ISSUER}/device_authorization"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert doc["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert doc["grant_types_supported"] == [
        "password",
        "refresh_token",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    assert doc["token_endpoint_auth_methods_supported"] == ["none"]
    assert doc["revocation_endpoint_auth_methods_supported"] == ["none"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["scopes_supported"] == [
        "openid",
        "profile",
        "email",
        "groups",
        "offline_access",
        "sessions:admin",
    ]
    assert {"sub", "preferred_username", "groups", "email", "auth_time", "nonce", "at_hash"} <= set(
        doc["claims_supported"]
    )


def test_discovery_sent_many_times_keeps_its_headers(client: TestClient) -> None:
    # Encoded once (asgi._discovery_endpoint): each answer has its own copy of the headers.
    for _ in range(3):
        response = client.get("/.well-known/openid-configuration")
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.json()["issuer"] == ISSUER


def test_rfc8414_metadata_is_the_discovery_document(client: TestClient) -> None:
    oidc = client.get("/.well-known/openid-configuration")
    oauth = client.get("/.well-known/oauth-authorization-server")
    assert oauth.status_code == 200
    assert oauth.json() == oidc.json()


@pytest.mark.parametrize("metadata", [AuthorizationServerMetadata, OpenIDProviderMetadata])
def test_discovery_validates_as_server_metadata(clock: FakeClock, metadata: Any) -> None:
    # A loopback issuer: the validators accept plain http only there, as the desktop app does.
    with app_client(clock, issuer="http://127.0.0.1:8765") as client:
        documents = [
            client.get("/.well-known/openid-configuration").json(),
            client.get("/.well-known/oauth-authorization-server").json(),
        ]
    for doc in documents:
        metadata(doc).validate(metadata_classes=[rfc9207.AuthorizationServerMetadata])


def test_jwks_publishes_only_public_rs256_keys(client: TestClient) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_openapi_documents_the_oauth2_password_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    (scheme,) = spec["components"]["securitySchemes"].values()
    assert scheme["type"] == "oauth2"
    flow = scheme["flows"]["password"]
    assert flow["tokenUrl"] == "/token"
    assert set(flow["scopes"]) == {*ALL_SCOPES.split(), "offline_access"}
    assert spec["paths"]["/userinfo"]["get"]["security"]
    (admin,) = spec["paths"]["/api/sessions"]["get"]["security"]
    assert "sessions:admin" in next(iter(admin.values()))
    token_body = spec["paths"]["/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in token_body
    assert "/_testing/advance" not in spec["paths"]


def test_userinfo_returns_the_profile(client: TestClient) -> None:
    tokens = sign_in(client, scope=ALL_SCOPES)
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    profile = response.json()
    assert profile["preferred_username"] == "alice"
    assert profile["name"] == "Alice Liddell"
    assert profile["email"] == "alice@example.org"
    assert profile["groups"] == ["staff", "admin"]
    assert profile["sub"]
    assert {"given_name", "family_name", "email_verified", "locale", "zoneinfo"} <= set(profile)
    # OIDC allows POST too.
    posted = client.post("/userinfo", headers=bearer(tokens["access_token"]))
    assert posted.json() == profile


def test_userinfo_answers_each_person_and_scope_with_its_own_profile(client: TestClient) -> None:
    # The answers are encoded once per person and scope (asgi._userinfo_endpoint): a narrower
    # token or another person must never get a profile remembered for someone else, and the
    # headers of a remembered answer must not grow with each time it is sent.
    wide = sign_in(client, scope=ALL_SCOPES)["access_token"]
    narrow = sign_in(client, scope="openid profile")["access_token"]
    bob = sign_in(client, "bob", scope=ALL_SCOPES)["access_token"]
    for _ in range(3):
        answers = {
            name: client.get("/userinfo", headers=bearer(token))
            for name, token in (("wide", wide), ("narrow", narrow), ("bob", bob))
        }
        for response in answers.values():
            assert response.status_code == 200
            assert response.headers.get_list("x-content-type-options") == ["nosniff"]
            assert response.headers.get_list("cache-control") == ["no-store"]
            assert response.headers["content-type"] == "application/json"
            assert int(response.headers["content-length"]) == len(response.content)
        assert "groups" in answers["wide"].json() and "email" in answers["wide"].json()
        assert "groups" not in answers["narrow"].json()
        assert "email" not in answers["narrow"].json()
        assert answers["narrow"].json()["preferred_username"] == "alice"
        assert answers["bob"].json()["preferred_username"] == "bob"
        assert answers["bob"].json()["sub"] != answers["wide"].json()["sub"]


def test_userinfo_without_a_token_has_a_bare_challenge(client: TestClient) -> None:
    response = client.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE
    assert response.json()["error_description"]


def test_userinfo_with_another_scheme_has_a_bare_challenge(client: TestClient) -> None:
    response = client.get("/userinfo", headers={"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


def test_userinfo_with_a_bad_token_says_invalid_token(client: TestClient) -> None:
    response = client.get("/userinfo", headers=bearer("not-a-jwt"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge("The access token is malformed")
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "The access token is malformed",
    }


def test_userinfo_refuses_an_expired_token(client: TestClient, clock: FakeClock) -> None:
    tokens = sign_in(client)
    clock.advance(899)
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    clock.advance(1)
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge("The access token expired")


def test_revoked_session_refuses_its_access_tokens_at_once(client: TestClient) -> None:
    tokens = sign_in(client)
    client.post("/revoke", data={"token": tokens["refresh_token"], "client_id": CLIENT_ID})
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge(
        "The session of this token has been revoked"
    )


def test_sessions_lists_active_sessions_for_admins(client: TestClient, clock: FakeClock) -> None:
    admin = sign_in(client, "alice", ALL_SCOPES)
    bob = sign_in(client, "bob")
    clock.advance(30)
    bob = refresh_grant(client, bob["refresh_token"]).json()
    ended = sign_in(client, "bob")
    client.post("/revoke", data={"token": ended["refresh_token"], "client_id": CLIENT_ID})
    response = client.get("/api/sessions", headers=bearer(admin["access_token"]))
    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert [(s["username"], s["current"]) for s in sessions] == [("alice", True), ("bob", False)]
    bobs = sessions[1]
    assert bobs["client_id"] == CLIENT_ID
    assert bobs["started_at"] == "2027-01-15T08:00:00Z"
    assert bobs["last_refreshed_at"] == "2027-01-15T08:00:30Z"
    assert bobs["expires_at"] == "2027-01-18T08:00:00Z"


ADMIN_CHALLENGE = (
    'Bearer error="insufficient_scope", error_description="This resource needs the '
    f'sessions:admin scope, granted to members of admin", scope="sessions:admin", {DPOP_CHALLENGE}'
)


def test_sessions_refuse_non_admins_with_insufficient_scope(client: TestClient) -> None:
    # Bob asks for everything; sessions:admin is narrowed away, the rest granted.
    bob = sign_in(client, "bob", ALL_SCOPES)
    assert bob["scope"] == "openid profile email groups"
    response = client.get("/api/sessions", headers=bearer(bob["access_token"]))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == ADMIN_CHALLENGE
    assert response.json()["error"] == "insufficient_scope"
    delete = client.delete("/api/sessions/whatever", headers=bearer(bob["access_token"]))
    assert delete.status_code == 403


def test_sessions_need_a_token(client: TestClient) -> None:
    response = client.get("/api/sessions")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


def test_admin_revokes_a_session(client: TestClient) -> None:
    admin = sign_in(client, "alice", ALL_SCOPES)
    bob = sign_in(client, "bob")
    sessions = client.get("/api/sessions", headers=bearer(admin["access_token"])).json()
    bobs_id = next(s["id"] for s in sessions["sessions"] if s["username"] == "bob")
    response = client.delete(f"/api/sessions/{bobs_id}", headers=bearer(admin["access_token"]))
    assert response.status_code == 204
    assert client.get("/userinfo", headers=bearer(bob["access_token"])).status_code == 401
    assert refresh_grant(client, bob["refresh_token"]).json()["error"] == "invalid_grant"
    again = client.delete(f"/api/sessions/{bobs_id}", headers=bearer(admin["access_token"]))
    assert again.status_code == 404
    assert again.json()["error"] == "not_found"


def test_a_token_already_verified_is_refused_once_its_session_is_revoked(
    client: TestClient,
) -> None:
    tokens = sign_in(client)
    for _ in range(2):  # verified, then served from the verifier's memory
        assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    client.post("/revoke", data={"token": tokens["refresh_token"], "client_id": CLIENT_ID})
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge(
        "The session of this token has been revoked"
    )


def test_sessions_list_a_sign_in_of_the_longest_lifetime(clock: FakeClock) -> None:
    with app_client(clock, refresh_ttl=float(MAX_DURATION)) as client:
        tokens = sign_in(client, scope=ALL_SCOPES)
        response = client.get("/api/sessions", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json()["sessions"][0]["expires_at"].startswith("2037-")
