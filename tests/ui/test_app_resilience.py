"""The window never freezes: slow servers, cancelled sign-ins, a server that goes away."""

from __future__ import annotations

import socket
import time

from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from tests.support.keyring import MemoryKeyring
from tests.support.server import StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, fill_and_submit, settled, sign_in
from tests.ui.slow_server import SlowTokenServer


def test_event_loop_keeps_running_while_the_server_takes_2_s(
    qtbot: QtBot, make_app: MakeApp, memory_keyring: MemoryKeyring
) -> None:
    with SlowTokenServer(delay=2.0) as slow:
        app = make_app(server_url=slow.url)
        # The core loads first (after the first frame): what is measured is a sign-in in flight.
        with settled(qtbot, app, "warm_up"):
            pass
        ticks: list[float] = []
        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        started = time.monotonic()
        timer.start()
        fill_and_submit(qtbot, app, "alice", "wonderland")
        assert app.dialog.busy
        assert not app.dialog.username_edit.isEnabled()
        assert app.dialog.cancel_button.isEnabled()
        qtbot.waitUntil(app.dialog.error_label.isVisible, timeout=TIMEOUT_MS)
        finished = time.monotonic()
        timer.stop()

    assert finished - started >= 1.9  # the answer really took two seconds
    assert app.dialog.error_label.text() == "Wrong username or password."
    gaps = [later - earlier for earlier, later in zip([started, *ticks], ticks, strict=False)]
    assert len(ticks) > 50
    assert max(gaps) <= 0.010 + 0.100, f"the timer missed by {max(gaps) - 0.010:.3f} s"


def test_cancel_while_signing_in_ignores_the_late_answer(
    qtbot: QtBot, make_app: MakeApp, memory_keyring: MemoryKeyring
) -> None:
    with SlowTokenServer(delay=1.0) as slow:
        app = make_app(server_url=slow.url)
        dialog = app.dialog
        fill_and_submit(qtbot, app, "alice", "wonderland")
        qtbot.waitUntil(slow.token_requests.is_set, timeout=TIMEOUT_MS)
        assert dialog.busy
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)  # Esc is Cancel

        assert not dialog.busy
        assert dialog.username_edit.isEnabled() and dialog.sign_in_button.isEnabled()
        assert dialog.notice_label.text() == "Sign-in cancelled."
        assert dialog.isVisible()
        # The answer still arrives (the worker cannot be stopped), and is ignored.
        qtbot.waitUntil(lambda: not app.controller.busy(), timeout=TIMEOUT_MS)
    assert not dialog.error_label.isVisible()
    assert dialog.isVisible()


def test_unreachable_server_shows_a_banner_retries_and_keeps_the_session(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    first = start_server(extra_args=["--port", str(port)])
    app = make_app(server_url=first.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    first.stop()

    with settled(qtbot, app, "profile"):
        main.reload_button.click()
    banner = main.banner
    assert banner.isVisible()
    assert f"Cannot reach the server at {first.url}." in banner.label.text()
    assert "Retrying in" in banner.label.text()
    assert banner.retry_pending
    assert main.isVisible() and not app.dialog.isVisible()  # the session is kept
    assert main.profile_view.name_label.text() == "Alice Liddell"

    # The server comes back (same address, same database): the retry succeeds by itself.
    start_server(db=first.db, extra_args=["--port", str(port)])
    with settled(qtbot, app, "profile"):
        pass
    assert not banner.isVisible()
    assert not app.dialog.isVisible()
