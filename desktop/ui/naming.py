"""Names for widgets: every interactive widget has an ``objectName`` (tests, stylesheet) and an
accessible name (screen readers)."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def name_widget(widget: QWidget, object_name: str, accessible: str) -> None:
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible)
