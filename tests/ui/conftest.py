"""Fixtures for the desktop UI tests: a private config/state directory, window settings in tmp,
and a factory for whole applications wired to the real core."""

from __future__ import annotations

import os

# No display in CI (and none needed): before anything creates the QApplication.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QSettings
from PySide6.QtWidgets import QApplication

from desktop.app import Application


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Config and state go to tmp, never to the real home."""
    monkeypatch.setenv("JWT_DESKTOP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("JWT_DESKTOP_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("JWT_DESKTOP_EXIT_WHEN_SHOWN", raising=False)
    return tmp_path


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)


MakeApp = Callable[..., Application]


@pytest.fixture
def make_app(qapp: QApplication, settings: QSettings) -> Iterator[MakeApp]:
    """``make_app(server_url=..., **kwargs)``: an :class:`Application`, started (its first window
    shown); every one is shut down at teardown, as the real ``run`` does on exit."""
    apps: list[Application] = []
    quits: list[None] = []

    def make(**kwargs: Any) -> Application:
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("quit_app", lambda: quits.append(None))
        app = Application(**kwargs)
        apps.append(app)
        app.start()
        return app

    yield make
    for app in apps:
        app.shutdown()
        for widget in (app.dialog, app._main):
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        app.deleteLater()
    apps.clear()
    # Delete now, on this (the GUI) thread: a Qt object left to Python's cyclic GC may be
    # collected on a worker thread later, in another test.
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    gc.collect()
