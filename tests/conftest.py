"""Fixtures shared by every test suite."""

from __future__ import annotations

# The live mock server: start_server (factory) and live_server. See tests/support/server.py.
from tests.support.server import RunningServer, live_server, start_server

__all__ = ["RunningServer", "live_server", "start_server"]
