"""Nothing lost when the real keyring misbehaves (issue 11): gnome-keyring in a private D-Bus
session is locked, unlocked and killed (D-Bus starts it again) while a long-lived client and
real CLI processes share one stored session; and the lost refresh answer against a strict and
a graceful server, through a proxy that really drops it.

The server's testing clock moves the stored access tokens past their life, so every step that
needs a refresh gets one (a 401, then the refresh), with no sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop.auth.errors import KeyringUnavailable, SessionEnded
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import LOST_UNSAVED, describe
from desktop.auth.session import AuthClient
from desktop.auth.store import KeyringStore
from desktop.cli import EXIT_KEYRING, main
from desktop.config import Config, load_config, save_config
from tests.core.test_cli import _cli
from tests.support.dropping_proxy import DroppingProxy, is_refresh_grant
from tests.support.keyring import SecretServiceKeyring
from tests.support.server import RunningServer

ALICE_PW = "wonderland"
LOCKED = "The OS keyring is locked: unlock it and try again; your session is kept."


# CLI processes read the real clock, and a bound session's proofs carry it (`iat`): the server's
# clock may move at most DPoP's 60 s window ahead of it over a whole test. So access tokens live
# 8 s and each step moves the clock 9 s, past them (six steps at most: 54 s).
ACCESS_TTL, PAST_THE_ACCESS_TOKEN = "8s", 9


@pytest.fixture
def server(start_server: Any) -> RunningServer:
    return start_server(access_ttl=ACCESS_TTL)


def _families(server: RunningServer) -> list[tuple[Any, Any]]:
    with sqlite3.connect(server.db) as db:
        return db.execute("SELECT revoked_at, revoked_reason FROM families").fetchall()


def _login(server: RunningServer, env: dict[str, str]) -> None:
    done = _cli(
        ["--server", server.url, "login", "-u", "alice", "--password-stdin", "--remember"],
        env,
        stdin=ALICE_PW + "\n",
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def env(faulty_keyring: SecretServiceKeyring, server: RunningServer) -> Iterator[dict[str, str]]:
    environment = {**os.environ, **faulty_keyring.env}
    try:
        yield environment
    finally:
        faulty_keyring.restore()
        service = f"jwt-desktop:{server.url}"
        if faulty_keyring.stored(service, "alice") is not None:
            faulty_keyring.backend.delete_password(service, "alice")


def _stored_key(keyring: SecretServiceKeyring, service: str) -> str:
    entry = keyring.stored(service, "alice")
    assert entry is not None
    key = json.loads(entry)["dpop_key"]
    assert isinstance(key, str)
    return key


def _long_lived(server: RunningServer) -> AuthClient:
    # As desktop/app.py builds it: the keyring store, the default (shared) lock dir.
    return AuthClient(server.url, store=KeyringStore(timeout=5))


def test_cli_with_a_locked_keyring_keeps_the_session_and_says_so(
    server: RunningServer, faulty_keyring: SecretServiceKeyring, env: dict[str, str]
) -> None:
    _login(server, env)
    faulty_keyring.lock()
    server.advance_clock(
        PAST_THE_ACCESS_TOKEN
    )  # the stored access token is dead: a refresh would be needed
    for command in (["status"], ["profile"]):
        done = _cli(command, env)
        assert done.returncode == EXIT_KEYRING == 3, done
        assert done.stderr == f"jwt-desktop: error: {LOCKED}\n"
        assert "Not signed in" not in done.stdout + done.stderr  # item 4
    logout = _cli(["logout"], env)
    assert logout.returncode == EXIT_KEYRING, logout
    assert logout.stderr == f"jwt-desktop: error: {LOCKED}\n"  # item 5: no false success
    assert logout.stdout == ""
    assert load_config().last_username == "alice"  # nothing forgotten
    assert _families(server) == [(None, None)]  # nothing revoked, no token presented
    faulty_keyring.unlock()
    done = _cli(["profile", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["preferred_username"] == "alice"
    assert _families(server) == [(None, None)]
    assert faulty_keyring.entries(f"jwt-desktop:{server.url}") == 1


@pytest.mark.parametrize("fault", ["lock", "kill"])
def test_a_long_lived_client_and_cli_processes_survive_a_locked_or_restarted_keyring(
    fault: str,
    server: RunningServer,
    faulty_keyring: SecretServiceKeyring,
    env: dict[str, str],
) -> None:
    """The GUI's situation: it keeps working in memory while the keyring cannot be used (its
    copy is proven current by the marker), CLI commands meanwhile stop with the keyring's
    sentence instead of presenting a spent token, and after the unlock the client writes the
    session back and everybody goes on with one session, never a reuse."""
    service = f"jwt-desktop:{server.url}"
    client = _long_lived(server)
    try:
        client.sign_in(PasswordGrant("alice", ALICE_PW), remember=True)
        assert client.status().bound  # the key must survive every hand-over below
        key = _stored_key(faulty_keyring, service)
        save_config(Config(server_url=server.url, last_username="alice"))
        server.advance_clock(PAST_THE_ACCESS_TOKEN)
        assert _cli(["profile"], env).returncode == 0  # a CLI refresh: the client's copy is spent
        # (No clock move here: the testing clock would kill the access token the client adopts
        # behind the back of the wall clock it was stored with.)
        assert client.profile()["preferred_username"] == "alice"  # 401, then adopts the CLI's
        server.advance_clock(PAST_THE_ACCESS_TOKEN)
        assert client.profile()["preferred_username"] == "alice"  # refreshes itself

        if fault == "lock":
            faulty_keyring.lock()
        else:
            faulty_keyring.kill_daemon()  # D-Bus starts it again, locked
        for _ in range(2):  # two refreshes while the keyring cannot be used
            server.advance_clock(PAST_THE_ACCESS_TOKEN)
            assert client.profile()["preferred_username"] == "alice"
            status = client.status()
            assert status.signed_in and status.unsaved is not None
            assert "could not be saved in the OS keyring" in status.unsaved
            cli = _cli(["profile"], env)
            assert cli.returncode == EXIT_KEYRING, cli  # cannot prove its token: stops
            assert "your session is kept" in cli.stderr
        assert not client.write_back()  # still locked

        faulty_keyring.unlock()
        assert client.write_back()
        assert client.status().unsaved is None
        assert _stored_key(faulty_keyring, service) == key  # written back with its key
        server.advance_clock(PAST_THE_ACCESS_TOKEN)
        cli = _cli(["profile", "--json"], env)  # adopts what the client wrote back, refreshes
        assert cli.returncode == 0, cli.stderr
        assert client.profile()["preferred_username"] == "alice"  # adopts the CLI's rotation
        server.advance_clock(PAST_THE_ACCESS_TOKEN)
        assert client.profile()["preferred_username"] == "alice"
        assert _families(server) == [(None, None)]  # one sign-in, never a reuse
        assert faulty_keyring.entries(service) == 1
        assert _stored_key(faulty_keyring, service) == key
    finally:
        client.close()


def test_a_cli_refresh_that_could_not_be_saved_is_reported_at_once(
    server: RunningServer,
    faulty_keyring: SecretServiceKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    """A CLI command's process ends with its memory: a rotation it could not store is lost, so
    it says so at once (stderr, exit 3) and the next command says what happened, without
    presenting the spent token (which a strict server would call theft)."""
    save_config(Config(server_url=server.url, last_username="alice"))
    signer = _long_lived(server)
    signer.sign_in(PasswordGrant("alice", ALICE_PW), remember=True)
    signer.close()
    server.advance_clock(PAST_THE_ACCESS_TOKEN)
    real_save = KeyringStore.save

    def locked_then_save(self: KeyringStore, *args: Any) -> None:
        faulty_keyring.lock()  # the screen locks while the refresh is under way
        real_save(self, *args)

    monkeypatch.setattr(KeyringStore, "save", locked_then_save)
    assert main(["profile"]) == EXIT_KEYRING
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("jwt-desktop: error: The refreshed session could not be saved")
    assert "the next command will ask you to sign in again" in err
    monkeypatch.setattr(KeyringStore, "save", real_save)
    faulty_keyring.unlock()
    # The process that made the rotation is gone (here: the marker names a dead process).
    (marker,) = Path(os.environ["JWT_DESKTOP_DATA_DIR"]).glob("refresh-*.marker")
    data = json.loads(marker.read_text())
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    marker.write_text(json.dumps({**data, "pid": int(gone.stdout)}))
    client = _long_lived(server)
    try:
        with pytest.raises(SessionEnded) as ended:
            client.load_stored("alice")
        assert str(ended.value) == LOST_UNSAVED
        assert not client.load_stored("alice")  # deleted
    finally:
        client.close()
    (family,) = _families(server)
    assert family[0] is not None  # the spent family was revoked, not left alive


@contextlib.contextmanager
def _proxy(port: int) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(f"http://127.0.0.1:{port}")
    try:
        yield proxy
    finally:
        # DroppingProxy.close() closes its listener, which does not wake the thread blocked in
        # accept() on Linux (it then waits 30 s for it); a shutdown does.
        with contextlib.suppress(OSError):
            proxy._listener.shutdown(socket.SHUT_RDWR)
        proxy.close()


def _reserve_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("grace", [False, True])
def test_a_lost_refresh_answer_is_retried_once(
    grace: bool, start_server: Any, memory_keyring: Any
) -> None:
    """The refresh reaches the server, its answer is lost: the client sends it once more with
    the same token. A strict server calls that reuse and ends the session (with its usual
    sentence, not "signed out elsewhere"); one with a reuse grace answers it."""
    port = _reserve_port()
    with _proxy(port) as proxy:
        extra = ["--port", str(port), "--issuer", proxy.url]
        server = start_server(
            access_ttl="60s", extra_args=[*extra, *(["--reuse-grace", "30s"] if grace else [])]
        )
        # Its proofs' iat follow the server's clock (as NTP would make them agree).
        client = AuthClient(proxy.url, store=KeyringStore(timeout=5), wall_clock=server.wall_clock)
        try:
            client.sign_in(PasswordGrant("alice", ALICE_PW), remember=True)
            # Bound: the second send needs a new proof (a replayed jti would be refused).
            assert client.status().bound
            server.advance_clock(120)
            proxy.drop_answer(is_refresh_grant)
            if grace:
                assert client.profile()["preferred_username"] == "alice"
                assert client.status().refresh_count == 1
                assert _families(server) == [(None, None)]
            else:
                with pytest.raises(SessionEnded) as ended:
                    client.profile()
                assert "another jwt-desktop" not in str(ended.value)
                assert str(ended.value).startswith("Your session has ended")
                assert not client.status().signed_in
                assert not client.load_stored("alice")  # the dead session is not kept
            assert [d.status for d in proxy.dropped] == [200]  # the server did answer it
        finally:
            client.close()


def test_a_lost_answer_is_not_could_not_connect(start_server: Any) -> None:
    port = _reserve_port()
    with _proxy(port) as proxy:
        start_server(extra_args=["--port", str(port), "--issuer", proxy.url])
        client = AuthClient(proxy.url, store=KeyringStore(timeout=5))
        try:
            proxy.drop_answer(lambda request: request.path.startswith("/.well-known"))
            with pytest.raises(Exception) as caught:
                client.metadata()
            text = describe(caught.value).message
            assert "was lost after the request was sent" in text
            assert "Could not connect" not in text and "Error" not in text
        finally:
            client.close()


def test_a_keyring_that_fails_is_tried_again_on_the_next_use(
    faulty_keyring: SecretServiceKeyring,
) -> None:
    store = KeyringStore(timeout=5)
    faulty_keyring.lock()
    with pytest.raises(KeyringUnavailable, match="locked: unlock it"):
        store.load("https://id.example", "alice")
    assert not store.status().persistent
    faulty_keyring.unlock()
    assert store.load("https://id.example", "alice") is None  # no permanent "unavailable"
    assert store.status().persistent


def test_help_documents_the_keyring_exit_status(capsys: Any) -> None:
    for command in (["--help"], ["status", "--help"], ["logout", "--help"]):
        assert main(command) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"{EXIT_KEYRING} OS keyring trouble" in out
