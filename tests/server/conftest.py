"""Fixtures of the server tests: a movable clock and the app in process (httpx TestClient)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import FakeClock, app_client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> Iterator[TestClient]:
    with app_client(clock) as test_client:
        yield test_client
