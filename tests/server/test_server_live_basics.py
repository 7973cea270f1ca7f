"""The live server process: start-up line, discovery, a sign-in round trip, the test clock."""

from __future__ import annotations

import base64
import email.utils
import json
import time

import httpx
import pytest

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
    server.advance_clock(11)  # past 45 s by more than the second exp is rounded up by
    expired = httpx.get(f"{server.url}/userinfo", headers=headers)
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == challenge("The access token expired")


def test_testing_clock_is_off_unless_asked(start_server: StartServer) -> None:
    server = start_server(testing_clock=False)
    response = httpx.post(f"{server.url}/_testing/advance", data={"seconds": "100"})
    assert response.status_code == 404


def _date(response: httpx.Response) -> float:
    (date,) = response.headers.get_list("date")  # exactly one
    return email.utils.parsedate_to_datetime(date).timestamp()


@pytest.mark.parametrize("testing_clock", [True, False])
def test_answers_are_dated_by_the_servers_clock(
    start_server: StartServer, testing_clock: bool
) -> None:
    # A client may read the server's time from its answers (this one does, beside a refused
    # DPoP proof): moved with --testing-clock, as its tokens are, on every kind of answer.
    server = start_server(testing_clock=testing_clock)
    paths = ["/healthz", "/userinfo", "/nope", "/docs"]
    for path in paths:
        assert abs(_date(httpx.get(f"{server.url}{path}")) - time.time()) < 5, path
    if testing_clock:
        server.advance_clock(3600)
        for path in paths:
            assert abs(_date(httpx.get(f"{server.url}{path}")) - (time.time() + 3600)) < 5, path
        token = live_sign_in(server.url)["access_token"]
        iat = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["iat"]
        assert abs(iat - (time.time() + 3600)) < 5  # what the answers' Date says


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
