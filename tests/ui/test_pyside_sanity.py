"""The PySide6 in use does not corrupt reference counts when Python emits a signal.

PySide6 6.12.0 on Python 3.11 drops a reference to ``True`` on every ``Signal.emit()`` made from
Python; after a few thousand emits the interpreter aborts ("deallocating True or False") or
segfaults somewhere unrelated. pyproject.toml excludes that release; this test catches a
regression in a later one.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    happened = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.received: list[str] = []
        self.happened.connect(self.received.append)


def test_emitting_from_python_keeps_reference_counts() -> None:
    emitter = _Emitter()
    before_true, before_false = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(200):
        emitter.happened.emit("x")
    assert len(emitter.received) == 200
    # A few references may come and go elsewhere; 200 lost ones are the bug.
    assert abs(sys.getrefcount(True) - before_true) < 50
    assert abs(sys.getrefcount(False) - before_false) < 50
