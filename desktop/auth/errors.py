"""The one exception tree of the client core.

Every error the core raises is an :class:`AuthError`; ``str(error)`` is a sentence a person can
read, and never contains a token, a password or a traceback. Third-party errors (``requests``,
``keyring``, ``jwt``) are translated where they enter the core, so callers (the GUI, the CLI)
only ever catch these::

    AuthError                       root: str(e) is a sentence for a person
     ├── ConfigurationError         bad server URL, http:// to a non-loopback host, bad discovery
     ├── ServerUnreachable          connection refused, DNS failure, timeout (keeps the session)
     ├── ServerError                5xx, or an answer that is not what the standard says
     │                              (HTML instead of JSON, missing fields) (keeps the session)
     ├── OAuthError                 the server answered with an OAuth error (error, description)
     │    ├── InvalidCredentials    wrong username or password
     │    ├── TooManyAttempts       throttled; ``retry_after`` seconds, when the server said
     │    ├── AccessDenied          403: the person's groups do not allow the resource
     │    └── SessionEnded          the refresh token expired, was revoked or reused: the stored
     │                              token is gone and the person must sign in again
     ├── NotSignedIn                no session to use
     └── KeyringUnavailable         the OS keyring is missing, locked or hanging
"""

from __future__ import annotations


class AuthError(Exception):
    """Root of the core's errors. ``str(error)`` is a sentence a person can read."""


class ConfigurationError(AuthError):
    """The configuration cannot work: bad URL, insecure transport, bad discovery document."""


class ServerUnreachable(AuthError):
    """The server could not be reached (refused, DNS, timeout). The session is kept."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ServerError(AuthError):
    """The server failed (5xx) or answered something that is not valid. The session is kept."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OAuthError(AuthError):
    """The server answered with a standard OAuth error (RFC 6749 §5.2, RFC 6750 §3)."""

    def __init__(
        self, message: str, *, error: str, description: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status = status


class InvalidCredentials(OAuthError):
    """Wrong username or password."""


class TooManyAttempts(OAuthError):
    """Too many failed sign-ins; ``retry_after`` is the wait in seconds when the server said."""

    def __init__(
        self,
        message: str,
        *,
        error: str,
        description: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, error=error, description=description, status=status)
        self.retry_after = retry_after


class AccessDenied(OAuthError):
    """403: the person's groups do not allow this resource."""


class SessionEnded(OAuthError):
    """The refresh token expired, was revoked or was reused; the person must sign in again."""


class NotSignedIn(AuthError):
    """There is no session to use."""


class KeyringUnavailable(AuthError):
    """The OS keyring is missing, locked or not answering."""
