"""The browser robot behaves as ``$BROWSER`` for Python's ``webbrowser`` and stays on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from tests.support.browser import Person, install, parse_forms, play
from tests.support.loopback import CallbackListener, pkce_pair
from tests.support.thirdparty import DotServer


def test_webbrowser_runs_the_robot_which_returns_at_once(
    dot_server: DotServer, tmp_path: Path
) -> None:
    env = {**os.environ, **install(tmp_path, username="bob", password="builder")}
    _, challenge = pkce_pair()
    with CallbackListener() as listener:
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
        assert listener.received.wait(30), (tmp_path / "browser.log").read_text()
    assert listener.query is not None
    assert listener.query["state"] == "st"
    assert "code" in listener.query
    log = _wait_for_line(tmp_path / "browser.log", "done: the redirect answered 200")
    assert "builder" not in log
    assert listener.query["code"] not in log


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
