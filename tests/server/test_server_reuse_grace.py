"""The reuse grace (``--reuse-grace``) for a lost refresh answer, against live server processes.

Within the window after a rotation the token just spent may be presented again, by its own
client: it gets a new pair, and the token of the lost answer is spent, so a family never holds
two live refresh tokens. Later, or for an older token, reuse revokes the family as strict
rotation does. Time moves with the server's testing clock, never with sleep.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from typing import Any

import httpx
import pytest
import requests

from tests.server.helpers import CLIENT_ID, OTHER_CLIENT_ID, bearer, live_sign_in
from tests.support.dropping_proxy import DroppingProxy, is_refresh_grant
from tests.support.server import RunningServer, StartServer

GRACE = ["--reuse-grace", "30s", "--client-id", CLIENT_ID, "--client-id", OTHER_CLIENT_ID]


def refresh(url: str, token: str, client_id: str = CLIENT_ID) -> httpx.Response:
    return httpx.post(
        f"{url}/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
    )


def rotated(url: str, token: str) -> dict[str, Any]:
    response = refresh(url, token)
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


def signed_in(url: str, access_token: str) -> bool:
    return httpx.get(f"{url}/userinfo", headers=bearer(access_token)).status_code == 200


@pytest.fixture
def graceful(start_server: StartServer) -> RunningServer:
    return start_server(extra_args=GRACE)


def test_within_the_window_the_previous_token_gets_a_new_pair_and_the_lost_one_dies(
    graceful: RunningServer,
) -> None:
    first = live_sign_in(graceful.url)
    lost = rotated(graceful.url, first["refresh_token"])  # its answer "never arrived"
    graceful.advance_clock(20)  # within the 30 s, with a margin for a slow machine
    retried = rotated(graceful.url, first["refresh_token"])
    assert retried["refresh_token"] not in (lost["refresh_token"], first["refresh_token"])
    assert signed_in(graceful.url, retried["access_token"])
    # The retry's pair is the live one; the lost answer's token is spent, and presenting it
    # is a reuse like any other.
    assert rotated(graceful.url, retried["refresh_token"])["refresh_token"]
    assert_invalid_grant(refresh(graceful.url, lost["refresh_token"]))
    assert not signed_in(graceful.url, retried["access_token"])


def test_a_retry_of_the_retry_within_the_window_works_too(graceful: RunningServer) -> None:
    first = live_sign_in(graceful.url)
    rotated(graceful.url, first["refresh_token"])
    second_try = rotated(graceful.url, first["refresh_token"])
    graceful.advance_clock(10)
    third_try = rotated(graceful.url, first["refresh_token"])
    assert_invalid_grant(refresh(graceful.url, second_try["refresh_token"]))
    assert not signed_in(graceful.url, third_try["access_token"])


def test_after_the_window_the_previous_token_revokes_the_family(graceful: RunningServer) -> None:
    first = live_sign_in(graceful.url)
    live = rotated(graceful.url, first["refresh_token"])
    graceful.advance_clock(31)
    assert_invalid_grant(refresh(graceful.url, first["refresh_token"]))
    assert_invalid_grant(refresh(graceful.url, live["refresh_token"]))
    assert not signed_in(graceful.url, live["access_token"])


def test_the_token_before_the_previous_revokes_the_family(graceful: RunningServer) -> None:
    first = live_sign_in(graceful.url)
    second = rotated(graceful.url, first["refresh_token"])
    third = rotated(graceful.url, second["refresh_token"])
    response = refresh(graceful.url, first["refresh_token"])
    assert_invalid_grant(response)
    assert "already used" in response.json()["error_description"]
    assert_invalid_grant(refresh(graceful.url, third["refresh_token"]))


def test_another_client_cannot_use_the_grace(graceful: RunningServer) -> None:
    first = live_sign_in(graceful.url)
    live = rotated(graceful.url, first["refresh_token"])
    response = refresh(graceful.url, first["refresh_token"], client_id=OTHER_CLIENT_ID)
    assert_invalid_grant(response)
    assert "another client" in response.json()["error_description"]
    # Refused, and nothing was issued: the family's one live token is still the same.
    assert rotated(graceful.url, live["refresh_token"])


def test_concurrent_retries_within_the_window_leave_one_live_token(
    graceful: RunningServer,
) -> None:
    first = live_sign_in(graceful.url)
    rotated(graceful.url, first["refresh_token"])
    barrier = threading.Barrier(6)
    answers: list[dict[str, Any]] = []

    def retry() -> None:
        barrier.wait()
        answers.append(rotated(graceful.url, first["refresh_token"]))

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 6
    # Each retry spent the token of the one before it: one live refresh token in the family.
    with closing(sqlite3.connect(graceful.db)) as db:
        (live,) = db.execute("SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL").fetchone()
    assert live == 1


def test_strict_by_default_reuse_revokes_at_once(live_server: RunningServer) -> None:
    first = live_sign_in(live_server.url)
    live = rotated(live_server.url, first["refresh_token"])
    assert_invalid_grant(refresh(live_server.url, first["refresh_token"]))
    assert not signed_in(live_server.url, live["access_token"])


# A lost answer, for real: a proxy forwards the refresh and drops the answer.


def refresh_through(proxy: DroppingProxy, token: str) -> requests.Response:
    return requests.post(
        f"{proxy.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID},
        timeout=30,
    )


@pytest.mark.parametrize("grace", [False, True], ids=["strict", "grace"])
def test_a_refresh_whose_answer_was_lost(start_server: StartServer, grace: bool) -> None:
    server = start_server(extra_args=GRACE if grace else [])
    tokens = live_sign_in(server.url)
    with DroppingProxy(server.url) as proxy:
        proxy.drop_answer(is_refresh_grant)
        with pytest.raises(requests.ConnectionError):
            refresh_through(proxy, tokens["refresh_token"])
        assert [d.status for d in proxy.dropped] == [200]  # the server did rotate
        retry = refresh_through(proxy, tokens["refresh_token"])
    if grace:
        assert retry.status_code == 200, retry.text
        assert signed_in(server.url, retry.json()["access_token"])
    else:
        assert retry.status_code == 400
        assert retry.json()["error"] == "invalid_grant"
        assert not signed_in(server.url, tokens["access_token"])  # the family is revoked


def test_the_proxy_forwards_answers_it_is_not_told_to_drop(live_server: RunningServer) -> None:
    tokens = live_sign_in(live_server.url)
    with DroppingProxy(live_server.url) as proxy:
        proxy.drop_answer(is_refresh_grant, after=1)
        first = refresh_through(proxy, tokens["refresh_token"])
        assert first.status_code == 200
        assert requests.get(f"{proxy.url}/healthz", timeout=30).json() == {"status": "ok"}
        with pytest.raises(requests.ConnectionError):
            refresh_through(proxy, first.json()["refresh_token"])
    assert proxy.forwarded == 2
    assert [(d.method, d.path, d.status) for d in proxy.dropped] == [("POST", "/token", 200)]
    # Closed means stopped: its accepting thread ended (it once sat out its whole timeout).
    assert not proxy._thread.is_alive()
