"""Small helpers shared by the UI tests: drive the dialog like a person, talk to the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QShowEvent
from pytestqt.qtbot import QtBot

from desktop.app import Application
from desktop.auth.dpop import DPoPKey
from desktop.ui.main_window import MainWindow

TIMEOUT_MS = 30_000
REPO = Path(__file__).resolve().parents[2]


def fill_and_submit(
    qtbot: QtBot, app: Application, username: str, password: str, *, remember: bool = True
) -> None:
    """Type into the dialog and press Enter, as a person would."""
    dialog = app.dialog
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT_MS)
    dialog.username_edit.clear()
    qtbot.keyClicks(dialog.username_edit, username)
    dialog.password_edit.clear()
    qtbot.keyClicks(dialog.password_edit, password)
    if dialog.remember_check.isEnabled() and dialog.remember_check.isChecked() != remember:
        dialog.remember_check.click()
    qtbot.keyClick(dialog.password_edit, Qt.Key.Key_Return)


def wait_for_profile(qtbot: QtBot, app: Application) -> MainWindow:
    def shown() -> bool:
        main = app._main
        return main is not None and main.isVisible() and main.profile is not None

    qtbot.waitUntil(shown, timeout=TIMEOUT_MS)
    assert app._main is not None
    return app._main


def sign_in(
    qtbot: QtBot, app: Application, username: str, password: str, *, remember: bool = True
) -> MainWindow:
    fill_and_submit(qtbot, app, username, password, remember=remember)
    return wait_for_profile(qtbot, app)


def stored_sessions(secrets: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """The app's entries in an in-memory keyring (not the store's availability probe)."""
    return {
        key: value
        for key, value in secrets.items()
        if key[0].startswith("jwt-desktop:") and "probe" not in key[0]
    }


def post_form(
    url: str, form: dict[str, str], *, entry: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST a form to the live server, as a third party (an attacker, another client) would;
    with a stolen keyring ``entry``, as a thief holding it: with a proof of its DPoP key."""
    body = urllib.parse.urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    key = json.loads(entry).get("dpop_key") if entry is not None else None
    if key is not None:
        headers["DPoP"] = DPoPKey.from_json(key).proof("POST", url)
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else {}


class ShowCounter(QObject):
    """Counts how many times a widget is shown."""

    def __init__(self, widget: QObject) -> None:
        super().__init__()
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: Any) -> bool:
        if isinstance(event, QShowEvent):
            self.count += 1
        return False


def settled(qtbot: QtBot, app: Application, name: str) -> Any:
    """Wait (as a context manager) until the controller's operation ``name`` has been handled:
    "warm_up", "sign_in", "restore", "profile", "sign_out", "tokens", "sessions"..."""
    return qtbot.waitSignal(
        app.controller.settled, timeout=TIMEOUT_MS, check_params_cb=lambda done: done == name
    )


def second_start(qtbot: QtBot, *args: str) -> tuple[int, str, str]:
    """A real second ``python -m desktop ARGS`` against the running first instance: its exit
    code, stdout and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop", *args],
        cwd=REPO,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first instance's event loop must turn to accept the connection: wait in Qt.
        qtbot.waitUntil(lambda: process.poll() is not None, timeout=60_000)
    finally:
        if process.poll() is None:
            process.kill()
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err
