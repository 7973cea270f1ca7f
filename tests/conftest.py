"""Fixtures shared by every test suite."""

from __future__ import annotations

import os

# No display in CI nor on most developers' shells: Qt tests draw offscreen unless told otherwise
# (set before any test module creates the QApplication).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The live mock server: start_server (factory) and live_server. See tests/support/server.py.
from tests.support.server import RunningServer, live_server, start_server

__all__ = ["RunningServer", "live_server", "start_server"]
