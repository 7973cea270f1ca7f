"""One GUI per person: a second start asks the running one to raise its window (or to switch
to an account, ``jwt-desktop --user NAME``), then exits.

The running instance listens on a local socket (:class:`QLocalServer`: a Unix socket, a named
pipe on Windows) whose path is per user and per settings folder (two people on one machine, or
a test with its own settings, never meet). A later start connects and sends one line; when
nothing answers, a socket file there is a leftover of a crashed run, and is removed before
listening.

The line (:func:`encode`, :func:`decode`): ``raise`` alone, or, to switch accounts, a JSON
object ``{"v": 1, "switch": {"server": URL, "user": NAME}}``. The version comes first so that a
later form can be told apart; anything else (a wrong version, an unknown key, a non-string, an
overlong or unfinished line, bytes that are not UTF-8 JSON) is ignored. The account is only a
request: the application switches only to an account it has stored.

Start-up cost: the check (:meth:`SingleInstance.claim`) comes before the first window, so on
POSIX it is a plain :mod:`socket` connect, and Qt's network module is loaded only to listen,
after the first frame (:meth:`SingleInstance.listen`). From the check to listening, a lock file
is held, so a start in between waits for the socket rather than deciding it is first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from PySide6.QtNetwork import QLocalServer, QLocalSocket

__all__ = ["Request", "SingleInstance", "decode", "encode", "notify_running", "socket_name"]

_log = logging.getLogger(__name__)

_RAISE = b"raise\n"
VERSION = 1
# A server URL and an account name fit in far less; a longer line is not ours.
MAX_LINE = 2048
_MAX_FIELD = 512
_TIMEOUT_S = 1.0

Account = tuple[str, str]  # (server URL, account name)


@dataclass(frozen=True)
class Request:
    """What a later start asks: raise the window; with ``account``, switch to it too."""

    account: Account | None = None


def encode(request: Request) -> bytes:
    """The line a later start sends."""
    if request.account is None:
        return _RAISE
    server, user = request.account
    message = {"v": VERSION, "switch": {"server": server, "user": user}}
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Request | None:
    """What a line asks; None when it is not a request of ours (it is then ignored)."""
    if line == _RAISE:
        return Request()
    message = _json_line(line)
    if not isinstance(message, dict) or set(message) != {"v", "switch"}:
        return None
    version, switch = message["v"], message["switch"]
    # type(...) is int: JSON's true and 1.0 compare equal to 1 in Python.
    if type(version) is not int or version != VERSION or not isinstance(switch, dict):
        return None
    server, user = switch.get("server"), switch.get("user")
    if set(switch) != {"server", "user"} or not _is_field(server) or not _is_field(user):
        return None
    return Request((server, user))


def _json_line(line: bytes) -> object:
    """The JSON value of one whole, short, UTF-8 line; None when it is not one."""
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        return None
    try:
        return json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return None


def _is_field(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= _MAX_FIELD and value.isprintable()


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
        switchRequested(str, str): another start (``--user NAME``) asked to show this account
            (server URL, name); only a request: the receiver checks the account is stored.
    """

    activated = Signal()
    switchRequested = Signal(str, str)

    def __init__(self, name: str, lock_path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._name = name
        self._lock_path = lock_path
        self._lock: _Lock | None = None
        self._server: QLocalServer | None = None

    def claim(self, request: Request | None = None) -> bool:
        """True: this is the first instance (call :meth:`listen` next, the lock is held until
        then). False: another one runs, and has been asked to raise its window (and to switch
        to the request's account, when it names one)."""
        lock = _Lock(self._lock_path)
        if notify_running(self._name, request):
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
            line = _read_line(connection)
            connection.disconnectFromServer()
            connection.deleteLater()
            request = decode(line)
            if request is None:
                _log.info("Ignored a message on the single-instance socket (%d bytes)", len(line))
            elif request.account is None:
                self.activated.emit()
            else:
                self.switchRequested.emit(*request.account)


def _read_line(connection: QLocalSocket) -> bytes:
    """The first line the other start wrote (with its newline), at most ``MAX_LINE + 1``
    bytes; what came by the deadline when it never ends one. The other start writes right
    after connecting and waits for it to be read: a short wait here, rather than
    per-connection slots to keep alive."""
    data = b""
    deadline = time.monotonic() + _TIMEOUT_S
    while b"\n" not in data and len(data) <= MAX_LINE:
        if not connection.bytesAvailable():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not connection.waitForReadyRead(left_ms):
                break
        data += bytes(connection.read(MAX_LINE + 1 - len(data)).data())
    end = data.find(b"\n")
    return data if end < 0 else data[: end + 1]


def notify_running(name: str, request: Request | None = None) -> bool:
    """Ask the instance listening on ``name`` to raise its window (and to switch to the
    request's account); False when none answers."""
    message = encode(request or Request())
    if os.name == "posix":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(_TIMEOUT_S)
            try:
                client.connect(name)
                client.sendall(message)
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
    qt_client.write(message)
    qt_client.waitForBytesWritten(int(_TIMEOUT_S * 1000))
    qt_client.disconnectFromServer()
    return True
