"""ID tokens (OIDC Core §2, §3.1.3.6): issued on every sign-in with openid, verifiable with the
server's JWKS, each claim right."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import CLIENT_ID, ISSUER, FakeClock, bearer, password_grant, refresh_grant
from tests.server.robot import (
    Pkce,
    approve,
    authorize_url,
    exchange,
    poll,
    redirect_parameters,
    sign_in_at,
    start,
)

ALICE_SUB_CLAIMS = {"iss", "sub", "aud", "exp", "iat", "auth_time", "at_hash"}


def verified(client: TestClient, token: str) -> dict[str, Any]:
    """The ID token's claims, its signature checked against the published JWKS."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    keys = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    return claims


def expected_at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def test_password_grant_id_token(client: TestClient, clock: FakeClock) -> None:
    body = password_grant(client).json()
    claims = verified(client, body["id_token"])
    profile = client.get("/userinfo", headers=bearer(body["access_token"])).json()
    assert claims["iss"] == ISSUER
    assert claims["aud"] == CLIENT_ID
    assert claims["sub"] == profile["sub"]
    assert claims["iat"] == int(clock.now)
    assert claims["auth_time"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 15 * 60
    assert claims["at_hash"] == expected_at_hash(body["access_token"])
    assert "nonce" not in claims
    # The profile claims the scopes allow, as /userinfo gives them.
    for name, value in profile.items():
        assert claims[name] == value


def test_profile_claims_follow_the_scope(client: TestClient) -> None:
    body = password_grant(client, scope="openid").json()
    claims = verified(client, body["id_token"])
    assert set(claims) == ALICE_SUB_CLAIMS
    body = password_grant(client, scope="openid email").json()
    assert set(verified(client, body["id_token"])) == ALICE_SUB_CLAIMS | {
        "email",
        "email_verified",
    }


def test_no_openid_scope_no_id_token(client: TestClient) -> None:
    body = password_grant(client, scope="profile").json()
    assert "id_token" not in body


def test_a_refresh_is_not_a_sign_in(client: TestClient) -> None:
    body = password_grant(client).json()
    refreshed = refresh_grant(client, body["refresh_token"]).json()
    assert "id_token" not in refreshed


def test_code_flow_id_token_carries_the_nonce_and_auth_time(
    client: TestClient, clock: FakeClock
) -> None:
    pkce = Pkce.new()
    signed_in_at = int(clock.now)
    response = sign_in_at(client, authorize_url(ISSUER, pkce, nonce="nonce-42"))
    code = redirect_parameters(response)["code"]
    clock.advance(30)
    body = exchange(client, code, pkce.verifier).json()
    claims = verified(client, body["id_token"])
    assert claims["nonce"] == "nonce-42"
    assert claims["auth_time"] == signed_in_at
    assert claims["iat"] == signed_in_at + 30
    assert claims["at_hash"] == expected_at_hash(body["access_token"])
    assert claims["aud"] == CLIENT_ID


def test_device_flow_id_token(client: TestClient, clock: FakeClock) -> None:
    grant = start(client)
    approved_at = int(clock.now)
    approve(client, grant["user_code"])
    clock.advance(7)
    body = poll(client, grant["device_code"]).json()
    claims = verified(client, body["id_token"])
    assert claims["auth_time"] == approved_at
    assert claims["at_hash"] == expected_at_hash(body["access_token"])
    assert "nonce" not in claims


def test_an_id_token_is_not_an_access_token(client: TestClient) -> None:
    body = password_grant(client).json()
    response = client.get("/userinfo", headers=bearer(body["id_token"]))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize("scope", ["openid", "openid profile email groups offline_access"])
def test_password_grant_accepts_offline_access(client: TestClient, scope: str) -> None:
    body = password_grant(client, scope=scope).json()
    assert body["scope"] == scope
    assert body["refresh_token"]
