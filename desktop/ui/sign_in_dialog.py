"""The sign-in dialog (window title "Sign in").

It is the first frame of a cold start, so this module stays light: no ``Qt`` namespace import
(building its enums costs tens of milliseconds), nothing from the core; even the failure
sentences' types (:mod:`desktop.ui.messages`, which loads the core's sentences) wait for the
first failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Signal, SignalInstance
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.naming import name_widget
from desktop.ui.plaintext import set_plain_text

if TYPE_CHECKING:
    from PySide6.QtGui import QCloseEvent, QIcon

    from desktop.auth.store import StorageStatus
    from desktop.ui.messages import Failure


class SignInDialog(QDialog):
    """Username, password, "Keep me signed in", the server, Sign in and Cancel; and, where the
    server offers them (:meth:`set_methods`), "Sign in with your browser" or, without a
    browser-capable grant, "Sign in with another device". Without the password grant the
    username and password fields are not shown at all.

    The dialog does no I/O: it asks, and the application answers through :meth:`set_busy`,
    :meth:`show_progress`, :meth:`show_error` and friends.

    Signals:
        submitted(str, str, bool): username, password, keep me signed in.
        browserRequested(bool): "Sign in with your browser"; keep me signed in.
        deviceRequested(bool): "Sign in with another device"; keep me signed in.
        cancelled(): Cancel (or Esc) while a sign-in was in flight; the dialog stays open.
        (QDialog.rejected(): Cancel, Esc or the close button while nothing is in flight.)
    """

    submitted = Signal(str, str, bool)
    browserRequested = Signal(bool)
    deviceRequested = Signal(bool)
    cancelled = Signal()

    def __init__(
        self,
        server_url: str,
        *,
        demo_credentials: tuple[str, str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("signInDialog")
        self.setWindowTitle("Sign in")
        self.setAccessibleName("Sign in")
        self.setMinimumWidth(440)
        self._busy = False
        self._keyring_available = True
        self._password_allowed = True

        self._build_header(server_url, demo_credentials)
        form = self._build_form()
        busy_row = self._build_footer()
        self._build_other_methods()

        self.icon_label = QLabel()
        self.icon_label.setObjectName("dialogIcon")
        self.icon_label.hide()
        header = QHBoxLayout()
        header.setSpacing(12)
        header.addWidget(self.icon_label)
        header.addWidget(self.title_label, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        layout.setSpacing(10)
        layout.addLayout(header)
        layout.addWidget(self.server_label)
        layout.addWidget(self.notice_label)
        layout.addWidget(self.demo_label)
        layout.addSpacing(4)
        layout.addLayout(form)
        layout.addWidget(self.browser_button)
        layout.addWidget(self.device_button)
        layout.addWidget(self.error_label)
        layout.addLayout(busy_row)
        layout.addWidget(self.waiting_panel)
        layout.addStretch(1)
        layout.addWidget(self.buttons)

        QWidget.setTabOrder(self.username_edit, self.password_edit)
        QWidget.setTabOrder(self.password_edit, self.show_password_button)
        QWidget.setTabOrder(self.show_password_button, self.remember_check)
        QWidget.setTabOrder(self.remember_check, self.sign_in_button)
        QWidget.setTabOrder(self.sign_in_button, self.cancel_button)
        self.username_edit.setFocus()

    def _build_header(self, server_url: str, demo_credentials: tuple[str, str] | None) -> None:
        self.title_label = QLabel("Sign in to jwt-desktop")
        self.title_label.setObjectName("dialogTitle")
        font = QFont(self.title_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.title_label.setFont(font)
        self.server_label = QLabel()
        self.server_label.setObjectName("serverLabel")
        self.set_server(server_url)

        self.notice_label = QLabel()
        name_widget(self.notice_label, "noticeLabel", "Notice")
        self.notice_label.setWordWrap(True)
        self.notice_label.hide()

        self.demo_label = QLabel()
        name_widget(self.demo_label, "demoLabel", "Demo credentials")
        self.demo_label.setWordWrap(True)
        if demo_credentials is not None:
            user, password = demo_credentials
            # Rich text on purpose: a fixed sentence of ours, the demo's own credentials.
            self.demo_label.setText(
                f"Demo server: sign in as <b>{user}</b> with password <b>{password}</b>."
            )
        else:
            self.demo_label.hide()

    def _build_form(self) -> QFormLayout:
        self.username_edit = QLineEdit()
        name_widget(self.username_edit, "usernameEdit", "Username")
        self.username_edit.setPlaceholderText("Username")
        self.username_edit.setMinimumWidth(240)
        self.password_edit = QLineEdit()
        name_widget(self.password_edit, "passwordEdit", "Password")
        self.password_edit.setPlaceholderText("Password")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.show_password_button = QToolButton()
        name_widget(self.show_password_button, "showPasswordButton", "Show password")
        self.show_password_button.setText("Show")
        self.show_password_button.setCheckable(True)
        self.show_password_button.setToolTip("Show the password as you type it")
        self.show_password_button.toggled.connect(self._on_show_password)
        password_row = QHBoxLayout()
        password_row.setSpacing(6)
        password_row.addWidget(self.password_edit, 1)
        password_row.addWidget(self.show_password_button)

        self.remember_check = QCheckBox("Keep me signed in")
        name_widget(self.remember_check, "rememberCheck", "Keep me signed in")
        self.remember_check.setChecked(True)
        self.remember_reason = QLabel()
        name_widget(self.remember_reason, "rememberReason", "Why Keep me signed in is unavailable")
        self.remember_reason.setWordWrap(True)
        self.remember_reason.hide()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        username_label = QLabel("&Username")
        username_label.setBuddy(self.username_edit)
        password_label = QLabel("&Password")
        password_label.setBuddy(self.password_edit)
        form.addRow(username_label, self.username_edit)
        form.addRow(password_label, password_row)
        # The box and its reason share one cell: a wrapped label alone in a form row gets a
        # height the form computes too small, and is clipped.
        remember = QWidget()
        remember_layout = QVBoxLayout(remember)
        remember_layout.setContentsMargins(0, 0, 0, 0)
        remember_layout.setSpacing(2)
        remember_layout.addWidget(self.remember_check)
        remember_layout.addWidget(self.remember_reason)
        form.addRow("", remember)
        self._form = form
        return form

    def _build_other_methods(self) -> None:
        self.browser_button = QPushButton("Sign in with your browser")
        name_widget(self.browser_button, "browserButton", "Sign in with your browser")
        self.browser_button.setAutoDefault(False)
        self.browser_button.clicked.connect(self._request_browser)
        self.browser_button.hide()
        self.device_button = QPushButton("Sign in with another device")
        name_widget(self.device_button, "deviceButton", "Sign in with another device")
        self.device_button.setAutoDefault(False)
        self.device_button.clicked.connect(self._request_device)
        self.device_button.hide()

        # The waiting state of a browser or device sign-in: what to do, the address (to copy
        # when no browser opened, or to open elsewhere) and the code, large and selectable.
        self.waiting_panel = QWidget()
        self.waiting_panel.setObjectName("waitingPanel")
        self.waiting_label = QLabel()
        name_widget(self.waiting_label, "waitingLabel", "What to do")
        self.waiting_label.setWordWrap(True)
        self.url_edit = QLineEdit()
        name_widget(self.url_edit, "urlEdit", "Address to open")
        self.url_edit.setReadOnly(True)
        self.code_label = QLabel()
        name_widget(self.code_label, "codeLabel", "Code to enter")
        code_font = QFont(self.code_label.font())
        code_font.setPointSizeF(code_font.pointSizeF() * 2)
        code_font.setBold(True)
        code_font.setFamily("monospace")
        self.code_label.setFont(code_font)
        # Made selectable in show_progress: any Qt.TextInteractionFlag value builds the whole
        # Qt namespace's enums (about 90 types), which the first frame does not need.
        self.complete_edit = QLineEdit()
        name_widget(self.complete_edit, "completeEdit", "Address with the code")
        self.complete_edit.setReadOnly(True)
        panel = QVBoxLayout(self.waiting_panel)
        panel.setContentsMargins(0, 0, 0, 0)
        panel.setSpacing(6)
        for widget in (self.waiting_label, self.url_edit, self.code_label, self.complete_edit):
            panel.addWidget(widget)
        self.waiting_panel.hide()

    def _build_footer(self) -> QHBoxLayout:
        self.error_label = QLabel()
        name_widget(self.error_label, "errorLabel", "Error")
        self.error_label.setWordWrap(True)
        self.error_label.hide()

        self.busy_bar = QProgressBar()
        name_widget(self.busy_bar, "busyBar", "Signing in")
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumHeight(6)
        self.busy_label = QLabel("Signing in…")
        self.busy_label.setObjectName("busyLabel")
        busy_row = QHBoxLayout()
        busy_row.addWidget(self.busy_label)
        busy_row.addWidget(self.busy_bar, 1)
        self.busy_bar.hide()
        self.busy_label.hide()

        self.buttons = QDialogButtonBox()
        self.sign_in_button = QPushButton("Sign in")
        name_widget(self.sign_in_button, "signInButton", "Sign in")
        self.sign_in_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        name_widget(self.cancel_button, "cancelButton", "Cancel")
        # Focus moves to Cancel while a request is in flight; without this it would become
        # the default button, and the next Enter would cancel instead of signing in.
        self.cancel_button.setAutoDefault(False)
        self.buttons.addButton(self.sign_in_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.sign_in_button.clicked.connect(self._submit)
        self.cancel_button.clicked.connect(self.reject)
        return busy_row

    # -- what the application tells the dialog -------------------------------------------

    def set_icon(self, icon: QIcon) -> None:
        """The application icon beside the title (set after the first frame)."""
        size = self.title_label.sizeHint().height() + 10
        self.icon_label.setPixmap(icon.pixmap(size, size))
        self.icon_label.setVisible(not icon.isNull())

    def set_server(self, url: str) -> None:
        self.server_label.setText(f"Server: {url}")

    def set_username(self, username: str) -> None:
        self.username_edit.setText(username)
        (self.password_edit if username else self.username_edit).setFocus()

    def set_remember(self, remember: bool) -> None:
        if self._keyring_available:
            self.remember_check.setChecked(remember)

    def set_storage(self, storage: StorageStatus) -> None:
        """Enable "Keep me signed in" only when the OS keyring can hold the refresh token."""
        self._keyring_available = storage.persistent
        if storage.persistent:
            tip = f"Your session is kept in the OS keyring ({storage.backend})."
            self.remember_check.setEnabled(not self._busy)
            self.remember_check.setToolTip(tip)
            self.remember_reason.hide()
        else:
            reason = storage.reason or "No OS keyring is available."
            text = f"Not available: {reason}"
            self.remember_check.setChecked(False)
            self.remember_check.setEnabled(False)
            self.remember_check.setToolTip(text)
            set_plain_text(self.remember_reason, text)
            self.remember_reason.show()
        self._fit()

    def _fit(self) -> None:
        """Grow to fit wrapped sentences shown after the dialog was laid out."""
        layout = self.layout()
        if layout is not None and self.isVisible():
            layout.activate()
            width = self.width()
            height = max(self.height(), layout.totalHeightForWidth(width))
            self.resize(width, height)

    def set_methods(self, *, password: bool, browser: bool, device: bool) -> None:
        """The ways of signing in the server offers (see ``grants.sign_in_methods``)."""
        self._password_allowed = password
        self._form.setRowVisible(0, password)
        self._form.setRowVisible(1, password)
        self.sign_in_button.setVisible(password)
        self.browser_button.setVisible(browser)
        self.device_button.setVisible(device)
        if not password:
            # The one way left is the dialog's default action (Enter).
            other = self.browser_button if browser else self.device_button
            other.setAutoDefault(True)
            other.setDefault(True)
            other.setFocus()
        self._fit()

    def show_progress(self, message: str, url: str, code: str, complete: str) -> None:
        """A browser or device sign-in waits for the person: say what to do, show what to
        open and type, all selectable. Empty strings: not shown."""
        from PySide6.QtCore import Qt

        flag = Qt.TextInteractionFlag
        self.code_label.setTextInteractionFlags(
            flag.TextSelectableByMouse | flag.TextSelectableByKeyboard
        )
        set_plain_text(self.waiting_label, message)
        for edit, text in ((self.url_edit, url), (self.complete_edit, complete)):
            edit.setText(text)
            edit.setCursorPosition(0)
            edit.setVisible(bool(text))
        set_plain_text(self.code_label, code)
        self.code_label.setVisible(bool(code))
        self.waiting_panel.show()
        self._fit()

    def set_busy(self, busy: bool) -> None:
        """While a sign-in is in flight: inputs disabled, an indicator, Cancel still works."""
        self._busy = busy
        for widget in (
            self.username_edit,
            self.password_edit,
            self.show_password_button,
            self.sign_in_button,
            self.browser_button,
            self.device_button,
        ):
            widget.setEnabled(not busy)
        if not busy:
            self.waiting_panel.hide()
        self.remember_check.setEnabled(not busy and self._keyring_available)
        self.busy_bar.setVisible(busy)
        self.busy_label.setVisible(busy)
        if busy:
            self.error_label.hide()
            self.cancel_button.setFocus()
        else:
            # Disabling the default button in flight makes Qt (on X11, with real focus) drop its
            # default status; without this, Enter after an error would do nothing.
            self._default_button().setDefault(True)

    def _default_button(self) -> QPushButton:
        if self._password_allowed or not (
            self.browser_button.isVisibleTo(self) or self.device_button.isVisibleTo(self)
        ):
            return self.sign_in_button
        return self.browser_button if self.browser_button.isVisibleTo(self) else self.device_button

    def show_error(self, failure: Failure) -> None:
        """An inline sentence; a wrong password is cleared and gets the focus back."""
        from desktop.ui.messages import ErrorKind

        self.set_busy(False)
        set_plain_text(self.error_label, failure.message)
        self.error_label.show()
        self._fit()
        if failure.kind is ErrorKind.CREDENTIALS:
            self.password_edit.clear()
            self.password_edit.setFocus()
        elif not self.username_edit.text():
            self.username_edit.setFocus()
        else:
            self.password_edit.setFocus()

    def show_notice(self, message: str | None) -> None:
        """Why the dialog is shown again (signed out, session ended...); None hides it."""
        set_plain_text(self.notice_label, message or "")
        self.notice_label.setVisible(bool(message))
        self._fit()

    def reset(self) -> None:
        """Ready for a new sign-in: password and messages cleared."""
        self.set_busy(False)
        self.password_edit.clear()
        self.error_label.hide()
        self.show_password_button.setChecked(False)
        (self.password_edit if self.username_edit.text() else self.username_edit).setFocus()

    @property
    def busy(self) -> bool:
        return self._busy

    # -- behaviour ------------------------------------------------------------------------

    def _on_show_password(self, shown: bool) -> None:
        self.password_edit.setEchoMode(
            QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        )
        self.show_password_button.setText("Hide" if shown else "Show")
        self.show_password_button.setAccessibleName("Hide password" if shown else "Show password")

    def _submit(self) -> None:
        if self._busy:
            return
        from desktop.ui.messages import ErrorKind, Failure

        username = self.username_edit.text().strip()
        password = self.password_edit.text()
        if not username:
            self.show_error(Failure(ErrorKind.INPUT, "Enter your username."))
            self.username_edit.setFocus()
            return
        if not password:
            self.show_error(Failure(ErrorKind.INPUT, "Enter your password."))
            self.password_edit.setFocus()
            return
        self.notice_label.hide()
        self.set_busy(True)
        self.submitted.emit(username, password, self.remember_check.isChecked())

    def _request_browser(self) -> None:
        self._request_other(self.browserRequested, "Starting the browser sign-in…")

    def _request_device(self) -> None:
        self._request_other(self.deviceRequested, "Asking the server for a code…")

    def _request_other(self, signal: SignalInstance, message: str) -> None:
        if self._busy:
            return
        self.notice_label.hide()
        self.set_busy(True)
        self.show_progress(message, "", "", "")
        signal.emit(self.remember_check.isChecked())

    def reject(self) -> None:
        if self._busy:
            # The request cannot be stopped; the application ignores its result.
            self.set_busy(False)
            self.show_notice("Sign-in cancelled.")
            self.password_edit.setFocus()
            self.cancelled.emit()
            return
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._busy:
            self.reject()  # cancels the request in flight first
        super().closeEvent(event)
