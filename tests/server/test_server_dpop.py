"""DPoP at the server (RFC 9449), in process: binding, modes, nonces, proof checks, revocation.
The stolen-token battery against a live server is in test_server_dpop_live.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from desktop.auth.dpop import DPoPKey
from mock_server.dpop import NONCE_LIFETIME
from mock_server.store import replay_cache_path
from tests.server.dpop_proofs import DROP, Signer, dpop_auth, token_claims
from tests.server.helpers import (
    ALL_SCOPES,
    CLIENT_ID,
    DPOP_CHALLENGE,
    ISSUER,
    FakeClock,
    app_client,
    bearer,
    sign_in,
)
from tests.server.robot import (
    DEVICE_GRANT,
    REDIRECT_URI,
    Pkce,
    approve,
    authorize_url,
    redirect_parameters,
    sign_in_at,
    start,
)

TOKEN_URL = f"{ISSUER}/token"
USERINFO_URL = f"{ISSUER}/userinfo"
SESSIONS_URL = f"{ISSUER}/api/sessions"
PASSWORD_FORM = {
    "grant_type": "password",
    "username": "alice",
    "password": "wonderland",
    "client_id": CLIENT_ID,
    "scope": ALL_SCOPES,
}


@pytest.fixture
def key(clock: FakeClock) -> DPoPKey:
    return DPoPKey.generate(clock=clock)


def token(client: TestClient, form: dict[str, str], proof: str | None = None) -> Any:
    return client.post("/token", data=form, headers={} if proof is None else {"DPoP": proof})


def dpop_sign_in(client: TestClient, key: DPoPKey, nonce: str | None = None) -> dict[str, Any]:
    response = token(client, PASSWORD_FORM, key.proof("POST", TOKEN_URL, nonce=nonce))
    assert response.status_code == 200, response.text
    return dict(response.json())


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}


def userinfo(client: TestClient, key: DPoPKey, access_token: str, **proof: Any) -> Any:
    return client.get(
        "/userinfo",
        headers=dpop_auth(
            access_token, key.proof("GET", USERINFO_URL, access_token=access_token, **proof)
        ),
    )


def sessions(client: TestClient, key: DPoPKey, access_token: str) -> list[dict[str, Any]]:
    proof = key.proof("GET", SESSIONS_URL, access_token=access_token)
    response = client.get("/api/sessions", headers=dpop_auth(access_token, proof))
    assert response.status_code == 200, response.text
    return list(response.json()["sessions"])


@pytest.mark.parametrize("mode", ["allowed", "required"])
def test_discovery_lists_the_proof_algorithms(clock: FakeClock, mode: str) -> None:
    with app_client(clock, dpop=mode) as client:
        doc = client.get("/.well-known/openid-configuration").json()
    assert doc["dpop_signing_alg_values_supported"] == [
        "ES256",
        "ES384",
        "ES512",
        "PS256",
        "RS256",
        "EdDSA",
    ]


def test_discovery_lists_no_dpop_when_it_is_off(clock: FakeClock) -> None:
    with app_client(clock, dpop="off") as client:
        doc = client.get("/.well-known/openid-configuration").json()
    assert "dpop_signing_alg_values_supported" not in doc


def test_a_proof_at_sign_in_binds_the_tokens(client: TestClient, key: DPoPKey) -> None:
    tokens = dpop_sign_in(client, key)
    assert tokens["token_type"] == "DPoP"
    assert token_claims(tokens["access_token"])["cnf"] == {"jkt": key.thumbprint}
    response = userinfo(client, key, tokens["access_token"])
    assert response.status_code == 200
    assert response.json()["preferred_username"] == "alice"
    [session] = sessions(client, key, tokens["access_token"])
    assert session["dpop_jkt"] == key.thumbprint


def test_without_a_proof_the_tokens_stay_bearer(client: TestClient, key: DPoPKey) -> None:
    plain = sign_in(client)
    assert plain["token_type"] == "Bearer"
    assert "cnf" not in token_claims(plain["access_token"])
    assert client.get("/userinfo", headers=bearer(plain["access_token"])).status_code == 200
    bound = dpop_sign_in(client, key)
    listed = {s["current"]: s["dpop_jkt"] for s in sessions(client, key, bound["access_token"])}
    assert listed == {False: None, True: key.thumbprint}


def test_an_unbound_token_is_refused_under_the_dpop_scheme(
    client: TestClient, key: DPoPKey
) -> None:
    plain = sign_in(client)
    response = userinfo(client, key, plain["access_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_a_bound_refresh_token_rotates_with_its_key_and_reuse_still_ends_the_session(
    client: TestClient, key: DPoPKey
) -> None:
    first = dpop_sign_in(client, key)
    second = token(client, refresh_form(first["refresh_token"]), key.proof("POST", TOKEN_URL))
    assert second.status_code == 200, second.text
    assert second.json()["token_type"] == "DPoP"
    assert token_claims(second.json()["access_token"])["cnf"] == {"jkt": key.thumbprint}
    # The spent token again, with the right key: reuse, so the whole sign-in ends.
    replay = token(client, refresh_form(first["refresh_token"]), key.proof("POST", TOKEN_URL))
    assert replay.json()["error"] == "invalid_grant"
    third = token(
        client, refresh_form(second.json()["refresh_token"]), key.proof("POST", TOKEN_URL)
    )
    assert third.json()["error"] == "invalid_grant"


def test_a_refresh_with_a_proof_binds_a_bearer_session(client: TestClient, key: DPoPKey) -> None:
    plain = sign_in(client)
    bound = token(client, refresh_form(plain["refresh_token"]), key.proof("POST", TOKEN_URL))
    assert bound.json()["token_type"] == "DPoP"
    # From now on the session's refresh tokens need the key.
    refused = token(client, refresh_form(bound.json()["refresh_token"]))
    assert refused.json()["error"] == "invalid_dpop_proof"
    again = token(client, refresh_form(bound.json()["refresh_token"]), key.proof("POST", TOKEN_URL))
    assert again.status_code == 200


def test_required_mode_refuses_token_requests_without_a_proof(
    clock: FakeClock, key: DPoPKey
) -> None:
    with app_client(clock, dpop="required") as client:
        response = token(client, PASSWORD_FORM)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_dpop_proof"
        tokens = dpop_sign_in(client, key)
        assert tokens["token_type"] == "DPoP"
        refused = token(client, refresh_form(tokens["refresh_token"]))
        assert refused.json()["error"] == "invalid_dpop_proof"
        assert userinfo(client, key, tokens["access_token"]).status_code == 200
        missing = client.get("/userinfo")
        assert missing.headers["WWW-Authenticate"] == DPOP_CHALLENGE


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "server.sqlite3")


def test_required_mode_refuses_bearer_tokens_issued_before(clock: FakeClock, db: str) -> None:
    with app_client(clock, db_path=db) as allowed:
        plain = sign_in(allowed)
    with app_client(clock, db_path=db, dpop="required") as required:
        response = required.get("/userinfo", headers=bearer(plain["access_token"]))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    # Bearer is not offered at all in this mode: the one challenge is DPoP's.
    assert response.headers["WWW-Authenticate"] == (
        'DPoP error="invalid_token", error_description="This server accepts DPoP-bound access '
        f'tokens only", {DPOP_CHALLENGE.removeprefix("DPoP ")}'
    )


def test_off_mode_ignores_proofs_but_never_downgrades_a_bound_token(
    clock: FakeClock, db: str, key: DPoPKey
) -> None:
    with app_client(clock, db_path=db) as allowed:
        bound = dpop_sign_in(allowed, key)
    with app_client(clock, db_path=db, dpop="off") as off:
        fresh = dpop_sign_in(off, key)
        assert fresh["token_type"] == "Bearer"
        assert "cnf" not in token_claims(fresh["access_token"])
        assert off.get("/userinfo", headers=bearer(fresh["access_token"])).status_code == 200
        assert userinfo(off, key, fresh["access_token"]).headers["WWW-Authenticate"] == "Bearer"
        # A bound token never turns into a bearer token a thief could use.
        as_bearer = off.get("/userinfo", headers=bearer(bound["access_token"]))
        assert as_bearer.status_code == 401
        refused = token(off, refresh_form(bound["refresh_token"]), key.proof("POST", TOKEN_URL))
        assert refused.json()["error"] == "invalid_dpop_proof"
    with app_client(clock, db_path=db) as allowed:
        # ...and it was not spent: its owner carries on once DPoP is back.
        again = token(allowed, refresh_form(bound["refresh_token"]), key.proof("POST", TOKEN_URL))
        assert again.status_code == 200


@pytest.fixture
def nonce_client(clock: FakeClock) -> Iterator[TestClient]:
    with app_client(clock, dpop_nonce=True) as client:
        yield client


def test_the_token_endpoint_demands_a_nonce_then_accepts_it(
    nonce_client: TestClient, key: DPoPKey
) -> None:
    # A wrong password too: the nonce is asked for before any password check.
    first = token(
        nonce_client, {**PASSWORD_FORM, "password": "wrong"}, key.proof("POST", TOKEN_URL)
    )
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    assert first.headers["Cache-Control"] == "no-store"
    second = token(nonce_client, PASSWORD_FORM, key.proof("POST", TOKEN_URL, nonce=nonce))
    assert second.status_code == 200, second.text
    assert second.json()["token_type"] == "DPoP"
    assert second.headers["DPoP-Nonce"] == nonce
    wrong = token(nonce_client, PASSWORD_FORM, key.proof("POST", TOKEN_URL, nonce="made-up"))
    assert wrong.json()["error"] == "use_dpop_nonce"


def test_a_resource_demands_a_nonce_with_a_dpop_challenge(
    nonce_client: TestClient, key: DPoPKey
) -> None:
    nonce = token(nonce_client, PASSWORD_FORM, key.proof("POST", TOKEN_URL)).headers["DPoP-Nonce"]
    tokens = dpop_sign_in(nonce_client, key, nonce)
    response = userinfo(nonce_client, key, tokens["access_token"])
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(
        'DPoP error="use_dpop_nonce", error_description='
    )
    assert response.headers["DPoP-Nonce"] == nonce
    accepted = userinfo(nonce_client, key, tokens["access_token"], nonce=nonce)
    assert accepted.status_code == 200
    assert accepted.headers["DPoP-Nonce"] == nonce


def test_nonces_rotate_and_the_previous_one_stays_good_for_a_while(
    nonce_client: TestClient, key: DPoPKey, clock: FakeClock
) -> None:
    first = token(nonce_client, PASSWORD_FORM, key.proof("POST", TOKEN_URL)).headers["DPoP-Nonce"]
    tokens = dpop_sign_in(nonce_client, key, first)
    clock.advance(NONCE_LIFETIME)
    # Still accepted, and the answer already brings its successor.
    response = userinfo(nonce_client, key, tokens["access_token"], nonce=first)
    assert response.status_code == 200
    second = response.headers["DPoP-Nonce"]
    assert second != first
    clock.advance(NONCE_LIFETIME)
    stale = userinfo(nonce_client, key, tokens["access_token"], nonce=first)
    assert stale.json()["error"] == "use_dpop_nonce"
    assert userinfo(nonce_client, key, tokens["access_token"], nonce=second).status_code == 200


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-60, True), (-61, False), (60, True), (61, False)]
)
def test_iat_is_accepted_within_60_seconds_either_way(
    client: TestClient, key: DPoPKey, clock: FakeClock, offset: int, accepted: bool
) -> None:
    tokens = dpop_sign_in(client, key)
    signer = Signer.of(key)
    at = tokens["access_token"]
    proof = signer.proof("GET", USERINFO_URL, iat=clock() + offset, access_token=at)
    response = client.get("/userinfo", headers=dpop_auth(at, proof))
    assert (response.status_code == 200) is accepted


@pytest.mark.parametrize("alg", ["ES384", "ES512", "PS256", "RS256", "EdDSA"])
def test_proofs_of_each_algorithm_bind_to_their_keys_thumbprint(
    client: TestClient, clock: FakeClock, alg: str
) -> None:
    signer = Signer(alg)
    response = token(client, PASSWORD_FORM, signer.proof("POST", TOKEN_URL, iat=clock()))
    assert response.status_code == 200, response.text
    at = response.json()["access_token"]
    assert token_claims(at)["cnf"] == {"jkt": signer.jkt}
    proof = signer.proof("GET", USERINFO_URL, iat=clock(), access_token=at)
    assert client.get("/userinfo", headers=dpop_auth(at, proof)).status_code == 200


def _weak_rsa(clock: FakeClock) -> str:
    return Signer("RS256", rsa_bits=1024).proof("POST", TOKEN_URL, iat=clock())


def _curve_mismatch(clock: FakeClock) -> str:
    return Signer("ES384").proof("POST", TOKEN_URL, iat=clock(), header={"alg": "ES256"})


def _type_mismatch(clock: FakeClock) -> str:
    return Signer("ES256").proof("POST", TOKEN_URL, iat=clock(), header={"alg": "RS256"})


def _symmetric(clock: FakeClock) -> str:
    return Signer().proof(
        "POST", TOKEN_URL, iat=clock(), header={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}
    )


def _no_jwk(clock: FakeClock) -> str:
    return Signer().proof("POST", TOKEN_URL, iat=clock(), header={"jwk": DROP})


def _not_on_curve(clock: FakeClock) -> str:
    signer = Signer()
    jwk = {**signer.public_jwk, "y": signer.public_jwk["x"]}
    return signer.proof("POST", TOKEN_URL, iat=clock(), header={"jwk": jwk})


def _critical(clock: FakeClock) -> str:
    return Signer().proof("POST", TOKEN_URL, iat=clock(), header={"crit": ["exp"]})


def _no_jti(clock: FakeClock) -> str:
    return Signer().proof("POST", TOKEN_URL, iat=clock(), claims={"jti": DROP})


def _long_jti(clock: FakeClock) -> str:
    return Signer().proof("POST", TOKEN_URL, iat=clock(), claims={"jti": "j" * 257})


def _text_iat(clock: FakeClock) -> str:
    return Signer().proof("POST", TOKEN_URL, iat=clock(), claims={"iat": str(int(clock()))})


def _not_a_url(clock: FakeClock) -> str:
    return Signer().proof("POST", TOKEN_URL, iat=clock(), claims={"htu": "/token"})


@pytest.mark.parametrize(
    "make",
    [
        _weak_rsa,
        _curve_mismatch,
        _type_mismatch,
        _symmetric,
        _no_jwk,
        _not_on_curve,
        _critical,
        _no_jti,
        _long_jti,
        _text_iat,
        _not_a_url,
    ],
)
def test_token_endpoint_refuses_a_bad_proof(
    client: TestClient, clock: FakeClock, make: Any
) -> None:
    response = token(client, PASSWORD_FORM, make(clock))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


MALFORMED = [
    "",
    "garbage",
    "a.b.c",
    "..",
    "a.b.c.d",
    "x" * 9000,
    "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.!!!",
    "W10.e30.c2ln",  # the header is a JSON array
    "e30.W10.c2ln",  # typ missing
    "bm90IGpzb24.e30.c2ln",  # not JSON
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7fX0.e30.A",  # signature of length 1
]


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_dpop_header_is_a_json_400_at_the_token_endpoint(
    client: TestClient, value: str
) -> None:
    response = token(client, PASSWORD_FORM, value)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_dpop_header_is_a_json_401_at_a_resource(
    client: TestClient, key: DPoPKey, value: str
) -> None:
    at = dpop_sign_in(client, key)["access_token"]
    response = client.get("/userinfo", headers=dpop_auth(at, value))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"
    assert response.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')


def test_two_dpop_headers_are_refused(client: TestClient, key: DPoPKey) -> None:
    proofs = [("DPoP", key.proof("POST", TOKEN_URL)), ("DPoP", key.proof("POST", TOKEN_URL))]
    response = client.post("/token", data=PASSWORD_FORM, headers=proofs)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_dpop_proof",
        "error_description": "A request carries exactly one DPoP header",
    }


@pytest.mark.parametrize(
    "htu",
    ["HTTP://TestServer:80/userinfo?page=2#top", "http://testserver/%75serinfo"],
)
def test_htu_is_compared_normalised_without_query(
    client: TestClient, key: DPoPKey, clock: FakeClock, htu: str
) -> None:
    at = dpop_sign_in(client, key)["access_token"]
    proof = Signer.of(key).proof("GET", htu, iat=clock(), access_token=at)
    assert client.get("/userinfo", headers=dpop_auth(at, proof)).status_code == 200


@pytest.mark.parametrize(
    "htu",
    [
        "http://testserver/userinfo/",
        "https://testserver/userinfo",
        "http://testserver:8080/userinfo",
        "http://other/userinfo",
    ],
)
def test_htu_of_another_url_is_refused(
    client: TestClient, key: DPoPKey, clock: FakeClock, htu: str
) -> None:
    at = dpop_sign_in(client, key)["access_token"]
    proof = Signer.of(key).proof("GET", htu, iat=clock(), access_token=at)
    response = client.get("/userinfo", headers=dpop_auth(at, proof))
    assert response.json()["error_description"] == "The DPoP proof is for another URL (htu)"


def revoke(client: TestClient, refresh_token: str, proof: str | None = None) -> Any:
    return client.post(
        "/revoke",
        data={"token": refresh_token, "client_id": CLIENT_ID},
        headers={} if proof is None else {"DPoP": proof},
    )


def test_a_bound_session_is_revoked_only_with_a_proof_of_its_key(
    client: TestClient, key: DPoPKey, clock: FakeClock
) -> None:
    revoke_url = f"{ISSUER}/revoke"
    tokens = dpop_sign_in(client, key)
    rt = tokens["refresh_token"]
    assert revoke(client, rt).json()["error"] == "invalid_dpop_proof"
    other = DPoPKey.generate(clock=clock)
    assert revoke(client, rt, other.proof("POST", revoke_url)).json()["error"] == "invalid_grant"
    assert revoke(client, rt, "garbage").json()["error"] == "invalid_dpop_proof"
    assert revoke(client, rt, key.proof("POST", TOKEN_URL)).json()["error"] == "invalid_dpop_proof"
    # None of that ended anything.
    assert userinfo(client, key, tokens["access_token"]).status_code == 200
    assert revoke(client, rt, key.proof("POST", revoke_url)).status_code == 200
    assert userinfo(client, key, tokens["access_token"]).status_code == 401


def test_a_bearer_session_is_revoked_with_or_without_a_proof(
    client: TestClient, key: DPoPKey
) -> None:
    assert revoke(client, sign_in(client)["refresh_token"]).status_code == 200
    proof = key.proof("POST", f"{ISSUER}/revoke")
    assert revoke(client, sign_in(client)["refresh_token"], proof).status_code == 200


def test_the_replay_cache_forgets_proofs_once_they_are_stale(
    clock: FakeClock, db: str, key: DPoPKey
) -> None:
    with app_client(clock, db_path=db) as client:
        at = dpop_sign_in(client, key)["access_token"]

        def jtis() -> int:
            with sqlite3.connect(replay_cache_path(db)) as conn:
                return int(conn.execute("SELECT count(*) FROM dpop_proofs").fetchone()[0])

        assert userinfo(client, key, at).status_code == 200
        assert jtis() == 2
        clock.advance(121)
        assert userinfo(client, key, at).status_code == 200
        assert jtis() == 1


def test_a_non_admin_with_a_bound_token_gets_a_dpop_challenge(
    client: TestClient, clock: FakeClock
) -> None:
    bob = DPoPKey.generate(clock=clock)
    form = {**PASSWORD_FORM, "username": "bob", "password": "builder"}
    at = token(client, form, bob.proof("POST", TOKEN_URL)).json()["access_token"]
    proof = bob.proof("GET", SESSIONS_URL, access_token=at)
    response = client.get("/api/sessions", headers=dpop_auth(at, proof))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'DPoP error="insufficient_scope", error_description="This resource needs the '
        'sessions:admin scope, granted to members of admin", scope="sessions:admin", '
        f"{DPOP_CHALLENGE.removeprefix('DPoP ')}, Bearer"
    )


@pytest.mark.parametrize("alg", ["ES256", "ES512", "PS256", "RS256", "EdDSA"])
@pytest.mark.parametrize("signature", ["AAAA", "A" * 700, "_-_-"])
def test_a_signature_of_any_wrong_length_is_refused(
    client: TestClient, clock: FakeClock, alg: str, signature: str
) -> None:
    proof = Signer(alg).proof("POST", TOKEN_URL, iat=clock())
    forged = proof.rsplit(".", 1)[0] + "." + signature
    response = token(client, PASSWORD_FORM, forged)
    assert response.status_code == 400
    assert response.json()["error_description"] == "The DPoP proof's signature is invalid"


@pytest.mark.parametrize("nonce", ["nonce-é", "\udcff", "", 7, None])
def test_a_nonce_of_any_shape_is_answered_with_use_dpop_nonce(
    nonce_client: TestClient, clock: FakeClock, nonce: Any
) -> None:
    proof = Signer().proof("POST", TOKEN_URL, iat=clock(), claims={"nonce": nonce})
    response = token(nonce_client, PASSWORD_FORM, proof)
    assert response.status_code == 400
    assert response.json()["error"] == "use_dpop_nonce"


ODD_VALUES: list[Any] = [None, 0, -1.5, True, "", "x" * 300, [], ["ES256"], {}, {"a": 1}]


@pytest.mark.parametrize("member", ["typ", "alg", "jwk", "kty", "crv", "x", "y"])
def test_every_header_member_of_an_odd_type_is_a_json_400(
    client: TestClient, clock: FakeClock, member: str
) -> None:
    signer = Signer()
    for value in ODD_VALUES:
        if member in ("typ", "alg", "jwk"):
            header = {member: value}
        else:
            header = {"jwk": {**signer.public_jwk, member: value}}
        response = token(
            client, PASSWORD_FORM, signer.proof("POST", TOKEN_URL, iat=clock(), header=header)
        )
        assert response.status_code == 400, (member, value)
        assert response.json()["error"] == "invalid_dpop_proof"


@pytest.mark.parametrize("member", ["jti", "htm", "htu", "iat", "ath", "nonce"])
def test_every_claim_of_an_odd_type_is_refused_at_a_resource(
    client: TestClient, key: DPoPKey, clock: FakeClock, member: str
) -> None:
    at = dpop_sign_in(client, key)["access_token"]
    signer = Signer.of(key)
    for value in [*ODD_VALUES, float("nan"), 10**400]:
        proof = signer.proof(
            "GET", USERINFO_URL, iat=clock(), access_token=at, claims={member: value}
        )
        response = client.get("/userinfo", headers=dpop_auth(at, proof))
        # A nonce nobody asked for is ignored; anything else wrong is refused.
        expected = 200 if member == "nonce" else 401
        assert response.status_code == expected, (member, value)
        if expected == 401:
            assert response.json()["error"] == "invalid_dpop_proof"


def _bound_tokens_work(client: TestClient, key: DPoPKey, body: dict[str, Any]) -> None:
    assert body["token_type"] == "DPoP"
    assert token_claims(body["access_token"])["cnf"] == {"jkt": key.thumbprint}
    assert userinfo(client, key, body["access_token"]).status_code == 200
    # The refresh token is bound too: without a proof of the key it is refused, with one it works.
    form = refresh_form(body["refresh_token"])
    assert token(client, form).json()["error"] == "invalid_dpop_proof"
    assert token(client, form, key.proof("POST", TOKEN_URL)).status_code == 200


def test_the_code_grant_binds_to_the_proof_of_the_code_exchange(
    client: TestClient, key: DPoPKey
) -> None:
    pkce = Pkce.new()
    url = authorize_url(ISSUER, pkce, scope="openid offline_access", prompt="consent")
    code = redirect_parameters(sign_in_at(client, url))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
        "client_id": CLIENT_ID,
    }
    response = token(client, form, key.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.text
    _bound_tokens_work(client, key, response.json())


def test_the_device_grant_binds_to_the_proof_of_the_poll(client: TestClient, key: DPoPKey) -> None:
    device = start(client, scope="openid")
    assert approve(client, device["user_code"]).status_code == 200
    form = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}
    response = token(client, {**form, "client_id": CLIENT_ID}, key.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.text
    _bound_tokens_work(client, key, response.json())
