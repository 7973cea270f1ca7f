"""Refresh-token storage: memory, a memory keyring, the real Secret Service, broken keyrings."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator

import keyring
import keyring.backend
import pytest
from keyring.backends import fail, null
from keyring.errors import KeyringLocked

from desktop.auth.dpop import DPoPKey
from desktop.auth.errors import KeyringUnavailable, SecretTooLong
from desktop.auth.store import (
    WINDOWS_MAX_SECRET_BYTES,
    KeyringStore,
    MemoryStore,
    StorageStatus,
    StoredSession,
)
from tests.support.keyring import MemoryKeyring, SecretServiceKeyring

ISSUER = "http://127.0.0.1:8765"


def S(refresh_token: str) -> StoredSession:
    return StoredSession(refresh_token=refresh_token)


@pytest.fixture
def use_backend() -> Iterator[object]:
    """Sets a given keyring backend for the test, restoring the previous one after."""
    previous = keyring.get_keyring()

    def _use(backend: keyring.backend.KeyringBackend) -> None:
        keyring.set_keyring(backend)

    try:
        yield _use
    finally:
        keyring.set_keyring(previous)


class LockedKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("the collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("the collection is locked")


class HangingKeyring(keyring.backend.KeyringBackend):
    """Every call blocks until released (a Secret Service waiting for an unseen prompt)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    def _hang(self) -> None:
        self.calls += 1
        self.release.wait(30)

    def get_password(self, service: str, username: str) -> str | None:
        self._hang()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self._hang()

    def delete_password(self, service: str, username: str) -> None:
        self._hang()


class LeakyFailingKeyring(keyring.backend.KeyringBackend):
    """Fails with an error message quoting the secret: the store must not pass that on."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError(f"cannot store {password}")

    def delete_password(self, service: str, username: str) -> None:
        pass


def test_memory_store_round_trip_and_status() -> None:
    store = MemoryStore()
    assert store.load(ISSUER, "alice") is None
    store.save(ISSUER, "alice", S("rt-1"))
    assert store.load(ISSUER, "alice") == S("rt-1")
    assert store.load(ISSUER, "bob") is None
    assert store.load("https://other.example", "alice") is None
    store.delete(ISSUER, "alice")
    store.delete(ISSUER, "alice")  # deleting twice is fine
    assert store.load(ISSUER, "alice") is None
    status = store.status()
    assert status.persistent is False
    assert status.backend == "memory"
    assert "rt-1" not in repr(store)


def test_keyring_store_with_memory_keyring(memory_keyring: MemoryKeyring) -> None:
    store = KeyringStore(timeout=2)
    store.save(ISSUER, "alice", S("rt-alice"))
    store.save(ISSUER, "bob", S("rt-bob"))
    # Keyed by issuer and username, under the service prefix.
    assert memory_keyring.secrets[(f"jwt-desktop:{ISSUER}", "alice")] == S("rt-alice").to_json()
    assert store.load(ISSUER, "alice") == S("rt-alice")
    assert store.load("https://other.example", "alice") is None
    store.delete(ISSUER, "alice")
    store.delete(ISSUER, "alice")  # nothing stored: no error
    assert store.load(ISSUER, "alice") is None
    assert store.load(ISSUER, "bob") == S("rt-bob")
    assert store.status() == StorageStatus(persistent=True, backend=MemoryKeyring.name)
    assert "rt-bob" not in repr(store)


def test_keyring_store_with_the_real_secret_service(
    secret_service_keyring: SecretServiceKeyring,
) -> None:
    store = KeyringStore(timeout=10)
    status = store.status()
    assert status.persistent is True
    assert status.backend == "SecretService Keyring"
    assert status.reason is None
    store.save(ISSUER, "alice", S("rt-real-1"))
    try:
        assert secret_service_keyring.stored(f"jwt-desktop:{ISSUER}", "alice") == (
            S("rt-real-1").to_json()
        )
        # A second store object (as in a new process) reads it back.
        assert KeyringStore(timeout=10).load(ISSUER, "alice") == S("rt-real-1")
        store.save(ISSUER, "alice", S("rt-real-2"))
        assert store.load(ISSUER, "alice") == S("rt-real-2")
    finally:
        store.delete(ISSUER, "alice")
    assert store.load(ISSUER, "alice") is None
    assert secret_service_keyring.stored(f"jwt-desktop:{ISSUER}", "alice") is None


@pytest.mark.parametrize("backend_class", [fail.Keyring, null.Keyring])
def test_no_keyring_backends_are_reported_not_used(use_backend, backend_class: type) -> None:
    use_backend(backend_class())
    store = KeyringStore(timeout=2)
    status = store.status()
    assert status.persistent is False
    assert status.reason is not None
    assert f"{backend_class.__module__}.Keyring" in status.reason
    with pytest.raises(KeyringUnavailable, match="No OS keyring"):
        store.save(ISSUER, "alice", S("rt"))
    with pytest.raises(KeyringUnavailable):
        store.load(ISSUER, "alice")


def test_locked_keyring_is_unavailable_with_a_reason(use_backend) -> None:
    use_backend(LockedKeyring())
    store = KeyringStore(timeout=2)
    with pytest.raises(KeyringUnavailable, match="locked"):
        store.save(ISSUER, "alice", S("rt"))
    status = store.status()
    assert status.persistent is False
    assert status.reason is not None and "locked" in status.reason


def test_hanging_keyring_times_out_and_then_fails_fast(use_backend) -> None:
    hanging = HangingKeyring()
    use_backend(hanging)
    store = KeyringStore(timeout=0.3)
    try:
        started = time.monotonic()
        status = store.status()
        assert time.monotonic() - started < 3
        assert status.persistent is False
        assert status.reason is not None and "did not answer within 0.3 seconds" in status.reason
        # The keyring is tried again (it may answer now), but hung threads never pile up:
        # with two still hanging, later calls fail at once.
        with pytest.raises(KeyringUnavailable, match="did not answer"):
            store.save(ISSUER, "alice", S("rt"))
        assert hanging.calls == 2
        started = time.monotonic()
        for _ in range(5):
            with pytest.raises(KeyringUnavailable, match="did not answer"):
                store.load(ISSUER, "alice")
        assert time.monotonic() - started < 1  # no new 0.3 s wait per call
        assert hanging.calls == 2
    finally:
        hanging.release.set()


def test_a_keyring_that_stops_hanging_is_used_again(use_backend) -> None:
    hanging = HangingKeyring()
    use_backend(hanging)
    store = KeyringStore(timeout=0.3)
    with pytest.raises(KeyringUnavailable):
        store.load(ISSUER, "alice")
    hanging.release.set()  # it answers again: the store is no longer "unavailable"
    assert store.status().persistent
    assert store.load(ISSUER, "alice") is None


def test_a_failing_backend_error_text_is_not_passed_on(use_backend) -> None:
    use_backend(LeakyFailingKeyring())
    store = KeyringStore(timeout=2)
    with pytest.raises(KeyringUnavailable) as caught:
        store.save(ISSUER, "alice", S("rt-very-secret"))
    assert "rt-very-secret" not in str(caught.value)
    assert "RuntimeError" in str(caught.value)
    assert "rt-very-secret" not in (store.status().reason or "")


def test_too_long_session_is_refused_not_split(memory_keyring: MemoryKeyring) -> None:
    store = KeyringStore(timeout=2, max_secret_bytes=2560)
    # The limit applies to the whole JSON value: 2560 bytes in UTF-16 exactly.
    overhead = len(S("").to_json())
    ok = "r" * (1280 - overhead)
    store.save(ISSUER, "alice", S(ok))
    assert store.load(ISSUER, "alice") == S(ok)
    with pytest.raises(SecretTooLong, match=r"too long.*2562 bytes.*2560") as caught:
        store.save(ISSUER, "bob", S(ok + "r"))
    # Its own error: the keyring is not "unavailable", this one session does not fit.
    assert not isinstance(caught.value, KeyringUnavailable)
    # Nothing written for bob, in one entry or several; the keyring itself stays usable.
    assert [k for k in memory_keyring.secrets if k[1] != "alice"] == []
    assert store.status().persistent is True


def test_stored_session_json_round_trip_and_repr() -> None:
    session = StoredSession(
        refresh_token="rt-secret",
        access_token="at-secret",
        scope="openid",
        issued_at=1000.0,
        expires_at=1060.5,
    )
    value = session.to_json()
    assert json.loads(value) == {
        "refresh_token": "rt-secret",
        "access_token": "at-secret",
        "token_type": "Bearer",
        "scope": "openid",
        "issued_at": 1000.0,
        "expires_at": 1060.5,
    }
    assert StoredSession.from_json(value) == session
    assert "secret" not in repr(session) and "secret" not in str(session)
    # A newer version's extra field is ignored; malformed fields are dropped, not trusted.
    newer = json.loads(value) | {"later_field": "x", "expires_at": "soon", "access_token": 5}
    assert StoredSession.from_json(json.dumps(newer)) == StoredSession(
        refresh_token="rt-secret", scope="openid", issued_at=1000.0
    )


def test_a_bound_session_keeps_its_dpop_key_in_the_same_entry() -> None:
    key = DPoPKey.generate()
    session = StoredSession(refresh_token="rt", token_type="DPoP", dpop_key=key.to_json())
    value = session.to_json()
    assert json.loads(value)["dpop_key"] == key.to_json()
    restored = StoredSession.from_json(value)
    assert restored == session and restored.dpop_key is not None
    assert DPoPKey.from_json(restored.dpop_key).thumbprint == key.thumbprint
    secret = json.loads(key.to_json())["d"]
    assert secret not in repr(session) and "<redacted>" in repr(session)
    # Well under Windows' 2560-byte limit, with a long access token beside it.
    bigger = dataclasses.replace(session, access_token="a" * 900)
    assert len(bigger.to_json().encode("utf-16-le")) < WINDOWS_MAX_SECRET_BYTES


@pytest.mark.parametrize("value", ["{not json", "{}", '{"refresh_token": 42}', "[1]", " rt "])
def test_unusable_stored_values_read_as_nothing(value: str) -> None:
    assert StoredSession.from_json(value) is None


def test_an_entry_in_the_old_format_is_still_read(memory_keyring: MemoryKeyring) -> None:
    # Before the JSON value, the entry was the bare refresh token.
    memory_keyring.secrets[(f"jwt-desktop:{ISSUER}", "alice")] = "rt-old-format"
    assert KeyringStore(timeout=2).load(ISSUER, "alice") == StoredSession("rt-old-format")
