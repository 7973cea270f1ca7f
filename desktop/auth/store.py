"""Refresh-token storage: the OS keyring (via ``keyring``), or memory only.

Only the refresh token is ever stored, keyed by issuer and username. There is deliberately no
file fallback: when no usable keyring exists the session lives in memory for this run and
:class:`StorageStatus` says why.

Keyring calls can hang (a locked Secret Service waiting for a prompt nobody sees, a dead D-Bus
peer). Every call therefore runs in a *daemon* worker thread and is abandoned after ``timeout``
seconds: a hung keyring never blocks the caller for longer, and never blocks interpreter exit.
After a timeout the store stops calling the keyring for the rest of the run, so abandoned
threads cannot pile up.

Long refresh tokens: Windows Credential Manager refuses secrets over 2560 bytes (its
``CRED_MAX_CREDENTIAL_BLOB_SIZE``; ``keyring`` stores the secret as UTF-16, 2 bytes a character).
On Windows, :class:`KeyringStore` refuses to persist a refresh token whose UTF-16 form exceeds
that limit: it raises :class:`KeyringUnavailable` with a sentence, the client keeps the token in
memory for this run and reports the reason through :class:`StorageStatus`. The token is never
split across several entries and never written anywhere else. Other platforms have no such
limit, so the check is off there (``max_secret_bytes=None``) unless asked for.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from desktop.auth.errors import KeyringUnavailable

__all__ = [
    "WINDOWS_MAX_SECRET_BYTES",
    "KeyringStore",
    "MemoryStore",
    "StorageStatus",
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


class TokenStore(Protocol):
    """Storage for one refresh token per (issuer, username)."""

    def load(self, issuer: str, username: str) -> str | None: ...
    def save(self, issuer: str, username: str, refresh_token: str) -> None: ...
    def delete(self, issuer: str, username: str) -> None: ...
    def status(self) -> StorageStatus: ...


class MemoryStore:
    """Refresh tokens in a dict: gone when the process ends. Thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def load(self, issuer: str, username: str) -> str | None:
        with self._lock:
            return self._tokens.get((issuer, username))

    def save(self, issuer: str, username: str, refresh_token: str) -> None:
        with self._lock:
            self._tokens[(issuer, username)] = refresh_token

    def delete(self, issuer: str, username: str) -> None:
        with self._lock:
            self._tokens.pop((issuer, username), None)

    def status(self) -> StorageStatus:
        return StorageStatus(
            persistent=False,
            backend="memory",
            reason="The session is kept in memory only and ends when the program exits.",
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

    def load(self, issuer: str, username: str) -> str | None:
        self._require_usable()
        service = self._service(issuer)
        value = self._call("read", lambda kr: kr.get_password(service, username))
        return value if isinstance(value, str) and value else None

    def save(self, issuer: str, username: str, refresh_token: str) -> None:
        if self._max_secret_bytes is not None:
            size = len(refresh_token.encode("utf-16-le"))
            if size > self._max_secret_bytes:
                # Deliberately not cached as "keyring unavailable": the keyring works, this one
                # token does not fit. The client keeps it in memory and says so.
                raise KeyringUnavailable(
                    f"The server's refresh token is too long for the OS keyring ({size} bytes, "
                    f"the limit is {self._max_secret_bytes}); the session is kept in memory "
                    "for this run only."
                )
        self._require_usable()
        service = self._service(issuer)
        self._call("write", lambda kr: kr.set_password(service, username, refresh_token))

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
            raise KeyringUnavailable(status.reason or "The OS keyring is not available.")

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
            raise self._fail(
                f"The OS keyring did not answer within {self._timeout:g} seconds; "
                "the session is kept in memory for this run only."
            )
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
            return self._fail(
                f"No OS keyring is available ({exc.qualname}); "
                "the session is kept in memory for this run only."
            )
        if isinstance(exc, keyring.errors.NoKeyringError):
            return self._fail(
                "No OS keyring is available; the session is kept in memory for this run only."
            )
        if isinstance(exc, keyring.errors.KeyringLocked):
            return self._fail(
                "The OS keyring is locked; the session is kept in memory for this run only."
            )
        if isinstance(exc, Exception):
            # Any other failure (D-Bus errors, InitError, PasswordSetError...): the type name
            # is enough to diagnose, and a message from a backend could quote the secret.
            return self._fail(
                f"The OS keyring failed ({type(exc).__name__} during {what}); "
                "the session is kept in memory for this run only."
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
