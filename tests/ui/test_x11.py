"""The real app in a real X window (Xvfb), typed into with xdotool, as a person would.

Offscreen Qt has no window manager focus, so keyboard behaviour that depends on real focus
changes (which button is the default after a request disabled it) only shows here. The app runs
as its own process against a live server; the test watches the server's access log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from desktop.ui import x11check
from tests.support.requirements import require_or_skip
from tests.support.server import RunningServer, StartServer

TIMEOUT_S = 30


@pytest.fixture
def x_display() -> Iterator[str]:
    """A private Xvfb screen; yields its DISPLAY."""
    tools = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    libraries = x11check.missing_packages() if sys.platform.startswith("linux") else []
    if tools or libraries:
        require_or_skip(
            "the X11 test needs Xvfb, xdotool and Qt's X11 libraries "
            f"(Debian packages: xvfb xdotool {' '.join(libraries)})".rstrip()
        )
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as numbers:
        number = numbers.readline().strip()  # written once the server accepts connections
    try:
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def token_answers(server: RunningServer, status: str) -> int:
    return server.output().count(f'"POST /token HTTP/1.1" {status}')


def requests_to(server: RunningServer, request: str, status: str) -> int:
    return server.output().count(f'"{request} HTTP/1.1" {status}')


def test_a_person_mistypes_the_password_then_signs_in_with_enter(
    x_display: str, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    env = {
        **os.environ,
        "DISPLAY": x_display,
        "QT_QPA_PLATFORM": "xcb",
        "JWT_DESKTOP_CONFIG_DIR": str(tmp_path / "config"),
        "JWT_DESKTOP_DATA_DIR": str(tmp_path / "state"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }

    def xdotool(*args: str) -> None:
        subprocess.run(["xdotool", *args], env=env, check=True, timeout=TIMEOUT_S)

    app = subprocess.Popen(
        [sys.executable, "-m", "desktop", "--server", server.url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        xdotool("search", "--sync", "--onlyvisible", "--name", "^Sign in$", "windowfocus", "--sync")
        xdotool("type", "--delay", "20", "alice")
        xdotool("key", "Tab")
        xdotool("type", "--delay", "20", "not-the-password")
        xdotool("key", "Return")
        wait_for(lambda: token_answers(server, "400") == 1, "the refused sign-in")
        # The dialog cleared the password and put the focus back there; Enter signs in.
        xdotool("type", "--delay", "20", "wonderland")
        xdotool("key", "Return")
        wait_for(lambda: token_answers(server, "200") == 1, "the sign-in")
        xdotool(
            "search", "--sync", "--onlyvisible", "--name", "^Alice Liddell", "windowfocus", "--sync"
        )
        # The keyboard only: the Tokens tab's mnemonic checks the signature against the
        # server's keys; Ctrl+3 opens Sessions, which asks the server for its list.
        # (The sign-in itself fetched the keys once already, to validate the ID token.)
        keys = requests_to(server, "GET /.well-known/jwks.json", "200")
        xdotool("key", "alt+t")
        wait_for(
            lambda: requests_to(server, "GET /.well-known/jwks.json", "200") == keys + 1, "Tokens"
        )
        xdotool("key", "ctrl+3")
        wait_for(lambda: requests_to(server, "GET /api/sessions", "200") == 1, "Sessions")
        xdotool("key", "ctrl+2")  # the menu's shortcut for Tokens: a fresh inspection
        wait_for(
            lambda: requests_to(server, "GET /.well-known/jwks.json", "200") == keys + 2, "again"
        )
        assert app.poll() is None
    finally:
        app.terminate()
        _, errors = app.communicate(timeout=TIMEOUT_S)
    assert "Traceback" not in errors
