"""Browser and device sign-in against the live server process: real HTTP on loopback, a
third-party client (Authlib) for the code flow, and state that outlives a restart and is shared
by two processes on one database."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from tests.server.robot import (
    REDIRECT_URI,
    Pkce,
    approve,
    authorize_url,
    exchange,
    poll,
    redirect_parameters,
    sign_in_at,
    start,
)
from tests.support.server import RunningServer, StartServer


@pytest.fixture
def browser(live_server: RunningServer) -> Iterator[httpx.Client]:
    """A browser at the live server: it keeps cookies and follows no redirect by itself."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def test_authlib_signs_in_with_the_code_flow(
    live_server: RunningServer, browser: httpx.Client
) -> None:
    metadata = browser.get("/.well-known/oauth-authorization-server").json()
    with OAuth2Session(
        client_id="jwt-desktop",
        token_endpoint_auth_method="none",
        redirect_uri=REDIRECT_URI,
        scope="openid profile offline_access",
        code_challenge_method="S256",
    ) as session:
        verifier = generate_token(48)
        url, state = session.create_authorization_url(
            metadata["authorization_endpoint"],
            code_verifier=verifier,
            nonce="n-0",
            prompt="consent",
        )
        redirected = sign_in_at(browser, url)
        parameters = redirect_parameters(redirected)
        assert parameters["state"] == state
        assert parameters["iss"] == metadata["issuer"]
        token = session.fetch_token(
            metadata["token_endpoint"],
            authorization_response=redirected.headers["location"],
            code_verifier=verifier,
        )
        assert token["id_token"]
        assert token["refresh_token"]
        profile = session.get(metadata["userinfo_endpoint"]).json()
        assert profile["preferred_username"] == "alice"
        refreshed = session.refresh_token(metadata["token_endpoint"])
        assert refreshed["refresh_token"] != token["refresh_token"]

    # The access log shows no query string: no code, state or challenge, and no password.
    logs = live_server.output()
    assert "GET /authorize" in logs
    for secret in (parameters["code"], state, verifier, "wonderland", token["id_token"]):
        assert secret not in logs


def test_device_flow_live(live_server: RunningServer, browser: httpx.Client) -> None:
    grant = start(browser)
    assert poll(browser, grant["device_code"]).json()["error"] == "authorization_pending"
    live_server.advance_clock(5)
    page = approve(browser, grant["user_code"])
    assert page.status_code == 200
    assert poll(browser, grant["device_code"]).status_code == 200
    other = start(browser)
    live_server.advance_clock(600)
    assert poll(browser, other["device_code"]).json()["error"] == "expired_token"


def test_codes_outlive_a_restart_and_are_shared_by_processes(start_server: StartServer) -> None:
    # One issuer for all three: codes (like sessions) belong to the issuer that made them, and
    # with --port 0 each process would otherwise be an issuer of its own.
    issuer = ["--issuer", "http://127.0.0.1:1"]
    first = start_server(extra_args=issuer)
    with httpx.Client(base_url=first.url, timeout=30) as browser:
        pkce = Pkce.new()
        code = redirect_parameters(sign_in_at(browser, authorize_url(first.url, pkce)))["code"]
        grant = start(browser)
    first.stop()

    # The restarted server, and a second process on the same database, know both codes.
    second = start_server(db=first.db, extra_args=issuer)
    third = start_server(db=first.db, extra_args=issuer)
    with (
        httpx.Client(base_url=second.url, timeout=30) as at_second,
        httpx.Client(base_url=third.url, timeout=30) as at_third,
    ):
        tokens = exchange(at_second, code, pkce.verifier)
        assert tokens.status_code == 200, tokens.text
        access = tokens.json()["access_token"]
        # Replayed at the other process: refused, and what it issued revoked everywhere.
        replay = exchange(at_third, code, pkce.verifier)
        assert replay.json()["error"] == "invalid_grant"
        bearer = {"Authorization": f"Bearer {access}"}
        assert at_second.get("/userinfo", headers=bearer).status_code == 401

        # Approved through one process, redeemed through the other, once.
        assert approve(at_third, grant["user_code"]).status_code == 200
        assert poll(at_second, grant["device_code"]).status_code == 200
        assert poll(at_third, grant["device_code"]).json()["error"] == "invalid_grant"


def test_concurrent_redemptions_of_one_code_give_one_token_set(
    live_server: RunningServer, browser: httpx.Client
) -> None:
    pkce = Pkce.new()
    code = redirect_parameters(sign_in_at(browser, authorize_url(live_server.url, pkce)))["code"]

    def redeem(_: int) -> int:
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            return exchange(client, code, pkce.verifier).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(redeem, range(8)))
    assert statuses == [200] + [400] * 7
