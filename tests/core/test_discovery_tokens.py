"""Metadata parsing, the transport policy and the token set (no network)."""

from __future__ import annotations

import pytest

from desktop.auth.errors import ConfigurationError, ServerError
from desktop.auth.oauth import parse_metadata
from desktop.auth.tokens import TokenSet
from desktop.auth.transport import check_transport, is_loopback_host, normalize_server_url

ISSUER = "https://id.example.com"


def _doc(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "issuer": ISSUER,
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "jwks_uri": f"{ISSUER}/jwks",
        "scopes_supported": ["openid", "profile"],
    }
    doc.update(overrides)
    return doc


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1", "128.0.0.1", "localhost.evil.com", "evil.localhost"]
)
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765", "http://localhost/x", "http://[::1]:9/", "https://a.example"]
)
def test_transport_allows_loopback_http_and_any_https(url: str) -> None:
    assert check_transport(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.1.2.3:8765",
        "ftp://127.0.0.1",
        "127.0.0.1:8765",
        "https://",
        "https://user:pw@example.com",
        "http://127.0.0.1:notaport",
    ],
)
def test_transport_refuses_everything_else(url: str) -> None:
    with pytest.raises(ConfigurationError):
        check_transport(url)


def test_plain_http_to_a_remote_host_says_why() -> None:
    with pytest.raises(ConfigurationError, match=r"only loopback.*https://"):
        normalize_server_url("http://id.example.com")


def test_normalize_drops_trailing_slash_and_refuses_query() -> None:
    assert normalize_server_url(" https://id.example.com/realm/ ") == "https://id.example.com/realm"
    with pytest.raises(ConfigurationError):
        normalize_server_url("https://id.example.com/?x=1")


def test_parse_discovery_reads_endpoints() -> None:
    endpoints = parse_metadata(_doc(), issuer=ISSUER)
    assert endpoints.token_endpoint == f"{ISSUER}/token"
    assert endpoints.userinfo_endpoint == f"{ISSUER}/userinfo"
    assert endpoints.revocation_endpoint == f"{ISSUER}/revoke"
    assert endpoints.scopes_supported == ("openid", "profile")


def test_parse_discovery_ignores_trailing_slash_of_issuer() -> None:
    assert parse_metadata(_doc(issuer=ISSUER + "/"), issuer=ISSUER).issuer == ISSUER + "/"


def test_parse_discovery_optional_endpoints_may_be_absent() -> None:
    doc = _doc()
    del doc["revocation_endpoint"], doc["userinfo_endpoint"], doc["scopes_supported"]
    endpoints = parse_metadata(doc, issuer=ISSUER)
    assert endpoints.revocation_endpoint is None
    assert endpoints.userinfo_endpoint is None
    assert endpoints.scopes_supported is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (["not", "an", "object"], "not a JSON object"),
        (_doc(issuer=None), "no issuer"),
        (_doc(issuer="https://evil.example.com"), "issuer is 'https://evil.example.com'"),
        (_doc(token_endpoint=None), "token_endpoint"),
        (_doc(token_endpoint=42), "token_endpoint"),
        (_doc(token_endpoint="http://id.example.com/token"), "only loopback"),
        (_doc(userinfo_endpoint="http://id.example.com/userinfo"), "userinfo_endpoint"),
    ],
)
def test_parse_discovery_rejects_bad_documents(doc: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_metadata(doc, issuer=ISSUER)


def _response(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "access_token": "AT-secret-value",
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": "RT-secret-value",
        "scope": "openid profile",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_token_set_repr_and_str_hide_both_tokens() -> None:
    tokens = TokenSet.from_response(_response(), now=100.0)
    for text in (repr(tokens), str(tokens), f"{tokens}", repr([tokens])):
        assert "secret" not in text
        assert "<redacted>" in text


def test_token_set_expiry_is_measured_on_the_given_clock() -> None:
    tokens = TokenSet.from_response(_response(expires_in=900), now=100.0)
    assert tokens.lifetime == 900
    assert tokens.expires_in(400.0) == 600
    assert not tokens.is_stale(now=100.0 + 900 - 31, leeway=30)
    assert tokens.is_stale(now=100.0 + 900 - 30, leeway=30)


def test_leeway_is_capped_for_very_short_tokens() -> None:
    # A 10 s token with a 30 s leeway would otherwise be stale from the start.
    tokens = TokenSet.from_response(_response(expires_in=10), now=0.0)
    assert not tokens.is_stale(now=4.9, leeway=30)
    assert tokens.is_stale(now=5.0, leeway=30)


def test_token_without_expires_in_is_never_stale() -> None:
    tokens = TokenSet.from_response(_response(expires_in=None), now=0.0)
    assert tokens.expires_at is None
    assert not tokens.is_stale(now=1e9, leeway=30)


def test_refresh_response_without_refresh_token_keeps_the_old_one() -> None:
    tokens = TokenSet.from_response(
        _response(refresh_token=None), now=0.0, previous_refresh_token="old"
    )
    assert tokens.refresh_token == "old"


def test_token_type_is_case_insensitive_and_expires_in_may_be_a_string() -> None:
    tokens = TokenSet.from_response(_response(token_type="bearer", expires_in="60"), now=0.0)
    assert tokens.lifetime == 60


@pytest.mark.parametrize(
    "overrides",
    [
        {"access_token": None},
        {"access_token": ""},
        {"access_token": 12},
        {"token_type": None},
        {"token_type": "mac"},
        {"expires_in": -5},
        {"expires_in": "soon"},
        {"expires_in": True},
        {"refresh_token": 5},
    ],
)
def test_malformed_token_responses_are_server_errors(overrides: dict[str, object]) -> None:
    data = _response()
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ServerError) as caught:
        TokenSet.from_response(data, now=0.0)
    assert "secret" not in str(caught.value)


def test_bearer_challenges_are_parsed_with_quoted_commas() -> None:
    import requests

    from desktop.auth.oauth import bearer_error

    response = requests.Response()
    response.headers["WWW-Authenticate"] = (
        'Bearer realm="api", error="invalid_token", error_description="expired, at 12:00"'
    )
    assert bearer_error(response) == ("invalid_token", "expired, at 12:00")
    response.headers["WWW-Authenticate"] = 'Basic realm="x", error="invalid_token"'
    assert bearer_error(response) == (None, None)
    response.headers["WWW-Authenticate"] = "Bearer"
    assert bearer_error(response) == (None, None)


def test_the_token_set_converts_to_and_from_the_wall_clock() -> None:
    tokens = TokenSet.from_response(_response(), now=100.0)
    issued, expires = tokens.to_wall(now=130.0, wall_now=1_000_030.0)
    assert (issued, expires) == (1_000_000.0, 1_000_000.0 + 900)
    # Another process, 10 s later by the wall clock, whose monotonic clock reads 5.
    back = TokenSet.from_stored(
        access_token="a",
        refresh_token="r",
        token_type="Bearer",
        scope=None,
        issued_at=issued,
        expires_at=expires,
        now=5.0,
        wall_now=1_000_040.0,
    )
    assert back.lifetime == 900
    assert back.expires_in(5.0) == 900 - 40


def test_the_id_token_is_kept_and_never_shown() -> None:
    tokens = TokenSet.from_response(_response(id_token="header.claims.sig"), now=0)
    assert tokens.id_token == "header.claims.sig"
    assert "header.claims.sig" not in repr(tokens)
    with pytest.raises(ServerError, match="ID token"):
        TokenSet.from_response(_response(id_token=42), now=0)


def test_client_side_input_errors_are_not_invalid_credentials() -> None:
    from desktop.auth.errors import InputError, InvalidCredentials
    from desktop.auth.grants import GrantContext, PasswordGrant
    from desktop.auth.oauth import ServerMetadata

    ctx = GrantContext(
        metadata=ServerMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token"),
        transport=None,  # type: ignore[arg-type]  # never reached
        client_id="jwt-desktop",
        scope=None,
        clock=lambda: 0.0,
    )
    for grant in (PasswordGrant("", "pw"), PasswordGrant("alice", "")):
        with pytest.raises(InputError) as caught:
            grant.obtain(ctx)
        assert not isinstance(caught.value, InvalidCredentials)
    assert "s3cret" not in repr(PasswordGrant("alice", "s3cret"))


def test_the_error_tree() -> None:
    from desktop.auth import errors

    assert issubclass(errors.ClientRejected, errors.OAuthError)
    assert not issubclass(errors.ClientRejected, errors.ConfigurationError)
    assert issubclass(errors.LockTimeout, errors.AuthError)
    assert issubclass(errors.SecretTooLong, errors.StorageError)
    assert not issubclass(errors.SecretTooLong, errors.KeyringUnavailable)
    assert not issubclass(errors.InputError, errors.OAuthError)
    # Every class is drawn in the module docstring.
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), name
