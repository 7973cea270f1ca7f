"""Text from the server is shown literally: markup in a claim or an error never renders.

A QLabel in its default AutoText mode would turn ``<a href=…>`` into a link in our window and
load ``<img src=…>``; every label that shows someone else's text is plain text. The server here
is a scripted one on loopback (the bundled server never sends markup), talked to by the real
core through the real application.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot

from desktop.auth.session import SessionStatus
from desktop.auth.store import StorageStatus
from desktop.ui.main_window import Banner
from desktop.ui.profile_view import SessionPanel
from desktop.ui.sign_in_dialog import SignInDialog
from tests.core.fakes import FakeOIDCServer, Reply
from tests.support.keyring import MemoryKeyring
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, fill_and_submit, sign_in

LINK = '<a href="https://evil.example/">Re-enter your password here</a>'
IMAGE = '<img src="https://evil.example/pixel.png">'

HOSTILE_PROFILE = {
    "sub": "u1",
    "name": LINK,
    "preferred_username": "<b>alice</b>",
    "email": IMAGE,
    "groups": ["<i>admin</i>"],
    "nickname": LINK,
    "<u>claim</u>": IMAGE,
}


@pytest.fixture
def scripted_server() -> Iterator[FakeOIDCServer]:
    server = FakeOIDCServer()
    try:
        yield server
    finally:
        server.close()


def _labels_showing_markup(widget: QWidget) -> list[QLabel]:
    return [label for label in widget.findChildren(QLabel) if "<" in label.text()]


def test_profile_claims_with_html_are_shown_literally(
    qtbot: QtBot,
    make_app: MakeApp,
    scripted_server: FakeOIDCServer,
    memory_keyring: MemoryKeyring,
) -> None:
    scripted_server.routes["/userinfo"] = lambda seen: Reply.json(200, HOSTILE_PROFILE)
    app = make_app(server_url=scripted_server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    view = main.profile_view

    assert view.name_label.text() == LINK
    assert view.name_label.textFormat() == Qt.TextFormat.PlainText
    assert view.username_label.text() == "@<b>alice</b>"
    assert view.email_label.text() == IMAGE
    assert view.group_names() == ["<i>admin</i>"]
    # Every label with markup in it, claim names and values included, shows it as plain text.
    shown = _labels_showing_markup(view)
    texts = {label.text() for label in shown}
    assert {LINK, IMAGE, "@<b>alice</b>", "<i>admin</i>"} <= texts
    assert any("claim" in text and text.endswith(":") for text in texts)  # the claim's name
    assert [label.text() for label in shown if label.textFormat() != Qt.TextFormat.PlainText] == []
    # Plain text has no link to follow.
    assert not view.name_label.openExternalLinks()


def test_a_sign_in_error_with_html_is_shown_literally(
    qtbot: QtBot,
    make_app: MakeApp,
    scripted_server: FakeOIDCServer,
    memory_keyring: MemoryKeyring,
) -> None:
    scripted_server.routes["/token"] = lambda seen: Reply.json(
        400, {"error": "unauthorized_client", "error_description": LINK}
    )
    app = make_app(server_url=scripted_server.url)
    fill_and_submit(qtbot, app, "alice", "wonderland")
    error = app.dialog.error_label
    qtbot.waitUntil(error.isVisible, timeout=TIMEOUT_MS)
    assert "Re-enter your password here</a>" in error.text()
    assert error.textFormat() == Qt.TextFormat.PlainText


def test_dialog_notice_and_keyring_reason_are_plain(qtbot: QtBot) -> None:
    dialog = SignInDialog("http://127.0.0.1:9", demo_credentials=("alice", "wonderland"))
    qtbot.addWidget(dialog)
    dialog.show_notice(f"Your session ended: {LINK}")
    assert dialog.notice_label.text() == f"Your session ended: {LINK}"
    assert dialog.notice_label.textFormat() == Qt.TextFormat.PlainText
    dialog.set_storage(StorageStatus(persistent=False, backend="fail Keyring", reason=IMAGE))
    assert IMAGE in dialog.remember_reason.text()
    assert dialog.remember_reason.textFormat() == Qt.TextFormat.PlainText
    # Our own fixed sentence keeps its bold credentials.
    assert dialog.demo_label.textFormat() == Qt.TextFormat.AutoText
    assert "<b>alice</b>" in dialog.demo_label.text()


def test_banner_and_session_panel_are_plain(qtbot: QtBot) -> None:
    banner = Banner(clock=lambda: 0.0)
    qtbot.addWidget(banner)
    banner.report(LINK)
    assert banner.label.text().startswith(LINK)
    assert banner.label.textFormat() == Qt.TextFormat.PlainText

    panel = SessionPanel()
    qtbot.addWidget(panel)
    storage = StorageStatus(persistent=False, backend="fail Keyring", reason=LINK)
    panel.show_status(
        SessionStatus(
            signed_in=True,
            username="alice",
            server_url="http://127.0.0.1:9",
            access_expires_in=30.0,
            access_lifetime=60.0,
            refresh_count=1,
            last_refreshed=datetime.now(timezone.utc),
            storage=storage,
            remembered=False,
        )
    )
    assert LINK in panel.storage_reason.text()
    assert panel.storage_reason.textFormat() == Qt.TextFormat.PlainText
