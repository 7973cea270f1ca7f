"""``jwt-mock-server`` / ``python -m mock_server``: run the server, add a user, rotate the key."""

from __future__ import annotations

import argparse
import asyncio
import copy
import getpass
import ipaddress
import json
import logging
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .keys import new_key_record
from .passwords import hash_password, load_users, upsert_user_file, user_entry
from .settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DPOP_MODES,
    LOOPBACK_HOSTS,
    ScryptParams,
    Settings,
    default_db_path,
    issuer_problem,
    parse_duration,
)
from .store import SqliteStore

LISTENING = "jwt-mock-server listening on {url}"
# A request head (request line and headers) larger than this is refused with 400 (h11's limit).
MAX_HEAD_BYTES = 16 * 1024


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _complain(text: str) -> None:
    sys.stderr.write(f"jwt-mock-server: {text}\n")


class StripQueryString(logging.Filter):
    """Access-log lines without query strings: a token must never reach a log, even when a
    client wrongly puts one in a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            address, method, path, version, status = record.args
            record.args = (address, method, str(path).split("?", 1)[0], version, status)
        return True


def _logging_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"strip_query": {"()": StripQueryString}}
    config["loggers"]["uvicorn.access"]["filters"] = ["strip_query"]
    return config


class _StrictH11Connection(h11.Connection):
    """h11, refusing a request that has both Content-Length and Transfer-Encoding.

    h11 alone frames such a request by Transfer-Encoding and keeps the connection open; RFC 9112
    §6.1 says the connection must close after it (the two framings are how requests get
    smuggled past a proxy). Refused as malformed: a 400 that closes the connection."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
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

    request_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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


def protocol_class(request_timeout: float) -> type[HardenedH11Protocol]:
    """The protocol with this request deadline (uvicorn instantiates the class itself)."""
    return type("HardenedH11Protocol", (HardenedH11Protocol,), {"request_timeout": request_timeout})


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            # Only now does the socket accept connections: scripts wait for this line.
            _say(LISTENING.format(url=self._url))


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r} (0-65535; 0 picks one)")
    return port


def _issuer(text: str) -> str:
    problem = issuer_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text.rstrip("/")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-mock-server",
        description="A strict OAuth 2.0 / OpenID Connect token server for jwt-desktop.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="port (%(default)s); 0 picks a free one"
    )
    parser.add_argument(
        "--db",
        default=str(default_db_path()),
        help="SQLite database for keys and sessions (%(default)s); ':memory:' for a throwaway run",
    )
    parser.add_argument(
        "--users", type=Path, help="users file (JSON, see add-user); default: the demo users"
    )
    parser.add_argument(
        "--access-ttl", type=_duration, default="15m", help="access token lifetime (15m)"
    )
    parser.add_argument(
        "--refresh-ttl", type=_duration, default="3d", help="sign-in (refresh) lifetime (3d)"
    )
    parser.add_argument(
        "--issuer", type=_issuer, help="issuer URL (default: http://HOST:PORT as bound)"
    )
    parser.add_argument(
        "--client-id",
        action="append",
        dest="clients",
        metavar="ID",
        help=f"a public client id to accept; repeatable (default: {DEFAULT_CLIENT_ID})",
    )
    parser.add_argument(
        "--dpop",
        default="allowed",
        choices=DPOP_MODES,
        help="DPoP-bound tokens (RFC 9449): off, allowed (bound for clients that send proofs;"
        " the default), required (no Bearer tokens)",
    )
    parser.add_argument(
        "--dpop-nonce",
        action="store_true",
        help="demand server-provided nonces in DPoP proofs (RFC 9449 §8, §9)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="log level (info); access lines never show query strings",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        dest="allowed_hosts",
        metavar="NAME",
        help="a Host name to serve besides the issuer's (and the loopback names on a loopback "
        "bind); repeatable. Any other Host gets 421",
    )
    parser.add_argument(
        "--request-timeout",
        type=_duration,
        default="10s",
        help="time for a request to arrive whole, head and body (10s); then 408",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=_duration,
        default="5s",
        help="an idle keep-alive connection is closed after this (5s)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_duration,
        default="5s",
        help="on SIGTERM/Ctrl+C, wait at most this for requests in flight (5s)",
    )
    # For tests only, hidden: a movable clock and a cheap password hash.
    parser.add_argument("--testing-clock", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--testing-password-cost", type=int, help=argparse.SUPPRESS)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_user = commands.add_parser(
        "add-user", help="add or replace a user in a users file, with a hashed password"
    )
    add_user.add_argument("users_file", type=Path, metavar="USERS_FILE")
    add_user.add_argument("username")
    add_user.add_argument("--name", help="display name")
    add_user.add_argument("--email")
    add_user.add_argument(
        "--group", action="append", default=[], dest="groups", help="a group; repeatable"
    )
    add_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    rotate = commands.add_parser(
        "rotate-key",
        help="make a new signing key; the old one stays published until its tokens expire",
    )
    # Its own dest: a subparser default would overwrite the top-level --db.
    rotate.add_argument("--db", dest="rotate_db", help="the server's database (as for serving)")
    return parser


def _password_params(args: argparse.Namespace) -> ScryptParams:
    if args.testing_password_cost is not None:
        return ScryptParams(log2_n=args.testing_password_cost, r=8, p=1)
    return ScryptParams()


def _add_user(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            _complain("the passwords differ")
            return 1
    if not password:
        _complain("the password is empty")
        return 1
    try:
        entry = user_entry(
            args.username,
            hash_password(password, _password_params(args)),
            name=args.name,
            email=args.email,
            groups=args.groups,
            updated_at=int(time.time()),
        )
        upsert_user_file(args.users_file, entry)
    except (OSError, ValueError) as error:
        _complain(str(error))
        return 1
    _say(f"User {args.username!r} saved in {args.users_file}.")
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    db = args.rotate_db or args.db
    try:
        store = SqliteStore(db)
    except (OSError, sqlite3.Error) as error:
        _complain(f"cannot open {db}: {error}")
        return 1
    try:
        record = new_key_record(time.time())
        store.add_signing_key(record, retire_current=True)
    finally:
        store.close()
    _say(f"New signing key {record.kid}; the old one stays published until its tokens expire.")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        users = load_users(args.users) if args.users is not None else None
    except (OSError, ValueError) as error:
        _complain(f"cannot read the users file: {error}")
        return 2
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every keep-alive answer waits ~40 ms (Nagle against delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bound here, before the app exists, so the issuer names the port really in use.
        sock.bind((args.host, args.port))
    except OSError as error:
        sock.close()
        _complain(f"cannot listen on {args.host}:{args.port}: {error}")
        return 2
    url = f"http://{_url_host(args.host)}:{sock.getsockname()[1]}"
    allowed_hosts = list(args.allowed_hosts)
    # The pages are also reached at the address bound, whatever the issuer says.
    allowed_origins = [url]
    if ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
        allowed_hosts += LOOPBACK_HOSTS
        port = sock.getsockname()[1]
        allowed_origins += [f"http://{name}:{port}" for name in LOOPBACK_HOSTS]
    try:
        settings = _settings(args, url, allowed_hosts, allowed_origins)
    except ValueError as error:
        sock.close()
        _complain(f"cannot start: {error}")
        return 2
    try:
        app = create_app(settings, users=users)
    except (OSError, sqlite3.Error, ValueError) as error:
        sock.close()
        _complain(f"cannot start: {error}")
        return 2
    try:
        _Server(uvicorn_config(app, settings, args.log_level), url).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _settings(
    args: argparse.Namespace, url: str, allowed_hosts: list[str], allowed_origins: list[str]
) -> Settings:
    return Settings(
        issuer=args.issuer or url,
        db_path=args.db,
        users_file=args.users,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        clients=tuple(args.clients or (DEFAULT_CLIENT_ID,)),
        testing_clock=args.testing_clock,
        password_cost=_password_params(args),
        dpop=args.dpop,
        dpop_nonce=args.dpop_nonce,
        allowed_hosts=tuple(allowed_hosts),
        allowed_origins=tuple(allowed_origins),
        request_timeout=args.request_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        shutdown_timeout=args.shutdown_timeout,
    )


def uvicorn_config(app: Any, settings: Settings, log_level: str) -> uvicorn.Config:
    """uvicorn's configuration for serving ``app`` with ``settings``' timeouts."""
    return uvicorn.Config(
        app,
        log_config=_logging_config(),
        log_level=log_level,
        access_log=True,
        server_header=False,
        http=protocol_class(settings.request_timeout),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
        # Without a bound, SIGTERM waits for every request in flight, even one whose client
        # never finishes sending it.
        timeout_graceful_shutdown=settings.shutdown_timeout,  # type: ignore[arg-type]
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any local client could then
        # pick its own address and dodge the per-address sign-in limit. No proxy sits in front
        # of this server, so the socket's peer is the client.
        proxy_headers=False,
        forwarded_allow_ips=[],
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "add-user":
        return _add_user(args)
    if args.command == "rotate-key":
        return _rotate_key(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
