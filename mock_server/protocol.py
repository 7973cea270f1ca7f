"""The HTTP/1.1 protocol the CLI's uvicorn serves with: strict framing, JSON errors for what
cannot be parsed, and a deadline for each request to arrive whole.

A module of its own, named to uvicorn by import path (serving.py): ``--workers`` processes
unpickle their config and import the protocol themselves, and find the deadline in that config.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

# A request head (request line and headers) larger than this is refused with 400 (h11's limit).
MAX_HEAD_BYTES = 16 * 1024
DEFAULT_REQUEST_TIMEOUT = 10.0


class DeadlineConfig(uvicorn.Config):
    """uvicorn's config plus the request deadline (seconds) HardenedH11Protocol enforces."""

    def __init__(
        self, app: Any, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT, **options: Any
    ) -> None:
        super().__init__(app, **options)
        self.request_timeout = request_timeout


class _StrictH11Connection(h11.Connection):
    """h11, refusing a request that has both Content-Length and Transfer-Encoding.

    h11 alone frames such a request by Transfer-Encoding and keeps the connection open; RFC 9112
    §6.1 says the connection must close after it (the two framings are how requests get
    smuggled past a proxy). Refused as malformed: a 400 that closes the connection."""

    def next_event(self) -> Any:
        event = super().next_event()
        # h11 makes its request events of this very class; isinstance goes through the ABC
        # machinery on every event (profiled).
        if type(event) is h11.Request:
            # raw_items() is a plain list; iterating the Headers sequence itself costs about
            # twice as much on every request (profiled). h11 lower-cases names the same way.
            names = {name.lower() for name, _ in event.headers.raw_items()}
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        return event


class HardenedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the same JSON error shape as the application for
    requests it cannot even parse, and a deadline for each request to arrive whole.

    uvicorn times out idle keep-alive connections only: a client trickling a request head or
    body (slowloris), or connecting and sending nothing, would hold its connection forever.
    Here a request must arrive whole within ``request_timeout`` of its first byte (or of the
    connection, for the first request); then it gets a 408 and the connection closes. The
    application's own time to answer is not counted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = (
            self.config.request_timeout
            if isinstance(self.config, DeadlineConfig)
            else DEFAULT_REQUEST_TIMEOUT
        )
        self.conn = _StrictH11Connection(
            h11.SERVER,
            max_incomplete_event_size=self.config.h11_max_incomplete_event_size or MAX_HEAD_BYTES,
        )
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._watch_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _watch_request(self) -> None:
        state = self.conn.their_state
        # Between requests, with nothing of the next one yet, the keep-alive timeout rules.
        idle = (
            state is h11.IDLE
            and not self.conn.trailing_data[0]
            and self.timeout_keep_alive_task is not None
        )
        if self.transport.is_closing() or idle or state not in (h11.IDLE, h11.SEND_BODY):
            self._stop_deadline()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._request_too_slow)

    def _request_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()
                return
            # The application waits for the rest of a body that is not coming: it sees a
            # disconnect, and whatever it answers goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        self._send_json_error(408, "The request did not arrive in time")

    def send_400_response(self, msg: str) -> None:
        self._send_json_error(400, "The HTTP request is malformed")

    def _send_json_error(self, status: int, description: str) -> None:
        body = json.dumps({"error": "invalid_request", "error_description": description})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"connection", b"close"),
        ]
        reason = {400: b"Bad Request", 408: b"Request Timeout"}[status]
        try:
            for event in (
                h11.Response(status_code=status, headers=headers, reason=reason),
                h11.Data(data=body.encode("ascii")),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:
            pass  # no answer fits the connection's state: closing it says enough
        self.transport.close()
