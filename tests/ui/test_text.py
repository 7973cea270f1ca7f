"""What people read: error sentences, waits, claims, countdowns (Qt-free helpers)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from desktop.auth.errors import (
    AuthError,
    InvalidCredentials,
    ServerError,
    ServerUnreachable,
    SessionEnded,
    TooManyAttempts,
)
from desktop.auth.store import StorageStatus
from desktop.demo import DemoServerError
from desktop.ui import formatting
from desktop.ui.backoff import Backoff
from desktop.ui.messages import ErrorKind, describe, describe_wait
from tests.ui.fakes import FakeClient


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1 second"),
        (5, "5 seconds"),
        (59.5, "60 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (300, "5 minutes"),
    ],
)
def test_waits_round_up(seconds: float, text: str) -> None:
    assert describe_wait(seconds) == text


def test_error_sentences() -> None:
    wrong = describe(InvalidCredentials("x", error="invalid_grant"))
    assert (wrong.kind, wrong.message) == (ErrorKind.CREDENTIALS, "Wrong username or password.")
    throttled = describe(TooManyAttempts("x", error="slow_down", retry_after=90))
    assert throttled.message == "Too many failed sign-in attempts. Try again in 2 minutes."
    unknown_wait = describe(TooManyAttempts("x", error="slow_down"))
    assert unknown_wait.message.endswith("Wait a while, then try again.")
    down = describe(ServerUnreachable("refused", url="http://127.0.0.1:1"))
    assert down.kind is ErrorKind.UNREACHABLE
    assert (
        down.message == "Cannot reach the server at http://127.0.0.1:1. Check that it is running."
    )
    server = describe(ServerError("The server failed (HTTP 502)", status=502))
    assert (server.kind, server.message) == (ErrorKind.SERVER, "The server failed (HTTP 502).")
    ended = describe(SessionEnded("Your session was revoked.", error="invalid_grant"))
    assert ended.kind is ErrorKind.SESSION_ENDED
    assert describe(AuthError("")).message == "Something went wrong."
    assert describe(DemoServerError("Port busy.")).message == "Port busy."


def test_a_bug_is_never_shown_as_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    failure = describe(KeyError("secret-looking-detail"))
    assert failure.kind is ErrorKind.UNEXPECTED
    assert "KeyError" in failure.message
    assert "secret-looking-detail" not in failure.message
    assert "Traceback" not in failure.message


def test_profile_formatting() -> None:
    profile = {
        "sub": "s-1",
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "email": "a@example.org",
        "groups": ["staff"],
        "email_verified": True,
        "updated_at": 1767225600,
        "locale": "en-GB",
        "nickname": "",
    }
    assert formatting.display_name(profile) == "Alice Liddell"
    assert formatting.display_name({"preferred_username": "bob"}) == "bob"
    assert formatting.initials("Alice Liddell") == "AL"
    assert formatting.initials("bob") == "B"
    assert formatting.initials("") == "?"
    rows = dict(formatting.other_claims(profile))
    assert next(iter(rows)) == "Subject"
    assert "Name" not in rows and "Email" not in rows and "Groups" not in rows
    assert rows["Email verified"] == "Yes"
    expected = datetime.fromtimestamp(1767225600, tz=timezone.utc).astimezone()
    assert rows["Updated"] == expected.strftime("%Y-%m-%d %H:%M:%S")
    assert rows["Locale"] == "en-GB"
    assert rows["Nickname"] == "—"
    assert formatting.claim_value("address", {"country": "UK"}) == "Country: UK"


def test_session_texts() -> None:
    assert formatting.countdown(None) == "No access token"
    assert formatting.countdown(125.9) == "2:05 left"
    assert formatting.countdown(0) == "Expired: renewed on the next request"
    client = FakeClient()
    client.username = "alice"
    status = client.status()
    assert formatting.refresh_summary(status) == "Not refreshed yet"
    assert formatting.storage_summary(status)[0] == "OS keyring: SecretService Keyring"
    client.storage = StorageStatus(persistent=False, backend="memory", reason="Locked keyring.")
    assert formatting.storage_summary(client.status()) == ("This session only", "Locked keyring.")


def test_backoff_doubles_up_to_a_ceiling_and_resets() -> None:
    backoff = Backoff(initial=2, factor=2, maximum=10)
    assert [backoff.next_delay() for _ in range(5)] == [2, 4, 8, 10, 10]
    assert backoff.attempts == 5
    backoff.reset()
    assert backoff.next_delay() == 2


def test_a_revoked_session_says_it_was_revoked_at_the_server() -> None:
    from desktop.auth.messages import session_ended

    # What the bundled server answers the refresh of a revoked sign-in (invalid_grant).
    assert session_ended("The refresh token has been revoked") == (
        "Your session has ended: it was revoked at the server (the refresh token has been "
        "revoked). Please sign in again."
    )
    # A reused token is not worded as someone else's decision: the server's reason stays.
    reused = session_ended("The refresh token was already used; the session is revoked")
    assert reused.startswith("Your session has ended: The refresh token was already used")
