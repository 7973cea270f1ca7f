"""The browser robot behaves as ``$BROWSER`` for Python's ``webbrowser`` and stays on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from desktop.auth.errors import AuthorizationDenied
from desktop.auth.loopback import LoopbackReceiver, new_pkce
from tests.support.browser import Person, RobotBrowser, install, parse_forms, play
from tests.support.thirdparty import DotServer


def test_webbrowser_runs_the_robot_which_returns_at_once(
    dot_server: DotServer, tmp_path: Path
) -> None:
    env = {**os.environ, **install(tmp_path, username="bob", password="builder")}
    _, challenge = new_pkce()
    with LoopbackReceiver(state="st", issuer=dot_server.issuer) as listener:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": dot_server.client_id,
                "redirect_uri": listener.redirect_uri,
                "scope": "openid",
                "state": "st",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        url = f"{dot_server.issuer}/authorize/?{query}"
        # webbrowser waits for $BROWSER to exit; the robot detaches, so this returns before
        # the redirect arrives (the listener is served in a thread either way).
        opened = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, webbrowser; sys.exit(not webbrowser.open(sys.argv[1]))",
                url,
            ],
            env=env,
            timeout=30,
            check=False,
        )
        assert opened.returncode == 0
        answer = listener.wait(30)  # the state is checked there
    log = _wait_for_line(tmp_path / "browser.log", "done: the redirect answered 200")
    assert "builder" not in log
    assert answer.code not in log


def _wait_for_line(path: Path, text: str, timeout: float = 30.0) -> str:
    """The detached robot logs its last line after the listener got the redirect."""
    deadline = time.monotonic() + timeout
    while text not in (log := path.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    return log


def test_never_leaves_loopback(tmp_path: Path) -> None:
    outcome = play(
        "https://example.org/authorize?code=secret", Person(), log_path=str(tmp_path / "l")
    )
    assert outcome.status == "blocked"
    assert "secret" not in (tmp_path / "l").read_text()


def test_buttons_outside_their_form_belong_to_it() -> None:
    forms, title = parse_forms(
        '<title>Confirm</title><form id="f" method="post" action="/x">'
        '<input type="hidden" name="xsrf" value="t"></form>'
        '<button type="submit" form="f">Continue</button>'
        '<button type="submit" form="f" name="abort" value="yes">Abort</button>'
    )
    assert title == "Confirm"
    assert [(f.name, f.value, f.kind) for f in forms[0].fields] == [
        ("xsrf", "t", "hidden"),
        ("", "", "submit"),
        ("abort", "yes", "submit"),
    ]
    assert [b.label for b in forms[0].submits] == ["Continue", "Abort"]


class _SignInPage(BaseHTTPRequestHandler):
    """The shape of the bundled server's page: username, password, a hidden csrf_token and
    allow/deny buttons on one form; the answer redirects to the client's loopback URI."""

    posted: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        body = (
            b'<!DOCTYPE html><title>Sign in</title><form method="post" action="/authorize">'
            b'<input type="hidden" name="csrf_token" value="tok">'
            b'<input name="username"><input type="password" name="password">'
            b'<button type="submit" name="decision" value="allow">Sign in and allow</button>'
            b'<button type="submit" name="decision" value="deny">Deny</button></form>'
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        form["origin"] = self.headers.get("Origin", "")
        self.posted.append(form)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.headers["Referer"]).query))
        result = "code=c" if form["decision"] == "allow" else "error=access_denied"
        self.send_response(302)
        self.send_header("Location", f"{query['redirect_uri']}?{result}&state=s")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_a_combined_sign_in_and_consent_page(decision: str) -> None:
    _SignInPage.posted.clear()
    server = HTTPServer(("127.0.0.1", 0), _SignInPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_port}"
    try:
        with LoopbackReceiver(state="s", issuer=origin) as listener:
            query = urllib.parse.urlencode({"redirect_uri": listener.redirect_uri, "state": "s"})
            outcome = play(f"{origin}/authorize?{query}", Person("bob", "builder", decision))
            try:
                answered: object = listener.wait(10)
            except AuthorizationDenied as error:
                answered = error
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.status == "done"
    assert _SignInPage.posted == [
        {
            "csrf_token": "tok",
            "username": "bob",
            "password": "builder",
            "decision": decision,
            "origin": origin,
        }
    ]
    assert isinstance(answered, AuthorizationDenied) == (decision == "deny")


def test_the_fixture_makes_webbrowser_in_this_process_use_the_robot(
    dot_server: DotServer, browser_robot: RobotBrowser
) -> None:
    import webbrowser

    browser_robot.configure("bob", "builder", "deny")
    _, challenge = new_pkce()
    with LoopbackReceiver(state="st", issuer=dot_server.issuer) as listener:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": dot_server.client_id,
                "redirect_uri": listener.redirect_uri,
                "scope": "openid",
                "state": "st",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        assert webbrowser.open(f"{dot_server.issuer}/authorize/?{query}")
        with pytest.raises(AuthorizationDenied) as denied:
            listener.wait(30)
    assert denied.value.error == "access_denied", browser_robot.log()
