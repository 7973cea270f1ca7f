"""The client core: pure Python, never imports Qt (a test proves it).

``AuthClient`` and ``SessionStatus`` pull in ``requests``; they are loaded on first use so that
importing this package (for the errors or the store) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from desktop.auth.errors import (
    AccessDenied,
    AuthError,
    ConfigurationError,
    InvalidCredentials,
    KeyringUnavailable,
    NotSignedIn,
    OAuthError,
    ServerError,
    ServerUnreachable,
    SessionEnded,
    TooManyAttempts,
)
from desktop.auth.store import KeyringStore, MemoryStore, StorageStatus, TokenStore

if TYPE_CHECKING:
    from desktop.auth.session import AuthClient, SessionStatus

__all__ = [
    "AccessDenied",
    "AuthClient",
    "AuthError",
    "ConfigurationError",
    "InvalidCredentials",
    "KeyringStore",
    "KeyringUnavailable",
    "MemoryStore",
    "NotSignedIn",
    "OAuthError",
    "ServerError",
    "ServerUnreachable",
    "SessionEnded",
    "SessionStatus",
    "StorageStatus",
    "TokenStore",
    "TooManyAttempts",
]


def __getattr__(name: str) -> Any:
    if name in ("AuthClient", "SessionStatus"):
        from desktop.auth import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
