"""The main window: the person's profile, the live session panel, and the actions."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QColor, QFont, QKeySequence, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui import formatting
from desktop.ui.backoff import Backoff

if TYPE_CHECKING:
    from desktop.auth.session import SessionStatus

_TICK_MS = 250


def _name(widget: QWidget, object_name: str, accessible: str) -> None:
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible)


def _selectable(label: QLabel) -> QLabel:
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class Avatar(QWidget):
    """A round badge with the person's initials, in a colour derived from their name."""

    def __init__(self, size: int = 72, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("avatar")
        self.setFixedSize(size, size)
        self._text = "?"
        self._colour = QColor("#5b6b7f")

    def set_person(self, name: str, key: str) -> None:
        self._text = formatting.initials(name)
        # A stable colour per person, not security: md5 only spreads the hue.
        hue = int(hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()[:4], 16) % 360
        self._colour = QColor.fromHsl(hue, 110, 110)
        self.setAccessibleName(f"Avatar: {name}")
        self.update()

    def text(self) -> str:
        return self._text

    def sizeHint(self) -> QSize:
        return self.size()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._colour)
        painter.drawEllipse(self.rect().adjusted(1, 1, -1, -1))
        font = QFont(self.font())
        font.setBold(True)
        font.setPixelSize(int(self.height() * 0.38))
        painter.setFont(font)
        painter.setPen(QColor("white"))
        painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._text)
        painter.end()


class Banner(QFrame):
    """A non-blocking strip at the top: the server is unreachable, retrying with back-off.

    Signals:
        retryRequested(): the back-off delay passed, or the person pressed "Retry now".
    """

    retryRequested = Signal()

    def __init__(
        self, parent: QWidget | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(parent)
        _name(self, "unreachableBanner", "Server unreachable")
        self._clock = clock
        self._backoff = Backoff()
        self._message = ""
        self._due: float | None = None
        self.label = QLabel()
        self.label.setObjectName("bannerLabel")
        self.label.setWordWrap(True)
        self.retry_button = QPushButton("Retry now")
        _name(self.retry_button, "retryButton", "Retry now")
        self.retry_button.clicked.connect(self._retry)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.retry_button)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._retry)
        self.hide()

    def report(self, message: str) -> None:
        """Show the message and schedule the next retry, each one further away."""
        self._message = message
        delay = self._backoff.next_delay()
        self._due = self._clock() + delay
        self._timer.start(int(delay * 1000))
        self.update_text()
        self.show()

    def clear(self) -> None:
        """The server answered: hide, and start the back-off afresh next time."""
        self._timer.stop()
        self._backoff.reset()
        self._due = None
        self.hide()

    @property
    def retry_pending(self) -> bool:
        return self._timer.isActive()

    def update_text(self) -> None:
        if self._due is None:
            self.label.setText(self._message)
            return
        left = max(0, round(self._due - self._clock()))
        self.label.setText(f"{self._message} Retrying in {left} s. Your session is kept.")

    def _retry(self) -> None:
        self._timer.stop()
        self._due = None
        self.label.setText(f"{self._message} Retrying now…")
        self.retryRequested.emit()


class SessionPanel(QGroupBox):
    """Time left on the access token, refreshes so far, where the refresh token is kept."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Session", parent)
        self.setObjectName("sessionPanel")
        self.countdown_bar = QProgressBar()
        _name(self.countdown_bar, "accessCountdown", "Time left on the access token")
        self.countdown_bar.setRange(0, 1000)
        self.countdown_bar.setFormat("No access token")
        self.refresh_label = _selectable(QLabel("Not refreshed yet"))
        _name(self.refresh_label, "refreshLabel", "Last refresh")
        self.storage_label = _selectable(QLabel("—"))
        _name(self.storage_label, "storageLabel", "Refresh token storage")
        self.storage_reason = QLabel()
        self.storage_reason.setObjectName("storageReason")
        self.storage_reason.setWordWrap(True)
        self.server_label = _selectable(QLabel("—"))
        _name(self.server_label, "sessionServerLabel", "Server")
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Access token", self.countdown_bar)
        form.addRow("Last refresh", self.refresh_label)
        # The place and the why together in one cell: a wrapped label in a row of its own gets
        # a row height the form cannot compute well.
        storage = QWidget()
        storage_layout = QVBoxLayout(storage)
        storage_layout.setContentsMargins(0, 0, 0, 0)
        storage_layout.setSpacing(2)
        storage_layout.addWidget(self.storage_label)
        storage_layout.addWidget(self.storage_reason)
        form.addRow("Refresh token", storage)
        form.addRow("Server", self.server_label)

    def show_status(self, status: SessionStatus) -> None:
        left = status.access_expires_in
        lifetime = status.access_lifetime
        if left is None or not lifetime:
            self.countdown_bar.setValue(0)
        else:
            fraction = max(0.0, min(1.0, left / lifetime))
            self.countdown_bar.setValue(round(fraction * 1000))
        self.countdown_bar.setFormat(formatting.countdown(left))
        self.countdown_bar.setProperty("expired", left is not None and left <= 0)
        self.refresh_label.setText(formatting.refresh_summary(status))
        where, why = formatting.storage_summary(status)
        self.storage_label.setText(where)
        self.storage_reason.setText(why)
        self.server_label.setText(status.server_url)


class ProfileView(QWidget):
    """The profile laid out for reading: avatar, name, username, email, groups, details."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("profileView")
        self.avatar = Avatar()
        self.name_label = _selectable(QLabel())
        _name(self.name_label, "nameLabel", "Name")
        font = QFont(self.name_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.name_label.setFont(font)
        self.username_label = _selectable(QLabel())
        _name(self.username_label, "usernameLabel", "Username")
        self.email_label = _selectable(QLabel())
        _name(self.email_label, "emailLabel", "Email")
        self.groups_row = QHBoxLayout()
        self.groups_row.setSpacing(6)
        self.groups_box = QWidget()
        self.groups_box.setObjectName("groupsBox")
        self.groups_box.setAccessibleName("Groups")
        self.groups_box.setLayout(self.groups_row)
        self.groups_row.setContentsMargins(0, 4, 0, 0)

        identity = QVBoxLayout()
        identity.setSpacing(2)
        identity.addWidget(self.name_label)
        identity.addWidget(self.username_label)
        identity.addWidget(self.email_label)
        identity.addWidget(self.groups_box)
        header = QHBoxLayout()
        header.setSpacing(16)
        header.addWidget(self.avatar, 0, Qt.AlignmentFlag.AlignTop)
        header.addLayout(identity, 1)

        self.details_box = QGroupBox("Profile details")
        self.details_box.setObjectName("detailsBox")
        self.details_form = QFormLayout(self.details_box)
        self.details_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(14)
        layout.addLayout(header)
        layout.addWidget(self.details_box)

    def show_profile(self, profile: dict[str, Any]) -> None:
        name = formatting.display_name(profile)
        username = profile.get("preferred_username")
        self.avatar.set_person(name, str(profile.get("sub") or name))
        self.name_label.setText(name)
        self.username_label.setText(f"@{username}" if username else "")
        self.username_label.setVisible(bool(username))
        email = profile.get("email")
        self.email_label.setText(str(email) if email else "No email address")
        while self.groups_row.count():
            item = self.groups_row.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        group_names = formatting.groups(profile)
        for group in group_names:
            chip = QLabel(group)
            chip.setObjectName("groupChip")
            chip.setAccessibleName(f"Group {group}")
            self.groups_row.addWidget(chip)
        if not group_names:
            none = QLabel("No groups")
            none.setObjectName("noGroups")
            self.groups_row.addWidget(none)
        self.groups_row.addStretch(1)
        while self.details_form.rowCount():
            self.details_form.removeRow(0)
        rows = formatting.other_claims(profile)
        for label, value in rows:
            field = _selectable(QLabel(value))
            # Wrapping an identifier (a UUID, a URL) would break it at a hyphen: only prose wraps.
            field.setWordWrap(" " in value.strip())
            field.setAccessibleName(label)
            self.details_form.addRow(f"{label}:", field)
        self.details_box.setVisible(bool(rows))

    def group_names(self) -> list[str]:
        names = []
        for index in range(self.groups_row.count()):
            item = self.groups_row.itemAt(index)
            widget = item.widget() if item is not None else None
            if isinstance(widget, QLabel) and widget.objectName() == "groupChip":
                names.append(widget.text())
        return names


class MainWindow(QMainWindow):
    """The signed-in window. It does no I/O: it asks through signals.

    Signals:
        reloadRequested(): Reload profile (menu, button, Ctrl+R).
        signOutRequested(): Sign out (menu, button, Ctrl+Shift+Q).
        retryRequested(): the unreachable-server banner's back-off elapsed, or "Retry now".
        quitRequested(): File > Quit.
    """

    reloadRequested = Signal()
    signOutRequested = Signal()
    retryRequested = Signal()
    quitRequested = Signal()

    def __init__(
        self,
        status_source: Callable[[], SessionStatus | None],
        settings: QSettings,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setAccessibleName("jwt-desktop")
        self._status_source = status_source
        self._settings = settings
        self._profile: dict[str, Any] | None = None
        self.setWindowTitle("jwt-desktop")

        self._build_actions()
        self.banner = Banner()
        self.banner.retryRequested.connect(self.retryRequested)
        signing_in_page = self._build_signing_in_page()
        profile_page = self._build_profile_page()

        self.pages = QStackedWidget()
        self.pages.addWidget(signing_in_page)
        self.pages.addWidget(profile_page)
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.setSpacing(0)
        central_layout.addWidget(self.banner)
        central_layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)
        self.statusBar().setObjectName("statusBar")

        self._tick = QTimer(self)
        self._tick.setInterval(_TICK_MS)
        self._tick.timeout.connect(self._on_tick)
        self.resize(560, 600)
        geometry = settings.value("mainWindow/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(QByteArray(geometry))

    def _build_actions(self) -> None:
        self.reload_action = QAction("&Reload profile", self)
        self.reload_action.setObjectName("reloadAction")
        self.reload_action.setShortcuts([QKeySequence("Ctrl+R"), QKeySequence("F5")])
        self.reload_action.triggered.connect(self.reloadRequested)
        self.sign_out_action = QAction("&Sign out", self)
        self.sign_out_action.setObjectName("signOutAction")
        self.sign_out_action.setShortcut(QKeySequence("Ctrl+Shift+Q"))
        self.sign_out_action.triggered.connect(self.signOutRequested)
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setObjectName("quitAction")
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        self.quit_action.triggered.connect(self.quitRequested)
        self.about_action = QAction("&About jwt-desktop", self)
        self.about_action.setObjectName("aboutAction")
        self.about_action.triggered.connect(self._about)
        menu = self.menuBar().addMenu("&Session")
        menu.setObjectName("sessionMenu")
        menu.addAction(self.reload_action)
        menu.addAction(self.sign_out_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.setObjectName("helpMenu")
        help_menu.addAction(self.about_action)
        # Qt's own overflow button of the menu bar, shown when the window is narrow.
        overflow = self.menuBar().findChild(QToolButton, "qt_menubar_ext_button")
        if overflow is not None:
            overflow.setAccessibleName("More menus")

    def _build_signing_in_page(self) -> QWidget:
        self.signing_in_label = QLabel("Signing in…")
        _name(self.signing_in_label, "signingInLabel", "Signing in")
        font = QFont(self.signing_in_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.signing_in_label.setFont(font)
        self.signing_in_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        signing_in_bar = QProgressBar()
        _name(signing_in_bar, "signingInBar", "Signing in")
        signing_in_bar.setRange(0, 0)
        signing_in_bar.setTextVisible(False)
        signing_in_bar.setMaximumWidth(260)
        signing_in_bar.setMaximumHeight(6)
        signing_in_page = QWidget()
        signing_in_layout = QVBoxLayout(signing_in_page)
        signing_in_layout.addStretch(1)
        signing_in_layout.addWidget(self.signing_in_label)
        signing_in_layout.addWidget(signing_in_bar, 0, Qt.AlignmentFlag.AlignHCenter)
        signing_in_layout.addStretch(1)
        return signing_in_page

    def _build_profile_page(self) -> QWidget:
        self.profile_view = ProfileView()
        self.session_panel = SessionPanel()
        self.reload_button = QPushButton("Reload profile")
        _name(self.reload_button, "reloadButton", "Reload profile")
        self.reload_button.clicked.connect(self.reloadRequested)
        self.sign_out_button = QPushButton("Sign out")
        _name(self.sign_out_button, "signOutButton", "Sign out")
        self.sign_out_button.setToolTip("Sign out (Ctrl+Shift+Q)")
        self.sign_out_button.clicked.connect(self.signOutRequested)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.reload_button)
        buttons.addWidget(self.sign_out_button)
        profile_page = QWidget()
        profile_layout = QVBoxLayout(profile_page)
        profile_layout.setContentsMargins(20, 16, 20, 16)
        profile_layout.setSpacing(14)
        profile_layout.addWidget(self.profile_view)
        profile_layout.addWidget(self.session_panel)
        profile_layout.addStretch(1)
        profile_layout.addLayout(buttons)
        scroll = QScrollArea()
        scroll.setObjectName("profileScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(profile_page)
        return scroll

    # -- states ---------------------------------------------------------------------------

    def show_signing_in(self, username: str | None = None) -> None:
        self._profile = None
        self.pages.setCurrentIndex(0)
        self.setWindowTitle("Signing in… — jwt-desktop")
        who = f" as {username}" if username else ""
        self.signing_in_label.setText(f"Signing in{who}…")
        self._set_actions_enabled(False)
        self.statusBar().showMessage("Signing in…")
        self._tick.start()

    def show_profile(self, profile: dict[str, Any]) -> None:
        self._profile = profile
        self.profile_view.show_profile(profile)
        name = formatting.display_name(profile)
        self.setWindowTitle(f"{name} — jwt-desktop")
        self.pages.setCurrentIndex(1)
        self._set_actions_enabled(True)
        self.banner.clear()
        user = profile.get("preferred_username") or name
        self.statusBar().showMessage(f"Signed in as {user}")
        self._on_tick()
        self._tick.start()

    def show_reloaded(self, *, renewed: bool = False) -> None:
        message = f"Profile reloaded at {time.strftime('%H:%M:%S')}"
        if renewed:
            message += ", with a new access token fetched without asking you"
        self.statusBar().showMessage(message, 15000)

    def show_refreshed(self) -> None:
        self.statusBar().showMessage(
            f"Access token renewed at {time.strftime('%H:%M:%S')}, without asking you", 8000
        )
        self._on_tick()

    def show_unreachable(self, message: str) -> None:
        self.banner.report(message)
        if self._profile is not None:
            self._set_actions_enabled(True)

    def show_error(self, message: str) -> None:
        """A failure that is not about reachability: a sentence in the status bar."""
        self.statusBar().showMessage(message, 15000)
        if self._profile is not None:
            self._set_actions_enabled(True)

    def set_busy(self, busy: bool) -> None:
        if self._profile is not None:
            self.reload_button.setEnabled(not busy)
            self.reload_action.setEnabled(not busy)
        if busy and self._profile is not None:
            self.statusBar().showMessage("Loading…")

    def stop(self) -> None:
        """Leaving the signed-in state: stop the live countdown and the retries."""
        self._tick.stop()
        self.banner.clear()
        self._profile = None

    @property
    def profile(self) -> dict[str, Any] | None:
        return self._profile

    # -- behaviour ------------------------------------------------------------------------

    def _set_actions_enabled(self, enabled: bool) -> None:
        for widget in (self.reload_button, self.sign_out_button):
            widget.setEnabled(enabled)
        self.reload_action.setEnabled(enabled)
        self.sign_out_action.setEnabled(enabled)

    def _on_tick(self) -> None:
        if self.banner.isVisible():
            self.banner.update_text()
        status = self._status_source()
        if status is not None and status.signed_in:
            self.session_panel.show_status(status)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About jwt-desktop",
            "jwt-desktop: sign in with a password, stay signed in with a refresh token kept in "
            "the OS keyring, and watch access tokens being renewed.",
        )

    def save_geometry(self) -> None:
        self._settings.setValue("mainWindow/geometry", self.saveGeometry())
        self._settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_geometry()
        self.quitRequested.emit()
        super().closeEvent(event)
