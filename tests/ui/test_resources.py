"""resources/: the icon, the .desktop entry and the stylesheet are usable, and optional."""

from __future__ import annotations

import configparser
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtGui import QIcon, QPalette
from pytestqt.qtbot import QtBot

import desktop.app
from desktop.ui.messages import ErrorKind, Failure
from desktop.ui.sign_in_dialog import SignInDialog

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def test_the_desktop_entry_starts_the_app_with_its_icon() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(RESOURCES / "jwt-desktop.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"] == "jwt-desktop"
    assert section["Terminal"] == "false"
    assert (RESOURCES / f"{section['Icon']}.svg").is_file()


def test_the_icon_is_an_svg_qt_can_draw(qapp: object) -> None:
    root = ET.parse(RESOURCES / "jwt-desktop.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    icon = QIcon(str(RESOURCES / "jwt-desktop.svg"))
    assert not icon.isNull()
    assert not icon.pixmap(64, 64).isNull()


def test_the_stylesheet_applies(qtbot: QtBot) -> None:
    dialog = SignInDialog("http://127.0.0.1:8765")
    qtbot.addWidget(dialog)
    dialog.setStyleSheet(desktop.app.load_stylesheet())
    dialog.show()
    dialog.show_error(Failure(ErrorKind.CREDENTIALS, "Wrong username or password."))
    dialog.error_label.ensurePolished()
    # Qt's style sheet parser skips what it cannot read without a word: look at the result.
    # The error's tint over the palette (readable on light and dark alike), its text the
    # palette's own.
    tint = dialog.error_label.palette().color(QPalette.ColorRole.Window)
    assert (tint.red(), tint.green(), tint.blue()) == (220, 53, 69) and tint.alpha() < 255
    text = dialog.error_label.palette().color(QPalette.ColorRole.WindowText)
    assert text == dialog.palette().color(QPalette.ColorRole.WindowText)


def test_the_app_runs_without_its_resources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import desktop.assets

    monkeypatch.setattr(desktop.assets, "_root", lambda: tmp_path)
    assert desktop.assets.resource("jwt-desktop.svg") is None
    assert desktop.app.load_icon() is None
    assert desktop.app.load_stylesheet() == ""
