"""DPoP in the session (RFC 9449), against the live bundled server (``--dpop required``,
``--dpop-nonce``, ``--dpop off``) and, for the faults it cannot produce (a resource demanding a
nonce, a server that answers Bearer to a proof), a small loopback fake.

Every in-process client's wall clock is the server's (``server.wall_clock``), so its proofs'
``iat`` move with the server's test clock, as an NTP-synchronised client's would.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from desktop.auth.dpop import DPoPKey
from desktop.auth.errors import DPoPRefused, ServerError, SessionEnded
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import ErrorKind, Revocation, describe
from desktop.auth.oauth import challenges
from desktop.auth.session import AuthClient
from desktop.auth.store import KeyringStore, MemoryStore, StoredSession, TokenStore
from desktop.auth.tokens import TokenSet
from tests.core.fakes import FakeClock, FakeOIDCServer, Reply, Seen, counting_session
from tests.support.keyring import MemoryKeyring
from tests.support.server import RunningServer, StartServer

ALICE, ALICE_PW = "alice", "wonderland"
ENTRY = "jwt-desktop:{url}"


class Client:
    """An AuthClient with a counting transport, a fake monotonic clock, the server's time."""

    def __init__(self, url: str, store: TokenStore, tmp: Any, wall: Any) -> None:
        self.http, self.adapter = counting_session()
        self.clock = FakeClock()
        self.auth = AuthClient(
            url,
            store=store,
            http=self.http,
            clock=self.clock,
            wall_clock=wall,
            lock_dir=tmp / "locks",
            timeout=10,
        )

    def close(self) -> None:
        self.auth.close()
        self.http.close()


@pytest.fixture
def make_client(tmp_path: Any) -> Iterator[Any]:
    clients: list[Client] = []

    def make(server: Any, store: TokenStore | None = None) -> Client:
        wall = getattr(server, "wall_clock", time.time)  # the fake has no clock of its own
        client = Client(server.url, store or MemoryStore(), tmp_path, wall)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _families(server: RunningServer) -> list[tuple[str | None, str | None]]:
    with sqlite3.connect(server.db) as db:
        return db.execute("SELECT dpop_jkt, revoked_at FROM families").fetchall()


def _token_posts(server: RunningServer) -> int:
    return sum('"POST /token ' in line for line in server.output().splitlines())


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _verified_proof(headers: dict[str, str]) -> dict[str, Any]:
    """A request's DPoP proof, verified with its own jwk (what a server does first)."""
    proof = headers["DPoP"]
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    key = jwt.PyJWK(header["jwk"], algorithm="ES256").key
    return dict(jwt.decode(proof, key, algorithms=["ES256"], options={"verify_iat": False}))


# -- the live server, --dpop required ----------------------------------------------------------


@pytest.fixture
def dpop_server(start_server: StartServer) -> RunningServer:
    return start_server(access_ttl="60s", extra_args=["--dpop", "required"])


def test_sign_in_refresh_and_profile_are_bound_to_the_sessions_key(
    dpop_server: RunningServer, make_client: Any
) -> None:
    client = make_client(dpop_server)
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    assert result.profile is not None and result.profile["preferred_username"] == ALICE
    assert result.status.bound
    signer = client.auth._state.dpop
    assert signer is not None
    first = client.auth._state.tokens
    assert first is not None and first.token_type == "DPoP"
    # The server bound both the access token (cnf.jkt, RFC 9449 §6) and the sign-in (its
    # refresh tokens) to this key.
    assert _claims(first.access_token)["cnf"] == {"jkt": signer.key.thumbprint}
    assert _families(dpop_server) == [(signer.key.thumbprint, None)]

    client.clock.advance(45)
    dpop_server.advance_clock(45)
    profile = client.auth.profile()  # stale: a refresh with a proof first, then the profile
    assert profile["preferred_username"] == ALICE
    assert client.adapter.grants("refresh_token") == 1
    second = client.auth._state.tokens
    assert second is not None and second.access_token != first.access_token
    assert _claims(second.access_token)["cnf"] == {"jkt": signer.key.thumbprint}
    assert client.auth.status().bound and client.auth.status().refresh_count == 1
    # The bound token is useless as a Bearer token, and without a proof.
    import requests

    with requests.get(
        f"{dpop_server.url}/userinfo",
        headers={"Authorization": f"Bearer {second.access_token}"},
        timeout=10,
    ) as stolen:
        assert stolen.status_code == 401
    assert client.auth.sign_out() is Revocation.REVOKED  # the revocation carried a proof
    assert _families(dpop_server)[0][1] is not None


def test_a_bound_session_survives_a_restart_with_no_refresh(
    dpop_server: RunningServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    """The key travels in the same keyring entry: a new AuthClient on the same store reuses
    the stored access token (zero refresh), proves it with the stored key, and later refreshes
    with it; the session stays bound to the one key throughout."""
    first = make_client(dpop_server, KeyringStore(timeout=5))
    first.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    entry = json.loads(memory_keyring.secrets[(ENTRY.format(url=dpop_server.url), ALICE)])
    assert entry["token_type"] == "DPoP"
    thumbprint = DPoPKey.from_json(entry["dpop_key"]).thumbprint
    assert first.auth._state.dpop is not None
    assert thumbprint == first.auth._state.dpop.key.thumbprint
    first.close()
    posts = _token_posts(dpop_server)

    again = make_client(dpop_server, KeyringStore(timeout=5))
    profile = again.auth.restore(ALICE)
    assert profile is not None and profile["preferred_username"] == ALICE
    assert _token_posts(dpop_server) == posts  # the stored access token served: no refresh
    assert again.auth.status().bound and again.auth.status().remembered

    again.clock.advance(45)
    dpop_server.advance_clock(45)
    assert again.auth.profile()["preferred_username"] == ALICE
    assert again.adapter.grants("refresh_token") == 1
    rotated = json.loads(memory_keyring.secrets[(ENTRY.format(url=dpop_server.url), ALICE)])
    assert rotated["refresh_token"] != entry["refresh_token"]
    assert rotated["dpop_key"] == entry["dpop_key"]
    assert _families(dpop_server) == [(thumbprint, None)]  # no reuse, still bound

    assert again.auth.sign_out() is Revocation.REVOKED
    assert (ENTRY.format(url=dpop_server.url), ALICE) not in memory_keyring.secrets


def test_a_proof_of_another_key_at_the_resource_is_a_dpop_refusal_not_a_refresh(
    dpop_server: RunningServer, make_client: Any
) -> None:
    client = make_client(dpop_server)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    signer = client.auth._state.dpop
    assert signer is not None
    signer.key = DPoPKey.generate(clock=dpop_server.wall_clock)  # as if the key were lost
    with pytest.raises(DPoPRefused) as refused:
        client.auth.profile()
    assert refused.value.error == "invalid_dpop_proof" and refused.value.status == 401
    assert client.adapter.grants("refresh_token") == 0  # not mistaken for an expired token
    failure = describe(refused.value)
    assert failure.kind is ErrorKind.SERVER
    assert "DPoP" in failure.message and "password" not in failure.message
    assert "clock" not in failure.message  # the clocks agree: nothing said of them
    assert client.auth.status().signed_in  # the session is not thrown away for it


@pytest.mark.parametrize(("skew", "side"), [(-300.0, "behind"), (300.0, "ahead of")])
def test_a_proof_refused_for_a_wrong_clock_says_the_clock_is_off(
    dpop_server: RunningServer, tmp_path: Any, skew: float, side: str
) -> None:
    # This computer's clock 5 minutes off: the server refuses the proofs (their iat), and the
    # sentence says which way the clock is off, from the answer's Date header.
    client = Client(dpop_server.url, MemoryStore(), tmp_path, lambda: time.time() + skew)
    try:
        with pytest.raises(DPoPRefused) as refused:
            client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    finally:
        client.close()
    message = describe(refused.value).message
    assert refused.value.error == "invalid_dpop_proof"
    assert f"This computer's clock is about 5 minutes {side} the server's" in message
    assert "password" not in message.lower()


def test_a_resource_refusing_a_proof_for_a_wrong_clock_says_so(
    dpop_server: RunningServer, tmp_path: Any
) -> None:
    skew = [0.0]
    client = Client(dpop_server.url, MemoryStore(), tmp_path, lambda: time.time() + skew[0])
    try:
        client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
        skew[0] = -600.0  # the clock is set back while signed in
        with pytest.raises(DPoPRefused) as refused:
            client.auth.profile()
    finally:
        client.close()
    assert refused.value.status == 401
    assert "clock is about 10 minutes behind the server's" in describe(refused.value).message


def test_a_bound_refresh_token_with_another_keys_proof_ends_nothing_at_the_server(
    dpop_server: RunningServer, make_client: Any
) -> None:
    client = make_client(dpop_server)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    signer = client.auth._state.dpop
    assert signer is not None
    signer.key = DPoPKey.generate(clock=dpop_server.wall_clock)
    client.clock.advance(45)
    # Without its key the session cannot go on here; at the server, nothing was spent or
    # revoked (a thief's proof must not end its owner's session).
    with pytest.raises(SessionEnded) as ended:
        client.auth.profile()
    assert ended.value.error == "invalid_grant"
    assert "another DPoP key" in str(ended.value)
    assert _families(dpop_server)[0][1] is None


# -- nonces ----------------------------------------------------------------------------------


def test_the_token_endpoint_nonce_is_retried_once_then_remembered(
    start_server: StartServer, make_client: Any
) -> None:
    server = start_server(access_ttl="60s", extra_args=["--dpop", "required", "--dpop-nonce"])
    client = make_client(server)
    client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    # The first proof had no nonce: 400 use_dpop_nonce with DPoP-Nonce, then one retry.
    token_calls = [e for e in client.adapter.log if e[1] == "/token"]
    assert [e[3] for e in token_calls] == [400, 200]
    assert client.auth.status().bound
    # The nonce is remembered: the refresh needs no second round.
    client.clock.advance(45)
    server.advance_clock(45)
    assert client.auth.profile()["preferred_username"] == ALICE
    token_calls = [e for e in client.adapter.log if e[1] == "/token"]
    assert [e[3] for e in token_calls] == [400, 200, 200]
    assert _token_posts(server) == 3


def _dpop_discovery(fake: FakeOIDCServer) -> None:
    fake.routes["/.well-known/openid-configuration"] = lambda seen: Reply.json(
        200,
        {
            "issuer": fake.url,
            "token_endpoint": f"{fake.url}/token",
            "userinfo_endpoint": f"{fake.url}/userinfo",
            "revocation_endpoint": f"{fake.url}/revoke",
            "dpop_signing_alg_values_supported": ["ES256"],
        },
    )


@pytest.fixture
def fake() -> Iterator[FakeOIDCServer]:
    server = FakeOIDCServer()
    _dpop_discovery(server)
    yield server
    server.close()


def _dpop_token(seen: Seen, n: int = 1) -> Reply:
    assert "DPoP" in seen.headers  # no token without a proof
    return Reply.json(
        200,
        {
            "access_token": f"access-{n}",
            "token_type": "dpop",  # RFC 6749 §7.1: compared case-insensitively
            "expires_in": 60,
            "refresh_token": f"refresh-{n}",
        },
    )


def test_a_resource_nonce_is_retried_once_without_a_refresh(
    fake: FakeOIDCServer, make_client: Any
) -> None:
    fake.routes["/token"] = _dpop_token

    def userinfo(seen: Seen) -> Reply:
        proof = _verified_proof(seen.headers)
        assert seen.headers["Authorization"] == "DPoP access-1"
        if proof.get("nonce") != "rs-nonce-1":
            return Reply.json(
                401,
                {"error": "use_dpop_nonce"},
                **{
                    "WWW-Authenticate": 'DPoP error="use_dpop_nonce", '
                    'error_description="Resource server requires nonce in DPoP proof"',
                    "DPoP-Nonce": "rs-nonce-1",
                },
            )
        return Reply.json(200, {"sub": "u1", "preferred_username": ALICE})

    fake.routes["/userinfo"] = userinfo
    client = make_client(fake)
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    assert result.profile == {"sub": "u1", "preferred_username": ALICE}
    assert result.status.bound
    calls = fake.requests_to("/userinfo")
    assert len(calls) == 2
    first, second = (_verified_proof(c.headers) for c in calls)
    assert "nonce" not in first and second["nonce"] == "rs-nonce-1"
    assert first["jti"] != second["jti"]
    assert first["ath"] == second["ath"]  # both bound to the one access token
    assert len(fake.requests_to("/token")) == 1  # a nonce retry is not a refresh
    # The next request carries the remembered nonce at once.
    client.auth.profile()
    assert len(fake.requests_to("/userinfo")) == 3


def test_a_resource_that_keeps_asking_for_nonces_is_never_looped_on(
    fake: FakeOIDCServer, make_client: Any
) -> None:
    fake.routes["/token"] = _dpop_token
    counter = iter(range(1000))

    def userinfo(seen: Seen) -> Reply:
        return Reply.json(
            401,
            {},
            **{
                "WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="ES256"',
                "DPoP-Nonce": f"fresh-{next(counter)}",
            },
        )

    fake.routes["/userinfo"] = userinfo
    client = make_client(fake)
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    assert isinstance(result.profile_error, DPoPRefused)
    assert len(fake.requests_to("/userinfo")) == 2
    assert len(fake.requests_to("/token")) == 1


def test_invalid_token_then_a_nonce_refreshes_once_and_retries_the_nonce_once(
    fake: FakeOIDCServer, make_client: Any
) -> None:
    """The two rules combine: 401 invalid_token → one refresh and one resend; that resend's
    use_dpop_nonce → one more send with the nonce. Four requests at most, one refresh."""
    issued = iter(range(1, 100))
    fake.routes["/token"] = lambda seen: _dpop_token(seen, next(issued))

    def userinfo(seen: Seen) -> Reply:
        proof = _verified_proof(seen.headers)
        if seen.headers["Authorization"] == "DPoP access-1":
            return Reply.json(401, {}, **{"WWW-Authenticate": 'DPoP error="invalid_token"'})
        if proof.get("nonce") != "n-2":
            return Reply.json(
                401,
                {},
                **{"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": "n-2"},
            )
        return Reply.json(200, {"sub": "u1", "preferred_username": ALICE})

    fake.routes["/userinfo"] = userinfo
    client = make_client(fake)
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    assert result.profile == {"sub": "u1", "preferred_username": ALICE}
    assert [c.headers["Authorization"] for c in fake.requests_to("/userinfo")] == [
        "DPoP access-1",
        "DPoP access-2",
        "DPoP access-2",
    ]
    refreshes = [s for s in fake.requests_to("/token") if s.form["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1
    assert "DPoP" in refreshes[0].headers  # the refresh carried a proof too


def test_a_dpop_refusal_at_sign_in_is_not_a_wrong_password(
    fake: FakeOIDCServer, make_client: Any
) -> None:
    fake.routes["/token"] = lambda seen: Reply.json(
        400, {"error": "invalid_dpop_proof", "error_description": "DPoP proof JWT is invalid"}
    )
    client = make_client(fake)
    with pytest.raises(DPoPRefused) as refused:
        client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    message = describe(refused.value).message
    assert "DPoP" in message and "DPoP proof JWT is invalid" in message
    assert "password" not in message.lower()


# -- Bearer fallback -----------------------------------------------------------------------------


def test_dpop_off_means_bearer_and_the_status_says_so(
    start_server: StartServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    server = start_server(access_ttl="60s", extra_args=["--dpop", "off"])
    client = make_client(server, KeyringStore(timeout=5))
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    assert not result.status.bound
    assert client.auth._state.dpop is None
    entry = StoredSession.from_json(memory_keyring.secrets[(ENTRY.format(url=server.url), ALICE)])
    assert entry is not None and entry.token_type == "Bearer" and entry.dpop_key is None
    assert _families(server) == [(None, None)]


def test_a_server_answering_bearer_to_a_proof_gets_bearer(
    fake: FakeOIDCServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    client = make_client(fake, KeyringStore(timeout=5))
    result = client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=True)
    assert "DPoP" in fake.requests_to("/token")[0].headers  # offered, and declined
    assert not result.status.bound
    userinfo = fake.requests_to("/userinfo")[-1]
    assert userinfo.headers["Authorization"] == "Bearer access-1"
    assert "DPoP" not in userinfo.headers
    entry = StoredSession.from_json(memory_keyring.secrets[(ENTRY.format(url=fake.url), ALICE)])
    assert entry is not None and entry.dpop_key is None  # no key kept for Bearer tokens
    client.auth.sign_out()
    assert "DPoP" not in fake.requests_to("/revoke")[-1].headers


def test_a_dpop_token_nobody_asked_for_is_refused(fake: FakeOIDCServer, make_client: Any) -> None:
    # Discovery lists no DPoP, so no proof is sent; a DPoP token then is bound to no key of ours.
    fake.routes.pop("/.well-known/openid-configuration")
    fake.routes["/token"] = lambda seen: Reply.json(
        200, {"access_token": "a", "token_type": "DPoP", "expires_in": 60, "refresh_token": "r"}
    )
    client = make_client(fake)
    with pytest.raises(ServerError, match="DPoP-bound though no proof was sent"):
        client.auth.sign_in(PasswordGrant(ALICE, ALICE_PW), remember=False)
    assert "DPoP" not in fake.requests_to("/token")[0].headers
    assert len(fake.requests_to("/revoke")) == 1  # and what it issued is not left alive


def test_an_unreadable_stored_key_is_no_session(
    fake: FakeOIDCServer, make_client: Any, memory_keyring: MemoryKeyring
) -> None:
    key = (ENTRY.format(url=fake.url), ALICE)
    memory_keyring.secrets[key] = StoredSession(
        refresh_token="r", access_token="a", token_type="DPoP", dpop_key='{"kty":"EC"}'
    ).to_json()
    client = make_client(fake, KeyringStore(timeout=5))
    assert client.auth.restore(ALICE) is None
    assert fake.requests_to("/userinfo") == []


# -- small parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("Bearer", "Bearer"), ("bearer", "Bearer"), ("DPOP", "DPoP")]
)
def test_token_types_are_compared_case_insensitively(value: str, expected: str) -> None:
    data = {"access_token": "a", "token_type": value, "expires_in": 5}
    tokens = TokenSet.from_response(data, now=0)
    assert tokens.token_type == expected and tokens.bound is (expected == "DPoP")


@pytest.mark.parametrize("value", ["mac", "", None, 5, "DPoP2"])
def test_other_token_types_are_refused(value: Any) -> None:
    with pytest.raises(ServerError, match="neither a Bearer nor a DPoP token"):
        TokenSet.from_response({"access_token": "a", "token_type": value}, now=0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'DPoP error="invalid_token", error_description="a, b", algs="ES256 PS256", Bearer',
            [
                (
                    "dpop",
                    {"error": "invalid_token", "error_description": "a, b", "algs": "ES256 PS256"},
                ),
                ("bearer", {}),
            ],
        ),
        (
            'Bearer realm="x", error=invalid_token, DPoP algs="ES256"',
            [("bearer", {"realm": "x", "error": "invalid_token"}), ("dpop", {"algs": "ES256"})],
        ),
        ("Basic abc==, Bearer", [("basic", {}), ("bearer", {})]),
        ('Bearer error="a\\"b"', [("bearer", {"error": 'a"b'})]),
        ("", []),
        ('garbage "x', [("garbage", {})]),
    ],
)
def test_www_authenticate_with_several_challenges(
    header: str, expected: list[tuple[str, dict[str, str]]]
) -> None:
    assert challenges(header) == expected
