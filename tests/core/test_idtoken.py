"""ID-token validation (OIDC Core §3.1.3.7): every claim wrong or missing, signatures, keys,
algorithms, ``at_hash`` and the /userinfo subject check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from desktop.auth.errors import InvalidIDToken, ServerError, SubjectMismatch
from desktop.auth.idtoken import (
    IDTokenClaims,
    JWKSCache,
    access_token_hash,
    signing_algorithms,
    validate_id_token,
)
from desktop.auth.oauth import userinfo_claims

ISSUER = "https://id.example.com"
CLIENT = "jwt-desktop"
NOW = 1_800_000_000.0
NONCE = "n-0S6_WzA2Mj"
ACCESS = "an-access-token"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    data = json.loads(algorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig"}


JWKS = {
    "keys": [
        _jwk(RSA_KEY, "rsa-1", "RS256"),
        _jwk(EC_KEY, "ec-1", "ES256"),
        _jwk(ED_KEY, "ed-1", "EdDSA"),
    ]
}


class Fetcher:
    def __init__(self, *documents: dict[str, Any]) -> None:
        self.documents = list(documents)
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.documents[min(self.calls, len(self.documents)) - 1]


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT,
        "exp": int(NOW) + 300,
        "iat": int(NOW) - 10,
        "auth_time": int(NOW) - 20,
        "nonce": NONCE,
        "at_hash": access_token_hash(ACCESS, "RS256", None),
        "email": "alice@example.com",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(
    claims: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1"
) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _validate(token: str, jwks: JWKSCache | None = None, **kw: Any) -> IDTokenClaims:
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": CLIENT,
        "jwks": jwks or JWKSCache(Fetcher(JWKS)),
        "algorithms_supported": ["RS256", "ES256", "EdDSA"],
        "nonce": NONCE,
        "access_token": ACCESS,
        "clock": lambda: NOW,
    }
    options.update(kw)
    return validate_id_token(token, **options)


def _refused(token: str, reason: str, **kw: Any) -> InvalidIDToken:
    with pytest.raises(InvalidIDToken) as caught:
        _validate(token, **kw)
    error = caught.value
    assert error.reason == reason
    assert isinstance(error, ServerError)
    assert token not in str(error)
    assert token.split(".")[1] not in str(error)
    assert str(error).startswith("The server's ID token was refused: ")
    return error


def test_a_good_token_is_accepted() -> None:
    claims = _validate(_sign(_claims()))
    assert claims.issuer == ISSUER
    assert claims.subject == "alice"
    assert claims.audience == (CLIENT,)
    assert claims.nonce == NONCE
    assert claims.expires_at == NOW + 300
    assert claims.auth_time == NOW - 20
    assert claims.claims["email"] == "alice@example.com"
    assert "alice@example.com" not in repr(claims)


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(EC_KEY, "ES256", "ec-1"), (ED_KEY, "EdDSA", "ed-1")]
)
def test_other_allowed_algorithms_verify(key: Any, alg: str, kid: str) -> None:
    at_hash = access_token_hash(ACCESS, alg, key.public_key())
    assert _validate(_sign(_claims(at_hash=at_hash), key, alg, kid)).subject == "alice"


def test_at_hash_uses_the_left_half_of_the_algorithms_hash() -> None:
    # OIDC Core §3.1.3.6: SHA-256 for RS256, left 128 bits, base64url.
    digest = hashlib.sha256(ACCESS.encode()).digest()[:16]
    assert access_token_hash(ACCESS, "RS256", None) == (
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    )
    assert len(access_token_hash(ACCESS, "RS512", None)) == len(
        base64.urlsafe_b64encode(b"x" * 32).rstrip(b"=")
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://evil.example.com"}, "iss"),
        ({"iss": None}, "iss"),
        ({"iss": ISSUER + "/"}, "iss"),
        ({"sub": None}, "sub"),
        ({"sub": ""}, "sub"),
        ({"sub": 5}, "sub"),
        ({"aud": "someone-else"}, "aud"),
        ({"aud": None}, "aud"),
        ({"aud": ["someone-else"]}, "aud"),
        ({"aud": 7}, "aud"),
        ({"aud": [CLIENT, "other"]}, "azp"),  # several audiences need azp
        ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
        ({"azp": "other"}, "azp"),
        ({"exp": None}, "exp"),
        ({"exp": "later"}, "exp"),
        ({"exp": True}, "exp"),
        ({"exp": int(NOW) - 61}, "exp"),
        ({"iat": None}, "iat"),
        ({"iat": int(NOW) + 61}, "iat"),
        ({"nbf": int(NOW) + 61}, "nbf"),
        ({"nonce": None}, "nonce"),
        ({"nonce": "another"}, "nonce"),
        ({"nonce": 1}, "nonce"),
        ({"at_hash": access_token_hash("another-token", "RS256", None)}, "at_hash"),
        ({"at_hash": 3}, "at_hash"),
    ],
)
def test_each_claim_wrong_or_missing_is_refused(changes: dict[str, Any], reason: str) -> None:
    _refused(_sign(_claims(**changes)), reason)


def test_several_audiences_with_our_azp_are_accepted() -> None:
    claims = _validate(_sign(_claims(aud=[CLIENT, "api"], azp=CLIENT)))
    assert claims.audience == (CLIENT, "api")


def test_leeway_tolerates_small_clock_skew() -> None:
    _validate(_sign(_claims(exp=int(NOW) - 30, iat=int(NOW) + 30)))


def test_no_nonce_expected_no_nonce_needed() -> None:
    _validate(_sign(_claims(nonce=None)), nonce=None)


def test_at_hash_is_optional_and_only_checked_with_an_access_token() -> None:
    _validate(_sign(_claims(at_hash=None)))
    _validate(_sign(_claims(at_hash="wrong")), access_token=None)


def test_a_wrong_signature_is_refused() -> None:
    header, _, signature = _sign(_claims()).split(".")
    forged = _sign(_claims(sub="mallory")).split(".")[1]
    _refused(f"{header}.{forged}.{signature}", "signature")


def test_a_token_signed_by_an_unknown_key_with_a_known_kid_is_refused() -> None:
    _refused(_sign(_claims(), key=OTHER_RSA_KEY), "signature")


def test_an_unknown_kid_refetches_the_key_set_once_then_refuses() -> None:
    fetcher = Fetcher(JWKS)
    jwks = JWKSCache(fetcher)
    _refused(_sign(_claims(), key=OTHER_RSA_KEY, kid="rotated"), "kid", jwks=jwks)
    assert fetcher.calls == 2  # the first use, and one re-fetch for the unknown kid


def test_an_unknown_kid_found_after_rotation_is_accepted() -> None:
    rotated = {"keys": [*JWKS["keys"], _jwk(OTHER_RSA_KEY, "rotated", "RS256")]}
    fetcher = Fetcher(JWKS, rotated)
    jwks = JWKSCache(fetcher)
    _validate(_sign(_claims()), jwks=jwks)
    assert fetcher.calls == 1
    _validate(_sign(_claims(), key=OTHER_RSA_KEY, kid="rotated"), jwks=jwks)
    assert fetcher.calls == 2
    _validate(_sign(_claims(), key=OTHER_RSA_KEY, kid="rotated"), jwks=jwks)
    assert fetcher.calls == 2  # the new set is kept


def test_no_kid_works_only_with_a_single_key() -> None:
    single = JWKSCache(Fetcher({"keys": [_jwk(RSA_KEY, "only", "RS256")]}))
    _validate(_sign(_claims(), kid=None), jwks=single)
    _refused(_sign(_claims(), kid=None), "kid")


def test_alg_none_is_refused() -> None:
    token = jwt.encode(_claims(), "", algorithm="none", headers={"kid": "rsa-1"})
    _refused(token, "alg")
    _refused(token, "alg", algorithms_supported=["none", "RS256"])


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"rsa-1","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    signing_input = header + b"." + payload
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    _refused(token, "alg", algorithms_supported=["HS256", "RS256"])


def test_an_algorithm_not_advertised_is_refused() -> None:
    _refused(_sign(_claims(), EC_KEY, "ES256", "ec-1"), "alg", algorithms_supported=["RS256"])


def test_rs256_is_the_default_when_nothing_is_advertised() -> None:
    assert signing_algorithms(None) == {"RS256"}
    assert signing_algorithms([]) == {"RS256"}
    assert signing_algorithms(["HS256", "none", "ES256"]) == {"ES256"}
    _validate(_sign(_claims()), algorithms_supported=None)
    _refused(_sign(_claims(), EC_KEY, "ES256", "ec-1"), "alg", algorithms_supported=None)


def test_a_key_of_the_wrong_type_for_the_algorithm_is_refused() -> None:
    # An ES256 header naming the RSA key's kid.
    _refused(_sign(_claims(), EC_KEY, "ES256", "rsa-1"), "jwks")


def test_a_key_whose_alg_member_disagrees_is_refused() -> None:
    entry = {**_jwk(RSA_KEY, "rsa-1", "RS256"), "alg": "RS512"}
    _refused(_sign(_claims()), "alg", jwks=JWKSCache(Fetcher({"keys": [entry]})))


def test_an_encryption_key_is_not_used_for_signatures() -> None:
    entry = {**_jwk(RSA_KEY, "rsa-1", "RS256"), "use": "enc"}
    _refused(_sign(_claims()), "kid", jwks=JWKSCache(Fetcher({"keys": [entry]})))


@pytest.mark.parametrize("document", [{}, {"keys": "no"}, []])
def test_a_malformed_key_set_is_refused(document: Any) -> None:
    _refused(_sign(_claims()), "jwks", jwks=JWKSCache(Fetcher(document)))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30.e30"])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidIDToken) as caught:
        _validate(token)
    assert caught.value.reason in {"format", "alg"}


def _userinfo(body: dict[str, Any]) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(body).encode()
    return response


def test_userinfo_subject_must_match() -> None:
    claims = _validate(_sign(_claims()))
    profile = {"sub": "alice", "name": "Alice"}
    assert userinfo_claims(_userinfo(profile), subject=claims.subject) == profile
    for userinfo in ({"sub": "mallory"}, {}, {"sub": 1}, {"sub": "alice "}):
        with pytest.raises(SubjectMismatch) as caught:
            userinfo_claims(_userinfo(userinfo), subject=claims.subject)
        assert isinstance(caught.value, InvalidIDToken)
        assert caught.value.reason == "userinfo_sub"
