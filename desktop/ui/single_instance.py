"""One GUI per person: a second start asks the running one to raise its window, then exits.

The running instance listens on a local socket (:class:`QLocalServer`: a Unix socket, a named
pipe on Windows) whose path is per user and per settings folder (two people on one machine, or
a test with its own settings, never meet). A later start connects and sends one line; when
nothing answers, a socket file there is a leftover of a crashed run, and is removed before
listening.

Start-up cost: the check (:meth:`SingleInstance.claim`) comes before the first window, so on
POSIX it is a plain :mod:`socket` connect, and Qt's network module is loaded only to listen,
after the first frame (:meth:`SingleInstance.listen`). From the check to listening, a lock file
is held, so a start in between waits for the socket rather than deciding it is first.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from PySide6.QtNetwork import QLocalServer

__all__ = ["SingleInstance", "notify_running", "socket_name"]

_RAISE = b"raise\n"
_TIMEOUT_S = 1.0


def socket_name(config_dir: Path) -> str:
    """The socket's path, short (a Unix socket path has ~100 bytes), unique to the user and
    the settings folder. Not a secret (the socket is the user's only, see ``listen``): a
    checksum of the folder is enough, and cheaper to import at start-up than hashlib."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    name = f"jwt-desktop-{user}-{zlib.crc32(str(config_dir).encode()):08x}"
    # A full path on POSIX: this module's plain socket and Qt's server then agree on it.
    return os.path.join(tempfile.gettempdir(), name) if os.name == "posix" else name


class _Lock:
    """An exclusive lock between processes on a file (fcntl: cheap to import, unlike filelock);
    without fcntl, or when the file cannot be opened, no lock (two simultaneous starts may
    then both open a window, no worse than before)."""

    def __init__(self, path: Path) -> None:
        self._fd: int | None = None
        try:
            import fcntl

            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except (ImportError, OSError):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            return
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


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
        self._lock: _Lock | None = None
        self._server: QLocalServer | None = None

    def claim(self) -> bool:
        """True: this is the first instance (call :meth:`listen` next, the lock is held until
        then). False: another one runs, and has been asked to raise its window."""
        lock = _Lock(self._lock_path)
        if notify_running(self._name):
            lock.release()
            return False
        self._lock = lock
        return True

    def listen(self) -> None:
        """Start answering later starts; releases the lock taken by :meth:`claim`."""
        from PySide6.QtNetwork import QLocalServer

        try:
            # Nothing answered the claim: a socket file there belongs to a crashed run.
            QLocalServer.removeServer(self._name)
            server = QLocalServer(self)
            server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
            if server.listen(self._name):
                server.newConnection.connect(self._on_connection)
                self._server = server
            # Else run without: a second start then opens a second window, no worse.
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def _on_connection(self) -> None:
        server = self._server
        while server is not None and server.hasPendingConnections():
            connection = server.nextPendingConnection()
            # The other start writes its line right after connecting and waits for it to be
            # read: a short wait here, rather than per-connection slots to keep alive.
            waited = connection.bytesAvailable() or connection.waitForReadyRead(1000)
            line = bytes(connection.readLine().data()) if waited else b""
            connection.disconnectFromServer()
            connection.deleteLater()
            if line == _RAISE:
                self.activated.emit()


def notify_running(name: str) -> bool:
    """Ask the instance listening on ``name`` to raise its window; False when none answers."""
    if os.name == "posix":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(_TIMEOUT_S)
            try:
                client.connect(name)
                client.sendall(_RAISE)
                client.shutdown(socket.SHUT_WR)
                # Until the instance closes its end: it has read the line by then.
                with contextlib.suppress(OSError):
                    client.recv(1)
            except OSError:  # nobody, a stale socket file of a crashed run, or no answer
                return False
        return True
    from PySide6.QtNetwork import QLocalSocket

    qt_client = QLocalSocket()
    qt_client.connectToServer(name)
    if not qt_client.waitForConnected(int(_TIMEOUT_S * 1000)):
        return False
    qt_client.write(_RAISE)
    qt_client.waitForBytesWritten(int(_TIMEOUT_S * 1000))
    qt_client.disconnectFromServer()
    return True
