"""``--workers N``: worker processes share the port and the database; the rotation stays atomic
across them. The testing clock is refused with workers (each would keep its own)."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx

from tests.server.helpers import CLIENT_ID, live_sign_in
from tests.support.server import REPO_ROOT, StartServer, server_env


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
