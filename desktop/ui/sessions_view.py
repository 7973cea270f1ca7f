"""The "Sessions" view: the server's active sign-ins, with Revoke, for those it lets see them.

The server decides: the view asks (``refreshRequested``) and shows either the list it is given
or the server's refusal as a sentence, never a list guessed from the person's groups. It does
no I/O itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.confirm import Confirm, asker
from desktop.ui.naming import name_widget
from desktop.ui.plaintext import set_plain_text

if TYPE_CHECKING:
    from desktop.auth.admin import SignInSession
    from desktop.ui.messages import Failure

COLUMNS = ["Person", "App", "Started", "Last refreshed", "Expires", ""]


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment is not None else "—"


_confirm_revoke = asker("Revoke session", "Revoke")


class SessionsView(QWidget):
    """Signals:
    refreshRequested(): the view wants the list (shown, or Refresh).
    revokeRequested(str): the id of a session to revoke, confirmed by the person.
    """

    refreshRequested = Signal()
    revokeRequested = Signal(str)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        confirm: Confirm = _confirm_revoke,
    ) -> None:
        super().__init__(parent)
        name_widget(self, "sessionsView", "Sessions")
        self._confirm = confirm
        self._sessions: list[SignInSession] = []
        self._notice = ""  # what the last revocation did, said above the next list
        self.status_label = QLabel("Asking the server for its sessions…")
        name_widget(self.status_label, "sessionsStatus", "Sessions status")
        self.status_label.setWordWrap(True)
        self.table = QTreeWidget()
        name_widget(self.table, "sessionsTable", "Active sessions")
        self.table.setHeaderLabels(COLUMNS)
        self.table.setRootIsDecorated(False)
        self.table.hide()
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.refresh_button = QPushButton("Re&fresh list")
        name_widget(self.refresh_button, "refreshSessions", "Refresh the list of sessions")
        self.refresh_button.clicked.connect(self.refreshRequested)
        self.revoke_button = QPushButton("&Revoke…")
        name_widget(self.revoke_button, "revokeSession", "Revoke the selected session")
        self.revoke_button.setEnabled(False)
        self.revoke_button.hide()
        self.revoke_button.clicked.connect(self._revoke_selected)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.revoke_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    @property
    def sessions(self) -> list[SignInSession]:
        return list(self._sessions)

    def show_sessions(self, sessions: list[SignInSession]) -> None:
        self._sessions = list(sessions)
        self.table.clear()
        for session in sessions:
            item = QTreeWidgetItem(
                [
                    session.username,
                    session.client_id,
                    _when(session.started_at),
                    _when(session.last_refreshed_at),
                    _when(session.expires_at),
                    "this one" if session.current else "",
                ]
            )
            self.table.addTopLevelItem(item)
        for column in range(len(COLUMNS)):
            self.table.resizeColumnToContents(column)
        count = len(sessions)
        notice, self._notice = self._notice, ""
        set_plain_text(
            self.status_label,
            f"{notice} {count} active sign-in{'s' if count != 1 else ''} at the server. "
            "Revoking one ends it at its next request.".strip(),
        )
        self.table.show()
        self.revoke_button.show()
        first = self.table.topLevelItem(0)
        if first is not None:
            self.table.setCurrentItem(first)
        self._update_buttons()

    def show_refusal(self, failure: Failure) -> None:
        """The server would not list the sessions (or could not): its sentence, no list."""
        self._sessions = []
        self.table.clear()
        self.table.hide()
        self.revoke_button.hide()
        set_plain_text(self.status_label, failure.message)

    def forget(self) -> None:
        """Signed out: the list goes (the next person may not be allowed to see it)."""
        self._sessions = []
        self.table.clear()
        self.table.hide()
        self.revoke_button.hide()
        set_plain_text(self.status_label, "Asking the server for its sessions…")

    def show_revoked(self, session_id: str, ended: bool) -> None:
        who = next((s.username for s in self._sessions if s.id == session_id), "that person")
        if ended:
            text = f"Revoked the session of {who}: it ends at its next request."
        else:
            text = f"The session of {who} had already ended."
        self._notice = text
        set_plain_text(self.status_label, text)

    def selected(self) -> SignInSession | None:
        item = self.table.currentItem()
        if item is None:
            return None
        index = self.table.indexOfTopLevelItem(item)
        return self._sessions[index] if 0 <= index < len(self._sessions) else None

    def _update_buttons(self) -> None:
        self.revoke_button.setEnabled(self.selected() is not None)

    def _revoke_selected(self) -> None:
        session = self.selected()
        if session is None:
            return
        if session.current:
            text = (
                "This is your own session: revoking it signs you out here at the next request. "
                "Revoke it?"
            )
        else:
            text = (
                f"Revoke the session of {session.username} ({session.client_id}, started "
                f"{_when(session.started_at)})? They will have to sign in again."
            )
        if self._confirm(self, text):
            self.revokeRequested.emit(session.id)
