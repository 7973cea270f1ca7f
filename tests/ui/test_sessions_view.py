"""The Sessions view against the live server: the server decides who sees the sign-ins, and a
revocation ends the other person's session at their next request."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from desktop.app import Application
from desktop.ui.sessions_view import SessionsView
from tests.support.keyring import MemoryKeyring
from tests.support.server import StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, settled, sign_in


def _open_sessions(qtbot: QtBot, app: Application) -> SessionsView:
    main = app.main_window()
    with settled(qtbot, app, "sessions"):
        main.show_tab(2)
    return main.sessions_view


def test_alice_sees_bobs_session_and_revokes_it_and_bob_is_signed_out_with_the_reason(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    bob = make_app(server_url=server.url)
    bob_main = sign_in(qtbot, bob, "bob", "builder", remember=False)
    alice = make_app(server_url=server.url)
    sign_in(qtbot, alice, "alice", "wonderland", remember=False)

    view = _open_sessions(qtbot, alice)
    people = {s.username: s for s in view.sessions}
    assert set(people) == {"alice", "bob"}
    assert people["alice"].current and not people["bob"].current
    assert view.table.isVisible() and view.table.topLevelItemCount() == 2
    rows = {
        view.table.topLevelItem(i).text(0): view.table.topLevelItem(i)  # type: ignore[union-attr]
        for i in range(2)
    }
    assert rows["alice"].text(5) == "this one"
    assert rows["bob"].text(1) == people["bob"].client_id

    # Revoke asks first: answered Cancel, nothing happens.
    questions: list[str] = []
    answers = [False, True]

    def confirm(parent: object, text: str) -> bool:
        questions.append(text)
        return answers.pop(0)

    view._confirm = confirm
    view.table.setCurrentItem(rows["bob"])
    view.revoke_button.click()
    assert "Revoke the session of bob" in questions[0]
    assert len(view.sessions) == 2
    with settled(qtbot, alice, "sessions"):  # revoked, then listed again
        view.revoke_button.click()
    assert [s.username for s in view.sessions] == ["alice"]
    assert "Revoked the session of bob" in view.status_label.text()

    # Bob's next request: his app is back at the sign-in dialog, saying why.
    with qtbot.waitSignal(bob.controller.sessionEnded, timeout=TIMEOUT_MS) as ended:
        bob_main.reload_button.click()
    qtbot.waitUntil(bob.dialog.isVisible, timeout=TIMEOUT_MS)
    assert not bob_main.isVisible()
    notice = bob.dialog.notice_label.text()
    assert notice == ended.args[0].message
    assert notice.startswith("Your session has ended: it was revoked at the server (")


def test_bob_sees_the_servers_refusal_never_a_list(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    alice = make_app(server_url=server.url)
    sign_in(qtbot, alice, "alice", "wonderland", remember=False)  # there is a list to hide
    bob = make_app(server_url=server.url)
    sign_in(qtbot, bob, "bob", "builder", remember=False)

    view = _open_sessions(qtbot, bob)
    text = view.status_label.text()
    assert text.startswith("The server does not show you the sessions: ")
    assert "admin" in text  # the server's own reason
    assert view.sessions == []
    assert not view.table.isVisible() and view.table.topLevelItemCount() == 0
    assert not view.revoke_button.isVisible()
    # Still signed in: a refusal is not the end of the session.
    assert bob.controller.signed_in and bob.main_window().isVisible()
