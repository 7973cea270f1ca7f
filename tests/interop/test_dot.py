"""django-oauth-toolkit is a real partner: what it publishes and how it treats refresh tokens,
revocation and the browser flow, spoken to with plain ``requests``."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests

from desktop.auth.errors import AuthorizationDenied
from desktop.auth.loopback import LoopbackReceiver, new_pkce, new_state
from tests.support.browser import Person, play
from tests.support.thirdparty import DotServer


def _get_json(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _token(server: DotServer, **form: str) -> requests.Response:
    return requests.post(f"{server.issuer}/token/", data=form, timeout=10)


def _password_grant(server: DotServer, username: str = "bob") -> dict[str, Any]:
    response = _token(
        server,
        grant_type="password",
        client_id=server.password_client_id,
        username=username,
        password=server.users[username],
        scope="openid profile groups",
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _refresh(server: DotServer, refresh_token: str) -> requests.Response:
    return _token(
        server,
        grant_type="refresh_token",
        client_id=server.password_client_id,
        refresh_token=refresh_token,
    )


def test_discovery_has_no_revocation_endpoint_but_rfc8414_metadata_does(
    dot_server: DotServer,
) -> None:
    oidc = _get_json(dot_server.discovery_url)
    oauth = _get_json(dot_server.metadata_url)
    assert oidc["issuer"] == oauth["issuer"] == dot_server.issuer
    assert "revocation_endpoint" not in oidc
    assert oauth["revocation_endpoint"] == f"{dot_server.issuer}/revoke_token/"
    assert oidc["token_endpoint"] == oauth["token_endpoint"] == f"{dot_server.issuer}/token/"
    assert oauth["code_challenge_methods_supported"] == ["S256"]
    assert oidc["authorization_response_iss_parameter_supported"] is True
    # What a client must merge from the two documents (quirks of DOT 3.x):
    # grant types, revocation and introspection only in RFC 8414's; userinfo only in OIDC's;
    # `none` (public clients) only where OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED says so.
    assert "grant_types_supported" not in oidc
    assert {"authorization_code", "password", "refresh_token"} <= set(
        oauth["grant_types_supported"]
    )
    assert "userinfo_endpoint" not in oauth
    assert "none" in oidc["token_endpoint_auth_methods_supported"]
    assert "none" not in oauth["token_endpoint_auth_methods_supported"]
    # DOT knows no offline_access (it always issues refresh tokens) and advertises no device
    # endpoint, though it lists the device grant.
    assert "offline_access" not in oauth["scopes_supported"]
    assert "device_authorization_endpoint" not in oauth
    # The root document (no issuer path) names another issuer: RFC 8414 §3.3 says to refuse it.
    root = _get_json(f"{dot_server.url}/.well-known/oauth-authorization-server")
    assert root["issuer"] != dot_server.issuer or root == oauth


def test_password_grant_rotates_and_reuse_kills_the_family(dot_server: DotServer) -> None:
    first = _password_grant(dot_server)
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == dot_server.access_ttl
    # A quirk to know: DOT's password grant issues no ID token, even with `openid`.
    assert "id_token" not in first

    second = _refresh(dot_server, first["refresh_token"])
    assert second.status_code == 200, second.text
    newest = second.json()["refresh_token"]
    assert newest != first["refresh_token"]

    reused = _refresh(dot_server, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # Reuse protection: the newest refresh token of the family is dead too.
    after = _refresh(dot_server, newest)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_password_grant_refuses_a_wrong_password_and_the_code_client(dot_server: DotServer) -> None:
    wrong = _token(
        dot_server,
        grant_type="password",
        client_id=dot_server.password_client_id,
        username="alice",
        password="not-her-password",
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    offline = _token(
        dot_server,
        grant_type="password",
        client_id=dot_server.password_client_id,
        username="alice",
        password="wonderland",
        scope="openid offline_access",
    )
    assert offline.json()["error"] == "invalid_scope"
    other_client = _token(
        dot_server,
        grant_type="password",
        client_id=dot_server.client_id,
        username="alice",
        password="wonderland",
    )
    assert other_client.status_code == 400
    assert other_client.json()["error"] == "unauthorized_client"


def test_userinfo_has_groups(dot_server: DotServer) -> None:
    tokens = _password_grant(dot_server, "bob")
    response = requests.get(
        f"{dot_server.issuer}/userinfo/",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["groups"] == ["staff"]


def test_revocation_of_the_refresh_token(dot_server: DotServer) -> None:
    tokens = _password_grant(dot_server)
    revoke = _get_json(dot_server.metadata_url)["revocation_endpoint"]
    response = requests.post(
        revoke,
        data={
            "token": tokens["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": dot_server.password_client_id,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert _refresh(dot_server, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    # DOT revokes the access token with its refresh token.
    userinfo = requests.get(
        f"{dot_server.issuer}/userinfo/",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 401


def _authorize_url(server: DotServer, redirect_uri: str, challenge: str, state: str) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": server.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile groups",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{server.issuer}/authorize/?{query}"


def test_browser_flow_with_pkce_on_any_loopback_port(dot_server: DotServer, tmp_path: Path) -> None:
    verifier, challenge = new_pkce()
    state = new_state()
    log = tmp_path / "browser.log"
    # iss_required: the redirect must carry DOT's issuer (RFC 9207), which it advertises.
    with LoopbackReceiver(state=state, issuer=dot_server.issuer, iss_required=True) as listener:
        outcome = play(
            _authorize_url(dot_server, listener.redirect_uri, challenge, state),
            Person("alice", "wonderland"),
            log_path=str(log),
        )
        assert outcome.status == "done", log.read_text()
        assert outcome.final_status == 200
        answer = listener.wait(10)
    assert answer.iss == dot_server.issuer
    assert "wonderland" not in log.read_text()
    assert answer.code not in log.read_text()

    def redeem(code_verifier: str) -> requests.Response:
        return _token(
            dot_server,
            grant_type="authorization_code",
            client_id=dot_server.client_id,
            code=answer.code,
            redirect_uri=listener.redirect_uri,
            code_verifier=code_verifier,
        )

    assert redeem("a-wrong-verifier-" + "x" * 40).json()["error"] == "invalid_grant"
    response = redeem(verifier)
    assert response.status_code == 200, response.text
    assert {"access_token", "refresh_token", "id_token"} <= response.json().keys()


def test_browser_flow_denied(dot_server: DotServer) -> None:
    _, challenge = new_pkce()
    state = new_state()
    with LoopbackReceiver(state=state, issuer=dot_server.issuer) as listener:
        outcome = play(
            _authorize_url(dot_server, listener.redirect_uri, challenge, state),
            Person("bob", "builder", decision="deny"),
        )
        assert outcome.status == "done"
        with pytest.raises(AuthorizationDenied) as denied:
            listener.wait(10)
    assert denied.value.error == "access_denied"


def test_browser_flow_wrong_password_is_refused(dot_server: DotServer) -> None:
    _, challenge = new_pkce()
    state = new_state()
    with LoopbackReceiver(state=state, issuer=dot_server.issuer) as listener:
        outcome = play(
            _authorize_url(dot_server, listener.redirect_uri, challenge, state),
            Person("bob", "wrong"),
        )
        assert outcome.status == "refused"
        assert not listener.outcome.done.is_set()  # no redirect came


def test_authorize_refuses_no_pkce_and_foreign_redirect(dot_server: DotServer) -> None:
    with requests.Session() as browser:
        no_pkce = _authorize_url(dot_server, "http://127.0.0.1:9/callback", "c" * 43, "s")
        no_pkce = no_pkce.replace("code_challenge=", "ignored=")
        # Signed out, DOT sends to the login page before it looks at the request.
        assert browser.get(no_pkce, allow_redirects=False, timeout=10).status_code == 302
        login = f"{dot_server.url}/accounts/login/"
        browser.get(login, timeout=10)
        browser.post(
            login,
            data={
                "username": "bob",
                "password": "builder",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Origin": dot_server.url},
            timeout=10,
        )
        response = browser.get(no_pkce, allow_redirects=False, timeout=10)
        assert response.status_code == 302
        assert "error=invalid_request" in response.headers["Location"]
        assert response.headers["Location"].startswith("http://127.0.0.1:9/callback")
        foreign = _authorize_url(dot_server, "http://evil.example/callback", "c" * 43, "s")
        refused = browser.get(foreign, allow_redirects=False, timeout=10)
        assert refused.status_code == 400  # an error page, never a redirect
