"""Light and dark: the app follows the system's scheme, at start and when it changes, and the
stylesheet draws from the palette (nothing hard-coded that would vanish on dark)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

import desktop.app
from desktop.config import COLOR_SCHEME_ENV
from desktop.ui.theme import SchemeFollower, is_dark
from desktop.ui.tokens_view import TokenCard, part_colour

STYLESHEET = Path(desktop.app.__file__).resolve().parent.parent / "resources" / "style.qss"


@pytest.fixture
def restored_palette(qapp: QApplication) -> Iterator[QApplication]:
    """Whatever a test does to the application's scheme is undone for the next one."""
    palette, sheet = QPalette(qapp.palette()), qapp.styleSheet()
    scheme = qapp.styleHints().colorScheme()
    yield qapp
    qapp.styleHints().unsetColorScheme()
    if scheme != Qt.ColorScheme.Unknown:
        qapp.styleHints().setColorScheme(scheme)
    qapp.setPalette(palette)
    qapp.setStyleSheet(sheet)


def test_dark_scheme_is_applied_to_widgets_and_switched_at_run_time(
    qtbot: QtBot, restored_palette: QApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = restored_palette
    monkeypatch.setenv(COLOR_SCHEME_ENV, "dark")
    app.setStyleSheet(desktop.app.load_stylesheet())
    SchemeFollower(app)
    label = QLabel("Alice")
    qtbot.addWidget(label)
    label.show()
    assert is_dark(label.palette())
    text = label.palette().color(QPalette.ColorRole.WindowText)
    assert text.lightness() > 160  # light text on the dark window: readable

    # The system switches to light while the app runs: the signal Qt emits then.
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not is_dark(label.palette())
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert is_dark(label.palette())


def test_the_token_parts_stay_readable_on_both_schemes(
    qtbot: QtBot, restored_palette: QApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = restored_palette
    monkeypatch.setenv(COLOR_SCHEME_ENV, "light")
    follower = SchemeFollower(app)
    card = TokenCard("access")
    qtbot.addWidget(card)
    light_header = card.parts["header"].palette().color(QPalette.ColorRole.WindowText)
    assert light_header.lightness() < 128 and light_header.hue() in range(0, 15)

    follower.apply(Qt.ColorScheme.Dark)
    QApplication.processEvents()  # the palette change reaches the card
    dark_header = card.parts["header"].palette().color(QPalette.ColorRole.WindowText)
    assert dark_header.lightness() > 128
    for part, hue in (("payload", 285), ("signature", 205)):
        colour = card.parts[part].palette().color(QPalette.ColorRole.WindowText)
        assert colour == part_colour(part, card.palette())
        assert abs(colour.hue() - hue) <= 2


def test_the_stylesheet_has_no_opaque_colour_of_its_own() -> None:
    """Colours come from palette(...) roles, or are translucent tints over them."""
    sheet = re.sub(r"/\*.*?\*/", "", STYLESHEET.read_text(encoding="utf-8"), flags=re.S)
    assert not re.search(r"#[0-9a-fA-F]{3,8}\b", sheet)
    assert not re.search(r"\brgb\(", sheet)
    for alpha in re.findall(r"rgba\([^)]*,\s*([0-9.]+)\)", sheet):
        assert float(alpha) < 0.7  # a tint: the palette shows through
    assert "palette(" in sheet
