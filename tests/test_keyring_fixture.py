"""The real-keyring fixture itself: what one process stores, a child process reads back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.keyring import SecretServiceKeyring


def test_child_process_reads_what_the_test_stored(
    secret_service_keyring: SecretServiceKeyring,
) -> None:
    secret_service_keyring.backend.set_password("jwt-desktop-fixture", "carol", "s3cret-value")
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import keyring; print(type(keyring.get_keyring()).__module__,"
                " keyring.get_password('jwt-desktop-fixture', 'carol'))",
            ],
            env={**os.environ, **secret_service_keyring.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert child.stdout.split() == ["keyring.backends.SecretService", "s3cret-value"]
    finally:
        secret_service_keyring.backend.delete_password("jwt-desktop-fixture", "carol")
    assert secret_service_keyring.stored("jwt-desktop-fixture", "carol") is None


def test_the_fixture_locks_unlocks_and_restarts_the_real_keyring(
    faulty_keyring: SecretServiceKeyring,
) -> None:
    import keyring.errors

    backend = faulty_keyring.backend
    backend.set_password("jwt-desktop-fixture", "dave", "v1")
    faulty_keyring.lock()
    with pytest.raises(keyring.errors.KeyringLocked):
        backend.get_password("jwt-desktop-fixture", "dave")
    faulty_keyring.unlock()
    assert backend.get_password("jwt-desktop-fixture", "dave") == "v1"
    first = faulty_keyring.kill_daemon()
    with pytest.raises(keyring.errors.KeyringLocked):  # activated again, locked
        backend.get_password("jwt-desktop-fixture", "dave")
    second = faulty_keyring.daemon_pid()
    assert second is not None and second != first
    faulty_keyring.unlock()
    assert backend.get_password("jwt-desktop-fixture", "dave") == "v1"
    assert faulty_keyring.entries("jwt-desktop-fixture") == 1
    backend.delete_password("jwt-desktop-fixture", "dave")
