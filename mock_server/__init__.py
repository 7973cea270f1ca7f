"""jwt-mock-server: the strict OAuth 2.0 / OpenID Connect token server bundled with jwt-desktop."""

from __future__ import annotations

from .app import create_app
from .settings import ScryptParams, Settings, parse_duration

__all__ = ["ScryptParams", "Settings", "create_app", "parse_duration"]
