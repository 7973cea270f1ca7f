"""The avatar shows the person's picture when the profile has one, fetched without the token."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pytestqt.qtbot import QtBot

from desktop.ui.picture import PictureError, fetch_picture
from tests.ui.conftest import MakeApp
from tests.ui.fakes import ALICE, FakeClient
from tests.ui.helpers import TIMEOUT_MS, fill_and_submit, wait_for_profile

# A 2x2 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


class PictureServer:
    """Loopback HTTP: /alice.png is a PNG, /page is HTML, /moved redirects, else 404.
    Records the headers of every request."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.headers.append(dict(self.headers.items()))
                if self.path == "/alice.png":
                    body, kind, status = PNG, "image/png", 200
                elif self.path == "/page":
                    body, kind, status = b"<html></html>", "text/html", 200
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/alice.png")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    body, kind, status = b"missing", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def pictures() -> Iterator[PictureServer]:
    server = PictureServer()
    yield server
    server.close()


def test_fetch_a_picture_without_credentials(pictures: PictureServer) -> None:
    assert fetch_picture(f"{pictures.url}/alice.png") == PNG
    sent = {name.lower() for name in pictures.headers[-1]}
    assert "authorization" not in sent and "cookie" not in sent


@pytest.mark.parametrize(
    ("path", "why"),
    [("/missing", "404"), ("/page", "text/html"), ("/moved", "302")],
)
def test_what_is_not_a_picture_is_refused(pictures: PictureServer, path: str, why: str) -> None:
    with pytest.raises(PictureError, match=why):
        fetch_picture(f"{pictures.url}{path}")


def test_plain_http_off_loopback_and_huge_pictures_are_refused(pictures: PictureServer) -> None:
    with pytest.raises(PictureError, match="only loopback addresses may use http"):
        fetch_picture("http://pictures.example.org/alice.png")
    with pytest.raises(PictureError, match="too large"):
        fetch_picture(f"{pictures.url}/alice.png", max_bytes=10)


def test_the_avatar_shows_the_picture_from_the_profile(
    qtbot: QtBot, make_app: MakeApp, pictures: PictureServer
) -> None:
    client = FakeClient()
    client.sign_in_answers = [{**ALICE, "picture": f"{pictures.url}/alice.png"}]
    app = make_app(client_factory=lambda: client)
    fill_and_submit(qtbot, app, "alice", "wonderland")
    main = wait_for_profile(qtbot, app)
    avatar = main.profile_view.avatar
    qtbot.waitUntil(avatar.has_picture, timeout=TIMEOUT_MS)
    image = avatar.grab().toImage()
    centre = image.pixelColor(image.width() // 2, image.height() // 2)
    assert (centre.red(), centre.green(), centre.blue()) == (255, 0, 0)


def test_a_broken_picture_leaves_the_initials_quietly(
    qtbot: QtBot, make_app: MakeApp, pictures: PictureServer
) -> None:
    client = FakeClient()
    client.sign_in_answers = [{**ALICE, "picture": f"{pictures.url}/missing"}]
    app = make_app(client_factory=lambda: client)
    fill_and_submit(qtbot, app, "alice", "wonderland")
    main = wait_for_profile(qtbot, app)
    qtbot.waitUntil(lambda: len(pictures.headers) == 1, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not app.controller._operations, timeout=TIMEOUT_MS)
    assert not main.profile_view.avatar.has_picture()
    assert main.profile_view.avatar.text() == "AL"
    assert main.statusBar().currentMessage() == "Signed in as alice"


def test_the_picture_fetch_follows_the_core_transport_policy(
    pictures: PictureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One policy for all HTTP: loopback never through an environment proxy (this one would
    # refuse the connection).
    from tests.core.fakes import closed_port_url

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, closed_port_url())
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert fetch_picture(f"{pictures.url}/alice.png") == PNG
