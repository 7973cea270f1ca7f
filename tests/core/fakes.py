"""Small local fakes for faults the real server cannot produce: still real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: object, **headers: str) -> Reply:
        return cls(
            status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers}
        )


@dataclass
class Seen:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


Handler = Callable[[Seen], Reply]


class FakeOIDCServer:
    """A tiny OpenID-Connect-shaped server whose answers a test scripts per path.

    Discovery is served by default (issuer = its own URL); ``/token`` issues well-formed tokens
    (``access-N``/``refresh-N``) and ``/userinfo`` answers a profile, unless a test replaces
    them in ``routes``.
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.routes: dict[str, Handler] = {}
        self._counter = 0
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                seen = Seen(method, self.path, dict(parse_qsl(body)), dict(self.headers))
                with outer._lock:
                    outer.seen.append(seen)
                handler = outer.routes.get(self.path) or outer._default(self.path)
                reply = handler(seen)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _default(self, path: str) -> Handler:
        if path == "/.well-known/openid-configuration":
            return lambda seen: Reply.json(
                200,
                {
                    "issuer": self.url,
                    "token_endpoint": f"{self.url}/token",
                    "userinfo_endpoint": f"{self.url}/userinfo",
                    "revocation_endpoint": f"{self.url}/revoke",
                },
            )
        if path == "/token":
            return self.good_token
        if path == "/userinfo":
            return lambda seen: Reply.json(200, {"sub": "u1", "preferred_username": "alice"})
        if path == "/revoke":
            return lambda seen: Reply(200)
        return lambda seen: Reply.json(404, {"error": "not_found"})

    def good_token(self, seen: Seen) -> Reply:
        with self._lock:
            self._counter += 1
            n = self._counter
        return Reply.json(
            200,
            {
                "access_token": f"access-{n}",
                "token_type": "Bearer",
                "expires_in": 60,
                "refresh_token": f"refresh-{n}",
            },
            **{"Cache-Control": "no-store"},
        )

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SilentServer:
    """Accepts connections and never answers: a server that hangs."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._socket.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self._accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._accepted:
            conn.close()
        self._socket.close()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class CountingAdapter(HTTPAdapter):
    """Records every request the client really sends (method, path, grant, status)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, str | None, int]] = []
        self._log_lock = threading.Lock()

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        response = super().send(request, *args, **kwargs)
        body = request.body
        text = body.decode() if isinstance(body, bytes) else (body or "")
        grant = dict(parse_qsl(text)).get("grant_type")
        with self._log_lock:
            self.log.append(
                (
                    request.method or "",
                    urlsplit(request.url or "").path,
                    grant,
                    response.status_code,
                )
            )
        return response

    def grants(self, grant: str) -> int:
        with self._log_lock:
            return sum(1 for entry in self.log if entry[2] == grant)


def counting_session() -> tuple[requests.Session, CountingAdapter]:
    session = requests.Session()
    adapter = CountingAdapter()
    session.mount("http://", adapter)
    return session, adapter
