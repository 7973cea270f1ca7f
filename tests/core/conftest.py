"""Fixtures of the client-core tests: isolated config/state dirs, fake clocks and fake servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.fakes import FakeClock, FakeOIDCServer, SilentServer


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Config and state dirs in tmp: no test ever touches the real home."""
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    monkeypatch.setenv("JWT_DESKTOP_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("JWT_DESKTOP_DATA_DIR", str(data_dir))
    return {"config": config_dir, "data": data_dir}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_server() -> Iterator[FakeOIDCServer]:
    server = FakeOIDCServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()
