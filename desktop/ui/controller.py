"""The controller: runs the client core off the GUI thread and reports back with signals.

Every core call does network or keyring I/O, so each one runs on a private
:class:`QThreadPool` (as a runnable Qt makes from a callable); the result comes back through a
queued signal and is handled on the GUI thread, which owns every widget. The core itself is
built lazily in the first task, so the first frame never waits for ``requests``, ``keyring`` or
``jwt`` to import."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from PySide6.QtCore import QObject, Qt, QThreadPool, QTimer, Signal, Slot

from desktop.auth.messages import Revocation
from desktop.ui.messages import ErrorKind, Failure, describe

WRITE_BACK_MS = 5000

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from desktop.auth.errors import SessionEnded
    from desktop.auth.grants import Grant, Progress
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.session import SessionStatus, SignInResult
    from desktop.auth.store import StorageStatus
    from desktop.auth.tokens import TokenSet


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
    def current_tokens(self) -> TokenSet | None: ...
    def metadata(self) -> ServerMetadata: ...
    def signing_keys(self) -> dict[str, Any]: ...
    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...
    def write_back(self) -> bool: ...
    def close(self) -> None: ...


T = TypeVar("T")
# What the window shows as "Loading…" (and disables Reload for): the session's own requests,
# not the keyring probe, a picture or a view's fetch.
_BUSY_OPERATIONS = frozenset({"sign_in", "discard", "restore", "profile", "sign_out"})
Success = Callable[[T], None]
FailureHandler = Callable[[Failure], None]


def _ignore(value: object) -> None:
    """The handler of an outcome nobody needs (a discarded sign-in's undo)."""


@dataclass
class _Operation:
    name: str
    call: Callable[[_Operation], object]
    success: Callable[[Any], None]
    failure: FailureHandler | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    # A sign-in's hand-over, under ``lock``: once ``settled``, the worker has looked at
    # ``cancelled`` for the last time, so undoing a cancelled sign-in (one that
    # ``started_session``) is the GUI thread's job.
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False
    started_session: bool = False
    # Set by the worker when it starts the call: a queued call dropped at shutdown never ran.
    ran: bool = False


class Op(Generic[T]):
    """One background call on the core with its own handlers, after Anki's ``QueryOp``::

        controller.op("sessions", lambda client: list_sessions(client), show).failure(say).run()

    ``call`` runs on the controller's worker; ``success`` gets its typed result and ``failure``
    a :class:`Failure`, both on the GUI thread. A failure that ends the session is not the
    operation's to handle: the controller reports it once, as ``sessionEnded``. Without a
    failure handler the failure goes to the controller's ``requestFailed``.
    """

    def __init__(
        self,
        controller: SessionController,
        name: str,
        call: Callable[[AuthClientLike], T],
        success: Success[T],
    ) -> None:
        self._controller = controller
        self._name = name
        self._call = call
        self._success = success
        self._failure: FailureHandler | None = None

    def failure(self, handler: FailureHandler) -> Op[T]:
        self._failure = handler
        return self

    def run(self) -> int:
        call = self._call
        return self._controller._submit(
            self._name, lambda client, op: call(client), self._success, self._failure
        )


@dataclass(frozen=True)
class Replaced:
    """A session that was not stored, signed out because another account signed in over it:
    who it was, at which server, and what the server did with it."""

    username: str
    server_url: str
    revocation: Revocation


@dataclass(frozen=True)
class _SignedInOver:
    result: SignInResult
    replaced: Replaced


@dataclass(frozen=True)
class Reloaded:
    """The profile fetched again; ``renewed``: the access token was refreshed on the way."""

    profile: dict[str, Any]
    renewed: bool


class SessionController(QObject):
    """Runs the core's calls in a worker thread; every handler and signal runs on the GUI
    thread. Each request carries its own success and failure handlers (:class:`Op`); the
    signals are for what belongs to the session rather than to one request.

    Signals:
        sessionEnded(object): a :class:`Failure`: the session is over (refresh token reused,
            revoked, expired); the stored token is gone.
        requestFailed(object): a :class:`Failure` of a request that had no failure handler.
        refreshed(): the core renewed the access token.
        busyChanged(bool): whether any request is in flight.
        settled(str): an operation's handlers have run; its name (tests wait on it).
        signInProgress(str, str, str, str): what the person must do for the sign-in in flight
            to go on: a sentence, a URL to open, a code to enter, the URL with the code in it
            (empty strings when the grant has none).
    """

    sessionEnded = Signal(object)
    requestFailed = Signal(object)
    refreshed = Signal()
    busyChanged = Signal(bool)
    settled = Signal(str)
    signInProgress = Signal(str, str, str, str)

    # Private: outcomes and observer events cross from the worker thread to the GUI thread.
    # Only plain values travel in the queued signal (an id, strings); the outcome objects wait
    # in a dict under a lock, so no Python object's lifetime depends on how PySide copies
    # queued arguments between threads.
    _finished = Signal(int)
    _observed = Signal(str, str)
    _progressed = Signal(int, str, str, str, str)

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
        self._outcomes: dict[int, tuple[object, BaseException | None]] = {}
        self._outcomes_lock = threading.Lock()
        self._next_id = 0
        self._sign_in_op: int | None = None
        self._signed_in = False
        self._closing = False
        # While the keyring lags behind the session (a write failed: locked, restarting), the
        # core is asked to write it back every few seconds, off the GUI thread.
        self._write_back_timer = QTimer(self)
        self._write_back_timer.setInterval(WRITE_BACK_MS)
        self._write_back_timer.timeout.connect(self._write_back_if_needed)
        self._write_back_timer.start()
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._observed.connect(self._on_observed, Qt.ConnectionType.QueuedConnection)
        self._progressed.connect(self._on_progressed, Qt.ConnectionType.QueuedConnection)

    # -- state readable on the GUI thread -------------------------------------------------

    @property
    def signed_in(self) -> bool:
        return self._signed_in

    def status(self) -> SessionStatus | None:
        """The session's status (cheap, no I/O), or None before the core is built."""
        client = self._client
        return client.status() if client is not None else None

    def busy(self) -> bool:
        return any(op.name in _BUSY_OPERATIONS for op in self._operations.values())

    # -- requests --------------------------------------------------------------------------

    def op(self, name: str, call: Callable[[AuthClientLike], T], success: Success[T]) -> Op[T]:
        """A call on the core with its handlers; nothing runs before :meth:`Op.run`."""
        return Op(self, name, call, success)

    def warm_up(self, success: Success[StorageStatus], failure: FailureHandler) -> None:
        """Build the core and probe the keyring in the background."""
        self.op("warm_up", lambda client: client.storage_status(), success).failure(failure).run()

    def discover(self, success: Success[ServerMetadata]) -> None:
        """Fetch the server's metadata (which ways of signing in it offers). A failure is only
        logged: the sign-in itself reports it."""

        def failed(failure: Failure) -> None:
            _log.info("Discovery for the sign-in dialog failed: %s", failure.message)

        self.op("discover", lambda client: client.metadata(), success).failure(failed).run()

    def sign_in(
        self,
        grant: Grant,
        *,
        remember: bool,
        success: Success[SignInResult],
        failure: FailureHandler,
        replaced: Success[Replaced] | None = None,
    ) -> None:
        """Sign in with ``grant``; ``signInProgress`` while it waits for the person. ``success``
        also gets a sign-in whose profile failed (the session is live then: see
        :attr:`SignInResult.profile_error`).

        Over a session that is not stored (another account added while the person chose not
        to stay signed in), the new sign-in runs on a second core, so the current session
        stays whole if it fails or is cancelled; once it succeeds, the old session is signed
        out (revoked at the server: it could not be come back to, and left alone its refresh
        token would stay valid there until it expires), and ``replaced`` hears of it first.
        """
        op_id = self._next_id  # the id _submit gives this operation

        def progress(step: Progress) -> None:
            self._progressed.emit(
                op_id, step.message, step.url or "", step.user_code or "", step.complete_url or ""
            )

        def call(client: AuthClientLike, op: _Operation) -> object:
            current = client.status()
            unstored = current.username if current.signed_in and not current.remembered else None
            target = self._client_factory() if unstored is not None else client
            result: SignInResult | None = None
            try:
                result = target.sign_in(
                    grant, remember=remember, cancel=op.cancelled, progress=progress
                )
            finally:
                with op.lock:
                    op.settled = True
                    op.started_session = result is not None
                    undo = result is not None and op.cancelled.is_set()
                if undo:
                    # The person cancelled while this was in flight: they did not want this
                    # session, so it is revoked rather than left behind (and in the keyring).
                    target.sign_out()
                if target is not client and (undo or result is None):
                    target.close()  # the current session goes on, on its own core
            if unstored is None or undo or result is None:
                return result
            try:
                revocation = client.sign_out()
            except Exception as error:  # the new session must not be lost over the old one
                _log.warning("Could not sign out the replaced session: %s", type(error).__name__)
                revocation = Revocation.NOT_CONFIRMED
            self._adopt_client(target)
            return _SignedInOver(result, Replaced(unstored, current.server_url, revocation))

        def succeeded(outcome: SignInResult | _SignedInOver) -> None:
            # The sign-in itself succeeded: the session is live (stored, if asked), even when
            # only its profile failed.
            self._signed_in = True
            if isinstance(outcome, _SignedInOver):
                if replaced is not None:
                    replaced(outcome.replaced)
                outcome = outcome.result
            success(outcome)

        self.cancel_sign_in()
        self._sign_in_op = self._submit("sign_in", call, succeeded, failure)
        assert self._sign_in_op == op_id

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
            self._submit("discard", lambda client, op: client.sign_out(), _ignore, _ignore)

    def restore(
        self,
        username: str,
        success: Success[dict[str, Any] | None],
        failure: FailureHandler,
    ) -> None:
        """Silent sign-in from the stored refresh token: the profile, or None (nothing
        stored); a dead session is reported as ``sessionEnded``."""

        def restored(profile: dict[str, Any] | None) -> None:
            self._signed_in = profile is not None
            success(profile)

        self._submit("restore", lambda client, op: client.restore(username), restored, failure)

    def switch_account(
        self,
        username: str,
        client_factory: Callable[[], AuthClientLike] | None,
        success: Success[dict[str, Any] | None],
        failure: FailureHandler,
    ) -> None:
        """Restore another account's stored session, like :meth:`restore` (same handlers).

        The current session stays in the keyring when it is stored there; one that is not
        (the person chose not to stay signed in) could not be come back to, so it is signed
        out rather than left alive at the server. ``client_factory`` (another server) replaces
        the core, in the worker, after the requests queued before.
        """

        def call(client: AuthClientLike, op: _Operation) -> object:
            status = client.status()
            if status.signed_in and not status.remembered:
                client.sign_out()
            if client_factory is not None:
                client = self._replace_client(client_factory)
            return client.restore(username)

        def restored(profile: dict[str, Any] | None) -> None:
            self._signed_in = profile is not None
            success(profile)

        self.cancel_sign_in()
        self._signed_in = False
        self._submit("restore", call, restored, failure)

    def _replace_client(self, client_factory: Callable[[], AuthClientLike]) -> AuthClientLike:
        with self._client_lock:
            old, self._client = self._client, None
            self._client_factory = client_factory
        if old is not None:
            old.close()
        return self._client_in_worker()

    def _adopt_client(self, client: AuthClientLike) -> None:
        """``client`` (built by the same factory) becomes the core; the old one is closed."""
        with self._client_lock:
            old, self._client = self._client, self._observed_client(client)
        if old is not None:
            old.close()

    def reload_profile(self, success: Success[Reloaded], failure: FailureHandler) -> None:
        """Fetch the profile again (refreshing the access token first if it is stale)."""

        def call(client: AuthClientLike) -> Reloaded:
            before = client.status().refresh_count
            profile = client.profile()
            return Reloaded(profile, renewed=client.status().refresh_count != before)

        self.op("profile", call, success).failure(failure).run()

    def load_picture(self, url: str, success: Success[bytes]) -> None:
        """Fetch a profile picture (no token is sent); a failure is only logged."""
        from desktop.ui.picture import fetch_picture

        def failed(failure: Failure) -> None:
            # Not worth a word to the person: the initials stay.
            _log.info("No profile picture: %s", failure.message)

        self._run("picture", lambda op: fetch_picture(url), self._picture_pool, success, failed)

    def sign_out(self, success: Success[Revocation]) -> None:
        """Revoke at the server and forget the session locally; ``success`` gets what the
        server did (the core forgets the session locally whatever happened)."""
        self.cancel_sign_in()
        self._signed_in = False

        def failed(failure: Failure) -> None:
            if failure.kind in (ErrorKind.KEYRING, ErrorKind.BUSY):
                # Nothing was forgotten (the current refresh token could not be known): still
                # signed in, and the person is told why the sign-out did not happen.
                self._signed_in = True
                self.requestFailed.emit(failure)
            else:
                # The core forgot the session locally; only the server's part is unknown.
                success(Revocation.NOT_CONFIRMED)

        self._submit("sign_out", lambda client, op: client.sign_out(), success, failed)

    @Slot()
    def _write_back_if_needed(self) -> None:
        status = self.status()
        if status is None or status.unsaved is None or self._closing:
            return
        if any(op.name == "write_back" for op in self._operations.values()):
            return  # one at a time: a hanging keyring gets no pile of calls
        # Quiet either way: the session panel shows the stored state on its next tick.
        self._submit("write_back", lambda client, op: client.write_back(), _ignore, _ignore)

    def shutdown(self) -> None:
        """Drop queued work, wait for the request in flight, close the core."""
        self._write_back_timer.stop()
        # A sign-in waiting for the person (in the browser, on another device) would otherwise
        # hold the exit for minutes: it is cancelled, and undone if it already finished.
        self.cancel_sign_in()
        self._closing = True
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
                self._client = self._observed_client(self._client_factory())
            return self._client

    def _observed_client(self, client: AuthClientLike) -> AuthClientLike:
        client.on_refreshed.append(lambda: self._observed.emit("refreshed", ""))
        client.on_session_ended.append(
            lambda error: self._observed.emit("ended", describe(error).message)
        )
        return client

    def _submit(
        self,
        name: str,
        call: Callable[[AuthClientLike, _Operation], object],
        success: Callable[[Any], None],
        failure: FailureHandler | None,
    ) -> int:
        """Queue a call on the core, in order with the other session operations."""
        return self._run(
            name, lambda op: call(self._client_in_worker(), op), self._pool, success, failure
        )

    def _run(
        self,
        name: str,
        call: Callable[[_Operation], object],
        pool: QThreadPool,
        success: Callable[[Any], None],
        failure: FailureHandler | None,
    ) -> int:
        was_busy = self.busy()
        op_id = self._next_id
        self._next_id += 1
        operation = _Operation(name, call, success, failure)
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
        if error is None:
            operation.success(result)
        else:
            self._failed(operation, describe(error))
        self.settled.emit(operation.name)

    def _failed(self, operation: _Operation, failure: Failure) -> None:
        if failure.kind is ErrorKind.SESSION_ENDED and operation.name not in ("sign_in",):
            # The core's observer may have reported this already (see _on_observed).
            if self._signed_in or operation.name == "restore":
                self._signed_in = False
                self.sessionEnded.emit(failure)
        elif operation.failure is not None:
            operation.failure(failure)
        else:
            self.requestFailed.emit(failure)

    @Slot(int, str, str, str, str)
    def _on_progressed(self, op_id: int, message: str, url: str, code: str, complete: str) -> None:
        # Only the sign-in in flight speaks: a cancelled one's late progress is dropped.
        if not self._closing and op_id == self._sign_in_op:
            self.signInProgress.emit(message, url, code, complete)

    @Slot(str, str)
    def _on_observed(self, event: str, message: str) -> None:
        if self._closing:
            return
        if event == "refreshed":
            self.refreshed.emit()
        elif event == "ended" and self._signed_in:
            self._signed_in = False
            self.sessionEnded.emit(Failure(ErrorKind.SESSION_ENDED, message))
