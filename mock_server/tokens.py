"""Access tokens (RFC 9068 JWTs, RS256) and opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from .keys import SigningKeys
from .passwords import User
from .settings import Settings
from .store import Family

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
    iat = int(now)
    # Never outlive the sign-in it belongs to.
    exp = max(iat, int(min(now + settings.access_ttl, family.expires_at)))
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
    return IssuedAccessToken(token, exp - iat)


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
    iat = int(now)
    claims: dict[str, Any] = {
        **profile,
        "iss": settings.issuer,
        "sub": user.sub,
        "aud": client_id,
        "exp": iat + int(min(settings.access_ttl, ID_TOKEN_TTL)),
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


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    if not _number(claims["exp"]) or not _number(claims["iat"]):
        raise InvalidToken("The access token has a malformed exp or iat")
    if now >= claims["exp"]:
        raise InvalidToken("The access token expired")
    if claims["iat"] > now + _IAT_SKEW:
        raise InvalidToken("The access token was issued in the future")
    if "nbf" in claims and (not _number(claims["nbf"]) or claims["nbf"] > now + _IAT_SKEW):
        raise InvalidToken("The access token is not valid yet")


def _verify_signed_content(token: str, keys: SigningKeys, settings: Settings) -> dict[str, Any]:
    """Everything about a token that does not change with time. The header chooses nothing:
    the algorithm is pinned, the key comes from our own set by `kid`, and `jwk` / `jku` / `x5u`
    are never looked at."""
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
    pay for the RSA check and the parsing once. Only tokens that passed are remembered (by
    SHA-256, not the token itself); time, the key still being ours, and (by the caller) the
    session are checked on every request."""

    def __init__(self, keys: SigningKeys, settings: Settings, max_entries: int = 4096) -> None:
        self._keys = keys
        self._settings = settings
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._verified: OrderedDict[bytes, tuple[str, Mapping[str, Any]]] = OrderedDict()

    def verify(self, token: str, now: float) -> Mapping[str, Any]:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidToken("The access token is too long")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            known = self._verified.get(digest)
            if known is not None:
                self._verified.move_to_end(digest)
        if known is None:
            claims: Mapping[str, Any] = MappingProxyType(
                _verify_signed_content(token, self._keys, self._settings)
            )
            kid = str(jwt.get_unverified_header(token)["kid"])
            with self._lock:
                self._verified[digest] = (kid, claims)
                while len(self._verified) > self._max_entries:
                    self._verified.popitem(last=False)
        else:
            kid, claims = known
            if self._keys.verification_key(kid) is None:
                raise InvalidToken("The access token was not signed by a key of this server")
        _check_times(claims, now)
        return claims
