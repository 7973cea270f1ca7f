"""The "Tokens" view: what is inside the session's tokens, as the article draws a JWT.

Each token is shown as its three parts — header (red), payload (purple), signature (blue), the
colours made from the palette so they stay readable on a dark scheme — with every claim said in
words and the signature's check against the server's keys. The raw token is never on screen;
"Copy access token" is the one explicit way out, and the clipboard forgets it after a minute.
The view does no I/O: it asks with ``refreshRequested`` and is given a
:class:`desktop.auth.inspection.TokenInspection`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.auth.messages import describe_wait
from desktop.ui.confirm import Confirm, asker
from desktop.ui.naming import name_widget
from desktop.ui.plaintext import set_plain_text

if TYPE_CHECKING:
    from desktop.auth.inspection import Inspected, TokenInspection
    from desktop.ui.messages import Failure

CLIPBOARD_CLEAR_MS = 60_000
# The article's colours: header red, payload purple, signature blue (hues, in degrees).
PART_HUES = {"header": 0, "payload": 285, "signature": 205}


def part_colour(part: str, palette: QPalette) -> QColor:
    """The colour of a token part, dark on a light window and light on a dark one."""
    dark_scheme = palette.color(QPalette.ColorRole.Window).lightness() < 128
    return QColor.fromHsl(PART_HUES[part], 170, 185 if dark_scheme else 95)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class ClipboardGuard(QObject):
    """Puts a secret on the clipboard and takes it off after ``interval_ms`` — only if the
    clipboard still holds it (what the person copied since is theirs). Only a digest of the
    secret is kept meanwhile."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = CLIPBOARD_CLEAR_MS):
        super().__init__(parent)
        self._digest: bytes | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.clear)

    def copy(self, secret: str) -> None:
        QGuiApplication.clipboard().setText(secret)
        self._digest = _digest(secret)
        self.timer.start()

    def clear(self) -> None:
        """Take the secret off the clipboard now, if it is still there."""
        self.timer.stop()
        clipboard = QGuiApplication.clipboard()
        if self._digest is not None and _digest(clipboard.text()) == self._digest:
            clipboard.clear()
        self._digest = None


_confirm_copy = asker("Copy access token", "Copy")


def _pretty(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


class TokenCard(QGroupBox):
    """One token: its parts, its signature check, its claims in words."""

    def __init__(self, key: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"{key}Card")
        self.opaque_label = QLabel()
        name_widget(self.opaque_label, f"{key}Opaque", "Opaque token")
        self.opaque_label.setWordWrap(True)
        self.parts: dict[str, QLabel] = {}
        self.verification_label = QLabel()
        name_widget(self.verification_label, f"{key}Verification", "Signature check")
        self.verification_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.opaque_label)
        layout.addWidget(self.verification_label)
        for part in PART_HUES:
            label = QLabel()
            name_widget(label, f"{key}{part.title()}", f"{part.title()} of the token")
            label.setWordWrap(True)
            label.setProperty("tokenPart", part)
            self.parts[part] = label
            layout.addWidget(label)
        self.claims = QTreeWidget()
        name_widget(self.claims, f"{key}Claims", "Claims")
        self.claims.setHeaderLabels(["Claim", "Value", "Meaning"])
        self.claims.setRootIsDecorated(False)
        self.claims.setWordWrap(True)
        layout.addWidget(self.claims)
        self._colour_parts()

    def show_token(self, inspected: Inspected, now: float) -> None:
        from desktop.auth.inspection import claims

        self.setTitle(inspected.label)
        decoded = inspected.decoded
        for widget in (*self.parts.values(), self.verification_label, self.claims):
            widget.setVisible(decoded is not None)
        self.opaque_label.setVisible(decoded is None)
        self.claims.clear()
        if decoded is None:
            set_plain_text(
                self.opaque_label,
                f"This {inspected.label.lower()} is opaque: not a JWT, so there is nothing to "
                "decode. Only the server that issued it knows what it means.",
            )
            return
        set_plain_text(self.parts["header"], f"Header\n{_pretty(decoded.header)}")
        set_plain_text(self.parts["payload"], f"Payload\n{_pretty(decoded.payload)}")
        signature = decoded.encoded_signature
        set_plain_text(
            self.parts["signature"],
            f"Signature\n{signature[:16]}… ({len(decoded.signature)} bytes)",
        )
        verification = inspected.verification
        if verification is not None:
            mark = "✔" if verification.verified else "✘"
            set_plain_text(self.verification_label, f"{mark} {verification.sentence}")
            self.verification_label.setProperty("verified", verification.verified)
        for claim in claims(decoded.payload, now):
            item = QTreeWidgetItem([claim.name, claim.value, claim.meaning])
            item.setToolTip(1, claim.value)
            item.setToolTip(2, claim.meaning)
            self.claims.addTopLevelItem(item)
        for column in range(2):
            self.claims.resizeColumnToContents(column)
        self.claims.setMinimumHeight(
            min(420, 28 + self.claims.sizeHintForRow(0) * self.claims.topLevelItemCount())
        )

    def claim(self, name: str) -> str | None:
        """The shown value of a claim (tests and screen readers read the same text)."""
        for index in range(self.claims.topLevelItemCount()):
            item = self.claims.topLevelItem(index)
            if item is not None and item.text(0) == name:
                return item.text(1)
        return None

    def _colour_parts(self) -> None:
        for part, label in self.parts.items():
            palette = label.palette()
            palette.setColor(QPalette.ColorRole.WindowText, part_colour(part, self.palette()))
            label.setPalette(palette)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._colour_parts()
        super().changeEvent(event)


class TokensView(QScrollArea):
    """Signals:
    refreshRequested(): the view wants a fresh inspection (shown, or "Check again").
    """

    refreshRequested = Signal()

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        confirm: Confirm = _confirm_copy,
        clipboard_clear_ms: int = CLIPBOARD_CLEAR_MS,
    ) -> None:
        super().__init__(parent)
        name_widget(self, "tokensView", "Tokens")
        self.setWidgetResizable(True)
        self._clock = wall_clock
        self._confirm = confirm
        self._inspection: TokenInspection | None = None
        self.clipboard = ClipboardGuard(self, interval_ms=clipboard_clear_ms)
        self.status_label = QLabel("Loading the tokens…")
        name_widget(self.status_label, "tokensStatus", "Tokens status")
        self.status_label.setWordWrap(True)
        self.expiry_label = QLabel()
        name_widget(self.expiry_label, "accessExpiry", "Access token expiry")
        self.copy_button = QPushButton("&Copy access token…")
        name_widget(self.copy_button, "copyAccessToken", "Copy access token")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_access_token)
        self.check_button = QPushButton("Check &again")
        name_widget(self.check_button, "checkTokens", "Check the tokens again")
        self.check_button.clicked.connect(self.refreshRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.expiry_label, 1)
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.copy_button)
        self.access_card = TokenCard("access")
        self.id_card = TokenCard("id")
        self.access_card.hide()
        self.id_card.hide()
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        layout.addWidget(self.access_card)
        layout.addWidget(self.id_card)
        layout.addStretch(1)
        self.setWidget(page)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._update_expiry)

    @property
    def inspection(self) -> TokenInspection | None:
        return self._inspection

    def show_inspection(self, inspection: TokenInspection) -> None:
        self._inspection = inspection
        now = self._clock()
        self.access_card.show_token(inspection.access, now)
        self.access_card.show()
        if inspection.id_token is not None:
            self.id_card.show_token(inspection.id_token, now)
        self.id_card.setVisible(inspection.id_token is not None)
        set_plain_text(
            self.status_label,
            "The tokens this session holds now. The refresh token is never shown."
            + ("" if inspection.id_token else " The last token answer carried no ID token."),
        )
        self.copy_button.setEnabled(True)
        self._update_expiry()
        self._tick.start()

    def show_failure(self, failure: Failure) -> None:
        set_plain_text(self.status_label, f"The tokens could not be inspected. {failure.message}")

    def forget(self) -> None:
        """Signed out: nothing of the old session stays on screen or on the clipboard."""
        self._inspection = None
        self._tick.stop()
        self.clipboard.clear()
        self.access_card.hide()
        self.id_card.hide()
        self.copy_button.setEnabled(False)
        self.expiry_label.clear()
        set_plain_text(self.status_label, "Loading the tokens…")

    def copy_access_token(self) -> None:
        if self._inspection is None:
            return
        left = self._seconds_left()
        until = f" It expires in {describe_wait(left)}." if left is not None and left > 0 else ""
        seconds = self.clipboard.timer.interval() // 1000
        text = (
            "This puts your access token on the clipboard. Anyone who has it can act as you "
            f"at the server until it expires.{until} Paste it only where you trust. The "
            f"clipboard is cleared in {seconds} seconds if it still holds the token."
        )
        if not self._confirm(self, text):
            return
        self.clipboard.copy(self._inspection.access.token)
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(
                f"Access token copied; the clipboard is cleared in {seconds} seconds.", 8000
            )

    def _seconds_left(self) -> float | None:
        decoded = self._inspection.access.decoded if self._inspection else None
        exp = decoded.payload.get("exp") if decoded is not None else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return float(exp) - self._clock()

    def _update_expiry(self) -> None:
        left = self._seconds_left()
        if left is None:
            self.expiry_label.clear()
        elif left > 0:
            minutes, seconds = divmod(int(left), 60)
            set_plain_text(self.expiry_label, f"Access token expires in {minutes}:{seconds:02d}")
        else:
            set_plain_text(self.expiry_label, "Access token expired: the next request renews it")

    def hideEvent(self, event: Any) -> None:
        self._tick.stop()
        super().hideEvent(event)

    def showEvent(self, event: Any) -> None:
        if self._inspection is not None:
            self._update_expiry()
            self._tick.start()
        super().showEvent(event)
