"""Sentences for people: what an error from the core means, and how long a wait is.

Qt-free. The core's errors are imported inside the function: by the time an error exists the
core is loaded, and the start-up path must not import it (it pulls in requests and keyring).
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

_log = logging.getLogger(__name__)


class ErrorKind(str, enum.Enum):
    """What kind of failure, so the widgets can react (clear the password, show a banner...)."""

    CREDENTIALS = "credentials"
    THROTTLED = "throttled"
    UNREACHABLE = "unreachable"
    SERVER = "server"
    SESSION_ENDED = "session_ended"
    DENIED = "denied"
    CONFIGURATION = "configuration"
    NOT_SIGNED_IN = "not_signed_in"
    KEYRING = "keyring"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class Failure:
    kind: ErrorKind
    message: str


def describe_wait(seconds: float) -> str:
    """'5 seconds', '1 minute', '3 minutes' (rounded up: never tell people to come back early)."""
    if seconds < 60:
        whole = max(1, math.ceil(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def describe(error: BaseException) -> Failure:
    """Turn any exception from a worker into a :class:`Failure` with a sentence."""
    from desktop.demo import DemoServerError

    # Checked first: a demo server that failed to start happens before the core is loaded.
    if isinstance(error, DemoServerError):
        return Failure(ErrorKind.UNREACHABLE, _sentence(str(error), "The demo server failed."))
    from desktop.auth import errors

    if isinstance(error, errors.InvalidCredentials):
        return Failure(ErrorKind.CREDENTIALS, "Wrong username or password.")
    if isinstance(error, errors.TooManyAttempts):
        if error.retry_after:
            wait = f"Try again in {describe_wait(error.retry_after)}."
        else:
            wait = "Wait a while, then try again."
        return Failure(ErrorKind.THROTTLED, f"Too many failed sign-in attempts. {wait}")
    if isinstance(error, errors.ServerUnreachable):
        return Failure(
            ErrorKind.UNREACHABLE,
            f"Cannot reach the server at {error.url}. Check that it is running.",
        )
    # The rest: the core's own sentence says it best.
    rules: tuple[tuple[type[BaseException], ErrorKind, str], ...] = (
        (errors.ServerError, ErrorKind.SERVER, "The server had a problem."),
        (errors.SessionEnded, ErrorKind.SESSION_ENDED, "Your session ended. Sign in again."),
        (errors.AccessDenied, ErrorKind.DENIED, "You are not allowed to do that."),
        (errors.ConfigurationError, ErrorKind.CONFIGURATION, "The setup is invalid."),
        (errors.KeyringUnavailable, ErrorKind.KEYRING, "The system keyring is not available."),
        (errors.NotSignedIn, ErrorKind.NOT_SIGNED_IN, "You are not signed in."),
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
