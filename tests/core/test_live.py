"""The core against the real bundled server (a subprocess, real HTTP on a free loopback port).

Time moves by hand: the client's monotonic clock is a FakeClock, the server's is advanced
through its test-only endpoint, so tokens expire without sleeping.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import keyring.backend
import pytest
import requests
from keyring.backends import fail

from desktop.auth.dpop import DPoPKey
from desktop.auth.errors import AccessDenied, KeyringUnavailable, NotSignedIn, SessionEnded
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import Revocation
from desktop.auth.session import AuthClient
from desktop.auth.store import (
    KeyringStore,
    MemoryStore,
    StorageStatus,
    StoredSession,
    TokenStore,
    WriteBackStore,
)
from tests.core.fakes import FakeClock, counting_session
from tests.support.keyring import MemoryKeyring, SecretServiceKeyring, refresh_token_of
from tests.support.server import RunningServer

ALICE, ALICE_PW = "alice", "wonderland"


class Client:
    """An AuthClient with a counting transport, a fake clock and a private lock dir."""

    def __init__(self, server: RunningServer, store: TokenStore, tmp: Any, **kw: Any) -> None:
        self.http, self.adapter = counting_session()
        self.clock = kw.pop("clock", None) or FakeClock()
        kw.setdefault("wall_clock", server.wall_clock)  # DPoP proofs' iat follow the server
        self.auth = AuthClient(
            server.url,
            store=store,
            http=self.http,
            clock=self.clock,
            lock_dir=tmp / "locks",
            timeout=10,
            **kw,
        )

    def close(self) -> None:
        self.auth.close()
        self.http.close()


@pytest.fixture
def server(start_server: Any) -> RunningServer:
    return start_server(access_ttl="60s")


@pytest.fixture
def make_client(tmp_path: Any) -> Iterator[Any]:
    clients: list[Client] = []

    def make(server: RunningServer, store: TokenStore | None = None, **kw: Any) -> Client:
        client = Client(server, store or MemoryStore(), tmp_path, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _family(server: RunningServer, username: str = ALICE) -> dict[str, Any]:
    with sqlite3.connect(server.db) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT * FROM families WHERE username = ? ORDER BY created_at DESC LIMIT 1",
            (username,),
        ).fetchone()
    assert row is not None
    return dict(row)


def _raw_refresh(server: RunningServer, entry: str) -> requests.Response:
    """Redeem the refresh token of a stolen keyring entry the way a thief would: with a proof
    of the entry's DPoP key (a bound session's tokens are useless without it)."""
    stored = StoredSession.from_json(entry)
    assert stored is not None
    token_url = f"{server.url}/token"
    headers = {}
    if stored.dpop_key is not None:
        key = DPoPKey.from_json(stored.dpop_key, clock=server.wall_clock)
        headers["DPoP"] = key.proof("POST", token_url)
    return requests.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": stored.refresh_token,
            "client_id": "jwt-desktop",
        },
        headers=headers,
        timeout=10,
    )


KEY = "jwt-desktop:{url}"


def test_sign_in_profile_and_status(server: RunningServer, make_client: Any) -> None:
    client = make_client(server)
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    assert result.profile_error is None and result.status == client.auth.status()
    profile = result.profile
    assert profile is not None and profile["preferred_username"] == ALICE
    assert "admin" in profile["groups"]
    status = client.auth.status()
    assert status.signed_in and status.username == ALICE
    assert status.server_url == server.url
    assert status.access_lifetime == 60
    assert status.access_expires_in == 60
    assert status.refresh_count == 0
    assert status.remembered is False
    assert status.storage.persistent is False
    # A memory store could not have kept it anyway: its own reason, not "you chose".
    assert status.storage.reason == MemoryStore().status().reason
    client.clock.advance(10)
    assert client.auth.status().access_expires_in == 50


def test_wrong_password_is_invalid_credentials(server: RunningServer, make_client: Any) -> None:
    from desktop.auth.errors import InvalidCredentials

    client = make_client(server)
    with pytest.raises(InvalidCredentials, match="username or password is incorrect"):
        client.auth.sign_in(PasswordGrant(ALICE, "not-the-password"), remember=False)
    assert not client.auth.status().signed_in


def test_proactive_refresh_before_expiry(server: RunningServer, make_client: Any) -> None:
    client = make_client(server)
    refreshed: list[None] = []
    client.auth.on_refreshed.append(lambda: refreshed.append(None))
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    client.clock.advance(29)  # 31 s left: outside the 30 s leeway
    client.auth.profile()
    assert client.adapter.grants("refresh_token") == 0
    client.clock.advance(2)  # 29 s left: inside the leeway, still valid at the server
    client.auth.profile()
    assert client.adapter.grants("refresh_token") == 1
    # Refreshed before sending: the server never had to refuse a token.
    assert all(status != 401 for *_, status in client.adapter.log)
    assert refreshed == [None]
    status = client.auth.status()
    assert status.refresh_count == 1
    assert status.access_expires_in == 60
    assert status.last_refreshed is not None


def test_401_invalid_token_refreshes_once_and_resends(
    server: RunningServer, make_client: Any
) -> None:
    client = make_client(server)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    # Only the server's clock moves: the client believes its token is fresh, the server does not.
    server.advance_clock(120)
    profile = client.auth.profile()
    assert profile["preferred_username"] == ALICE
    calls = [
        (m, p, g, s)
        for m, p, g, s in client.adapter.log
        if p != "/.well-known/openid-configuration"
    ]
    assert calls[-3:] == [
        ("GET", "/userinfo", None, 401),
        ("POST", "/token", "refresh_token", 200),
        ("GET", "/userinfo", None, 200),
    ]
    assert client.auth.status().refresh_count == 1


class RecordingStore:
    """A TokenStore wrapper that logs saves into the transport's log, to check ordering."""

    def __init__(self, inner: TokenStore, log: list[Any]) -> None:
        self.inner, self.log = inner, log

    def load(self, issuer: str, username: str) -> str | None:
        return self.inner.load(issuer, username)

    def save(self, issuer: str, username: str, refresh_token: str) -> None:
        self.inner.save(issuer, username, refresh_token)
        self.log.append(("save",))

    def delete(self, issuer: str, username: str) -> None:
        self.inner.delete(issuer, username)
        self.log.append(("delete",))

    def status(self) -> StorageStatus:
        return self.inner.status()


def test_rotation_is_stored_before_the_new_access_token_is_used(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    client = make_client(server)
    store = RecordingStore(KeyringStore(timeout=5), client.adapter.log)
    client.auth._storage.store = WriteBackStore(store)  # type: ignore[arg-type]  # the same client, its store wrapped to record the order
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    key = (KEY.format(url=server.url), ALICE)
    first_entry = memory_keyring.secrets[key]
    first = refresh_token_of(first_entry)
    client.clock.advance(45)
    client.auth.profile()
    second = refresh_token_of(memory_keyring.secrets[key])
    assert second != first
    log = client.adapter.log
    refresh_at = next(i for i, e in enumerate(log) if e[2:3] == ("refresh_token",))
    assert log[refresh_at + 1] == ("save",)
    assert log[refresh_at + 2][:2] == ("GET", "/userinfo")
    # The old one is spent: presenting it again is reuse, and the server ends the family.
    with _raw_refresh(server, first_entry) as answer:
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_grant"


def test_restore_from_the_stored_token_without_a_password(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    first = make_client(server, KeyringStore(timeout=5))
    first.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    assert first.auth.status().remembered is True
    # A new client, as after a restart: same keyring, no password, and within the access
    # token's life no refresh either (the stored access token is reused).
    second = make_client(server, KeyringStore(timeout=5))
    profile = second.auth.restore(ALICE)
    assert profile is not None and profile["preferred_username"] == ALICE
    assert second.adapter.grants("password") == 0
    assert second.adapter.grants("refresh_token") == 0
    status = second.auth.status()
    assert status.signed_in and status.remembered and status.refresh_count == 0
    assert status.access_lifetime == pytest.approx(60, abs=2)
    assert status.storage == StorageStatus(persistent=True, backend=MemoryKeyring.name)
    # Started 45 s later (the wall clock decides across processes): stale, so one refresh.
    later = make_client(server, KeyringStore(timeout=5), wall_clock=lambda: time.time() + 45)
    assert later.auth.restore(ALICE) is not None
    assert later.adapter.grants("refresh_token") == 1
    assert later.auth.status().refresh_count == 1
    # Nothing stored for bob: no session, no request.
    third = make_client(server, KeyringStore(timeout=5))
    assert third.auth.restore("bob") is None
    assert third.adapter.log == []


def test_sign_out_revokes_at_the_server_and_forgets_locally(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    client = make_client(server, KeyringStore(timeout=5))
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    key = (KEY.format(url=server.url), ALICE)
    entry = memory_keyring.secrets[key]
    access_token = client.auth._state.tokens.access_token
    assert client.auth.sign_out() is Revocation.REVOKED
    assert key not in memory_keyring.secrets
    assert not client.auth.status().signed_in
    with pytest.raises(NotSignedIn):
        client.auth.profile()
    assert _family(server)["revoked_at"] is not None
    with _raw_refresh(server, entry) as answer:
        assert answer.json()["error"] == "invalid_grant"
    with requests.get(
        f"{server.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    ) as answer:
        assert answer.status_code == 401


def _signed_in_stored(server: RunningServer, make_client: Any) -> tuple[Client, list[Any]]:
    client = make_client(server, KeyringStore(timeout=5))
    ended: list[SessionEnded] = []
    client.auth.on_session_ended.append(ended.append)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    return client, ended


def _assert_ended(
    client: Client, ended: list[Any], memory_keyring: MemoryKeyring, server: Any
) -> SessionEnded:
    client.clock.advance(3600)
    with pytest.raises(SessionEnded) as caught:
        client.auth.profile()
    text = str(caught.value)
    assert text.startswith("Your session has ended: ")
    assert text.endswith(". Please sign in again.")
    assert ended == [caught.value]
    assert (KEY.format(url=server.url), ALICE) not in memory_keyring.secrets
    assert not client.auth.status().signed_in
    return caught.value


def test_reused_refresh_token_ends_the_session(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    client, ended = _signed_in_stored(server, make_client)
    stolen = memory_keyring.secrets[(KEY.format(url=server.url), ALICE)]
    with _raw_refresh(server, stolen) as answer:  # a thief with the whole entry uses it first
        assert answer.status_code == 200
    error = _assert_ended(client, ended, memory_keyring, server)
    assert "already used" in str(error)


def test_revoked_session_ends(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    client, ended = _signed_in_stored(server, make_client)
    admin = make_client(server)
    admin.auth.sign_in(
        PasswordGrant(ALICE, ALICE_PW), remember=False
    )  # a second sign-in of alice, as admin
    family_id = _family(server)["id"]  # the newest: the admin's own
    with admin.auth.request("GET", "/api/sessions") as answer:
        sessions = answer.json()["sessions"]
    victim = next(s["id"] for s in sessions if s["id"] != family_id)
    with admin.auth.request("DELETE", f"/api/sessions/{victim}") as answer:
        assert answer.status_code == 204
    error = _assert_ended(client, ended, memory_keyring, server)
    assert "revoked" in str(error)


def test_expired_refresh_token_ends_the_session(
    start_server: Any, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(access_ttl="60s", refresh_ttl="1h")
    client, ended = _signed_in_stored(server, make_client)
    server.advance_clock(7200)
    error = _assert_ended(client, ended, memory_keyring, server)
    assert "expired" in str(error)


def test_single_flight_20_threads_one_refresh(server: RunningServer, make_client: Any) -> None:
    client = make_client(server)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    client.clock.advance(120)
    server.advance_clock(120)  # really expired at the server too
    barrier = threading.Barrier(20)
    results: list[Any] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        try:
            outcome: Any = client.auth.profile()["preferred_username"]
        except Exception as exc:  # collected and asserted below
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [ALICE] * 20
    assert client.adapter.grants("refresh_token") == 1
    assert client.auth.status().refresh_count == 1
    with sqlite3.connect(server.db) as db:
        (tokens,) = db.execute("SELECT count(*) FROM refresh_tokens").fetchone()
    assert tokens == 2  # the sign-in's and one rotation


def test_403_is_access_denied(server: RunningServer, make_client: Any) -> None:
    bob = make_client(server)
    bob.auth.sign_in(PasswordGrant("bob", "builder"), remember=False)
    with pytest.raises(AccessDenied, match="admin") as caught:
        bob.auth.request("GET", "/api/sessions")
    assert caught.value.status == 403
    assert bob.auth.status().signed_in


def test_secret_service_store_restore_and_delete(
    server: RunningServer, make_client: Any, secret_service_keyring: SecretServiceKeyring
) -> None:
    service = KEY.format(url=server.url)
    first = make_client(server, KeyringStore(timeout=10))
    first.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    try:
        status = first.auth.status()
        assert status.remembered
        assert status.storage == StorageStatus(persistent=True, backend="SecretService Keyring")
        stored = secret_service_keyring.stored(service, ALICE)
        assert stored is not None
        second = make_client(server, KeyringStore(timeout=10))
        assert second.auth.restore(ALICE) is not None
        # The stored access token was still valid: reused, nothing rotated.
        assert secret_service_keyring.stored(service, ALICE) == stored
        second.clock.advance(45)
        assert second.auth.profile()["preferred_username"] == ALICE
        assert secret_service_keyring.stored(service, ALICE) not in (None, stored)
        assert second.auth.sign_out() is Revocation.REVOKED
        assert secret_service_keyring.stored(service, ALICE) is None
    finally:
        KeyringStore(timeout=10).delete(server.url, ALICE)


class _Hanging(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait(30)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.release.wait(30)

    def delete_password(self, service: str, username: str) -> None:
        self.release.wait(30)


@pytest.mark.parametrize("kind", ["fail", "hanging", "too-long"])
def test_unusable_keyring_keeps_the_session_in_memory(
    server: RunningServer, make_client: Any, kind: str, memory_keyring: MemoryKeyring
) -> None:
    hanging = _Hanging()
    if kind == "fail":
        keyring.set_keyring(fail.Keyring())
        store = KeyringStore(timeout=2)
    elif kind == "hanging":
        keyring.set_keyring(hanging)
        store = KeyringStore(timeout=0.3)
    else:
        store = KeyringStore(timeout=2, max_secret_bytes=16)  # our tokens are longer
    try:
        client = make_client(server, store)
        client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
        status = client.auth.status()
        assert status.signed_in and not status.remembered
        assert status.storage.persistent is False
        expected = {"fail": "No OS keyring", "hanging": "did not answer", "too-long": "too long"}
        assert status.storage.reason is not None and expected[kind] in status.storage.reason
        assert client.auth.storage_status() == status.storage
        # The session works on, in memory.
        client.clock.advance(45)
        assert client.auth.profile()["preferred_username"] == ALICE
        assert client.adapter.grants("refresh_token") == 1
        assert memory_keyring.secrets == {}
        if kind != "too-long":
            with pytest.raises(KeyringUnavailable):
                store.load(server.url, ALICE)
    finally:
        hanging.release.set()


def test_remember_false_revokes_and_deletes_an_earlier_stored_session(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    earlier = make_client(server, KeyringStore(timeout=5))
    earlier.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    earlier_family = _family(server)
    assert memory_keyring.secrets
    make_client(server, KeyringStore(timeout=5)).auth.sign_in(
        PasswordGrant(ALICE, ALICE_PW), remember=False
    )
    assert memory_keyring.secrets == {}
    # Not left alive at the server, and its holder is told why it ended.
    with sqlite3.connect(server.db) as db:
        (revoked_at,) = db.execute(
            "SELECT revoked_at FROM families WHERE id = ?", (earlier_family["id"],)
        ).fetchone()
    assert revoked_at is not None
    earlier.clock.advance(3600)
    with pytest.raises(SessionEnded, match="another jwt-desktop window or command"):
        earlier.auth.profile()


def test_another_process_rotated_the_token_is_adopted(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    """Two clients (as two processes) share one stored session; they take turns, and neither
    ever presents a spent token."""
    a = make_client(server, KeyringStore(timeout=5))
    a.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    b = make_client(server, KeyringStore(timeout=5))
    assert b.auth.restore(ALICE) is not None  # reuses a's stored access token
    for client in (a, b, a, b):
        client.clock.advance(45)
        assert client.auth.profile()["preferred_username"] == ALICE
    assert _family(server)["revoked_at"] is None
    # b found a's fresh rotation in the store each time: it adopted it, with no request.
    assert (a.adapter.grants("refresh_token"), b.adapter.grants("refresh_token")) == (2, 0)
    assert a.auth.status().signed_in and b.auth.status().signed_in


def test_repr_shows_no_secret(server: RunningServer, make_client: Any) -> None:
    client = make_client(server)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    tokens = client.auth._state.tokens
    text = repr(client.auth) + repr(client.auth.status()) + repr(tokens)
    assert tokens.access_token not in text
    assert tokens.refresh_token not in text
    assert ALICE_PW not in text


class _HookedStore:
    """A TokenStore whose ``save`` runs ``before_save`` first (to hold a writer in place)."""

    def __init__(self, inner: TokenStore, before_save: Any = None) -> None:
        self.inner, self.before_save = inner, before_save
        self.saved = threading.Event()

    def load(self, issuer: str, username: str) -> Any:
        return self.inner.load(issuer, username)

    def save(self, issuer: str, username: str, session: Any) -> None:
        if self.before_save is not None:
            self.before_save()
        self.inner.save(issuer, username, session)
        self.saved.set()

    def delete(self, issuer: str, username: str) -> None:
        self.inner.delete(issuer, username)

    def status(self) -> StorageStatus:
        return self.inner.status()


def test_a_refresh_racing_a_sign_in_never_loses_the_new_session(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    """The CLI refreshes the stored session (another AuthClient, its own lock object on the
    same lock dir, as another process) while the GUI signs in again. The CLI is held just
    before it writes its rotation; the GUI's tokens arrive meanwhile. Were the GUI to write
    outside the lock, its new session would land first and the CLI's write would bury it."""
    from desktop.auth.grants import GrantContext, TokenResponse

    key = (KEY.format(url=server.url), ALICE)
    gui_has_tokens = threading.Event()
    cli_saving = threading.Event()
    gui_store = _HookedStore(KeyringStore(timeout=5))
    cli_wrote_first: list[bool] = []

    def hold_the_cli() -> None:
        cli_saving.set()
        assert gui_has_tokens.wait(30)
        # The GUI has its tokens now; give it the chance to write (it must not: it waits for
        # the lock this refresh holds). The wait times out when the GUI is right.
        cli_wrote_first.append(not gui_store.saved.wait(1.0))

    cli = make_client(server, KeyringStore(timeout=5))
    cli.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    cli.auth._storage.store = WriteBackStore(_HookedStore(KeyringStore(timeout=5), hold_the_cli))
    gui = make_client(server, gui_store)

    class SignalingGrant:
        grant_type = "password"

        def obtain(self, ctx: GrantContext) -> TokenResponse:
            response = PasswordGrant(ALICE, ALICE_PW).obtain(ctx)
            gui_has_tokens.set()
            return response

    outcomes: dict[str, Any] = {}

    def refresh() -> None:
        cli.clock.advance(45)
        outcomes["cli"] = cli.auth.profile()

    def sign_in() -> None:
        outcomes["gui"] = gui.auth.sign_in(SignalingGrant(), remember=True)

    cli_thread = threading.Thread(target=refresh)
    cli_thread.start()
    assert cli_saving.wait(30)  # the CLI holds the lock, about to write its rotation
    gui_thread = threading.Thread(target=sign_in)
    gui_thread.start()
    for thread in (cli_thread, gui_thread):
        thread.join(60)
    assert outcomes["cli"]["preferred_username"] == ALICE
    assert outcomes["gui"].status.remembered
    assert cli_wrote_first == [True]
    # What is stored is the GUI's new session, and it works at the server.
    stored = memory_keyring.secrets[key]
    assert refresh_token_of(stored) == gui.auth._state.refresh_token
    with _raw_refresh(server, stored) as answer:
        assert answer.status_code == 200


def test_an_old_format_entry_bare_refresh_token_still_restores(
    server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    """Before the JSON value, the keyring entry was the bare refresh token."""
    with requests.post(
        f"{server.url}/token",
        data={
            "grant_type": "password",
            "username": ALICE,
            "password": ALICE_PW,
            "client_id": "jwt-desktop",
        },
        timeout=10,
    ) as answer:
        old_token = answer.json()["refresh_token"]
    key = (KEY.format(url=server.url), ALICE)
    memory_keyring.secrets[key] = old_token
    client = make_client(server, KeyringStore(timeout=5))
    profile = client.auth.restore(ALICE)
    assert profile is not None and profile["preferred_username"] == ALICE
    assert client.adapter.grants("refresh_token") == 1  # no access token in it: one refresh
    # Written back in the new format, with the access token for the next process.
    entry = json.loads(memory_keyring.secrets[key])
    assert entry["refresh_token"] not in (None, old_token)
    assert entry["access_token"] == client.auth._state.tokens.access_token
    assert entry["expires_at"] == pytest.approx(time.time() + 60, abs=5)
