"""The accounts index: which sessions are stored (per server and account name), which is active.

Qt-free and cheap to import, shared by the GUI and the CLI. The index lives in the settings file
(:class:`desktop.config.Config`, fields ``accounts`` and, for the active one, ``server_url`` +
``last_username``); the sessions themselves are in the keyring, one entry per account. Every
function here is pure: it takes a :class:`Config` and returns a new one, the caller saves it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from desktop.config import Account, Config, server_key

__all__ = [
    "AccountNotFound",
    "active",
    "find",
    "forget",
    "label",
    "listed",
    "on_server",
    "select_server",
    "use",
]


class AccountNotFound(Exception):
    """No account (or more than one) answers to a name; ``str(error)`` is a sentence that names
    the known accounts."""


def _now() -> str:
    # time, not datetime: this module is imported before the first frame, datetime is slower.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def label(account: Account) -> str:
    return f"{account.username} at {account.server_url}"


def listed(config: Config) -> list[Account]:
    """Every account, grouped by server (the current server first), most recently used first."""
    current = server_key(config.server_url)
    # Two stable sorts: newest first (ISO 8601 strings of one format sort as time does), then
    # grouped by server with the current one first.
    newest_first = sorted(config.accounts, key=lambda a: a.last_used or "", reverse=True)
    return sorted(newest_first, key=lambda a: (server_key(a.server_url) != current, a.server_url))


def on_server(config: Config, server_url: str) -> list[Account]:
    """The accounts of one server, most recently used first."""
    key = server_key(server_url)
    return [a for a in listed(config) if server_key(a.server_url) == key]


def active(config: Config) -> Account | None:
    """The active account: ``last_username`` at ``server_url``."""
    if config.last_username is None:
        return None
    wanted = (server_key(config.server_url), config.last_username)
    return next((a for a in config.accounts if a.key == wanted), None)


def select_server(config: Config, server_url: str) -> Config:
    """Make ``server_url`` the current server; its most recently used account (if any) becomes
    the active one. (Never ``replace(config, server_url=...)``: the active account is a name
    *at* the server, it would silently move to the new one.)"""
    if server_key(server_url) == server_key(config.server_url):
        return dataclasses.replace(config, server_url=server_url)
    known = on_server(config, server_url)
    return dataclasses.replace(
        config, server_url=server_url, last_username=known[0].username if known else None
    )


def use(config: Config, server_url: str, username: str, *, now: Callable[[], str] = _now) -> Config:
    """``username`` at ``server_url`` is stored and becomes the active account."""
    account = Account(server_key(server_url), username, now())
    others = tuple(a for a in config.accounts if a.key != account.key)
    return dataclasses.replace(
        config, server_url=account.server_url, last_username=username, accounts=(account, *others)
    )


def forget(config: Config, server_url: str, username: str) -> Config:
    """Drop an account (signed out, or its session ended). When it was the active one, the most
    recently used other account of the same server becomes active (as ``gh auth logout``
    does), else none is."""
    key = (server_key(server_url), username)
    remaining = tuple(a for a in config.accounts if a.key != key)
    last_username = config.last_username
    current = active(config)
    if current is not None and current.key == key:
        same_server = [a for a in on_server(config, server_url) if a.key != key]
        last_username = same_server[0].username if same_server else None
    # Through the constructor (not replace), so the active account is checked again.
    return Config(
        server_url=config.server_url,
        client_id=config.client_id,
        last_username=last_username,
        remember=config.remember,
        accounts=remaining,
    )


def find(config: Config, name: str, server_url: str | None = None) -> Account:
    """The account called ``name`` (on ``server_url`` when given, else on any server).

    Raises :class:`AccountNotFound` when none is, or when several servers have one of that name
    and no server was given.
    """
    candidates = config.accounts if server_url is None else on_server(config, server_url)
    matches = [a for a in candidates if a.username == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        servers = ", ".join(a.server_url for a in matches)
        raise AccountNotFound(
            f"there is an account {name!r} on several servers ({servers}); "
            "choose one with --server URL"
        )
    known = ", ".join(label(a) for a in listed(config)) or "none (sign in with `login`)"
    where = f" at {server_key(server_url)}" if server_url is not None else ""
    raise AccountNotFound(f"no account {name!r}{where}; known accounts: {known}")
