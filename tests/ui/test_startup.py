"""Start-up: the command line, the X11 check, and the first frame of a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import desktop.__main__ as entry
from desktop import config as config_module
from desktop.ui import x11check

REPO = Path(__file__).resolve().parents[2]


def _run(
    args: list[str], env: dict[str, str], code: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "desktop", *args]
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        JWT_DESKTOP_CONFIG_DIR=str(tmp_path / "config"),
        JWT_DESKTOP_DATA_DIR=str(tmp_path / "state"),
        JWT_DESKTOP_EXIT_WHEN_SHOWN="1",
    )
    env.update(extra)
    return env


def test_cold_start_shows_the_sign_in_dialog(tmp_path: Path) -> None:
    result = _run([], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "jwt-desktop: shown Sign in"


def test_cold_start_with_a_stored_session_shows_signing_in(tmp_path: Path) -> None:
    config_module.save_config(
        config_module.Config(last_username="alice"), tmp_path / "config" / "config.json"
    )
    result = _run([], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "jwt-desktop: shown Signing in… — jwt-desktop"


# What the first frame must not wait for (issue 10: the start-up ratio stays under 1.3x a bare
# window because of this): the CLI, the core and its libraries, the controller, the views, the
# theme, the sentences of failures, Qt's network module (the single-instance server listens
# after the first frame).
NOT_BEFORE_THE_FIRST_FRAME = (
    "desktop.cli",
    "desktop.auth.session",
    "desktop.auth.store",
    "desktop.auth.persistence",
    "desktop.auth.lock",
    "desktop.auth.credentials",
    "desktop.auth.messages",
    "desktop.auth.inspection",
    "desktop.ui.controller",
    "desktop.ui.tokens_view",
    "desktop.ui.sessions_view",
    "desktop.ui.profile_view",
    "desktop.ui.formatting",
    "desktop.ui.theme",
    "requests",
    "keyring",
    "jwt",
    "cryptography",
    "PySide6.QtNetwork",
)


@pytest.mark.parametrize("stored", [False, True], ids=["dialog", "signing-in"])
def test_the_first_frame_loads_only_what_it_shows(tmp_path: Path, stored: bool) -> None:
    if stored:
        config_module.save_config(
            config_module.Config(last_username="alice"), tmp_path / "config" / "config.json"
        )
    # The app quits at its first frame (JWT_DESKTOP_EXIT_WHEN_SHOWN): what is loaded then is
    # what that frame waited for.
    code = (
        "import sys, desktop.__main__ as m\n"
        "assert m.main([]) == 0\n"
        f"print(sorted(n for n in {NOT_BEFORE_THE_FIRST_FRAME!r} if n in sys.modules))\n"
        "print('desktop.ui.main_window' in sys.modules)\n"
        # PySide6 builds a type when it is first touched: the Qt namespace (its ~100 enum types,
        # tens of milliseconds) is in the module's dict only once something used it.
        "print('Qt' in vars(sys.modules['PySide6.QtCore']))\n"
        # Likewise QIcon (its ThemeIcon enum): neither first frame shows an icon.
        "print('QIcon' in vars(sys.modules['PySide6.QtGui']))\n"
    )
    result = _run([], _env(tmp_path), code)
    assert result.returncode == 0, result.stderr
    loaded, main_window, qt_namespace, qicon = result.stdout.splitlines()[-4:]
    assert loaded == "[]"
    assert main_window == str(stored)  # the main window is the first frame only when stored
    assert qt_namespace == "False"
    assert qicon == "False"


def test_garbage_collection_is_off_until_the_first_frame_then_back_on(tmp_path: Path) -> None:
    config_module.save_config(
        config_module.Config(server_url="http://127.0.0.1:9"), tmp_path / "config" / "config.json"
    )
    code = (
        "import gc\n"
        "import desktop.__main__ as m, desktop.app as app\n"
        "seen = []\n"
        "again = app._collect_garbage_again\n"
        "def after_first_frame():\n"
        "    seen.append(gc.isenabled())\n"
        "    again()\n"
        "    seen.append(gc.isenabled())\n"
        "    app.QApplication.quit()\n"
        "app._collect_garbage_again = after_first_frame\n"
        "assert m.main([]) == 0\n"
        "print(seen, gc.isenabled())\n"
    )
    env = _env(tmp_path)
    del env["JWT_DESKTOP_EXIT_WHEN_SHOWN"]  # a real start: the first frame's handlers run
    result = _run([], env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[False, True] True"


def test_a_subcommand_goes_to_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop.cli

    seen: list[list[str]] = []
    monkeypatch.setattr(desktop.cli, "main", lambda argv: seen.append(list(argv)) or 7)
    assert entry.main(["--server", "http://127.0.0.1:1", "status"]) == 7
    assert seen == [["--server", "http://127.0.0.1:1", "status"]]
    # Any word that is not an option's value is a command, known or not: the CLI judges it.
    assert entry.main(["statsu"]) == 7
    assert entry.main(["-platform", "offscreen", "--server", "http://x", "switch"]) == 7
    assert seen[1:] == [["statsu"], ["-platform", "offscreen", "--server", "http://x", "switch"]]


def test_missing_x11_libraries_are_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sys, "platform", "linux")
    missing = {"xcb-cursor", "xcb-keysyms", "EGL"}
    monkeypatch.setattr(x11check, "_present", lambda name, soname: name not in missing)
    started: list[object] = []
    import desktop.app

    monkeypatch.setattr(desktop.app, "run", lambda *a, **k: started.append(a) or 0)
    assert entry.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "sudo apt-get install libxcb-cursor0 libxcb-keysyms1 libegl1" in err
    assert started == []  # Qt was never asked to start


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({"DISPLAY": ":0"}, "linux", True),
        ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
        ({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"DISPLAY": ":0"}, "darwin", False),
        ({}, "win32", False),
    ],
)
def test_when_qt_uses_xcb(environ: dict[str, str], platform: str, expected: bool) -> None:
    assert x11check.uses_xcb(environ, platform) is expected


def test_all_libraries_present_but_no_display() -> None:
    line = x11check.check({}, present=lambda name, soname: True, platform="linux")
    assert line is not None and "DISPLAY is not set" in line
    assert x11check.check({"DISPLAY": ":1"}, present=lambda n, s: True, platform="linux") is None
