"""The live mock server as a real subprocess on loopback, for tests.

``start_server(**options)`` runs ``python -m mock_server --port 0 --db <file> ...`` and returns
once the server printed ``jwt-mock-server listening on http://127.0.0.1:PORT`` (it prints that
only when it accepts connections). Every server started is stopped at the test's teardown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mock_server.passwords import DEMO_PASSWORDS
from mock_server.testing import MockServer, server_args

REPO_ROOT = Path(__file__).resolve().parents[2]
# A cheap scrypt cost (2^10) for servers whose tests are not about the hash cost; the server
# default (2^15, p=3) is tested on its own.
TEST_PASSWORD_COST = 10


class RunningServer(MockServer):
    """One live server process (mock_server.testing's, with this repo's defaults)."""

    def __init__(self, args: Sequence[str], db: Path, env: dict[str, str]) -> None:
        self.db = db
        self.clock_offset = 0.0  # how far advance_clock moved the server's clock
        super().__init__(args, DEMO_PASSWORDS, "jwt-desktop", REPO_ROOT, env)

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self.clock_offset += seconds  # both names move it: wall_clock() must follow either

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward (needs ``testing_clock=True``, the default)."""
        self.advance(seconds)

    def wall_clock(self) -> float:
        """The server's time: a wall clock for an in-process client whose clock agrees with
        the server's (as NTP makes them agree), so its DPoP proofs' ``iat`` move with it."""
        return time.time() + self.clock_offset

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
    # The fixture's own command line, with this repo's differences: info logs (tests read
    # them), the server's default clients, and a cheap hash cost.
    cost = ["--testing-password-cost", str(password_cost)] if password_cost is not None else []
    return server_args(
        db=str(db),
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        users_file=users,
        client_ids=(),
        testing_clock=testing_clock,
        log_level="info",
        extra_args=[*cost, *extra_args],
    )


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
