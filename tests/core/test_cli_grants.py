"""``jwt-desktop login --browser`` and ``login --device`` against the live bundled server, the
automatic choice of ``login`` without a flag, and Ctrl-C during a device wait (a real process:
the printed line must be flushed while the command still waits)."""

from __future__ import annotations

import functools
import io
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from desktop import cli
from desktop.auth import grants, messages
from desktop.auth.oauth import ServerMetadata
from desktop.cli import choose_method, main
from tests.support.browser import RobotBrowser, play_device
from tests.support.keyring import MemoryKeyring
from tests.support.server import REPO_ROOT, RunningServer, StartServer

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def server(start_server: StartServer) -> RunningServer:
    return start_server()


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_login_browser(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    browser_robot: RobotBrowser,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    code, out, err = _run(["--server", server.url, "login", "--browser"], monkeypatch, capsys)
    assert (code, err) == (0, ""), out
    first, *rest = out.splitlines()
    assert first.startswith("Continue in your browser. If no browser opened, open this address:")
    assert f"{server.url}/authorize?" in first
    assert f"Signed in to {server.url} as Alice Liddell." in rest
    assert "stored in the OS keyring" in out
    # The stored session serves the next command (named from the validated ID token).
    code, out, _ = _run(["--server", server.url, "status"], monkeypatch, capsys)
    assert code == 0 and "as alice" in out


def test_login_device(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    printed: list[str] = []

    def person(cancel: threading.Event, seconds: float) -> bool:
        # By the first wait the line is out: the person reads it and approves elsewhere.
        line = capsys.readouterr().out
        printed.append(line)
        complete = line.split("(or open ", 1)[1].split(")", 1)[0]
        assert play_device(complete).status == "done"
        server.advance_clock(seconds)  # instead of sleeping through the interval
        return False

    monkeypatch.setattr(
        grants, "DeviceCodeGrant", functools.partial(grants.DeviceCodeGrant, wait=person)
    )
    code, out, err = _run(["--server", server.url, "login", "--device"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    (line,) = printed
    assert line.startswith(f"To sign in, open {server.url}/device and enter the code ")
    assert line.count("\n") == 1
    assert f"Signed in to {server.url} as Alice Liddell." in out


def test_login_device_denied_ends_with_a_sentence(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    from tests.support.browser import Person

    def person(cancel: threading.Event, seconds: float) -> bool:
        line = capsys.readouterr().out
        complete = line.split("(or open ", 1)[1].split(")", 1)[0]
        assert play_device(complete, person=Person(decision="deny")).status == "done"
        server.advance_clock(seconds)
        return False

    monkeypatch.setattr(
        grants, "DeviceCodeGrant", functools.partial(grants.DeviceCodeGrant, wait=person)
    )
    code, _, err = _run(["--server", server.url, "login", "--device"], monkeypatch, capsys)
    assert code == 1
    assert err == f"jwt-desktop: error: {messages.DEVICE_DENIED}\n"


def test_login_device_prints_a_flushed_line_and_ctrl_c_cancels(
    server: RunningServer, tmp_path: Any
) -> None:
    env = {
        **os.environ,
        "JWT_DESKTOP_CONFIG_DIR": str(tmp_path / "config"),
        "JWT_DESKTOP_DATA_DIR": str(tmp_path / "data"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "PYTHONPATH": str(REPO_ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop", "--server", server.url, "login", "--device"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        # A pipe, not a terminal: the line arrives only because it is flushed.
        line = process.stdout.readline()
        assert line.startswith(f"To sign in, open {server.url}/device and enter the code ")
        assert "(or open " in line
        assert process.poll() is None  # still waiting for the approval
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert err == f"jwt-desktop: error: {messages.CANCELLED}\n"
    assert "Traceback" not in err and out == ""
    assert time.monotonic() - started < 5  # the wait ended at once, not at the next poll


def test_browser_and_password_options_do_not_mix(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    code, _, err = _run(
        ["--server", "http://127.0.0.1:9", "login", "--browser", "--username", "alice"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "password sign-in only" in err
    code, _, err = _run(["login", "--browser", "--device"], monkeypatch, capsys)
    assert code == 2 and "not allowed with argument" in err


def _metadata(**fields: Any) -> ServerMetadata:
    return ServerMetadata(
        issuer="https://id.example", token_endpoint="https://id.example/token", **fields
    )


BROWSER = {"authorization_endpoint": "https://id.example/authorize"}
DEVICE_ENDPOINT = {"device_authorization_endpoint": "https://id.example/device"}


@pytest.mark.parametrize(
    ("fields", "browser", "expected"),
    [
        # The bundled server lists the password grant: the password, as always.
        (
            {
                "grant_types_supported": ("password", "authorization_code", DEVICE),
                **BROWSER,
                **DEVICE_ENDPOINT,
            },
            True,
            "password",
        ),
        # A third party without it: the browser where one can be opened...
        (
            {"grant_types_supported": ("authorization_code", DEVICE), **BROWSER, **DEVICE_ENDPOINT},
            True,
            "browser",
        ),
        # ... else the device grant.
        (
            {"grant_types_supported": ("authorization_code", DEVICE), **BROWSER, **DEVICE_ENDPOINT},
            False,
            "device",
        ),
        # No list: RFC 8414's default (authorization_code) stands.
        ({**BROWSER}, True, "browser"),
        # Only the browser, but no browser here: the browser all the same (its error says why).
        ({"grant_types_supported": ("authorization_code",), **BROWSER}, False, "browser"),
        ({"grant_types_supported": (DEVICE,), **DEVICE_ENDPOINT}, True, "device"),
    ],
)
def test_login_without_a_flag_follows_the_server(
    fields: dict[str, Any], browser: bool, expected: str
) -> None:
    assert choose_method(_metadata(**fields), browser=browser) == expected


def test_sign_in_methods_for_the_dialog() -> None:
    both = _metadata(
        grant_types_supported=("password", "authorization_code", DEVICE),
        **BROWSER,
        **DEVICE_ENDPOINT,
    )
    assert grants.sign_in_methods(both) == grants.SignInMethods(True, True, False)
    third_party = _metadata(grant_types_supported=("authorization_code", DEVICE), **BROWSER)
    assert grants.sign_in_methods(third_party) == grants.SignInMethods(False, True, False)
    device_only = _metadata(grant_types_supported=(DEVICE,), **DEVICE_ENDPOINT)
    assert grants.sign_in_methods(device_only) == grants.SignInMethods(False, False, True)
    # Nothing usable listed: the password fields, so the server's refusal is what is read.
    assert grants.sign_in_methods(_metadata(grant_types_supported=("client_credentials",))) == (
        grants.SignInMethods(True, False, False)
    )
