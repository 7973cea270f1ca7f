"""The cross-process lock of a stored session, and the marker that says which copy is current.

Every process that shares a stored session (the GUI, the CLI, two windows) takes the same file
lock, one per (issuer, account) in one directory, around every read-then-write of that session:
a refresh, a sign-in, a sign-out, a replayed write. The lock alone is not enough: a process that
cannot read the keyring, or reads a copy some other process failed to update, must still know
whether the refresh token it holds is the one the server expects, since presenting a spent one
is reuse and ends the whole session at the server.

The marker (:class:`Marker`, a small JSON file beside the refresh lock, written only under that
lock) says which stored session is the current one, without holding any secret: a
*generation* counter that every writer bumps when the session at the server changes (a sign-in,
a rotation, a sign-out, a refused refresh), the state (live, signed out, ended) and the writing
process. Each stored session carries the generation it was written at, and each process knows
the generation of the copy in its memory, so a process presents a refresh token only when its
generation is the marker's. A counter was chosen over a digest of the token: it proves the
same thing and gives nothing to someone who reads the file, not even a way to confirm a
guessed token, and needs no key to keep.

What it guarantees: while :meth:`SessionLock.hold` is held, no other process reads or writes that
session; the marker a :class:`HeldLock` shows is the one every other writer left, and
:meth:`HeldLock.advance` replaces it atomically (a reader never sees half a marker). The lock
waits at most ``timeout`` seconds, then raises :class:`LockTimeout` rather than hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop.auth import messages
from desktop.auth.errors import LockTimeout

__all__ = ["ENDED", "LIVE", "SIGNED_OUT", "HeldLock", "Marker", "SessionLock"]


LIVE = "live"
SIGNED_OUT = "signed_out"  # a sign-out (or a sign-in without "stay signed in") removed it
ENDED = "ended"  # the server refused the refresh token (expired, revoked, reused)


@dataclass(frozen=True)
class Marker:
    """Which stored session is current: never a secret (see the module docstring).

    ``generation`` grows by one at every change of the session at the server; ``state`` is
    :data:`LIVE`, :data:`SIGNED_OUT` or :data:`ENDED`; ``pid``/``host`` name the process that
    wrote it, which may be the only holder of the current refresh token while the keyring
    cannot be written.
    """

    generation: int
    state: str = LIVE
    pid: int = 0
    host: str = ""

    def writer_alive(self) -> bool:
        """Whether the writing process may still be running (True when that cannot be known)."""
        if self.host != socket.gethostname() or os.name != "posix" or self.pid <= 0:
            return True  # another machine sharing the state dir, or no cheap liveness check
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # it exists, owned by someone else
        return True


class HeldLock:
    """The session's lock, held: the marker as read when the lock was taken, and the way to
    advance it. Only meaningful inside :meth:`SessionLock.hold`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.marker = _read_marker(path)

    @property
    def generation(self) -> int | None:
        return self.marker.generation if self.marker is not None else None

    def advance(self, state: str = LIVE) -> int:
        """Record a new generation (the session changed at the server); returns it."""
        generation = (self.marker.generation if self.marker is not None else 0) + 1
        marker = Marker(generation, state, os.getpid(), socket.gethostname())
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(marker), sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._path)  # atomic: a reader never sees half a marker
        self.marker = marker
        return generation


def _read_marker(path: Path) -> Marker | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # none yet (first use, or an older version wrote the session)
    if not isinstance(data, dict):
        return None
    generation, state = data.get("generation"), data.get("state")
    pid, host = data.get("pid"), data.get("host")
    if not isinstance(generation, int) or state not in (LIVE, SIGNED_OUT, ENDED):
        return None
    return Marker(
        generation,
        state,
        pid if isinstance(pid, int) else 0,
        host if isinstance(host, str) else "",
    )


class SessionLock:
    """The cross-process lock of one stored session: a file per (issuer, account) in
    ``lock_dir`` (``None``: :func:`desktop.config.state_dir`), with the session's
    :class:`Marker` beside it. Every process sharing a stored session (the GUI, the CLI, two
    windows) must use the same directory."""

    def __init__(self, lock_dir: Path | None, *, timeout: float) -> None:
        self._lock_dir = lock_dir
        self._timeout = timeout

    @contextlib.contextmanager
    def hold(self, issuer: str, account: str) -> Iterator[HeldLock]:
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
            yield HeldLock(lock_dir / f"refresh-{key}.marker")
        finally:
            lock.release()
