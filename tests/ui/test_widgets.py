"""The widgets themselves: names for assistive tech, keyboard use, states, geometry.

These use a fake core (tests/ui/fakes.py) where the point is the widget, not the session.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from desktop import config as config_module
from desktop.auth.errors import ServerUnreachable, SessionEnded
from desktop.ui.main_window import Banner, MainWindow
from desktop.ui.sign_in_dialog import SignInDialog
from tests.ui.conftest import MakeApp
from tests.ui.fakes import ALICE, NO_KEYRING, FakeClient
from tests.ui.helpers import TIMEOUT_MS, ShowCounter, fill_and_submit, wait_for_profile

INTERACTIVE = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox)


def _interactive_children(root: QWidget) -> list[QWidget]:
    return [w for w in root.findChildren(QWidget) if isinstance(w, INTERACTIVE)]


def _unnamed(root: QWidget) -> list[str]:
    return [
        f"{type(w).__name__}({w.objectName()!r}, {w.accessibleName()!r})"
        for w in _interactive_children(root)
        if not w.objectName() or not w.accessibleName()
    ]


def test_every_interactive_widget_has_an_object_name_and_an_accessible_name(
    qtbot: QtBot, make_app: MakeApp
) -> None:
    client = FakeClient()
    app = make_app(client_factory=lambda: client)
    main = app.main_window()
    main.show_profile(dict(ALICE))
    # Buttons inside QDialogButtonBox, the scroll area's own bars... all of them count.
    assert _interactive_children(app.dialog)
    assert _unnamed(app.dialog) == []
    assert _interactive_children(main)
    assert _unnamed(main) == []
    actions = main.findChildren(QAction)
    named = [a for a in actions if a.text() and not a.isSeparator()]
    assert all(a.objectName() for a in named if a.menu() is None)


def test_dialog_tab_order(qtbot: QtBot) -> None:
    dialog = SignInDialog("http://127.0.0.1:8765")
    qtbot.addWidget(dialog)
    dialog.show()
    order = [dialog.username_edit]
    while len(order) < 6:
        order.append(order[-1].nextInFocusChain())
        while not order[-1].focusPolicy() & Qt.FocusPolicy.TabFocus:
            order[-1] = order[-1].nextInFocusChain()
    assert order == [
        dialog.username_edit,
        dialog.password_edit,
        dialog.show_password_button,
        dialog.remember_check,
        dialog.sign_in_button,
        dialog.cancel_button,
    ]


def test_password_is_masked_with_a_show_hide_toggle(qtbot: QtBot) -> None:
    dialog = SignInDialog("http://127.0.0.1:8765")
    qtbot.addWidget(dialog)
    assert dialog.password_edit.echoMode() == QLineEdit.EchoMode.Password
    dialog.show_password_button.click()
    assert dialog.password_edit.echoMode() == QLineEdit.EchoMode.Normal
    assert dialog.show_password_button.accessibleName() == "Hide password"
    dialog.show_password_button.click()
    assert dialog.password_edit.echoMode() == QLineEdit.EchoMode.Password
    assert dialog.show_password_button.accessibleName() == "Show password"


def test_dialog_shows_the_server(qtbot: QtBot) -> None:
    dialog = SignInDialog("https://id.example.org")
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Sign in"
    assert dialog.server_label.text() == "Server: https://id.example.org"
    assert dialog.sign_in_button.isDefault()


def test_enter_submits_and_empty_fields_are_explained(qtbot: QtBot) -> None:
    dialog = SignInDialog("http://127.0.0.1:8765")
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.assertNotEmitted(dialog.submitted):
        qtbot.keyClick(dialog.username_edit, Qt.Key.Key_Return)
    assert dialog.error_label.text() == "Enter your username."
    qtbot.keyClicks(dialog.username_edit, "alice")
    with qtbot.assertNotEmitted(dialog.submitted):
        qtbot.keyClick(dialog.username_edit, Qt.Key.Key_Return)
    assert dialog.error_label.text() == "Enter your password."
    qtbot.keyClicks(dialog.password_edit, "wonderland")
    with qtbot.waitSignal(dialog.submitted) as submitted:
        qtbot.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    assert submitted.args == ["alice", "wonderland", True]
    assert dialog.busy and dialog.busy_bar.isVisible()
    assert not dialog.password_edit.isEnabled() and not dialog.sign_in_button.isEnabled()
    assert dialog.cancel_button.isEnabled()


def test_keep_me_signed_in_is_disabled_with_the_reason_without_a_keyring(qtbot: QtBot) -> None:
    dialog = SignInDialog("http://127.0.0.1:8765")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.set_storage(NO_KEYRING)
    assert not dialog.remember_check.isEnabled()
    assert not dialog.remember_check.isChecked()
    assert dialog.remember_reason.isVisible()
    assert "No OS keyring is available" in dialog.remember_reason.text()
    assert "No OS keyring is available" in dialog.remember_check.toolTip()
    dialog.set_busy(True)
    dialog.set_busy(False)
    assert not dialog.remember_check.isEnabled()  # stays disabled after a request


def test_escape_while_idle_closes_the_app(qtbot: QtBot, make_app: MakeApp) -> None:
    quits: list[str] = []
    app = make_app(client_factory=FakeClient, quit_app=lambda: quits.append("quit"))
    qtbot.keyClick(app.dialog, Qt.Key.Key_Escape)
    assert quits == ["quit"]


def test_a_discarded_sign_in_is_signed_out(qtbot: QtBot, make_app: MakeApp) -> None:
    client = FakeClient()
    app = make_app(client_factory=lambda: client)
    client.hold.set()
    fill_and_submit(qtbot, app, "alice", "wonderland")
    qtbot.waitUntil(client.holding.is_set, timeout=TIMEOUT_MS)
    app.dialog.cancel_button.click()
    client.release.set()
    qtbot.waitUntil(lambda: not app.controller.busy(), timeout=TIMEOUT_MS)
    # The person cancelled: the session that arrived anyway is not kept.
    assert client.calls[-2:] == ["sign_in", "sign_out"]
    assert app.dialog.isVisible()
    assert app._main is None or not app._main.isVisible()


def test_restore_shows_signing_in_then_the_profile_and_retries_when_unreachable(
    qtbot: QtBot, make_app: MakeApp
) -> None:
    config_module.save_config(config_module.Config(last_username="alice"))
    client = FakeClient()
    client.restore_answers = [
        ServerUnreachable("Cannot reach the server.", url="http://127.0.0.1:9"),
        dict(ALICE),
    ]
    app = make_app(client_factory=lambda: client)
    dialog_shown = ShowCounter(app.dialog)
    main = app.main_window()
    assert main.isVisible() and main.windowTitle() == "Signing in… — jwt-desktop"
    assert main.signing_in_label.text() == "Signing in as alice…"
    qtbot.waitUntil(main.banner.isVisible, timeout=TIMEOUT_MS)
    assert "Cannot reach the server at http://127.0.0.1:9." in main.banner.label.text()
    main.banner.retry_button.click()  # "Retry now" instead of waiting for the back-off
    main = wait_for_profile(qtbot, app)
    assert main.windowTitle() == "Alice Liddell — jwt-desktop"
    assert not main.banner.isVisible()
    assert client.calls.count("restore") == 2
    assert dialog_shown.count == 0


def test_session_ended_in_the_background_returns_to_the_dialog(
    qtbot: QtBot, make_app: MakeApp
) -> None:
    client = FakeClient()
    app = make_app(client_factory=lambda: client)
    fill_and_submit(qtbot, app, "alice", "wonderland")
    wait_for_profile(qtbot, app)
    ended = SessionEnded("Your session was revoked. Sign in again.", error="invalid_grant")
    for observer in client.on_session_ended:
        observer(ended)
    qtbot.waitUntil(app.dialog.isVisible, timeout=TIMEOUT_MS)
    assert app.dialog.notice_label.text() == "Your session was revoked. Sign in again."
    assert app.dialog.username_edit.text() == "alice"
    assert app.dialog.password_edit.text() == ""
    assert app._main is not None and not app._main.isVisible()


def test_session_panel_shows_the_countdown_refreshes_and_storage(
    qtbot: QtBot, settings: QSettings
) -> None:
    client = FakeClient()
    client.username = "alice"
    client.expires_in, client.lifetime = 42.4, 60.0
    client.refresh_count = 3
    client.last_refreshed = datetime(2026, 1, 1, 12, 30, 5).astimezone()
    main = MainWindow(client.status, settings)
    qtbot.addWidget(main)
    main.show_profile(dict(ALICE))
    panel = main.session_panel
    assert panel.countdown_bar.text() == "0:42 left"
    assert panel.countdown_bar.value() == round(42.4 / 60 * 1000)
    assert panel.refresh_label.text() == "At 12:30:05 (3 refreshes so far)"
    assert panel.storage_label.text() == "OS keyring: SecretService Keyring"
    client.expires_in = -1
    qtbot.waitUntil(lambda: panel.countdown_bar.text().startswith("Expired"), timeout=2000)
    assert panel.countdown_bar.value() == 0


def test_main_window_actions_menu_button_and_shortcut(qtbot: QtBot, settings: QSettings) -> None:
    main = MainWindow(lambda: None, settings)
    qtbot.addWidget(main)
    main.show_profile(dict(ALICE))
    assert main.sign_out_action.shortcut().toString() == "Ctrl+Shift+Q"
    assert main.sign_out_action in main.menuBar().actions()[0].menu().actions()
    with qtbot.waitSignal(main.signOutRequested):
        main.sign_out_button.click()
    with qtbot.waitSignal(main.reloadRequested):
        main.reload_action.trigger()
    profile = main.profile_view
    assert profile.group_names() == ["staff", "admin"]
    assert profile.email_label.text() == "alice@example.org"
    assert profile.avatar.text() == "AL"


def test_window_geometry_is_remembered(qtbot: QtBot, tmp_path: Path) -> None:
    path = str(tmp_path / "geometry.ini")
    first = MainWindow(lambda: None, QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(first)
    first.show()
    first.resize(731, 517)
    first.close()  # saves on close
    second = MainWindow(lambda: None, QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (731, 517)
    text = Path(path).read_text(encoding="utf-8")
    assert "geometry" in text and "token" not in text.lower()


def test_banner_backs_off_and_retries(qtbot: QtBot) -> None:
    now = [100.0]
    banner = Banner(clock=lambda: now[0])
    qtbot.addWidget(banner)
    banner.report("Cannot reach the server at http://x.")
    assert banner.label.text().endswith("Retrying in 2 s. Your session is kept.")
    banner.report("Cannot reach the server at http://x.")
    assert "Retrying in 4 s." in banner.label.text()
    now[0] += 3
    banner.update_text()
    assert "Retrying in 1 s." in banner.label.text()
    with qtbot.waitSignal(banner.retryRequested):
        banner.retry_button.click()
    assert not banner.retry_pending
    banner.clear()
    banner.report("Cannot reach the server at http://x.")
    assert "Retrying in 2 s." in banner.label.text()  # back-off starts afresh


def test_server_given_on_the_command_line_is_remembered(qtbot: QtBot, make_app: MakeApp) -> None:
    first = make_app(server_url="https://id.example.org", client_factory=FakeClient)
    assert first.server_url == "https://id.example.org"
    assert first.dialog.server_label.text() == "Server: https://id.example.org"
    second = make_app(client_factory=FakeClient)
    assert second.server_url == "https://id.example.org"


def test_a_locked_keyring_at_start_up_is_explained(qtbot: QtBot, make_app: MakeApp) -> None:
    config_module.save_config(config_module.Config(last_username="alice"))
    client = FakeClient(storage=NO_KEYRING)
    client.restore_answers = [None]  # the core could not read the keyring
    app = make_app(client_factory=lambda: client)
    qtbot.waitUntil(lambda: app._dialog is not None and app._dialog.isVisible(), timeout=TIMEOUT_MS)
    assert app.dialog.notice_label.text().startswith("Your saved session could not be read.")
    assert "No OS keyring is available" in app.dialog.notice_label.text()
    assert app.dialog.username_edit.text() == "alice"
    # Kept: once the keyring is back, the next start restores the session.
    assert config_module.load_config().last_username == "alice"


def test_a_dead_stored_session_at_start_up_asks_the_same_person_again(
    qtbot: QtBot, make_app: MakeApp
) -> None:
    config_module.save_config(config_module.Config(last_username="alice"))
    client = FakeClient()
    client.restore_answers = [
        SessionEnded("Your session expired. Sign in again.", error="invalid_grant")
    ]
    app = make_app(client_factory=lambda: client)
    qtbot.waitUntil(lambda: app._dialog is not None and app._dialog.isVisible(), timeout=TIMEOUT_MS)
    assert app.dialog.notice_label.text() == "Your session expired. Sign in again."
    assert app.dialog.username_edit.text() == "alice"
    assert app.dialog.focusWidget() is app.dialog.password_edit
    assert config_module.load_config().last_username is None
