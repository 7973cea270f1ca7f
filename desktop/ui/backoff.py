"""Back-off delays for retrying an unreachable server (Qt-free, so it is tested alone)."""

from __future__ import annotations


class Backoff:
    """Delays that double from ``initial`` up to ``maximum`` seconds; :meth:`reset` on success."""

    def __init__(self, *, initial: float = 2.0, factor: float = 2.0, maximum: float = 60.0) -> None:
        self._initial = initial
        self._factor = factor
        self._maximum = maximum
        self._next = initial
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call lengthens the following one."""
        delay = self._next
        self._next = min(self._next * self._factor, self._maximum)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._next = self._initial
        self.attempts = 0
