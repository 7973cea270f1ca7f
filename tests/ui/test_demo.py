"""``--demo``: the bundled server is started (or reused) for the app, and stopped with it."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop.demo import DemoServer, DemoServerError, server_answers
from tests.support.keyring import MemoryKeyring
from tests.support.server import RunningServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, wait_for_profile


def test_demo_starts_a_working_server_and_signs_in_as_alice(
    qtbot: QtBot, make_app: MakeApp, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    # Port 0 instead of 8765, so the test never meets a server a person left running.
    demo = DemoServer(db=tmp_path / "demo.db", port=0)
    app = make_app(demo=demo)
    dialog = app.dialog
    assert dialog.demo_label.isVisible()
    assert "alice" in dialog.demo_label.text() and "wonderland" in dialog.demo_label.text()
    qtbot.keyClicks(dialog.username_edit, "alice")
    qtbot.keyClicks(dialog.password_edit, "wonderland")
    qtbot.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    main = wait_for_profile(qtbot, app)

    assert main.profile_view.name_label.text() == "Alice Liddell"
    assert demo.started
    url = demo.url
    assert url is not None and server_answers(url)
    assert (tmp_path / "demo.db").exists()  # the demo database persists across runs
    status = app._status()
    assert status is not None and status.access_lifetime == pytest.approx(60, abs=1)
    # The demo server runs with --dpop required: the session is bound, and the panel says so.
    assert status.bound
    assert main.session_panel.binding_label.text() == "Bound to this device's key (DPoP)"

    app.shutdown()
    assert not demo.started
    assert not server_answers(url)


def test_demo_reuses_a_server_already_answering(live_server: RunningServer, tmp_path: Path) -> None:
    port = urlsplit(live_server.url).port
    assert port is not None
    demo = DemoServer(db=tmp_path / "unused.db", port=port)
    assert demo.ensure() == live_server.url
    assert not demo.started
    demo.stop()
    assert live_server.running  # not ours to stop
    assert not (tmp_path / "unused.db").exists()


def test_demo_server_that_exits_early_is_a_clear_error(tmp_path: Path) -> None:
    demo = DemoServer(
        db=tmp_path / "demo.db",
        port=0,
        launcher=(sys.executable, "-c", "import sys; print('address already in use'); sys.exit(3)"),
    )
    with pytest.raises(DemoServerError) as raised:
        demo.ensure()
    message = str(raised.value)
    assert "exited (status 3) before it was ready" in message
    assert "address already in use" in message
    assert not demo.started


def test_demo_server_that_never_listens_times_out_and_is_stopped(tmp_path: Path) -> None:
    demo = DemoServer(
        db=tmp_path / "demo.db",
        port=0,
        launcher=(sys.executable, "-c", "import time; time.sleep(60)"),
        startup_timeout=0.5,
    )
    with pytest.raises(DemoServerError, match=r"did not report that it was listening within 0\.5"):
        demo.ensure()
    assert not demo.started


def test_a_demo_failure_shows_in_the_dialog(
    qtbot: QtBot, make_app: MakeApp, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    demo = DemoServer(
        db=tmp_path / "demo.db",
        port=0,
        launcher=(sys.executable, "-c", "import sys; sys.exit(2)"),
    )
    app = make_app(demo=demo)
    qtbot.waitUntil(app.dialog.error_label.isVisible, timeout=TIMEOUT_MS)
    assert app.dialog.error_label.text().startswith("The demo server exited (status 2)")


def test_the_demo_check_never_asks_a_proxy(
    live_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy from the environment (here: nothing listens there) must not decide whether the
    # loopback demo server is running.
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert server_answers(live_server.url)
