"""The controller: runs the client core off the GUI thread and reports back with signals.

Every core call does network or keyring I/O, so each one runs on a private
:class:`QThreadPool` (as a runnable Qt makes from a callable); the result comes back through a
queued signal and is handled on the GUI thread, which owns every widget. The core itself is
built lazily in the first task, so the first frame never waits for ``requests``, ``keyring`` or
``jwt`` to import.

While the keyring lags behind the session (a write failed: locked, restarting), a timer asks
the core to write it back every few seconds, off the GUI thread, until it succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from PySide6.QtCore import QObject, Qt, QThreadPool, QTimer, Signal, Slot

from desktop.auth.errors import LockTimeout
from desktop.auth.messages import Revocation
from desktop.ui.messages import ErrorKind, describe

WRITE_BACK_MS = 5000

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from desktop.auth.errors import SessionEnded
    from desktop.auth.grants import Grant, Progress
    from desktop.auth.session import SessionStatus, SignInResult
    from desktop.auth.store import StorageStatus


class AuthClientLike(Protocol):
    """What the controller needs from :class:`desktop.auth.AuthClient` (a seam for tests)."""

    on_refreshed: list[Callable[[], None]]
    on_session_ended: list[Callable[[SessionEnded], None]]

    def sign_in(
        self,
        grant: Grant,
        *,
        remember: bool,
        cancel: threading.Event | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> SignInResult: ...
    def restore(self, username: str) -> dict[str, Any] | None: ...
    def profile(self) -> dict[str, Any]: ...
    def sign_out(self) -> Revocation: ...
    def status(self) -> SessionStatus: ...
    def storage_status(self) -> StorageStatus: ...
    def write_back(self) -> bool: ...
    def close(self) -> None: ...


@dataclass
class _Operation:
    name: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    # A sign-in's hand-over, under ``lock``: once ``settled``, the worker has looked at
    # ``cancelled`` for the last time, so undoing a cancelled sign-in (one that
    # ``started_session``) is the GUI thread's job.
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False
    started_session: bool = False
    # Set by the worker when it starts the call: a queued call dropped at shutdown never ran.
    ran: bool = False


class SessionController(QObject):
    """Runs the core's calls in a worker thread; every signal is emitted on the GUI thread.

    Signals:
        storageChecked(object): the :class:`StorageStatus` of the token store, after the probe.
        signInSucceeded(dict): the profile, after a sign-in with a password.
        signInFailed(str, str): an :class:`ErrorKind` value and a sentence.
        signedInWithoutProfile(str, str): kind and sentence: the sign-in itself succeeded
            (the session is live, stored if asked) but fetching the profile failed.
        restoreFinished(object): the profile after a silent sign-in, or None (nothing stored).
        profileLoaded(dict): the profile, after :meth:`reload_profile`.
        requestFailed(str, str): kind and sentence of a failure that keeps the session
            (unreachable server, server error) during a restore or a reload.
        sessionEnded(str): the session is over (refresh token reused, revoked, expired); the
            stored token is gone; the argument is the reason, a sentence.
        signedOut(str): after :meth:`sign_out`; a :class:`desktop.auth.messages.Revocation`
            value (what the server did: revoked, not confirmed, offers no revocation).
        refreshed(): the core renewed the access token.
        busyChanged(bool): whether any request is in flight.
        pictureLoaded(str, bytes): the URL and the image bytes of a profile picture.
    """

    storageChecked = Signal(object)
    signInSucceeded = Signal(dict)
    signInFailed = Signal(str, str)
    signedInWithoutProfile = Signal(str, str)
    restoreFinished = Signal(object)
    profileLoaded = Signal(dict)
    requestFailed = Signal(str, str)
    sessionEnded = Signal(str)
    signedOut = Signal(str)
    refreshed = Signal()
    busyChanged = Signal(bool)
    pictureLoaded = Signal(str, bytes)

    # Private: outcomes and observer events cross from the worker thread to the GUI thread.
    # Only plain values travel in the queued signal (an id, strings); the outcome objects wait
    # in a dict under a lock, so no Python object's lifetime depends on how PySide copies
    # queued arguments between threads.
    _finished = Signal(int)
    _observed = Signal(str, str)

    def __init__(
        self,
        client_factory: Callable[[], AuthClientLike],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._client_factory = client_factory
        self._client: AuthClientLike | None = None
        self._client_lock = threading.Lock()
        self._pool = QThreadPool(self)
        # One worker: session operations run in the order they were asked for, so a sign-out
        # can never overtake the sign-in before it, and a discarded sign-in is undone before
        # the next one starts.
        self._pool.setMaxThreadCount(1)
        # Pictures come from anywhere on the web: their own thread, so a slow image host never
        # holds up a session operation (nor waits behind one).
        self._picture_pool = QThreadPool(self)
        self._picture_pool.setMaxThreadCount(1)
        self._operations: dict[int, _Operation] = {}
        self._picture_urls: dict[int, str] = {}
        self._outcomes: dict[int, tuple[object, BaseException | None]] = {}
        self._outcomes_lock = threading.Lock()
        self._next_id = 0
        self._sign_in_op: int | None = None
        self._signed_in = False
        self._closing = False
        self._write_back_timer = QTimer(self)
        self._write_back_timer.setInterval(WRITE_BACK_MS)
        self._write_back_timer.timeout.connect(self._write_back_if_needed)
        self._write_back_timer.start()
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._observed.connect(self._on_observed, Qt.ConnectionType.QueuedConnection)

    # -- state readable on the GUI thread -------------------------------------------------

    @property
    def signed_in(self) -> bool:
        return self._signed_in

    def status(self) -> SessionStatus | None:
        """The session's status (cheap, no I/O), or None before the core is built."""
        client = self._client
        return client.status() if client is not None else None

    def busy(self) -> bool:
        background = ("warm_up", "picture", "write_back")
        return any(op.name not in background for op in self._operations.values())

    # -- requests --------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Build the core and probe the keyring in the background (emits storageChecked)."""
        self._submit("warm_up", lambda client, op: client.storage_status())

    def sign_in(self, grant: Grant, *, remember: bool) -> None:
        """Sign in with ``grant``; emits signInSucceeded, signedInWithoutProfile or
        signInFailed."""

        def call(client: AuthClientLike, op: _Operation) -> object:
            result: SignInResult | None = None
            try:
                result = client.sign_in(grant, remember=remember, cancel=op.cancelled)
            finally:
                with op.lock:
                    op.settled = True
                    op.started_session = result is not None
                    undo = result is not None and op.cancelled.is_set()
                if undo:
                    # The person cancelled while this was in flight: they did not want this
                    # session, so it is revoked rather than left behind (and in the keyring).
                    client.sign_out()
            return result

        self.cancel_sign_in()
        self._sign_in_op = self._submit("sign_in", call)

    def cancel_sign_in(self) -> None:
        """Forget the sign-in in flight: the worker cannot be stopped, its result is ignored,
        and a session it started is signed out (revoked, and deleted from the keyring)."""
        if self._sign_in_op is None:
            return
        operation = self._operations.get(self._sign_in_op)
        self._sign_in_op = None
        if operation is None:
            return
        with operation.lock:
            operation.cancelled.set()
            too_late_for_the_worker = operation.settled and operation.started_session
        if too_late_for_the_worker:
            # The sign-in finished before the flag was set; its result waits for this thread,
            # which will ignore it. Undo it now, queued before any sign-in that follows, so
            # that only the session the person cancelled is signed out.
            self._submit("discard", lambda client, op: client.sign_out())

    def restore(self, username: str) -> None:
        """Silent sign-in from the stored refresh token; emits restoreFinished, or
        sessionEnded / requestFailed."""
        self._submit("restore", lambda client, op: client.restore(username))

    def reload_profile(self) -> None:
        """Fetch the profile again (refreshing the access token first if it is stale)."""
        self._submit("profile", lambda client, op: client.profile())

    def load_picture(self, url: str) -> None:
        """Fetch a profile picture (no token is sent); emits pictureLoaded, or nothing."""
        from desktop.ui.picture import fetch_picture

        op_id = self._run("picture", lambda op: fetch_picture(url), self._picture_pool)
        self._picture_urls[op_id] = url

    def sign_out(self) -> None:
        """Revoke at the server and forget the session locally; emits signedOut."""
        self.cancel_sign_in()
        self._signed_in = False
        self._submit("sign_out", lambda client, op: client.sign_out())

    @Slot()
    def _write_back_if_needed(self) -> None:
        status = self.status()
        if status is None or status.unsaved is None or self._closing:
            return
        if any(op.name == "write_back" for op in self._operations.values()):
            return  # one at a time: a hanging keyring gets no pile of calls
        self._submit("write_back", lambda client, op: client.write_back())

    def shutdown(self) -> None:
        """Drop queued work, wait for the request in flight, close the core."""
        self._closing = True
        self._write_back_timer.stop()
        for pool in (self._pool, self._picture_pool):
            pool.clear()
        for pool in (self._pool, self._picture_pool):
            pool.waitForDone()
        client = self._client
        if client is not None:
            if any(op.name == "discard" and not op.ran for op in self._operations.values()):
                # A cancelled sign-in's undo was still queued: it must not be dropped with the
                # rest, or the session the person cancelled would outlive the app.
                client.sign_out()
            client.close()

    # -- machinery -------------------------------------------------------------------------

    def _client_in_worker(self) -> AuthClientLike:
        with self._client_lock:
            if self._client is None:
                client = self._client_factory()
                client.on_refreshed.append(lambda: self._observed.emit("refreshed", ""))
                client.on_session_ended.append(
                    lambda error: self._observed.emit("ended", describe(error).message)
                )
                self._client = client
            return self._client

    def _submit(self, name: str, call: Callable[[AuthClientLike, _Operation], object]) -> int:
        """Queue a call on the core, in order with the other session operations."""
        return self._run(name, lambda op: call(self._client_in_worker(), op), self._pool)

    def _run(self, name: str, call: Callable[[_Operation], object], pool: QThreadPool) -> int:
        was_busy = self.busy()
        op_id = self._next_id
        self._next_id += 1
        operation = _Operation(name)
        self._operations[op_id] = operation

        def run() -> None:
            # Runs on the pool's thread; every failure goes back to the GUI thread as a value.
            operation.ran = True
            outcome: tuple[object, BaseException | None]
            try:
                outcome = (call(operation), None)
            except Exception as error:
                outcome = (None, error)
            with self._outcomes_lock:
                self._outcomes[op_id] = outcome
            self._finished.emit(op_id)

        # A plain callable, not a QRunnable subclass: Qt owns the runnable it wraps it in, so
        # no Python wrapper can be freed on the GUI thread while the pool thread still uses it.
        pool.start(run)
        if not was_busy and self.busy():
            self.busyChanged.emit(True)
        return op_id

    @Slot(int)
    def _on_finished(self, op_id: int) -> None:
        with self._outcomes_lock:
            result, error = self._outcomes.pop(op_id)
        was_busy = self.busy()
        operation = self._operations.pop(op_id)
        if was_busy and not self.busy():
            self.busyChanged.emit(False)
        if self._closing:
            return
        if operation.name == "sign_in":
            if operation.cancelled.is_set():
                return
            self._sign_in_op = None
        if operation.name in ("discard", "write_back"):
            # A cancelled sign-in undone: nothing to tell anyone. A write-back: the session
            # panel shows the stored state on its next tick.
            return
        if operation.name == "picture":
            self._picture_done(self._picture_urls.pop(op_id), result, error)
        elif isinstance(error, BaseException):
            self._failed(operation.name, error)
        else:
            self._succeeded(operation.name, result)

    def _succeeded(self, name: str, result: object) -> None:
        if name == "warm_up":
            self.storageChecked.emit(result)
        elif name == "sign_in":
            # The sign-in itself succeeded: the session is live (stored, if asked). Only the
            # profile may have failed, and reporting a failed sign-in then would leave a live
            # session (maybe in the keyring) behind a dialog that says it failed.
            self._signed_in = True
            signed_in = cast("SignInResult", result)
            if signed_in.profile_error is not None or signed_in.profile is None:
                failure = describe(signed_in.profile_error or RuntimeError("no profile"))
                self.signedInWithoutProfile.emit(failure.kind.value, failure.message)
            else:
                self.signInSucceeded.emit(signed_in.profile)
        elif name == "restore":
            self._signed_in = result is not None
            self.restoreFinished.emit(result)
        elif name == "profile":
            self.profileLoaded.emit(result)
        elif name == "sign_out":
            self.signedOut.emit(Revocation(result).value)

    def _picture_done(self, url: str, result: object, error: BaseException | None) -> None:
        if isinstance(result, bytes):
            self.pictureLoaded.emit(url, result)
        else:
            # Not worth a word to the person: the initials stay.
            _log.info("No profile picture: %s", error)

    def _failed(self, name: str, error: BaseException) -> None:
        failure = describe(error)
        if name == "sign_in":
            self.signInFailed.emit(failure.kind.value, failure.message)
        elif name == "warm_up":
            # The core could not even be built (bad configuration, demo server down): every
            # request would fail the same way, so it is reported like a failed request.
            self.requestFailed.emit(failure.kind.value, failure.message)
        elif name == "sign_out" and (
            failure.kind is ErrorKind.KEYRING or isinstance(error, LockTimeout)
        ):
            # Nothing was forgotten (the current refresh token could not be known): still
            # signed in, and the person is told why the sign-out did not happen.
            self._signed_in = True
            self.requestFailed.emit(failure.kind.value, failure.message)
        elif name == "sign_out":
            # The core forgets the session locally whatever else happened; only report it.
            self.signedOut.emit(Revocation.NOT_CONFIRMED.value)
        elif failure.kind is ErrorKind.SESSION_ENDED:
            # The core's observer may have reported this already (see _on_observed).
            if self._signed_in or name == "restore":
                self._signed_in = False
                self.sessionEnded.emit(failure.message)
        else:
            self.requestFailed.emit(failure.kind.value, failure.message)

    @Slot(str, str)
    def _on_observed(self, event: str, message: str) -> None:
        if self._closing:
            return
        if event == "refreshed":
            self.refreshed.emit()
        elif event == "ended" and self._signed_in:
            self._signed_in = False
            self.sessionEnded.emit(message)
