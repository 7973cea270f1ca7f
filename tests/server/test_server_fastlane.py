"""The fast lane (mock_server/fastlane.py) in process: it really answers its routes, and it
sits inside the guard, so the Host and Origin checks hold for them as for every other route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mock_server import create_app
from mock_server.asgi import build_core
from mock_server.http import GuardMiddleware
from tests.server.helpers import (
    CLIENT_ID,
    ISSUER,
    FakeClock,
    _memory_store,
    bearer,
    sign_in,
)
from tests.server.helpers import test_settings as settings_for

LANE = [
    ("GET", "/healthz"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/userinfo"),
    ("POST", "/userinfo"),
    ("POST", "/token"),
    ("POST", "/revoke"),
]
GOOD = {"grant_type": "password", "username": "alice", "password": "wonderland"}


@pytest.fixture
def laned(clock: FakeClock) -> Iterator[TestClient]:
    """An app whose FastAPI routes for the lane's paths are gone: only the lane can answer."""
    settings = settings_for()
    app = create_app(settings, clock=clock, store=_memory_store())
    lane_paths = {path for _, path in LANE}
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if not (isinstance(route, APIRoute) and route.path in lane_paths)
    ]
    with TestClient(app, base_url=ISSUER) as client:
        yield client


def test_the_lane_answers_its_routes_without_fastapis_router(laned: TestClient) -> None:
    assert laned.get("/.well-known/openid-configuration").json()["issuer"] == ISSUER
    tokens = sign_in(laned)
    for method in ("GET", "POST"):
        response = laned.request(method, "/userinfo", headers=bearer(tokens["access_token"]))
        assert response.status_code == 200, response.text
        assert response.json()["preferred_username"] == "alice"
    # Not in the lane: the removed route really is gone.
    assert laned.head("/userinfo").status_code != 200


@pytest.mark.parametrize(("method", "path"), LANE)
def test_a_foreign_host_is_misdirected_on_the_lane(
    laned: TestClient, method: str, path: str
) -> None:
    data = {**GOOD, "client_id": CLIENT_ID} if method == "POST" else None
    response = laned.request(method, path, data=data, headers={"Host": "evil.example"})
    assert response.status_code == 421, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(("method", "path"), LANE)
def test_a_foreign_origin_is_refused_on_the_lane(laned: TestClient, method: str, path: str) -> None:
    data = {**GOOD, "client_id": CLIENT_ID} if method == "POST" else None
    response = laned.request(method, path, data=data, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "invalid_request"


def test_the_lane_keeps_the_token_routes_checks(laned: TestClient) -> None:
    # The route's dependency refuses client credentials before reading the form.
    response = laned.post(
        "/token",
        data={**GOOD, "client_id": CLIENT_ID},
        headers={"Authorization": "Basic and0LWRlc2t0b3A6eA=="},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_the_guard_is_outside_the_lane(clock: FakeClock) -> None:
    app = create_app(settings_for(), clock=clock, store=_memory_store())
    # Starlette runs the last added middleware first.
    assert app.user_middleware[0].cls is GuardMiddleware


def test_these_tests_cover_the_whole_lane(clock: FakeClock) -> None:
    # The list above is the lane (the hidden testing routes aside), so a route added to it is
    # tried with a foreign Host and Origin here too.
    core = build_core(settings_for(testing_clock=False), clock, store=_memory_store())
    assert sorted(core.lane) == sorted(LANE)
