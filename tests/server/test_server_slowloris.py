"""Slow and ambiguous clients, with raw sockets against a live server: half-sent requests time
out, idle connections close, SIGTERM is not held up by a client, and a request framed both by
Content-Length and Transfer-Encoding closes its connection (RFC 9112 §6.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.server import RunningServer, StartServer, server_factory

REQUEST_TIMEOUT = 1.0
KEEP_ALIVE_TIMEOUT = 1.0
# Far beyond every timeout under test: a server that ignores one fails instead of hanging.
SOCKET_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    factory = server_factory(tmp_path_factory.mktemp("slowloris"))
    start = next(factory)
    yield start(
        extra_args=[
            "--request-timeout",
            f"{REQUEST_TIMEOUT}s",
            "--keep-alive-timeout",
            f"{KEEP_ALIVE_TIMEOUT}s",
        ]
    )
    factory.close()


def connect(server: RunningServer) -> socket.socket:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=SOCKET_TIMEOUT)
    return sock


def host(server: RunningServer) -> bytes:
    return urlsplit(server.url).netloc.encode("ascii")


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body), however the bytes arrive."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, raw
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, raw
        body += chunk
    return head + b"\r\n\r\n" + body


def statuses(raw: bytes) -> list[int]:
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def json_body(raw: bytes) -> dict[str, str]:
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


def timed_408(sock: socket.socket) -> float:
    started = time.monotonic()
    raw = read_until_closed(sock)
    elapsed = time.monotonic() - started
    assert statuses(raw) == [408], raw
    assert json_body(raw)["error"] == "invalid_request"
    return elapsed


def test_a_connection_that_sends_nothing_is_closed(slow_server: RunningServer) -> None:
    with connect(slow_server) as sock:
        assert timed_408(sock) < REQUEST_TIMEOUT + 5


def test_a_half_sent_request_head_times_out(slow_server: RunningServer) -> None:
    with connect(slow_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + host(slow_server) + b"\r\n")
        # Trickling more header bytes does not restart the clock.
        for _ in range(3):
            time.sleep(REQUEST_TIMEOUT / 4)
            sock.sendall(b"X-Slow: 1\r\n")
        assert timed_408(sock) < REQUEST_TIMEOUT + 5


def test_a_half_sent_body_times_out(slow_server: RunningServer) -> None:
    with connect(slow_server) as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: " + host(slow_server) + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"grant_type"
        )
        assert timed_408(sock) < REQUEST_TIMEOUT + 5


def test_an_idle_keep_alive_connection_is_closed_quietly(slow_server: RunningServer) -> None:
    with connect(slow_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + host(slow_server) + b"\r\n\r\n")
        started = time.monotonic()
        raw = read_until_closed(sock)
        # One answer, then the idle connection closes without a 408.
        assert statuses(raw) == [200], raw
        assert time.monotonic() - started < KEEP_ALIVE_TIMEOUT + 5


def test_a_request_sent_in_time_is_answered(slow_server: RunningServer) -> None:
    with connect(slow_server) as sock:
        # Two requests on one connection, each within its deadline.
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + host(slow_server) + b"\r\n")
            time.sleep(REQUEST_TIMEOUT / 3)
            sock.sendall(b"\r\n")
            assert statuses(read_response(sock)) == [200]


def test_content_length_with_transfer_encoding_closes_the_connection(
    slow_server: RunningServer,
) -> None:
    with connect(slow_server) as sock:
        smuggling = (
            b"POST /revoke HTTP/1.1\r\nHost: " + host(slow_server) + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        follower = b"GET /healthz HTTP/1.1\r\nHost: " + host(slow_server) + b"\r\n\r\n"
        sock.sendall(smuggling + follower)
        raw = read_until_closed(sock)
        # Refused, and nothing after it on that connection is read as a request.
        assert statuses(raw) == [400], raw
        assert json_body(raw)["error"] == "invalid_request"


def test_sigterm_stops_the_server_while_a_body_is_half_sent(start_server: StartServer) -> None:
    server = start_server(extra_args=["--request-timeout", "60s", "--shutdown-timeout", "1s"])
    with connect(server) as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: " + host(server) + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"grant_type"
        )
        server.advance_clock(0)  # a full round trip: the half-sent request is in the app now
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        while server.running and time.monotonic() - started < SOCKET_TIMEOUT:
            time.sleep(0.05)
        assert not server.running, "SIGTERM did not stop the server"
        assert time.monotonic() - started < 1 + 5


def test_the_timeouts_are_documented(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for option in ("--request-timeout", "--keep-alive-timeout", "--shutdown-timeout"):
        assert f"`{option}" in readme
