"""The grant seam: a grant with no typed username (as the browser and device grants will be)
drops into ``sign_in`` unchanged; the account is named from the tokens; the ID-token validator
plugs in where the session says. Real HTTP against a loopback fake server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from desktop.auth.errors import Cancelled, ServerError, SubjectMismatch
from desktop.auth.grants import GrantContext, Progress, TokenResponse
from desktop.auth.session import AuthClient
from desktop.auth.store import MemoryStore
from tests.core.fakes import FakeOIDCServer, Reply


class NamelessGrant:
    """Like a browser grant: no username typed; reports progress, honours cancel."""

    grant_type = "urn:test:nameless"

    def __init__(self) -> None:
        self.contexts: list[GrantContext] = []

    def obtain(self, ctx: GrantContext) -> TokenResponse:
        self.contexts.append(ctx)
        ctx.progress(Progress("Continue in your browser.", url="https://example.org/authorize"))
        ctx.check_cancelled()
        data = ctx.token_request({"grant_type": "password", "username": "x", "password": "y"})
        return TokenResponse(ctx.tokens(data), nonce="n-1")


def _client(server: FakeOIDCServer, **kwargs: Any) -> AuthClient:
    return AuthClient(server.url, store=MemoryStore(), **kwargs)


def test_a_grant_without_a_username_is_named_from_userinfo(fake_server: FakeOIDCServer) -> None:
    grant = NamelessGrant()
    seen: list[Progress] = []
    with _client(fake_server) as client:
        result = client.sign_in(grant, remember=True, progress=seen.append)
        assert result.status.username == "alice"  # userinfo's preferred_username
        assert result.profile == {"sub": "u1", "preferred_username": "alice"}
        # The profile fetched to name the account is the result's: one userinfo request.
        assert len(fake_server.requests_to("/userinfo")) == 1
        (ctx,) = grant.contexts
        assert ctx.client_id == "jwt-desktop" and ctx.scope == "openid profile email groups"
        assert [p.url for p in seen] == ["https://example.org/authorize"]


def test_without_preferred_username_the_account_is_the_sub(fake_server: FakeOIDCServer) -> None:
    fake_server.routes["/userinfo"] = lambda seen: Reply.json(200, {"sub": "u-42"})
    with _client(fake_server) as client:
        assert client.sign_in(NamelessGrant(), remember=False).status.username == "u-42"


def test_a_cancelled_grant_starts_no_session(fake_server: FakeOIDCServer) -> None:
    import threading

    cancel = threading.Event()
    cancel.set()
    with _client(fake_server) as client:
        with pytest.raises(Cancelled):
            client.sign_in(NamelessGrant(), remember=False, cancel=cancel)
        assert not client.status().signed_in
    assert fake_server.requests_to("/token") == []


class FakeValidator:
    def __init__(self, claims: Mapping[str, Any]) -> None:
        self.claims = claims
        self.calls: list[dict[str, Any]] = []

    def __call__(self, id_token: str, **kwargs: Any) -> Mapping[str, Any]:
        self.calls.append({"id_token": id_token, **kwargs})
        return self.claims


def _with_id_token(fake_server: FakeOIDCServer) -> None:
    def token(seen: Any) -> Reply:
        reply = fake_server.good_token(seen)
        import json

        data = json.loads(reply.body) | {"id_token": "h.c.s"}
        return Reply.json(200, data)

    fake_server.routes["/token"] = token


def test_the_id_token_is_validated_before_it_names_the_account(
    fake_server: FakeOIDCServer,
) -> None:
    _with_id_token(fake_server)
    validator = FakeValidator({"sub": "u1", "preferred_username": "carol"})
    with _client(fake_server, id_token_validator=validator) as client:
        result = client.sign_in(NamelessGrant(), remember=False)
    assert result.status.username == "carol"
    assert result.profile is not None and result.profile_error is None
    (call,) = validator.calls
    assert call["id_token"] == "h.c.s" and call["nonce"] == "n-1"
    assert call["client_id"] == "jwt-desktop" and call["access_token"] == "access-1"


def test_a_profile_of_another_subject_is_refused(fake_server: FakeOIDCServer) -> None:
    _with_id_token(fake_server)
    validator = FakeValidator({"sub": "someone-else"})
    with _client(fake_server, id_token_validator=validator) as client:
        result = client.sign_in(NamelessGrant(), remember=False)
        assert result.status.signed_in and result.status.username == "someone-else"
        assert isinstance(result.profile_error, ServerError)
        assert isinstance(result.profile_error, SubjectMismatch)
        assert "another person than the one signed in" in str(result.profile_error)


def test_tokens_refused_after_they_arrived_are_revoked(fake_server: FakeOIDCServer) -> None:
    _with_id_token(fake_server)

    def refuse(id_token: str, **kwargs: Any) -> Mapping[str, Any]:
        raise ServerError("The ID token is not valid.")

    with _client(fake_server, id_token_validator=refuse) as client:
        with pytest.raises(ServerError, match="ID token is not valid"):
            client.sign_in(NamelessGrant(), remember=True)
        assert not client.status().signed_in
    (revoked,) = fake_server.requests_to("/revoke")
    assert revoked.form["token"] == "refresh-1"


def _instance(cls: type[Exception]) -> Exception:
    """One of each error class, built as the core builds it."""
    from desktop.auth import errors

    if issubclass(cls, errors.OAuthError):
        return cls("A sentence.", error="some_error")  # type: ignore[call-arg]
    if issubclass(cls, errors.InvalidIDToken):
        return cls("A sentence.", reason="aud")  # type: ignore[call-arg]
    if issubclass(cls, errors.ServerUnreachable):
        return cls("A sentence.", url="http://127.0.0.1:9")  # type: ignore[call-arg]
    return cls("A sentence.")


def test_describe_gives_every_error_a_kind_and_its_sentence() -> None:
    from desktop.auth import errors
    from desktop.auth.messages import ErrorKind, describe

    for name in errors.__all__:
        cls = getattr(errors, name)
        failure = describe(_instance(cls))
        # Local failures with their own sentence (no listener, an unreadable key, a lock held
        # too long) and the root are "unexpected"; every other error has a kind the widgets
        # react to.
        local = (
            errors.AuthError,
            errors.BrowserSignInError,
            errors.InvalidDPoPKey,
            errors.LockTimeout,
        )
        if cls not in local:
            assert failure.kind is not ErrorKind.UNEXPECTED, name
        assert failure.message, name
    # The sign-in refusals that are no outage: not retried as a server problem.
    for cls in (
        errors.StateMismatch,
        errors.IssuerMismatch,
        errors.InvalidIDToken,
        errors.SubjectMismatch,
        errors.AuthorizationDenied,
        errors.DeviceCodeExpired,
        errors.SignInTimedOut,
    ):
        assert describe(_instance(cls)).kind is ErrorKind.REFUSED, cls
    assert describe(_instance(errors.Cancelled)).kind is ErrorKind.CANCELLED
