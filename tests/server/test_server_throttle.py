"""Failed sign-ins are limited per user and per client address; unknown users look the same."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

import mock_server.server
from mock_server import ScryptParams
from mock_server.passwords import DEMO_COST, User, hash_password, parse_hash, subject_for
from mock_server.throttle import FailureLimiter
from tests.server.helpers import FAST_HASH, FakeClock, app_client, password_grant


def fail(client: TestClient, username: str = "alice", times: int = 1) -> None:
    for _ in range(times):
        assert password_grant(client, username, "wrong").status_code == 400


def test_too_many_failures_for_a_user_answer_429(client: TestClient, clock: FakeClock) -> None:
    fail(client, "alice", 5)
    # Even the right password is refused until the window lets a try through.
    throttled = password_grant(client, "alice", "wonderland")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "300"
    assert throttled.headers["Cache-Control"] == "no-store"
    assert throttled.json()["error"] == "too_many_requests"
    assert "300 seconds" in throttled.json()["error_description"]
    clock.advance(299)
    again = password_grant(client, "alice", "wonderland")
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "1"
    clock.advance(1)
    assert password_grant(client, "alice", "wonderland").status_code == 200


def test_the_limit_is_per_user(client: TestClient) -> None:
    fail(client, "alice", 5)
    assert password_grant(client, "alice", "wonderland").status_code == 429
    assert password_grant(client, "bob", "builder").status_code == 200


def test_username_case_does_not_dodge_the_limit(client: TestClient) -> None:
    fail(client, "alice", 3)
    fail(client, "ALICE", 2)
    assert password_grant(client, "alice", "wonderland").status_code == 429


def test_a_success_resets_the_users_count(client: TestClient) -> None:
    fail(client, "alice", 4)
    assert password_grant(client, "alice", "wonderland").status_code == 200
    fail(client, "alice", 4)
    assert password_grant(client, "alice", "wonderland").status_code == 200


def test_unknown_users_are_limited_like_known_ones(client: TestClient) -> None:
    fail(client, "mallory", 5)
    response = password_grant(client, "mallory", "wrong")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "300"


def test_the_limit_is_per_client_address(clock: FakeClock) -> None:
    with app_client(clock, client=("192.0.2.1", 4000)) as attacker:
        # 20 failures spread over many names, none reaching the per-user limit.
        for i in range(20):
            fail(attacker, f"user{i}")
        blocked = password_grant(attacker, "bob", "builder")
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) == 300
        neighbour = TestClient(
            attacker.app, base_url=str(attacker.base_url), client=("192.0.2.2", 4000)
        )
        assert password_grant(neighbour, "bob", "builder").status_code == 200


def test_unknown_user_and_wrong_password_get_the_same_answer(client: TestClient) -> None:
    wrong = password_grant(client, "alice", "wrong")
    unknown = password_grant(client, "nobody", "wrong")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.content == unknown.content
    skip = {"date"}
    assert {k: v for k, v in wrong.headers.items() if k not in skip} == {
        k: v for k, v in unknown.headers.items() if k not in skip
    }


# The users file's costly hash (OWASP's, as add-user makes) and the demo users' cheap one.
FILE_COST = ScryptParams(log2_n=11, r=8, p=1)


def _file_users() -> dict[str, User]:
    carol = User("carol", hash_password("pw", FILE_COST), subject_for("carol"), "Carol")
    dave = User("dave", hash_password("pw", FAST_HASH), subject_for("dave"), "Dave")
    return {u.username: u for u in (carol, dave)}


@pytest.mark.parametrize(
    ("users", "known", "cost"),
    [(None, "alice", DEMO_COST), (_file_users(), "carol", FILE_COST)],
    ids=["demo users", "users file"],
)
def test_an_unknown_user_costs_what_a_real_check_costs(
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    users: dict[str, User] | None,
    known: str,
    cost: ScryptParams,
) -> None:
    # Timing parity in both set-ups: the dummy hash has the costliest real hash's parameters,
    # so "no such user" and "wrong password" run the same scrypt.
    checked: list[ScryptParams] = []
    real = mock_server.server.verify_password

    def spy(password: str, encoded: str) -> bool:
        checked.append(parse_hash(encoded)[0])
        return real(password, encoded)

    monkeypatch.setattr(mock_server.server, "verify_password", spy)
    with app_client(clock, users=users) as client:
        password_grant(client, known, "wrong")
        password_grant(client, "nobody", "wrong")
    assert checked == [cost, cost]


def test_tries_in_flight_count_against_the_limit(clock: FakeClock) -> None:
    limiter = FailureLimiter(clock, limit=3, window=300)
    assert [limiter.begin("k") for _ in range(3)] == [None, None, None]
    # Three tries are being checked: a fourth must wait as if they all fail now.
    assert limiter.begin("k") == 300
    limiter.finish("k", failed=False)  # one succeeded: its slot is free again
    assert limiter.begin("k") is None
    for _ in range(3):
        limiter.finish("k", failed=True)
    clock.advance(100)
    assert limiter.begin("k") == 200
    assert limiter.begin("other") is None


def test_concurrent_wrong_passwords_cannot_pass_the_limit(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 5
    entered = 0
    changed = threading.Condition()
    release = threading.Event()
    real = mock_server.server.verify_password

    def held_check(password: str, encoded: str) -> bool:
        nonlocal entered
        with changed:
            entered += 1
            mine = entered
            changed.notify_all()
        if mine <= limit:
            # The first checks stay in flight until the test lets them finish.
            assert release.wait(30)
        return real(password, encoded)

    monkeypatch.setattr(mock_server.server, "verify_password", held_check)
    with app_client(clock) as client, ThreadPoolExecutor(limit) as pool:
        guesses = [pool.submit(password_grant, client, "alice", f"wrong{i}") for i in range(limit)]
        try:
            with changed:
                assert changed.wait_for(lambda: entered == limit, timeout=30)
            # Five guesses are being checked and none has failed yet: the next ones wait.
            extra = password_grant(client, "alice", "another-guess")
            right = password_grant(client, "alice", "wonderland")
        finally:
            release.set()
        statuses = [guess.result(timeout=30).status_code for guess in guesses]
    assert (extra.status_code, extra.headers.get("Retry-After")) == (429, "300")
    assert right.status_code == 429
    assert statuses == [400] * limit
    assert entered == limit  # the refused tries never reached the password check
    assert password_grant(client, "alice", "wonderland").status_code == 429


def test_the_user_slot_is_given_back_when_the_address_refuses(clock: FakeClock) -> None:
    with app_client(clock, client=("192.0.2.1", 4000), max_failures_per_address=2) as attacker:
        fail(attacker, "someone")
        fail(attacker, "someone-else")
        for _ in range(7):  # more than the per-user limit
            assert password_grant(attacker, "alice", "wonderland").status_code == 429
        neighbour = TestClient(
            attacker.app, base_url=str(attacker.base_url), client=("192.0.2.2", 4000)
        )
        assert password_grant(neighbour, "alice", "wonderland").status_code == 200


def test_the_address_slot_is_given_back_when_the_user_refuses(clock: FakeClock) -> None:
    with app_client(clock, client=("192.0.2.1", 4000)) as client:
        fail(client, "alice", 5)
        for _ in range(20):  # the per-address limit, had these slots been kept
            assert password_grant(client, "alice", "wonderland").status_code == 429
        assert password_grant(client, "bob", "builder").status_code == 200
