"""Headless commands on the same core as the GUI: ``login``, ``status``, ``profile``, ``logout``,
``switch``.

``jwt-desktop [--server URL] [--client-id ID] [--user NAME] COMMAND`` (``desktop/__main__.py``
hands over to :func:`main` whenever a command is given). ``--user`` picks the account a command
acts on among the stored ones (:mod:`desktop.accounts`); without it, the active account.
Errors print one line on stderr and exit non-zero, never a traceback. Secrets never reach
stdout, stderr or the settings file.


``login`` signs in with ``--browser`` (authorization code + PKCE on a loopback redirect),
``--device`` (RFC 8628: a URL and a code to type on another device) or a username and password.
Without any of them it picks from the server's metadata (:func:`choose_method`): the password
when the server lists the password grant, else the browser when one can be opened
(``webbrowser``, which honours ``$BROWSER``), else the device grant.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from desktop import accounts
from desktop.accounts import AccountNotFound
from desktop.auth import messages
from desktop.auth.errors import AuthError, SessionEnded, StorageError
from desktop.auth.messages import Revocation, describe, sign_out_line, token_binding
from desktop.config import (
    DEFAULT_CLIENT_ID,
    Account,
    Config,
    config_path,
    load_config,
    save_config,
    state_dir,
)

if TYPE_CHECKING:
    from desktop.auth.grants import Grant, Progress
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.session import AuthClient, SignInResult

__all__ = ["COMMANDS", "build_parser", "main"]

logger = logging.getLogger(__name__)

COMMANDS = ("login", "status", "profile", "logout", "switch")
PROG = "jwt-desktop"

EXIT_OK = 0
EXIT_FAILURE = 1  # an error, or (for ``status``) not signed in
EXIT_USAGE = 2  # argparse's own code for bad usage
# The OS keyring is locked, not answering or out of date, or a refreshed session could not be
# saved in it: nothing was forgotten, try again once the keyring is unlocked.
EXIT_KEYRING = 3
EXIT_INTERRUPTED = 130


_EXIT_HELP = (
    f"exit status: {EXIT_OK} success; {EXIT_FAILURE} failure (or, for status, not signed in); "
    f"{EXIT_USAGE} bad usage; {EXIT_KEYRING} OS keyring trouble (locked, not answering, or the "
    "session could not be saved in it): the session is kept, try again once the keyring is "
    f"unlocked; {EXIT_INTERRUPTED} interrupted."
)


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
        "--user",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="the stored account to act on (default: the active one; see `status`)",
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
        epilog=_EXIT_HELP,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    login = commands.add_parser(
        "login",
        parents=[common],
        help="sign in (browser, device code, or username and password)",
        description=(
            "Sign in. Without --browser, --device or --username the method follows the "
            "server: the password where the server allows the password grant, else the "
            "browser when one can be opened, else the device code."
        ),
    )
    method = login.add_mutually_exclusive_group()
    method.add_argument(
        "--browser",
        action="store_true",
        help="sign in in the web browser ($BROWSER, else the system's); redirect "
        "http://127.0.0.1:PORT/callback",
    )
    method.add_argument(
        "--device",
        action="store_true",
        help="sign in on another device: prints a URL and a code, then waits",
    )
    login.add_argument("--username", "-u", metavar="NAME", help="who signs in (password)")
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
        epilog=_EXIT_HELP,
        help="list the stored accounts; exit 0 when the active one is signed in, 1 when not",
    )
    profile = commands.add_parser(
        "profile", parents=[common], epilog=_EXIT_HELP, help="show the signed-in person's profile"
    )
    profile.add_argument("--json", action="store_true", help="print the profile as JSON")
    commands.add_parser(
        "logout",
        parents=[common],
        epilog=_EXIT_HELP,
        help="sign out of one account: revoke its session and forget it (the others stay)",
    )
    switch = commands.add_parser(
        "switch", parents=[common], help="make a stored account the active one (no password)"
    )
    switch.add_argument("name", metavar="NAME", help="the account's name (see `status`)")
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
        return EXIT_KEYRING if isinstance(exc, StorageError) else EXIT_FAILURE
    except (_Usage, AccountNotFound) as exc:  # an unknown name is a usage error, as in the GUI
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted" if args.command != "login" else messages.CANCELLED)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, never a traceback
        logger.debug("Unexpected error", exc_info=True)
        _error(f"unexpected error ({type(exc).__name__}); run with --verbose for details")
        return EXIT_FAILURE


# -- commands ------------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    if (args.browser or args.device) and (args.username or args.password_stdin):
        raise _Usage("--username and --password-stdin are for the password sign-in only")
    remember = config.remember if args.remember is None else args.remember
    with _client(server, client_id) as client:
        if args.browser:
            method = "browser"
        elif args.device:
            method = "device"
        elif args.username or args.password_stdin:
            method = "password"
        else:
            from desktop.auth.grants import browser_available

            method = choose_method(client.metadata(), browser=browser_available())
        grant = _grant(method, args, config, server)
        result = _sign_in(client, grant, remember)
    status = result.status
    config = replace(accounts.select_server(config, server), client_id=client_id, remember=remember)
    if status.remembered and status.username:
        config = accounts.use(config, server, status.username)
    elif status.username:
        # Not stored: a session stored earlier for this account was revoked by the sign-in.
        config = accounts.forget(config, server, status.username)
    _save(config)
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
        return EXIT_KEYRING  # signed in for nothing: the next command will not find it
    else:
        _out("The session was not stored (--no-remember), so it ends now.")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    target = _account(args, config, server)
    if target is None:
        _out(f"Not signed in to {server}.")
        outcome = EXIT_FAILURE
    else:
        outcome = _check_session(target, client_id)
    others = [a for a in accounts.listed(config) if target is None or a.key != target.key]
    if others:
        active = accounts.active(config)
        _out("Accounts:")
        for account in accounts.listed(config):
            mark = "*" if active is not None and account.key == active.key else " "
            checked = " (checked above)" if target is not None and account.key == target.key else ""
            _out(f"{mark} {accounts.label(account)}{checked}")
    return outcome


def _check_session(account: Account, client_id: str) -> int:
    """Say whether ``account``'s stored session works; the exit status that says it."""
    server, username = account.server_url, account.username
    with _client(server, client_id) as client:
        try:
            # KeyringUnavailable goes on (exit 3: the session is kept); a session found lost
            # (its newest refresh token never reached the keyring) is just not signed in.
            if not client.load_stored(username):
                _out(f"Not signed in to {server} (no stored session for {username}).")
                return EXIT_FAILURE
            # Proves the session works: with the stored access token while it is valid (no
            # refresh), else refreshing it once.
            client.profile()
        except SessionEnded as exc:
            _out(f"Not signed in to {server}: {exc}")
            return EXIT_FAILURE
        status = client.status()
        if not _written_back(client):
            return EXIT_KEYRING
    _out(f"Signed in to {server} as {username}.")
    _out(f"Session stored in the OS keyring ({status.storage.backend}).")
    _out(f"Tokens: {token_binding(status.bound)}.")
    if status.access_expires_in is not None:
        _out(f"Access token valid for {_duration(status.access_expires_in)}.")
    return EXIT_OK


def _profile(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    target = _account(args, config, server)
    if target is not None:
        server = target.server_url
    with _client(server, client_id) as client:
        if target is None or not client.load_stored(target.username):
            _error(f"not signed in to {server}; run `{PROG} login` first")
            return EXIT_FAILURE
        profile = client.profile()
        if not _written_back(client):
            return EXIT_KEYRING
    if args.json:
        _out(json.dumps(profile, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        _out(_table(profile))
    return EXIT_OK


def _logout(args: argparse.Namespace) -> int:
    config = load_config()
    server, client_id = _server_and_client(args, config)
    target = _account(args, config, server)
    if target is None:
        _out(f"Not signed in to {server}; nothing to do.")
        return EXIT_OK
    server, username = target.server_url, target.username
    with _client(server, client_id) as client:
        # A keyring that cannot be read raises here: nothing is revoked nor forgotten.
        found = client.load_stored(username)
        outcome = client.sign_out() if found else None
        if not _written_back(client):
            _out(sign_out_line(outcome or Revocation.REVOKED, username, server))
            return EXIT_KEYRING  # the account stays remembered: the entry is still there
    was_active = accounts.active(config) == target
    config = accounts.forget(config, server, username)
    _save(config)
    if outcome is None:
        _out(f"No stored session for {username} at {server}; nothing to revoke.")
    else:
        _out(sign_out_line(outcome, username, server))
    now_active = accounts.active(config)
    if was_active and now_active is not None:
        _out(f"The active account is now {accounts.label(now_active)}.")
    return EXIT_OK


def choose_method(metadata: ServerMetadata, *, browser: bool) -> str:
    """``login``'s method without a flag: "password", "browser" or "device".

    The password where the server lists the password grant (the dialog's way, for a
    first-party server); else the browser where one can be opened; else the device grant;
    else the browser after all (its error names what the server lacks).
    """
    from desktop.auth.grants import DEVICE_CODE_GRANT

    if metadata.grant_types_supported is not None and "password" in metadata.grant_types_supported:
        return "password"
    can_browse = metadata.authorization_endpoint is not None and metadata.supports_grant(
        "authorization_code"
    )
    can_device = metadata.device_authorization_endpoint is not None and metadata.supports_grant(
        DEVICE_CODE_GRANT
    )
    if can_browse and (browser or not can_device):
        return "browser"
    if can_device:
        return "device"
    return "browser" if metadata.authorization_endpoint is not None else "password"


def _grant(method: str, args: argparse.Namespace, config: Config, server: str) -> Grant:
    from desktop.auth import grants

    if method == "browser":
        return grants.AuthorizationCodeGrant()
    if method == "device":
        return grants.DeviceCodeGrant()
    username = args.username or _ask_username(config)
    return grants.PasswordGrant(username, _read_password(args, username, server))


def _sign_in(client: AuthClient, grant: Grant, remember: bool) -> SignInResult:
    """Sign in on a worker thread, so that Ctrl-C (on this, the main thread) cancels the wait
    cleanly: the listener closes, nothing is redeemed, then KeyboardInterrupt goes on."""
    cancel = threading.Event()
    outcome: list[SignInResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(
                client.sign_in(grant, remember=remember, cancel=cancel, progress=_progress)
            )
        except BaseException as error:  # handed to the main thread, raised there
            outcome.append(error)

    worker = threading.Thread(target=run, name="sign-in", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        cancel.set()
        worker.join()
        raise
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _progress(progress: Progress) -> None:
    """What a grant asks the person to do: one line each, flushed (a script may read it)."""
    if progress.user_code is not None:
        line = progress.message
    elif progress.url is not None and progress.message == messages.CONTINUE_IN_BROWSER:
        line = messages.open_in_browser(progress.url)
    elif progress.url is not None:
        line = f"{progress.message} {progress.url}"
    else:
        line = progress.message
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _switch(args: argparse.Namespace) -> int:
    config = load_config()
    server = _explicit_server(args)
    account = accounts.find(config, args.name, server)
    _save(accounts.use(config, account.server_url, account.username))
    _out(f"Switched to {accounts.label(account)}.")
    return EXIT_OK


_COMMANDS = {
    "login": _login,
    "status": _status,
    "profile": _profile,
    "logout": _logout,
    "switch": _switch,
}


# -- helpers -------------------------------------------------------------------------------------


def _server_and_client(args: argparse.Namespace, config: Config) -> tuple[str, str]:
    from desktop.auth.transport import normalize_server_url

    server = normalize_server_url(getattr(args, "server", None) or config.server_url)
    return server, getattr(args, "client_id", None) or config.client_id


def _explicit_server(args: argparse.Namespace) -> str | None:
    from desktop.auth.transport import normalize_server_url

    server = getattr(args, "server", None)
    return normalize_server_url(server) if server else None


def _account(args: argparse.Namespace, config: Config, server: str) -> Account | None:
    """The account a command acts on: ``--user`` (on ``--server`` when given, else on any
    server), else the active one, else (``--server`` naming another server) that server's most
    recently used one. None when there is none."""
    explicit = _explicit_server(args)
    name = getattr(args, "user", None)
    if name:
        return accounts.find(config, name, explicit)
    current = accounts.active(config)
    if current is not None and current.key[0] == server:
        return current
    on_server = accounts.on_server(config, server)
    return on_server[0] if on_server else None


@contextlib.contextmanager
def _client(server: str, client_id: str) -> Iterator[AuthClient]:
    from desktop.auth.idtoken import IDTokenValidator
    from desktop.auth.session import AuthClient
    from desktop.auth.store import KeyringStore

    client = AuthClient(
        # The same lock dir as the GUI (desktop/app.py), so that both share one refresh lock.
        server,
        client_id=client_id,
        store=KeyringStore(),
        lock_dir=state_dir(),
        # Built the same way as the GUI's: every ID token is validated before it is used.
        id_token_validator=IDTokenValidator(),
        write_back=False,  # this process ends soon: it never refreshes what it cannot save
    )
    try:
        yield client
    finally:
        client.close()


def _written_back(client: AuthClient) -> bool:
    """Before the process ends (and its memory with it): replay a keyring write that failed.
    False, with the reason on stderr, when the keyring still lags behind the session."""
    unsaved = client.status().unsaved
    if unsaved is None or client.write_back():
        return True
    _error(unsaved)
    return False


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
