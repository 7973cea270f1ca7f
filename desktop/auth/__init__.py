"""The client core: pure Python, never imports Qt (a test proves it).

Modules: ``transport`` (the one HTTP policy), ``oauth`` (the protocol as functions),
``grants`` (ways of signing in; ``loopback`` serves the browser's redirect), ``idtoken`` (ID token
checks), ``session`` (``AuthClient``: state and single-flight refresh), ``persistence`` (the
stored-session protocol), ``lock`` (the cross-process lock and its generation marker), ``store``
(the keyring), ``credentials`` and ``dpop`` (what a request carries, the DPoP key and proofs),
``tokens``, ``inspection`` (a token decoded and checked, for display), ``admin`` (the server's
sessions resource), ``errors`` (the one exception tree), ``messages`` (every sentence).
``AuthClient`` and the other ``requests``-backed names are loaded on first use so that importing
this package (for the errors or the sentences) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from desktop.auth.errors import (
    AccessDenied,
    AuthError,
    Cancelled,
    ClientRejected,
    ConfigurationError,
    DPoPRefused,
    InputError,
    InvalidCredentials,
    KeyringUnavailable,
    LockTimeout,
    NotSignedIn,
    OAuthError,
    SecretTooLong,
    ServerError,
    ServerUnreachable,
    SessionEnded,
    StorageError,
    TooManyAttempts,
)
from desktop.auth.messages import Revocation

if TYPE_CHECKING:
    from desktop.auth.grants import PasswordGrant
    from desktop.auth.session import AuthClient, SessionStatus, SignInResult
    from desktop.auth.store import (
        KeyringStore,
        MemoryStore,
        StorageStatus,
        StoredSession,
        TokenStore,
    )

__all__ = [
    "AccessDenied",
    "AuthClient",
    "AuthError",
    "Cancelled",
    "ClientRejected",
    "ConfigurationError",
    "DPoPRefused",
    "InputError",
    "InvalidCredentials",
    "KeyringStore",
    "KeyringUnavailable",
    "LockTimeout",
    "MemoryStore",
    "NotSignedIn",
    "OAuthError",
    "PasswordGrant",
    "Revocation",
    "SecretTooLong",
    "ServerError",
    "ServerUnreachable",
    "SessionEnded",
    "SessionStatus",
    "SignInResult",
    "StorageError",
    "StorageStatus",
    "StoredSession",
    "TokenStore",
    "TooManyAttempts",
]

_LAZY = {
    "AuthClient": "desktop.auth.session",
    "SessionStatus": "desktop.auth.session",
    "SignInResult": "desktop.auth.session",
    "PasswordGrant": "desktop.auth.grants",
    # The store too: the sign-in dialog imports the messages, and must not pay for the store's
    # imports (json, hashlib, socket, the lock) before its first frame.
    "KeyringStore": "desktop.auth.store",
    "MemoryStore": "desktop.auth.store",
    "StorageStatus": "desktop.auth.store",
    "StoredSession": "desktop.auth.store",
    "TokenStore": "desktop.auth.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
