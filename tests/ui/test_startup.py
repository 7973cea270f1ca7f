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


def test_the_gui_path_never_imports_the_cli_nor_the_core_before_the_first_frame(
    tmp_path: Path,
) -> None:
    code = (
        "import sys, desktop.__main__ as m\n"
        "assert m.main([]) == 0\n"
        "print(sorted(n for n in ('desktop.cli', 'desktop.auth.session', 'requests', 'jwt')"
        " if n in sys.modules))\n"
    )
    result = _run([], _env(tmp_path), code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


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
