"""Session storage: the OS keyring (via ``keyring``), or memory only.

One entry per (issuer, account) whose value is a :class:`StoredSession` as one small JSON
object: the refresh token, the live access token (so the next process reuses it instead of
refreshing), its wall-clock expiry and, for a DPoP-bound session, the session's private key (a
JWK of about 180 characters: the tokens are useless without it, so it goes where they go). An
entry written by earlier versions (the bare refresh token) is still read. There is deliberately
no file fallback: when no usable keyring exists the session lives in memory for this run and
:class:`StorageStatus` says why.

Keyring calls can hang (a locked Secret Service waiting for a prompt nobody sees, a dead D-Bus
peer). Every call therefore runs in a *daemon* worker thread and is abandoned after ``timeout``
seconds: a hung keyring never blocks the caller for longer, and never blocks interpreter exit.
A keyring that failed is tried again on the next use (a locked keyring is often unlocked a
moment later, a killed daemon is restarted by D-Bus activation); only while two abandoned calls
still hang does the store refuse at once, so hung threads never pile up. A locked Secret Service
collection is reported as locked without asking to unlock it (no prompt pops up, none hangs).

A write that failed is not forgotten: :class:`WriteBackStore` remembers it and replays it before
the stored value is trusted again, unless the session's marker (:mod:`desktop.auth.lock`) says
it was superseded.

Long sessions: Windows Credential Manager refuses secrets over 2560 bytes (its
``CRED_MAX_CREDENTIAL_BLOB_SIZE``; ``keyring`` stores the secret as UTF-16, 2 bytes a character).
On Windows, :class:`KeyringStore` refuses to persist an entry whose JSON value's UTF-16 form
exceeds that limit: it raises :class:`SecretTooLong` with a sentence, the client keeps the
session in memory for this run and reports the reason through :class:`StorageStatus`. The value
is never split across several entries and never written anywhere else. Other platforms have no such
limit, so the check is off there (``max_secret_bytes=None``) unless asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from desktop.auth import messages
from desktop.auth.errors import KeyringUnavailable, SecretTooLong
from desktop.auth.tokens import TokenSet

__all__ = [
    "WINDOWS_MAX_SECRET_BYTES",
    "KeyringStore",
    "MemoryStore",
    "StorageStatus",
    "StoredSession",
    "TokenStore",
    "WriteBackStore",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

WINDOWS_MAX_SECRET_BYTES = 2560
_PROBE_USERNAME = "__jwt-desktop-probe__"


@dataclass(frozen=True)
class StorageStatus:
    """Where refresh tokens go. ``reason`` is a sentence when not persistent, else ``None``."""

    persistent: bool
    backend: str
    reason: str | None = None


_TIMES = ("issued_at", "expires_at")
_INTS = ("generation",)
_TOKENS = ("refresh_token", "access_token", "token_type", "dpop_key")


@dataclass(frozen=True, repr=False)
class StoredSession:
    """The value of one keyring entry. ``repr`` shows no secret.

    Times are wall-clock epoch seconds (a monotonic reading means nothing in another process).
    A new field is one line here, with a default so that older entries still read; unknown
    keys in an entry (written by a newer version) are ignored.
    """

    refresh_token: str
    access_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105  # a scheme's name, not a secret
    scope: str | None = None
    issued_at: float | None = None
    expires_at: float | None = None
    generation: int | None = None  # the marker's generation when written (None: older version)
    dpop_key: str | None = None  # DPoPKey.to_json(): the private key of a bound session

    def to_json(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, value: str) -> StoredSession | None:
        """Parse an entry's value; a bare refresh token (the format before JSON) is read too.
        ``None`` when the value holds no usable refresh token."""
        if not value.startswith(("{", "[", '"')):  # not JSON: a bare refresh token, or junk
            return (
                cls(refresh_token=value) if value and not any(c.isspace() for c in value) else None
            )
        try:
            data: Any = json.loads(value)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("refresh_token"), str):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, item in data.items():
            if key not in known or item is None:
                continue
            if key in _TIMES:
                ok = isinstance(item, (int, float)) and not isinstance(item, bool)
            elif key in _INTS:
                ok = isinstance(item, int) and not isinstance(item, bool)
            elif key in _TOKENS:
                ok = isinstance(item, str) and bool(item)
            else:
                ok = True
            if ok:
                values[key] = item
        if "refresh_token" not in values:
            return None
        return cls(**values)

    @classmethod
    def from_tokens(
        cls,
        tokens: TokenSet,
        *,
        now: float,
        wall_now: float,
        generation: int | None = None,
        dpop_key: str | None = None,
    ) -> StoredSession:
        """What to store for ``tokens`` (``now`` monotonic, ``wall_now`` epoch, read together)
        at marker ``generation``, and the session's DPoP key (``DPoPKey.to_json()``), if it
        has one."""
        assert tokens.refresh_token is not None
        issued_at, expires_at = tokens.to_wall(now=now, wall_now=wall_now)
        return cls(
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
            token_type=tokens.token_type,
            scope=tokens.scope,
            issued_at=issued_at,
            expires_at=expires_at,
            generation=generation,
            dpop_key=dpop_key,
        )

    def to_tokens(self, *, now: float, wall_now: float) -> TokenSet | None:
        """The stored access token as a :class:`TokenSet`; ``None`` when none is stored."""
        if self.access_token is None:
            return None
        return TokenSet.from_stored(
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            token_type=self.token_type,
            scope=self.scope,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
            now=now,
            wall_now=wall_now,
        )

    def __repr__(self) -> str:
        return (
            f"StoredSession(token_type={self.token_type!r}, expires_at={self.expires_at!r}, "
            f"dpop_key={'<redacted>' if self.dpop_key else None})"
        )

    __str__ = __repr__


class TokenStore(Protocol):
    """Storage for one session per (issuer, account)."""

    def load(self, issuer: str, username: str) -> StoredSession | None: ...
    def save(self, issuer: str, username: str, session: StoredSession) -> None: ...
    def delete(self, issuer: str, username: str) -> None: ...
    def status(self) -> StorageStatus: ...


class MemoryStore:
    """Sessions in a dict: gone when the process ends. Thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], StoredSession] = {}
        self._lock = threading.Lock()

    def load(self, issuer: str, username: str) -> StoredSession | None:
        with self._lock:
            return self._tokens.get((issuer, username))

    def save(self, issuer: str, username: str, session: StoredSession) -> None:
        with self._lock:
            self._tokens[(issuer, username)] = session

    def delete(self, issuer: str, username: str) -> None:
        with self._lock:
            self._tokens.pop((issuer, username), None)

    def status(self) -> StorageStatus:
        return StorageStatus(
            persistent=False,
            backend="memory",
            reason=messages.MEMORY_ONLY,
        )

    def cached_status(self) -> StorageStatus:
        return self.status()

    def __repr__(self) -> str:
        return f"MemoryStore(entries={len(self._tokens)})"


_MAX_STUCK = 2  # abandoned keyring calls that may hang at once, per store

_DEFAULT_MAX_SECRET_BYTES = WINDOWS_MAX_SECRET_BYTES if sys.platform == "win32" else None


class KeyringStore:
    """The OS keyring via ``keyring``; every call times out after ``timeout`` seconds.

    Raises :class:`KeyringUnavailable` (a sentence, no secret) when the keyring is missing
    (``fail``/``null`` backends, ``NoKeyringError``), locked, failing or hanging.
    The entry's service name is ``"{service_prefix}:{issuer}"``, its username the person's.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        service_prefix: str = "jwt-desktop",
        max_secret_bytes: int | None = _DEFAULT_MAX_SECRET_BYTES,
    ) -> None:
        self._timeout = timeout
        self._prefix = service_prefix
        self._max_secret_bytes = max_secret_bytes
        self._lock = threading.Lock()
        self._status: StorageStatus | None = None
        self._stuck: list[threading.Thread] = []  # abandoned calls, maybe still hanging
        self._backend_name = "unknown"

    # -- TokenStore --------------------------------------------------------------------------

    def load(self, issuer: str, username: str) -> StoredSession | None:
        service = self._service(issuer)
        value = self._call("read", lambda kr: kr.get_password(service, username))
        if not isinstance(value, str) or not value:
            return None
        session = StoredSession.from_json(value)
        if session is None:
            logger.warning("The stored session is not in a format this version reads")
        return session

    def save(self, issuer: str, username: str, session: StoredSession) -> None:
        value = session.to_json()
        if self._max_secret_bytes is not None:
            size = len(value.encode("utf-16-le"))
            if size > self._max_secret_bytes:
                # Deliberately not cached as "keyring unavailable": the keyring works, this one
                # session does not fit. The client keeps it in memory and says so.
                raise SecretTooLong(messages.secret_too_long(size, self._max_secret_bytes))
        service = self._service(issuer)
        self._call("write", lambda kr: kr.set_password(service, username, value))

    def delete(self, issuer: str, username: str) -> None:
        service = self._service(issuer)

        def _delete(kr: _Keyring) -> None:
            import keyring.errors

            # Nothing stored is fine: the goal is that nothing is stored.
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                kr.delete_password(service, username)

        self._call("delete", _delete)

    def status(self) -> StorageStatus:
        """Probe the keyring (a harmless read, with the timeout): every call asks again, since
        a keyring that was locked or restarting a moment ago may work now."""
        with contextlib.suppress(KeyringUnavailable):  # _call has recorded the reason
            self._call("probe", lambda kr: kr.get_password(self._service("probe"), _PROBE_USERNAME))
        with self._lock:
            assert self._status is not None
            return self._status

    def cached_status(self) -> StorageStatus | None:
        """The outcome of the last keyring call, without any I/O; ``None`` before the first."""
        with self._lock:
            return self._status

    # -- internals ---------------------------------------------------------------------------

    def _service(self, issuer: str) -> str:
        return f"{self._prefix}:{issuer}"

    def _fail(self, reason: str) -> KeyringUnavailable:
        with self._lock:
            self._status = StorageStatus(
                persistent=False, backend=self._backend_name, reason=reason
            )
        logger.warning("Keyring unavailable: %s", reason)
        return KeyringUnavailable(reason)

    def _call(self, what: str, fn: Callable[[_Keyring], T]) -> T:
        with self._lock:
            self._stuck = [thread for thread in self._stuck if thread.is_alive()]
            if len(self._stuck) >= _MAX_STUCK:
                # Those still hang: more threads would only hang beside them.
                raise KeyringUnavailable(messages.keyring_unusable("hung", timeout=self._timeout))
        results: list[T] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def worker() -> None:
            try:
                results.append(self._run(fn))
            except BaseException as exc:  # handed to the caller's thread below
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=worker, name=f"keyring-{what}", daemon=True)
        thread.start()
        if not done.wait(self._timeout):
            with self._lock:
                self._stuck.append(thread)
            raise self._fail(messages.keyring_unusable("hung", timeout=self._timeout))
        if errors:
            raise self._translate(what, errors[0])
        with self._lock:  # a call that worked proves the keyring usable (again)
            self._status = StorageStatus(persistent=True, backend=self._backend_name)
        return results[0]

    def _run(self, fn: Callable[[_Keyring], T]) -> T:
        import keyring

        backend = keyring.get_keyring()
        self._backend_name = _backend_name(backend)
        if _is_unusable_backend(backend):
            raise _NoUsableBackend(backend)
        return fn(_without_prompts(backend))

    def _translate(self, what: str, exc: BaseException) -> KeyringUnavailable:
        import keyring.errors

        if isinstance(exc, _NoUsableBackend):
            return self._fail(messages.keyring_unusable("none", detail=exc.qualname))
        if isinstance(exc, keyring.errors.NoKeyringError):
            return self._fail(messages.keyring_unusable("none"))
        if isinstance(exc, keyring.errors.KeyringLocked):
            return self._fail(messages.keyring_unusable("locked"))
        if isinstance(exc, Exception):
            # Any other failure (D-Bus errors, InitError, PasswordSetError...): the type name
            # is enough to diagnose, and a message from a backend could quote the secret.
            return self._fail(
                messages.keyring_unusable("failed", detail=f"{type(exc).__name__} during {what}")
            )
        raise exc  # KeyboardInterrupt and friends are not ours to swallow

    def __repr__(self) -> str:
        return f"KeyringStore(backend={self._backend_name!r}, timeout={self._timeout!r})"


_DELETE = None  # a pending delete, in WriteBackStore's table


class WriteBackStore:
    """Wraps any :class:`TokenStore`: a save or delete that failed with
    :class:`KeyringUnavailable` is remembered and replayed before the stored value is read
    again, and by :meth:`flush`. A pending write of an older generation than the marker's is
    dropped instead (another process has written a newer session since). Thread-safe.
    """

    def __init__(self, store: TokenStore) -> None:
        self.inner = store
        self._lock = threading.Lock()
        # (issuer, username) -> (session to save, or _DELETE; the marker generation it is for)
        self._pending: dict[tuple[str, str], tuple[StoredSession | None, int | None]] = {}

    def load(
        self, issuer: str, username: str, *, generation: int | None = None
    ) -> StoredSession | None:
        """The stored session, after replaying a pending write of ``generation`` (the
        marker's); raises :class:`StorageError` while that write still fails."""
        self.flush(issuer, username, generation=generation)
        return self.inner.load(issuer, username)

    def save(self, issuer: str, username: str, session: StoredSession) -> None:
        self._write(issuer, username, session, session.generation)

    def delete(self, issuer: str, username: str, *, generation: int | None = None) -> None:
        self._write(issuer, username, _DELETE, generation)

    def status(self) -> StorageStatus:
        return self.inner.status()

    def cached_status(self) -> StorageStatus | None:
        cached = getattr(self.inner, "cached_status", None)
        result = cached() if callable(cached) else None
        return result if isinstance(result, StorageStatus) else None

    def pending(self, issuer: str, username: str) -> bool:
        with self._lock:
            return (issuer, username) in self._pending

    def pending_accounts(self, issuer: str) -> list[str]:
        with self._lock:
            return [user for (iss, user) in self._pending if iss == issuer]

    def forget(self, issuer: str, username: str) -> None:
        """Drop a pending write (the session it was for is gone from this process)."""
        with self._lock:
            self._pending.pop((issuer, username), None)

    def flush(self, issuer: str, username: str, *, generation: int | None) -> None:
        """Replay the pending write, if any and still current; raises while it fails."""
        with self._lock:
            entry = self._pending.get((issuer, username))
        if entry is None:
            return
        value, written_for = entry
        if generation is not None and written_for != generation:
            logger.info("A pending keyring write was superseded by another process; dropped")
            self.forget(issuer, username)
            return
        self._write(issuer, username, value, written_for)
        logger.info("A keyring write that had failed was replayed")

    def _write(
        self, issuer: str, username: str, value: StoredSession | None, generation: int | None
    ) -> None:
        key = (issuer, username)
        try:
            if value is _DELETE:
                self.inner.delete(issuer, username)
            else:
                self.inner.save(issuer, username, value)
        except KeyringUnavailable:
            with self._lock:
                self._pending[key] = (value, generation)
            raise
        with self._lock:
            self._pending.pop(key, None)

    def __repr__(self) -> str:
        return f"WriteBackStore({self.inner!r}, pending={len(self._pending)})"


class _Keyring(Protocol):
    def get_password(self, service: str, username: str) -> str | None: ...
    def set_password(self, service: str, username: str, password: str) -> None: ...
    def delete_password(self, service: str, username: str) -> None: ...


class _NoUsableBackend(Exception):
    def __init__(self, backend: object) -> None:
        cls = type(backend)
        self.qualname = f"{cls.__module__}.{cls.__qualname__}"
        super().__init__(self.qualname)


def _backend_name(backend: object) -> str:
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) and name else type(backend).__name__


_no_prompt_class: list[type[Any]] = []


def _without_prompts(backend: Any) -> Any:
    """``backend``, or for keyring's Secret Service backend a twin that reports a locked
    collection or item as locked instead of asking to unlock it.

    Asking starts an unlock prompt: on a desktop it pops up at a random moment (or behind a
    screen lock), and without a prompter the call may never return, leaving a thread hung for
    good. The person unlocks the keyring themselves; the next call finds it unlocked. The twin
    also closes its D-Bus connection on that path, which keyring's own does not.
    """
    from keyring.backends import SecretService

    if type(backend) is not SecretService.Keyring:
        return backend
    if not _no_prompt_class:
        import keyring.errors
        import secretstorage

        class NoPromptSecretService(SecretService.Keyring):
            def get_preferred_collection(self) -> Any:
                connection = secretstorage.dbus_init()
                try:
                    path = getattr(self, "preferred_collection", None)
                    if isinstance(path, str):
                        collection = secretstorage.Collection(connection, path)
                    else:
                        collection = secretstorage.get_default_collection(connection)
                    locked = collection.is_locked()
                except Exception:
                    connection.close()
                    raise
                if locked:
                    connection.close()
                    raise keyring.errors.KeyringLocked("the collection is locked")
                return collection

            def unlock(self, item: Any) -> None:
                if item.is_locked():
                    raise keyring.errors.KeyringLocked("the item is locked")

        # Defining a backend class registers it with keyring's backend discovery; this one is
        # only ever used here.
        getattr(NoPromptSecretService, "_classes", set()).discard(NoPromptSecretService)
        _no_prompt_class.append(NoPromptSecretService)
    twin: Any = object.__new__(_no_prompt_class[0])  # no __init__: it would probe again
    twin.__dict__.update(backend.__dict__)  # the same settings (preferred collection...)
    return twin


def _is_unusable_backend(backend: object) -> bool:
    """keyring's ``fail`` backend raises on use, its ``null`` one silently stores nothing."""
    from keyring.backends import fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return True
    # A chainer with nothing behind it behaves like the fail backend.
    backends = getattr(backend, "backends", None)
    return backends is not None and isinstance(backends, list) and not backends
