"""Server metadata from both documents (OIDC discovery and RFC 8414), merged; the scope every
grant asks for; sign-out where only the RFC 8414 document names the revocation endpoint.

The servers are real HTTP on loopback (tests/core/fakes.py): an issuer with a path, as
Keycloak realms and django-oauth-toolkit mounts have, so RFC 8414 §3.1's path insertion is
what finds its document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from desktop.auth import messages
from desktop.auth.errors import ConfigurationError
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import Revocation
from desktop.auth.oauth import ServerMetadata, metadata_urls, requested_scope
from desktop.auth.session import AuthClient
from desktop.auth.store import MemoryStore
from tests.core.fakes import FakeOIDCServer, Reply, Seen

REALM = "/realms/x"
OIDC = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"


class RealmServer:
    """A FakeOIDCServer whose issuer is ``<url>/realms/x``: the OIDC document without a
    revocation endpoint, the RFC 8414 one with it (as django-oauth-toolkit publishes them)."""

    def __init__(self, server: FakeOIDCServer) -> None:
        self.server = server
        self.issuer = server.url + REALM
        self.oidc: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "scopes_supported": ["openid", "profile", "email", "groups"],
        }
        self.oauth: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": f"{self.issuer}/token",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "grant_types_supported": ["password", "refresh_token"],
        }
        self.publish(OIDC + "", lambda: self.oidc)
        self.publish(RFC8414 + REALM, lambda: self.oauth)
        server.routes[f"{REALM}/token"] = server.good_token
        server.routes[f"{REALM}/userinfo"] = lambda seen: Reply.json(
            200, {"sub": "u1", "preferred_username": "alice"}
        )
        server.routes[f"{REALM}/revoke"] = lambda seen: Reply(200)

    def publish(self, path: str, document: Any) -> None:
        where = REALM + OIDC if path == OIDC else path

        def serve(seen: Seen) -> Reply:
            doc = document()
            return Reply.json(404, {"error": "not_found"}) if doc is None else Reply.json(200, doc)

        self.server.routes[where] = serve

    def client(self) -> AuthClient:
        return AuthClient(self.issuer, store=MemoryStore())


@pytest.fixture
def realm(fake_server: FakeOIDCServer) -> Iterator[RealmServer]:
    yield RealmServer(fake_server)


def test_the_rfc8414_url_inserts_the_well_known_path_before_the_issuer_path() -> None:
    assert metadata_urls("https://h/realms/x") == (
        "https://h/realms/x/.well-known/openid-configuration",
        "https://h/.well-known/oauth-authorization-server/realms/x",
    )
    assert metadata_urls("https://h/") == (
        "https://h/.well-known/openid-configuration",
        "https://h/.well-known/oauth-authorization-server",
    )


def test_both_documents_are_read_and_merged(realm: RealmServer) -> None:
    realm.oidc["jwks_uri"] = f"{realm.issuer}/certs"
    with realm.client() as client:
        metadata = client.metadata()
    assert metadata.revocation_endpoint == f"{realm.issuer}/revoke"  # only in RFC 8414's
    assert metadata.userinfo_endpoint == f"{realm.issuer}/userinfo"  # only in OIDC's
    assert metadata.jwks_uri == f"{realm.issuer}/certs"
    assert metadata.grant_types_supported == ("password", "refresh_token")
    assert metadata.scopes_supported == ("openid", "profile", "email", "groups")
    paths = [seen.path for seen in realm.server.seen]
    assert paths == [REALM + OIDC, RFC8414 + REALM]


def test_sign_out_revokes_where_only_the_rfc8414_document_says(realm: RealmServer) -> None:
    with realm.client() as client:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        assert client.sign_out() is Revocation.REVOKED
    (revoked,) = realm.server.requests_to(f"{REALM}/revoke")
    assert revoked.method == "POST"
    assert revoked.form == {
        "token": "refresh-1",
        "token_type_hint": "refresh_token",
        "client_id": "jwt-desktop",
    }


@pytest.mark.parametrize("which", ["oidc", "oauth"])
def test_an_issuer_mismatch_in_either_document_is_refused(realm: RealmServer, which: str) -> None:
    getattr(realm, which)["issuer"] = realm.server.url + "/realms/other"
    with realm.client() as client, pytest.raises(ConfigurationError, match="realms/other"):
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    assert realm.server.requests_to(f"{REALM}/token") == []  # no password sent anywhere


@pytest.mark.parametrize("missing", ["oidc", "oauth"])
def test_either_document_may_be_missing(realm: RealmServer, missing: str) -> None:
    realm.publish(OIDC if missing == "oidc" else RFC8414 + REALM, lambda: None)
    with realm.client() as client:
        metadata = client.metadata()
    assert metadata.token_endpoint == f"{realm.issuer}/token"
    assert (metadata.revocation_endpoint is None) == (missing == "oauth")
    assert (metadata.userinfo_endpoint is None) == (missing == "oidc")


def test_neither_document_is_a_configuration_error(realm: RealmServer) -> None:
    realm.publish(OIDC, lambda: None)
    realm.publish(RFC8414 + REALM, lambda: None)
    with realm.client() as client, pytest.raises(ConfigurationError, match=r"HTTP 404"):
        client.metadata()


def test_no_revocation_endpoint_is_said_as_such_not_as_a_failure(realm: RealmServer) -> None:
    realm.publish(RFC8414 + REALM, lambda: None)
    with realm.client() as client:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        outcome = client.sign_out()
        assert outcome is Revocation.NOT_OFFERED
        assert not client.status().signed_in
    assert [s for s in realm.server.seen if "revoke" in s.path] == []  # nothing was tried
    for text in (
        messages.sign_out_notice(outcome),
        messages.sign_out_line(outcome, "alice", realm.issuer),
    ):
        assert "could not" not in text and "offers no" in text
    assert "could not" in messages.sign_out_notice(Revocation.NOT_CONFIRMED)


@pytest.mark.parametrize(
    ("listed", "scope"),
    [
        (None, "openid profile email groups"),
        (["openid", "profile", "email", "groups"], "openid profile email groups"),
        (
            ["openid", "offline_access", "profile", "email", "groups"],
            "openid profile email groups offline_access",
        ),
        (
            ["openid", "profile", "sessions:admin", "offline_access"],
            "openid profile offline_access sessions:admin",
        ),
        (["something"], None),
    ],
)
def test_the_scope_asks_for_offline_access_exactly_when_listed(
    listed: list[str] | None, scope: str | None
) -> None:
    metadata = ServerMetadata(
        issuer="https://h",
        token_endpoint="https://h/token",
        scopes_supported=None if listed is None else tuple(listed),
    )
    assert requested_scope(metadata) == scope


@pytest.mark.parametrize("listed", [True, False])
def test_the_password_grant_sends_offline_access_when_listed(
    realm: RealmServer, listed: bool
) -> None:
    if listed:
        realm.oidc["scopes_supported"] = [*realm.oidc["scopes_supported"], "offline_access"]
    with realm.client() as client:
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    (sent,) = realm.server.requests_to(f"{REALM}/token")
    assert ("offline_access" in sent.form["scope"].split()) is listed


def test_supports_grant_uses_the_rfc8414_default_when_unlisted() -> None:
    unlisted = ServerMetadata(issuer="https://h", token_endpoint="https://h/token")
    assert unlisted.supports_grant("authorization_code")
    assert not unlisted.supports_grant("password")
    listed = ServerMetadata(
        issuer="https://h", token_endpoint="https://h/token", grant_types_supported=("password",)
    )
    assert listed.supports_grant("password") and not listed.supports_grant("authorization_code")
