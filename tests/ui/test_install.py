"""Installs whole: a wheel built from the checkout, installed into a fresh venv, finds its icon
and stylesheet through the app's own functions, and installs its desktop entry."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from desktop import assets

REPO = Path(__file__).resolve().parents[2]

LOAD_RESOURCES = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import desktop, desktop.assets
from PySide6.QtWidgets import QApplication
from desktop.app import load_icon, load_stylesheet
app = QApplication([])
icon = load_icon()
print(desktop.__file__)
print(desktop.assets.resource("style.qss"))
print(bool(load_stylesheet()), icon is not None and not icon.pixmap(32, 32).isNull())
"""


def _entry(path: Path) -> configparser.SectionProxy:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(path, encoding="utf-8")
    return entry["Desktop Entry"]


def test_install_desktop_entry_writes_the_xdg_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    entry_path, icon_path = assets.install_desktop_entry("/opt/my apps/jwt-desktop")
    assert entry_path == tmp_path / "data" / "applications" / "jwt-desktop.desktop"
    assert icon_path == tmp_path / "data/icons/hicolor/scalable/apps/jwt-desktop.svg"
    section = _entry(entry_path)
    assert section["Exec"] == '"/opt/my apps/jwt-desktop"'
    assert section["Icon"] == "jwt-desktop"
    assert icon_path.read_bytes() == (REPO / "resources" / "jwt-desktop.svg").read_bytes()
    # A relative $XDG_DATA_HOME is invalid (XDG Base Directory): ~/.local/share instead.
    monkeypatch.setenv("XDG_DATA_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.data_home() == tmp_path / "home" / ".local" / "share"


def test_a_wheel_installed_in_a_fresh_venv_finds_its_resources(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("jwt_desktop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for resource in ("jwt-desktop.svg", "style.qss", "jwt-desktop.desktop"):
        assert f"desktop/resources/{resource}" in names
    # Every module of the checkout is in it (the packages are listed in pyproject.toml).
    for package in ("desktop", "mock_server"):
        for module in (REPO / package).rglob("*.py"):
            assert module.relative_to(REPO).as_posix() in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The dependencies come from this venv (a plain path line: none of its .pth files, so
    # not this checkout's editable install); the project itself only from the wheel.
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    done = subprocess.run(
        [str(python), "-c", LOAD_RESOURCES],
        cwd=tmp_path,  # not the checkout: its desktop/ must not be found
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    package, stylesheet, loaded = done.stdout.splitlines()
    assert Path(package).is_relative_to(site)
    assert Path(stylesheet).is_relative_to(site)
    assert loaded == "True True"

    done = subprocess.run(
        [str(venv / "bin" / "jwt-desktop"), "--install-desktop-entry"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    entry_path = tmp_path / "data" / "applications" / "jwt-desktop.desktop"
    icon_path = tmp_path / "data" / "icons" / "hicolor" / "scalable" / "apps" / "jwt-desktop.svg"
    assert done.stdout == f"Installed the desktop entry {entry_path}\nand its icon {icon_path}.\n"
    assert _entry(entry_path)["Exec"] == str(venv / "bin" / "jwt-desktop")
    assert icon_path.is_file()
