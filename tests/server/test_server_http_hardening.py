"""HTTP-level hardening: no redirects, only our host names, no foreign Origin, nosniff, HEAD,
empty parameters, fixed error descriptions, least-privilege scopes, /docs offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from mock_server import create_app
from mock_server.throttle import FailureLimiter, address_key
from tests.server.helpers import (
    ALL_SCOPES,
    CLIENT_ID,
    ISSUER,
    FakeClock,
    _memory_store,
    app_client,
    bearer,
    client_of_each_app,  # noqa: F401 (the client fixture: both assemblies)
    password_grant,
    sign_in,
)
from tests.server.helpers import test_settings as settings_for

GOOD = {"grant_type": "password", "username": "alice", "password": "wonderland"}
# RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION = re.compile(r"^[\x20-\x21\x23-\x5B\x5D-\x7E]+$")


def assert_error(response: Any, status: int, error: str = "invalid_request") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json()["error"] == error
    assert "location" not in response.headers


# No redirects


@pytest.mark.parametrize("path", ["/token/", "/revoke/", "/userinfo/", "/healthz/", "//token"])
def test_a_trailing_slash_is_not_redirected(client: TestClient, path: str) -> None:
    # RFC 9700 §4.12: a 307 would make the client re-send its password to Location.
    response = client.post(path, data={**GOOD, "client_id": CLIENT_ID}, follow_redirects=False)
    assert_error(response, 404, "not_found")
    assert_error(client.get(path, follow_redirects=False), 404, "not_found")


# Host allow-list


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1", "testserver.x"])
def test_a_foreign_host_is_misdirected(client: TestClient, host: str) -> None:
    response = client.post("/token", data={**GOOD, "client_id": CLIENT_ID}, headers={"Host": host})
    assert_error(response, 421)
    assert_error(client.get("/healthz", headers={"Host": host}), 421)


@pytest.mark.parametrize("host", ["testserver", "testserver:80", "TESTSERVER:8080"])
def test_the_issuer_host_is_served_with_or_without_port(client: TestClient, host: str) -> None:
    assert client.get("/healthz", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1:8765", True),
        ("127.0.0.1", True),
        ("localhost:8765", True),
        ("localhost", True),
        ("[::1]:8765", True),
        ("[::1]", True),
        ("extra.example", True),
        ("attacker.example:8765", False),
        ("127.0.0.1.attacker.example", False),
    ],
)
def test_a_loopback_issuer_serves_the_loopback_names(
    clock: FakeClock, host: str, served: bool
) -> None:
    with app_client(
        clock, issuer="http://127.0.0.1:8765", allowed_hosts=("extra.example",)
    ) as client:
        status = client.get("/healthz", headers={"Host": host}).status_code
    assert status == (200 if served else 421)


# Origin


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://testserver:8080"])
def test_a_foreign_origin_is_refused_before_any_password_check(
    client: TestClient, origin: str
) -> None:
    for _ in range(8):  # more than the per-user limit of failures
        response = client.post(
            "/token",
            data={**GOOD, "password": "wrong", "client_id": CLIENT_ID},
            headers={"Origin": origin},
        )
        assert_error(response, 403)
    # None of them was a try: the right password still works.
    assert password_grant(client).status_code == 200


@pytest.mark.parametrize("origin", [None, "http://testserver"])
def test_no_origin_or_our_own_passes(client: TestClient, origin: str | None) -> None:
    headers = {} if origin is None else {"Origin": origin}
    response = client.post("/token", data={**GOOD, "client_id": CLIENT_ID}, headers=headers)
    assert response.status_code == 200


def test_a_loopback_server_accepts_its_own_pages_under_each_loopback_name(
    clock: FakeClock,
) -> None:
    with app_client(clock, issuer="http://127.0.0.1:8765") as client:
        for origin, status in [
            ("http://127.0.0.1:8765", 200),
            ("http://localhost:8765", 200),
            ("http://[::1]:8765", 200),
            ("http://localhost:3000", 403),  # another local web app
            ("https://127.0.0.1:8765", 403),
        ]:
            response = client.get("/healthz", headers={"Origin": origin})
            assert response.status_code == status, origin


# Per-address throttle


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("127.0.0.1", "127.0.0.2"),
        ("127.0.0.1", "::1"),
        ("::ffff:127.0.0.1", "127.9.9.9"),
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::7"),
        ("10.0.0.1", "::ffff:10.0.0.1"),
    ],
)
def test_these_addresses_count_as_one(a: str, b: str) -> None:
    assert address_key(a) == address_key(b)


@pytest.mark.parametrize(
    ("a", "b"), [("10.0.0.1", "10.0.0.2"), ("2001:db8:1:2::1", "2001:db8:1:3::1")]
)
def test_these_addresses_count_apart(a: str, b: str) -> None:
    assert address_key(a) != address_key(b)


def test_the_loopback_range_shares_one_address_limit(clock: FakeClock) -> None:
    app = create_app(settings_for(), clock=clock, store=_memory_store())
    with (
        TestClient(app, base_url=ISSUER, client=("127.0.0.1", 50000)) as first,
        TestClient(app, base_url=ISSUER, client=("127.0.0.2", 50001)) as second,
    ):
        # 20 failures from 127.0.0.1 (each for another user, so no user limit is reached) ...
        for i in range(20):
            assert password_grant(first, f"user{i}", "wrong").status_code == 400
        # ... and 127.0.0.2 is the same machine: its try is refused too.
        assert password_grant(second, "user99", "wrong").status_code == 429


def test_the_limiter_counts_by_key() -> None:
    limiter = FailureLimiter(lambda: 0.0, limit=1, window=60)
    assert limiter.begin(address_key("2001:db8::1")) is None
    limiter.finish(address_key("2001:db8::1"), failed=True)
    assert limiter.begin(address_key("2001:db8::2")) is not None


# Least privilege


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_groups_only_with_the_groups_scope(client: TestClient) -> None:
    narrow = sign_in(client, scope="openid profile")
    assert "groups" not in claims_of(narrow["access_token"])
    profile = client.get("/userinfo", headers=bearer(narrow["access_token"])).json()
    assert "groups" not in profile
    assert profile["preferred_username"] == "alice"
    wide = sign_in(client, scope="openid groups")
    assert claims_of(wide["access_token"])["groups"] == ["staff", "admin"]
    assert client.get("/userinfo", headers=bearer(wide["access_token"])).json()["groups"] == [
        "staff",
        "admin",
    ]


@pytest.mark.parametrize("scope", [None, "openid", "openid groups"])
def test_the_admin_api_needs_the_admin_scope_even_for_an_admin(
    client: TestClient, scope: str | None
) -> None:
    alice = sign_in(client, scope=scope)
    for response in (
        client.get("/api/sessions", headers=bearer(alice["access_token"])),
        client.delete("/api/sessions/any", headers=bearer(alice["access_token"])),
    ):
        assert_error(response, 403, "insufficient_scope")
        assert response.headers["WWW-Authenticate"].startswith("Bearer error=")
        assert 'scope="sessions:admin"' in response.headers["WWW-Authenticate"]


def test_the_admin_scope_is_offered_and_granted_to_admins(client: TestClient) -> None:
    doc = client.get("/.well-known/openid-configuration").json()
    assert "sessions:admin" in doc["scopes_supported"]
    alice = sign_in(client, scope=ALL_SCOPES)
    assert alice["scope"] == ALL_SCOPES
    assert client.get("/api/sessions", headers=bearer(alice["access_token"])).status_code == 200


def test_a_non_admin_asking_for_the_admin_scope_gets_it_narrowed_away(client: TestClient) -> None:
    bob = sign_in(client, "bob", scope="openid sessions:admin")
    assert bob["scope"] == "openid"
    assert "sessions:admin" not in claims_of(bob["access_token"])["scope"]


# Empty parameters (RFC 6749 §3.2)


def test_an_empty_scope_is_the_default_scope(client: TestClient) -> None:
    response = client.post("/token", data={**GOOD, "client_id": CLIENT_ID, "scope": ""})
    assert response.status_code == 200
    assert response.json()["scope"] == "openid profile email"


@pytest.mark.parametrize("field", ["password", "username"])
def test_an_empty_credential_is_missing_and_costs_no_try(client: TestClient, field: str) -> None:
    for _ in range(8):  # more than the per-user limit of failures
        response = client.post("/token", data={**GOOD, "client_id": CLIENT_ID, field: ""})
        assert_error(response, 400)
        assert response.json()["error_description"] == (
            "The username and password parameters are required"
        )
    assert password_grant(client).status_code == 200


def test_an_empty_client_id_is_missing(client: TestClient) -> None:
    response = client.post("/token", data={**GOOD, "client_id": ""})
    assert_error(response, 400, "invalid_client")
    assert response.json()["error_description"] == "The client_id parameter is required"


# Error descriptions never echo input


def malformed_requests(client: TestClient) -> Iterator[Any]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    good = "grant_type=password&username=alice&password=wonderland&client_id=jwt-desktop"
    tokens = sign_in(client)
    for body in [
        good + "&%C3%A9=1&%C3%A9=2",
        good + '&"\\=1&"\\=2',
        good + "&username=bob",
        "grant_type=%22%5C",
        "grant_type=password&client_id=%22%5C%C3%A9",
        "grant_type=password&client_id=jwt-desktop&username=%22&password=%5C",
        "grant_type=refresh_token&client_id=jwt-desktop&refresh_token=%22%5C%C3%A9",
        "grant_type=refresh_token&client_id=jwt-desktop",
        f"grant_type=refresh_token&client_id=jwt-desktop&refresh_token={tokens['refresh_token']}"
        "&scope=%22%5C%C3%A9",
        "grant_type=password&client_id=jwt-desktop&username=alice&password=x&scope=%C3%A9",
        "\xff\xfe",
        "=" * 100,
        "&".join(f"f{i}=1" for i in range(40)),
        "x" * 20_000,
    ]:
        yield client.post("/token", content=body.encode("utf-8", "surrogateescape"), headers=form)
        yield client.post("/revoke", content=body.encode("utf-8", "surrogateescape"), headers=form)
    yield client.post("/token", content=good, headers={"Content-Type": 'text/"\\é'.encode()})
    yield client.post("/token", content=good, headers={**form, "Content-Length": "x"})
    yield client.post("/revoke", data={"token": "x"})
    yield client.post("/token", content=good, headers={**form, "Authorization": "Basic x"})
    for authorization in ["Bearer \"\\'é", "Bearer x.y.z", "Basic abc", "Bearer " + "a" * 9000]:
        headers = {"Authorization": authorization.encode()}
        yield client.get("/userinfo", headers=headers)
        yield client.get("/api/sessions", headers=headers)
    yield client.get("/api/sessions", headers=bearer(tokens["access_token"]))
    yield client.delete("/api/sessions/%22%5C%C3%A9", headers=bearer(tokens["access_token"]))
    yield client.get("/%22%5C%C3%A9")
    yield client.put("/token")
    yield client.get("/healthz", headers={"Host": 'é"\\'.encode()})
    yield client.get("/healthz", headers={"Origin": 'é"\\'.encode()})
    for _ in range(6):
        yield password_grant(client, "alice", 'wrong"\\é')


def test_every_error_description_is_a_fixed_sentence_in_the_rfc_character_set(
    client: TestClient,
) -> None:
    seen = 0
    for response in malformed_requests(client):
        if response.status_code < 400:
            continue
        seen += 1
        description = response.json()["error_description"]
        assert DESCRIPTION.match(description), (response.request.url, description)
        assert "é" not in description and '"\\' not in description
        challenge = response.headers.get("WWW-Authenticate", "")
        assert challenge.isascii() and "\\" not in challenge
    assert seen > 40


# HEAD, nosniff


def get_paths(client: TestClient) -> list[str]:
    spec = client.get("/openapi.json").json()
    return [path for path, ops in spec["paths"].items() if "get" in ops]


def test_head_answers_every_get_resource_like_get_without_a_body(client: TestClient) -> None:
    tokens = sign_in(client, scope=ALL_SCOPES)
    paths = [*get_paths(client), "/openapi.json", "/docs", "/docs/static/swagger-ui.css"]
    assert {"/healthz", "/userinfo", "/api/sessions", "/.well-known/jwks.json"} <= set(paths)
    for path in paths:
        for headers in ({}, bearer(tokens["access_token"])):
            got = client.get(path, headers=headers)
            head = client.head(path, headers=headers)
            assert head.status_code == got.status_code, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert head.headers["x-content-type-options"] == "nosniff", path


def test_nosniff_on_every_answer(client: TestClient) -> None:
    for response in [
        client.get("/healthz"),
        client.get("/nope"),
        client.get("/token"),
        client.get("/userinfo"),
        client.get("/healthz", headers={"Host": "evil.example"}),
        client.get("/healthz", headers={"Origin": "http://evil.example"}),
        client.post("/token", content="x" * 20_000),
        client.post("/revoke", data={"token": "t", "client_id": CLIENT_ID}),
        password_grant(client),
        client.get("/docs"),
    ]:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url


# /docs offline


def test_docs_work_offline_under_a_csp(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    # No URL of any other host, and every script and stylesheet is served here.
    assert not re.search(r"(https?:)?//", page.text.replace("<!DOCTYPE html>", ""))
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    for source in sources:
        assert source.startswith("/"), source
        assert client.get(source).status_code == 200, source
    bundle = client.get("/docs/static/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert "<script>" not in page.text  # no inline script: the CSP allows none


# The OpenAPI document


def test_openapi_documents_every_answer_and_no_422(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "422" not in str(spec["paths"])
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert {"400", "403", "413", "421"} <= set(operation["responses"]), (path, method)
            # Made before any route, these are JSON whatever the route answers otherwise.
            for status in ("403", "413", "421"):
                content = operation["responses"][status]["content"]
                assert "application/json" in content, (path, method, status)
    assert {"401", "429"} <= set(spec["paths"]["/token"]["post"]["responses"])
    revoked = spec["paths"]["/revoke"]["post"]["responses"]["200"]
    assert "content" not in revoked
    assert "post" in spec["paths"]["/userinfo"]
    assert "head" in spec["paths"]["/userinfo"]
    assert "404" in spec["paths"]["/api/sessions/{session_id}"]["delete"]["responses"]
    token_ok = spec["paths"]["/token"]["post"]["responses"]["200"]["content"]
    assert token_ok["application/json"]["schema"] == {"$ref": "#/components/schemas/TokenResponse"}
