"""A limit on failed sign-ins: at most N failures per key (a username, a client address) in a
sliding window. The clock is injected so tests move time instead of waiting."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable

# Bounded memory under a flood of made-up usernames: the stalest keys go first.
_MAX_KEYS = 100_000


class FailureLimiter:
    def __init__(self, clock: Callable[[], float], limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it may try now."""
        now = self._clock()
        with self._lock:
            times = self._recent(key, now)
            if times is None or len(times) < self._limit:
                return None
            # The window slides: a try is allowed once the oldest counted failure ages out.
            return times[len(times) - self._limit] + self._window - now

    def record_failure(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._recent(key, now) or deque()
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > _MAX_KEYS:
                self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
