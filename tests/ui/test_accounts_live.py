"""Accounts in the GUI, against the real core and the live bundled server: two stored accounts,
switching without a password, signing out of one."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from desktop import accounts
from desktop import config as config_module
from desktop.app import Application
from tests.support.keyring import MemoryKeyring
from tests.support.server import StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, ShowCounter, sign_in, stored_sessions


def _showing(app: Application, username: str) -> bool:
    main = app._main
    return (
        main is not None
        and main.isVisible()
        and main.profile is not None
        and main.profile.get("preferred_username") == username
    )


def _menu(app: Application) -> list[tuple[str, bool]]:
    assert app._main is not None
    return [(a.text(), a.isChecked()) for a in app._main.account_actions()]


def test_two_accounts_switch_without_a_password_and_sign_out_of_one(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    assert _menu(app) == [("alice", True)]

    # Add account…: the dialog, while alice's window and session stay.
    main.add_account_action.trigger()
    assert app.dialog.isVisible() and main.isVisible()
    assert app.dialog.username_edit.text() == ""
    assert app.controller.signed_in
    sign_in(qtbot, app, "bob", "builder")
    qtbot.waitUntil(lambda: _showing(app, "bob"), timeout=TIMEOUT_MS)
    assert not app.dialog.isVisible()
    assert _menu(app) == [("bob", True), ("alice", False)]
    service = f"jwt-desktop:{server.url}"
    assert set(stored_sessions(memory_keyring.secrets)) == {(service, "alice"), (service, "bob")}

    # Switching: no dialog, no password; alice's stored session comes back.
    dialog_shown = ShowCounter(app.dialog)
    alice_action = next(a for a in main.account_actions() if a.text() == "alice")
    alice_action.trigger()
    assert main.signing_in_label.text() == "Signing in as alice…"
    qtbot.waitUntil(lambda: _showing(app, "alice"), timeout=TIMEOUT_MS)
    assert dialog_shown.count == 0
    assert main.profile_view.username_label.text() == "@alice"
    assert _menu(app) == [("alice", True), ("bob", False)]
    config = config_module.load_config()
    assert (config.server_url, config.last_username) == (server.url, "alice")

    # Signing out of alice leaves bob stored, and moves on to him (still no password).
    main.sign_out_action.trigger()
    qtbot.waitUntil(lambda: _showing(app, "bob"), timeout=TIMEOUT_MS)
    assert dialog_shown.count == 0
    assert main.statusBar().currentMessage().endswith("Now signed in as bob.")
    assert set(stored_sessions(memory_keyring.secrets)) == {(service, "bob")}
    assert _menu(app) == [("bob", True)]
    assert [a.username for a in config_module.load_config().accounts] == ["bob"]

    # Signing out of the last one: the dialog.
    main.sign_out_action.trigger()
    qtbot.waitUntil(app.dialog.isVisible, timeout=TIMEOUT_MS)
    assert stored_sessions(memory_keyring.secrets) == {}
    assert config_module.load_config().accounts == ()


def test_the_next_start_restores_the_account_switched_to(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    first = make_app(server_url=server.url)
    main = sign_in(qtbot, first, "alice", "wonderland")
    main.add_account_action.trigger()
    sign_in(qtbot, first, "bob", "builder")
    qtbot.waitUntil(lambda: _showing(first, "bob"), timeout=TIMEOUT_MS)
    first.switch_account(server.url, "alice")
    qtbot.waitUntil(lambda: _showing(first, "alice"), timeout=TIMEOUT_MS)
    first.shutdown()
    first._main.hide()  # type: ignore[union-attr]

    second = make_app(server_url=server.url)
    qtbot.waitUntil(lambda: _showing(second, "alice"), timeout=TIMEOUT_MS)
    assert [label for label, _ in _menu(second)] == ["alice", "bob"]
    assert accounts.active(config_module.load_config()) is not None
