"""Answers lost on the way back are worded as such (issue 11, item 6): not "Could not connect",
and never a Python class name."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from desktop.auth.errors import ServerUnreachable
from desktop.auth.messages import describe
from desktop.auth.transport import Transport


def _serve_once(answer: bytes | None) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            if answer is None:  # reset without a byte: a dropped answer
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            else:
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.join(10)
        listener.close()


@pytest.fixture
def cut_answer() -> Iterator[str]:
    yield from _serve_once(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"access')


@pytest.fixture
def reset_answer() -> Iterator[str]:
    yield from _serve_once(None)


def test_a_cut_answer_says_it_was_cut_off(cut_answer: str) -> None:
    with Transport() as transport, pytest.raises(ServerUnreachable) as caught:
        transport.request("POST", f"{cut_answer}/token", data={"a": "b"})
    assert caught.value.sent
    assert str(caught.value) == f"The answer of the server at {cut_answer} was cut off."
    assert describe(caught.value).message == str(caught.value)
    assert "Error" not in str(caught.value)


def test_a_reset_after_sending_is_not_could_not_connect(reset_answer: str) -> None:
    with Transport() as transport, pytest.raises(ServerUnreachable) as caught:
        transport.request("POST", f"{reset_answer}/token", data={"a": "b"})
    assert caught.value.sent
    assert "was lost after the request was sent" in str(caught.value)
    assert "Could not connect" not in describe(caught.value).message


def test_a_refused_connection_is_could_not_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Transport() as transport, pytest.raises(ServerUnreachable) as caught:
        transport.request("GET", f"http://127.0.0.1:{port}/")
    assert not caught.value.sent
    assert "Could not connect" in str(caught.value)
