"""ID-token validation (OpenID Connect Core 1.0 §3.1.3.7, §3.1.3.8).

:class:`IDTokenValidator` is what the session's ``id_token_validator`` seam takes
(``desktop/app.py`` and ``desktop/cli.py`` pass it): it fetches the provider's JWKS through the
core's transport and validates with the metadata's issuer and algorithms. The §5.3.2 check
(userinfo's ``sub`` is the ID token's) is done by :func:`desktop.auth.oauth.userinfo_claims`.

Nothing of an ID token is used before :func:`validate_id_token` has accepted it. The signature
is checked against the provider's JWKS with an algorithm from a pinned list: what discovery
advertises in ``id_token_signing_alg_values_supported``, intersected with the asymmetric
algorithms below (``none`` and the HMAC family are never accepted: an HMAC "verified" with a
public key proves nothing). Every refusal is an :class:`InvalidIDToken` whose text is a plain
sentence and never contains the token; ``reason`` names the check for callers and tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey

from desktop.auth import messages
from desktop.auth.errors import InvalidIDToken, ServerError

# Asymmetric signature algorithms we verify (RFC 7518 §3.1, RFC 8037).
ALLOWED_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# OIDC Discovery §3: RS256 is the default, and every provider must support it.
DEFAULT_ALGORITHM = "RS256"
# Seconds of clock difference tolerated between this machine and the provider.
DEFAULT_LEEWAY = 60.0

if TYPE_CHECKING:
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.transport import Transport

Clock = Callable[[], float]
FetchJWKS = Callable[[], Mapping[str, Any]]


def _fail(reason: str, wording: str | None = None) -> InvalidIDToken:
    """``reason`` names the check; ``wording`` the sentence in messages.ID_TOKEN_SENTENCES
    (the reason itself unless a check has several)."""
    sentence = messages.ID_TOKEN_SENTENCES[wording or reason]
    return InvalidIDToken(messages.id_token_refused(sentence), reason=reason)


class JWKSCache:
    """The provider's key set, fetched on first use and once more when a ``kid`` is unknown
    (keys rotate). ``fetch`` returns the JWKS document and raises the core's errors."""

    def __init__(self, fetch: FetchJWKS, keys: Mapping[str, Any] | None = None) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys = keys

    def current(self) -> Mapping[str, Any]:
        with self._lock:
            if self._keys is None:
                self._keys = self._fetch()
            return self._keys

    def refetch(self) -> Mapping[str, Any]:
        with self._lock:
            self._keys = self._fetch()
            return self._keys


@dataclass(frozen=True)
class IDTokenClaims:
    """The claims of an accepted ID token. The raw token is not kept; ``claims`` (every claim,
    for ``email``, ``name`` and the like) stays out of ``repr``."""

    issuer: str
    subject: str
    audience: tuple[str, ...]
    expires_at: float
    issued_at: float
    nonce: str | None = None
    auth_time: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def signing_algorithms(advertised: Sequence[str] | None) -> frozenset[str]:
    """The algorithms an ID token may use: advertised ∩ allowed, RS256 when nothing is said."""
    if not advertised:
        return frozenset({DEFAULT_ALGORITHM})
    return frozenset(a for a in advertised if isinstance(a, str)) & ALLOWED_ALGORITHMS


def _find_jwk(keys: Mapping[str, Any], kid: str | None) -> dict[str, Any] | None:
    entries = keys.get("keys") if isinstance(keys, Mapping) else None
    if not isinstance(entries, list):
        raise _fail("jwks")
    usable = [
        k for k in entries if isinstance(k, dict) and k.get("use", "sig") == "sig" and "d" not in k
    ]
    if kid is None:
        # OIDC Core §10.1: without a kid the set must hold exactly one signing key.
        return usable[0] if len(usable) == 1 else None
    return next((k for k in usable if k.get("kid") == kid), None)


def _verification_key(jwks: JWKSCache, kid: str | None, alg: str) -> Any:
    entry = _find_jwk(jwks.current(), kid)
    if entry is None:
        entry = _find_jwk(jwks.refetch(), kid)  # the provider may have rotated its keys
    if entry is None:
        raise _fail("kid")
    if entry.get("alg", alg) != alg:
        raise _fail("alg")
    try:
        return jwt.PyJWK(entry, algorithm=alg).key
    except jwt.PyJWTError as error:
        raise _fail("jwks", "jwks_key") from error


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def access_token_hash(access_token: str, alg: str, key: Any) -> str:
    """``at_hash`` (OIDC Core §3.1.3.6): base64url of the left half of the token's hash, with
    the hash of the signing algorithm (SHA-512 for Ed25519, SHAKE256/114 for Ed448)."""
    data = access_token.encode("utf-8")
    if alg == "EdDSA":
        digest = (
            hashlib.shake_256(data).digest(114)
            if isinstance(key, Ed448PublicKey)
            else hashlib.sha512(data).digest()
        )
    else:
        digest = hashlib.new("sha" + alg[2:], data).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def validate_id_token(
    token: str,
    *,
    issuer: str,
    client_id: str,
    jwks: JWKSCache,
    algorithms_supported: Sequence[str] | None = None,
    nonce: str | None = None,
    access_token: str | None = None,
    clock: Clock = time.time,
    leeway: float = DEFAULT_LEEWAY,
) -> IDTokenClaims:
    """Validate an ID token per OIDC Core §3.1.3.7 and return its claims.

    ``issuer`` is the issuer discovery confirmed; ``algorithms_supported`` its
    ``id_token_signing_alg_values_supported``; ``nonce`` the one sent in the authorization
    request (None for grants that send none); ``access_token`` the one issued with it, so that
    ``at_hash`` is checked when present. ``clock`` returns wall-clock seconds.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise _fail("format") from error
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in signing_algorithms(algorithms_supported):
        raise _fail("alg", "alg_not_allowed")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _fail("kid", "kid_invalid")
    key = _verification_key(jwks, kid, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            # Only the signature here: every claim is checked below against our clock, each
            # with its own reason.
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except jwt.InvalidSignatureError as error:
        raise _fail("signature") from error
    except jwt.PyJWTError as error:
        raise _fail("format") from error
    return _check_claims(
        claims,
        issuer=issuer,
        client_id=client_id,
        nonce=nonce,
        at_hash=access_token_hash(access_token, alg, key) if access_token else None,
        now=clock(),
        leeway=leeway,
    )


def _check_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    at_hash: str | None,
    now: float,
    leeway: float,
) -> IDTokenClaims:
    if claims.get("iss") != issuer:
        raise _fail("iss")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise _fail("sub")
    aud = claims.get("aud")
    audience = (aud,) if isinstance(aud, str) else aud
    if (
        not isinstance(audience, list | tuple)
        or not all(isinstance(a, str) for a in audience)
        or client_id not in audience
    ):
        raise _fail("aud")
    azp = claims.get("azp")
    if (azp is not None or len(audience) > 1) and azp != client_id:
        raise _fail("azp")
    expires_at = _number(claims, "exp")
    if expires_at is None:
        raise _fail("exp")
    if now > expires_at + leeway:
        raise _fail("exp", "expired")
    issued_at = _number(claims, "iat")
    if issued_at is None:
        raise _fail("iat")
    if issued_at > now + leeway:
        raise _fail("iat", "iat_future")
    not_before = _number(claims, "nbf")
    if not_before is not None and now + leeway < not_before:
        raise _fail("nbf")
    got_nonce = claims.get("nonce")
    if nonce is not None and not (
        isinstance(got_nonce, str)
        and hmac.compare_digest(got_nonce.encode("utf-8"), nonce.encode("utf-8"))
    ):
        raise _fail("nonce")
    got_hash = claims.get("at_hash")
    if (
        at_hash is not None
        and got_hash is not None
        and not (
            isinstance(got_hash, str)
            and hmac.compare_digest(got_hash.encode("utf-8"), at_hash.encode("ascii"))
        )
    ):
        raise _fail("at_hash")
    return IDTokenClaims(
        issuer=issuer,
        subject=subject,
        audience=tuple(audience),
        expires_at=expires_at,
        issued_at=issued_at,
        nonce=got_nonce if isinstance(got_nonce, str) else None,
        auth_time=_number(claims, "auth_time"),
        claims=dict(claims),
    )


class IDTokenValidator:
    """The session's ``id_token_validator``: validates with the provider's own key set,
    fetched from ``metadata.jwks_uri`` through the session's transport (one cache per URI,
    refetched once when a ``kid`` is unknown). Returns the accepted token's claims."""

    def __init__(self, *, clock: Clock = time.time, leeway: float = DEFAULT_LEEWAY) -> None:
        self._clock = clock
        self._leeway = leeway
        self._lock = threading.Lock()
        self._caches: dict[str, JWKSCache] = {}

    def __call__(
        self,
        id_token: str,
        *,
        metadata: ServerMetadata,
        transport: Transport,
        client_id: str,
        nonce: str | None,
        access_token: str,
    ) -> Mapping[str, Any]:
        uri = metadata.jwks_uri
        if uri is None:
            raise InvalidIDToken(messages.NO_JWKS, reason="jwks")
        with self._lock:
            cache = self._caches.get(uri)
            if cache is None:
                cache = self._caches[uri] = JWKSCache(lambda: _fetch_jwks(transport, uri))
        claims = validate_id_token(
            id_token,
            issuer=metadata.issuer,
            client_id=client_id,
            jwks=cache,
            algorithms_supported=metadata.id_token_signing_alg_values_supported,
            nonce=nonce,
            access_token=access_token,
            clock=self._clock,
            leeway=self._leeway,
        )
        return claims.claims


def _fetch_jwks(transport: Transport, uri: str) -> Mapping[str, Any]:
    from desktop.auth.oauth import server_failure
    from desktop.auth.transport import json_object

    response = transport.request(
        "GET", uri, what="The server's jwks_uri", headers={"Accept": "application/json"}
    )
    with response:
        if response.status_code != 200:
            raise server_failure(response.status_code)
        document = json_object(response)
    if document is None:
        raise ServerError(messages.JWKS_NOT_JSON, status=200)
    return document
