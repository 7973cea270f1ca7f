"""Skip a test whose real part is missing on this machine, except in CI, where it must fail."""

from __future__ import annotations

import os

import pytest


def require_or_skip(reason: str) -> None:
    """Skip with ``reason``; fail instead when ``JWT_DESKTOP_REQUIRE_ALL=1`` (CI sets it),
    because CI installs every part and a skip there would hide a broken install step."""
    if os.environ.get("JWT_DESKTOP_REQUIRE_ALL") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
