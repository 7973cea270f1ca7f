"""The GUI's view of :mod:`desktop.auth.messages` (where every sentence lives), plus the one
failure only the GUI meets: a demo server that could not start. Qt-free."""

from __future__ import annotations

from desktop.auth.messages import ErrorKind, Failure, describe_wait
from desktop.auth.messages import describe as _describe_core

__all__ = ["ErrorKind", "Failure", "describe", "describe_wait"]


def describe(error: BaseException) -> Failure:
    """Turn any exception from a worker into a :class:`Failure` with a sentence."""
    from desktop.demo import DemoServerError

    # Checked first: a demo server that failed to start happens before the core is loaded.
    if isinstance(error, DemoServerError):
        text = str(error).strip() or "The demo server failed."
        return Failure(ErrorKind.UNREACHABLE, text if text.endswith(".") else f"{text}.")
    return _describe_core(error)
