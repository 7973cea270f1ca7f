"""Follow the system's light or dark scheme (Qt 6.5+ ``QStyleHints.colorScheme``).

Where the platform theme already repaints the palette when the scheme changes (GNOME, KDE,
Windows, macOS), this only keeps up with it; where it does not (a bare X11 session, the
offscreen platform) the palette is set here, so widgets and the stylesheet (which draws from
``palette(...)`` roles) follow anyway. ``JWT_DESKTOP_COLOR_SCHEME=dark|light`` forces a scheme
(for screenshots, or a person who wants the other one).

The app starts following after its first frame (``Qt.ColorScheme`` alone costs about 90 ms to
load): a platform theme that knows the scheme paints that frame dark already; a forced scheme is
applied before it.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from desktop.config import COLOR_SCHEME_ENV


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def dark_palette() -> QPalette:
    """A dark palette with every role set, so nothing keeps a light default."""
    palette = QPalette()
    role = QPalette.ColorRole
    colours = {
        role.Window: "#202124",
        role.WindowText: "#e8eaed",
        role.Base: "#17181b",
        role.AlternateBase: "#26282c",
        role.ToolTipBase: "#2d2f33",
        role.ToolTipText: "#e8eaed",
        role.PlaceholderText: "#9aa0a6",
        role.Text: "#e8eaed",
        role.Button: "#2d2f33",
        role.ButtonText: "#e8eaed",
        role.BrightText: "#ff8a80",
        role.Light: "#4a4d52",
        role.Midlight: "#3a3d42",
        role.Mid: "#5f6368",
        role.Dark: "#101113",
        role.Shadow: "#000000",
        role.Highlight: "#4c8bf5",
        role.HighlightedText: "#ffffff",
        role.Link: "#8ab4f8",
        role.LinkVisited: "#c58af9",
    }
    for colour_role, value in colours.items():
        palette.setColor(colour_role, QColor(value))
    disabled = QPalette.ColorGroup.Disabled
    for colour_role in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(disabled, colour_role, QColor("#7a7e84"))
    return palette


class SchemeFollower(QObject):
    """Applies the scheme now and whenever ``colorSchemeChanged`` says it changed."""

    def __init__(self, app: QApplication, parent: QObject | None = None) -> None:
        super().__init__(parent or app)
        self._app = app
        self._light = QPalette(app.palette())  # the platform's own, to go back to
        hints = app.styleHints()
        wanted = os.environ.get(COLOR_SCHEME_ENV, "").strip().lower()
        forced = {"dark": Qt.ColorScheme.Dark, "light": Qt.ColorScheme.Light}.get(wanted)
        if forced is not None:
            hints.setColorScheme(forced)  # Qt 6.8+: also tells the platform theme, if it can
        hints.colorSchemeChanged.connect(self.apply)
        # A platform without a scheme of its own (offscreen, bare X11) answers Unknown even
        # after setColorScheme: the forced one is applied here all the same.
        self.apply(forced or hints.colorScheme())

    def apply(self, scheme: Qt.ColorScheme) -> None:
        current = self._app.palette()
        if scheme == Qt.ColorScheme.Dark and not is_dark(current):
            self._app.setPalette(dark_palette())
        elif scheme == Qt.ColorScheme.Light and is_dark(current):
            light = self._light
            self._app.setPalette(
                light if not is_dark(light) else self._app.style().standardPalette()
            )
        else:
            return
        # The stylesheet's palette(...) colours are resolved when a widget is polished:
        # setting it again repolishes every widget with the new palette.
        self._app.setStyleSheet(self._app.styleSheet())
