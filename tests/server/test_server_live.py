"""Live: real server processes on loopback. Races across threads and processes, restart, logs."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx

from tests.server.helpers import CLIENT_ID, bearer, live_sign_in
from tests.support.server import RunningServer, StartServer

THREADS = 12


def refresh(url: str, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        },
    )


def race(urls: list[str], refresh_token: str) -> list[httpx.Response]:
    """THREADS requests with one refresh token, released together, spread over ``urls``."""
    clients = [httpx.Client(base_url=urls[i % len(urls)], timeout=60) for i in range(THREADS)]
    for c in clients:
        c.get("/healthz")  # connect first, so the requests leave as close together as possible
    barrier = threading.Barrier(THREADS)
    results: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * THREADS

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            results[i] = clients[i].post(
                "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": CLIENT_ID,
                },
            )
        except BaseException as error:
            results[i] = error

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert len(responses) == THREADS, results
    return responses


def assert_exactly_one_winner(responses: list[httpx.Response]) -> dict[str, str]:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (THREADS - 1)
    losers = [r.json() for r in responses if r.status_code == 400]
    assert {body["error"] for body in losers} == {"invalid_grant"}
    return dict(next(r for r in responses if r.status_code == 200).json())


def test_threads_racing_one_refresh_token_exactly_one_wins(live_server: RunningServer) -> None:
    tokens = live_sign_in(live_server.url)
    winner = assert_exactly_one_winner(race([live_server.url], tokens["refresh_token"]))
    # The losers presented a spent token: reuse, so the family is gone, the winner's new
    # token included (a well-behaved client refreshes once at a time).
    assert refresh(live_server.url, winner["refresh_token"]).json()["error"] == "invalid_grant"


def test_two_processes_on_one_database_exactly_one_wins(start_server: StartServer) -> None:
    first = start_server()
    # One service behind two processes: one database, one issuer.
    second = start_server(db=first.db, extra_args=["--issuer", first.url])
    assert first.url != second.url
    tokens = live_sign_in(first.url)
    # Both processes know the session and verify each other's tokens (one key, in the database).
    assert httpx.get(f"{second.url}/userinfo", headers=bearer(tokens["access_token"])).is_success
    winner = assert_exactly_one_winner(race([first.url, second.url], tokens["refresh_token"]))
    assert refresh(second.url, winner["refresh_token"]).json()["error"] == "invalid_grant"

    # Taking turns (no race), a family rotates across both processes without a hitch.
    token = live_sign_in(second.url, "bob", "builder")["refresh_token"]
    for i in range(6):
        response = refresh((first, second)[i % 2].url, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]


def test_restart_keeps_sessions_keys_and_spent_tokens(start_server: StartServer) -> None:
    before = start_server()
    spent_family = live_sign_in(before.url)
    assert refresh(before.url, spent_family["refresh_token"]).status_code == 200
    live_family = live_sign_in(before.url, "bob", "builder")
    jwks = httpx.get(f"{before.url}/.well-known/jwks.json").json()
    port = before.url.rsplit(":", 1)[1]
    before.stop()
    assert not before.running

    # Same database, same port (so the same issuer), as a real restart would be.
    after = start_server(db=before.db, extra_args=["--port", port])
    assert after.url == before.url
    assert httpx.get(f"{after.url}/.well-known/jwks.json").json() == jwks
    old_access = httpx.get(f"{after.url}/userinfo", headers=bearer(live_family["access_token"]))
    assert old_access.status_code == 200
    assert old_access.json()["preferred_username"] == "bob"
    assert refresh(after.url, live_family["refresh_token"]).status_code == 200
    assert refresh(after.url, live_family["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(after.url, spent_family["refresh_token"]).json()["error"] == "invalid_grant"


def test_memory_database_runs(start_server: StartServer) -> None:
    server = start_server(db=Path(":memory:"))
    tokens = live_sign_in(server.url)
    assert httpx.get(f"{server.url}/userinfo", headers=bearer(tokens["access_token"])).is_success


def test_live_refresh_token_expires_with_the_moved_clock(start_server: StartServer) -> None:
    server = start_server(refresh_ttl="1h", access_ttl="15m")
    tokens = live_sign_in(server.url)
    # The live clock also runs on its own, so the steps leave it room.
    server.advance_clock(3590)
    tokens = refresh(server.url, tokens["refresh_token"]).json()
    assert 0 < tokens["expires_in"] <= 10  # cut to the end of the sign-in, not 15 minutes
    server.advance_clock(10)
    expired = refresh(server.url, tokens["refresh_token"])
    assert expired.status_code == 400
    assert expired.json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token has expired",
    }


def test_no_secret_ever_reaches_the_log(live_server: RunningServer) -> None:
    url = live_server.url
    secrets: list[str] = ["wonderland", "wrong-password-42"]
    tokens = live_sign_in(url)
    secrets += [tokens["access_token"], tokens["refresh_token"]]
    httpx.post(
        f"{url}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "wrong-password-42",
            "client_id": CLIENT_ID,
        },
    )
    rotated = refresh(url, tokens["refresh_token"]).json()
    secrets += [rotated["access_token"], rotated["refresh_token"]]
    refresh(url, tokens["refresh_token"])  # reuse
    httpx.get(f"{url}/userinfo", headers=bearer(rotated["access_token"]))
    # Clients that wrongly put secrets in the URL: the access log drops query strings.
    httpx.get(f"{url}/userinfo", params={"access_token": rotated["access_token"]})
    httpx.post(
        f"{url}/token", params={"password": "wonderland", "refresh_token": rotated["refresh_token"]}
    )
    httpx.post(f"{url}/revoke", data={"token": rotated["refresh_token"], "client_id": CLIENT_ID})
    httpx.post(
        f"{url}/token",
        content=b"password=\xff" + b"x" * 20000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    live_server.stop()
    log = live_server.output()
    assert "POST /token" in log and "GET /userinfo" in log  # the log is there, and read
    for secret in secrets:
        for piece in _pieces(secret):
            assert piece not in log


def _pieces(secret: str) -> list[str]:
    # A token's parts too (a JWT's signature alone is as good as the whole for a thief).
    parts = [p for p in secret.split(".") if len(p) >= 8]
    return [secret, *parts]


def test_live_answers_are_json(live_server: RunningServer) -> None:
    for path in ("/healthz", "/.well-known/openid-configuration", "/.well-known/jwks.json"):
        response = httpx.get(f"{live_server.url}{path}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"


UNPARSEABLE = [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nBad Header Line\r\n\r\n",
    b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


def test_unparseable_http_gets_a_json_400(live_server: RunningServer) -> None:
    host, port = live_server.url.removeprefix("http://").rsplit(":", 1)
    for raw in UNPARSEABLE:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), raw
        assert b"content-type: application/json" in head.lower()
        assert json.loads(body)["error"] == "invalid_request"
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200  # still serving


def test_a_client_hanging_up_mid_body_logs_no_error(live_server: RunningServer) -> None:
    host, port = live_server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        # "Expect: 100-continue" makes the server say when the app starts reading the body:
        # the hang-up below then surely lands in the middle of that read.
        connection.sendall(
            b"POST /revoke HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
        )
        assert connection.recv(100).startswith(b"HTTP/1.1 100 ")
        connection.sendall(b"token=abc")
    # The handling is over once the server has shut down gracefully: its log is complete.
    live_server.stop()
    output = live_server.output()
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    assert "ERROR" not in output
    assert " 500 " not in output
