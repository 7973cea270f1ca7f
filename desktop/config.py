"""Non-secret settings shared by the GUI and the CLI: the server URL, the accounts index, the
remember choice.

Qt-free and cheap to import: no ``requests``, ``keyring`` or ``jwt`` here, because the GUI's cold
start imports this module before anything else. Nothing secret is ever written by this module:
tokens live in memory or in the OS keyring (see :mod:`desktop.auth.store`).

The accounts index (``accounts``) lists the sessions stored in the keyring, because a keyring
cannot list its entries portably: server URL, account name and when it was last used. The
active account is ``last_username`` at ``server_url`` (the one a start restores and a command
acts on). A file written before the index existed holds only ``last_username``: it is read as
an index of that one account. The logic over the index is in :mod:`desktop.accounts`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "APP_NAME",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SERVER_URL",
    "Account",
    "Config",
    "config_path",
    "load_config",
    "save_config",
    "server_key",
    "state_dir",
]

logger = logging.getLogger(__name__)

APP_NAME = "jwt-desktop"
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
DEFAULT_CLIENT_ID = "jwt-desktop"
CONFIG_DIR_ENV = "JWT_DESKTOP_CONFIG_DIR"
DATA_DIR_ENV = "JWT_DESKTOP_DATA_DIR"
COLOR_SCHEME_ENV = "JWT_DESKTOP_COLOR_SCHEME"  # dark|light: force a scheme (desktop.ui.theme)


@dataclass(frozen=True)
class Account:
    """One entry of the accounts index: a session stored in the keyring (never the token)."""

    server_url: str
    username: str
    last_used: str | None = None  # ISO 8601 UTC; None for an account migrated from before

    @property
    def key(self) -> tuple[str, str]:
        return server_key(self.server_url), self.username


@dataclass(frozen=True)
class Config:
    """The settings file's content. Every field has a default, so a missing file is no error.

    ``last_username`` at ``server_url`` is the active account; it is always in ``accounts``
    (added there when missing, which is how a settings file from before the index migrates).
    """

    server_url: str = DEFAULT_SERVER_URL
    client_id: str = DEFAULT_CLIENT_ID
    last_username: str | None = None
    remember: bool = True
    accounts: tuple[Account, ...] = ()

    def __post_init__(self) -> None:
        if self.last_username is None:
            return
        active = (server_key(self.server_url), self.last_username)
        if all(account.key != active for account in self.accounts):
            migrated = Account(self.server_url, self.last_username)
            object.__setattr__(self, "accounts", (*self.accounts, migrated))


def server_key(url: str) -> str:
    """A server URL as the index compares it (the core's normalisation without its checks)."""
    return url.strip().rstrip("/")


def config_path() -> Path:
    """``config.json`` in the user's config directory; ``$JWT_DESKTOP_CONFIG_DIR`` overrides it."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override) / "config.json"
    # Imported here so that merely importing this module stays as cheap as possible.
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.json"


def state_dir() -> Path:
    """Where lock files and the demo database live; ``$JWT_DESKTOP_DATA_DIR`` overrides it."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def load_config(path: Path | None = None) -> Config:
    """Read the settings; a missing or corrupt file, or a field of the wrong type, gives defaults.

    A broken settings file must never stop the app from starting: the worst case is that the
    person types the server URL again.
    """
    path = path or config_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    # OSError: a directory, no permission. ValueError: not JSON, not UTF-8. RecursionError: JSON
    # nested deeper than the parser's recursion limit ("[" * 100000).
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("Ignoring unreadable settings file %s (%s)", path, type(exc).__name__)
        return Config()
    if not isinstance(raw, dict):
        logger.warning("Ignoring settings file %s: not a JSON object", path)
        return Config()
    defaults = Config()
    values: dict[str, Any] = {}
    for field in fields(Config):
        value = raw.get(field.name, getattr(defaults, field.name))
        if field.name == "accounts":
            value = _accounts(value, path)
        elif not _type_ok(field.name, value):
            logger.warning("Ignoring setting %r in %s: wrong type", field.name, path)
            value = getattr(defaults, field.name)
        values[field.name] = value
    return Config(**values)


def _accounts(value: object, path: Path) -> tuple[Account, ...]:
    """The index from its JSON list; an entry of the wrong shape is dropped, not the file."""
    if not isinstance(value, (list, tuple)):
        logger.warning("Ignoring setting 'accounts' in %s: wrong type", path)
        return ()
    accounts: list[Account] = []
    for entry in value:
        server = entry.get("server_url") if isinstance(entry, dict) else None
        username = entry.get("username") if isinstance(entry, dict) else None
        last_used = entry.get("last_used") if isinstance(entry, dict) else None
        if not (isinstance(server, str) and server and isinstance(username, str) and username):
            logger.warning("Ignoring an entry of 'accounts' in %s: wrong shape", path)
            continue
        account = Account(server, username, last_used if isinstance(last_used, str) else None)
        if all(known.key != account.key for known in accounts):
            accounts.append(account)
    return tuple(accounts)


def _type_ok(name: str, value: object) -> bool:
    if name == "remember":
        return isinstance(value, bool)
    if name == "last_username":
        return value is None or (isinstance(value, str) and value != "")
    return isinstance(value, str) and value != ""


def save_config(config: Config, path: Path | None = None) -> bool:
    """Write the settings atomically (a temporary file, then a rename), so a crash never leaves
    half a file and two processes writing at once leave one complete version.

    Best-effort: the settings only spare the person some typing, so a file that cannot be
    written (a read-only directory, a full disk, a directory in its place) logs one warning and
    returns False instead of raising; the caller carries on. True when the file was written.
    """
    path = path or config_path()
    text = json.dumps(asdict(config), indent=2, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _warn_not_saved(path, exc)
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        _warn_not_saved(path, exc)
        return False
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return True


def _warn_not_saved(path: Path, exc: OSError) -> None:
    # The settings hold nothing secret, but only the path and the OS's reason are logged.
    logger.warning(
        "Could not save the settings to %s (%s)", path, exc.strerror or type(exc).__name__
    )
