"""The stolen-token battery (RFC 9449) against a live server process on loopback.

The owner signs in with its DPoP key; a thief holds copies of its tokens (and of a proof it
sent), but not its private key. Every way the thief tries them is refused, and afterwards the
owner's tokens still work: a failed attempt spends or revokes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from desktop.auth.dpop import DPoPKey
from tests.server.dpop_proofs import DROP, Signer, dpop_auth, hs256_proof, unsigned_proof
from tests.server.helpers import ALL_SCOPES, CLIENT_ID
from tests.support.server import RunningServer, StartServer


@dataclass
class Owner:
    """The signed-in client: its key, its tokens, the server it talks to."""

    server: RunningServer
    key: DPoPKey
    tokens: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def access_token(self) -> str:
        return str(self.tokens["access_token"])

    def proof(self, method: str, path: str, **kwargs: Any) -> str:
        return self.key.proof(method, self.url + path, **kwargs)

    def userinfo(self) -> httpx.Response:
        proof = self.proof("GET", "/userinfo", access_token=self.access_token)
        return httpx.get(f"{self.url}/userinfo", headers=dpop_auth(self.access_token, proof))

    def refresh(self, proof: str | None, refresh_token: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token or self.tokens["refresh_token"],
                "client_id": CLIENT_ID,
            },
            headers={} if proof is None else {"DPoP": proof},
        )


def sign_in_with(url: str, key: DPoPKey) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "wonderland",
            "client_id": CLIENT_ID,
            "scope": ALL_SCOPES,
        },
        headers={"DPoP": key.proof("POST", f"{url}/token")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    return dict(response.json())


@pytest.fixture
def owner(live_server: RunningServer) -> Owner:
    key = DPoPKey.generate()
    return Owner(live_server, key, sign_in_with(live_server.url, key))


def shifted(key: DPoPKey, seconds: float) -> DPoPKey:
    """The same key pair with a clock ``seconds`` off."""
    return DPoPKey.from_json(key.to_json(), clock=lambda: time.time() + seconds)


def _claims(owner: Owner, path: str = "/userinfo") -> dict[str, Any]:
    return {
        "jti": "forged-" + str(time.time_ns()),
        "htm": "GET",
        "htu": owner.url + path,
        "iat": int(time.time()),
    }


def _as_bearer(o: Owner) -> dict[str, str]:
    return {"Authorization": f"Bearer {o.access_token}"}


def _no_proof(o: Owner) -> dict[str, str]:
    return {"Authorization": f"DPoP {o.access_token}"}


def _another_key(o: Owner) -> dict[str, str]:
    thief = DPoPKey.generate()
    proof = thief.proof("GET", f"{o.url}/userinfo", access_token=o.access_token)
    return dpop_auth(o.access_token, proof)


def _another_method(o: Owner) -> dict[str, str]:
    return dpop_auth(o.access_token, o.proof("POST", "/userinfo", access_token=o.access_token))


def _another_url(o: Owner) -> dict[str, str]:
    return dpop_auth(o.access_token, o.proof("GET", "/api/sessions", access_token=o.access_token))


def _reused_jti(o: Owner) -> dict[str, str]:
    # A proof copied off the wire, after the owner's request went through with it.
    headers = dpop_auth(o.access_token, o.proof("GET", "/userinfo", access_token=o.access_token))
    assert httpx.get(f"{o.url}/userinfo", headers=headers).status_code == 200
    return headers


def _stale_iat(o: Owner) -> dict[str, str]:
    proof = shifted(o.key, -120).proof("GET", f"{o.url}/userinfo", access_token=o.access_token)
    return dpop_auth(o.access_token, proof)


def _future_iat(o: Owner) -> dict[str, str]:
    proof = shifted(o.key, 120).proof("GET", f"{o.url}/userinfo", access_token=o.access_token)
    return dpop_auth(o.access_token, proof)


def _wrong_ath(o: Owner) -> dict[str, str]:
    return dpop_auth(o.access_token, o.proof("GET", "/userinfo", access_token="another.token"))


def _no_ath(o: Owner) -> dict[str, str]:
    return dpop_auth(o.access_token, o.proof("GET", "/userinfo"))


def _alg_none(o: Owner) -> dict[str, str]:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": o.key.public_jwk}
    return dpop_auth(o.access_token, unsigned_proof(header, _claims(o)))


def _hs256(o: Owner) -> dict[str, str]:
    # The classic confusion: MACed with the public key's own text as the secret.
    header = {"typ": "dpop+jwt", "jwk": o.key.public_jwk}
    secret = json.dumps(o.key.public_jwk).encode()
    return dpop_auth(o.access_token, hs256_proof(header, _claims(o), secret))


def _private_jwk(o: Owner) -> dict[str, str]:
    signer = Signer.of(o.key)
    proof = signer.proof(
        "GET",
        f"{o.url}/userinfo",
        iat=time.time(),
        access_token=o.access_token,
        header={"jwk": signer.private_jwk()},
    )
    return dpop_auth(o.access_token, proof)


def _bad_signature(o: Owner) -> dict[str, str]:
    proof = o.proof("GET", "/userinfo", access_token=o.access_token)
    head, _, signature = proof.rpartition(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    return dpop_auth(o.access_token, f"{head}.{flipped}")


def _missing_typ(o: Owner) -> dict[str, str]:
    proof = Signer.of(o.key).proof(
        "GET",
        f"{o.url}/userinfo",
        iat=time.time(),
        access_token=o.access_token,
        header={"typ": DROP},
    )
    return dpop_auth(o.access_token, proof)


ATTACKS: dict[str, tuple[Callable[[Owner], dict[str, str]], str]] = {
    "replayed as Bearer": (_as_bearer, "invalid_token"),
    "no proof": (_no_proof, "invalid_dpop_proof"),
    "a proof from another key": (_another_key, "invalid_dpop_proof"),
    "a proof for another method": (_another_method, "invalid_dpop_proof"),
    "a proof for another URL": (_another_url, "invalid_dpop_proof"),
    "a reused jti": (_reused_jti, "invalid_dpop_proof"),
    "a stale iat": (_stale_iat, "invalid_dpop_proof"),
    "a future iat": (_future_iat, "invalid_dpop_proof"),
    "a wrong ath": (_wrong_ath, "invalid_dpop_proof"),
    "no ath": (_no_ath, "invalid_dpop_proof"),
    "alg none": (_alg_none, "invalid_dpop_proof"),
    "HS256": (_hs256, "invalid_dpop_proof"),
    "a private jwk": (_private_jwk, "invalid_dpop_proof"),
    "a bad signature": (_bad_signature, "invalid_dpop_proof"),
    "a missing typ": (_missing_typ, "invalid_dpop_proof"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_stolen_access_token_is_refused(owner: Owner, attack: str) -> None:
    make, error = ATTACKS[attack]
    response = httpx.get(f"{owner.url}/userinfo", headers=make(owner))
    assert response.status_code == 401
    assert response.json()["error"] == error
    challenge = response.headers["WWW-Authenticate"]
    # RFC 9449 §7.1: the DPoP challenge carries the error and the algorithms; Bearer beside it.
    assert challenge.startswith(f'DPoP error="{error}", error_description="')
    assert 'algs="ES256 ES384 ES512 PS256 RS256 EdDSA"' in challenge
    assert challenge.endswith(", Bearer")
    # The thief's attempt cost the owner nothing.
    assert owner.userinfo().status_code == 200


def test_a_stolen_token_is_refused_at_the_admin_api_too(owner: Owner) -> None:
    sessions = f"{owner.url}/api/sessions"
    assert httpx.get(sessions, headers=_as_bearer(owner)).status_code == 401
    assert httpx.get(sessions, headers=_another_key(owner)).status_code == 401
    proof = owner.proof("GET", "/api/sessions", access_token=owner.access_token)
    listed = httpx.get(sessions, headers=dpop_auth(owner.access_token, proof))
    assert listed.status_code == 200
    assert [s["dpop_jkt"] for s in listed.json()["sessions"]] == [owner.key.thumbprint]


def test_a_stolen_refresh_token_is_refused_and_stays_its_owners(owner: Owner) -> None:
    token_url = f"{owner.url}/token"
    without = owner.refresh(None)
    assert without.status_code == 400
    assert without.json()["error"] == "invalid_dpop_proof"
    thief = DPoPKey.generate()
    stolen = owner.refresh(thief.proof("POST", token_url))
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    # Unspent: the owner redeems it once, as if nothing had happened.
    mine = owner.refresh(owner.key.proof("POST", token_url))
    assert mine.status_code == 200, mine.text
    assert mine.json()["token_type"] == "DPoP"
    # The spent token in the thief's hands is still refused without reuse detection firing:
    # the owner's session lives on.
    spent = owner.refresh(thief.proof("POST", token_url))
    assert spent.json()["error"] == "invalid_grant"
    owner.tokens = dict(mine.json())
    assert owner.userinfo().status_code == 200
    assert owner.refresh(owner.key.proof("POST", token_url)).status_code == 200


def test_the_testing_clock_makes_a_proof_stale(owner: Owner) -> None:
    headers = dpop_auth(
        owner.access_token, owner.proof("GET", "/userinfo", access_token=owner.access_token)
    )
    owner.server.advance_clock(90)
    stale = httpx.get(f"{owner.url}/userinfo", headers=headers)
    assert stale.json()["error_description"] == "The DPoP proof is too old (iat)"
    owner.key = shifted(owner.key, 90)
    assert owner.userinfo().status_code == 200


def test_the_replay_cache_survives_a_restart(start_server: StartServer) -> None:
    first = start_server()
    key = DPoPKey.generate()
    at = sign_in_with(first.url, key)["access_token"]
    headers = dpop_auth(at, key.proof("GET", f"{first.url}/userinfo", access_token=at))
    assert httpx.get(f"{first.url}/userinfo", headers=headers).status_code == 200
    first.stop()
    # The same database and the same port (so the same URL: the proof's htu still matches).
    port = first.url.rsplit(":", 1)[1]
    again = start_server(db=first.db, extra_args=["--port", port])
    assert again.url == first.url
    replayed = httpx.get(f"{again.url}/userinfo", headers=headers)
    assert replayed.status_code == 401
    assert replayed.json()["error_description"] == "The DPoP proof was already used (jti)"


def test_the_replay_cache_is_shared_by_processes_on_one_database(
    start_server: StartServer,
) -> None:
    first = start_server()
    second = start_server(db=first.db, extra_args=["--issuer", first.url])
    key = DPoPKey.generate()
    at = sign_in_with(first.url, key)["access_token"]
    headers = dpop_auth(at, key.proof("GET", f"{first.url}/userinfo", access_token=at))
    assert httpx.get(f"{first.url}/userinfo", headers=headers).status_code == 200
    replayed = httpx.get(f"{second.url}/userinfo", headers=headers)
    assert replayed.json()["error_description"] == "The DPoP proof was already used (jti)"


def test_malformed_dpop_headers_on_the_wire_get_json_errors(owner: Owner) -> None:
    form = {"grant_type": "password", "username": "alice", "password": "x", "client_id": CLIENT_ID}
    two = [("DPoP", owner.proof("POST", "/token")), ("DPoP", owner.proof("POST", "/token"))]
    response = httpx.post(f"{owner.url}/token", data=form, headers=two)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"
    for value in ("garbage", "e30." * 2000):
        response = httpx.post(f"{owner.url}/token", data=form, headers={"DPoP": value})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_dpop_proof"
    long = httpx.get(f"{owner.url}/userinfo", headers={**_no_proof(owner), "DPoP": "x" * 12_000})
    assert long.status_code == 401
    assert long.json()["error_description"] == "The DPoP proof is too long"
    # Far beyond: whichever layer refuses it (the HTTP parser or the app), a JSON 4xx.
    huge = httpx.get(f"{owner.url}/userinfo", headers={**_no_proof(owner), "DPoP": "x" * 2**20})
    assert 400 <= huge.status_code < 500
    assert huge.json()["error"] in ("invalid_request", "invalid_dpop_proof")
    assert owner.userinfo().status_code == 200


def test_nonce_flow_on_a_live_server(start_server: StartServer) -> None:
    server = start_server(extra_args=["--dpop-nonce", "--dpop", "required"])
    key = DPoPKey.generate()
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": "wonderland",
        "client_id": CLIENT_ID,
    }
    token_url = f"{server.url}/token"
    assert httpx.post(token_url, data=form).json()["error"] == "invalid_dpop_proof"
    first = httpx.post(token_url, data=form, headers={"DPoP": key.proof("POST", token_url)})
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    signed_in = httpx.post(
        token_url, data=form, headers={"DPoP": key.proof("POST", token_url, nonce=nonce)}
    )
    assert signed_in.status_code == 200, signed_in.text
    at = signed_in.json()["access_token"]
    proof = key.proof("GET", f"{server.url}/userinfo", access_token=at, nonce=nonce)
    assert httpx.get(f"{server.url}/userinfo", headers=dpop_auth(at, proof)).status_code == 200
