"""The sign-in dialog's other ways in: "Sign in with your browser" driven end to end against the
live bundled server (the browser is the robot: ``$BROWSER``), its waiting state and Cancel; and
the device button (code shown large, approved by the robot); the dialog's states for a server
without the password grant or with only the device grant; quitting while a sign-in waits."""

from __future__ import annotations

import functools
import shutil
import socket
import threading
import time
import urllib.parse
import webbrowser

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop import config as config_module
from desktop.app import Application
from desktop.auth import messages
from desktop.ui.sign_in_dialog import SignInDialog
from tests.support.browser import RobotBrowser
from tests.support.keyring import MemoryKeyring
from tests.support.server import RunningServer, StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, stored_sessions, wait_for_profile


def test_the_browser_button_signs_in(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    browser_robot: RobotBrowser,
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    dialog = app.dialog
    # Discovery ran off the GUI thread; the bundled server offers both ways.
    qtbot.waitUntil(dialog.browser_button.isVisible, timeout=TIMEOUT_MS)
    assert dialog.username_edit.isVisible() and dialog.sign_in_button.isVisible()
    steps: list[tuple[str, str]] = []
    app.controller.signInProgress.connect(lambda message, url, *_: steps.append((message, url)))
    qtbot.mouseClick(dialog.browser_button, Qt.MouseButton.LeftButton)

    main = wait_for_profile(qtbot, app)
    assert main.profile is not None and main.profile["preferred_username"] == "alice"
    assert not dialog.isVisible()
    ((message, url),) = steps
    assert message == messages.CONTINUE_IN_BROWSER
    assert url.startswith(f"{server.url}/authorize?")
    # Kept like a password sign-in: the account is named from the validated ID token.
    assert list(stored_sessions(memory_keyring.secrets)) == [(f"jwt-desktop:{server.url}", "alice")]
    assert config_module.load_config().last_username == "alice"
    assert browser_robot.says("done: the redirect answered 200"), browser_robot.log()


def _redirect_port(url: str) -> int:
    redirect = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["redirect_uri"]
    port = urllib.parse.urlsplit(redirect).port
    assert port is not None
    return port


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _waiting_in_an_ignored_browser(
    qtbot: QtBot, make_app: MakeApp, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> Application:
    """The app, its browser sign-in started in a browser that opens and is then ignored (the
    person never signs in there)."""
    true = shutil.which("true")
    assert true is not None
    monkeypatch.setenv("BROWSER", true)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    app = make_app(server_url=server.url)
    qtbot.waitUntil(app.dialog.browser_button.isVisible, timeout=TIMEOUT_MS)
    qtbot.mouseClick(app.dialog.browser_button, Qt.MouseButton.LeftButton)
    return app


def test_waiting_in_the_browser_shows_the_url_and_cancel_stops(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server()
    app = _waiting_in_an_ignored_browser(qtbot, make_app, server, monkeypatch)
    dialog = app.dialog

    qtbot.waitUntil(lambda: dialog.url_edit.text().startswith(server.url), timeout=TIMEOUT_MS)
    assert dialog.waiting_label.text() == messages.CONTINUE_IN_BROWSER
    assert dialog.url_edit.isVisible() and dialog.url_edit.isReadOnly()  # to copy
    assert not dialog.code_label.isVisible()
    assert dialog.busy and not dialog.browser_button.isEnabled()
    assert dialog.cancel_button.isEnabled()
    port = _redirect_port(dialog.url_edit.text())
    assert not _refused(port)  # the listener waits for the redirect

    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not dialog.busy and not dialog.waiting_panel.isVisible()
    assert dialog.notice_label.text() == "Sign-in cancelled."
    assert dialog.isVisible()
    # The worker saw the cancel at once: the listener is gone, nothing was kept.
    qtbot.waitUntil(lambda: _refused(port), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not app.controller.busy(), timeout=TIMEOUT_MS)
    assert stored_sessions(memory_keyring.secrets) == {}


def test_without_the_password_grant_the_fields_are_not_shown(qtbot: QtBot) -> None:
    dialog = SignInDialog("https://id.example")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.set_methods(password=False, browser=True, device=False)
    for widget in (dialog.username_edit, dialog.password_edit, dialog.sign_in_button):
        assert not widget.isVisible()
    assert dialog.browser_button.isVisible() and dialog.browser_button.isDefault()
    assert not dialog.device_button.isVisible()
    assert dialog.remember_check.isVisible()
    with qtbot.waitSignal(dialog.browserRequested) as requested:
        qtbot.keyClick(dialog, Qt.Key.Key_Return)
    assert requested.args == [True]
    assert dialog.busy


def test_the_device_grant_shows_the_code_large_and_selectable(qtbot: QtBot) -> None:
    dialog = SignInDialog("https://id.example")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.set_methods(password=False, browser=False, device=True)
    assert dialog.device_button.isVisible() and not dialog.browser_button.isVisible()
    with qtbot.waitSignal(dialog.deviceRequested):
        qtbot.mouseClick(dialog.device_button, Qt.MouseButton.LeftButton)
    uri, code, complete = "https://id.example/device", "WDJB-MJHT", "https://id.example/d?c=1"
    dialog.show_progress(messages.device_instructions(uri, code, complete), uri, code, complete)
    assert dialog.code_label.text() == code and dialog.code_label.isVisible()
    assert dialog.code_label.font().pointSizeF() > dialog.waiting_label.font().pointSizeF()
    flags = dialog.code_label.textInteractionFlags()
    assert flags & Qt.TextInteractionFlag.TextSelectableByMouse
    assert dialog.url_edit.text() == uri and dialog.complete_edit.text() == complete
    assert code in dialog.waiting_label.text()
    # A failure ends the waiting state.
    dialog.show_error(messages.Failure(messages.ErrorKind.REFUSED, messages.DEVICE_EXPIRED))
    assert not dialog.waiting_panel.isVisible() and dialog.device_button.isEnabled()


def test_quitting_while_the_browser_sign_in_waits_does_not_hang(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server()
    app = _waiting_in_an_ignored_browser(qtbot, make_app, server, monkeypatch)
    dialog = app.dialog
    qtbot.waitUntil(lambda: dialog.url_edit.text().startswith(server.url), timeout=TIMEOUT_MS)
    port = _redirect_port(dialog.url_edit.text())

    started = time.monotonic()
    app.shutdown()  # what quitting the app does
    assert time.monotonic() - started < 10  # not the browser timeout (5 minutes)
    assert _refused(port)
    assert stored_sessions(memory_keyring.secrets) == {}


def test_the_device_button_signs_in_and_shows_the_code(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from desktop.auth import grants
    from tests.support.browser import play_device

    server = start_server()
    shown: list[tuple[str, str]] = []
    approved = threading.Event()

    def person(cancel: threading.Event, seconds: float) -> bool:
        # On the worker thread, between polls: the person has read the code in the dialog
        # (checked below on the GUI thread) and approves on their phone; the server's clock
        # moves instead of the test sleeping through the interval.
        if not approved.is_set():
            assert approved.wait(TIMEOUT_MS / 1000)
        server.advance_clock(seconds)
        return cancel.is_set()

    monkeypatch.setattr(
        grants, "DeviceCodeGrant", functools.partial(grants.DeviceCodeGrant, wait=person)
    )
    app = make_app(server_url=server.url)
    dialog = app.dialog
    qtbot.waitUntil(dialog.browser_button.isVisible, timeout=TIMEOUT_MS)
    # As for a server with the device grant and no browser-capable grant.
    dialog.set_methods(password=False, browser=False, device=True)
    qtbot.mouseClick(dialog.device_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(dialog.code_label.isVisible, timeout=TIMEOUT_MS)
    shown.append((dialog.code_label.text(), dialog.complete_edit.text()))
    code, complete = shown[0]
    assert dialog.url_edit.text() == f"{server.url}/device"
    assert code in dialog.waiting_label.text() and complete.startswith(f"{server.url}/device?")
    assert play_device(complete).status == "done"
    approved.set()

    main = wait_for_profile(qtbot, app)
    assert main.profile is not None and main.profile["preferred_username"] == "alice"
    assert list(stored_sessions(memory_keyring.secrets)) == [(f"jwt-desktop:{server.url}", "alice")]
