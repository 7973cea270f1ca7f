"""The wording of every error and outcome, in one Qt-free place the GUI and the CLI share.

The core builds its errors' sentences with these functions (``str(error)`` is what a person
reads); :func:`describe` turns any error into a :class:`Failure` (a kind the widgets react to,
and a sentence); :func:`sign_out_notice` and :func:`sign_out_line` say what a sign-out did.
Nothing here imports ``requests`` or ``keyring``: the GUI's start-up path may import it.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

__all__ = [
    "ErrorKind",
    "Failure",
    "Revocation",
    "describe",
    "describe_wait",
    "reason",
    "sign_out_line",
    "sign_out_notice",
]

_log = logging.getLogger(__name__)

_MAX_REASON_CHARS = 200

NOT_REMEMBERED = "You chose not to stay signed in: the session ends when the program exits."
NOT_SIGNED_IN = "You are not signed in."
NO_USERINFO = "The server does not offer a userinfo endpoint."
NO_REFRESH_TOKEN = "The server issued no refresh token, so the session cannot last."
EMPTY_CREDENTIALS = "Enter a username and a password."
WRONG_PASSWORD = "The username or password is incorrect."
LOCK_TIMEOUT = "Another jwt-desktop process kept the session locked for too long. Try again."
TLS_DISABLED = "TLS certificate verification cannot be turned off."
REJECTED_FRESH_TOKEN = "The server rejected an access token it had just issued."
ENDED_ELSEWHERE = (
    "Your session has ended: another jwt-desktop window or command signed out or signed in "
    "again. Please sign in again."
)
ENDED = "Your session has ended. Please sign in again."
METADATA_NOT_OBJECT = "The server's metadata document is not a JSON object."
METADATA_NO_ISSUER = "The server's metadata document has no issuer."
TOKEN_NOT_JSON = "The server's token answer is not JSON."
PROFILE_NOT_JSON = "The server's profile answer is not a JSON object."
PROFILE_OF_ANOTHER = "The server's profile is not that of the person who signed in."
DPOP_KEY_MISSING = "The stored session is bound to a DPoP key, but the key is not stored with it."
SESSIONS_NOT_JSON = "The server's list of sessions is not what was expected."
PROFILE_NO_ACCOUNT = "The server's profile names no account (no preferred_username, no sub)."

# -- browser and device sign-in, ID tokens --------------------------------------------------------

CANCELLED = "The sign-in was cancelled."
CONTINUE_IN_BROWSER = "Continue in your browser…"
NO_BROWSER = "No web browser could be opened: open this address in a browser to sign in."
BROWSER_TIMED_OUT = "The browser sign-in took too long and was stopped."
LISTENER_FAILED = "Could not start the local listener for the browser sign-in."
NO_AUTHORIZATION_ENDPOINT = "The server does not offer browser sign-in (no authorization endpoint)."
NO_S256 = "The server does not support PKCE with S256, which browser sign-in requires."
NO_DEVICE_ENDPOINT = "The server does not offer device sign-in (no device authorization endpoint)."
DEVICE_ANSWER_INVALID = "The server's device sign-in answer is missing its code or address."
DEVICE_EXPIRED = "The code expired before the sign-in was approved. Start again for a new code."
DEVICE_DENIED = "The sign-in was declined on the other device."
ENDPOINT_NOT_A_URL = "The server's authorization endpoint is not a valid URL."
REDIRECT_MALFORMED = "The browser sent back a malformed sign-in response."
REDIRECT_REPEATED = "The browser sent back a sign-in response with repeated parameters."
REDIRECT_WRONG_STATE = "The browser sent back a response that does not belong to this sign-in."
REDIRECT_NO_ISS = "The sign-in response did not say which server sent it."
REDIRECT_WRONG_ISS = "The sign-in response came from another server than expected."
REDIRECT_NO_CODE = "The server sent back no authorization code."
USERINFO_OF_ANOTHER = "The server's profile answer is about another person than the one signed in."
NO_JWKS = "The server's ID token cannot be checked: the server publishes no key set (jwks_uri)."
JWKS_NOT_JSON = "The server's key set (jwks_uri) is not a JSON object."

# The authorization endpoint's error codes (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
_AUTHORIZATION_ERRORS = {
    "access_denied": "The sign-in was declined or cancelled in the browser.",
    "login_required": "The server needs you to sign in again in the browser.",
    "consent_required": "The server needs your consent in the browser to continue.",
    "interaction_required": "The server needs you to finish the sign-in in the browser.",
    "account_selection_required": "The server needs you to choose an account in the browser.",
    "invalid_scope": "The server refused the permissions this app asks for.",
    "unauthorized_client": "The server does not allow this app to sign in with a browser.",
    "unsupported_response_type": "The server does not support browser sign-in for this app.",
    "invalid_request": "The server refused the sign-in request as invalid.",
    "server_error": "The server failed while signing you in. Try again later.",
    "temporarily_unavailable": "The server cannot sign you in right now. Try again later.",
}


def authorization_refused(error: str, description: str | None) -> str:
    """A browser redirect's ``error=``; ``description`` is already plain, bounded text."""
    sentence = _AUTHORIZATION_ERRORS.get(error, "The server refused the sign-in.")
    return f"{sentence} The server said: {description}" if description else sentence


def open_in_browser(url: str) -> str:
    return f"Continue in your browser. If no browser opened, open this address: {url}"


def device_instructions(uri: str, code: str, complete: str | None) -> str:
    """What the person must do on another device (one line: the CLI prints it as is)."""
    line = f"To sign in, open {uri} and enter the code {code}"
    return f"{line} (or open {complete})." if complete else f"{line}."


# Why an ID token is refused, by check (desktop/auth/idtoken.py names the check).
ID_TOKEN_SENTENCES = {
    "jwks": "the server's key set is not a valid JWKS document.",
    "kid": "it is signed with a key the server does not publish.",
    "alg": "its algorithm does not match the server's key.",
    "jwks_key": "the server's key does not fit the token's algorithm.",
    "format": "it is not a valid signed JWT.",
    "alg_not_allowed": "it is signed with an algorithm that is not allowed.",
    "kid_invalid": "its key id is not valid.",
    "signature": "its signature is not valid.",
    "iss": "it was issued by another server than expected.",
    "sub": "it does not name the signed-in person.",
    "aud": "it was not issued to this app.",
    "azp": "it was issued to another party than this app.",
    "exp": "it has no expiry time.",
    "expired": "it has expired (check this computer's clock).",
    "iat": "it has no issue time.",
    "iat_future": "it was issued in the future (check this computer's clock).",
    "nbf": "it is not valid yet (check this computer's clock).",
    "nonce": "it does not belong to this sign-in (nonce).",
    "at_hash": "it does not match the access token issued with it.",
}


def id_token_refused(sentence: str) -> str:
    return f"The server's ID token was refused: {sentence}"


class Revocation(str, enum.Enum):
    """What a sign-out did at the server (RFC 7009)."""

    REVOKED = "revoked"  # the server confirmed it (or there was nothing to revoke)
    NOT_CONFIRMED = "not_confirmed"  # tried: unreachable, refused, or the lock timed out
    NOT_OFFERED = "not_offered"  # the server advertises no revocation endpoint: nothing tried


class ErrorKind(str, enum.Enum):
    """What kind of failure, so the widgets can react (clear the password, show a banner...)."""

    CREDENTIALS = "credentials"
    INPUT = "input"  # the dialog's own check: a field left empty
    THROTTLED = "throttled"
    UNREACHABLE = "unreachable"
    SERVER = "server"
    SESSION_ENDED = "session_ended"
    DENIED = "denied"
    CONFIGURATION = "configuration"
    NOT_SIGNED_IN = "not_signed_in"
    KEYRING = "keyring"
    BUSY = "busy"  # another jwt-desktop process held the session's lock for too long
    CANCELLED = "cancelled"
    REFUSED = "refused"  # the sign-in was declined, expired, or its answer is not trusted
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class Failure:
    kind: ErrorKind
    message: str


# -- pieces the core's sentences are made of ------------------------------------------------------


def reason(description: str) -> str:
    """A server's error description made fit for a sentence: one line, bounded, no end dot."""
    text = " ".join(description.split())[:_MAX_REASON_CHARS]
    return text.rstrip(".")


def detail(error: str, description: str | None) -> str:
    """': the reason' when the server gave one, else ' (error_code)'."""
    return f": {reason(description)}" if description else f" ({error})"


def describe_wait(seconds: float) -> str:
    """'5 seconds', '1 minute', '3 minutes' (rounded up: never tell people to come back early)."""
    if seconds < 60:
        whole = max(1, math.ceil(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def url_invalid(what: str, url: str) -> str:
    return f"{what} is not a valid URL: {url!r}."


def url_not_web(what: str, url: str) -> str:
    return f"{what} must be an http:// or https:// URL with a host: {url!r}."


def url_with_credentials(what: str) -> str:
    return f"{what} must not contain a user name or password."


def url_with_query(url: str) -> str:
    return f"The server URL must not have a query or fragment: {url!r}."


def plain_http(what: str, host: str) -> str:
    return (
        f"{what} uses plain http:// to {host}; only loopback addresses may use http://. "
        "Use https:// instead."
    )


def no_metadata(issuer: str, status: int) -> str:
    return (
        f"{issuer} has no OpenID Connect discovery document nor OAuth server metadata "
        f"(HTTP {status})."
    )


def metadata_not_json(issuer: str, url: str) -> str:
    return (
        f"{issuer} is not an OpenID Connect server: its metadata document at {url} is not a "
        "JSON object."
    )


def bad_token_response(what: str) -> str:
    return f"The server's token response {what}."


def metadata_invalid(key: str) -> str:
    return f"The server's metadata has no valid {key}."


def issuer_mismatch(named: str, issuer: str) -> str:
    return f"The server says its issuer is {named!r}, not the configured {issuer!r}."


def unreachable(origin: str, why: str) -> str:
    """``why``: 'timeout', 'tls', 'lost' (after sending), 'cut' (answer cut) or 'connect'."""
    if why == "timeout":
        return f"The server at {origin} did not answer in time."
    if why == "tls":
        return (
            f"The server at {origin} could not prove its identity (TLS certificate "
            "verification failed)."
        )
    if why == "lost":
        return (
            f"The connection to the server at {origin} was lost after the request was sent "
            "(it may have been carried out)."
        )
    if why == "cut":
        return f"The answer of the server at {origin} was cut off."
    return f"Could not connect to the server at {origin}."


def request_failed(origin: str) -> str:
    return f"The request to {origin} failed."


def redirect_refused(origin: str, status: int) -> str:
    return (
        f"The server at {origin} answered with a redirect (HTTP {status}), which jwt-desktop "
        "does not follow: check the server URL."
    )


def server_failed(status: int) -> str:
    return f"The server failed (HTTP {status}). Try again later."


def profile_failed(status: int) -> str:
    return f"The server could not return the profile (HTTP {status})."


def unexpected_answer(status: int) -> str:
    return f"The server gave an unexpected answer (HTTP {status})."


def throttled(retry_after: int | None, *, signing_in: bool) -> str:
    wait = f"Try again in {retry_after} seconds." if retry_after else "Try again later."
    return f"Too many {'sign-in attempts' if signing_in else 'requests'}. {wait}"


def session_ended(description: str | None) -> str:
    """A refused refresh token (invalid_grant). A revoked session (signed out elsewhere, or
    ended by an administrator in the Sessions view) says so first: the server's description
    alone ("The refresh token has been revoked") reads like a fault of the app."""
    why = reason(description) if description else "the server refused the session"
    lowered = why.lower()
    if "revoked" in lowered and "already used" not in lowered:
        why = f"it was revoked at the server ({why[:1].lower()}{why[1:]})"
    return f"Your session has ended: {why}. Please sign in again."


def sessions_refused(description: str | None) -> str:
    """The server would not list the sessions (not an admin, or the scope was not granted)."""
    why = f": {reason(description)}." if description else "."
    return f"The server does not show you the sessions{why}"


def client_rejected(client_id: str, error: str, description: str | None) -> str:
    why = detail(error, description)
    return f"The server does not accept this app (client id {client_id!r}){why}."


def oauth_refused(error: str, description: str | None) -> str:
    return f"The server refused the request{detail(error, description)}."


def token_binding(bound: bool) -> str:
    """What the session panel and ``jwt-desktop status`` say of the tokens (RFC 9449)."""
    return "Bound to this device's key (DPoP)" if bound else "Bearer: usable by whoever holds it"


# A clock this far from the server's is said beside a refused proof: far enough from the
# second-resolution Date header and a slow answer, and inside every window servers use (RFC
# 9449 §11.1 leaves it to them: 60 s here and in node-oidc-provider, up to 5 minutes elsewhere).
CLOCK_OFF_SECONDS = 30.0


def dpop_refused(error: str, description: str | None, clock_offset: float | None = None) -> str:
    """``clock_offset``: seconds the server's clock is ahead of ours (negative: behind)."""
    sentence = (
        "The server refused this device's proof of its session key (DPoP)"
        f"{detail(error, description)}."
    )
    if clock_offset is not None and abs(clock_offset) >= CLOCK_OFF_SECONDS:
        side = "behind" if clock_offset > 0 else "ahead of"
        sentence += (
            f" This computer's clock is {describe_offset(abs(clock_offset))} {side} the "
            "server's, and proofs carry the time: set the clock right, then try again."
        )
    return sentence


def describe_offset(seconds: float) -> str:
    """'45 seconds', 'about 5 minutes', 'about 2 hours': how far two clocks are apart."""
    if seconds < 90:
        whole = round(seconds)
        return f"{whole} second{'s' if whole != 1 else ''}"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} minutes"
    hours = round(seconds / 3600)
    return f"about {hours} hour{'s' if hours != 1 else ''}"


def access_denied(description: str | None) -> str:
    return "You do not have access to this resource" + (
        f": {reason(description)}." if description else "."
    )


MEMORY_ONLY = "The session is kept in memory only and ends when the program exits."
_FOR_THIS_RUN = "the session is kept in memory for this run only."
_KEPT = "your session is kept"
HELD_ELSEWHERE = (
    "The stored session is out of date: another jwt-desktop process holds the current one and "
    "could not save it in the OS keyring yet. Unlock the keyring and try again; your session is "
    "kept."
)
LOST_UNSAVED = (
    "Your session has ended: its last refresh could not be saved in the OS keyring before the "
    "program that made it exited. Please sign in again."
)


def keyring_unusable(why: str, *, detail: str | None = None, timeout: float = 0.0) -> str:
    """``why``: 'none' (no backend; ``detail`` names it), 'locked', 'hung' (``timeout``),
    'failed' (``detail``: the error's type and the operation), 'unavailable'."""
    if why == "none":
        where = f" ({detail})" if detail else ""
        return f"No OS keyring is available{where}; {_FOR_THIS_RUN}"
    if why == "locked":
        return f"The OS keyring is locked: unlock it and try again; {_KEPT}."
    if why == "hung":
        return f"The OS keyring did not answer within {timeout:g} seconds: try again; {_KEPT}."
    if why == "failed":
        return f"The OS keyring failed ({detail}): try again; {_KEPT}."
    return "The OS keyring is not available."


def not_saved(why: str, *, lasting: bool) -> str:
    """A refreshed (or new) session that could not be written to the keyring. ``lasting``: the
    process keeps it and writes it back later (the GUI); else it ends with the process."""
    why = why.rstrip(".")
    if lasting:
        return (
            f"The session could not be saved in the OS keyring ({why}). It keeps working here "
            "and is saved as soon as the keyring answers; until then other jwt-desktop windows "
            "and commands cannot use it."
        )
    return (
        f"The refreshed session could not be saved in the OS keyring ({why}). The stored one "
        "is spent, so the next command will ask you to sign in again."
    )


def not_forgotten(why: str) -> str:
    """``logout`` revoked the session but could not delete the keyring entry."""
    return (
        f"The session was revoked, but its keyring entry could not be deleted ({why.rstrip('.')}"
        "); it is deleted on the next command once the keyring answers."
    )


def secret_too_long(size: int, limit: int) -> str:
    return (
        f"The session is too long for the OS keyring ({size} bytes, the limit is {limit}); "
        "the session is kept in memory for this run only."
    )


# -- outcomes -------------------------------------------------------------------------------------


def sign_out_notice(revocation: Revocation) -> str:
    """What the GUI says after Sign out."""
    if revocation is Revocation.REVOKED:
        return "You signed out. The session was revoked at the server."
    if revocation is Revocation.NOT_OFFERED:
        return (
            "You signed out on this computer. The server offers no way to revoke a session, "
            "so it stays valid there until it expires."
        )
    return (
        "You signed out on this computer, but the server could not be reached to revoke the "
        "session."
    )


def sign_out_line(revocation: Revocation, username: str, server: str) -> str:
    """What ``jwt-desktop logout`` prints."""
    if revocation is Revocation.REVOKED:
        return f"Signed out {username} from {server}."
    if revocation is Revocation.NOT_OFFERED:
        return (
            f"Signed out {username} locally; {server} offers no revocation endpoint, so the "
            "session stays valid there until it expires."
        )
    return (
        f"Signed out {username} locally; the server could not confirm the revocation, so the "
        "session may stay valid there until it expires."
    )


def describe(error: BaseException) -> Failure:
    """Turn any exception from the core (or a bug) into a :class:`Failure` with a sentence."""
    from desktop.auth import errors

    if isinstance(error, errors.InvalidCredentials):
        return Failure(ErrorKind.CREDENTIALS, "Wrong username or password.")
    if isinstance(error, errors.InputError):
        return Failure(ErrorKind.CREDENTIALS, _sentence(str(error), EMPTY_CREDENTIALS))
    if isinstance(error, errors.TooManyAttempts):
        if error.retry_after:
            wait = f"Try again in {describe_wait(error.retry_after)}."
        else:
            wait = "Wait a while, then try again."
        return Failure(ErrorKind.THROTTLED, f"Too many failed sign-in attempts. {wait}")
    if isinstance(error, errors.ServerUnreachable):
        # An answer lost after sending is not "cannot reach": the core's sentence says which.
        text = (
            _sentence(str(error), "The answer was lost.")
            if error.sent
            else f"Cannot reach the server at {error.url}. Check that it is running."
        )
        return Failure(ErrorKind.UNREACHABLE, text)
    # The rest: the core's own sentence says it best.
    rules: tuple[tuple[type[BaseException], ErrorKind, str], ...] = (
        # Before ServerError: an answer not to be trusted is no outage to retry later.
        (errors.AuthorizationResponseInvalid, ErrorKind.REFUSED, REDIRECT_MALFORMED),
        (errors.InvalidIDToken, ErrorKind.REFUSED, "The server's ID token was refused."),
        (errors.ServerError, ErrorKind.SERVER, "The server had a problem."),
        (errors.AuthorizationDenied, ErrorKind.REFUSED, "The sign-in was declined."),
        (errors.DeviceCodeExpired, ErrorKind.REFUSED, DEVICE_EXPIRED),
        (errors.SignInTimedOut, ErrorKind.REFUSED, BROWSER_TIMED_OUT),
        (errors.SessionEnded, ErrorKind.SESSION_ENDED, "Your session ended. Sign in again."),
        (errors.DPoPRefused, ErrorKind.SERVER, "The server refused this device's DPoP proof."),
        (errors.AccessDenied, ErrorKind.DENIED, "You are not allowed to do that."),
        (errors.ClientRejected, ErrorKind.CONFIGURATION, "The server does not accept this app."),
        (errors.ConfigurationError, ErrorKind.CONFIGURATION, "The setup is invalid."),
        (errors.StorageError, ErrorKind.KEYRING, "The system keyring is not available."),
        (errors.LockTimeout, ErrorKind.BUSY, "Another jwt-desktop process is busy. Try again."),
        (errors.NotSignedIn, ErrorKind.NOT_SIGNED_IN, NOT_SIGNED_IN),
        (errors.Cancelled, ErrorKind.CANCELLED, CANCELLED),
        (errors.OAuthError, ErrorKind.REFUSED, "The server refused the request."),
        (errors.AuthError, ErrorKind.UNEXPECTED, "Something went wrong."),
    )
    for cls, kind, fallback in rules:
        if isinstance(error, cls):
            return Failure(kind, _sentence(str(error), fallback))
    # A bug, not a condition a person can fix: the traceback goes to the log, never to the UI.
    _log.error("unexpected error in a worker", exc_info=error)
    return Failure(
        ErrorKind.UNEXPECTED,
        f"Something unexpected went wrong ({type(error).__name__}). Details are in the log.",
    )


def _sentence(text: str, fallback: str) -> str:
    text = text.strip()
    if not text:
        return fallback
    return text if text.endswith((".", "!", "?")) else f"{text}."
