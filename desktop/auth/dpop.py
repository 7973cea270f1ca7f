"""DPoP, client side (RFC 9449): the session's key pair and its proofs.

One EC P-256 key (ES256) per sign-in. The private key lives in memory and, when the person
stays signed in, in the session's keyring entry (:meth:`DPoPKey.to_json`); it never appears in
a ``repr``, a log or an exception. The public JWK and the proof header never change for a key,
so they are serialized once; a proof then costs one small JSON dump and one ECDSA signature.

:class:`DPoPSigner` is the one place requests get their proofs: the session's token requests
(every grant, refresh, revocation) and its resource requests go through :meth:`DPoPSigner.send`,
which follows the server's nonces (§8, §9): the newest ``DPoP-Nonce`` each server sent goes
into the next proof, and a ``use_dpop_nonce`` refusal is answered by sending once more.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from desktop.auth import oauth
from desktop.auth.errors import InvalidDPoPKey
from desktop.auth.transport import json_object

if TYPE_CHECKING:
    import requests

    from desktop.auth.transport import Transport

ALGORITHM = "ES256"
_COORDINATE_BYTES = 32  # P-256
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9449 §8.1: nonce = 1*NQCHAR; anything else from a server is ignored.
_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,512}")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]")

Clock = Callable[[], float]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


# RFC 7638 §3.2: the members a thumbprint covers, per key type.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (the ``jkt`` of ``cnf``, RFC 9449 §6)."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError("Unsupported key type for a JWK thumbprint.")
    return _b64url(hashlib.sha256(_json({m: jwk[m] for m in members})).digest())


def access_token_hash(access_token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII."""
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def _normalise_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(0)[1:], 16))
    return char if _UNRESERVED.fullmatch(char) else match.group(0).upper()


def normalise_htu(url: str) -> str:
    """The ``htu`` for a request URL (RFC 9449 §4.2, §4.3): no query, no fragment, no userinfo,
    and RFC 3986 §6.2.2-6.2.3 normalisation (scheme and host in lower case, the default port
    dropped, an empty path as ``/``, percent-encodings in upper case, unreserved ones decoded),
    so that it compares equal to what the server normalises."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("A DPoP proof needs an absolute http(s) URL.")
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _PERCENT.sub(_normalise_percent, parts.path) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, normalised as :func:`normalise_htu` does."""
    parts = urlsplit(normalise_htu(url))
    return f"{parts.scheme}://{parts.netloc}"


class DPoPKey:
    """An EC P-256 private key and the proofs it signs.

    ``public_jwk`` and ``thumbprint`` (RFC 7638, the ``jkt`` of ``cnf``) are public; the private
    key leaves the object only through :meth:`to_json`, for the keyring.
    """

    __slots__ = ("_clock", "_header", "_key", "public_jwk", "thumbprint")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, *, clock: Clock = time.time):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise InvalidDPoPKey("The stored DPoP key is not an EC P-256 key.")
        self._key = private_key
        self._clock = clock
        numbers = private_key.public_key().public_numbers()
        self.public_jwk: dict[str, str] = {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            "y": _b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
        }
        self.thumbprint = jwk_thumbprint(self.public_jwk)
        header = {"typ": "dpop+jwt", "alg": ALGORITHM, "jwk": self.public_jwk}
        self._header = _b64url(_json(header)) + "."

    @classmethod
    def generate(cls, *, clock: Clock = time.time) -> DPoPKey:
        """A new key pair (one per sign-in)."""
        return cls(ec.generate_private_key(ec.SECP256R1()), clock=clock)

    def to_json(self) -> str:
        """The private key as a compact JWK (about 180 characters), for the keyring entry."""
        d = self._key.private_numbers().private_value.to_bytes(_COORDINATE_BYTES, "big")
        return json.dumps({**self.public_jwk, "d": _b64url(d)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str, *, clock: Clock = time.time) -> DPoPKey:
        """The key :meth:`to_json` wrote; :class:`InvalidDPoPKey` when it is not one."""
        try:
            jwk = json.loads(data)
            if not isinstance(jwk, dict) or (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256"):
                raise ValueError("not an EC P-256 JWK")
            d = _b64url_decode(jwk["d"])
            if len(d) != _COORDINATE_BYTES:
                raise ValueError("bad private value length")
            key = cls(ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1()), clock=clock)
        except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as error:
            # The message is fixed: the stored text is a secret and must not be echoed.
            raise InvalidDPoPKey("The stored DPoP key cannot be read.") from error
        if (jwk.get("x"), jwk.get("y")) != (key.public_jwk["x"], key.public_jwk["y"]):
            raise InvalidDPoPKey("The stored DPoP key cannot be read.")
        return key

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A DPoP proof JWT for one request (RFC 9449 §4.2); with ``access_token`` it carries
        ``ath`` (resource requests, §7), with ``nonce`` the server's latest nonce (§8, §9)."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),  # 128 random bits: unique per proof
            "htm": method.upper(),
            "htu": normalise_htu(url),
            "iat": int(self._clock()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = self._header + _b64url(_json(claims))
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
        return signing_input + "." + _b64url(signature)

    def now(self) -> float:
        """The time on the clock the proofs' ``iat`` is read from."""
        return self._clock()

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self.thumbprint!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy the private key somewhere we do not control.
        raise TypeError("A DPoP key cannot be pickled.")


class DPoPNonces:
    """The newest ``DPoP-Nonce`` each server origin sent (RFC 9449 §8.2), shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: dict[str, str] = {}

    def get(self, url: str) -> str | None:
        with self._lock:
            return self._nonces.get(origin(url))

    def remember(self, url: str, nonce: str | None) -> None:
        """Keep ``nonce`` (a response's ``DPoP-Nonce`` header) for ``url``'s origin; a missing
        or malformed value is ignored."""
        if nonce is None or not _NONCE.fullmatch(nonce):
            return
        with self._lock:
            self._nonces[origin(url)] = nonce

    def forget(self, url: str) -> None:
        with self._lock:
            self._nonces.pop(origin(url), None)


USE_DPOP_NONCE = "use_dpop_nonce"


def asks_for_nonce(response: requests.Response) -> bool:
    """Whether ``response`` refuses a proof for want of the server's nonce: a token endpoint's
    400 ``use_dpop_nonce`` (RFC 9449 §8) or a resource's 401 ``WWW-Authenticate: DPoP
    error="use_dpop_nonce"`` (§9)."""
    if response.status_code == 401:
        for scheme, params in oauth.challenges(response.headers.get("WWW-Authenticate", "")):
            if scheme == "dpop" and params.get("error") == USE_DPOP_NONCE:
                return True
    if response.status_code == 400:
        return oauth.oauth_error(json_object(response))[0] == USE_DPOP_NONCE
    return False


def clock_offset(date: str | None, now: float) -> float | None:
    """``date`` (an HTTP ``Date`` value) minus ``now``, in seconds; None when it is not one."""
    if not date:
        return None
    try:
        sent = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    if sent.tzinfo is None:  # "-0000": not a time we can place (RFC 5322 §3.3)
        return None
    return sent.timestamp() - now


class DPoPSigner:
    """One session's DPoP: its key, and the nonces of the servers it talks to.

    ``nonces`` may be shared by several signers of one client (nonces belong to a server, not
    to a key). ``repr`` names the key's thumbprint only.
    """

    __slots__ = ("key", "nonces")

    def __init__(self, key: DPoPKey, nonces: DPoPNonces | None = None) -> None:
        self.key = key
        self.nonces = nonces if nonces is not None else DPoPNonces()

    def send(
        self,
        transport: Transport,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request with a fresh proof (with ``ath`` for ``access_token``: a resource
        request) carrying the server's newest nonce.

        A ``use_dpop_nonce`` refusal is sent again once, with the nonce it gave; that answer is
        final whatever it says, so this never loops. A body is sent twice then, so it must not
        be a one-shot stream. Every answer's ``DPoP-Nonce`` is remembered for the next request.
        """
        headers = dict(headers or {})

        def send(nonce: str | None) -> requests.Response:
            headers["DPoP"] = self.key.proof(method, url, access_token=access_token, nonce=nonce)
            response = transport.request(method, url, headers=headers, **kwargs)
            self.nonces.remember(url, response.headers.get("DPoP-Nonce"))
            return response

        sent = self.nonces.get(url)
        response = send(sent)
        given = self.nonces.get(url)
        # Once, and only with a nonce other than the one just refused (that one would be
        # refused again): the second answer is final.
        if given is None or given == sent or not asks_for_nonce(response):
            return response
        response.close()
        return send(given)

    def clock_offset(self, response: requests.Response) -> float | None:
        """How many seconds the server's clock is ahead of the one that dates our proofs, from
        the answer's ``Date`` (RFC 9110 §6.6.1, to the second); None without a usable one.
        A server refuses proofs whose ``iat`` is too far from its own time (§11.1)."""
        return clock_offset(response.headers.get("Date"), self.key.now())

    def __repr__(self) -> str:
        return f"DPoPSigner(jkt={self.key.thumbprint!r})"

    __str__ = __repr__
