"""Timing checks of the server, run on demand with the benchmarks (timing stays out of the
default run, where a loaded machine would make it flaky):

    python -m pytest tests/bench -s -p no:cacheprovider

The default run proves the same properties without a clock: the throttle tests count that an
unknown user costs one full-cost hash check, like a wrong password.
"""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from mock_server import ScryptParams
from mock_server.passwords import User, hash_password, subject_for
from tests.server.helpers import FakeClock, app_client, password_grant
from tests.support.server import RunningServer

pytestmark = pytest.mark.bench


def test_unknown_user_and_wrong_password_take_similar_time() -> None:
    # A users file at the real (slow) default cost, where timing could leak. (The demo users'
    # hash is cheap on purpose; the default run checks the dummy follows it.)
    carol = User("carol", hash_password("pw", ScryptParams()), subject_for("carol"), "Carol")
    with app_client(FakeClock(), users={"carol": carol}, max_failures_per_user=100) as client:
        timings: dict[str, list[float]] = {"carol": [], "nobody": []}
        for _ in range(3):
            for username, samples in timings.items():
                start = time.perf_counter()
                assert password_grant(client, username, "wrong").status_code == 400
                samples.append(time.perf_counter() - start)
    known, unknown = (statistics.median(t) for t in timings.values())
    assert known > 0.02 and unknown > 0.02  # a slow hash ran for both
    assert 1 / 3 < known / unknown < 3  # without the dummy hash: ~0.5 s against ~0 s
    print(
        f"\nsign-in failure, median of 3: known user {known * 1000:.0f} ms, "
        f"unknown user {unknown * 1000:.0f} ms, ratio {known / unknown:.2f}x"
    )


def test_keep_alive_answers_do_not_wait_for_delayed_acks(live_server: RunningServer) -> None:
    # Without TCP_NODELAY on the server's connections, each answer on a kept-alive connection
    # stalls ~40 ms (Nagle's algorithm against the client's delayed ACK): 20 take >= 0.8 s.
    with httpx.Client(base_url=live_server.url) as client:
        client.get("/healthz")
        start = time.perf_counter()
        for _ in range(20):
            assert client.get("/healthz").status_code == 200
        elapsed = time.perf_counter() - start
    print(f"\n20 keep-alive requests: {elapsed * 1000:.0f} ms (>= 800 ms means delayed ACKs)")
    assert elapsed < 0.6
