"""``jwt-desktop --demo``: run the bundled mock server in the background for the app.

Qt-free on purpose, so it can be tested on its own. :class:`DemoServer` reuses a server that
already answers ``GET /healthz`` at the demo address; otherwise it starts
``python -m mock_server`` with a persistent demo database, a short access-token lifetime (so
refreshes are visible) and ``--dpop required`` (so the demo's tokens are DPoP-bound), waits for
its ``listening on`` line, and stops it again on :meth:`DemoServer.stop` only if it started it.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

DEMO_HOST = "127.0.0.1"
DEMO_PORT = 8765
DEMO_ACCESS_TTL = "60s"
DEMO_USERNAME = "alice"
DEMO_PASSWORD = "wonderland"  # noqa: S105 - the published demo account of the mock server
_LISTENING = re.compile(r"jwt-mock-server listening on (http://\S+)")


class DemoServerError(Exception):
    """The demo server could not be started; ``str(error)`` is a sentence for a person."""


def server_answers(url: str, *, timeout: float = 0.5) -> bool:
    """True when ``url`` answers ``GET /healthz`` with 200.

    Through the client's transport policy (loopback: never via an environment proxy; no
    redirect). Only called from the controller's worker, where the core is loaded anyway.
    """
    from desktop.auth.errors import AuthError
    from desktop.auth.transport import Transport

    try:
        with Transport(timeout=timeout) as transport:
            response = transport.request("GET", f"{url}/healthz", what="The demo server URL")
            with response:
                return response.status_code == 200
    except AuthError:
        return False


class DemoServer:
    """The bundled mock server for demo mode. Thread-safe: :meth:`ensure` may run in a worker.

    ``port=0`` lets the server pick a free port (tests); the address is then read from the
    server's ``listening on`` line.
    """

    def __init__(
        self,
        *,
        db: Path,
        port: int = DEMO_PORT,
        access_ttl: str = DEMO_ACCESS_TTL,
        launcher: Sequence[str] = (sys.executable, "-m", "mock_server"),
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self._db = db
        self._port = port
        self._access_ttl = access_ttl
        self._launcher = tuple(launcher)
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._url: str | None = None
        # Recent output, to explain a failed start; the server never prints secrets.
        self._output: collections.deque[str] = collections.deque(maxlen=20)
        self._listening = threading.Event()

    @property
    def url(self) -> str | None:
        """The server's base URL once :meth:`ensure` succeeded."""
        return self._url

    @property
    def started(self) -> bool:
        """True when this object started the server (and so will stop it)."""
        return self._process is not None

    def ensure(self) -> str:
        """Return the URL of a running demo server, starting one if nothing answers."""
        with self._lock:
            if self._url is not None:
                return self._url
            if self._port != 0:
                url = f"http://{DEMO_HOST}:{self._port}"
                if server_answers(url):
                    self._url = url
                    return url
            self._url = self._start()
            return self._url

    def _start(self) -> str:
        self._db.parent.mkdir(parents=True, exist_ok=True)
        command = [
            *self._launcher,
            "--port",
            str(self._port),
            "--db",
            str(self._db),
            "--access-ttl",
            self._access_ttl,
            # Tokens bound to the app's key (RFC 9449): a copied token is useless.
            "--dpop",
            "required",
            *self._extra_args,
        ]
        try:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except OSError as error:
            raise DemoServerError(f"Could not start the demo server: {error.strerror}.") from None
        self._process = process
        found: list[str] = []
        # The reader drains the pipe for the server's whole life: a full pipe would block it.
        self._reader = threading.Thread(
            target=self._read_output, args=(process, found), name="demo-server-output", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._listening.wait(timeout=0.05):
            if process.poll() is not None:
                self._reader.join(timeout=5)
                detail = " | ".join(self._output) or "no output"
                self._cleanup()
                raise DemoServerError(
                    f"The demo server exited (status {process.returncode}) before it was "
                    f"ready: {detail}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DemoServerError(
                    f"The demo server did not report that it was listening within "
                    f"{self._startup_timeout:g} seconds."
                )
        return found[0]

    def _read_output(self, process: subprocess.Popen[str], found: list[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._output.append(line.rstrip())
            if not self._listening.is_set():
                match = _LISTENING.search(line)
                if match:
                    found.append(match.group(1).rstrip("/"))
                    self._listening.set()

    def stop(self) -> None:
        """Stop the server if this object started it; a reused server is left running."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        process = self._process
        if process is None:
            return
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        self._process = None
        self._url = None
