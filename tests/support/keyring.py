"""Keyring fixtures: an in-memory backend for unit tests, and the real Secret Service.

The real one is gnome-keyring in a private D-Bus session that the fixture starts and stops, so
tests exercise exactly what a Linux desktop does, without touching the developer's own keyring.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keyring
import keyring.backend
import pytest
from keyring.backends import SecretService
from keyring.errors import PasswordDeleteError

from tests.support.requirements import require_or_skip


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that keeps secrets in a dict: for tests that are not about the OS keyring."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


@dataclass
class SecretServiceKeyring:
    """A running gnome-keyring reachable on a private session bus.

    ``env`` holds what a child process needs to use the same keyring
    (``DBUS_SESSION_BUS_ADDRESS`` and ``PYTHON_KEYRING_BACKEND``).
    """

    backend: keyring.backend.KeyringBackend
    env: dict[str, str]
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def stored(self, service: str, username: str) -> str | None:
        """What the real keyring holds for (service, username), read through the backend."""
        return self.backend.get_password(service, username)

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


# A session bus with no service directories: nothing can be D-Bus-activated, so the only
# Secret Service on it is the daemon we start (the system's activation file would race it with a
# second gnome-keyring, which is slow and flaky).
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={socket_dir}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _has_owner(address: str, name: str) -> bool:
    # dbus-send in a child process: polling through Python D-Bus clients leaks sockets on failure.
    result = subprocess.run(
        [
            "dbus-send",
            f"--bus={address}",
            "--print-reply=literal",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            f"string:{name}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout.split()[-1:] == ["true"]


def _start_secret_service(root: Path) -> SecretServiceKeyring:
    missing = [
        tool
        for tool in ("dbus-daemon", "dbus-send", "gnome-keyring-daemon")
        if not shutil.which(tool)
    ]
    if missing:
        require_or_skip(
            f"the real keyring tests need {', '.join(missing)} "
            "(Debian packages: dbus gnome-keyring)"
        )
    runtime, data = root / "runtime", root / "data"
    runtime.mkdir(mode=0o700)
    data.mkdir()
    config = root / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket_dir=runtime))
    base_env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "XDG_DATA_HOME": str(data)}
    processes: list[subprocess.Popen[bytes]] = []
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        env=base_env,
    )
    processes.append(bus)
    assert bus.stdout is not None
    address = bus.stdout.readline().decode().strip()
    if not address:
        SecretServiceKeyring(backend=MemoryKeyring(), env={}, _processes=processes).stop()
        raise RuntimeError("dbus-daemon printed no address")
    env = {"DBUS_SESSION_BUS_ADDRESS": address}
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**base_env, **env},
    )
    processes.append(daemon)
    assert daemon.stdin is not None
    # The password of the fresh "login" keyring, which --unlock creates and unlocks.
    daemon.stdin.write(b"test-keyring-password")
    daemon.stdin.close()
    service = SecretServiceKeyring(
        backend=SecretService.Keyring(),
        env={**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"},
        _processes=processes,
    )
    deadline = time.monotonic() + 30
    while not _has_owner(address, "org.freedesktop.secrets"):
        if time.monotonic() > deadline or daemon.poll() is not None:
            service.stop()
            raise RuntimeError("gnome-keyring-daemon did not claim org.freedesktop.secrets")
        time.sleep(0.05)
    return service


@pytest.fixture(scope="session")
def _secret_service_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SecretServiceKeyring]:
    service = _start_secret_service(tmp_path_factory.mktemp("secret-service"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def secret_service_keyring(
    _secret_service_session: SecretServiceKeyring, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretServiceKeyring]:
    """The real Secret Service keyring, set as the ``keyring`` backend for this test."""
    for name, value in _secret_service_session.env.items():
        monkeypatch.setenv(name, value)
    previous = keyring.get_keyring()
    keyring.set_keyring(_secret_service_session.backend)
    try:
        yield _secret_service_session
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    """An in-memory ``keyring`` backend set for this test."""
    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def refresh_token_of(value: str) -> str:
    """The refresh token in a stored session's keyring value (JSON, or a bare token)."""
    import json

    return str(json.loads(value)["refresh_token"]) if value.startswith("{") else value
