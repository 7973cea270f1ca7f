"""node-oidc-provider is a real partner: discovery, the browser flow with a refresh token,
the device flow, rotation, revocation and its DPoP behaviour, with plain ``requests``."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from desktop.auth.loopback import LoopbackReceiver, new_pkce, new_state
from tests.support.browser import Person, play, play_device
from tests.support.thirdparty import NodeOidcServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _metadata(server: NodeOidcServer) -> dict[str, Any]:
    response = requests.get(server.discovery_url, timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def _sign_in(
    server: NodeOidcServer,
    scope: str,
    *,
    prove: Callable[..., str] | None = None,
    prompt: str | None = "consent",
) -> dict[str, Any]:
    """The browser flow played by the robot; returns the token response (the code redeemed
    with a DPoP proof when ``prove`` is given)."""
    verifier, challenge = new_pkce()
    state = new_state()
    with LoopbackReceiver(state=state, issuer=server.issuer, iss_required=True) as listener:
        params = {
            "response_type": "code",
            "client_id": server.client_id,
            "redirect_uri": listener.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if prompt is not None:
            params["prompt"] = prompt
        url = f"{_metadata(server)['authorization_endpoint']}?{urllib.parse.urlencode(params)}"
        outcome = play(url, Person("alice", "wonderland"))
        assert outcome.status == "done", outcome
        answer = listener.wait(10)  # state checked, iss required and checked
    assert answer.iss == server.issuer
    form = {
        "grant_type": "authorization_code",
        "client_id": server.client_id,
        "code": answer.code,
        "redirect_uri": listener.redirect_uri,
        "code_verifier": verifier,
    }
    token_endpoint = _metadata(server)["token_endpoint"]
    if prove is None:
        response = requests.post(token_endpoint, data=form, timeout=10)
    else:
        response = _post_with_dpop(token_endpoint, form, prove)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _post_with_dpop(url: str, form: dict[str, str], prove: Callable[..., str]) -> requests.Response:
    """POST with a proof; on ``use_dpop_nonce`` once more with the nonce given (RFC 9449 §8)."""
    response = requests.post(url, data=form, headers={"DPoP": prove("POST", url)}, timeout=10)
    if response.status_code == 400 and response.json().get("error") == "use_dpop_nonce":
        nonce = response.headers["DPoP-Nonce"]
        response = requests.post(
            url, data=form, headers={"DPoP": prove("POST", url, nonce=nonce)}, timeout=10
        )
    return response


def test_discovery_lists_dpop_device_and_revocation(node_oidc_server: NodeOidcServer) -> None:
    metadata = _metadata(node_oidc_server)
    assert metadata["issuer"] == node_oidc_server.issuer
    assert "ES256" in metadata["dpop_signing_alg_values_supported"]
    assert metadata["device_authorization_endpoint"].startswith(node_oidc_server.url)
    assert metadata["revocation_endpoint"] == f"{node_oidc_server.url}/token/revocation"
    assert "offline_access" in metadata["scopes_supported"]
    assert "password" not in metadata["grant_types_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_offline_access_with_consent_gives_a_refresh_token_that_rotates(
    node_oidc_server: NodeOidcServer,
) -> None:
    tokens = _sign_in(node_oidc_server, "openid profile groups offline_access")
    assert tokens["token_type"] == "Bearer"
    assert {"access_token", "refresh_token", "id_token"} <= tokens.keys()
    token_endpoint = _metadata(node_oidc_server)["token_endpoint"]

    def refresh(refresh_token: str) -> requests.Response:
        return requests.post(
            token_endpoint,
            data={
                "grant_type": "refresh_token",
                "client_id": node_oidc_server.client_id,
                "refresh_token": refresh_token,
            },
            timeout=10,
        )

    second = refresh(tokens["refresh_token"])
    assert second.status_code == 200, second.text
    newest = second.json()["refresh_token"]
    assert newest != tokens["refresh_token"]
    assert refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
    # Reuse detection: the whole grant is revoked, the newest refresh token too.
    assert refresh(newest).json()["error"] == "invalid_grant"


def test_without_offline_access_there_is_no_refresh_token(node_oidc_server: NodeOidcServer) -> None:
    tokens = _sign_in(node_oidc_server, "openid profile")
    assert "refresh_token" not in tokens
    assert "id_token" in tokens


def test_offline_access_without_prompt_consent_is_dropped(node_oidc_server: NodeOidcServer) -> None:
    tokens = _sign_in(node_oidc_server, "openid offline_access", prompt=None)
    assert "refresh_token" not in tokens
    assert "offline_access" not in tokens["scope"].split()


def test_userinfo_and_revocation(node_oidc_server: NodeOidcServer) -> None:
    metadata = _metadata(node_oidc_server)
    tokens = _sign_in(node_oidc_server, "openid profile groups offline_access")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    userinfo = requests.get(metadata["userinfo_endpoint"], headers=bearer, timeout=10)
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["groups"] == ["staff", "admin"]
    revoked = requests.post(
        metadata["revocation_endpoint"],
        data={"token": tokens["refresh_token"], "client_id": node_oidc_server.client_id},
        timeout=10,
    )
    assert revoked.status_code == 200
    again = requests.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "client_id": node_oidc_server.client_id,
            "refresh_token": tokens["refresh_token"],
        },
        timeout=10,
    )
    assert again.json()["error"] == "invalid_grant"


def _device_start(server: NodeOidcServer) -> dict[str, Any]:
    response = requests.post(
        _metadata(server)["device_authorization_endpoint"],
        data={"client_id": server.client_id, "scope": "openid offline_access", "prompt": "consent"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _device_poll(server: NodeOidcServer, device_code: str) -> requests.Response:
    return requests.post(
        _metadata(server)["token_endpoint"],
        data={
            "grant_type": DEVICE_GRANT,
            "client_id": server.client_id,
            "device_code": device_code,
        },
        timeout=10,
    )


def test_device_flow_approved_by_the_robot(
    node_oidc_server: NodeOidcServer, tmp_path: Path
) -> None:
    start = _device_start(node_oidc_server)
    pending = _device_poll(node_oidc_server, start["device_code"])
    assert pending.json()["error"] == "authorization_pending"
    log = tmp_path / "robot.log"
    outcome = play_device(start["verification_uri_complete"], log_path=str(log))
    assert outcome.status == "done", log.read_text()
    assert "Success" in outcome.detail
    tokens = _device_poll(node_oidc_server, start["device_code"])
    assert tokens.status_code == 200, tokens.text
    assert {"access_token", "refresh_token", "id_token"} <= tokens.json().keys()
    assert start["user_code"] not in log.read_text()


def test_device_flow_typed_code_and_denial(node_oidc_server: NodeOidcServer) -> None:
    start = _device_start(node_oidc_server)
    outcome = play_device(
        start["verification_uri"], start["user_code"], Person("bob", "builder", "deny")
    )
    assert outcome.status == "done", outcome
    denied = _device_poll(node_oidc_server, start["device_code"])
    assert denied.json()["error"] == "access_denied"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _dpop_prover(key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))

    def proof(method: str, url: str, *, nonce: str | None = None, token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if token is not None:
            claims["ath"] = _b64(hashlib.sha256(token.encode("ascii")).digest())
        return jwt.encode(
            claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": public}
        )

    return proof


def test_dpop_binds_tokens_and_demands_nonces_when_configured(
    start_node_oidc_server: Callable[..., NodeOidcServer],
) -> None:
    server = start_node_oidc_server(dpop_nonce=True)
    metadata = _metadata(server)
    token_endpoint, userinfo = metadata["token_endpoint"], metadata["userinfo_endpoint"]
    prove = _dpop_prover(ec.generate_private_key(ec.SECP256R1()))

    # Without a nonce the token endpoint answers use_dpop_nonce with a DPoP-Nonce header.
    bare = requests.post(
        token_endpoint,
        data={"grant_type": "refresh_token", "client_id": server.client_id, "refresh_token": "x"},
        headers={"DPoP": prove("POST", token_endpoint)},
        timeout=10,
    )
    assert bare.status_code == 400
    assert bare.json()["error"] == "use_dpop_nonce"
    assert bare.headers["DPoP-Nonce"]

    tokens = _sign_in(server, "openid offline_access", prove=prove)
    assert tokens["token_type"] == "DPoP"
    access = tokens["access_token"]
    as_bearer = requests.get(userinfo, headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert as_bearer.status_code == 401
    # The resource server demands a nonce as well: a 401 DPoP challenge with one.
    first = requests.get(
        userinfo,
        headers={"Authorization": f"DPoP {access}", "DPoP": prove("GET", userinfo, token=access)},
        timeout=10,
    )
    assert first.status_code == 401
    assert "use_dpop_nonce" in first.headers["WWW-Authenticate"]
    nonce = first.headers["DPoP-Nonce"]
    with_proof = requests.get(
        userinfo,
        headers={
            "Authorization": f"DPoP {access}",
            "DPoP": prove("GET", userinfo, nonce=nonce, token=access),
        },
        timeout=10,
    )
    assert with_proof.status_code == 200, with_proof.headers

    # A public client's refresh token from a DPoP code exchange is bound to the key.
    form = {
        "grant_type": "refresh_token",
        "client_id": server.client_id,
        "refresh_token": tokens["refresh_token"],
    }
    thief = _dpop_prover(ec.generate_private_key(ec.SECP256R1()))
    stolen = _post_with_dpop(token_endpoint, form, thief)
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    without_proof = requests.post(token_endpoint, data=form, timeout=10)
    assert without_proof.status_code == 400
    owner = _post_with_dpop(token_endpoint, form, prove)
    assert owner.status_code == 200, owner.text


def test_wrong_password_is_refused_by_the_sign_in_page(node_oidc_server: NodeOidcServer) -> None:
    _, challenge = new_pkce()
    with LoopbackReceiver(state=new_state(), issuer=node_oidc_server.issuer) as listener:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": node_oidc_server.client_id,
                "redirect_uri": listener.redirect_uri,
                "scope": "openid",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        outcome = play(f"{node_oidc_server.url}/auth?{query}", Person("alice", "wrong"))
        assert outcome.status == "refused"
        assert not listener.outcome.done.is_set()  # no redirect came


def test_authorization_endpoint_refusals(node_oidc_server: NodeOidcServer) -> None:
    def authorize(redirect_uri: str, **extra: str) -> requests.Response:
        query = {
            "response_type": "code",
            "client_id": node_oidc_server.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            **extra,
        }
        return requests.get(
            f"{node_oidc_server.url}/auth?{urllib.parse.urlencode(query)}",
            allow_redirects=False,
            timeout=10,
        )

    pkce = {"code_challenge": new_pkce()[1], "code_challenge_method": "S256"}
    # Unregistered hosts get an error page, never a redirect; `localhost` is not 127.0.0.1.
    assert authorize("http://evil.example/callback", **pkce).status_code == 400
    assert authorize("http://localhost:5000/callback", **pkce).status_code == 400
    assert authorize("http://127.0.0.1:5000/elsewhere", **pkce).status_code == 400
    no_pkce = authorize("http://127.0.0.1:5000/callback")
    assert no_pkce.status_code == 303
    assert "error=invalid_request" in no_pkce.headers["Location"]
    plain = authorize(
        "http://127.0.0.1:5000/callback", code_challenge="a" * 43, code_challenge_method="plain"
    )
    assert "error=invalid_request" in plain.headers["Location"]
