"""One instance: a second start raises the running window and exits; with --demo it starts no
second server; a socket file left by a crashed run is no obstacle."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop import config as config_module
from desktop.ui.single_instance import SingleInstance, notify_running, socket_name
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, second_start


@pytest.fixture
def instance(qapp: object) -> Iterator[SingleInstance]:
    first = SingleInstance(
        socket_name(config_module.config_path().parent), config_module.state_dir() / "i.lock"
    )
    assert first.claim()
    first.listen()
    yield first
    first.close()


def test_the_name_is_per_user_and_settings_folder(tmp_path: Path) -> None:
    assert socket_name(tmp_path / "a") != socket_name(tmp_path / "b")
    assert socket_name(tmp_path / "a") == socket_name(tmp_path / "a")
    assert len(socket_name(tmp_path / "a")) < 100


def test_a_second_start_hands_over_to_the_first(qtbot: QtBot, instance: SingleInstance) -> None:
    second = SingleInstance(
        socket_name(config_module.config_path().parent), config_module.state_dir() / "i.lock"
    )
    with qtbot.waitSignal(instance.activated, timeout=TIMEOUT_MS):
        assert not second.claim()
    # Another settings folder is another instance.
    other = SingleInstance(socket_name(Path("/elsewhere")), config_module.state_dir() / "o.lock")
    try:
        assert other.claim()
        other.listen()
    finally:
        other.close()


def test_a_stale_socket_file_from_a_crashed_run_is_removed(qtbot: QtBot) -> None:
    name = socket_name(config_module.config_path().parent)
    path = name  # a full path on POSIX
    # What a killed process leaves: a socket file nobody listens on.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    assert os.path.exists(path)
    assert not notify_running(name)
    instance = SingleInstance(name, config_module.state_dir() / "i.lock")
    try:
        assert instance.claim()
        instance.listen()
        # Listening for real (not merely running without the socket): a next start reaches it.
        with qtbot.waitSignal(instance.activated, timeout=TIMEOUT_MS):
            assert notify_running(name)
    finally:
        instance.close()


def test_a_second_start_raises_the_running_window(
    qtbot: QtBot, make_app: MakeApp, instance: SingleInstance
) -> None:
    app = make_app(server_url="http://127.0.0.1:9")
    instance.activated.connect(app.raise_window)
    dialog = app.dialog
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT_MS)
    dialog.showMinimized()
    qtbot.waitUntil(dialog.isMinimized, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(instance.activated, timeout=TIMEOUT_MS):
        assert notify_running(socket_name(config_module.config_path().parent))
    qtbot.waitUntil(lambda: not dialog.isMinimized(), timeout=TIMEOUT_MS)
    assert dialog.isVisible()
    assert not dialog.windowState() & Qt.WindowState.WindowMinimized


def test_a_second_demo_process_starts_no_second_server(
    qtbot: QtBot, instance: SingleInstance
) -> None:
    """A real second process, `python -m desktop --demo`, with the same settings: it asks the
    first to raise its window and exits before any demo server (whose database would be in the
    state folder) is started."""
    raised: list[None] = []
    instance.activated.connect(lambda: raised.append(None))
    code, out, err = second_start(qtbot, "--demo")
    assert code == 0, err
    assert out == "jwt-desktop is already running: its window was brought to the front.\n"
    qtbot.waitUntil(lambda: raised == [None], timeout=TIMEOUT_MS)
    assert not (config_module.state_dir() / "demo.db").exists()
