"""The pytest side of ``mock_server.testing`` (loaded through it, only where pytest is).

def test_my_client(jwt_mock_server):
    tokens = jwt_mock_server.sign_in("alice")

@pytest.mark.jwt_mock_server(access_ttl="1m", reuse_grace="30s")
def test_expiry(jwt_mock_server): ...

@pytest.mark.parametrize("jwt_mock_server", [{"access_ttl": 60}], indirect=True)
def test_param(jwt_mock_server): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .testing import MockServer, running_server

MARKER = "jwt_mock_server"


def pytest_configure(config: pytest.Config) -> None:
    # Registered, so suites running with --strict-markers accept it.
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the jwt_mock_server fixture, as for "
        "mock_server.testing.running_server (access_ttl, refresh_ttl, reuse_grace, users, "
        "client_ids, extra_args)",
    )


@pytest.fixture
def jwt_mock_server(request: pytest.FixtureRequest) -> Iterator[MockServer]:
    """A fresh jwt-mock-server process on a free loopback port, for this test.

    ``.url``/``.issuer``, ``.users`` (username -> password), ``.sign_in(username)``,
    ``.refresh(token)``, ``.advance(seconds)`` (the server's clock), ``.revoke_all()``.
    """
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword options only")
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    with running_server(**options) as server:
        yield server
