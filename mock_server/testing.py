"""The mock server as a test partner: ``running_server(...)`` and the pytest fixture.

    from mock_server.testing import running_server

    with running_server(access_ttl="1m") as server:
        tokens = server.sign_in("alice")
        server.advance(61)  # the access token has now expired, for the server too
        ...

With pytest the fixture ``jwt_mock_server`` does the same (this module is a pytest plugin,
registered through the ``pytest11`` entry point when the project is installed); options come
from a marker, ``@pytest.mark.jwt_mock_server(access_ttl="1m", users={...})``, or from
indirect parametrisation with a dict of the same options.

The server is a real separate process (``python -m mock_server``) on a free loopback port,
not a thread of the test's own interpreter: the client under test then meets what it meets in
production (real sockets, the server's own event loop, clock and SQLite connection, a process
that can be killed), nothing the test patches or imports leaks into the server, and a server
crash fails the test instead of the test run. It costs a start of a fraction of a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .passwords import DEMO_PASSWORDS, hash_password
from .settings import DEFAULT_CLIENT_ID, ScryptParams

__all__ = ["MockServer", "Tokens", "running_server"]

LISTENING_PREFIX = "jwt-mock-server listening on "
START_TIMEOUT = 60.0
_TIMEOUT = 30.0
# Hashes of the users a test defines: their passwords are written in the test itself, so a
# costly hash would protect nothing (the dummy hash for unknown users follows this cost).
_TEST_USER_COST = 4


@dataclass(frozen=True)
class Tokens:
    """A token response. The tokens stay out of ``repr``."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> Tokens:
        return cls(
            access_token=str(data["access_token"]),
            token_type=str(data["token_type"]),
            expires_in=int(data["expires_in"]),
            scope=str(data.get("scope", "")),
            refresh_token=data.get("refresh_token"),
            id_token=data.get("id_token"),
        )

    @property
    def authorization(self) -> dict[str, str]:
        """The header that carries the access token."""
        return {"Authorization": f"{self.token_type} {self.access_token}"}


class ServerError(RuntimeError):
    """The server refused a helper call; ``status`` and ``error`` are the server's answer."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.error = str(body.get("error", ""))
        super().__init__(f"{status} {self.error}: {body.get('error_description', '')}")


class MockServer:
    """A running server process. ``url`` (no trailing slash) is also its ``issuer``."""

    def __init__(
        self,
        args: Sequence[str],
        users: Mapping[str, str],
        client_id: str,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self.users: Mapping[str, str] = dict(users)  # username -> password
        self.client_id = client_id
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._ready = threading.Event()
        self._url: str | None = None
        # Our own interpreter and arguments, no shell.
        self._process = subprocess.Popen(  # noqa: S603
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=cwd,
            env=None if env is None else dict(env),
        )
        # The pipe is drained all the time: a full pipe would block the server's logging.
        self._reader = threading.Thread(target=self._read, name="jwt-mock-server", daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self._url is None:
            self.stop()
            raise RuntimeError(f"jwt-mock-server did not start:\n{self.output()}")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with self._lines_lock:
                self._lines.append(line)
            text = line.strip()
            if self._url is None and text.startswith(LISTENING_PREFIX):
                self._url = text.removeprefix(LISTENING_PREFIX)
                self._ready.set()
        self._ready.set()  # EOF: the process ended; wake a waiting start

    @property
    def url(self) -> str:
        assert self._url is not None
        return self._url

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def output(self) -> str:
        """Everything the server printed so far (its logs never hold a token)."""
        with self._lines_lock:
            return "".join(self._lines)

    # Helpers for tests

    def sign_in(
        self, username: str, password: str | None = None, *, scope: str | None = None
    ) -> Tokens:
        """Sign ``username`` in (password grant) with the password the server was given."""
        form = {
            "grant_type": "password",
            "username": username,
            "password": self.users[username] if password is None else password,
            "client_id": self.client_id,
        }
        if scope is not None:
            form["scope"] = scope
        return Tokens.from_response(self._post("/token", form))

    def refresh(self, refresh_token: str) -> Tokens:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
        }
        return Tokens.from_response(self._post("/token", form))

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward: tokens expire, windows pass, without waiting."""
        self._post("/_testing/advance", {"seconds": repr(float(seconds))})

    def revoke_all(self) -> int:
        """Revoke every sign-in (their refresh and access tokens stop working at once)."""
        return int(self._post("/_testing/revoke-all", {})["revoked"])

    def _post(self, path: str, form: Mapping[str, str]) -> dict[str, Any]:
        # Always this server's own http:// URL.
        request = urllib.request.Request(  # noqa: S310
            self.url + path,
            data=urllib.parse.urlencode(form).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            with error:
                raise ServerError(error.code, json.load(error)) from None

    def stop(self, timeout: float = _TIMEOUT) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait for it. Idempotent."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._reader.join(timeout)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __repr__(self) -> str:
        return f"MockServer(url={self._url!r}, pid={self.pid})"


def _users_file(users: Mapping[str, Mapping[str, Any]], path: Path) -> dict[str, str]:
    """Write a users file for ``users`` (username -> {"password": ..., other entry fields}),
    and return their passwords."""
    entries = []
    passwords = {}
    for username, spec in users.items():
        entry = {k: v for k, v in spec.items() if k != "password"}
        password = str(spec.get("password", username))
        entry["username"] = username
        entry["password_hash"] = hash_password(password, ScryptParams(_TEST_USER_COST, 8, 1))
        entries.append(entry)
        passwords[username] = password
    path.write_text(json.dumps({"users": entries}), encoding="utf-8")
    return passwords


def server_args(
    *,
    db: str,
    access_ttl: str | float = "15m",
    refresh_ttl: str | float = "3d",
    reuse_grace: str | float = 0,
    users_file: Path | None = None,
    client_ids: Sequence[str] = (DEFAULT_CLIENT_ID,),
    testing_clock: bool = True,
    log_level: str = "warning",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of a server on a free loopback port."""
    args = [sys.executable, "-m", "mock_server", "--host", "127.0.0.1", "--port", "0"]
    args += ["--db", db, "--log-level", log_level]
    args += ["--access-ttl", str(access_ttl), "--refresh-ttl", str(refresh_ttl)]
    args += ["--reuse-grace", str(reuse_grace)]
    for client_id in client_ids:
        args += ["--client-id", client_id]
    if users_file is not None:
        args += ["--users", str(users_file)]
    if testing_clock:
        args.append("--testing-clock")
    return args + list(extra_args)


@contextmanager
def running_server(
    *,
    access_ttl: str | float = "15m",
    refresh_ttl: str | float = "3d",
    reuse_grace: str | float = 0,
    users: Mapping[str, Mapping[str, Any]] | None = None,
    client_ids: Sequence[str] = (DEFAULT_CLIENT_ID,),
    extra_args: Sequence[str] = (),
) -> Iterator[MockServer]:
    """A fresh server process for the block, stopped and forgotten after it.

    ``access_ttl``, ``refresh_ttl`` and ``reuse_grace`` take seconds or ``"45s"``, ``"15m"``...
    ``users`` replaces the demo users (alice/wonderland, bob/builder): ``{"carol":
    {"password": "pw", "groups": ["staff"], "email": "c@example.org", "claims": {...}}}``.
    The first of ``client_ids`` is the one the helpers sign in with. The server's clock is
    movable (``advance``) and its state lives in a temporary database.
    """
    workdir = Path(tempfile.mkdtemp(prefix="jwt-mock-server-"))
    try:
        users_file = None
        passwords = dict(DEMO_PASSWORDS)
        if users is not None:
            users_file = workdir / "users.json"
            passwords = _users_file(users, users_file)
        args = server_args(
            db=str(workdir / "server.sqlite3"),
            access_ttl=access_ttl,
            refresh_ttl=refresh_ttl,
            reuse_grace=reuse_grace,
            users_file=users_file,
            client_ids=client_ids,
            extra_args=extra_args,
        )
        server = MockServer(args, passwords, client_ids[0], workdir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# The pytest plugin, when pytest is there (running_server needs no pytest).
if find_spec("pytest") is not None:
    from ._pytest_plugin import jwt_mock_server, pytest_configure

    __all__ += ["jwt_mock_server", "pytest_configure"]
