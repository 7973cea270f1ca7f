"""``--workers N``: worker processes share the port and the database; the rotation stays atomic
across them. The testing clock is refused with workers (each would keep its own). On Linux each
worker listens on a socket of its own, which the system spreads the connections over."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mock_server.serving import SPREADS_CONNECTIONS
from tests.server.helpers import CLIENT_ID, live_sign_in
from tests.support.server import REPO_ROOT, RunningServer, StartServer, server_env


def test_concurrent_uses_of_one_token_across_workers_rotate_once(
    start_server: StartServer,
) -> None:
    server = start_server(testing_clock=False, extra_args=["--workers", "2"])
    tokens = live_sign_in(server.url)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def use() -> None:
        # A connection each, so the requests spread over the workers.
        with httpx.Client() as client:
            barrier.wait()
            response = client.post(
                f"{server.url}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": CLIENT_ID,
                },
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] + [400] * 7


def test_workers_refuse_the_testing_clock_and_a_memory_database() -> None:
    for extra in (["--testing-clock", "--db", "x.sqlite3"], ["--db", ":memory:"]):
        result = subprocess.run(
            [sys.executable, "-m", "mock_server", "--port", "0", "--workers", "2", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            env=server_env(),
            check=False,
        )
        assert result.returncode == 2
        assert "worker" in result.stderr


def _tcp_sockets(port: int) -> dict[int, str]:
    """inode -> state ("LISTEN", "ESTABLISHED", ...) of this machine's TCP sockets whose local
    port is ``port`` (Linux's /proc/net/tcp and tcp6)."""
    states = {"0A": "LISTEN", "01": "ESTABLISHED"}
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found[int(fields[9])] = states.get(fields[3], fields[3])
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _listening_workers(server_pid: int, port: int) -> dict[int, set[int]]:
    """Worker pid -> the inodes of its sockets on ``port`` (for workers listening there)."""
    sockets = _tcp_sockets(port)
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    workers: dict[int, set[int]] = {}
    for child in map(int, children):
        with contextlib.suppress(OSError):  # a child that just ended
            inodes = {i for i in _socket_inodes(child) if i in sockets}
            if any(sockets[i] == "LISTEN" for i in inodes):
                workers[child] = inodes
    return workers


def _wait_for_workers(server_pid: int, port: int, *, gone: int = 0) -> dict[int, set[int]]:
    """Two workers listening (none of them ``gone``): the listening line comes when the
    first is ready, the second may still be starting."""
    deadline = time.monotonic() + 60
    while True:
        workers = _listening_workers(server_pid, port)
        if len(workers) == 2 and gone not in workers:
            return workers
        if time.monotonic() > deadline:
            pytest.fail(f"not two workers listening: {workers}")
        time.sleep(0.05)


def _port(server: RunningServer) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


@pytest.mark.skipif(not SPREADS_CONNECTIONS, reason="SO_REUSEPORT spreads connections on Linux")
def test_each_worker_listens_on_its_own_socket_and_gets_connections(
    start_server: StartServer,
) -> None:
    # On one shared socket, the first worker to wake took every waiting connection: with
    # keep-alive clients, one worker could hold them all (2 runs in 5 under wrk).
    server = start_server(testing_clock=False, extra_args=["--workers", "2"])
    port = _port(server)
    _wait_for_workers(server.pid, port)
    clients = [httpx.Client() for _ in range(16)]
    try:
        for client in clients:  # each its own kept-alive connection
            assert client.get(f"{server.url}/healthz").status_code == 200
        workers, sockets = _listening_workers(server.pid, port), _tcp_sockets(port)
    finally:
        for client in clients:
            client.close()
    held = [[sockets[i] for i in inodes] for inodes in workers.values()]
    listening = {i for inodes in workers.values() for i in inodes if sockets[i] == "LISTEN"}
    assert len(held) == 2 and len(listening) == 2  # two workers, a listening socket each
    for states in held:
        assert states.count("LISTEN") == 1
        # Spread by a hash of the addresses: all 16 on one worker is a 1-in-32768 chance.
        assert states.count("ESTABLISHED") >= 1
    assert sum(states.count("ESTABLISHED") for states in held) == 16


@pytest.mark.skipif(not SPREADS_CONNECTIONS, reason="SO_REUSEPORT spreads connections on Linux")
def test_a_killed_worker_takes_its_socket_with_it_and_is_replaced(
    start_server: StartServer,
) -> None:
    # Its own socket must close with it: connections the system sent there would otherwise
    # wait for ever. uvicorn starts a new worker, which listens on the first socket.
    server = start_server(testing_clock=False, extra_args=["--workers", "2"])
    port = _port(server)
    before = _wait_for_workers(server.pid, port)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    now = _wait_for_workers(server.pid, port, gone=victim)
    gone = before[victim] - set().union(*now.values())
    assert gone and not gone & set(_tcp_sockets(port))  # its socket is closed, not orphaned
    for _ in range(32):  # new connections each, spread over both sockets: all answered
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
