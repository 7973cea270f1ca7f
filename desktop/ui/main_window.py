"""The main window: the person's profile, the live session panel, and the actions.

With a stored session its "Signing in…" state is the first frame, so it is built light: the
profile widgets (:mod:`desktop.ui.profile_view`) are made when a profile is first shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSettings, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.accounts import label
from desktop.ui.backoff import Backoff
from desktop.ui.naming import name_widget
from desktop.ui.plaintext import set_plain_text

if TYPE_CHECKING:
    from desktop.auth.session import SessionStatus
    from desktop.config import Account
    from desktop.ui.profile_view import ProfileView, SessionPanel
    from desktop.ui.sessions_view import SessionsView
    from desktop.ui.tokens_view import TokensView

_TICK_MS = 250


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
        name_widget(self, "unreachableBanner", "Server unreachable")
        self._clock = clock
        self._backoff = Backoff()
        self._message = ""
        self._due: float | None = None
        self.label = QLabel()
        self.label.setObjectName("bannerLabel")
        self.label.setWordWrap(True)
        self.retry_button = QPushButton("Retry now")
        name_widget(self.retry_button, "retryButton", "Retry now")
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
            set_plain_text(self.label, self._message)
            return
        left = max(0, round(self._due - self._clock()))
        set_plain_text(self.label, f"{self._message} Retrying in {left} s. Your session is kept.")

    def _retry(self) -> None:
        self._timer.stop()
        self._due = None
        set_plain_text(self.label, f"{self._message} Retrying now…")
        self.retryRequested.emit()


class MainWindow(QMainWindow):
    """The signed-in window. It does no I/O: it asks through signals.

    Signals:
        reloadRequested(): Reload profile (menu, button, Ctrl+R).
        signOutRequested(): Sign out (menu, button, Ctrl+Shift+Q).
        retryRequested(): the unreachable-server banner's back-off elapsed, or "Retry now".
        quitRequested(): File > Quit.
        tokensRequested(): the Tokens view wants the session's tokens inspected.
        sessionsRequested(): the Sessions view wants the server's list of sessions.
        revokeRequested(str): revoke the session with this id (the person confirmed).
        switchRequested(str, str): Accounts > an account: its server URL and name.
        addAccountRequested(): Accounts > Add account….
    """

    reloadRequested = Signal()
    signOutRequested = Signal()
    retryRequested = Signal()
    quitRequested = Signal()
    tokensRequested = Signal()
    sessionsRequested = Signal()
    revokeRequested = Signal(str)
    switchRequested = Signal(str, str)
    addAccountRequested = Signal()

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
        self._signed_in_page = False
        self._profile_widgets: tuple[ProfileView, SessionPanel] | None = None
        self._shortcuts_installed = False
        self._tokens_view: TokensView | None = None
        self._sessions_view: SessionsView | None = None
        self.setWindowTitle("jwt-desktop")

        self._build_actions()
        self.banner = Banner()
        self.banner.retryRequested.connect(self.retryRequested)
        signing_in_page = self._build_signing_in_page()
        profile_page = self._build_profile_page()

        self.pages = QStackedWidget()
        self.pages.addWidget(signing_in_page)
        # The profile, then the Tokens and Sessions views: tabs whose views are built when first
        # opened (see _ensure_views), so neither start-up nor the first profile pays for them.
        self.tabs = QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.addTab(profile_page, "&Profile")
        self.pages.addWidget(self.tabs)
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
        self.reload_action = self._action("&Reload profile", "reloadAction")
        self.reload_action.triggered.connect(self.reloadRequested)
        self.sign_out_action = self._action("&Sign out", "signOutAction")
        self.sign_out_action.triggered.connect(self.signOutRequested)
        self.quit_action = self._action("&Quit", "quitAction")
        self.quit_action.triggered.connect(self.quitRequested)
        self.about_action = self._action("&About jwt-desktop", "aboutAction")
        self.about_action.triggered.connect(self._about)
        menu = self.menuBar().addMenu("&Session")
        menu.setObjectName("sessionMenu")
        menu.addAction(self.reload_action)
        menu.addAction(self.sign_out_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        self.view_actions: list[QAction] = []
        view_menu = self.menuBar().addMenu("&View")
        view_menu.setObjectName("viewMenu")
        for index, (text, name) in enumerate(
            (
                ("&Profile", "profileAction"),
                ("&Tokens", "tokensAction"),
                ("S&essions", "sessionsAction"),
            )
        ):
            action = self._action(text, name)
            action.triggered.connect(lambda _=False, i=index: self.show_tab(i))
            view_menu.addAction(action)
            self.view_actions.append(action)
        self.accounts_menu = self.menuBar().addMenu("&Accounts")
        self.accounts_menu.setObjectName("accountsMenu")
        self.add_account_action = self._action("&Add account…", "addAccountAction")
        self.add_account_action.triggered.connect(self.addAccountRequested)
        self._account_actions: list[QAction] = []
        self.set_accounts([], None)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.setObjectName("helpMenu")
        help_menu.addAction(self.about_action)
        # Qt's own overflow button of the menu bar, shown when the window is narrow.
        overflow = self.menuBar().findChild(QToolButton, "qt_menubar_ext_button")
        if overflow is not None:
            overflow.setAccessibleName("More menus")

    def _action(self, text: str, object_name: str = "") -> QAction:
        # QAction(parent), then its text: matching the QAction(text, parent) overload makes
        # PySide6 build the QIcon type (its large ThemeIcon enum, milliseconds) before the
        # "Signing in…" frame, which shows no icon.
        action = QAction(self)
        action.setText(text)
        if object_name:
            action.setObjectName(object_name)
        return action

    def set_accounts(self, accounts: Sequence[Account], active: Account | None) -> None:
        """List the stored accounts in the Accounts menu, the active one checked."""
        menu = self.accounts_menu
        menu.clear()
        for action in self._account_actions:
            action.deleteLater()
        self._account_actions = []
        servers = {account.server_url for account in accounts}
        for account in accounts:
            # The server only when there is more than one: the usual case stays short.
            text = account.username if len(servers) == 1 else label(account)
            action = self._action(text.replace("&", "&&"))
            action.setCheckable(True)
            action.setChecked(active is not None and account.key == active.key)
            action.setData(label(account))
            action.triggered.connect(
                lambda _=False, a=account: self.switchRequested.emit(a.server_url, a.username)
            )
            menu.addAction(action)
            self._account_actions.append(action)
        if accounts:
            menu.addSeparator()
        menu.addAction(self.add_account_action)

    def account_actions(self) -> list[QAction]:
        return list(self._account_actions)

    def _build_signing_in_page(self) -> QWidget:
        self.signing_in_label = QLabel("Signing in…")
        name_widget(self.signing_in_label, "signingInLabel", "Signing in")
        font = QFont(self.signing_in_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.signing_in_label.setFont(font)
        signing_in_bar = QProgressBar()
        name_widget(signing_in_bar, "signingInBar", "Signing in")
        signing_in_bar.setRange(0, 0)
        signing_in_bar.setTextVisible(False)
        signing_in_bar.setMaximumWidth(260)
        signing_in_bar.setMaximumHeight(6)
        signing_in_page = QWidget()
        signing_in_layout = QVBoxLayout(signing_in_page)
        signing_in_layout.addStretch(1)
        # Centred with stretches rather than alignment flags: this page is the first frame of
        # a silent sign-in, and the Qt namespace's enums cost tens of milliseconds to load.
        for widget in (self.signing_in_label, signing_in_bar):
            row = QHBoxLayout()
            row.addStretch(1)
            row.addWidget(widget)
            row.addStretch(1)
            signing_in_layout.addLayout(row)
        signing_in_layout.addStretch(1)
        return signing_in_page

    def _build_profile_page(self) -> QWidget:
        # The profile view and the session panel come later (_ensure_profile_widgets).
        self.reload_button = QPushButton("Reload profile")
        name_widget(self.reload_button, "reloadButton", "Reload profile")
        self.reload_button.clicked.connect(self.reloadRequested)
        self.sign_out_button = QPushButton("Sign out")
        name_widget(self.sign_out_button, "signOutButton", "Sign out")
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
        profile_layout.addStretch(1)
        self._profile_layout = profile_layout
        profile_layout.addLayout(buttons)
        scroll = QScrollArea()
        scroll.setObjectName("profileScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(profile_page)
        return scroll

    def install_shortcuts(self) -> None:
        """Keyboard shortcuts, set after the first frame: the first setShortcut builds the Qt
        namespace's enums (about 50 ms), which the "Signing in…" frame does not need."""
        if self._shortcuts_installed:
            return
        self._shortcuts_installed = True
        from PySide6.QtGui import QKeySequence

        self.reload_action.setShortcuts([QKeySequence("Ctrl+R"), QKeySequence("F5")])
        self.sign_out_action.setShortcut(QKeySequence("Ctrl+Shift+Q"))
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        for index, action in enumerate(self.view_actions):
            action.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))

    def _ensure_profile_widgets(self) -> None:
        self.install_shortcuts()
        if self._profile_widgets is not None:
            return
        from desktop.ui.profile_view import ProfileView, SessionPanel

        self._profile_widgets = (ProfileView(), SessionPanel())
        for index, widget in enumerate(self._profile_widgets):
            self._profile_layout.insertWidget(index, widget)
        # In place of the profile when only its fetch failed (see show_profile_missing).
        self.profile_missing_label = QLabel()
        name_widget(self.profile_missing_label, "profileMissingLabel", "Profile not loaded")
        self.profile_missing_label.setWordWrap(True)
        self.profile_missing_label.hide()
        self._profile_layout.insertWidget(0, self.profile_missing_label)
        # Placeholders: the views themselves are built when their tab is first opened.
        self.tabs.addTab(QWidget(), "&Tokens")
        self.tabs.addTab(QWidget(), "Sessio&ns")
        self.tabs.currentChanged.connect(self._on_tab_changed)

    # -- the Tokens and Sessions views ----------------------------------------------------

    def show_tab(self, index: int) -> None:
        """Open the profile (0), Tokens (1) or Sessions (2), as its menu item or Ctrl+N does."""
        if not self._session_shown():
            return
        self._ensure_profile_widgets()
        self.tabs.setCurrentIndex(index)
        widget = self.tabs.currentWidget()
        focus = widget.widget() if isinstance(widget, QScrollArea) and index == 0 else widget
        if focus is not None:
            focus.setFocus()

    @property
    def tokens_view(self) -> TokensView:
        if self._tokens_view is None:
            from desktop.ui.tokens_view import TokensView

            self._tokens_view = TokensView()
            self._tokens_view.refreshRequested.connect(self.tokensRequested)
            self._replace_tab(1, self._tokens_view, "&Tokens")
        return self._tokens_view

    @property
    def sessions_view(self) -> SessionsView:
        if self._sessions_view is None:
            from desktop.ui.sessions_view import SessionsView

            self._sessions_view = SessionsView()
            self._sessions_view.refreshRequested.connect(self.sessionsRequested)
            self._sessions_view.revokeRequested.connect(self.revokeRequested)
            self._replace_tab(2, self._sessions_view, "Sessio&ns")
        return self._sessions_view

    def tokens_view_open(self) -> bool:
        """The Tokens view exists (it was opened once): worth updating after a refresh."""
        return self._tokens_view is not None

    def _replace_tab(self, index: int, widget: QWidget, text: str) -> None:
        current = self.tabs.currentIndex()
        self.tabs.blockSignals(True)
        old = self.tabs.widget(index)
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, widget, text)
        self.tabs.setCurrentIndex(current)
        self.tabs.blockSignals(False)
        if old is not None:
            old.deleteLater()

    def _on_tab_changed(self, index: int) -> None:
        # Each opening asks afresh: tokens change at every refresh, sessions at every sign-in.
        if index == 1:
            self.tokens_view.show()
            self.tokensRequested.emit()
        elif index == 2:
            self.sessions_view.show()
            self.sessionsRequested.emit()

    @property
    def profile_view(self) -> ProfileView:
        self._ensure_profile_widgets()
        assert self._profile_widgets is not None
        return self._profile_widgets[0]

    @property
    def session_panel(self) -> SessionPanel:
        self._ensure_profile_widgets()
        assert self._profile_widgets is not None
        return self._profile_widgets[1]

    # -- states ---------------------------------------------------------------------------

    def show_signing_in(self, username: str | None = None) -> None:
        self._profile = None
        self._signed_in_page = False
        self.pages.setCurrentIndex(0)
        self.setWindowTitle("Signing in… — jwt-desktop")
        who = f" as {username}" if username else ""
        self.signing_in_label.setText(f"Signing in{who}…")
        self._set_actions_enabled(False)
        self.statusBar().showMessage("Signing in…")
        self._tick.start()

    def show_profile(self, profile: dict[str, Any]) -> None:
        self._profile = profile
        self._signed_in_page = True
        self.profile_view.show_profile(profile)
        self.profile_view.show()
        self.profile_missing_label.hide()
        from desktop.ui import formatting  # with datetime: not needed for "Signing in…"

        name = formatting.display_name(profile)
        self.setWindowTitle(f"{name} — jwt-desktop")
        self.pages.setCurrentIndex(1)
        self._set_actions_enabled(True)
        self.banner.clear()
        user = profile.get("preferred_username") or name
        self.statusBar().showMessage(f"Signed in as {user}")
        self._on_tick()
        self._tick.start()

    def show_profile_missing(self, username: str, reason: str | None = None) -> None:
        """Signed in, but the profile could not be fetched: the session panel, Reload and
        Sign out, and a sentence in place of the profile (``reason`` when no banner says it)."""
        self._profile = None
        self._signed_in_page = True
        self.profile_view.hide()
        who = f" as {username}" if username else ""
        text = f"You are signed in{who}, but your profile could not be loaded."
        if reason:
            text += f" {reason}"
        set_plain_text(self.profile_missing_label, f"{text} Reload profile tries again.")
        self.profile_missing_label.show()
        self.setWindowTitle(f"{username} — jwt-desktop" if username else "jwt-desktop")
        self.pages.setCurrentIndex(1)
        self._set_actions_enabled(True)
        self.statusBar().showMessage(f"Signed in{who}")
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
        if self._session_shown():
            self._set_actions_enabled(True)

    def show_error(self, message: str) -> None:
        """A failure that is not about reachability: a sentence in the status bar."""
        self.statusBar().showMessage(message, 15000)
        if self._session_shown():
            self._set_actions_enabled(True)

    def set_busy(self, busy: bool) -> None:
        if self._session_shown():
            self.reload_button.setEnabled(not busy)
            self.reload_action.setEnabled(not busy)
            if busy:
                self.statusBar().showMessage("Loading…")

    def _session_shown(self) -> bool:
        """The signed-in page is up: with the profile, or with why it is missing."""
        return self._signed_in_page

    def stop(self) -> None:
        """Leaving the signed-in state: stop the live countdown and the retries."""
        self._tick.stop()
        self.banner.clear()
        if self._tokens_view is not None:
            self._tokens_view.forget()
        if self._sessions_view is not None:
            self._sessions_view.forget()
        if self._profile_widgets is not None:
            self.tabs.setCurrentIndex(0)
        self._profile = None
        self._signed_in_page = False

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
        if status is not None and status.signed_in and self._profile_widgets is not None:
            self.session_panel.show_status(status)

    def _about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

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
