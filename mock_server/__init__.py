"""jwt-mock-server: the strict OAuth 2.0 / OpenID Connect token server bundled with jwt-desktop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ScryptParams, Settings, parse_duration

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["ScryptParams", "Settings", "create_app", "parse_duration"]


def __getattr__(name: str) -> Any:
    # The app (FastAPI) is imported when asked for: `import mock_server.testing`, the pytest
    # plugin every test run of an installing project loads, stays cheap.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
