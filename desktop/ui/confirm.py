"""One question before an action that cannot be taken back (copy a secret, revoke a session).

Views take a ``Confirm`` in their constructor, so tests answer it without a modal dialog.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

Confirm = Callable[[QWidget, str], bool]


def asker(title: str, action: str) -> Confirm:
    """A warning box titled ``title`` whose accept button says ``action``; Cancel is the
    default, so Enter never does the irreversible thing by accident."""

    def ask(parent: QWidget, text: str) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.NoButton, parent
        )
        accept = box.addButton(action, QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
        box.exec()
        return box.clickedButton() is accept

    return ask
