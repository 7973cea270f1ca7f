"""DPoP proofs, server side (RFC 9449 §4.3): parse and verify one request's proof.

Knows nothing of HTTP or OAuth errors: ``ProofVerifier.verify`` returns the proof key's
thumbprint (the ``jkt`` that tokens are bound to, §6) or raises ``DPoPError``, which the
protocol (server.py) answers as the endpoint requires (400 at the token endpoint, 401 with a
``WWW-Authenticate: DPoP`` challenge at a resource). The replay cache and the nonces' state live
in the store (SQLite: shared by the processes on one database, kept across restarts), reached
through the narrow Protocols below.

The URL normalisation and the thumbprint are written here again rather than imported from the
client (desktop/auth/dpop.py): the server is the client's independent check, as a real one is.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

# PyJWT and cryptography are imported where a proof is first checked, not at start-up: the
# server answers its first requests before any proof arrives (mock_server/asgi.py).
if TYPE_CHECKING:
    from jwt.algorithms import Algorithm

# Asymmetric only (§4.3 check 5): never "none", never an HMAC, whose key would be the header.
ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "RS256", "EdDSA")
PROOF_TYPE = "dpop+jwt"
# How far a proof's `iat` may be from our clock, either way (§4.3 check 11, §11.1).
IAT_WINDOW = 60.0
# A nonce is handed out for this long, and accepted for twice as long: the current one and the
# one just before it (§8: the server decides; a client that just got one must not be refused).
NONCE_LIFETIME = 300.0
# An RSA-4096 proof is under 3000 characters; anything far longer is refused before parsing.
MAX_PROOF_CHARS = 8192
_MAX_JTI_CHARS = 256
_RSA_BITS = (2048, 8192)
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# What each algorithm's key must be: the JWK `kty` and the curves it allows.
_KEY_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "PS256": ("RSA", ()),
    "RS256": ("RSA", ()),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}
# RFC 7638 §3.2: the required members of a public key, which its thumbprint covers.
_PUBLIC_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
# Members that only a private or a symmetric key has (RFC 7518 §6).
_SECRET_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

Clock = Callable[[], float]


class DPoPError(Exception):
    """A refused proof. ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce`` (§7.1, §8);
    the description is safe to show: it never echoes the proof."""

    def __init__(self, description: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class ReplayCache(Protocol):
    def remember_dpop_proof(self, jti_hash: bytes, expires_at: float, now: float) -> bool:
        """Record a proof's ``jti`` until ``expires_at``; False when it was seen before."""
        ...


class NonceStore(Protocol):
    def rotate_dpop_nonce(
        self, candidate: str, now: float, lifetime: float
    ) -> list[tuple[str, float]]:
        """Store ``candidate`` unless the newest nonce is younger than ``lifetime``; drop those
        older than twice that. Returns the nonces left, ``(value, created_at)``, newest first."""
        ...

    def dpop_nonces(self) -> list[tuple[str, float]]: ...


@dataclass(frozen=True)
class ProofRequest:
    """What a request brings for DPoP: its ``DPoP`` header values (every one of them), its
    method, and its URL as this server sees it (the issuer and the path)."""

    proofs: tuple[str, ...]
    method: str
    url: str


@functools.lru_cache(maxsize=1024)  # a client sends the same few URLs again and again
def normalise_htu(url: str) -> str:
    """``url`` without query and fragment, normalised as RFC 3986 §6.2.2-6.2.3 says (case of
    scheme and host, default port, empty path, percent-encoding), for comparing ``htu``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    port = parts.port  # ValueError for a malformed port
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("not an absolute http(s) URL")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"

    def percent(match: re.Match[str]) -> str:
        char = chr(int(match.group(0)[1:], 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    return f"{scheme}://{netloc}{_PERCENT.sub(percent, parts.path) or '/'}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK whose members were checked to be strings."""
    members = {m: jwk[m] for m in _PUBLIC_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """``ath`` (§4.2): base64url of the SHA-256 of the access token."""
    return _b64url(hashlib.sha256(access_token.encode("ascii", "surrogateescape")).digest())


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(segment))
    except (ValueError, RecursionError, binascii.Error):
        raise DPoPError(f"The DPoP proof's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise DPoPError(f"The DPoP proof's {what} is not a JSON object")
    return value


def _number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**53  # JSON allows any length; math.isfinite would overflow
    return isinstance(value, float) and math.isfinite(value)


class NonceRotation:
    """The server's DPoP nonces (§8, §9): one current value, rotated every ``lifetime`` and
    shared through the store by every process on the database, so a nonce one process handed
    out is accepted by the others. Remembered here between rotations: no query per request."""

    def __init__(self, store: NonceStore, clock: Clock, lifetime: float = NONCE_LIFETIME) -> None:
        self._store = store
        self._clock = clock
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._live: list[tuple[str, float]] = []

    def _nonces(self, now: float) -> list[tuple[str, float]]:
        with self._lock:
            if not self._live or now - self._live[0][1] >= self._lifetime:
                self._live = self._store.rotate_dpop_nonce(
                    secrets.token_urlsafe(24), now, self._lifetime
                )
            return self._live

    def current(self) -> str:
        """The nonce to hand out now (the ``DPoP-Nonce`` header)."""
        return self._nonces(self._clock())[0][0]

    def accepts(self, nonce: str) -> bool:
        now = self._clock()

        def known(nonces: list[tuple[str, float]]) -> bool:
            # Plain equality: a nonce is no secret (every answer shows it to anyone).
            return any(
                value == nonce and now - created < 2 * self._lifetime for value, created in nonces
            )

        if known(self._nonces(now)):
            return True
        # Another process may have rotated since we last looked.
        fresh = self._store.dpop_nonces()
        with self._lock:
            if fresh and (not self._live or fresh[0][1] > self._live[0][1]):
                self._live = fresh
        return known(fresh)


class ProofVerifier:
    """Verifies DPoP proofs (§4.3). Headers already seen are remembered, so a client's many
    proofs pay for parsing its key once; every proof's signature and claims are checked."""

    def __init__(
        self,
        replay: ReplayCache,
        clock: Clock,
        *,
        nonces: NonceRotation | None = None,
        window: float = IAT_WINDOW,
        max_headers: int = 1024,
    ) -> None:
        self._replay = replay
        self._clock = clock
        self.nonces = nonces
        self._window = window
        self._max_headers = max_headers
        self._lock = threading.Lock()
        self._headers: OrderedDict[str, tuple[Algorithm, Any, str]] = OrderedDict()

    def verify(self, request: ProofRequest, *, access_token: str | None = None) -> str:
        """The ``jkt`` of the request's one valid proof; ``access_token`` (resource requests)
        makes ``ath`` required. A proof that passes is spent: its ``jti`` never passes again."""
        if not request.proofs:
            raise DPoPError("A DPoP proof is required")
        if len(request.proofs) > 1:
            raise DPoPError("A request carries exactly one DPoP header")
        proof = request.proofs[0].strip()
        if len(proof) > MAX_PROOF_CHARS:
            raise DPoPError("The DPoP proof is too long")
        if not _COMPACT_JWS.fullmatch(proof):
            raise DPoPError("The DPoP proof is not a signed JWT")
        encoded_header, encoded_claims, encoded_signature = proof.split(".")
        algorithm, key, jkt = self._header(encoded_header)
        signing_input = f"{encoded_header}.{encoded_claims}".encode("ascii")
        try:
            signature = _b64url_decode(encoded_signature)
        except binascii.Error:
            signature = b""
        if not algorithm.verify(signing_input, key, signature):
            raise DPoPError("The DPoP proof's signature is invalid")
        claims = _json_object(encoded_claims, "claims")
        now = self._clock()
        iat = self._check_claims(claims, request, now, access_token)
        jti = claims["jti"]
        # Last, so that only a proof good in every other way takes a place in the cache. Kept
        # until its `iat` leaves the window: after that, the proof is refused as stale anyway.
        jti_hash = hashlib.sha256(jti.encode("utf-8", "surrogatepass")).digest()
        if not self._replay.remember_dpop_proof(jti_hash, iat + self._window, now):
            raise DPoPError("The DPoP proof was already used (jti)")
        return jkt

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        request: ProofRequest,
        now: float,
        access_token: str | None,
    ) -> float:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_CHARS:
            raise DPoPError("The DPoP proof needs a jti of at most 256 characters")
        if claims.get("htm") != request.method:
            raise DPoPError("The DPoP proof is for another HTTP method (htm)")
        htu = claims.get("htu")
        try:
            same_url = isinstance(htu, str) and normalise_htu(htu) == normalise_htu(request.url)
        except ValueError:
            same_url = False
        if not same_url:
            raise DPoPError("The DPoP proof is for another URL (htu)")
        iat = claims.get("iat")
        if not _number(iat):
            raise DPoPError("The DPoP proof needs a numeric iat")
        assert isinstance(iat, (int, float))
        if iat < now - self._window:
            raise DPoPError("The DPoP proof is too old (iat)")
        if iat > now + self._window:
            raise DPoPError("The DPoP proof is from the future (iat)")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str) or not hmac.compare_digest(
                ath.encode("utf-8", "surrogatepass"), access_token_hash(access_token).encode()
            ):
                raise DPoPError("The DPoP proof is not for this access token (ath)")
        if self.nonces is not None:
            nonce = claims.get("nonce")
            if not isinstance(nonce, str) or not self.nonces.accepts(nonce):
                raise DPoPError("A fresh DPoP nonce from this server is required", "use_dpop_nonce")
        return float(iat)

    def _header(self, encoded: str) -> tuple[Algorithm, Any, str]:
        """The algorithm, verification key and thumbprint a proof's header names. A client's
        proofs all share one header, so a header that passed is remembered as it was sent
        (the same text is the same header): its key is parsed and checked once."""
        with self._lock:
            known = self._headers.get(encoded)
            if known is not None:
                self._headers.move_to_end(encoded)
                return known
        header = _json_object(encoded, "header")
        if header.get("typ") != PROOF_TYPE:
            raise DPoPError(f"The DPoP proof's typ is not {PROOF_TYPE}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise DPoPError(f"The DPoP proof must be signed with one of: {' '.join(ALGORITHMS)}")
        if "crit" in header:
            raise DPoPError("The DPoP proof has critical header extensions")
        import jwt

        algorithm = jwt.get_algorithm_by_name(alg)
        key, jkt = _public_key(algorithm, alg, header.get("jwk"))
        entry = (algorithm, key, jkt)
        with self._lock:
            self._headers[encoded] = entry
            while len(self._headers) > self._max_headers:
                self._headers.popitem(last=False)
        return entry


def _public_key(algorithm: Algorithm, alg: str, jwk: object) -> tuple[Any, str]:
    """The verification key and thumbprint of a proof's ``jwk`` header, for ``alg``."""
    if not isinstance(jwk, dict):
        raise DPoPError("The DPoP proof has no jwk header")
    if _SECRET_MEMBERS & jwk.keys():
        raise DPoPError("The DPoP proof's jwk must be a public key, never a private one")
    kty, curves = _KEY_TYPES[alg]
    members = _PUBLIC_MEMBERS[kty]
    if jwk.get("kty") != kty or not all(isinstance(jwk.get(m), str) for m in members):
        raise DPoPError(f"The DPoP proof's jwk is not a public {kty} key for {alg}")
    if curves and jwk["crv"] not in curves:
        raise DPoPError(f"The DPoP proof's jwk is on another curve than {alg} needs")
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = {m: jwk[m] for m in members}
    try:
        key = algorithm.prepare_key(algorithm.from_jwk(public))
    except (jwt.PyJWTError, ValueError, TypeError):
        raise DPoPError("The DPoP proof's jwk is not a valid public key") from None
    if isinstance(key, rsa.RSAPublicKey) and not _RSA_BITS[0] <= key.key_size <= _RSA_BITS[1]:
        raise DPoPError("The DPoP proof's RSA key must have 2048 to 8192 bits")
    return key, thumbprint(public)
