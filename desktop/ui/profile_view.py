"""The profile laid out for reading, and the session panel: built when first shown.

Kept out of :mod:`desktop.ui.main_window` so that the "Signing in…" first frame does not pay
for these widgets (nor for the ``Qt`` namespace, whose enums take tens of milliseconds).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPaintEvent, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from desktop.auth import messages
from desktop.ui import formatting
from desktop.ui.naming import name_widget
from desktop.ui.plaintext import plain

if TYPE_CHECKING:
    from desktop.auth.session import SessionStatus


def _selectable(label: QLabel) -> QLabel:
    """Selectable, and plain text: what these labels show comes from the server."""
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return plain(label)


class Avatar(QWidget):
    """A round badge with the person's initials, in a colour derived from their name."""

    def __init__(self, size: int = 72, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("avatar")
        self.setFixedSize(size, size)
        self._text = "?"
        self._colour = QColor("#5b6b7f")
        self._picture: QPixmap | None = None

    def set_person(self, name: str, key: str) -> None:
        self._text = formatting.initials(name)
        # A stable colour per person, not security: md5 only spreads the hue.
        hue = int(hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()[:4], 16) % 360
        self._colour = QColor.fromHsl(hue, 110, 110)
        self.setAccessibleName(f"Avatar: {name}")
        self.update()

    def set_picture(self, data: bytes | None) -> bool:
        """Show the person's picture (image file bytes); None, or bytes that are not an
        image, bring back the initials. True when a picture is shown."""
        image = QImage.fromData(data) if data else QImage()
        if image.isNull():
            self._picture = None
        else:
            side = self.width() * self.devicePixelRatioF()
            self._picture = QPixmap.fromImage(image).scaled(
                round(side),
                round(side),
                Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                Qt.TransformationMode.SmoothTransformation,
            )
            self._picture.setDevicePixelRatio(self.devicePixelRatioF())
        self.update()
        return self._picture is not None

    def has_picture(self) -> bool:
        return self._picture is not None

    def text(self) -> str:
        return self._text

    def sizeHint(self) -> QSize:
        return self.size()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        circle = self.rect().adjusted(1, 1, -1, -1)
        if self._picture is not None:
            clip = QPainterPath()
            clip.addEllipse(circle)
            painter.setClipPath(clip)
            size = self._picture.deviceIndependentSize()
            x = (self.width() - size.width()) / 2
            y = (self.height() - size.height()) / 2
            painter.drawPixmap(round(x), round(y), self._picture)
            painter.end()
            return
        painter.setBrush(self._colour)
        painter.drawEllipse(circle)
        font = QFont(self.font())
        font.setBold(True)
        font.setPixelSize(int(self.height() * 0.38))
        painter.setFont(font)
        painter.setPen(QColor("white"))
        painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._text)
        painter.end()


class SessionPanel(QGroupBox):
    """Time left on the access token, refreshes so far, where the refresh token is kept,
    whether the tokens are bound to this device's DPoP key."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Session", parent)
        self.setObjectName("sessionPanel")
        self.countdown_bar = QProgressBar()
        name_widget(self.countdown_bar, "accessCountdown", "Time left on the access token")
        self.countdown_bar.setRange(0, 1000)
        self.countdown_bar.setFormat("No access token")
        self.refresh_label = _selectable(QLabel("Not refreshed yet"))
        name_widget(self.refresh_label, "refreshLabel", "Last refresh")
        self.storage_label = _selectable(QLabel("—"))
        name_widget(self.storage_label, "storageLabel", "Refresh token storage")
        self.storage_reason = plain(QLabel())  # the keyring's own words
        self.storage_reason.setObjectName("storageReason")
        self.storage_reason.setWordWrap(True)
        self.binding_label = _selectable(QLabel("—"))
        name_widget(self.binding_label, "bindingLabel", "Token binding")
        self.server_label = _selectable(QLabel("—"))
        name_widget(self.server_label, "sessionServerLabel", "Server")
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Access token", self.countdown_bar)
        form.addRow("Last refresh", self.refresh_label)
        # The place and the why together in one cell: a wrapped label in a row of its own gets
        # a row height the form cannot compute well.
        storage = QWidget()
        storage_layout = QVBoxLayout(storage)
        storage_layout.setContentsMargins(0, 0, 0, 0)
        storage_layout.setSpacing(2)
        storage_layout.addWidget(self.storage_label)
        storage_layout.addWidget(self.storage_reason)
        form.addRow("Refresh token", storage)
        form.addRow("Tokens", self.binding_label)
        form.addRow("Server", self.server_label)

    def show_status(self, status: SessionStatus) -> None:
        left = status.access_expires_in
        lifetime = status.access_lifetime
        if left is None or not lifetime:
            self.countdown_bar.setValue(0)
        else:
            fraction = max(0.0, min(1.0, left / lifetime))
            self.countdown_bar.setValue(round(fraction * 1000))
        self.countdown_bar.setFormat(formatting.countdown(left))
        self.countdown_bar.setProperty("expired", left is not None and left <= 0)
        self.refresh_label.setText(formatting.refresh_summary(status))
        where, why = formatting.storage_summary(status)
        self.storage_label.setText(where)
        self.storage_reason.setText(why)
        # Whether a copied token is useless (DPoP-bound) or works for anyone (Bearer).
        self.binding_label.setText(messages.token_binding(status.bound))
        self.server_label.setText(status.server_url)


class ProfileView(QWidget):
    """The profile laid out for reading: avatar, name, username, email, groups, details."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("profileView")
        self.picture_url: str | None = None
        self.avatar = Avatar()
        self.name_label = _selectable(QLabel())
        name_widget(self.name_label, "nameLabel", "Name")
        font = QFont(self.name_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.name_label.setFont(font)
        self.username_label = _selectable(QLabel())
        name_widget(self.username_label, "usernameLabel", "Username")
        self.email_label = _selectable(QLabel())
        name_widget(self.email_label, "emailLabel", "Email")
        self.groups_row = QHBoxLayout()
        self.groups_row.setSpacing(6)
        self.groups_box = QWidget()
        self.groups_box.setObjectName("groupsBox")
        self.groups_box.setAccessibleName("Groups")
        self.groups_box.setLayout(self.groups_row)
        self.groups_row.setContentsMargins(0, 4, 0, 0)

        identity = QVBoxLayout()
        identity.setSpacing(2)
        identity.addWidget(self.name_label)
        identity.addWidget(self.username_label)
        identity.addWidget(self.email_label)
        identity.addWidget(self.groups_box)
        header = QHBoxLayout()
        header.setSpacing(16)
        header.addWidget(self.avatar, 0, Qt.AlignmentFlag.AlignTop)
        header.addLayout(identity, 1)

        self.details_box = QGroupBox("Profile details")
        self.details_box.setObjectName("detailsBox")
        self.details_form = QFormLayout(self.details_box)
        self.details_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(14)
        layout.addLayout(header)
        layout.addWidget(self.details_box)

    def show_profile(self, profile: dict[str, Any]) -> None:
        name = formatting.display_name(profile)
        username = profile.get("preferred_username")
        self.avatar.set_person(name, str(profile.get("sub") or name))
        picture = profile.get("picture")
        if picture != self.picture_url:
            # Another person, or another picture: initials until the new one arrives.
            self.avatar.set_picture(None)
        self.picture_url = picture if isinstance(picture, str) else None
        self.name_label.setText(name)
        self.username_label.setText(f"@{username}" if username else "")
        self.username_label.setVisible(bool(username))
        email = profile.get("email")
        self.email_label.setText(str(email) if email else "No email address")
        while self.groups_row.count():
            item = self.groups_row.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        group_names = formatting.groups(profile)
        for group in group_names:
            chip = plain(QLabel(group))
            chip.setObjectName("groupChip")
            chip.setAccessibleName(f"Group {group}")
            self.groups_row.addWidget(chip)
        if not group_names:
            none = QLabel("No groups")
            none.setObjectName("noGroups")
            self.groups_row.addWidget(none)
        self.groups_row.addStretch(1)
        while self.details_form.rowCount():
            self.details_form.removeRow(0)
        rows = formatting.other_claims(profile)
        for label, value in rows:
            field = _selectable(QLabel(value))
            # Wrapping an identifier (a UUID, a URL) would break it at a hyphen: only prose wraps.
            field.setWordWrap(" " in value.strip())
            field.setAccessibleName(label)
            # The claim's name comes from the server too: a label of ours, not addRow(str).
            self.details_form.addRow(plain(QLabel(f"{label}:")), field)
        self.details_box.setVisible(bool(rows))

    def group_names(self) -> list[str]:
        names = []
        for index in range(self.groups_row.count()):
            item = self.groups_row.itemAt(index)
            widget = item.widget() if item is not None else None
            if isinstance(widget, QLabel) and widget.objectName() == "groupChip":
                names.append(widget.text())
        return names
