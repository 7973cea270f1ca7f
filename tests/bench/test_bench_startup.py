"""Cold start: ``python -m desktop`` to the sign-in dialog on screen, against a bare PySide6
window shown by the same interpreter in the same run.

Both are fresh subprocesses (QT_QPA_PLATFORM=offscreen) that print a line once their first
window has painted; the time measured is from spawning the process to reading that line.
They alternate, N times each, and the medians are compared. Target (issue 10, with the Tokens
and Sessions views loaded lazily): ratio <= 1.3 to the dialog.

Both run with the bytecode an installed app has (pip compiles every module at install time, a
checkout writes ``__pycache__`` on its first run): a private bytecode cache for both processes,
filled by the warm-up runs, so an environment that forbids writing bytecode
(``PYTHONDONTWRITEBYTECODE``) does not make every run recompile the app's source, a cost no
user pays. ``JWT_BENCH_KEEP_BYTECODE_ENV=1`` keeps the inherited environment as it is instead.

Run: python -m pytest tests/bench/test_bench_startup.py -s -p no:cacheprovider
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop import config as config_module

pytestmark = pytest.mark.bench

RUNS = 15
TARGET = 1.3
AS_INSTALLED = os.environ.get("JWT_BENCH_KEEP_BYTECODE_ENV") != "1"
REPO = Path(__file__).resolve().parents[2]

BARE_WINDOW = """
import sys
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget

class FirstPaint(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.Paint:
            print("bare: shown", flush=True)
            QTimer.singleShot(0, QApplication.quit)
        return False

app = QApplication(sys.argv)
window = QWidget()
window.setWindowTitle("bare")
window.resize(440, 260)
first_paint = FirstPaint()
window.installEventFilter(first_paint)
window.show()
app.exec()
"""


def _time_to_line(command: list[str], env: dict[str, str], expected: str) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    with process.stdout:
        line = process.stdout.readline()
        elapsed = time.perf_counter() - started
    process.wait(timeout=60)
    assert line.strip() == expected, line
    return elapsed


def _measure(app_env: dict[str, str], expected: str) -> tuple[float, float]:
    bare_env = {**app_env}
    app_times: list[float] = []
    bare_times: list[float] = []
    # One warm-up of each, so both start with the same warm OS file cache.
    _time_to_line([sys.executable, "-c", BARE_WINDOW], bare_env, "bare: shown")
    _time_to_line([sys.executable, "-m", "desktop"], app_env, expected)
    for _ in range(RUNS):
        bare_times.append(
            _time_to_line([sys.executable, "-c", BARE_WINDOW], bare_env, "bare: shown")
        )
        app_times.append(_time_to_line([sys.executable, "-m", "desktop"], app_env, expected))
    return statistics.median(app_times), statistics.median(bare_times)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "JWT_DESKTOP_CONFIG_DIR": str(tmp_path / "config"),
        "JWT_DESKTOP_DATA_DIR": str(tmp_path / "state"),
        "JWT_DESKTOP_EXIT_WHEN_SHOWN": "1",
    }
    if AS_INSTALLED:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
    return env


def _verdict(ratio: float) -> str:
    bytecode = "as installed" if AS_INSTALLED else "as the environment says"
    met = "met" if ratio <= TARGET else "MISSED"
    return f"ratio {ratio:.2f} (target <= {TARGET}: {met}; bytecode {bytecode})"


def test_cold_start_to_the_sign_in_dialog(tmp_path: Path) -> None:
    app, bare = _measure(_env(tmp_path), "jwt-desktop: shown Sign in")
    ratio = app / bare
    print(
        f"\ncold start to the sign-in dialog: {app * 1000:.0f} ms (median of {RUNS}); "
        f"bare PySide6 window: {bare * 1000:.0f} ms; {_verdict(ratio)}"
    )
    assert ratio <= TARGET


def test_cold_start_with_a_stored_session_to_signing_in(tmp_path: Path) -> None:
    # With a stored session the first frame is the main window's "Signing in…" state.
    config_module.save_config(
        config_module.Config(last_username="alice"), tmp_path / "config" / "config.json"
    )
    app, bare = _measure(_env(tmp_path), "jwt-desktop: shown Signing in… — jwt-desktop")
    ratio = app / bare
    print(
        f"\ncold start to 'Signing in…' (stored session): {app * 1000:.0f} ms; "
        f"bare PySide6 window: {bare * 1000:.0f} ms; {_verdict(ratio)}"
    )
    # A main window (menus, status bar, stacked pages) costs more than a dialog; the issue's
    # target is for the dialog, this one is watched with some slack for a busy machine (it was
    # 1.5-1.7 before the first frame stopped loading the Qt namespace and the rest).
    assert ratio <= TARGET + 0.15
