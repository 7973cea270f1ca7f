"""DPoP on the client (RFC 9449): keys, proofs verified independently with PyJWT, ``htu``
normalisation, ``ath``, thumbprints, the keyring form and the nonce cache."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import pickle
import threading
from typing import Any

import jwt
import pytest

from desktop.auth.dpop import (
    DPoPKey,
    DPoPNonces,
    access_token_hash,
    clock_offset,
    jwk_thumbprint,
    normalise_htu,
)
from desktop.auth.errors import AuthError, InvalidDPoPKey
from desktop.auth.messages import dpop_refused

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey.generate(clock=lambda: NOW)


def _verify(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a server does (RFC 9449 §4.3): verify with the header's own public jwk."""
    header = jwt.get_unverified_header(proof)
    public = jwt.PyJWK(header["jwk"], algorithm="ES256")
    claims = jwt.decode(proof, public.key, algorithms=["ES256"], options={"verify_iat": False})
    return header, claims


def test_a_proof_verifies_with_its_embedded_public_jwk(key: DPoPKey) -> None:
    header, claims = _verify(key.proof("post", "https://AS.Example.com/token?x=1#frag"))
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # public members only
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://as.example.com/token"
    assert claims["iat"] == NOW
    assert set(claims) == {"jti", "htm", "htu", "iat"}


def test_a_proof_from_another_key_does_not_verify_with_this_key(key: DPoPKey) -> None:
    other = DPoPKey.generate()
    _, payload, signature = other.proof("GET", "https://rs.example.com/").split(".")
    own_header = key.proof("GET", "https://rs.example.com/").split(".")[0]
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(f"{own_header}.{payload}.{signature}")


def test_jti_is_unique_and_long(key: DPoPKey) -> None:
    jtis = {_verify(key.proof("GET", "https://rs.example.com/"))[1]["jti"] for _ in range(200)}
    assert len(jtis) == 200
    assert all(len(base64.urlsafe_b64decode(j + "==")) >= 12 for j in jtis)


def test_ath_and_nonce(key: DPoPKey) -> None:
    _, claims = _verify(
        key.proof("GET", "https://rs.example.com/api", access_token="tok", nonce="n1")
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"tok").digest()).rstrip(b"=").decode()
    assert claims["ath"] == expected == access_token_hash("tok")
    assert claims["nonce"] == "n1"


def test_ath_matches_rfc_9449_example() -> None:
    # RFC 9449 §7.1: the access token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU" has
    # ath "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo".
    assert (
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
        == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    )


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("https://server.example.com/token", "https://server.example.com/token"),
        ("HTTPS://Server.EXAMPLE.com:443/token?a=b#c", "https://server.example.com/token"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1/x"),
        ("http://127.0.0.1:8765/token", "http://127.0.0.1:8765/token"),
        ("https://server.example.com:8443/t", "https://server.example.com:8443/t"),
        ("https://server.example.com", "https://server.example.com/"),
        ("https://server.example.com?q=1", "https://server.example.com/"),
        ("https://user:pw@server.example.com/t", "https://server.example.com/t"),
        ("https://s.example.com/a%2fb/%7Euser/%41", "https://s.example.com/a%2Fb/~user/A"),
        ("http://[::1]:8080/t", "http://[::1]:8080/t"),
    ],
)
def test_htu_normalisation(url: str, htu: str) -> None:
    assert normalise_htu(url) == htu


@pytest.mark.parametrize("url", ["/token", "ftp://x.example.com/", "https:///path"])
def test_htu_needs_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        normalise_htu(url)


def test_thumbprint_matches_rfc_7638_example() -> None:
    # RFC 7638 §3.1.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
            "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
            "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
            "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_keys_thumbprint_covers_its_public_jwk(key: DPoPKey) -> None:
    canonical = json.dumps(
        {k: key.public_jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    assert key.thumbprint == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert key.thumbprint != DPoPKey.generate().thumbprint


def test_key_round_trip_through_json(key: DPoPKey) -> None:
    stored = key.to_json()
    assert len(stored.encode("utf-16-le")) < 2560 // 4  # Windows' credential limit, far off
    again = DPoPKey.from_json(stored, clock=lambda: NOW)
    assert again.thumbprint == key.thumbprint
    # The restored key signs proofs that verify with the original public key.
    header, _ = _verify(again.proof("GET", "https://rs.example.com/"))
    assert header["jwk"] == key.public_jwk


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not json",
        "[]",
        '{"kty":"RSA"}',
        '{"kty":"EC","crv":"P-256"}',
        '{"kty":"EC","crv":"P-384","d":"AAAA"}',
        '{"kty":"EC","crv":"P-256","d":"AAAA"}',
        '{"kty":"EC","crv":"P-256","d":"' + "A" * 43 + '"}',  # zero is not a private key
    ],
)
def test_a_corrupt_stored_key_is_refused_without_echoing_it(stored: str) -> None:
    with pytest.raises(InvalidDPoPKey) as caught:
        DPoPKey.from_json(stored)
    assert isinstance(caught.value, AuthError)
    assert str(caught.value) == "The stored DPoP key cannot be read."


def test_a_stored_key_whose_public_part_does_not_match_is_refused(key: DPoPKey) -> None:
    stored = json.loads(key.to_json())
    stored["x"] = DPoPKey.generate().public_jwk["x"]
    with pytest.raises(InvalidDPoPKey):
        DPoPKey.from_json(json.dumps(stored))


def test_repr_and_str_never_show_the_private_key(key: DPoPKey) -> None:
    secret = json.loads(key.to_json())["d"]
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert secret not in text
        assert key.thumbprint in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.copy(key)


def test_nonce_cache_keeps_the_newest_per_origin() -> None:
    nonces = DPoPNonces()
    assert nonces.get("https://as.example.com/token") is None
    nonces.remember("https://AS.example.com:443/token", "n1")
    nonces.remember("https://as.example.com/token", "n2")
    nonces.remember("https://rs.example.com/api", "r1")
    assert nonces.get("https://as.example.com/revoke") == "n2"
    assert nonces.get("https://rs.example.com/other") == "r1"
    assert nonces.get("http://as.example.com/token") is None  # another origin
    nonces.remember("https://as.example.com/token", None)
    nonces.remember("https://as.example.com/token", 'bad "nonce"')
    nonces.remember("https://as.example.com/token", "")
    assert nonces.get("https://as.example.com/token") == "n2"
    nonces.forget("https://as.example.com/x")
    assert nonces.get("https://as.example.com/token") is None


def test_nonce_cache_is_safe_across_threads() -> None:
    nonces = DPoPNonces()
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for j in range(200):
            nonces.remember(f"https://s{i % 2}.example.com/", f"n{i}-{j}")
            assert nonces.get(f"https://s{i % 2}.example.com/") is not None

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert nonces.get("https://s0.example.com/") is not None


# -- the server's clock, from its Date header ------------------------------------------------------

# 2026-12-02 10:00:00 UTC
NOON_ISH = 1_796_205_600.0


@pytest.mark.parametrize(
    ("date", "offset"),
    [
        ("Wed, 02 Dec 2026 10:00:00 GMT", 0.0),
        ("Wed, 02 Dec 2026 10:05:00 GMT", 300.0),
        ("Wed, 02 Dec 2026 09:59:15 GMT", -45.0),
        ("Wed, 02 Dec 2026 12:00:00 +0200", 0.0),  # RFC 5322 zones parse too
    ],
)
def test_the_servers_clock_offset_comes_from_its_date_header(date: str, offset: float) -> None:
    assert clock_offset(date, NOON_ISH) == offset


@pytest.mark.parametrize(
    "date", [None, "", "yesterday", "Wed, 02 Dec 2026 10:00:00 -0000", "Wed, 99 Foo 2026 10:00"]
)
def test_no_usable_date_gives_no_offset(date: str | None) -> None:
    assert clock_offset(date, NOON_ISH) is None


def test_a_refused_proof_names_a_clock_that_is_off_and_only_then() -> None:
    plain = "The server refused this device's proof of its session key (DPoP): too old."
    assert dpop_refused("invalid_dpop_proof", "too old", None) == plain
    assert dpop_refused("invalid_dpop_proof", "too old", 29.0) == plain
    assert dpop_refused("invalid_dpop_proof", "too old", -29.0) == plain
    behind = dpop_refused("invalid_dpop_proof", "too old", 300.0)
    assert behind.startswith(plain)
    assert "This computer's clock is about 5 minutes behind the server's" in behind
    assert "set the clock right" in behind
    ahead = dpop_refused("invalid_dpop_proof", None, -45.0)
    assert "clock is 45 seconds ahead of the server's" in ahead
    assert "about 2 hours behind" in dpop_refused("invalid_dpop_proof", None, 7000.0)
