"""The whole application against the real core and the live bundled server on loopback.

Each test drives the widgets as a person would (typing, Enter, buttons) and waits on
conditions, never on fixed sleeps. Keyring: the in-memory backend from tests/conftest.py,
except where the real Secret Service is the point.
"""

from __future__ import annotations

import socket

import keyring
from keyring.backends import fail
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop import config as config_module
from tests.support.keyring import MemoryKeyring, SecretServiceKeyring, refresh_token_of
from tests.support.server import StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import (
    TIMEOUT_MS,
    ShowCounter,
    fill_and_submit,
    post_form,
    settled,
    sign_in,
    stored_sessions,
    wait_for_profile,
)

# The app's DPoP proofs carry the real time, so the server's clock may move at most the 60 s
# `iat` window ahead: 55 s, past the 50 s access tokens.
ACCESS_TTL, PAST_THE_ACCESS_TOKEN = "50s", 55


def test_sign_in_shows_the_profile_from_the_server(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    assert app.dialog.windowTitle() == "Sign in"
    main = sign_in(qtbot, app, "alice", "wonderland")

    assert not app.dialog.isVisible()
    assert "Alice Liddell" in main.windowTitle()
    view = main.profile_view
    assert view.name_label.text() == "Alice Liddell"
    assert view.username_label.text() == "@alice"
    assert view.email_label.text() == "alice@example.org"
    assert view.group_names() == ["staff", "admin"]
    assert view.avatar.text() == "AL"
    # The rest of the profile, laid out as a form rather than raw JSON.
    labels = [
        view.details_form.itemAt(row, view.details_form.ItemRole.LabelRole).widget().text()
        for row in range(view.details_form.rowCount())
    ]
    assert "Email verified:" in labels
    assert "Given name:" in labels
    # The session panel reads the live session.
    qtbot.waitUntil(lambda: "left" in main.session_panel.countdown_bar.text(), timeout=TIMEOUT_MS)
    assert main.session_panel.server_label.text() == server.url


def test_wrong_password_shows_an_inline_error_and_clears_the_password(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    dialog = app.dialog
    # Active, as on a desktop: keyboard focus moves between its widgets as it would there.
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow, timeout=TIMEOUT_MS)
    fill_and_submit(qtbot, app, "alice", "not-the-password")
    qtbot.waitUntil(dialog.error_label.isVisible, timeout=TIMEOUT_MS)

    assert dialog.error_label.text() == "Wrong username or password."
    assert dialog.password_edit.text() == ""
    assert dialog.focusWidget() is dialog.password_edit
    assert dialog.username_edit.text() == "alice"
    assert dialog.sign_in_button.isEnabled()
    assert dialog.isVisible()
    assert app._main is None or not app._main.isVisible()

    # The person retypes the password and presses Enter: Sign in is still the default button.
    assert dialog.sign_in_button.isDefault()
    qtbot.keyClicks(dialog.password_edit, "wonderland")
    qtbot.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    wait_for_profile(qtbot, app)


def test_too_many_attempts_says_how_long_to_wait(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    dialog = app.dialog
    for _ in range(10):
        dialog.error_label.hide()
        fill_and_submit(qtbot, app, "bob", "wrong")
        qtbot.waitUntil(dialog.error_label.isVisible, timeout=TIMEOUT_MS)
        if "Too many" in dialog.error_label.text():
            break
    text = dialog.error_label.text()
    assert text.startswith("Too many failed sign-in attempts.")
    assert "Try again in 5 minutes." in text  # the server's window is five minutes


def test_server_down_gives_a_clear_error_with_the_url(
    qtbot: QtBot, make_app: MakeApp, memory_keyring: MemoryKeyring
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"  # nothing listens there any more
    app = make_app(server_url=url)
    fill_and_submit(qtbot, app, "alice", "wonderland")
    qtbot.waitUntil(app.dialog.error_label.isVisible, timeout=TIMEOUT_MS)

    assert app.dialog.error_label.text() == (
        f"Cannot reach the server at {url}. Check that it is running."
    )
    assert app.dialog.password_edit.text() == "wonderland"  # not the person's fault: kept


def test_keep_me_signed_in_restores_without_the_dialog(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    first = make_app(server_url=server.url)
    sign_in(qtbot, first, "alice", "wonderland", remember=True)
    assert list(stored_sessions(memory_keyring.secrets)) == [(f"jwt-desktop:{server.url}", "alice")]
    first.shutdown()
    first._main.hide()  # type: ignore[union-attr]

    second = make_app(server_url=server.url)
    dialog_shown = ShowCounter(second.dialog)
    main = second.main_window()
    assert main.isVisible()
    assert "Signing in" in main.windowTitle()  # the first frame, before the server answers
    main = wait_for_profile(qtbot, second)

    assert "Alice Liddell" in main.windowTitle()
    assert dialog_shown.count == 0
    assert not second.dialog.isVisible()
    status = second._status()
    # The stored access token was still valid: the restart reused it, with no refresh.
    assert status is not None and status.remembered and status.refresh_count == 0
    assert status.bound  # with the key from the same keyring entry


def test_a_bearer_server_gets_bearer_and_the_panel_says_so(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(extra_args=["--dpop", "off"])
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    assert main.session_panel.binding_label.text() == "Bearer: usable by whoever holds it"


def test_unchecked_keeps_nothing_in_the_keyring(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    first = make_app(server_url=server.url)
    main = sign_in(qtbot, first, "alice", "wonderland", remember=False)

    assert stored_sessions(memory_keyring.secrets) == {}
    assert main.session_panel.storage_label.text() == "This session only"
    assert "You chose not to stay signed in" in main.session_panel.storage_reason.text()
    assert config_module.load_config().last_username is None
    first.shutdown()
    main.hide()

    second = make_app(server_url=server.url)
    assert second.dialog.isVisible()  # nothing to restore: the dialog, at once


def test_transparent_refresh_after_expiry(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(access_ttl=ACCESS_TTL)
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    dialog_shown = ShowCounter(app.dialog)
    assert main.session_panel.refresh_label.text() == "Not refreshed yet"
    assert main.session_panel.binding_label.text() == "Bound to this device's key (DPoP)"

    server.advance_clock(PAST_THE_ACCESS_TOKEN)  # the access token is now expired there
    with settled(qtbot, app, "profile"):
        main.reload_button.click()

    status = app._status()
    assert status is not None and status.refresh_count == 1
    # The reload's own result says the token was renewed on the way.
    assert "with a new access token" in main.statusBar().currentMessage()
    qtbot.waitUntil(
        lambda: "(1 refresh so far)" in main.session_panel.refresh_label.text(), timeout=TIMEOUT_MS
    )
    assert dialog_shown.count == 0
    assert main.isVisible() and "Alice Liddell" in main.windowTitle()


def _sign_in_remembered(
    qtbot: QtBot, make_app: MakeApp, url: str, secrets: dict[tuple[str, str], str]
) -> tuple[object, str]:
    app = make_app(server_url=url)
    sign_in(qtbot, app, "alice", "wonderland", remember=True)
    refresh_token = refresh_token_of(secrets[(f"jwt-desktop:{url}", "alice")])
    return app, refresh_token


def test_session_ended_by_reuse_returns_to_the_dialog(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(access_ttl=ACCESS_TTL)
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland", remember=True)
    entry = memory_keyring.secrets[(f"jwt-desktop:{server.url}", "alice")]
    stolen = refresh_token_of(entry)
    # Someone with the whole entry (its DPoP key too) spends the refresh token first: the app's
    # next use of it is a reuse.
    status, _ = post_form(
        f"{server.url}/token",
        {"grant_type": "refresh_token", "refresh_token": stolen, "client_id": "jwt-desktop"},
        entry=entry,
    )
    assert status == 200
    server.advance_clock(PAST_THE_ACCESS_TOKEN)
    with qtbot.waitSignal(app.controller.sessionEnded, timeout=TIMEOUT_MS) as ended:
        main.reload_button.click()

    assert app.dialog.isVisible()
    assert not main.isVisible()
    assert app.dialog.notice_label.isVisible()
    assert app.dialog.notice_label.text() == ended.args[0].message
    assert ended.args[0].message  # a sentence from the core, e.g. about reuse
    assert stored_sessions(memory_keyring.secrets) == {}
    assert config_module.load_config().last_username is None


def test_session_ended_by_revocation_returns_to_the_dialog(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(access_ttl=ACCESS_TTL)
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland", remember=True)
    entry = memory_keyring.secrets[(f"jwt-desktop:{server.url}", "alice")]
    status, _ = post_form(
        f"{server.url}/revoke",
        {
            "token": refresh_token_of(entry),
            "token_type_hint": "refresh_token",
            "client_id": "jwt-desktop",
        },
        entry=entry,  # a bound session is revoked only with a proof of its key
    )
    assert status == 200
    server.advance_clock(PAST_THE_ACCESS_TOKEN)
    with qtbot.waitSignal(app.controller.sessionEnded, timeout=TIMEOUT_MS) as ended:
        main.reload_button.click()

    assert app.dialog.isVisible() and not main.isVisible()
    assert app.dialog.notice_label.text() == ended.args[0].message
    assert stored_sessions(memory_keyring.secrets) == {}


def test_sign_out_revokes_at_the_server_and_forgets_the_keyring_entry(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland", remember=True)
    token = refresh_token_of(memory_keyring.secrets[(f"jwt-desktop:{server.url}", "alice")])
    with settled(qtbot, app, "sign_out"):
        main.sign_out_action.trigger()

    assert "revoked at the server" in app.dialog.notice_label.text()
    assert app.dialog.isVisible() and not main.isVisible()
    assert "You signed out" in app.dialog.notice_label.text()
    assert stored_sessions(memory_keyring.secrets) == {}
    assert config_module.load_config().last_username is None
    # The server forgot the session: the refresh token it had issued is refused.
    status, body = post_form(
        f"{server.url}/token",
        {"grant_type": "refresh_token", "refresh_token": token, "client_id": "jwt-desktop"},
    )
    assert status == 400 and body["error"] == "invalid_grant"


def test_real_secret_service_keeps_the_session_across_app_instances(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    secret_service_keyring: SecretServiceKeyring,
) -> None:
    server = start_server()
    service = f"jwt-desktop:{server.url}"
    first = make_app(server_url=server.url)
    qtbot.waitUntil(first.dialog.remember_check.isEnabled, timeout=TIMEOUT_MS)
    main = sign_in(qtbot, first, "alice", "wonderland", remember=True)
    assert main.session_panel.storage_label.text().startswith("OS keyring: ")
    assert secret_service_keyring.stored(service, "alice")
    first.shutdown()
    main.hide()

    second = make_app(server_url=server.url)
    dialog_shown = ShowCounter(second.dialog)
    main = wait_for_profile(qtbot, second)
    assert dialog_shown.count == 0
    with settled(qtbot, second, "sign_out"):
        main.sign_out_button.click()
    assert secret_service_keyring.stored(service, "alice") is None


def test_without_a_keyring_keep_me_signed_in_is_disabled_and_the_session_is_in_memory(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer
) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        server = start_server()
        app = make_app(server_url=server.url)
        dialog = app.dialog
        with settled(qtbot, app, "warm_up"):
            pass
        assert not dialog.remember_check.isEnabled()
        assert not dialog.remember_check.isChecked()
        assert dialog.remember_reason.isVisible() and dialog.remember_reason.text()
        main = sign_in(qtbot, app, "alice", "wonderland", remember=True)
        assert main.session_panel.storage_label.text() == "This session only"
        # Why: the keyring, not a choice the person could not make.
        assert "No OS keyring is available" in main.session_panel.storage_reason.text()
        assert "chose" not in main.session_panel.storage_reason.text()
        assert config_module.load_config().last_username is None
        assert config_module.load_config().remember  # the person's choice is not overwritten
    finally:
        keyring.set_keyring(previous)
