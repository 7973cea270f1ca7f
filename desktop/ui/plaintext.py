"""Showing text that is not ours (from a server, in an error message) exactly as it is.

A QLabel's default format, ``AutoText``, renders anything that looks like HTML: a server's
``error_description`` or a profile claim such as ``<a href=…>Re-enter your password here</a>``
would become a real link in our window, ``<img src=…>`` an image. Such text is always shown as
plain text. Rich text is kept for fixed strings of our own only (the demo credentials line).
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

__all__ = ["plain", "set_plain_text"]


def plain(label: QLabel) -> QLabel:
    """Make ``label`` show its text literally, from now on; returns it."""
    # Imported here: the Qt namespace's enums cost tens of milliseconds to build, and the
    # windows of the first frame call this only when they first show someone else's text.
    from PySide6.QtCore import Qt

    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def set_plain_text(label: QLabel, text: str) -> None:
    """Show ``text`` literally in ``label`` (whatever markup it contains)."""
    plain(label).setText(text)
