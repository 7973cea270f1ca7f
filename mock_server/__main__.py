"""``jwt-mock-server`` / ``python -m mock_server``: run the server, add a user, rotate the key."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import re
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .asgi import create_asgi_app
from .keys import SigningKeys, new_key_record
from .passwords import hash_password, load_users, upsert_user_file, user_entry
from .serving import bind, say, serve, serve_workers
from .settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DPOP_MODES,
    LOOPBACK_HOSTS,
    MEMORY_DB,
    ScryptParams,
    Settings,
    default_db_path,
    issuer_problem,
    parse_duration,
)
from .store import SqliteStore


def _complain(text: str) -> None:
    sys.stderr.write(f"jwt-mock-server: {text}\n")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _grace(text: str) -> float:
    # 0 (strict rotation) is the one duration allowed to be zero here.
    if re.fullmatch(r"\s*0+(\.0*)?\s*[smhd]?\s*", text.lower()):
        return 0.0
    return _duration(text)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r} (1-64)")
    return int(text)


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
        # Found when used (_db), not here: platformdirs is a few ms of every start-up.
        help="SQLite database for keys and sessions (default: mock-server.sqlite3 in the user "
        "data folder, ~/.local/share/jwt-mock-server/ on Linux); ':memory:' for a throwaway run",
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
        "--reuse-grace",
        type=_grace,
        default="0",
        metavar="DURATION",
        help="how long after a refresh its spent token still works once more, for an answer "
        "that was lost (0: strict, every reuse revokes the sign-in)",
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
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes sharing the port and the database (1)",
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
    say(f"User {args.username!r} saved in {args.users_file}.")
    return 0


def _db(path: str | None) -> str:
    return path if path is not None else str(default_db_path())


def _rotate_key(args: argparse.Namespace) -> int:
    db = _db(args.rotate_db or args.db)
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
    say(f"New signing key {record.kid}; the old one stays published until its tokens expire.")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        users = load_users(args.users) if args.users is not None else None
    except (OSError, ValueError) as error:
        _complain(f"cannot read the users file: {error}")
        return 2
    try:
        # Bound here, before the app exists, so the issuer names the port really in use.
        sock = bind(args.host, args.port, workers=args.workers)
    except OSError as error:
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
    if args.workers > 1:
        return _serve_workers(args, sock, url, settings)
    try:
        # The fast lane now, FastAPI's routes on first need (asgi.py).
        app = create_asgi_app(settings, users=users)
    except (OSError, sqlite3.Error, ValueError) as error:
        sock.close()
        _complain(f"cannot start: {error}")
        return 2
    try:
        serve(app, settings, sock, url, args.log_level)
    finally:
        sock.close()
    return 0


def _settings(
    args: argparse.Namespace, url: str, allowed_hosts: list[str], allowed_origins: list[str]
) -> Settings:
    return Settings(
        issuer=args.issuer or url,
        db_path=_db(args.db),
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
        reuse_grace=args.reuse_grace,
    )


def _serve_workers(
    args: argparse.Namespace, sock: socket.socket, url: str, settings: Settings
) -> int:
    problem = None
    if settings.testing_clock:
        # Each worker would keep a clock of its own: a test moving it would move one of N.
        problem = "--testing-clock needs a single worker"
    elif settings.db_path == MEMORY_DB:
        problem = "--workers needs a database file (each worker would have its own :memory:)"
    if problem is not None:
        sock.close()
        _complain(problem)
        return 2
    try:
        # Once here, so a bad database or users file is reported once, and the workers find
        # the signing key made (they would agree on one anyway: add_signing_key is atomic).
        store = SqliteStore(settings.db_path, issuer=settings.issuer)
        try:
            SigningKeys(store, time.time).ensure_key()
        finally:
            store.close()
        if settings.users_file is not None:
            load_users(settings.users_file)
    except (OSError, sqlite3.Error, ValueError) as error:
        sock.close()
        _complain(f"cannot start: {error}")
        return 2
    try:
        serve_workers(settings, sock, url, args.log_level, args.workers)
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "add-user":
        return _add_user(args)
    if args.command == "rotate-key":
        return _rotate_key(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
