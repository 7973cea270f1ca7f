"""The live server process: start-up line, discovery, a sign-in round trip, the test clock."""

from __future__ import annotations

import httpx

from tests.server.helpers import CLIENT_ID, challenge, live_sign_in
from tests.support.server import RunningServer, StartServer


def test_listening_line_names_the_bound_port_and_issuer(live_server: RunningServer) -> None:
    assert live_server.url.startswith("http://127.0.0.1:")
    assert not live_server.url.endswith(":0")
    discovery = httpx.get(f"{live_server.url}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == live_server.url
    assert discovery["token_endpoint"] == f"{live_server.url}/token"
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}


def test_testing_clock_expires_access_tokens(start_server: StartServer) -> None:
    server = start_server(access_ttl="45s")
    tokens = live_sign_in(server.url)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(f"{server.url}/userinfo", headers=headers).status_code == 200
    # The live clock also runs on its own, so the steps leave it room.
    server.advance_clock(35)
    assert httpx.get(f"{server.url}/userinfo", headers=headers).status_code == 200
    server.advance_clock(10)
    expired = httpx.get(f"{server.url}/userinfo", headers=headers)
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == challenge("The access token expired")


def test_testing_clock_is_off_unless_asked(start_server: StartServer) -> None:
    server = start_server(testing_clock=False)
    response = httpx.post(f"{server.url}/_testing/advance", data={"seconds": "100"})
    assert response.status_code == 404


def test_x_forwarded_for_does_not_dodge_the_address_limit(live_server: RunningServer) -> None:
    statuses = []
    for i in range(21):
        response = httpx.post(
            f"{live_server.url}/token",
            # A different made-up user each time: only the per-address limit (20) can trip.
            data={
                "grant_type": "password",
                "username": f"spray{i}",
                "password": "Winter2026!",
                "client_id": CLIENT_ID,
            },
            headers={"X-Forwarded-For": f"10.0.0.{i + 1}", "Forwarded": f"for=10.0.1.{i + 1}"},
        )
        statuses.append(response.status_code)
    assert statuses == [400] * 20 + [429]
