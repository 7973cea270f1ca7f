"""The stored session's protocol: what one process reads, keeps and deletes of its session in
the store, always under the cross-process lock (:mod:`desktop.auth.lock`).

**A refresh token is presented only when it is proven current.** Beside the lock lies the
session's :class:`~desktop.auth.lock.Marker` (a generation counter, no secret) that every
writer advances under the lock; the stored session and this process's copy each know their
generation. Inside the lock the stored session is re-read; when the keyring cannot be read, our
copy is used only if its generation is the marker's (and only by a long-lived process, which
can write it back later: ``write_back``); otherwise the call stops with the keyring's sentence
and the session is kept. A stored session older than the marker is never presented: its token
is spent. A write that failed is replayed later (:class:`~desktop.auth.store.WriteBackStore`).

**Every write of the stored session happens under that file lock**: refresh, sign-in (a CLI
refresh at the same moment would otherwise overwrite a fresh sign-in with the old session's
rotation) and sign-out. The rotated session is saved before the new access token is used: were
the process to die in between, the keyring would otherwise hold a spent token, and the next
start would present it and get the whole session revoked.

The stored session holds the live access token too, so a new process (a CLI command, the next
start) reuses it while it is valid instead of refreshing.

:class:`SessionStorage` knows no HTTP: where a stored session must be revoked at the server, it
calls the ``revoke`` it was given.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from desktop.auth import messages
from desktop.auth.errors import (
    KeyringUnavailable,
    LockTimeout,
    SecretTooLong,
    SessionEnded,
    StorageError,
)
from desktop.auth.lock import ENDED, LIVE, SIGNED_OUT, HeldLock, SessionLock
from desktop.auth.store import StorageStatus, StoredSession, TokenStore, WriteBackStore

if TYPE_CHECKING:
    from desktop.auth.dpop import DPoPSigner
    from desktop.auth.tokens import TokenSet

__all__ = ["Kept", "LocalCopy", "SessionStorage", "effective_storage"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class LocalCopy:
    """This process's refresh token, the marker generation it was written at and its key."""

    refresh_token: str
    generation: int | None
    dpop: DPoPSigner | None


@dataclass(frozen=True)
class Kept:
    """Where a new or rotated session is kept."""

    in_store: bool  # kept in the store (also)
    reason: str | None = None  # why the session is not (or no longer) kept in the store
    generation: int | None = None  # its marker generation
    unsaved: str | None = None  # the keyring write failed: replayed by flush_pending()


class SessionStorage:
    """One client's sessions in ``store`` (for issuer ``issuer``), each under ``lock``.

    ``write_back``: a long-lived process (the GUI) may use its own copy while the keyring
    cannot be read, when the marker proves that copy current, and writes it back later
    (:meth:`flush_pending`); a short-lived one (the CLI) must not. ``clock`` (monotonic) and
    ``wall_clock`` (epoch) convert expiries between this process and the stored session.
    ``revoke`` ends a stored session at the server (with its own key). Thread-safe.
    """

    def __init__(
        self,
        store: TokenStore,
        lock: SessionLock,
        *,
        issuer: str,
        write_back: bool,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        revoke: Callable[[StoredSession], object],
    ) -> None:
        self.store = store if isinstance(store, WriteBackStore) else WriteBackStore(store)
        self._lock = lock
        self._issuer = issuer
        self._write_back = write_back
        self._clock = clock
        self._wall_clock = wall_clock
        self._revoke = revoke
        self._status_lock = threading.Lock()
        self._status: StorageStatus | None = None  # the last probe's outcome

    def hold(self, username: str) -> AbstractContextManager[HeldLock]:
        """The cross-process lock of ``username``'s session."""
        return self._lock.hold(self._issuer, username)

    def locked(self, username: str, in_store: bool) -> AbstractContextManager[HeldLock | None]:
        """The cross-process lock, needed only when the session is stored (shared)."""
        if in_store:
            return self.hold(username)
        return contextlib.nullcontext()

    # -- reading ---------------------------------------------------------------------------------

    def current(
        self, held: HeldLock, username: str, mine: LocalCopy | None
    ) -> StoredSession | LocalCopy | None:
        """The session proven current (under the lock): the stored one, or ``mine`` when the
        marker proves it. ``None``: nothing current is stored (signed out, ended, never).

        Raises :class:`KeyringUnavailable` when nothing can be proven (the session is kept for
        later) and :class:`SessionEnded` when the current token is lost for good.
        """
        marker = held.marker
        proven = (
            mine is not None
            and marker is not None
            and marker.state == LIVE
            and mine.generation == marker.generation
        )
        try:
            stored = self.store.load(self._issuer, username, generation=held.generation)
        except StorageError as exc:
            if proven and self._write_back:
                logger.info("The keyring cannot be read; our copy is the current one")
                return mine
            raise KeyringUnavailable(str(exc)) from exc
        if marker is None:
            return stored  # written by an older version: the keyring is all there is
        if marker.state != LIVE:
            if stored is not None:  # left by a delete that failed in another process
                self._delete(held, username)
            return None
        if stored is not None and stored.generation == marker.generation:
            return stored
        if proven:
            return mine
        if marker.writer_alive():
            raise KeyringUnavailable(messages.HELD_ELSEWHERE)
        # The only process that had the current token exited without saving it: the stored
        # one is spent. Revoke it (which ends the family at the server) and say what happened.
        if stored is not None:
            self._revoke(stored)
        self.remove(held, username, ENDED)
        raise SessionEnded(messages.LOST_UNSAVED, error="invalid_grant")

    def tokens_from(self, stored: StoredSession) -> TokenSet | None:
        return stored.to_tokens(now=self._clock(), wall_now=self._wall_clock())

    # -- writing ---------------------------------------------------------------------------------

    def keep_new(
        self, username: str, tokens: TokenSet, signer: DPoPSigner | None, remember: bool
    ) -> Kept:
        """Store (or not) a new sign-in's session and its key, under the cross-process lock."""
        if not remember and not self.store.status().persistent:
            return Kept(False)  # nothing can have been stored there earlier
        try:
            with self.hold(username) as held:
                if remember:
                    return self._store_new(held, username, tokens, signer)
                # The person chose not to stay signed in: a session stored earlier would
                # otherwise restore them silently next time. Revoke it rather than only forget
                # it, so it does not live on at the server (a window still using it then ends
                # its session too).
                try:
                    stored = self.store.load(self._issuer, username, generation=held.generation)
                except StorageError:
                    stored = None
                if stored is not None:
                    self._revoke(stored)
                if stored is not None or held.marker is not None:
                    self.remove(held, username, SIGNED_OUT)
                return Kept(False)
        except LockTimeout as exc:
            return Kept(False, str(exc))

    def _store_new(
        self, held: HeldLock, username: str, tokens: TokenSet, signer: DPoPSigner | None
    ) -> Kept:
        # A short-lived process leaves the earlier session current unless the new one is
        # really stored (its copy dies with it); a long-lived one writes it back later.
        generation = (held.generation or 0) + 1
        if self._write_back:
            held.advance()
        try:
            self.store.save(self._issuer, username, self._stored_from(tokens, signer, generation))
        except StorageError as exc:
            if self._write_back and not isinstance(exc, SecretTooLong):
                return Kept(True, None, generation, messages.not_saved(str(exc), lasting=True))
            self.store.forget(self._issuer, username)
            return Kept(False, str(exc))
        if not self._write_back:
            held.advance()
        return Kept(True, None, generation)

    def keep_rotation(
        self, held: HeldLock, username: str, tokens: TokenSet, signer: DPoPSigner | None
    ) -> Kept:
        """Store a refresh's new tokens (under the lock), before their access token is used."""
        # First the marker (the server's session changed, whatever happens next), then the
        # keyring: a process dying in between leaves a stored session the marker calls out of
        # date, never one that would be presented spent.
        generation = held.advance()
        try:
            self.store.save(self._issuer, username, self._stored_from(tokens, signer, generation))
        except SecretTooLong as exc:
            self.store.forget(self._issuer, username)
            return Kept(False, str(exc), generation)
        except StorageError as exc:
            logger.warning("The refreshed session could not be saved: %s", exc)
            unsaved = messages.not_saved(str(exc), lasting=self._write_back)
            return Kept(True, None, generation, unsaved)
        return Kept(True, None, generation)

    def remove(self, held: HeldLock, username: str, state: str) -> str | None:
        """Mark the session gone (``state``: signed out or ended) and delete its entry; on
        failure the sentence (the delete is replayed later)."""
        held.advance(state)
        return self._delete(held, username)

    def _delete(self, held: HeldLock, username: str) -> str | None:
        try:
            self.store.delete(self._issuer, username, generation=held.generation)
        except StorageError as exc:
            logger.warning("Cannot delete the stored session: %s", exc)
            return messages.not_forgotten(str(exc))
        return None

    def flush_pending(self) -> bool:
        """Replay the keyring writes that failed, each under its session's lock. True when
        nothing is pending any more."""
        pending = self.store.pending_accounts(self._issuer)
        try:
            for username in pending:
                with self.hold(username) as held:
                    self.store.flush(self._issuer, username, generation=held.generation)
        except (StorageError, LockTimeout) as exc:
            logger.info("The keyring write is still pending: %s", exc)
            return False
        return True

    def _stored_from(
        self, tokens: TokenSet, signer: DPoPSigner | None, generation: int | None
    ) -> StoredSession:
        return StoredSession.from_tokens(
            tokens,
            now=self._clock(),
            wall_now=self._wall_clock(),
            generation=generation,
            dpop_key=signer.key.to_json() if signer is not None else None,
        )

    # -- status ----------------------------------------------------------------------------------

    def probe(self) -> StorageStatus:
        """Ask the store where sessions go now (I/O), and remember the answer."""
        status = self.store.status()
        with self._status_lock:
            self._status = status
        return status

    def last_status(self, in_store: bool) -> StorageStatus:
        """The last probe's answer, without I/O; a stand-in until the store has been probed."""
        with self._status_lock:
            if self._status is not None:
                return self._status
        cached = self.store.cached_status()
        if cached is not None:
            return cached
        if in_store:
            return StorageStatus(persistent=True, backend=type(self.store).__name__)
        return StorageStatus(
            persistent=False,
            backend=type(self.store).__name__,
            reason="The keyring has not been checked yet.",
        )


def effective_storage(
    store_status: StorageStatus, *, signed_in: bool, in_store: bool, reason: str | None
) -> StorageStatus:
    """Where a session is kept: the store's status, unless it lives in memory only (``reason``:
    why, when the person did not choose that)."""
    if not signed_in or in_store:
        return store_status
    # "You chose not to" is only true when there was a keyring to choose; otherwise the
    # keyring's own reason is the one the person needs.
    reason = reason or (store_status.reason if not store_status.persistent else None)
    return StorageStatus(
        persistent=False, backend="memory", reason=reason or messages.NOT_REMEMBERED
    )
