"""DPoP proofs for the server tests: right ones from the client's own key (desktop.auth.dpop),
and a ``Signer`` that makes them any way a test needs, wrong ones included."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from desktop.auth.dpop import DPoPKey, access_token_hash, jwk_thumbprint

_DROP = object()  # in a Signer's overrides: leave the member out
DROP: Any = _DROP


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: Any) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _private_key(alg: str, rsa_bits: int) -> Any:
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}[alg]
        return ec.generate_private_key(curve())
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


class Signer:
    """A key pair of any supported algorithm that signs DPoP proofs as told."""

    def __init__(self, alg: str = "ES256", *, rsa_bits: int = 2048, private: Any = None) -> None:
        self.alg = alg
        self.algorithm = jwt.get_algorithm_by_name(alg)
        self.private = private if private is not None else _private_key(alg, rsa_bits)
        public: dict[str, Any] = json.loads(self.algorithm.to_jwk(self.private.public_key()))
        self.public_jwk = public
        self.jkt = jwk_thumbprint(public)

    @classmethod
    def of(cls, key: DPoPKey) -> Signer:
        """A signer with the very key of a client's DPoPKey (read back from its JSON)."""
        return cls(private=jwt.get_algorithm_by_name("ES256").from_jwk(key.to_json()))

    def private_jwk(self) -> dict[str, Any]:
        return dict(json.loads(self.algorithm.to_jwk(self.private)))

    def proof(
        self,
        method: str,
        url: str,
        *,
        iat: float,
        access_token: str | None = None,
        nonce: str | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A proof signed by this key; ``header`` and ``claims`` override members (DROP
        removes one), after the defaults of a right proof."""
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(iat),
        }
        if access_token is not None:
            body["ath"] = access_token_hash(access_token)
        if nonce is not None:
            body["nonce"] = nonce
        for target, changes in ((head, header), (body, claims)):
            for name, value in (changes or {}).items():
                if value is _DROP:
                    target.pop(name, None)
                else:
                    target[name] = value
        signing_input = f"{_segment(head)}.{_segment(body)}"
        signature = self.algorithm.sign(signing_input.encode("ascii"), self.private)
        return f"{signing_input}.{_b64url(signature)}"


def unsigned_proof(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A proof put together by hand (``alg: none``, an HMAC made with a key of one's choice)."""
    return f"{_segment(header)}.{_segment(claims)}.{_b64url(signature)}"


def hs256_proof(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A proof MACed with HS256, as a forger who knows no private key would make it."""
    signing_input = f"{_segment({**header, 'alg': 'HS256'})}.{_segment(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


def dpop_auth(access_token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {access_token}", "DPoP": proof}


def token_claims(access_token: str) -> dict[str, Any]:
    """The claims of one of our access tokens, unverified (the tests check the server's
    verdicts, not this)."""
    return dict(jwt.decode(access_token, options={"verify_signature": False}))
