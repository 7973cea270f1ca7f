"""Headless commands on the same core as the GUI: ``login``, ``status``, ``profile``, ``logout``.

``jwt-desktop [--server URL] [--client-id ID] COMMAND`` (``desktop/__main__.py`` hands over to
:func:`main` whenever a command is given). Errors print one line on stderr and exit non-zero,
never a traceback. Secrets never reach stdout, stderr or the settings file.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from desktop.auth.errors import AuthError, SessionEnded
from desktop.auth.messages import describe, sign_out_line, token_binding
from desktop.config import (
    DEFAULT_CLIENT_ID,
    Config,
    config_path,
    load_config,
    save_config,
    state_dir,
)

if TYPE_CHECKING:
    from desktop.auth.session import AuthClient

__all__ = ["COMMANDS", "build_parser", "main"]

logger = logging.getLogger(__name__)

COMMANDS = ("login", "status", "profile", "logout")
PROG = "jwt-desktop"

EXIT_OK = 0
EXIT_FAILURE = 1  # an error, or (for ``status``) not signed in
EXIT_USAGE = 2  # argparse's own code for bad usage
EXIT_INTERRUPTED = 130


class _Usage(Exception):
    """A usage problem found after parsing (e.g. no username and no terminal to ask on)."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the options may come before or after the command without one hiding the other.
    common.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="token server URL (default: the remembered one, else http://127.0.0.1:8765)",
    )
    common.add_argument(
        "--client-id",
        metavar="ID",
        default=argparse.SUPPRESS,
        help=f"OAuth client id (default: {DEFAULT_CLIENT_ID})",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log what happens on stderr (never any secret)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="Sign in to a token server and use the session from the command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    login = commands.add_parser(
        "login", parents=[common], help="sign in with a username and password"
    )
    login.add_argument("--username", "-u", metavar="NAME", help="who signs in")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (for scripts; otherwise it is prompted for)",
    )
    login.add_argument(
        "--remember",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the session in the OS keyring (default: the last choice, initially yes)",
    )
    commands.add_parser(
        "status",
        parents=[common],
        help="who is signed in where; exit 0 when signed in, 1 when not",
    )
    profile = commands.add_parser(
        "profile", parents=[common], help="show the signed-in person's profile"
    )
    profile.add_argument("--json", action="store_true", help="print the profile as JSON")
    commands.add_parser(
        "logout", parents=[common], help="sign out: revoke the session and forget it"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (never raises for an expected failure)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse already printed usage or help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "verbose", False):
        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
    elif not logging.getLogger().handlers:
        # Without this, logging's last-resort handler would print the core's warnings on
        # stderr next to the command's own sentence, which already says the same thing.
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        return _COMMANDS[args.command](args)
    except AuthError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except _Usage as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, never a traceback
        logger.debug("Unexpected error", exc_info=True)
        _error(f"unexpected error ({type(exc).__name__}); run with --verbose for details")
        return EXIT_FAILURE


# -- commands ------------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    username = args.username or _ask_username(config)
    password = _read_password(args, username, server)
    remember = config.remember if args.remember is None else args.remember
    from desktop.auth.grants import PasswordGrant

    with _client(server, client_id) as client:
        result = client.sign_in(PasswordGrant(username, password), remember=remember)
    status = result.status
    _save(
        replace(
            config,
            server_url=server,
            client_id=client_id,
            last_username=status.username if status.remembered else config.last_username,
            remember=remember,
        )
    )
    profile = result.profile or {}
    name = profile.get("name") or profile.get("preferred_username") or status.username
    _out(f"Signed in to {server} as {name}.")
    if result.profile_error is not None:
        _warn(f"the profile could not be fetched: {describe(result.profile_error).message}")
    _out(f"Tokens: {token_binding(status.bound)}.")
    if status.remembered:
        _out(f"The session is stored in the OS keyring ({status.storage.backend}).")
    elif remember:
        _out(f"The session was not stored: {status.storage.reason}")
    else:
        _out("The session was not stored (--no-remember), so it ends now.")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    username = config.last_username
    if username is None:
        _out(f"Not signed in to {server}.")
        return EXIT_FAILURE
    with _client(server, client_id) as client:
        if not client.load_stored(username):
            storage = client.storage_status()
            _out(f"Not signed in to {server} (no stored session for {username}).")
            if not storage.persistent and storage.reason:
                _out(storage.reason)
            return EXIT_FAILURE
        try:
            # Proves the session works: with the stored access token while it is valid (no
            # refresh), else refreshing it once.
            client.profile()
        except SessionEnded as exc:
            _out(f"Not signed in to {server}: {exc}")
            return EXIT_FAILURE
        status = client.status()
    _out(f"Signed in to {server} as {username}.")
    _out(f"Session stored in the OS keyring ({status.storage.backend}).")
    _out(f"Tokens: {token_binding(status.bound)}.")
    if status.access_expires_in is not None:
        _out(f"Access token valid for {_duration(status.access_expires_in)}.")
    return EXIT_OK


def _profile(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    with _client(server, client_id) as client:
        if config.last_username is None or not client.load_stored(config.last_username):
            _error(f"not signed in to {server}; run `{PROG} login` first")
            return EXIT_FAILURE
        profile = client.profile()
    if args.json:
        _out(json.dumps(profile, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        _out(_table(profile))
    return EXIT_OK


def _logout(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    username = config.last_username
    if username is None:
        _out(f"Not signed in to {server}; nothing to do.")
        return EXIT_OK
    with _client(server, client_id) as client:
        found = client.load_stored(username)
        outcome = client.sign_out() if found else None
    _save(replace(config, last_username=None))
    if outcome is None:
        _out(f"No stored session for {username} at {server}; nothing to revoke.")
    else:
        _out(sign_out_line(outcome, username, server))
    return EXIT_OK


_COMMANDS = {"login": _login, "status": _status, "profile": _profile, "logout": _logout}


# -- helpers -------------------------------------------------------------------------------------


def _server_and_client(args: argparse.Namespace, config: Config) -> tuple[str, str]:
    from desktop.auth.transport import normalize_server_url

    server = normalize_server_url(getattr(args, "server", None) or config.server_url)
    return server, getattr(args, "client_id", None) or config.client_id


@contextlib.contextmanager
def _client(server: str, client_id: str) -> Iterator[AuthClient]:
    from desktop.auth.session import AuthClient
    from desktop.auth.store import KeyringStore

    client = AuthClient(
        # The same lock dir as the GUI (desktop/app.py), so that both share one refresh lock.
        server,
        client_id=client_id,
        store=KeyringStore(),
        lock_dir=state_dir(),
    )
    try:
        yield client
    finally:
        client.close()


def _ask_username(config: Config) -> str:
    if not sys.stdin.isatty():
        raise _Usage("no username given: use --username NAME")
    default = config.last_username
    prompt = f"Username [{default}]: " if default else "Username: "
    answer = input(prompt).strip() or (default or "")
    if not answer:
        raise _Usage("no username given")
    return answer


def _read_password(args: argparse.Namespace, username: str, server: str) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password for {username} at {server}: ")
    else:
        raise _Usage("standard input is not a terminal: pass the password with --password-stdin")
    if not password:
        raise _Usage("empty password")
    return password


def _table(profile: dict[str, Any]) -> str:
    if not profile:
        return "(empty profile)"
    width = max(len(str(key)) for key in profile)
    lines = []
    for key in sorted(profile):
        value = profile[key]
        if isinstance(value, list):
            text = ", ".join(str(item) for item in value)
        elif isinstance(value, dict):
            text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        else:
            text = str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _save(config: Config) -> None:
    # The command itself succeeded (the session is in the keyring, or revoked): an unwritable
    # settings file only costs typing next time, so it is a warning, not a failure.
    if not save_config(config):
        _warn(
            f"could not save the settings to {config_path()}; "
            "the next command will not remember them"
        )


def _out(text: str, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def _warn(text: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {text}\n")


def _error(text: str) -> None:
    sys.stderr.write(f"{PROG}: error: {text}\n")
