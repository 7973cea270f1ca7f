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
After a timeout the store stops calling the keyring for the rest of the run, so abandoned
threads cannot pile up.

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
import hashlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from desktop.auth import messages
from desktop.auth.errors import KeyringUnavailable, LockTimeout, SecretTooLong
from desktop.auth.tokens import TokenSet

__all__ = [
    "WINDOWS_MAX_SECRET_BYTES",
    "KeyringStore",
    "MemoryStore",
    "SessionLock",
    "StorageStatus",
    "StoredSession",
    "TokenStore",
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
        cls, tokens: TokenSet, *, now: float, wall_now: float, dpop_key: str | None = None
    ) -> StoredSession:
        """What to store for ``tokens`` (``now`` monotonic, ``wall_now`` epoch, read together)
        and the session's DPoP key (``DPoPKey.to_json()``), if it has one."""
        assert tokens.refresh_token is not None
        issued_at, expires_at = tokens.to_wall(now=now, wall_now=wall_now)
        return cls(
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
            token_type=tokens.token_type,
            scope=tokens.scope,
            issued_at=issued_at,
            expires_at=expires_at,
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


class SessionLock:
    """The cross-process lock of one stored session: a file per (issuer, account) in
    ``lock_dir`` (``None``: :func:`desktop.config.state_dir`). Every process sharing a stored
    session (the GUI, the CLI, two windows) must use the same directory."""

    def __init__(self, lock_dir: Path | None, *, timeout: float) -> None:
        self._lock_dir = lock_dir
        self._timeout = timeout

    @contextlib.contextmanager
    def hold(self, issuer: str, account: str) -> Iterator[None]:
        """Hold the lock (:class:`LockTimeout` after ``timeout`` seconds of waiting)."""
        import filelock  # only needed once a session is stored

        lock_dir = self._lock_dir
        if lock_dir is None:
            from desktop.config import state_dir

            lock_dir = state_dir()
        lock_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{issuer}\n{account}".encode()).hexdigest()[:32]
        lock = filelock.FileLock(str(lock_dir / f"refresh-{key}.lock"), timeout=self._timeout)
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise LockTimeout(messages.LOCK_TIMEOUT) from exc
        try:
            yield
        finally:
            lock.release()


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
        self._hung = False
        self._backend_name = "unknown"

    # -- TokenStore --------------------------------------------------------------------------

    def load(self, issuer: str, username: str) -> StoredSession | None:
        self._require_usable()
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
        self._require_usable()
        service = self._service(issuer)
        self._call("write", lambda kr: kr.set_password(service, username, value))

    def delete(self, issuer: str, username: str) -> None:
        # Tried even after a failure made the store "unavailable" (unless the keyring hung): a
        # failed write of a rotated token leaves the spent one behind, and removing it is what
        # keeps the next start from presenting it (which the server would treat as theft).
        service = self._service(issuer)

        def _delete(kr: _Keyring) -> None:
            import keyring.errors

            # Nothing stored is fine: the goal is that nothing is stored.
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                kr.delete_password(service, username)

        self._call("delete", _delete)

    def status(self) -> StorageStatus:
        """Probe the keyring once (a harmless read, with the timeout) and cache the answer."""
        with self._lock:
            if self._status is not None:
                return self._status
        with contextlib.suppress(KeyringUnavailable):  # _call has cached the reason
            self._call("probe", lambda kr: kr.get_password(self._service("probe"), _PROBE_USERNAME))
        with self._lock:
            if self._status is None:
                self._status = StorageStatus(persistent=True, backend=self._backend_name)
            return self._status

    def cached_status(self) -> StorageStatus | None:
        """The last probed status, without any I/O; ``None`` before the first keyring call."""
        with self._lock:
            return self._status

    # -- internals ---------------------------------------------------------------------------

    def _service(self, issuer: str) -> str:
        return f"{self._prefix}:{issuer}"

    def _require_usable(self) -> None:
        with self._lock:
            status = self._status
        if status is not None and not status.persistent:
            raise KeyringUnavailable(status.reason or messages.keyring_unusable("unavailable"))

    def _fail(self, reason: str) -> KeyringUnavailable:
        with self._lock:
            self._status = StorageStatus(
                persistent=False, backend=self._backend_name, reason=reason
            )
        logger.warning("Keyring unavailable: %s", reason)
        return KeyringUnavailable(reason)

    def _call(self, what: str, fn: Callable[[_Keyring], T]) -> T:
        with self._lock:
            if self._hung:
                raise KeyringUnavailable(
                    self._status.reason if self._status and self._status.reason else "hung"
                )
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
                self._hung = True
            raise self._fail(messages.keyring_unusable("hung", timeout=self._timeout))
        if errors:
            raise self._translate(what, errors[0])
        with self._lock:
            if self._status is None:  # a call that worked proves the keyring usable
                self._status = StorageStatus(persistent=True, backend=self._backend_name)
        return results[0]

    def _run(self, fn: Callable[[_Keyring], T]) -> T:
        import keyring

        backend = keyring.get_keyring()
        self._backend_name = _backend_name(backend)
        if _is_unusable_backend(backend):
            raise _NoUsableBackend(backend)
        return fn(backend)

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


def _is_unusable_backend(backend: object) -> bool:
    """keyring's ``fail`` backend raises on use, its ``null`` one silently stores nothing."""
    from keyring.backends import fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return True
    # A chainer with nothing behind it behaves like the fail backend.
    backends = getattr(backend, "backends", None)
    return backends is not None and isinstance(backends, list) and not backends
