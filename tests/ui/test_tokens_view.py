"""The Tokens view: what the server issued, decoded and checked, and the clipboard's minute.

Live tests sign in against the bundled server and compare what the view shows with the token
the server issued (read from the keyring entry, not from the view's own source). The
signature checks use the server's real JWKS; the forged tokens are signed here.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QTreeWidget, QWidget
from pytestqt.qtbot import QtBot

from desktop.auth import inspection
from desktop.auth.inspection import Inspected, TokenInspection
from desktop.ui.confirm import asker
from desktop.ui.main_window import MainWindow
from desktop.ui.tokens_view import CLIPBOARD_CLEAR_MS, TokenCard, TokensView
from tests.support.keyring import MemoryKeyring
from tests.support.server import RunningServer, StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import TIMEOUT_MS, settled, sign_in


def _stored(secrets: dict[tuple[str, str], str], url: str, user: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(secrets[(f"jwt-desktop:{url}", user)])
    return value


def _jwks(server: RunningServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.url}/.well-known/jwks.json", timeout=30) as answer:
        document: dict[str, Any] = json.loads(answer.read())
        return document


def _open_tokens(qtbot: QtBot, main: MainWindow) -> TokensView:
    main.show_tab(1)
    view = main.tokens_view
    qtbot.waitUntil(lambda: view.inspection is not None, timeout=TIMEOUT_MS)
    return view


def _texts(widget: TokensView) -> str:
    """Every text the view shows: labels and every claim cell."""
    parts = [label.text() for label in widget.findChildren(QLabel)]
    for tree in widget.findChildren(QTreeWidget):
        for row in range(tree.topLevelItemCount()):
            item = tree.topLevelItem(row)
            assert item is not None
            parts += [item.text(column) for column in range(tree.columnCount())]
    return "\n".join(parts)


def test_the_inspector_shows_the_claims_of_the_token_the_server_issued(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    stored = _stored(memory_keyring.secrets, server.url, "alice")
    issued = jwt.decode(stored["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(stored["access_token"])

    view = _open_tokens(qtbot, main)
    card = view.access_card
    assert card.title() == "Access token"
    for name in ("iss", "sub", "jti", "client_id", "scope"):
        assert card.claim(name) == issued[name], name
    assert card.claim("groups") == ", ".join(issued["groups"])
    assert card.claim("aud") in (issued["aud"], ", ".join(issued["aud"]))
    expiry = card.claim("exp")
    assert expiry is not None and time.strftime("%Y-%m-%d", time.localtime(issued["exp"])) in expiry
    assert "in " in expiry  # a countdown, in words
    assert view.expiry_label.text().startswith("Access token expires in ")
    # Header, payload, signature: the decoded parts, never the raw token.
    assert json.loads(card.parts["header"].text().split("\n", 1)[1]) == header
    assert json.loads(card.parts["payload"].text().split("\n", 1)[1]) == issued
    assert card.parts["signature"].text().startswith("Signature\n")
    assert card.verification_label.text() == f"✔ Signed by key {header['kid']} (RS256), verified."
    shown = _texts(view)
    assert stored["access_token"] not in shown
    assert stored["refresh_token"] not in shown
    # The password grant with openid: an ID token, decoded and verified too.
    assert view.id_card.isVisible()
    assert view.id_card.claim("sub") == issued["sub"]
    assert view.id_card.verification_label.text().startswith("✔ Signed by key ")


def test_the_inspector_updates_after_a_refresh(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(access_ttl="50s")
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    view = _open_tokens(qtbot, main)
    first_jti, first_exp = view.access_card.claim("jti"), view.access_card.claim("exp")

    # Past the access token, within the 60 s a DPoP proof's iat (the app's real clock) may lag.
    server.advance_clock(55)
    main.reload_button.click()
    qtbot.waitUntil(lambda: view.access_card.claim("jti") != first_jti, timeout=TIMEOUT_MS)
    stored = _stored(memory_keyring.secrets, server.url, "alice")
    renewed = jwt.decode(stored["access_token"], options={"verify_signature": False})
    assert view.access_card.claim("jti") == renewed["jti"]
    assert view.access_card.claim("exp") != first_exp


def _forged(key: Any, kid: str, alg: str = "RS256") -> str:
    claims = {"iss": "http://127.0.0.1", "sub": "mallory", "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_a_token_signed_by_a_key_not_in_the_jwks_fails_visibly(
    qtbot: QtBot, start_server: StartServer
) -> None:
    server = start_server()
    jwks = _jwks(server)
    real_kid = jwks["keys"][0]["kid"]
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    card = TokenCard("access")
    qtbot.addWidget(card)

    cases = {
        _forged(rogue, "rogue-key"): "names key 'rogue-key', which the server does not publish",
        # The server's kid, someone else's key: the signature itself does not match.
        _forged(rogue, real_kid): f"the signature does not match key {real_kid!r}",
        # An algorithm the server does not use is refused before any key is looked at.
        _forged(b"a-shared-secret-of-32-bytes-long!", real_kid, "HS256"): "'HS256' is not one",
    }
    for token, why in cases.items():
        inspected = inspection.inspect("Access token", token, lambda: jwks, ["RS256"])
        card.show_token(inspected, time.time())
        assert inspected.verification is not None and not inspected.verification.verified
        assert card.verification_label.text().startswith("✘ Not verified: ")
        assert why in card.verification_label.text()
        assert card.claim("sub") == "mallory"  # decoded all the same, so it can be seen


def test_an_opaque_access_token_is_said_to_be_opaque(qtbot: QtBot) -> None:
    card = TokenCard("access")
    qtbot.addWidget(card)
    card.show()

    def no_jwks() -> dict[str, Any]:
        raise AssertionError("an opaque token needs no key set")

    card.show_token(inspection.inspect("Access token", "2YotnFZFEjr1zCsicMWpAA", no_jwks, None), 0)
    assert card.opaque_label.isVisible()
    assert "opaque: not a JWT" in card.opaque_label.text()
    assert not card.claims.isVisible() and card.claims.topLevelItemCount() == 0


def _view_with_token(qtbot: QtBot, token: str, answers: list[bool]) -> TokensView:
    asked: list[str] = []

    def confirm(parent: object, text: str) -> bool:
        asked.append(text)
        return answers.pop(0)

    view = TokensView(confirm=confirm)
    qtbot.addWidget(view)
    access = Inspected("Access token", token, inspection.decode(token), None)
    view.show_inspection(TokenInspection(access, None))
    view.asked = asked  # type: ignore[attr-defined]
    return view


def test_copy_warns_then_the_clipboard_is_cleared_after_the_interval(qtbot: QtBot) -> None:
    token = "opaque-access-token-0123456789"
    view = _view_with_token(qtbot, token, [False, True])
    clipboard = QGuiApplication.clipboard()
    clipboard.setText("before")

    view.copy_button.click()  # the warning, answered Cancel: nothing copied
    assert clipboard.text() == "before"
    view.copy_button.click()
    warning = view.asked[-1]  # type: ignore[attr-defined]
    assert "Anyone who has it can act as you" in warning and "60 seconds" in warning
    assert clipboard.text() == token
    assert view.clipboard.timer.isActive()
    assert view.clipboard.timer.interval() == CLIPBOARD_CLEAR_MS == 60_000

    view.clipboard.timer.timeout.emit()  # the minute has passed
    assert clipboard.text() == ""


def test_the_clipboard_is_not_cleared_when_it_changed_meanwhile(qtbot: QtBot) -> None:
    token = "opaque-access-token-0123456789"
    view = _view_with_token(qtbot, token, [True])
    clipboard = QGuiApplication.clipboard()
    view.copy_button.click()
    assert clipboard.text() == token

    clipboard.setText("something the person copied since")
    view.clipboard.timer.timeout.emit()
    assert clipboard.text() == "something the person copied since"


def test_the_refresh_token_is_never_in_an_inspection(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    with settled(qtbot, app, "tokens"):
        main.show_tab(1)
    shown = main.tokens_view.inspection
    assert shown is not None
    refresh = _stored(memory_keyring.secrets, server.url, "alice")["refresh_token"]
    assert refresh not in repr(shown)
    assert all(refresh != getattr(shown, name) for name in ("access", "id_token"))
    assert shown.access.token != refresh
    assert "eyJ" not in repr(shown)  # repr names the parts, never the token


def test_the_warning_defaults_to_cancel_and_only_its_button_accepts(qtbot: QtBot) -> None:
    ask = asker("Copy access token", "Copy")
    parent = QWidget()
    qtbot.addWidget(parent)
    seen: list[str] = []

    def press(key_or_button: str) -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        default = box.defaultButton()
        assert default is not None
        seen.append(default.text())
        if key_or_button == "Return":
            qtbot.keyClick(box, Qt.Key.Key_Return)
        else:
            next(b for b in box.buttons() if b.text() == key_or_button).click()

    QTimer.singleShot(0, lambda: press("Return"))
    assert ask(parent, "This puts your access token on the clipboard.") is False
    QTimer.singleShot(0, lambda: press("Copy"))
    assert ask(parent, "This puts your access token on the clipboard.") is True
    assert seen == ["Cancel", "Cancel"]
