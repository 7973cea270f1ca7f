"""The app's resources (icon, stylesheet, desktop entry), found wherever the app is installed.

``resources/`` at the top of the checkout is the source of truth; the build maps it into the
wheel as the package ``desktop.resources`` (pyproject.toml, ``package-dir``), so a plain
``pip install .`` or ``pipx install`` carries it, and an editable install maps the same name
onto the checkout's folder. They are read through :mod:`importlib.resources`; a bare checkout
run without installing falls back to the folder next to the package.

Qt-free: the CLI's ``--install-desktop-entry`` uses it without starting a GUI.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from 3.11 on

__all__ = [
    "DESKTOP_ENTRY",
    "ICON",
    "STYLESHEET",
    "install_desktop_entry",
    "read_bytes",
    "read_text",
    "resource",
]

ICON = "jwt-desktop.svg"
STYLESHEET = "style.qss"
DESKTOP_ENTRY = "jwt-desktop.desktop"
PACKAGE = "desktop.resources"
CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "resources"


def _root() -> Traversable:
    try:
        return importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        return CHECKOUT_DIR


def resource(name: str) -> Traversable | None:
    """A resource, or None when it is missing: the app runs without its icon and stylesheet."""
    path = _root() / name
    return path if path.is_file() else None


def read_text(name: str) -> str | None:
    """A text resource's content, or None when it is missing or unreadable."""
    path = resource(name)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_bytes(name: str) -> bytes | None:
    path = resource(name)
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def data_home() -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share`` (XDG Base Directory specification)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    # The specification: a relative path in the variable is invalid and is ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".local" / "share"


def desktop_entry(exec_command: str) -> str | None:
    """The shipped desktop entry with its ``Exec`` line pointing at ``exec_command``."""
    text = read_text(DESKTOP_ENTRY)
    if text is None:
        return None
    lines = [
        f"Exec={exec_command}" if line.startswith("Exec=") else line for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


def install_desktop_entry(program: str | None = None) -> tuple[Path, Path]:
    """Write the desktop entry and the icon into the XDG folders; returns their paths.

    ``program`` defaults to the ``jwt-desktop`` script next to this interpreter (a venv's or
    pipx's ``bin``), so the menu starts this very install even when that folder is not on the
    desktop session's ``PATH``. Raises :class:`OSError` when a file cannot be written,
    :class:`FileNotFoundError` when this install lacks its resources.
    """
    entry = desktop_entry(_quoted(program or _program()))
    icon = read_bytes(ICON)
    if entry is None or icon is None:
        raise FileNotFoundError("this installation lacks its resources (icon, desktop entry)")
    home = data_home()
    entry_path = home / "applications" / DESKTOP_ENTRY
    icon_path = home / "icons" / "hicolor" / "scalable" / "apps" / ICON
    for path, data in ((entry_path, entry.encode("utf-8")), (icon_path, icon)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return entry_path, icon_path


def _program() -> str:
    import shutil
    import sys

    script = Path(sys.executable).with_name("jwt-desktop")
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    return shutil.which("jwt-desktop") or "jwt-desktop"


def _quoted(program: str) -> str:
    # The Desktop Entry specification's Exec quoting: a path with a space or a reserved
    # character goes in double quotes, with ", `, $ and \ escaped.
    if any(c in program for c in " \t\n\"'\\><~|&;$*?#()`"):
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in program)
        return f'"{escaped}"'
    return program
