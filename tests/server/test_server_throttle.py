"""Failed sign-ins are limited per user and per client address; unknown users look the same."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import mock_server.app
from mock_server import ScryptParams
from mock_server.passwords import parse_hash
from tests.server.helpers import FakeClock, app_client, password_grant


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


def test_an_unknown_user_costs_one_full_hash_check(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[ScryptParams] = []
    real = mock_server.app.verify_password

    def spy(password: str, encoded: str) -> bool:
        checked.append(parse_hash(encoded)[0])
        return real(password, encoded)

    monkeypatch.setattr(mock_server.app, "verify_password", spy)
    with app_client(clock) as client:
        password_grant(client, "alice", "wrong")
        password_grant(client, "nobody", "wrong")
    settings_cost = client.app.state.server.settings.password_cost  # type: ignore[attr-defined]
    assert checked == [settings_cost, settings_cost]
