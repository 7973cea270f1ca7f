"""A limit on failed sign-ins: at most N failures per key (a username, a client address) in a
sliding window. The clock is injected so tests move time instead of waiting.

A try is reserved (``begin``) before the slow password check and settled (``finish``) after
it: tries still being checked count against the limit, so N concurrent guesses cannot all slip
in between the check of the limit and the record of their failures."""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

# Bounded memory under a flood of made-up usernames: the stalest keys go first.
_MAX_KEYS = 100_000


def address_key(host: str) -> str:
    """The client a connection's address stands for, as far as the per-address limit goes.

    One machine has the whole loopback range (``127.0.0.2`` is as much the local host as
    ``127.0.0.1``, and ``::1`` too), and an IPv6 host is usually handed a whole /64: counting
    each address apart would give one client millions of separate limits.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureLimiter:
    def __init__(self, clock: Callable[[], float], limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # Tries begun and not yet finished; bounded by the number of concurrent requests.
        self._in_flight: dict[str, int] = {}

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

    def begin(self, key: str) -> float | None:
        """Reserve a try for ``key``: None when reserved (then call ``finish`` exactly once),
        else the seconds to wait before a try is allowed."""
        now = self._clock()
        with self._lock:
            failures = list(self._recent(key, now) or ())
            in_flight = self._in_flight.get(key, 0)
            if len(failures) + in_flight < self._limit:
                self._in_flight[key] = in_flight + 1
                return None
            # Counted as if every try in flight fails now: the window slides, and a try is
            # allowed once enough of the oldest counted failures age out.
            counted = failures + [now] * in_flight
            return counted[len(counted) - self._limit] + self._window - now

    def finish(self, key: str, *, failed: bool) -> None:
        """Settle a try reserved by ``begin``: record its failure, or just free its slot."""
        now = self._clock()
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
            if not failed:
                return
            times = self._recent(key, now) or deque()
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > _MAX_KEYS:
                self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (tries still in flight keep their slots)."""
        with self._lock:
            self._failures.pop(key, None)
