"""Access tokens (RFC 9068 JWTs, RS256) and opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .keys import SigningKeys
from .passwords import User
from .settings import Settings
from .store import Family

# PyJWT (and cryptography with it) is imported on first use, not at start-up; see keys.py.

ALGORITHM = "RS256"
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (a media type, not a secret)
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid")
# Tolerance for an `iat` slightly ahead of our clock (another process, another clock).
_IAT_SKEW = 60.0
_MAX_TOKEN_LENGTH = 8192
# An ID token is proof of a sign-in, read once by the client: it need not outlive an hour.
ID_TOKEN_TTL = 3600.0


class InvalidToken(Exception):
    """The bearer token is not one of ours, or no longer valid. The text says why, safely."""


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def refresh_token_hash(token: str) -> str:
    # The tokens are 256-bit random, so a plain SHA-256 is enough: no salt or slow hash needed.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    expires_in: int


def issue_access_token(
    keys: SigningKeys,
    settings: Settings,
    *,
    user: User,
    family: Family,
    scope: str,
    now: float,
    jkt: str | None = None,
) -> IssuedAccessToken:
    """A signed access token; with ``jkt`` it is bound to that DPoP key (RFC 9449 §6)."""
    import jwt

    # NumericDate may carry fractions (RFC 7519 §2), but whole seconds are what most libraries
    # expect. Rounding `exp` down would cut a 1 s token to 0-1 s; so `iat` is rounded down (never
    # "issued in the future") and `exp` up: a token lives at least its lifetime, at most one
    # second more. Never outlive the sign-in it belongs to.
    iat = math.floor(now)
    exp = max(iat, min(math.ceil(now + settings.access_ttl), math.floor(family.expires_at)))
    kid, private = keys.sign_for(exp)
    claims = {
        "iss": settings.issuer,
        "sub": user.sub,
        "aud": settings.audience,
        "exp": exp,
        "iat": iat,
        "jti": uuid.uuid4().hex,
        "client_id": family.client_id,
        "scope": scope,
        "sid": family.id,
    }
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    # The person's groups only for a client that asked for them (least privilege).
    if "groups" in scope.split():
        claims["groups"] = list(user.groups)
    token = jwt.encode(
        claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": ACCESS_TOKEN_TYP}
    )
    # expires_in counts from now, rounded down: a client never believes it lives longer.
    return IssuedAccessToken(token, max(0, min(int(settings.access_ttl), math.floor(exp - now))))


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: the left half of the access token's SHA-256 (the hash of RS256)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def issue_id_token(
    keys: SigningKeys,
    settings: Settings,
    *,
    user: User,
    client_id: str,
    now: float,
    auth_time: float,
    nonce: str | None,
    access_token: str,
    profile: Mapping[str, Any],
) -> str:
    """An ID token (OIDC Core §2) for ``client_id``: it says who signed in and when, and carries
    the profile claims its scopes allow (``profile``)."""
    import jwt

    iat = math.floor(now)  # rounded as the access token's (see issue_access_token)
    claims: dict[str, Any] = {
        **profile,
        "iss": settings.issuer,
        "sub": user.sub,
        "aud": client_id,
        "exp": math.ceil(now + min(settings.access_ttl, ID_TOKEN_TTL)),
        "iat": iat,
        "auth_time": int(auth_time),
        "at_hash": at_hash(access_token),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    kid, private = keys.sign_for(claims["exp"])
    return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_header(token: str) -> dict[str, Any]:
    import jwt

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("The access token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("The access token is not signed with RS256")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (ACCESS_TOKEN_TYP, "application/at+jwt"):
        raise InvalidToken("The token is not an access token (typ)")
    if "crit" in header:
        raise InvalidToken("The access token has critical header extensions")
    return header


@dataclass(frozen=True)
class _Times:
    """An access token's time claims, checked to be numbers once (they are part of what was
    signed); whether they hold is asked anew at every request, against the server's clock."""

    exp: float
    iat: float
    nbf: float | None
    nbf_malformed: bool

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> _Times:
        if not _number(claims["exp"]) or not _number(claims["iat"]):
            raise InvalidToken("The access token has a malformed exp or iat")
        nbf = claims.get("nbf")
        malformed = "nbf" in claims and not _number(nbf)
        return cls(claims["exp"], claims["iat"], None if malformed else nbf, malformed)

    def check(self, now: float) -> None:
        if now >= self.exp:
            raise InvalidToken("The access token expired")
        if self.iat > now + _IAT_SKEW:
            raise InvalidToken("The access token was issued in the future")
        if self.nbf_malformed or (self.nbf is not None and self.nbf > now + _IAT_SKEW):
            raise InvalidToken("The access token is not valid yet")


def _verify_signed_content(token: str, keys: SigningKeys, settings: Settings) -> dict[str, Any]:
    """Everything about a token that does not change with time. The header chooses nothing:
    the algorithm is pinned, the key comes from our own set by `kid`, and `jwk` / `jku` / `x5u`
    are never looked at."""
    import jwt

    header = _checked_header(token)
    kid = header.get("kid")
    key = keys.verification_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken("The access token was not signed by a key of this server")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.audience,
            issuer=settings.issuer,
            # Time is checked below against the server's clock, which tests can move.
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("The access token signature is invalid") from None
    except jwt.MissingRequiredClaimError as error:
        raise InvalidToken(f"The access token has no {error.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("The access token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("The access token is from another issuer") from None
    except jwt.PyJWTError:
        raise InvalidToken("The access token is invalid") from None
    text_claims = ("sub", "jti", "client_id", "scope", "sid")
    if not all(isinstance(claims[name], str) for name in text_claims):
        raise InvalidToken("The access token has malformed claims")
    groups = claims.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidToken("The access token has malformed claims")
    if "cnf" in claims and bound_key(claims) is None:
        raise InvalidToken("The access token has a malformed cnf claim")
    return claims


def bound_key(claims: Mapping[str, Any]) -> str | None:
    """The thumbprint of the DPoP key a token is bound to (``cnf.jkt``), or None (Bearer)."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None


class AccessTokenVerifier:
    """Verifies access tokens (RFC 9068, RS256, every claim required), with a memory of tokens
    whose signature and claims were already checked, so a client's many requests with one token
    pay for the RSA check and the parsing once.

    As safe as checking again: a token is remembered by its exact text (identical text is
    identical bytes, which verify identically), only once it passed, and with only what
    cannot change for those bytes (the signature, the header, issuer, audience, the claims'
    presence and types). What can change is checked on every request: the times against the
    clock, the signing key still being one of ours (a retired key stops verifying when its
    time is up), and (by the caller) the session being live and the DPoP proof. Keeping the
    texts exposes nothing new: the same memory holds the private key that signed them."""

    def __init__(self, keys: SigningKeys, settings: Settings, max_entries: int = 4096) -> None:
        self._keys = keys
        self._settings = settings
        self._max_entries = max_entries
        self._lock = threading.Lock()
        # Read without the lock (a dict lookup is atomic); written under it, oldest out first.
        self._verified: dict[str, tuple[str, Mapping[str, Any], _Times]] = {}

    def verify(self, token: str, now: float) -> Mapping[str, Any]:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidToken("The access token is too long")
        known = self._verified.get(token)
        if known is None:
            known = self._verify_new(token)
        elif self._keys.verification_key(known[0]) is None:
            raise InvalidToken("The access token was not signed by a key of this server")
        _, claims, times = known
        times.check(now)
        return claims

    def _verify_new(self, token: str) -> tuple[str, Mapping[str, Any], _Times]:
        import jwt

        claims: Mapping[str, Any] = MappingProxyType(
            _verify_signed_content(token, self._keys, self._settings)
        )
        entry = (str(jwt.get_unverified_header(token)["kid"]), claims, _Times.of(claims))
        with self._lock:
            self._verified[token] = entry
            while len(self._verified) > self._max_entries:
                del self._verified[next(iter(self._verified))]
        return entry
