"""The GUI and a locked keyring (issue 11): it keeps working in memory, says so in the session
panel, writes the session back (off the GUI thread) once the keyring is unlocked, and deletes
the entry of a sign-out made while it was locked."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from desktop.auth.errors import KeyringUnavailable
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import ErrorKind, Failure, keyring_unusable
from desktop.ui import controller
from tests.support.keyring import SecretServiceKeyring
from tests.support.server import StartServer
from tests.ui.conftest import MakeApp
from tests.ui.fakes import FakeClient
from tests.ui.helpers import TIMEOUT_MS, settled, sign_in

LOCKED = keyring_unusable("locked")


def test_the_session_panel_reports_an_unsaved_session_and_writes_it_back(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    faulty_keyring: SecretServiceKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(controller, "WRITE_BACK_MS", 100)
    # The app's clock is the real one and a DPoP-bound session's proofs carry it (`iat`): the
    # server's clock moves past the 20 s access token, well within DPoP's 60 s window.
    server = start_server(access_ttl="20s")
    server_ahead = 25
    service = f"jwt-desktop:{server.url}"
    app = make_app(server_url=server.url)
    try:
        main = sign_in(qtbot, app, "alice", "wonderland")
        stored = faulty_keyring.stored(service, "alice")
        faulty_keyring.lock()
        server.advance_clock(server_ahead)  # the next reload refreshes, cannot save the rotation
        with settled(qtbot, app, "profile"):
            main.reload_button.click()
        panel = main.session_panel

        qtbot.waitUntil(
            lambda: "could not be saved in the OS keyring" in panel.storage_reason.text(),
            timeout=TIMEOUT_MS,
        )
        assert "locked" in panel.storage_reason.text()
        assert panel.storage_label.text() == "OS keyring: not saved yet"
        assert main.profile_view.name_label.text() == "Alice Liddell"  # still working

        faulty_keyring.unlock()
        qtbot.waitUntil(
            lambda: panel.storage_reason.text().startswith("You stay signed in"),
            timeout=TIMEOUT_MS,
        )
        after = faulty_keyring.stored(service, "alice")
        assert after is not None and after != stored  # the rotation, written back
        assert faulty_keyring.entries(service) == 1

        # Signing out with the keyring locked: the marker proves this window's copy current,
        # so it is revoked; the entry is deleted by the write-back once the keyring answers.
        faulty_keyring.lock()
        with settled(qtbot, app, "sign_out"):
            main.sign_out_button.click()
        assert not app.controller.signed_in
        faulty_keyring.unlock()
        qtbot.waitUntil(lambda: faulty_keyring.entries(service) == 0, timeout=TIMEOUT_MS)
    finally:
        if faulty_keyring.stored(service, "alice") is not None:
            faulty_keyring.restore()
            faulty_keyring.backend.delete_password(service, "alice")


def test_a_sign_out_refused_for_keyring_trouble_keeps_the_session(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller, "WRITE_BACK_MS", 50)
    client = FakeClient()
    control = controller.SessionController(lambda: client)
    try:

        def signed_in(name: str) -> bool:
            return name == "sign_in"

        with qtbot.waitSignal(control.settled, timeout=TIMEOUT_MS, check_params_cb=signed_in):
            control.sign_in(
                PasswordGrant("alice", "wonderland"),
                remember=True,
                success=lambda result: None,
                failure=lambda failure: None,
            )
        assert control.signed_in
        client.unsaved = "The session could not be saved in the OS keyring (locked)."
        qtbot.waitUntil(lambda: client.write_backs >= 2, timeout=TIMEOUT_MS)  # retried
        client.sign_out_error = KeyringUnavailable(LOCKED)
        with qtbot.waitSignal(control.requestFailed, timeout=TIMEOUT_MS) as failed:
            control.sign_out(lambda outcome: None)
        assert failed.args == [Failure(ErrorKind.KEYRING, LOCKED)]
        assert control.signed_in
        assert client.username == "alice"
    finally:
        control.shutdown()
