"""Bad server answers and unreachable servers: each a clear error, the session kept or ended as
it should be. Local fake servers (real HTTP on loopback) produce what the real one never does."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest

from desktop.auth.errors import (
    AccessDenied,
    ClientRejected,
    ConfigurationError,
    InvalidCredentials,
    KeyringUnavailable,
    LockTimeout,
    NotSignedIn,
    OAuthError,
    ServerError,
    ServerUnreachable,
    SessionEnded,
    TooManyAttempts,
)
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import Revocation
from desktop.auth.session import AuthClient
from desktop.auth.store import KeyringStore, MemoryStore
from tests.core.fakes import FakeClock, FakeOIDCServer, Reply, Seen, SilentServer, closed_port_url
from tests.support.keyring import MemoryKeyring


def _client(url: str, clock: FakeClock | None = None, **kwargs: object) -> AuthClient:
    return AuthClient(
        url,
        store=kwargs.pop("store", MemoryStore()),  # type: ignore[arg-type]
        clock=clock or FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_refuses_plain_http_to_a_remote_server() -> None:
    with pytest.raises(ConfigurationError, match="only loopback"):
        AuthClient("http://id.example.com", store=MemoryStore())


def test_connection_refused_is_server_unreachable() -> None:
    url = closed_port_url()
    client = _client(url)
    try:
        with pytest.raises(ServerUnreachable, match="Could not connect") as caught:
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        assert caught.value.url == url
        assert "wonderland" not in str(caught.value)
    finally:
        client.close()


def test_a_server_that_never_answers_times_out(silent_server: SilentServer) -> None:
    client = _client(silent_server.url, timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(ServerUnreachable, match="did not answer in time"):
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        assert time.monotonic() - started < 5
    finally:
        client.close()


@pytest.mark.parametrize(
    ("path", "reply", "error", "message"),
    [
        ("/token", Reply(500, b"boom"), ServerError, r"HTTP 500"),
        (
            "/token",
            Reply.json(503, {"error": "temporarily_unavailable"}),
            ServerError,
            r"HTTP 503",
        ),
        (
            "/token",
            Reply(200, b"<html>hi</html>", {"Content-Type": "text/html"}),
            ServerError,
            r"not JSON",
        ),
        (
            "/token",
            Reply.json(200, {"token_type": "Bearer", "refresh_token": "r"}),
            ServerError,
            r"no access token",
        ),
        (
            "/token",
            Reply.json(200, {"access_token": "a", "token_type": "Bearer", "expires_in": 60}),
            ServerError,
            r"no refresh token",
        ),
        ("/token", Reply(404, b"<html>nope</html>"), ServerError, r"unexpected answer \(HTTP 404"),
        (
            "/.well-known/openid-configuration",
            Reply(200, b"<!doctype html><p>a web page</p>", {"Content-Type": "text/html"}),
            ConfigurationError,
            r"not an OpenID Connect server",
        ),
        (
            "/.well-known/openid-configuration",
            Reply(404, b""),
            ConfigurationError,
            r"no OpenID Connect discovery document nor OAuth server metadata \(HTTP 404\)",
        ),
        ("/.well-known/openid-configuration", Reply(502, b""), ServerError, r"HTTP 502"),
        ("/userinfo", Reply(200, b"<html/>"), ServerError, r"profile answer is not a JSON"),
        ("/userinfo", Reply(500, b""), ServerError, r"HTTP 500"),
    ],
)
def test_bad_answers_are_clear_errors(
    fake_server: FakeOIDCServer, path: str, reply: Reply, error: type, message: str
) -> None:
    fake_server.routes[path] = lambda seen: reply
    client = _client(fake_server.url)
    try:
        if path == "/userinfo":
            # The session started: only its second step, the profile, failed, and says why.
            result = client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
            assert result.status.signed_in and result.profile is None
            assert isinstance(result.profile_error, error)
            assert re.search(message, str(result.profile_error))
            with pytest.raises(error, match=message):
                client.profile()
        else:
            with pytest.raises(error, match=message):
                client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    finally:
        client.close()


def test_issuer_mismatch_is_refused(fake_server: FakeOIDCServer) -> None:
    fake_server.routes["/.well-known/openid-configuration"] = lambda seen: Reply.json(
        200, {"issuer": "http://127.0.0.1:1", "token_endpoint": f"{fake_server.url}/token"}
    )
    client = _client(fake_server.url)
    try:
        with pytest.raises(ConfigurationError, match="issuer"):
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        assert fake_server.requests_to("/token") == []  # no password sent anywhere
    finally:
        client.close()


def test_oauth_error_read_from_a_401_body_means_wrong_password(
    fake_server: FakeOIDCServer,
) -> None:
    # Some providers answer a bad password with 401 rather than 400: the body decides.
    fake_server.routes["/token"] = lambda seen: Reply.json(
        401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
    )
    client = _client(fake_server.url)
    try:
        with pytest.raises(InvalidCredentials, match="username or password is incorrect") as e:
            client.sign_in(PasswordGrant("alice", "wrong-pass"), remember=False)
        assert e.value.status == 401
        assert e.value.description == "Invalid user credentials"
        assert not client.status().signed_in
    finally:
        client.close()


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("42", 42), (None, None), ("soon", None), ("http-date", 120)],
)
def test_throttling_gives_the_wait(
    fake_server: FakeOIDCServer, retry_after: str | None, expected: int | None
) -> None:
    headers = {}
    if retry_after == "http-date":
        when = datetime.now(timezone.utc) + timedelta(seconds=120)
        headers["Retry-After"] = format_datetime(when, usegmt=True)
    elif retry_after is not None:
        headers["Retry-After"] = retry_after
    fake_server.routes["/token"] = lambda seen: Reply.json(
        429, {"error": "too_many_attempts"}, **headers
    )
    client = _client(fake_server.url)
    try:
        with pytest.raises(TooManyAttempts) as caught:
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        if expected is None:
            assert caught.value.retry_after is None
            assert "Try again later" in str(caught.value)
        else:
            assert caught.value.retry_after is not None
            assert abs(caught.value.retry_after - expected) <= 2
            assert f"Try again in {caught.value.retry_after} seconds" in str(caught.value)
    finally:
        client.close()


def test_other_oauth_errors(fake_server: FakeOIDCServer) -> None:
    fake_server.routes["/token"] = lambda seen: Reply.json(
        400, {"error": "unauthorized_client", "error_description": "Password grant disabled."}
    )
    client = _client(fake_server.url)
    try:
        with pytest.raises(ClientRejected, match=r"does not accept this app.*grant disabled") as c:
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        assert c.value.error == "unauthorized_client"  # the OAuth code is kept
        fake_server.routes["/token"] = lambda seen: Reply.json(400, {"error": "invalid_request"})
        with pytest.raises(OAuthError, match=r"refused the request \(invalid_request\)"):
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    finally:
        client.close()


def _signed_in(fake_server: FakeOIDCServer, clock: FakeClock, **kwargs: object) -> AuthClient:
    client = _client(fake_server.url, clock, **kwargs)
    client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    return client


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, b"boom"),
        Reply(200, b"<html/>", {"Content-Type": "text/html"}),
        Reply.json(200, {"token_type": "Bearer"}),
    ],
)
def test_refresh_failures_keep_the_session(
    fake_server: FakeOIDCServer, clock: FakeClock, reply: Reply
) -> None:
    client = _signed_in(fake_server, clock)
    try:
        fake_server.routes["/token"] = lambda seen: reply
        clock.advance(61)
        with pytest.raises(ServerError):
            client.profile()
        assert client.status().signed_in
        # The server recovers: the same session refreshes with the same refresh token.
        del fake_server.routes["/token"]
        assert client.profile()["preferred_username"] == "alice"
        refreshes = [s.form["refresh_token"] for s in fake_server.requests_to("/token")[1:]]
        assert refreshes == ["refresh-1", "refresh-1"]
    finally:
        client.close()


def test_refresh_with_the_server_down_keeps_the_session(clock: FakeClock) -> None:
    server = FakeOIDCServer()
    url = server.url
    client = _client(url, clock)
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        server.close()
        clock.advance(61)
        with pytest.raises(ServerUnreachable):
            client.profile()
        assert client.status().signed_in
    finally:
        client.close()


def test_invalid_grant_on_refresh_ends_the_session(
    fake_server: FakeOIDCServer, clock: FakeClock
) -> None:
    store = MemoryStore()
    client = _client(fake_server.url, clock, store=store)
    ended: list[SessionEnded] = []
    client.on_session_ended.append(ended.append)
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=True)
        stored = store.load(client.server_url, "alice")
        assert stored is not None and stored.refresh_token == "refresh-1"
        fake_server.routes["/token"] = lambda seen: Reply.json(
            400, {"error": "invalid_grant", "error_description": "Token expired."}
        )
        clock.advance(61)
        with pytest.raises(SessionEnded) as caught:
            client.profile()
        assert str(caught.value) == "Your session has ended: Token expired. Please sign in again."
        assert ended == [caught.value]
        assert store.load(client.server_url, "alice") is None
        assert not client.status().signed_in
        with pytest.raises(NotSignedIn):
            client.profile()
    finally:
        client.close()


def test_401_invalid_token_refreshes_once_and_never_loops(
    fake_server: FakeOIDCServer, clock: FakeClock
) -> None:
    def always_invalid(seen: Seen) -> Reply:
        return Reply.json(
            401,
            {"error": "invalid_token"},
            **{"WWW-Authenticate": 'Bearer realm="x", error="invalid_token"'},
        )

    client = _signed_in(fake_server, clock)
    try:
        fake_server.routes["/userinfo"] = always_invalid
        with pytest.raises(ServerError, match="just issued"):
            client.profile()
        assert len(fake_server.requests_to("/userinfo")) == 3  # sign-in profile + 2 tries
        assert len(fake_server.requests_to("/token")) == 2  # sign-in + exactly one refresh
        assert client.status().signed_in
    finally:
        client.close()


def test_401_without_invalid_token_is_not_a_refresh_trigger(
    fake_server: FakeOIDCServer, clock: FakeClock
) -> None:
    client = _signed_in(fake_server, clock)
    try:
        fake_server.routes["/userinfo"] = lambda seen: Reply(
            401, b"", {"WWW-Authenticate": "Basic"}
        )
        response = client.request("GET", "/userinfo")
        with response:
            assert response.status_code == 401
        assert len(fake_server.requests_to("/token")) == 1
    finally:
        client.close()


def test_403_is_access_denied_with_the_reason(
    fake_server: FakeOIDCServer, clock: FakeClock
) -> None:
    client = _signed_in(fake_server, clock)
    try:
        fake_server.routes["/api/x"] = lambda seen: Reply.json(
            403,
            {"error": "insufficient_scope"},
            **{
                "WWW-Authenticate": 'Bearer error="insufficient_scope", '
                'error_description="For admins only"'
            },
        )
        with pytest.raises(AccessDenied, match="You do not have access to this resource: For") as e:
            client.request("GET", "/api/x")
        assert e.value.error == "insufficient_scope"
    finally:
        client.close()


def test_requests_refuse_insecure_urls_and_disabled_tls(
    fake_server: FakeOIDCServer, clock: FakeClock
) -> None:
    client = _signed_in(fake_server, clock)
    try:
        with pytest.raises(ConfigurationError, match="only loopback"):
            client.request("GET", "http://example.com/api")
        with pytest.raises(ConfigurationError, match="cannot be turned off"):
            client.request("GET", "/userinfo", verify=False)
    finally:
        client.close()


def test_not_signed_in(fake_server: FakeOIDCServer) -> None:
    client = _client(fake_server.url)
    try:
        with pytest.raises(NotSignedIn):
            client.profile()
        assert client.sign_out() is Revocation.REVOKED
        assert fake_server.requests_to("/revoke") == []
    finally:
        client.close()


def test_sign_out_with_the_server_down_still_forgets_locally(clock: FakeClock) -> None:
    server = FakeOIDCServer()
    store = MemoryStore()
    client = _client(server.url, clock, store=store)
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=True)
        server.close()
        assert client.sign_out() is Revocation.NOT_CONFIRMED
        assert store.load(client.server_url, "alice") is None
        assert not client.status().signed_in
    finally:
        client.close()


def test_many_waiters_share_one_failed_refresh(silent_server: SilentServer) -> None:
    """Against a hanging server, waiting callers get the first caller's failure, not one
    timeout each in turn."""
    import threading

    fake = FakeOIDCServer()
    clock = FakeClock()
    client = _client(fake.url, clock, timeout=0.5)
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        # Point the token endpoint at the silent server.
        import dataclasses

        client._metadata = dataclasses.replace(
            client.metadata(), token_endpoint=f"{silent_server.url}/token"
        )
        clock.advance(61)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.profile()
            except ServerUnreachable as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(errors) == 8
        assert time.monotonic() - started < 3  # not 8 x 0.5 s one after another
    finally:
        client.close()
        fake.close()


@pytest.fixture
def elsewhere() -> Iterator[FakeOIDCServer]:
    """Another server: where a redirect would lead."""
    server = FakeOIDCServer()
    try:
        yield server
    finally:
        server.close()


def test_a_redirected_discovery_is_refused_and_the_password_goes_nowhere(
    fake_server: FakeOIDCServer, elsewhere: FakeOIDCServer, clock: FakeClock
) -> None:
    # What answers at the redirect target could name any token endpoint, and repeat the issuer.
    target = f"{elsewhere.url}/.well-known/openid-configuration"
    fake_server.routes["/.well-known/openid-configuration"] = lambda seen: Reply(
        302, headers={"Location": target}
    )
    client = _client(fake_server.url, clock)
    with pytest.raises(ServerError, match="redirect"):
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    assert elsewhere.seen == []
    assert fake_server.requests_to("/token") == []


def test_a_redirected_profile_is_refused(
    fake_server: FakeOIDCServer, elsewhere: FakeOIDCServer, clock: FakeClock
) -> None:
    client = _signed_in(fake_server, clock)
    fake_server.routes["/userinfo"] = lambda seen: Reply(
        307, headers={"Location": f"{elsewhere.url}/userinfo"}
    )
    with pytest.raises(ServerError, match="redirect"):
        client.profile()
    assert elsewhere.seen == []
    assert client.status().signed_in  # the session is kept


def test_plain_http_to_loopback_never_goes_through_a_proxy(
    fake_server: FakeOIDCServer,
    elsewhere: FakeOIDCServer,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Plain http is allowed only because loopback crosses no network; a proxy would carry the
    # password in clear text to wherever it runs.
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, elsewhere.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    client = _signed_in(fake_server, clock)
    client.profile()
    assert elsewhere.seen == []
    assert len(fake_server.requests_to("/token")) == 1


class _WriteOnceKeyring(MemoryKeyring):
    """Stores the first secret, then fails every later write (a keyring that breaks mid-run)
    until ``repaired``."""

    repaired = False

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.secrets and not self.repaired:
            raise keyring.errors.PasswordSetError("write failed")
        super().set_password(service, username, password)


def test_a_failed_write_of_the_rotated_token_is_replayed_and_the_spent_one_never_presented(
    fake_server: FakeOIDCServer, clock: FakeClock, tmp_path: Any
) -> None:
    # The keyring keeps the spent token after the failed write, but the marker beside the lock
    # says it is out of date: no process presents it (the server would revoke the session as
    # stolen), and the rotated session is written back once the keyring works again.
    backend = _WriteOnceKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        client = _client(fake_server.url, clock, store=KeyringStore(timeout=5), lock_dir=tmp_path)
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=True)
        assert [json.loads(v)["refresh_token"] for v in backend.secrets.values()] == ["refresh-1"]
        clock.advance(3600)
        client.profile()  # refreshes; saving refresh-2 fails
        status = client.status()
        assert status.signed_in and status.remembered
        assert status.unsaved is not None and "could not be saved" in status.unsaved
        assert "PasswordSetError" in status.unsaved
        other = _client(fake_server.url, clock, store=KeyringStore(timeout=5), lock_dir=tmp_path)
        with pytest.raises(KeyringUnavailable, match="out of date"):
            other.load_stored("alice")  # refresh-1 is stored, but spent: never adopted
        assert not client.write_back()  # the keyring still refuses
        backend.repaired = True
        assert client.write_back()
        assert client.status().unsaved is None
        assert [json.loads(v)["refresh_token"] for v in backend.secrets.values()] == ["refresh-2"]
        assert other.load_stored("alice")
        refreshes = [
            r
            for r in fake_server.requests_to("/token")
            if r.form.get("refresh_token") == "refresh-1"
        ]
        assert len(refreshes) == 1  # the spent token went to the server exactly once
    finally:
        keyring.set_keyring(previous)


def test_a_lock_held_too_long_is_its_own_error_and_sign_out_forgets_nothing(
    fake_server: FakeOIDCServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import filelock

    real = filelock.FileLock

    def quick(path: str, timeout: float = -1) -> Any:  # the client's 45 s wait, made 0.2 s
        return real(path, timeout=0.2)

    store = MemoryStore()
    client = _client(fake_server.url, clock, store=store, lock_dir=tmp_path)
    try:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=True)
        (lock_file,) = tmp_path.glob("refresh-*.lock")
        holder = real(str(lock_file))  # another process, busy with the session
        holder.acquire()
        monkeypatch.setattr(filelock, "FileLock", quick)
        clock.advance(61)
        with pytest.raises(LockTimeout, match="locked for too long"):
            client.profile()
        assert client.status().signed_in  # kept: try again later
        with pytest.raises(LockTimeout):  # nothing forgotten: the holder may be rotating it
            client.sign_out()
        assert client.status().signed_in
        assert store.load(client.server_url, "alice") is not None
        holder.release()
        assert client.sign_out() is Revocation.REVOKED
        assert store.load(client.server_url, "alice") is None
    finally:
        client.close()
