"""Helpers for the server tests: a movable clock, an in-process app, token calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mock_server import ScryptParams, Settings, create_app
from mock_server.asgi import create_asgi_app
from mock_server.keys import new_key_record
from mock_server.passwords import User
from mock_server.settings import MEMORY_DB
from mock_server.store import KeyRecord, SqliteStore

CLIENT_ID = "jwt-desktop"
OTHER_CLIENT_ID = "other-app"
ISSUER = "http://testserver"
FAST_HASH = ScryptParams(log2_n=10, r=8, p=1)
# Everything the server offers; the default scope leaves out groups and sessions:admin.
ALL_SCOPES = "openid profile email groups sessions:admin"


class FakeClock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_settings(**overrides: Any) -> Settings:
    base = Settings(
        issuer=ISSUER,
        clients=(CLIENT_ID, OTHER_CLIENT_ID),
        password_cost=FAST_HASH,
    )
    return dataclasses.replace(base, **overrides)


_shared_key: list[KeyRecord] = []


def _memory_store() -> SqliteStore:
    """A throwaway store holding one RSA key made once per test run: making a 2048-bit key for
    every in-process app would dominate the run. Key making itself is tested with file stores
    and the live server."""
    if not _shared_key:
        _shared_key.append(new_key_record(0.0))
    store = SqliteStore(MEMORY_DB, issuer=ISSUER)
    store.add_signing_key(_shared_key[0], retire_current=False)
    return store


# The two ways the app is assembled: create_app (one FastAPI app, its checks as middleware)
# and what the CLI serves (asgi.py: the checks and the fast lane first, FastAPI built later).
APP_FACTORIES: dict[str, Callable[..., Any]] = {"fastapi": create_app, "cli": create_asgi_app}


@contextmanager
def app_client(
    clock: FakeClock,
    *,
    users: Mapping[str, User] | None = None,
    client: tuple[str, int] = ("testclient", 50000),
    factory: Callable[..., Any] = create_app,
    **overrides: Any,
) -> Iterator[TestClient]:
    settings = test_settings(**overrides)
    store = _memory_store() if settings.db_path == MEMORY_DB else None
    app = factory(settings, clock=clock, users=users, store=store)
    # The issuer's own host name: the server serves no other (421).
    with TestClient(app, base_url=settings.issuer, client=client) as test_client:
        yield test_client


def password_grant(
    client: Any,
    username: str = "alice",
    password: str = "wonderland",
    *,
    client_id: str = CLIENT_ID,
    scope: str | None = None,
) -> Any:
    data = {
        "grant_type": "password",
        "username": username,
        "password": password,
        "client_id": client_id,
    }
    if scope is not None:
        data["scope"] = scope
    return client.post("/token", data=data)


def refresh_grant(
    client: Any,
    refresh_token: str,
    *,
    client_id: str = CLIENT_ID,
    scope: str | None = None,
) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if scope is not None:
        data["scope"] = scope
    return client.post("/token", data=data)


def sign_in(client: Any, username: str = "alice", scope: str | None = None) -> dict[str, Any]:
    password = {"alice": "wonderland", "bob": "builder"}[username]
    response = password_grant(client, username, password, scope=scope)
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# The DPoP challenge (RFC 9449 §7.1) that rides beside Bearer's in the default "allowed" mode.
DPOP_CHALLENGE = 'DPoP algs="ES256 ES384 ES512 PS256 RS256 EdDSA"'
# No credentials: both schemes, Bearer first, no error (RFC 6750 §3.1).
BARE_CHALLENGE = f"Bearer, {DPOP_CHALLENGE}"


def challenge(description: str, error: str = "invalid_token") -> str:
    """The answer to a Bearer request refused with ``error``, in the default "allowed" mode."""
    return f'Bearer error="{error}", error_description="{description}", {DPOP_CHALLENGE}'


def live_sign_in(url: str, username: str = "alice", password: str = "wonderland") -> dict[str, str]:
    """Password grant against a live server process (real HTTP)."""
    response = httpx.post(
        f"{url}/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": CLIENT_ID,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(name="client", params=sorted(APP_FACTORIES))
def client_of_each_app(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[TestClient]:
    """``client`` for a module that imports this: the tests run against both assemblies, whose
    checks must answer alike (a limit or guard that one of them misses is a defect)."""
    with app_client(clock, factory=APP_FACTORIES[request.param]) as test_client:
        yield test_client
