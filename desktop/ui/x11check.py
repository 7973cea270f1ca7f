"""Before Qt starts on X11: name the missing system libraries instead of Qt's abort.

PySide6's ``xcb`` platform plugin aborts with a long, confusing message when a library such as
``libxcb-cursor.so.0`` is missing (a fresh Debian/Ubuntu lacks several). This module is Qt-free
and runs before ``QApplication`` is created.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

# library name (as ctypes.util.find_library spells it), its soname, the Debian package.
XCB_LIBRARIES: tuple[tuple[str, str, str], ...] = (
    ("xcb-cursor", "libxcb-cursor.so.0", "libxcb-cursor0"),
    ("xcb-icccm", "libxcb-icccm.so.4", "libxcb-icccm4"),
    ("xcb-keysyms", "libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("xcb-image", "libxcb-image.so.0", "libxcb-image0"),
    ("xcb-render-util", "libxcb-render-util.so.0", "libxcb-render-util0"),
    ("xkbcommon-x11", "libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("EGL", "libEGL.so.1", "libegl1"),
)


def _present(name: str, soname: str) -> bool:
    import ctypes
    import ctypes.util

    # Loading the exact soname is fast and honours LD_LIBRARY_PATH; find_library (which runs
    # ldconfig) confirms a miss, for systems that only ship an unversioned name.
    try:
        ctypes.CDLL(soname)
    except OSError:
        return ctypes.util.find_library(name) is not None
    return True


def uses_xcb(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """True when Qt is going to use its X11 (xcb) platform plugin."""
    if not platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":")[0].split(";")[0] == "xcb"
    # Unset: Qt prefers Wayland in a Wayland session, and xcb otherwise.
    return not environ.get("WAYLAND_DISPLAY")


def missing_packages(present: Callable[[str, str], bool] | None = None) -> list[str]:
    """The Debian packages whose libraries the xcb plugin needs and cannot find."""
    found = present or _present
    return [package for name, soname, package in XCB_LIBRARIES if not found(name, soname)]


def check(
    environ: Mapping[str, str] | None = None,
    *,
    present: Callable[[str, str], bool] | None = None,
    platform: str = sys.platform,
) -> str | None:
    """One line explaining what to install, or None when Qt can start."""
    environ = os.environ if environ is None else environ
    if not uses_xcb(environ, platform):
        return None
    packages = missing_packages(present)
    if packages:
        return (
            "jwt-desktop: Qt's X11 support needs system libraries that are missing; install "
            f"them with: sudo apt-get install {' '.join(packages)}"
        )
    if not environ.get("DISPLAY"):
        return (
            "jwt-desktop: no X11 display (DISPLAY is not set); run it in a desktop session, "
            "or use a subcommand (jwt-desktop login|status|profile|logout) without one."
        )
    return None
