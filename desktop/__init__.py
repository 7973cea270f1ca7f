"""jwt-desktop: a Qt desktop client for JWT sign-in, and its Qt-free core (:mod:`desktop.auth`).

Importing this package must stay cheap and Qt-free: the CLI and the GUI's cold start import it.
"""

from __future__ import annotations

__version__ = "0.1.0"
