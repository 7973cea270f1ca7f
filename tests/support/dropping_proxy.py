"""A loopback HTTP proxy that loses answers on purpose: the "refresh reached the server, the
answer never reached the client" fault, produced for real instead of mocked.

    with DroppingProxy(server.url) as proxy:
        proxy.drop_answer(is_refresh_grant)          # the next refresh's answer is lost
        client = MyClient(proxy.url)                 # the client talks to the proxy
        ...
        assert proxy.dropped[0].status == 200        # the server did answer it

Every request is forwarded to ``upstream`` in full (the server processes it); the proxy then
reads the whole answer. For a request picked by ``drop_answer`` the answer is thrown away and
the client's connection is reset without a byte, as a dropped network path looks to a client.
One request per connection (``Connection: close`` both ways), so no client retries a request on
a stale kept-alive connection behind the test's back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_TIMEOUT = 30.0


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)  # may hold a token or a password

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class Dropped:
    """A request whose answer was lost: what it was, and the status the server gave it."""

    method: str
    path: str
    status: int


Predicate = Callable[[ProxiedRequest], bool]


def is_refresh_grant(request: ProxiedRequest) -> bool:
    """A refresh-token grant at the token endpoint."""
    return request.method == "POST" and b"grant_type=refresh_token" in request.body


class DroppingProxy:
    """Forwards loopback HTTP/1.1 to ``upstream`` (``http://host:port``); ``url`` is its own."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._upstream_host = parts.netloc
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._rules: list[tuple[Predicate, int]] = []  # (predicate, matches still to forward)
        self.forwarded = 0  # requests whose answers went through
        self.dropped: list[Dropped] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="dropping-proxy", daemon=True)
        self._thread.start()

    def drop_answer(self, predicate: Predicate = is_refresh_grant, *, after: int = 0) -> None:
        """Lose the answer of the next request matching ``predicate``, once ``after`` matching
        requests went through normally. Rules queue up; each fires once."""
        with self._lock:
            self._rules.append((predicate, after))

    def _should_drop(self, request: ProxiedRequest) -> bool:
        with self._lock:
            for i, (predicate, after) in enumerate(self._rules):
                if predicate(request):
                    if after == 0:
                        del self._rules[i]
                        return True
                    self._rules[i] = (predicate, after - 1)
                    return False
            return False

    # Serving

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(_TIMEOUT)
            try:
                request, raw = _read_request(conn, self._upstream_host)
            except (OSError, ValueError):
                return
            drop = self._should_drop(request)
            try:
                answer = _exchange(self._upstream, raw)
            except OSError:
                return
            if drop:
                self.dropped.append(Dropped(request.method, request.path, _status(answer)))
                # RST, not FIN: the client sees "connection reset", the usual shape of a lost
                # answer, and never a partial response.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                return
            self.forwarded += 1
            try:
                conn.sendall(answer)
            except OSError:
                return

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # Closing alone does not wake a thread blocked in accept() on Linux (close waited
            # its whole timeout); shutting the socket down first does.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._thread.join(_TIMEOUT)

    def __enter__(self) -> DroppingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DroppingProxy(url={self.url!r}, upstream={self._upstream_host!r})"


def _read_request(conn: socket.socket, upstream_host: str) -> tuple[ProxiedRequest, bytes]:
    """One request from ``conn``, and its bytes as sent upstream (Host and Connection
    rewritten). Bodies by Content-Length only: the clients under test send no chunked body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        data += chunk
        if len(data) > _MAX_HEAD:
            raise ValueError("request head too large")
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
    )
    length = 0
    for name, value in headers:
        if name.lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the body ended")
        body += chunk
    kept = [(n, v) for n, v in headers if n.lower() not in ("host", "connection")]
    sent_headers = [("Host", upstream_host), *kept, ("Connection", "close")]
    raw = (
        f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in sent_headers) + "\r\n"
    ).encode("latin-1") + body[:length]
    return ProxiedRequest(method, path, headers, body[:length]), raw


def _exchange(upstream: tuple[str, int], raw: bytes) -> bytes:
    """Send ``raw`` upstream and read the whole answer (the server closes after it)."""
    with socket.create_connection(upstream, timeout=_TIMEOUT) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0
