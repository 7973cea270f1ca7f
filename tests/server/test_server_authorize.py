"""Browser sign-in: the authorization endpoint, its page, and the authorization_code grant."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import ISSUER, OTHER_CLIENT_ID, FakeClock, app_client, bearer
from tests.server.robot import (
    REDIRECT_URI,
    Pkce,
    authorize_url,
    exchange,
    page_form,
    redirect_parameters,
    sign_in_at,
)


def code_for(client: TestClient, pkce: Pkce, **overrides: str | None) -> str:
    response = sign_in_at(client, authorize_url(ISSUER, pkce, **overrides))
    parameters = redirect_parameters(response, overrides.get("redirect_uri") or REDIRECT_URI)
    return parameters["code"]


def assert_error_page(response: Any, status: int = 400) -> None:
    """The person sees an error page; nothing goes to the (unchecked) redirect URI."""
    assert response.status_code == status
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Sign-in error</h1>" in response.text


def test_sign_in_page_is_a_safe_form(client: TestClient) -> None:
    response = client.get(authorize_url(ISSUER), follow_redirects=False)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "<script" not in response.text
    form = page_form(response.text)
    assert (form.action, form.method) == ("/authorize", "post")
    assert {"csrf_token", "username", "password", "state", "code_challenge"} <= set(form.fields)
    assert form.buttons == [("decision", "allow"), ("decision", "deny")]
    assert form.fields["csrf_token"] == response.cookies["jwt_mock_csrf"]
    # The cookie is only for this site's own form posts.
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_code_flow_end_to_end(client: TestClient) -> None:
    pkce = Pkce.new()
    response = sign_in_at(client, authorize_url(ISSUER, pkce, nonce="n-1"))
    parameters = redirect_parameters(response)
    assert parameters["state"] == "state-123"
    assert parameters["iss"] == ISSUER  # RFC 9207
    assert set(parameters) == {"code", "state", "iss"}
    assert len(parameters["code"]) >= 43
    assert response.headers["cache-control"] == "no-store"

    tokens = exchange(client, parameters["code"], pkce.verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "openid profile email groups"
    assert "id_token" in body
    # No offline_access with prompt=consent: no refresh token.
    assert "refresh_token" not in body
    profile = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert profile.json()["preferred_username"] == "alice"


def test_a_code_used_twice_is_refused_and_revokes_what_it_issued(client: TestClient) -> None:
    pkce = Pkce.new()
    code = code_for(client, pkce, scope="openid offline_access", prompt="consent")
    first = exchange(client, code, pkce.verifier).json()
    assert client.get("/userinfo", headers=bearer(first["access_token"])).status_code == 200

    again = exchange(client, code, pkce.verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: what the code issued is revoked, the access and the refresh token.
    assert client.get("/userinfo", headers=bearer(first["access_token"])).status_code == 401
    refreshed = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "jwt-desktop",
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


def test_offline_access_needs_prompt_consent(client: TestClient) -> None:
    pkce = Pkce.new()
    code = code_for(client, pkce, scope="openid offline_access", prompt="consent")
    with_consent = exchange(client, code, pkce.verifier).json()
    assert with_consent["scope"] == "openid offline_access"
    assert with_consent["refresh_token"]

    pkce = Pkce.new()
    code = code_for(client, pkce, scope="openid offline_access")
    without = exchange(client, code, pkce.verifier).json()
    # OIDC Core §11: ignored without prompt=consent.
    assert without["scope"] == "openid"
    assert "refresh_token" not in without


def test_an_expired_code_is_refused(client: TestClient, clock: FakeClock) -> None:
    pkce = Pkce.new()
    code = code_for(client, pkce)
    clock.advance(60)
    response = exchange(client, code, pkce.verifier)
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "The code has expired",
    }


def test_a_code_lives_just_under_a_minute(client: TestClient, clock: FakeClock) -> None:
    pkce = Pkce.new()
    code = code_for(client, pkce)
    clock.advance(59)
    assert exchange(client, code, pkce.verifier).status_code == 200


@pytest.mark.parametrize(
    ("change", "description"),
    [
        ({"verifier": Pkce.new().verifier}, "The code_verifier does not match"),
        ({"verifier": "short"}, "The code_verifier does not match"),
        (
            {"redirect_uri": "http://127.0.0.1:53682/other"},
            "The redirect_uri does not match the code",
        ),
        ({"client_id": OTHER_CLIENT_ID}, "The code was issued to another client"),
    ],
)
def test_a_code_is_bound_to_verifier_redirect_uri_and_client(
    client: TestClient, change: dict[str, str], description: str
) -> None:
    pkce = Pkce.new()
    code = code_for(client, pkce)
    refused = exchange(
        client,
        code,
        change.get("verifier", pkce.verifier),
        redirect_uri=change.get("redirect_uri", REDIRECT_URI),
        client_id=change.get("client_id", "jwt-desktop"),
    )
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": description}
    # A refused try does not spend the code: the rightful client still can.
    assert exchange(client, code, pkce.verifier).status_code == 200


def test_unknown_code_and_missing_parameters(client: TestClient) -> None:
    unknown = exchange(client, "made-up", Pkce.new().verifier)
    assert unknown.json()["error"] == "invalid_grant"
    missing = client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "x", "client_id": "jwt-desktop"},
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        "",
        "https://evil.example/callback",
        "http://evil.example/callback",
        "http://localhost:53682/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://127.0.0.2:53682/callback",
        "http://user@127.0.0.1:53682/callback",
        "http://127.0.0.1:99999/callback",
        "http://127.0.0.1:53682/callback#fragment",
        "https://127.0.0.1:53682/callback",
        "jwt-desktop:/callback",
        "http://127.0.0.1:53682/call back",
        "//127.0.0.1:53682/callback",
    ],
)
def test_a_foreign_redirect_uri_gets_an_error_page_never_a_redirect(
    client: TestClient, redirect_uri: str | None
) -> None:
    response = client.get(authorize_url(ISSUER, redirect_uri=redirect_uri), follow_redirects=False)
    assert_error_page(response)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:65535/",
        "http://127.0.0.1/callback",
        "http://[::1]:53682/callback",
        "http://127.0.0.1:53682/callback?app=1",
    ],
)
def test_loopback_redirect_uris_with_any_port_are_accepted(
    client: TestClient, redirect_uri: str
) -> None:
    pkce = Pkce.new()
    code = code_for(client, pkce, redirect_uri=redirect_uri)
    assert exchange(client, code, pkce.verifier, redirect_uri=redirect_uri).status_code == 200


def test_a_redirect_uri_query_is_kept(client: TestClient) -> None:
    uri = "http://127.0.0.1:53682/callback?app=1"
    response = sign_in_at(client, authorize_url(ISSUER, redirect_uri=uri))
    assert redirect_parameters(response, uri)["app"] == "1"


@pytest.mark.parametrize("client_id", [None, "", "unknown-app"])
def test_an_unknown_client_gets_an_error_page(client: TestClient, client_id: str | None) -> None:
    response = client.get(authorize_url(ISSUER, client_id=client_id), follow_redirects=False)
    assert_error_page(response)


def test_repeated_parameters_get_an_error_page(client: TestClient) -> None:
    url = authorize_url(ISSUER) + "&" + urlencode({"redirect_uri": "http://127.0.0.1:1/x"})
    assert_error_page(client.get(url, follow_redirects=False))


def test_garbage_query_gets_an_error_page(client: TestClient) -> None:
    assert_error_page(client.get("/authorize?%ff%fe=%00", follow_redirects=False))
    assert_error_page(client.get("/authorize", follow_redirects=False))


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # means "plain"
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"prompt": "none"}, "login_required"),
        ({"nonce": "n" * 600}, "invalid_request"),
    ],
)
def test_errors_after_the_redirect_uri_is_checked_go_back_to_the_client(
    client: TestClient, overrides: dict[str, str | None], error: str
) -> None:
    response = client.get(authorize_url(ISSUER, **overrides), follow_redirects=False)
    parameters = redirect_parameters(response)
    assert parameters["error"] == error
    assert parameters["error_description"]
    assert parameters["state"] == "state-123"
    assert parameters["iss"] == ISSUER
    assert "code" not in parameters


def test_deny_sends_access_denied_back(client: TestClient) -> None:
    response = sign_in_at(client, authorize_url(ISSUER), "", "", decision="deny")
    parameters = redirect_parameters(response)
    assert parameters["error"] == "access_denied"
    assert parameters["state"] == "state-123"
    assert parameters["iss"] == ISSUER


def test_without_state_none_is_sent_back(client: TestClient) -> None:
    response = sign_in_at(client, authorize_url(ISSUER, state=None))
    assert "state" not in redirect_parameters(response)


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong"), ("nobody", "wonderland"), ("", ""), ("alice", "")],
)
def test_a_failed_sign_in_shows_the_page_again(
    client: TestClient, username: str, password: str
) -> None:
    response = sign_in_at(client, authorize_url(ISSUER), username, password)
    assert response.status_code == 400
    assert "location" not in response.headers
    form = page_form(response.text)
    assert form.fields["username"] == username  # kept; the password never is
    assert form.fields["password"] == ""
    assert 'value="wrong"' not in response.text


def test_unknown_user_and_wrong_password_get_the_same_page(client: TestClient) -> None:
    url = authorize_url(ISSUER, Pkce.new())
    wrong = sign_in_at(client, url, "alice", "wrong")
    unknown = sign_in_at(client, url, "nobody", "wrong")
    assert wrong.text.replace("alice", "X") == unknown.text.replace("nobody", "X")
    assert "The username or password is incorrect" in wrong.text


def test_the_page_shares_the_token_endpoints_sign_in_limit(clock: FakeClock) -> None:
    with app_client(clock, max_failures_per_user=2) as client:
        for _ in range(2):
            assert sign_in_at(client, authorize_url(ISSUER), "alice", "bad").status_code == 400
        throttled = sign_in_at(client, authorize_url(ISSUER), "alice", "wonderland")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        assert "location" not in throttled.headers
        # One counter: the token endpoint is refused too.
        token = client.post(
            "/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": "wonderland",
                "client_id": "jwt-desktop",
            },
        )
        assert token.status_code == 429


@pytest.mark.parametrize("csrf", ["missing", "wrong", "no-cookie"])
def test_a_post_without_the_pages_csrf_token_is_refused(client: TestClient, csrf: str) -> None:
    page = client.get(authorize_url(ISSUER), follow_redirects=False)
    data = {**page_form(page.text).fields, "username": "alice", "password": "wonderland"}
    data["decision"] = "allow"
    if csrf == "missing":
        del data["csrf_token"]
    elif csrf == "wrong":
        data["csrf_token"] = "A" * 43
    else:
        client.cookies.clear()
    response = client.post("/authorize", data=data, follow_redirects=False)
    assert_error_page(response, 403)


def test_nothing_from_the_request_is_rendered_unescaped(client: TestClient) -> None:
    evil = '"><script>alert(1)</script>'
    url = authorize_url(ISSUER, state=evil, nonce=evil)
    page = client.get(url, follow_redirects=False)
    assert "<script>" not in page.text
    assert page_form(page.text).fields["state"] == evil  # round-trips intact
    failed = sign_in_at(client, url, evil, "wrong")
    assert "<script>" not in failed.text
    assert redirect_parameters(sign_in_at(client, url))["state"] == evil


def test_no_decision_is_not_a_sign_in(client: TestClient) -> None:
    page = client.get(authorize_url(ISSUER), follow_redirects=False)
    data = {**page_form(page.text).fields, "username": "alice", "password": "wonderland"}
    response = client.post("/authorize", data=data, follow_redirects=False)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_a_non_form_post_is_a_4xx(client: TestClient) -> None:
    response = client.post("/authorize", content=b"\xff\x00", follow_redirects=False)
    assert response.status_code == 400
