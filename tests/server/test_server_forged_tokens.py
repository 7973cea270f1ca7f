"""Forged and broken access tokens against /userinfo: every one is refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from tests.server.helpers import FakeClock, app_client, bearer, sign_in

ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


class Forge:
    """A genuine token of the server, taken apart, and the server's own key, for variations."""

    def __init__(self, client: TestClient) -> None:
        tokens = sign_in(client, "bob")
        self.token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]
        self.header = jwt.get_unverified_header(self.token)
        self.claims = jwt.decode(self.token, options={"verify_signature": False})
        kid, self.private_key = client.app.state.server.keys.current()  # type: ignore[attr-defined]
        assert kid == self.header["kid"]
        self.public_pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def signed(
        self,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "RS256",
    ) -> str:
        return jwt.encode(
            self.claims if claims is None else claims,
            self.private_key if key is None else key,
            algorithm=algorithm,
            headers=self.header if header is None else header,
        )

    def raw_signed(self, header: dict[str, Any]) -> str:
        """Signed with our key by hand, for headers PyJWT itself refuses to write."""
        signing_input = f"{b64json(header)}.{b64json(self.claims)}"
        signature = self.private_key.sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64(signature)}"

    def with_claims(self, **changes: Any) -> str:
        return self.signed({**self.claims, **changes})

    def without_claim(self, name: str) -> str:
        return self.signed({k: v for k, v in self.claims.items() if k != name})

    def with_header(self, **changes: Any) -> str:
        header = {**self.header, **changes}
        return self.signed(header={k: v for k, v in header.items() if v is not None})

    def unsigned(self, alg: str) -> str:
        return f"{b64json({**self.header, 'alg': alg})}.{b64json(self.claims)}."

    def hmac_with_public_key(self) -> str:
        signing_input = f"{b64json({**self.header, 'alg': 'HS256'})}.{b64json(self.claims)}"
        mac = hmac.new(self.public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    def tampered(self) -> str:
        head, _, signature = self.token.split(".")
        payload = b64json({**self.claims, "groups": ["staff", "admin"]})
        return f"{head}.{payload}.{signature}"

    def attacker_signed(self, **header: Any) -> str:
        attacker_jwk = RSAAlgorithm.to_jwk(ATTACKER_KEY.public_key(), as_dict=True)
        values = {"jwk": attacker_jwk, **header}
        return self.signed(header={**self.header, **values}, key=ATTACKER_KEY)


CASES: dict[str, Callable[[Forge], str]] = {
    "alg none": lambda f: f.unsigned("none"),
    "alg None": lambda f: f.unsigned("None"),
    "alg NONE": lambda f: f.unsigned("NONE"),
    "alg nOnE": lambda f: f.unsigned("nOnE"),
    "alg none with the original signature": lambda f: (
        f.unsigned("none") + f.token.rsplit(".", 1)[1]
    ),
    "HS256 keyed with our public key": lambda f: f.hmac_with_public_key(),
    "tampered payload, original signature": lambda f: f.tampered(),
    "missing signature": lambda f: f.token.rsplit(".", 1)[0] + ".",
    "two segments": lambda f: f.token.rsplit(".", 1)[0],
    "attacker key in an embedded jwk": lambda f: f.attacker_signed(kid="attacker"),
    "attacker key in jwk, our kid": lambda f: f.attacker_signed(),
    "attacker key behind a jku URL": lambda f: f.attacker_signed(
        kid="attacker", jku="http://127.0.0.1:9/jwks.json"
    ),
    "attacker key behind an x5u URL": lambda f: f.attacker_signed(
        kid="attacker", x5u="http://127.0.0.1:9/cert.pem"
    ),
    "kid path traversal": lambda f: f.attacker_signed(kid="../../../../dev/null"),
    "kid SQL injection": lambda f: f.attacker_signed(kid="x' OR '1'='1"),
    "kid empty": lambda f: f.attacker_signed(kid=""),
    "kid a number": lambda f: f.raw_signed({**f.header, "kid": 1}),
    "kid missing": lambda f: f.with_header(kid=None),
    "RS512 with our key": lambda f: f.signed(
        header={**f.header, "alg": "RS512"}, algorithm="RS512"
    ),
    "PS256 with our key": lambda f: f.signed(
        header={**f.header, "alg": "PS256"}, algorithm="PS256"
    ),
    "typ JWT": lambda f: f.with_header(typ="JWT"),
    "typ missing": lambda f: f.with_header(typ=None),
    "crit header": lambda f: f.with_header(crit=["exp"]),
    "iss wrong": lambda f: f.with_claims(iss="http://evil.example"),
    "aud wrong": lambda f: f.with_claims(aud="http://evil.example"),
    "aud list without us": lambda f: f.with_claims(aud=["a", "b"]),
    "exp in the past": lambda f: f.with_claims(exp=f.claims["iat"] - 1),
    "exp a string": lambda f: f.with_claims(exp=str(f.claims["exp"])),
    "exp a bool": lambda f: f.with_claims(exp=True),
    "iat in the future": lambda f: f.with_claims(iat=f.claims["iat"] + 3600),
    "nbf in the future": lambda f: f.with_claims(nbf=f.claims["iat"] + 3600),
    "groups not a list": lambda f: f.with_claims(groups="admin"),
    "sid of no session": lambda f: f.with_claims(sid="no-such-session"),
    "sub of another person": lambda f: f.with_claims(sub="someone-else"),
    **{
        f"{name} missing": (lambda f, name=name: f.without_claim(name))  # type: ignore[misc]
        for name in (
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "client_id",
            "scope",
            "sid",
        )
    },
    "refresh token as bearer": lambda f: f.refresh_token,
    "empty-looking garbage": lambda f: "...",
    "not base64": lambda f: "!!!.@@@.###",
    "huge": lambda f: "a" * 10_000,
}


# Why each forgery is refused: the verifier must refuse it for the right reason.
REASONS = {
    "alg none": "The access token is not signed with RS256",
    "alg None": "The access token is not signed with RS256",
    "alg NONE": "The access token is not signed with RS256",
    "alg nOnE": "The access token is not signed with RS256",
    "alg none with the original signature": "The access token is not signed with RS256",
    "HS256 keyed with our public key": "The access token is not signed with RS256",
    "RS512 with our key": "The access token is not signed with RS256",
    "PS256 with our key": "The access token is not signed with RS256",
    "tampered payload, original signature": "The access token signature is invalid",
    "missing signature": "The access token signature is invalid",
    "attacker key in jwk, our kid": "The access token signature is invalid",
    "two segments": "The access token is malformed",
    "kid a number": "The access token is malformed",
    "crit header": "The access token is malformed",
    "refresh token as bearer": "The access token is malformed",
    "empty-looking garbage": "The access token is malformed",
    "not base64": "The access token is malformed",
    "attacker key in an embedded jwk": "The access token was not signed by a key of this server",
    "attacker key behind a jku URL": "The access token was not signed by a key of this server",
    "attacker key behind an x5u URL": "The access token was not signed by a key of this server",
    "kid path traversal": "The access token was not signed by a key of this server",
    "kid SQL injection": "The access token was not signed by a key of this server",
    "kid empty": "The access token was not signed by a key of this server",
    "kid missing": "The access token was not signed by a key of this server",
    "typ JWT": "The token is not an access token (typ)",
    "typ missing": "The token is not an access token (typ)",
    "iss wrong": "The access token is from another issuer",
    "aud wrong": "The access token is for another audience",
    "aud list without us": "The access token is for another audience",
    "exp in the past": "The access token expired",
    "exp a string": "The access token has a malformed exp or iat",
    "exp a bool": "The access token has a malformed exp or iat",
    "iat in the future": "The access token was issued in the future",
    "nbf in the future": "The access token is not valid yet",
    "groups not a list": "The access token has malformed claims",
    "sid of no session": "The session of this token has been revoked",
    "sub of another person": "The user of this token no longer exists",
    "iss missing": "The access token has no iss claim",
    "sub missing": "The access token has no sub claim",
    "aud missing": "The access token has no aud claim",
    "exp missing": "The access token has no exp claim",
    "iat missing": "The access token has no iat claim",
    "jti missing": "The access token has no jti claim",
    "client_id missing": "The access token has no client_id claim",
    "scope missing": "The access token has no scope claim",
    "sid missing": "The access token has no sid claim",
    "huge": "The access token is too long",
}


@pytest.fixture(scope="module")
def forge_client() -> Iterator[tuple[TestClient, Forge]]:
    with app_client(FakeClock()) as client:
        yield client, Forge(client)


def test_the_genuine_token_is_accepted(forge_client: tuple[TestClient, Forge]) -> None:
    client, forge = forge_client
    assert client.get("/userinfo", headers=bearer(forge.token)).status_code == 200
    # And a re-signed copy with the real key, unchanged, too: the battery's tokens differ
    # from a valid one only by what each case names.
    assert client.get("/userinfo", headers=bearer(forge.signed())).status_code == 200
    assert (
        client.get("/userinfo", headers=bearer(forge.raw_signed(forge.header))).status_code == 200
    )


@pytest.mark.parametrize("case", list(CASES))
def test_forged_token_is_refused(forge_client: tuple[TestClient, Forge], case: str) -> None:
    client, forge = forge_client
    response = client.get("/userinfo", headers=bearer(CASES[case](forge)))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json() == {"error": "invalid_token", "error_description": REASONS[case]}


def test_a_token_from_another_server_instance_is_refused(tmp_path: Path) -> None:
    # File stores: each makes its own key.
    with (
        app_client(FakeClock(), db_path=str(tmp_path / "one.sqlite3")) as first,
        app_client(FakeClock(), db_path=str(tmp_path / "two.sqlite3")) as second,
    ):
        token = sign_in(first)["access_token"]
        response = second.get("/userinfo", headers=bearer(token))
        assert response.status_code == 401
