"""A stand-in for :class:`desktop.auth.AuthClient`, for tests about the widgets themselves.

Everything about real sign-in, refresh and storage is tested against the real core and the live
server (test_app_live.py); this fake only lets a test choose an answer, or hold a call until the
test releases it, to look at the widgets in each state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from desktop.auth.errors import SessionEnded
from desktop.auth.messages import Revocation
from desktop.auth.oauth import ServerMetadata
from desktop.auth.session import SessionStatus, SignInResult
from desktop.auth.store import StorageStatus

ALICE = {
    "sub": "alice-sub",
    "name": "Alice Liddell",
    "preferred_username": "alice",
    "email": "alice@example.org",
    "email_verified": True,
    "groups": ["staff", "admin"],
    "given_name": "Alice",
}

KEYRING = StorageStatus(persistent=True, backend="SecretService Keyring", reason=None)
NO_KEYRING = StorageStatus(
    persistent=False,
    backend="fail Keyring",
    reason="No OS keyring is available (keyring.backends.fail.Keyring).",
)


@dataclass(frozen=True)
class ProfileFailed:
    """A sign-in answer: the session started, then fetching the profile raised ``error``."""

    error: Exception


Answer = dict[str, Any] | None | BaseException | ProfileFailed


class FakeClient:
    """Answers from queues the test fills; ``hold`` makes the next call wait for ``release``."""

    def __init__(self, storage: StorageStatus = KEYRING) -> None:
        self.on_refreshed: list[Callable[[], None]] = []
        self.on_session_ended: list[Callable[[SessionEnded], None]] = []
        self.storage = storage
        self.sign_in_answers: list[Answer] = []
        self.restore_answers: list[Answer] = []
        self.profile_answers: list[Answer] = []
        self.calls: list[str] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.holding = threading.Event()
        self.username: str | None = None
        self.expires_in: float | None = None
        self.lifetime: float | None = None
        self.refresh_count = 0
        self.last_refreshed: datetime | None = None
        self.remembered = True
        self.closed = False
        self.server_metadata = ServerMetadata(
            issuer="http://127.0.0.1:9",
            token_endpoint="http://127.0.0.1:9/token",
            grant_types_supported=("password", "refresh_token"),
        )

    def _answer(self, name: str, answers: list[Answer]) -> dict[str, Any] | None:
        self.calls.append(name)
        if self.hold.is_set():
            self.hold.clear()
            self.holding.set()
            self.release.wait(30)
        answer = answers.pop(0) if answers else dict(ALICE)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def sign_in(
        self, grant: Any, *, remember: bool, cancel: Any = None, progress: Any = None
    ) -> SignInResult:
        """``sign_in_answers``: a profile, an error raised before the session started, or
        ``ProfileFailed(error)``: the session started, the profile fetch failed."""
        self.calls.append("sign_in")
        if self.hold.is_set():
            self.hold.clear()
            self.holding.set()
            self.release.wait(30)
        answer = self.sign_in_answers.pop(0) if self.sign_in_answers else dict(ALICE)
        if isinstance(answer, BaseException):
            raise answer
        self.username = grant.username
        self.remembered = remember
        if isinstance(answer, ProfileFailed):
            return SignInResult(self.status(), None, answer.error)
        assert answer is not None
        return SignInResult(self.status(), answer)

    def restore(self, username: str) -> dict[str, Any] | None:
        profile = self._answer("restore", self.restore_answers)
        if profile is not None:
            self.username = username
        return profile

    def profile(self) -> dict[str, Any]:
        profile = self._answer("profile", self.profile_answers)
        assert profile is not None
        return profile

    def sign_out(self) -> Revocation:
        self.calls.append("sign_out")
        self.username = None
        return Revocation.REVOKED

    def status(self) -> SessionStatus:
        return SessionStatus(
            signed_in=self.username is not None,
            username=self.username,
            server_url="http://127.0.0.1:9",
            access_expires_in=self.expires_in,
            access_lifetime=self.lifetime,
            refresh_count=self.refresh_count,
            last_refreshed=self.last_refreshed,
            storage=self.storage,
            remembered=self.remembered and self.storage.persistent,
        )

    def storage_status(self) -> StorageStatus:
        self.calls.append("storage_status")
        return self.storage

    def metadata(self) -> ServerMetadata:
        # Not in ``calls``: the dialog's discovery is no session operation the tests count.
        return self.server_metadata

    def close(self) -> None:
        self.closed = True
