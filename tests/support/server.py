"""The live mock server as a real subprocess on loopback, for tests.

``start_server(**options)`` runs ``python -m mock_server --port 0 --db <file> ...`` and returns
once the server printed ``jwt-mock-server listening on http://127.0.0.1:PORT`` (it prints that
only when it accepts connections). Every server started is stopped at the test's teardown.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"^jwt-mock-server listening on (http://\S+)$")
START_TIMEOUT = 60.0
# A cheap scrypt cost (2^10) for servers whose tests are not about the hash cost; the server
# default (2^15, p=3) is tested on its own.
TEST_PASSWORD_COST = 10


class RunningServer:
    """One live server process. ``url`` has no trailing slash."""

    def __init__(self, args: Sequence[str], db: Path, env: dict[str, str]) -> None:
        self.db = db
        self.args = list(args)
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._ready = threading.Event()
        self._url: str | None = None
        self.clock_offset = 0.0  # how far advance_clock moved the server's clock
        self._process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=REPO_ROOT,
            env=env,
        )
        # The pipe is drained all the time: a full pipe would block the server's logging.
        self._reader = threading.Thread(target=self._read, name="mock-server-output", daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self._url is None:
            self.stop()
            raise RuntimeError(f"the mock server did not start:\n{self.output()}")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with self._lines_lock:
                self._lines.append(line)
            match = _LISTENING.match(line.strip())
            if match and self._url is None:
                self._url = match.group(1)
                self._ready.set()
        self._ready.set()  # EOF: the process ended; wake a waiting start

    @property
    def url(self) -> str:
        assert self._url is not None
        return self._url

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr: its logs)."""
        with self._lines_lock:
            return "".join(self._lines)

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward (needs ``testing_clock=True``, the default)."""
        body = urllib.parse.urlencode({"seconds": repr(float(seconds))}).encode("ascii")
        request = urllib.request.Request(
            f"{self.url}/_testing/advance",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            json.load(response)
        self.clock_offset += seconds

    def wall_clock(self) -> float:
        """The server's time: a wall clock for an in-process client whose clock agrees with
        the server's (as NTP makes them agree), so its DPoP proofs' ``iat`` move with it."""
        return time.time() + self.clock_offset

    def stop(self, timeout: float = 30.0) -> None:
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
        return f"RunningServer(url={self._url!r}, pid={self.pid}, db={str(self.db)!r})"


StartServer = Callable[..., RunningServer]


def server_command(
    *,
    db: Path,
    access_ttl: str = "15m",
    refresh_ttl: str = "3d",
    users: Path | None = None,
    testing_clock: bool = True,
    password_cost: int | None = TEST_PASSWORD_COST,
    extra_args: Sequence[str] = (),
) -> list[str]:
    args = [sys.executable, "-m", "mock_server", "--port", "0", "--db", str(db)]
    args += ["--access-ttl", access_ttl, "--refresh-ttl", refresh_ttl]
    if users is not None:
        args += ["--users", str(users)]
    if testing_clock:
        args.append("--testing-clock")
    if password_cost is not None:
        args += ["--testing-password-cost", str(password_cost)]
    return args + list(extra_args)


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def server_factory(tmp_path: Path) -> Iterator[StartServer]:
    """The generator behind the ``start_server`` fixture."""
    started: list[RunningServer] = []

    def start(
        *,
        access_ttl: str = "15m",
        refresh_ttl: str = "3d",
        db: Path | None = None,
        users: Path | None = None,
        testing_clock: bool = True,
        password_cost: int | None = TEST_PASSWORD_COST,
        extra_args: Sequence[str] = (),
    ) -> RunningServer:
        db_path = db if db is not None else tmp_path / f"mock-server-{len(started)}.sqlite3"
        server = RunningServer(
            server_command(
                db=db_path,
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
                users=users,
                testing_clock=testing_clock,
                password_cost=password_cost,
                extra_args=extra_args,
            ),
            db_path,
            server_env(),
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Factory: ``start_server(access_ttl="15m", refresh_ttl="3d", db=None, users=None,
    testing_clock=True, password_cost=10, extra_args=()) -> RunningServer``."""
    yield from server_factory(tmp_path)


@pytest.fixture
def live_server(start_server: StartServer) -> RunningServer:
    """A live mock server with the default options."""
    return start_server()
