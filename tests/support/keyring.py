"""Keyring fixtures: an in-memory backend for unit tests, and the real Secret Service.

The real one is gnome-keyring in a private D-Bus session that the fixture starts and stops, so
tests exercise exactly what a Linux desktop does, without touching the developer's own keyring.

Faults, as a desktop produces them (:class:`SecretServiceKeyring`):

* ``lock()``: ``org.freedesktop.Secret.Service.Lock`` on the login collection (what a screen
  lock or an idle timeout does). Reads and writes then fail with ``KeyringLocked``: the
  Secret Service asks for a prompt, and there is no prompter on this bus.
* ``unlock()``: the standard ``Unlock`` needs that prompt, so this uses gnome-keyring's own
  ``org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface.UnlockWithMasterPassword`` with
  the collection's password (what the PAM module does at login).
* ``kill_daemon()``: SIGKILL to the process owning ``org.freedesktop.secrets``. The bus has one
  activation file, for gnome-keyring, so the next call starts it again (as on a desktop); it
  comes back with the collection locked, so a test unlocks it when it wants it usable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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

    @property
    def address(self) -> str:
        return self.env["DBUS_SESSION_BUS_ADDRESS"]

    def stored(self, service: str, username: str) -> str | None:
        """What the real keyring holds for (service, username), read through the backend."""
        return self.backend.get_password(service, username)

    def entries(self, service: str) -> int:
        """How many secrets the collection holds under ``service`` (unlocked collection)."""
        import secretstorage

        connection = secretstorage.dbus_init()
        try:
            collection = secretstorage.get_default_collection(connection)
            return len(list(collection.search_items({"service": service})))
        finally:
            connection.close()

    def lock(self) -> None:
        _call_secrets(self.address, "org.freedesktop.Secret.Service", "Lock", "ao", ([_LOGIN],))
        assert self.is_locked()

    def unlock(self) -> None:
        self.wait_for_daemon()
        _unlock(self.address)
        assert not self.is_locked()

    def is_locked(self) -> bool:
        reply = _call_secrets(
            self.address,
            "org.freedesktop.DBus.Properties",
            "Get",
            "ss",
            ("org.freedesktop.Secret.Collection", "Locked"),
            path=_LOGIN,
        )
        return bool(reply[0][1])

    def daemon_pid(self) -> int | None:
        result = subprocess.run(
            [
                "dbus-send",
                f"--bus={self.address}",
                "--print-reply=literal",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetConnectionUnixProcessID",
                "string:org.freedesktop.secrets",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        words = result.stdout.split()
        return int(words[-1]) if result.returncode == 0 and words else None

    def kill_daemon(self) -> int:
        """SIGKILL the running daemon and wait until its name is free; returns its pid."""
        pid = self.daemon_pid()
        assert pid is not None, "no gnome-keyring-daemon on the bus"
        os.kill(pid, signal.SIGKILL)
        for process in self._processes:
            if process.pid == pid:
                process.wait(timeout=10)  # ours: reap it
        deadline = time.monotonic() + 10
        while _has_owner(self.address, "org.freedesktop.secrets"):
            assert time.monotonic() < deadline, "the killed daemon still owns its name"
            time.sleep(0.02)
        return pid

    def wait_for_daemon(self) -> None:
        """Start the daemon by D-Bus activation if it is not running, and wait for it."""
        subprocess.run(
            [
                "dbus-send",
                f"--bus={self.address}",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.StartServiceByName",
                "string:org.freedesktop.secrets",
                "uint32:0",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        deadline = time.monotonic() + 30
        while not _has_owner(self.address, "org.freedesktop.secrets"):
            assert time.monotonic() < deadline, "gnome-keyring-daemon was not activated"
            time.sleep(0.05)

    def restore(self) -> None:
        """Running and unlocked again (after a test that locked or killed it)."""
        self.wait_for_daemon()
        if self.is_locked():
            self.unlock()

    def stop(self) -> None:
        pid = self.daemon_pid()  # an activated daemon is not among our processes
        if pid is not None and all(p.pid != pid for p in self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
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


# A session bus whose only service directory is ours, with one activation file: gnome-keyring's
# secrets component. The daemon is started by hand first (with the password, so the collection
# is unlocked); activation only starts it again after a test killed it. The system's own service
# directories are left out: they would activate other services on this bus.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={socket_dir}</listen>
  <servicedir>{service_dir}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


_SERVICE_FILE = """[D-BUS Service]
Name=org.freedesktop.secrets
Exec={daemon} --start --foreground --components=secrets
"""
_PASSWORD = b"test-keyring-password"
_LOGIN = "/org/freedesktop/secrets/collection/login"


def _call_secrets(
    address: str,
    interface: str,
    method: str,
    signature: str,
    body: tuple[object, ...],
    *,
    path: str = "/org/freedesktop/secrets",
) -> tuple[object, ...]:
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    target = DBusAddress(path, bus_name="org.freedesktop.secrets", interface=interface)
    with open_dbus_connection(bus=address) as connection:
        reply = connection.send_and_get_reply(
            new_method_call(target, method, signature, body), timeout=30
        )
    if reply.header.message_type is MessageType.error:
        raise RuntimeError(f"{interface}.{method} failed: {reply.body}")
    return tuple(reply.body)


def _unlock(address: str) -> None:
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    service = DBusAddress(
        "/org/freedesktop/secrets",
        bus_name="org.freedesktop.secrets",
        interface="org.freedesktop.Secret.Service",
    )
    guilt = DBusAddress(
        "/org/freedesktop/secrets",
        bus_name="org.freedesktop.secrets",
        interface="org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
    )
    with open_dbus_connection(bus=address) as connection:
        opened = connection.send_and_get_reply(
            new_method_call(service, "OpenSession", "sv", ("plain", ("s", ""))), timeout=30
        )
        session = opened.body[1]
        secret = (session, b"", _PASSWORD, "text/plain")
        reply = connection.send_and_get_reply(
            new_method_call(guilt, "UnlockWithMasterPassword", "o(oayays)", (_LOGIN, secret)),
            timeout=30,
        )
    if reply.header.message_type is MessageType.error:
        raise RuntimeError(f"unlocking the keyring failed: {reply.body}")


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
    runtime, data, services = root / "runtime", root / "data", root / "services"
    runtime.mkdir(mode=0o700)
    data.mkdir()
    services.mkdir()
    daemon_path = shutil.which("gnome-keyring-daemon")
    (services / "org.freedesktop.secrets.service").write_text(
        _SERVICE_FILE.format(daemon=daemon_path)
    )
    config = root / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket_dir=runtime, service_dir=services))
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
    daemon.stdin.write(_PASSWORD)
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
def faulty_keyring(
    secret_service_keyring: SecretServiceKeyring,
) -> Iterator[SecretServiceKeyring]:
    """The real keyring, for a test that locks it or kills its daemon: running and unlocked
    again afterwards, whatever the test left."""
    secret_service_keyring.restore()
    try:
        yield secret_service_keyring
    finally:
        secret_service_keyring.restore()


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
