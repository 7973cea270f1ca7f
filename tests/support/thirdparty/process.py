"""A third-party server as a subprocess on loopback: start, wait for its ready line, stop."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

START_TIMEOUT = 90.0


class ServerProcess:
    """Runs ``args`` and waits until a line matches ``ready`` (group 1 is the URL).

    Output (stdout and stderr) is drained all the time, kept for failure messages, and never
    parsed beyond the ready line. ``started_in`` is the measured start-up time in seconds.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        ready: re.Pattern[str],
        cwd: Path,
        env: Mapping[str, str],
    ) -> None:
        self.name = name
        self._ready_pattern = ready
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._url: str | None = None
        began = time.monotonic()
        self._process = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=cwd,
            env=dict(env),
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self._url is None:
            self.stop()
            raise RuntimeError(f"{name} did not start:\n{self.output()}")
        self.started_in = time.monotonic() - began

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with self._lock:
                self._lines.append(line)
            match = self._ready_pattern.match(line.strip())
            if match and self._url is None:
                self._url = match.group(1)
                self._ready.set()
        self._ready.set()  # EOF: the process ended; wake a waiting start

    @property
    def url(self) -> str:
        """The base URL, no trailing slash."""
        assert self._url is not None
        return self._url

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL; idempotent."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._reader.join(timeout)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __repr__(self) -> str:
        return f"ServerProcess({self.name!r}, url={self._url!r})"
