"""A sign-in whose outcome the window does not show never leaves a live session behind.

Two ways it could: Cancel pressed in the instant between the worker finishing and the window
handling its answer (the answer is ignored, so the session must be undone), and a sign-in whose
tokens arrived but whose profile fetch failed (the core keeps that session, so the window must
show it as signed in, not as a failed sign-in).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop import config as config_module
from desktop.app import Application
from tests.core.fakes import FakeOIDCServer, Reply, Seen
from tests.support.keyring import MemoryKeyring
from tests.support.server import RunningServer, StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, fill_and_submit, post_form, settled, stored_sessions


class _WorkerDone:
    """Set, on the worker thread, when a session operation has its outcome ready.

    The GUI thread is not processing events while the test waits on it, so the outcome is
    still queued: exactly the window between "the worker finished" and "the GUI handled it".
    """

    def __init__(self, app: Application) -> None:
        self.event = threading.Event()
        app.controller._finished.connect(
            lambda op_id: self.event.set(), Qt.ConnectionType.DirectConnection
        )

    def wait(self) -> None:
        assert self.event.wait(TIMEOUT_MS / 1000)


def _ready(qtbot: QtBot, server_url: str, make_app: MakeApp) -> Application:
    app = make_app(server_url=server_url)
    # The core is built, the keyring probed and the server's metadata read first (in that
    # order, on the one worker), so the next outcome is the sign-in's.
    with settled(qtbot, app, "discover"):
        pass
    return app


def _refresh_works(server: RunningServer, token: str) -> bool:
    status, _ = post_form(
        f"{server.url}/token",
        {"grant_type": "refresh_token", "refresh_token": token, "client_id": "jwt-desktop"},
    )
    return status == 200


def _cancel_after_the_worker_finished(
    qtbot: QtBot, app: Application, memory_keyring: MemoryKeyring
) -> str:
    """Sign in as alice and press Cancel once the sign-in is complete and stored but its answer
    still waits in the GUI thread's queue; returns the stored refresh token."""
    done = _WorkerDone(app)
    fill_and_submit(qtbot, app, "alice", "wonderland", remember=True)
    done.wait()
    [token] = stored_sessions(memory_keyring.secrets).values()
    app.dialog.cancel_button.click()
    return token


def test_cancel_after_the_worker_finished_signs_the_session_out(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = _ready(qtbot, server.url, make_app)
    token = _cancel_after_the_worker_finished(qtbot, app, memory_keyring)

    controller = app.controller
    qtbot.waitUntil(lambda: not controller.busy(), timeout=TIMEOUT_MS)
    assert app.dialog.isVisible()
    assert app.dialog.notice_label.text() == "Sign-in cancelled."
    assert app._main is None or not app._main.isVisible()
    assert not controller.signed_in
    status = controller.status()
    assert status is not None and not status.signed_in
    assert stored_sessions(memory_keyring.secrets) == {}
    assert not _refresh_works(server, token)  # revoked at the server


def test_a_new_sign_in_right_after_such_a_cancel_is_kept(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = _ready(qtbot, server.url, make_app)
    cancelled_token = _cancel_after_the_worker_finished(qtbot, app, memory_keyring)
    # At once, before anything was processed: the undo must hit the cancelled session only.
    fill_and_submit(qtbot, app, "bob", "builder", remember=True)

    qtbot.waitUntil(
        lambda: app._main is not None and app._main.profile is not None, timeout=TIMEOUT_MS
    )
    assert app._main is not None
    assert app._main.profile is not None
    assert app._main.profile["preferred_username"] == "bob"
    qtbot.waitUntil(lambda: not app.controller.busy(), timeout=TIMEOUT_MS)
    assert list(stored_sessions(memory_keyring.secrets)) == [(f"jwt-desktop:{server.url}", "bob")]
    status = app.controller.status()
    assert status is not None and status.username == "bob"
    assert not _refresh_works(server, cancelled_token)


def test_quitting_right_after_such_a_cancel_still_signs_out(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = _ready(qtbot, server.url, make_app)
    token = _cancel_after_the_worker_finished(qtbot, app, memory_keyring)
    app.shutdown()  # the person closes the app at once

    assert stored_sessions(memory_keyring.secrets) == {}
    assert not _refresh_works(server, token)


@pytest.fixture
def profile_fails_once() -> Iterator[FakeOIDCServer]:
    """A server whose token endpoint works but whose first profile request answers 503."""
    server = FakeOIDCServer()
    answers = [Reply.json(503, {"error": "temporarily_unavailable"})]

    def userinfo(seen: Seen) -> Reply:
        if answers:
            return answers.pop(0)
        return Reply.json(200, {"sub": "u1", "preferred_username": "alice", "name": "Alice"})

    server.routes["/userinfo"] = userinfo
    try:
        yield server
    finally:
        server.close()


def test_a_profile_failure_after_sign_in_shows_the_signed_in_window(
    qtbot: QtBot,
    make_app: MakeApp,
    profile_fails_once: FakeOIDCServer,
    memory_keyring: MemoryKeyring,
) -> None:
    app = make_app(server_url=profile_fails_once.url)
    fill_and_submit(qtbot, app, "alice", "wonderland", remember=True)

    qtbot.waitUntil(lambda: app._main is not None and app._main.isVisible(), timeout=TIMEOUT_MS)
    main = app._main
    assert main is not None
    # Signed in: the session is live and stored, the dialog is gone, no "sign-in failed".
    assert not app.dialog.isVisible()
    assert not app.dialog.error_label.isVisible()
    assert app.controller.signed_in
    assert list(stored_sessions(memory_keyring.secrets)) == [
        (f"jwt-desktop:{profile_fails_once.url}", "alice")
    ]
    assert config_module.load_config().last_username == "alice"  # restored at the next start
    # What failed is said where the profile would be, and the banner retries.
    assert main.profile is None
    assert main.profile_missing_label.isVisible()
    assert "signed in as alice" in main.profile_missing_label.text()
    assert main.banner.isVisible()
    assert "HTTP 503" in main.banner.label.text()
    assert main.reload_button.isEnabled() and main.sign_out_button.isEnabled()

    # Reload works: the profile arrives and replaces the sentence.
    with settled(qtbot, app, "profile"):
        main.reload_button.click()
    assert main.profile is not None and main.profile["name"] == "Alice"
    assert main.profile_view.isVisible()
    assert not main.profile_missing_label.isVisible()
    assert not main.banner.isVisible()
    # And Sign out ends that session, at the server too.
    with settled(qtbot, app, "sign_out"):
        main.sign_out_button.click()
    assert stored_sessions(memory_keyring.secrets) == {}
    assert profile_fails_once.requests_to("/revoke")


def test_a_wrong_password_is_still_a_failed_sign_in(
    qtbot: QtBot, make_app: MakeApp, memory_keyring: MemoryKeyring
) -> None:
    server = FakeOIDCServer()
    try:
        server.routes["/token"] = lambda seen: Reply.json(
            400, {"error": "invalid_grant", "error_description": "Wrong password"}
        )
        app = make_app(server_url=server.url)
        fill_and_submit(qtbot, app, "alice", "nope")
        qtbot.waitUntil(app.dialog.error_label.isVisible, timeout=TIMEOUT_MS)
        assert app.dialog.error_label.text() == "Wrong username or password."
        assert app._main is None or not app._main.isVisible()
        assert not app.controller.signed_in
    finally:
        server.close()
