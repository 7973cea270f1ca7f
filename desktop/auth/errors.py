"""The one exception tree of the client core.

Every error the core raises is an :class:`AuthError`; ``str(error)`` is a sentence a person can
read (worded in :mod:`desktop.auth.messages`), and never contains a token, a password or a
traceback. Third-party errors (``requests``, ``keyring``, ``filelock``) are translated where they
enter the core, so callers (the GUI, the CLI) only ever catch these::

    AuthError                       root: str(e) is a sentence for a person
     ├── ConfigurationError         bad server URL, http:// to a non-loopback host, bad metadata
     ├── InputError                 what the person typed cannot be sent (empty username...)
     ├── Cancelled                  the person cancelled a sign-in in progress (any grant)
     ├── ServerUnreachable          connection refused, DNS failure, timeout, answer lost
     │                              (``sent``: it may have reached the server) (keeps the session)
     ├── ServerError                5xx, or an answer that is not what the standard says
     │                              (HTML instead of JSON, missing fields) (keeps the session)
     │    ├── AuthorizationResponseInvalid  a browser redirect not to be trusted; no code used
     │    │    ├── StateMismatch    ``state`` is not the one sent (CSRF, a stale tab)
     │    │    └── IssuerMismatch   ``iss`` wrong, or missing where advertised (RFC 9207)
     │    └── InvalidIDToken        an ID token fails OIDC Core §3.1.3.7; ``reason`` says which
     │         └── SubjectMismatch  /userinfo's ``sub`` is not the ID token's (§5.3.2)
     ├── OAuthError                 the server answered with an OAuth error (error, description)
     │    ├── InvalidCredentials    wrong username or password
     │    ├── ClientRejected        invalid_client, unauthorized_client, unsupported_grant_type:
     │    │                         the server does not accept this app or this way of signing in
     │    ├── TooManyAttempts       throttled; ``retry_after`` seconds, when the server said
     │    ├── AccessDenied          403: the person's groups do not allow the resource
     │    ├── SessionEnded          the refresh token expired, was revoked or reused: the stored
     │    │                         session is gone and the person must sign in again
     │    ├── DPoPRefused           the server refused the DPoP proof (``invalid_dpop_proof``,
     │    │                         ``use_dpop_nonce`` after the one retry), RFC 9449
     │    ├── AuthorizationDenied   the person or the server refused the sign-in (access_denied…
     │    │                         from the authorization endpoint or the device grant's polling)
     │    └── DeviceCodeExpired     the device code expired before the person approved it
     ├── NotSignedIn                no session to use
     ├── LockTimeout                another process held the session's lock for too long
     ├── StorageError               the session could not be kept in the OS keyring
     │    ├── KeyringUnavailable    the OS keyring is missing, locked or hanging
     │    └── SecretTooLong         the keyring works, but this session does not fit in it
     ├── BrowserSignInError         the browser sign-in ended on this side (listener failed)
     │    └── SignInTimedOut        no redirect came back in time
     └── InvalidDPoPKey             a stored DPoP key cannot be read
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AuthError",
    "AuthorizationDenied",
    "AuthorizationResponseInvalid",
    "BrowserSignInError",
    "Cancelled",
    "ClientRejected",
    "ConfigurationError",
    "DPoPRefused",
    "DeviceCodeExpired",
    "InputError",
    "InvalidCredentials",
    "InvalidDPoPKey",
    "InvalidIDToken",
    "IssuerMismatch",
    "KeyringUnavailable",
    "LockTimeout",
    "NotSignedIn",
    "OAuthError",
    "SecretTooLong",
    "ServerError",
    "ServerUnreachable",
    "SessionEnded",
    "SignInTimedOut",
    "StateMismatch",
    "StorageError",
    "SubjectMismatch",
    "TooManyAttempts",
]


class AuthError(Exception):
    """Root of the core's errors. ``str(error)`` is a sentence a person can read."""


class ConfigurationError(AuthError):
    """The configuration cannot work: bad URL, insecure transport, bad metadata document."""


class InputError(AuthError):
    """What the person provided cannot be sent (an empty username or password...)."""


class Cancelled(AuthError):
    """The person cancelled the sign-in (a grant saw its cancel event set)."""


class ServerUnreachable(AuthError):
    """The server could not be reached (refused, DNS, timeout), or the answer was lost. The
    session is kept. ``sent``: the request may have reached the server (the connection was
    lost or timed out after sending, or the answer was cut off)."""

    def __init__(self, message: str, *, url: str, sent: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.sent = sent


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


class ClientRejected(OAuthError):
    """``invalid_client``, ``unauthorized_client`` or ``unsupported_grant_type``: the server
    does not accept this client id, or not this grant for it (``error`` says which)."""


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


class DPoPRefused(OAuthError):
    """The server refused this client's DPoP proof (RFC 9449 §4.3, §7.1, §8): not the
    person's password, nor (by itself) the end of the session."""


class NotSignedIn(AuthError):
    """There is no session to use."""


class LockTimeout(AuthError):
    """Another process (a window, a CLI command) kept the session's lock for too long."""


class StorageError(AuthError):
    """The session could not be kept in the OS keyring; it lives in memory for this run."""


class KeyringUnavailable(StorageError):
    """The OS keyring is missing, locked or not answering."""


class SecretTooLong(StorageError):
    """The stored session is larger than the keyring accepts (Windows: 2560 bytes)."""


# Browser sign-in (RFC 8252 loopback), ID tokens (OIDC Core) and DPoP (RFC 9449).


class AuthorizationResponseInvalid(ServerError):
    """A redirect to the loopback listener that must not be trusted; no code was redeemed."""


class StateMismatch(AuthorizationResponseInvalid):
    """The redirect's ``state`` is not the one this sign-in sent."""


class IssuerMismatch(AuthorizationResponseInvalid):
    """The redirect's ``iss`` is wrong, or missing where the server promised it (RFC 9207)."""


class InvalidIDToken(ServerError):
    """An ID token failed validation; ``reason`` names what failed (``"aud"``, ``"signature"``)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SubjectMismatch(InvalidIDToken):
    """/userinfo answered for another subject than the ID token's."""


class AuthorizationDenied(OAuthError):
    """The authorization endpoint redirected back with an error (``access_denied``, ...)."""


class DeviceCodeExpired(OAuthError):
    """The device grant's code expired (``expired_token``, or its ``expires_in`` passed)."""


class BrowserSignInError(AuthError):
    """The browser sign-in ended on this side: the listener failed or timed out. (Cancel is
    :class:`Cancelled`, whichever grant was waiting.)"""


class SignInTimedOut(BrowserSignInError):
    """No redirect came back from the browser in time."""


class InvalidDPoPKey(AuthError):
    """A stored DPoP key cannot be read (corrupt, or not an EC P-256 private key)."""
