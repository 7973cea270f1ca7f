"""Third-party providers through the REAL client (``desktop.auth`` and the CLI), not plain
requests: django-oauth-toolkit (password grant, browser flow, refresh, reuse ending the
session, Sign out revoking through its RFC 8414 endpoint) and node-oidc-provider (``login
--browser`` and ``--device`` with offline_access + prompt=consent, refresh, sign-out revoking).
The browser is the robot (``$BROWSER``)."""

from __future__ import annotations

import dataclasses
import functools
import io
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from desktop.auth import grants
from desktop.auth.errors import DPoPRefused, SessionEnded
from desktop.auth.grants import AuthorizationCodeGrant, PasswordGrant
from desktop.auth.idtoken import IDTokenValidator
from desktop.auth.messages import Revocation, describe
from desktop.auth.session import AuthClient
from desktop.auth.store import KeyringStore, MemoryStore
from desktop.cli import main
from desktop.config import load_config, state_dir
from tests.core.fakes import counting_session
from tests.support.browser import RobotBrowser, play_device
from tests.support.keyring import MemoryKeyring
from tests.support.thirdparty import DotServer, NodeOidcServer


class Clock:
    """The client's monotonic clock, moved by the test (access tokens go stale at once)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refresh_refused(token_endpoint: str, client_id: str, token: str) -> bool:
    response = requests.post(
        token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
        timeout=10,
    )
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


# -- django-oauth-toolkit -----------------------------------------------------------------------


def _dot_client(server: DotServer, client_id: str, clock: Clock, store: MemoryStore) -> AuthClient:
    return AuthClient(
        server.issuer,
        client_id=client_id,
        store=store,
        clock=clock,
        id_token_validator=IDTokenValidator(),
    )


def test_dot_password_grant_refresh_reuse_ends_the_session(dot_server: DotServer) -> None:
    clock, store = Clock(), MemoryStore()
    with _dot_client(dot_server, dot_server.password_client_id, clock, store) as client:
        result = client.sign_in(PasswordGrant("bob", "builder"), remember=True)
        assert result.status.username == "bob"  # typed; DOT's password grant gives no ID token
        assert result.profile is not None and result.profile.get("groups") == ["staff"]
        first = store.load(client.server_url, "bob")
        assert first is not None
        clock.now += dot_server.access_ttl + 1  # the access token is stale: refresh
        client.profile()
        assert client.status().refresh_count == 1
        rotated = store.load(client.server_url, "bob")
        assert rotated is not None and rotated.refresh_token != first.refresh_token
        # A thief replays the spent token: DOT refuses it and revokes the family.
        token_endpoint = client.metadata().token_endpoint
        assert _refresh_refused(token_endpoint, dot_server.password_client_id, first.refresh_token)
        clock.now += dot_server.access_ttl + 1
        with pytest.raises(SessionEnded) as ended:
            client.profile()
        assert not client.status().signed_in
    assert describe(ended.value).message.startswith("Your session has ended")
    assert str(ended.value).endswith("Please sign in again.")
    assert store.load(client.server_url, "bob") is None


def test_dot_browser_flow_and_sign_out_revokes_through_rfc8414(
    dot_server: DotServer, browser_robot: RobotBrowser
) -> None:
    clock, store = Clock(), MemoryStore()
    with _dot_client(dot_server, dot_server.client_id, clock, store) as client:
        metadata = client.metadata()
        # Only RFC 8414's document names it; discovery merged both.
        assert metadata.revocation_endpoint == f"{dot_server.issuer}/revoke_token/"
        result = client.sign_in(AuthorizationCodeGrant(), remember=True)
        # Named from DOT's validated ID token (its sub), then userinfo's sub matched it.
        assert result.status.signed_in and result.profile is not None
        assert result.profile_error is None
        account = result.status.username
        assert account is not None
        stored = store.load(client.server_url, account)
        assert stored is not None
        clock.now += dot_server.access_ttl + 1
        client.profile()  # refreshed through the real client
        assert client.status().refresh_count == 1
        stored = store.load(client.server_url, account)
        assert stored is not None
        assert client.sign_out() is Revocation.REVOKED
    assert _refresh_refused(metadata.token_endpoint, dot_server.client_id, stored.refresh_token)
    assert browser_robot.says("done: the redirect answered 200"), browser_robot.log()


# -- node-oidc-provider -------------------------------------------------------------------------


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _stored_client(server: NodeOidcServer) -> AuthClient:
    """The client the CLI builds."""
    return AuthClient(
        server.issuer,
        store=KeyringStore(),
        lock_dir=state_dir(),
        id_token_validator=IDTokenValidator(),
    )


def _refresh_then_logout(
    server: NodeOidcServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    account = load_config().last_username
    assert account is not None
    store, url = KeyringStore(), server.issuer.rstrip("/")
    stored = store.load(url, account)
    assert stored is not None
    # The session node-oidc-provider issued is DPoP-bound, its key in the same keyring entry.
    assert stored.token_type == "DPoP" and stored.dpop_key is not None
    # As if the access token's life had passed for the next process (node's clock cannot move,
    # and the DPoP proofs must keep the real time): the stored expiry is in the past.
    store.save(url, account, dataclasses.replace(stored, expires_at=time.time() - 1))
    with _stored_client(server) as client:
        assert client.load_stored(account)
        assert client.profile()["sub"]  # the stored access token is stale: one refresh
        assert client.status().refresh_count == 1 and client.status().bound
        token_endpoint = client.metadata().token_endpoint
    stored = store.load(url, account)
    assert stored is not None
    code, out, err = _cli(["--server", server.issuer, "logout"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out == f"Signed out {account} from {url}.\n"
    assert _refresh_refused(token_endpoint, server.client_id, stored.refresh_token)


def test_node_oidc_login_browser_refresh_and_logout(
    node_oidc_server: NodeOidcServer,
    browser_robot: RobotBrowser,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    code, out, err = _cli(
        ["--server", node_oidc_server.issuer, "login", "--browser"], monkeypatch, capsys
    )
    assert (code, err) == (0, ""), out
    # offline_access (listed) with prompt=consent: a refresh token, so the session is kept.
    assert "prompt=consent" in out and "offline_access" in out
    assert "stored in the OS keyring" in out
    _refresh_then_logout(node_oidc_server, monkeypatch, capsys)


def test_node_oidc_login_device_refresh_and_logout(
    node_oidc_server: NodeOidcServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    lines: list[str] = []

    def person(cancel: threading.Event, seconds: float) -> bool:
        # node-oidc-provider's clock cannot be moved: the person approves before the first
        # poll, which then succeeds without waiting out the interval.
        if not lines:
            line = capsys.readouterr().out
            lines.append(line)
            complete = line.split("(or open ", 1)[1].split(")", 1)[0]
            assert play_device(complete).status == "done"
        return cancel.is_set()

    monkeypatch.setattr(
        grants, "DeviceCodeGrant", functools.partial(grants.DeviceCodeGrant, wait=person)
    )
    code, out, err = _cli(
        ["--server", node_oidc_server.issuer, "login", "--device"], monkeypatch, capsys
    )
    assert (code, err) == (0, ""), out
    (line,) = lines
    assert line.startswith(f"To sign in, open {node_oidc_server.url}/")
    assert "stored in the OS keyring" in out
    _refresh_then_logout(node_oidc_server, monkeypatch, capsys)


def test_node_oidc_demanding_dpop_nonces_gets_them_once_each(
    start_node_oidc_server: Callable[..., NodeOidcServer],
    browser_robot: RobotBrowser,
    memory_keyring: MemoryKeyring,
) -> None:
    """node-oidc-provider with nonces required (RFC 9449 §8, §9), at its token endpoint and at
    its userinfo: each use_dpop_nonce is answered once with the nonce given, which is then
    reused; a new process restoring the bound session meets the resource's demand first."""
    server = start_node_oidc_server(dpop_nonce=True)
    sessions: list[requests.Session] = []

    def client(clock: Clock) -> tuple[AuthClient, Any]:
        http, adapter = counting_session()
        sessions.append(http)
        made = AuthClient(
            server.issuer,
            store=KeyringStore(),
            http=http,
            clock=clock,
            lock_dir=state_dir(),
            id_token_validator=IDTokenValidator(),
        )
        return made, adapter

    first, log = client(Clock())
    with first:
        result = first.sign_in(AuthorizationCodeGrant(), remember=True)
        assert result.profile_error is None and result.status.bound
        account = result.status.username
        assert [e[3] for e in log.log if e[2] == "authorization_code"] == [400, 200]
        userinfo = urlsplit(first.metadata().userinfo_endpoint or "").path
        assert [e[3] for e in log.log if e[1] == userinfo] == [200]  # the nonce, reused
    assert account is not None

    clock = Clock()
    again, log = client(clock)  # the next start: no nonce known yet
    with again:
        assert again.restore(account) is not None
        assert [e[3] for e in log.log if e[1] == userinfo] == [401, 200]
        assert log.grants("refresh_token") == 0  # a nonce retry is not a refresh
        clock.now += server.access_ttl + 1  # stale: a refresh, with a proof and the nonce
        again.profile()
        assert [e[3] for e in log.log if e[2] == "refresh_token"] == [200]
        assert again.status().bound
        assert again.sign_out() is Revocation.REVOKED
    for http in sessions:
        http.close()


def test_node_oidc_refusing_proofs_from_a_clock_10_minutes_slow_is_said_so(
    node_oidc_server: NodeOidcServer, browser_robot: RobotBrowser
) -> None:
    """This computer's clock 10 minutes behind: node-oidc-provider refuses the token request's
    DPoP proof (its iat), and the sentence says the clock is off, from node's Date header."""
    with (
        AuthClient(
            node_oidc_server.issuer,
            store=MemoryStore(),
            wall_clock=lambda: time.time() - 600,
            lock_dir=state_dir(),
            id_token_validator=IDTokenValidator(),
        ) as client,
        pytest.raises(DPoPRefused) as refused,
    ):
        client.sign_in(AuthorizationCodeGrant(), remember=False)
    message = describe(refused.value).message
    assert "This computer's clock is about 10 minutes behind the server's" in message, message
