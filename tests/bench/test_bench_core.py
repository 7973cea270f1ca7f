"""Benchmarks of the client core (run on demand: ``python -m pytest tests/bench -s``).

1. What the authorized session adds to a call: ``AuthClient.request`` vs a plain ``requests``
   call with the same bearer header to the same endpoint, in the same run (interleaved, so both
   see the same machine load). Against the real server, and against a trivial local server
   where the client's own cost is not hidden by the server's.
2. 50 concurrent calls hitting an expired access token: how many refresh requests go out
   (target: exactly 1), and how long the burst takes.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from desktop.auth.grants import PasswordGrant
from desktop.auth.session import AuthClient
from desktop.auth.store import MemoryStore
from tests.core.fakes import FakeClock, FakeOIDCServer, counting_session

pytestmark = pytest.mark.bench

ROUNDS = 300


def _overhead(url: str, tmp_path: Path, path: str, label: str) -> float:
    http, _ = counting_session()
    plain = requests.Session()
    client = AuthClient(url, store=MemoryStore(), http=http, lock_dir=tmp_path)
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        access = client._state.tokens.access_token  # type: ignore[union-attr]
        headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
        target = url + path
        for _ in range(20):  # warm both connection pools
            client.request("GET", target).close()
            plain.get(target, headers=headers, timeout=10).close()
        authorized: list[float] = []
        baseline: list[float] = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            with client.request("GET", target) as response:
                assert response.status_code == 200
            authorized.append(time.perf_counter() - started)
            started = time.perf_counter()
            with plain.get(target, headers=headers, timeout=10) as response:
                assert response.status_code == 200
            baseline.append(time.perf_counter() - started)
    finally:
        client.close()
        http.close()
        plain.close()
    a, b = statistics.median(authorized), statistics.median(baseline)
    print(
        f"\n[bench] {label}: authorized {a * 1e3:.3f} ms vs plain {b * 1e3:.3f} ms per call "
        f"(median of {ROUNDS}); ratio {a / b:.3f}, added {(a - b) * 1e6:+.0f} us"
    )
    return a / b


def test_bench_session_overhead_real_server(start_server: Any, tmp_path: Path) -> None:
    # Bearer, so the plain call can send the same header; what DPoP costs on top is measured by
    # tests/bench/test_bench_server.py (DPoP /userinfo against Bearer).
    server = start_server(access_ttl="15m", extra_args=["--dpop", "off"])
    ratio = _overhead(server.url, tmp_path, "/userinfo", "real server GET /userinfo")
    assert ratio < 2.0


def test_bench_session_overhead_trivial_server(tmp_path: Path) -> None:
    fake = FakeOIDCServer()
    try:
        ratio = _overhead(fake.url, tmp_path, "/userinfo", "trivial local server GET /userinfo")
    finally:
        fake.close()
    assert ratio < 2.0


def test_bench_50_concurrent_calls_one_refresh(start_server: Any, tmp_path: Path) -> None:
    server = start_server(access_ttl="60s")
    http, adapter = counting_session()
    clock = FakeClock()
    client = AuthClient(
        server.url,
        store=MemoryStore(),
        http=http,
        clock=clock,
        wall_clock=server.wall_clock,  # DPoP proofs follow the server's moved clock
        lock_dir=tmp_path,
    )
    # Room for 50 pooled connections, so the burst measures refresh, not reconnects.
    http.adapters["http://"].init_poolmanager(1, 60)  # type: ignore[attr-defined]
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        clock.advance(3600)
        server.advance_clock(3600)
        barrier = threading.Barrier(50)
        failures: list[BaseException] = []

        def call() -> None:
            barrier.wait()
            try:
                with client.request("GET", "/userinfo") as response:
                    assert response.status_code == 200
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=call) for _ in range(50)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        elapsed = time.perf_counter() - started
    finally:
        client.close()
        http.close()
    refreshes = adapter.grants("refresh_token")
    print(
        f"\n[bench] 50 concurrent calls on an expired token: {refreshes} refresh request(s) "
        f"(target 1), {len(failures)} failures, burst took {elapsed * 1e3:.0f} ms"
    )
    assert failures == []
    assert refreshes == 1
