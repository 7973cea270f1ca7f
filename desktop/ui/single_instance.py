"""One GUI per person: a second start asks the running one to raise its window, then exits.

The first instance listens on a local socket (:class:`QLocalServer`: a Unix socket, a named
pipe on Windows) whose name is per user and per settings folder (two people on one machine, or
a test with its own settings, never meet). A later start connects and sends one line; when
nothing answers, the socket file is a leftover of a crashed run, and is removed before
listening. Checking and listening happen under a file lock, so two starts at the same moment
cannot both decide they are first.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

__all__ = ["SingleInstance", "socket_name"]

_RAISE = b"raise\n"
_TIMEOUT_MS = 1000


def socket_name(config_dir: Path) -> str:
    """A short name (a Unix socket path has ~100 bytes) unique to the user and settings.

    Not a secret and not a security boundary (the socket is the user's only, see ``claim``):
    a checksum of the folder is enough, and cheaper to import at start-up than hashlib.
    """
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return f"jwt-desktop-{user}-{zlib.crc32(str(config_dir).encode()):08x}"


def _exclusive(path: Path) -> contextlib.AbstractContextManager[object]:
    """A blocking lock on ``path`` between processes (fcntl: cheap to import, unlike filelock;
    where there is no fcntl, no lock: two simultaneous starts may then both open). Raises
    :class:`OSError` when the lock file cannot be opened."""
    try:
        import fcntl
    except ImportError:
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        raise
    # Closing the descriptor releases the lock.
    return contextlib.closing(_Descriptor(fd))


class _Descriptor:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


class SingleInstance(QObject):
    """The running instance's end of the socket.

    Signals:
        activated(): another start asked this instance to show its window.
    """

    activated = Signal()

    def __init__(self, name: str, lock_path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._name = name
        self._lock_path = lock_path
        self._server: QLocalServer | None = None

    def claim(self) -> bool:
        """Become the running instance (True), or hand over to the one running (False: it has
        been asked to raise its window)."""
        try:
            lock = _exclusive(self._lock_path)
        except OSError:  # no state folder to lock in: check all the same
            lock = contextlib.nullcontext()
        with lock:
            if notify_running(self._name):
                return False
            # Nothing answered: a socket file left there belongs to a crashed run.
            QLocalServer.removeServer(self._name)
            server = QLocalServer(self)
            server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
            if not server.listen(self._name):
                # Run without: a second start then opens a second window, no worse.
                return True
        server.newConnection.connect(self._on_connection)
        self._server = server
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _on_connection(self) -> None:
        server = self._server
        while server is not None and server.hasPendingConnections():
            connection = server.nextPendingConnection()
            # The other start writes its line right after connecting and waits for it to be
            # read: a short wait here, rather than per-connection slots to keep alive.
            if connection.bytesAvailable() or connection.waitForReadyRead(_TIMEOUT_MS):
                line = bytes(connection.readLine().data())
            else:
                line = b""
            connection.disconnectFromServer()
            connection.deleteLater()
            if line == _RAISE:
                self.activated.emit()


def notify_running(name: str, timeout_ms: int = _TIMEOUT_MS) -> bool:
    """Ask the instance listening on ``name`` to raise its window; False when none answers."""
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(timeout_ms):
        return False
    socket.write(_RAISE)
    socket.waitForBytesWritten(timeout_ms)
    socket.disconnectFromServer()  # writes what is still buffered first
    if socket.state() != QLocalSocket.LocalSocketState.UnconnectedState:
        socket.waitForDisconnected(timeout_ms)
    return True
