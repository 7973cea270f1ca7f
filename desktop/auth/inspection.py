"""What is inside a token, for people to read (the token inspector). Qt-free.

The session itself never reads the access token (it is opaque to a client, OAuth 2.0 §1.4);
this module exists to *show* it: a JWT's three parts decoded, each claim said in words, and
its signature checked against the server's published keys (JWKS). The signature check pins the
algorithm: the header's ``alg`` is used only when it is one the server advertises and one we
accept (never ``none``, never HMAC: an HMAC "verified" with a public key proves nothing), and
the key is looked up by ``kid`` in the server's set only (``jwk``/``jku``/``x5u`` headers are
ignored). Nothing here logs, and no text made here contains the token.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import jwt

from desktop.auth import messages
from desktop.auth.errors import AuthError, NotSignedIn
from desktop.auth.idtoken import signing_algorithms
from desktop.auth.messages import describe_wait

if TYPE_CHECKING:
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.tokens import TokenSet


@dataclass(frozen=True, repr=False)
class DecodedToken:
    """A JWT split into its parts. ``repr`` shows no part of it."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signature: bytes
    signing_input: str = field(compare=False)  # header.payload, as signed
    encoded_signature: str = field(compare=False)

    def __repr__(self) -> str:
        return f"DecodedToken(alg={self.header.get('alg')!r}, kid={self.header.get('kid')!r})"


@dataclass(frozen=True)
class Claim:
    """One claim: its name, its value as text, and what it means in words."""

    name: str
    value: str
    meaning: str


@dataclass(frozen=True)
class Verification:
    """The outcome of a signature check: ``verified`` and a sentence saying so, or why not."""

    verified: bool
    sentence: str
    kid: str | None = None


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decode(token: str) -> DecodedToken | None:
    """The token's parts, or None when it is not a JWS compact JWT (an opaque token)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    try:
        header = json.loads(_b64decode(parts[0]))
        payload = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return DecodedToken(header, payload, signature, f"{parts[0]}.{parts[1]}", parts[2])


def verify(
    token: str,
    decoded: DecodedToken,
    jwks: Mapping[str, Any],
    advertised: Sequence[str] | None,
) -> Verification:
    """Check the signature with the server's key named by the header's ``kid``."""
    alg = decoded.header.get("alg")
    kid = decoded.header.get("kid")
    kid = kid if isinstance(kid, str) else None
    allowed = signing_algorithms(advertised)
    if not isinstance(alg, str) or alg not in allowed:
        listed = ", ".join(sorted(allowed)) or "none"
        return Verification(
            False,
            f"Not verified: its algorithm {alg!r} is not one the server uses ({listed}).",
            kid,
        )
    entries = jwks.get("keys")
    keys = [k for k in entries if isinstance(k, dict)] if isinstance(entries, list) else []
    if kid is None:
        candidates = [k for k in keys if k.get("use", "sig") == "sig" and "d" not in k]
        entry = candidates[0] if len(candidates) == 1 else None
    else:
        entry = next((k for k in keys if k.get("kid") == kid and "d" not in k), None)
    if entry is None:
        named = f"key {kid!r}" if kid else "a key without a kid"
        return Verification(
            False, f"Not verified: it names {named}, which the server does not publish.", kid
        )
    if entry.get("alg", alg) != alg:
        return Verification(
            False, f"Not verified: key {kid!r} is for {entry.get('alg')}, not {alg}.", kid
        )
    try:
        key = jwt.PyJWK(entry, algorithm=alg).key
        jwt.PyJWS().decode(token, key, algorithms=[alg])
    except jwt.InvalidSignatureError:
        return Verification(
            False, f"Not verified: the signature does not match key {kid!r}. Forged?", kid
        )
    except jwt.PyJWTError as error:
        return Verification(False, f"Not verified: {type(error).__name__}.", kid)
    return Verification(True, f"Signed by key {kid or '(the only one)'} ({alg}), verified.", kid)


# -- claims in words ------------------------------------------------------------------------------

_MEANINGS: dict[str, str] = {
    "iss": "Issuer: the server that made this token.",
    "sub": "Subject: the person it speaks for, as the server identifies them.",
    "aud": "Audience: who should accept it.",
    "client_id": "The app it was issued to.",
    "scope": "Scopes: what the app may do with it.",
    "groups": "Groups the server says the person belongs to (it decides access, not the app).",
    "jti": "Token id: unique to this token, new at every refresh.",
    "sid": "Session id: the sign-in this token belongs to.",
    "nonce": "The value the app sent at sign-in, echoed to prove the answer is fresh.",
    "azp": "Authorized party: the app the ID token was issued to.",
    "at_hash": "A hash of the access token issued with this ID token.",
    "typ": "Type of token.",
    "alg": "Signature algorithm.",
    "kid": "Key id: which of the server's keys signed it.",
    "preferred_username": "The person's username.",
    "name": "The person's name.",
    "email": "The person's email address.",
}


def _timestamp(value: Any, now: float) -> tuple[str, str] | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        local = datetime.fromtimestamp(value).astimezone()
    except (OverflowError, OSError, ValueError):
        return None
    delta = value - now
    when = local.strftime("%Y-%m-%d %H:%M:%S %Z")
    relative = f"in {describe_wait(delta)}" if delta > 0 else f"{describe_wait(-delta)} ago"
    return when, relative


def claims(payload: Mapping[str, Any], now: float) -> list[Claim]:
    """Every claim of ``payload``, in the token's order, with its meaning in words."""
    out: list[Claim] = []
    for key, value in payload.items():
        name = key
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        meaning = _MEANINGS.get(name, "")
        times = _timestamp(value, now) if key in ("exp", "iat", "nbf", "auth_time") else None
        if times is not None:
            when, relative = times
            text = f"{when} ({relative})"
            meaning = {
                "exp": "Expires: after this the server refuses it and the app refreshes it.",
                "iat": "Issued at.",
                "nbf": "Not valid before.",
                "auth_time": "When the person last typed their password.",
            }[name]
            if name == "exp" and value <= now:
                meaning = "Expired: the server refuses it now."
        elif name == "cnf" and isinstance(value, Mapping) and "jkt" in value:
            text = str(value["jkt"])
            name = "cnf.jkt"
            meaning = "Bound to this device's key (DPoP): useless without the private key."
        elif name == "scope" and isinstance(value, str):
            meaning = f"{_MEANINGS['scope']} ({len(value.split())} granted)"
        elif name == "groups" and isinstance(value, list):
            text = ", ".join(str(g) for g in value) or "(none)"
        elif name == "aud" and isinstance(value, list):
            text = ", ".join(str(a) for a in value)
        out.append(Claim(name, text, meaning))
    return out


@dataclass(frozen=True, repr=False)
class Inspected:
    """One token as the inspector shows it. ``decoded`` is None for an opaque token."""

    label: str  # "Access token", "ID token"
    token: str
    decoded: DecodedToken | None
    verification: Verification | None

    def __repr__(self) -> str:
        return f"Inspected({self.label!r}, jwt={self.decoded is not None})"


def inspect(
    label: str,
    token: str,
    jwks: Callable[[], Mapping[str, Any]],
    advertised: Sequence[str] | None,
) -> Inspected:
    """Decode ``token`` and check its signature (``jwks`` is fetched only for a JWT); a key
    set that cannot be fetched is a verification that failed, said in words."""
    decoded = decode(token)
    if decoded is None:
        return Inspected(label, token, None, None)
    try:
        keys = jwks()
    except AuthError as error:  # the core's errors carry a sentence
        sentence = str(error).strip() or type(error).__name__
        return Inspected(label, token, decoded, Verification(False, f"Not verified: {sentence}"))
    return Inspected(label, token, decoded, verify(token, decoded, keys, advertised))


@dataclass(frozen=True, repr=False)
class TokenInspection:
    """The session's tokens as the inspector shows them: the access token, and the ID token
    when the last token answer carried one. The refresh token is never part of it."""

    access: Inspected  # its ``token`` is for the explicit "Copy access token" only
    id_token: Inspected | None

    def __repr__(self) -> str:
        return f"TokenInspection(access={self.access!r}, id_token={self.id_token!r})"


class _Session(Protocol):
    def current_tokens(self) -> TokenSet | None: ...
    def metadata(self) -> ServerMetadata: ...
    def signing_keys(self) -> dict[str, Any]: ...


def inspect_session(client: _Session) -> TokenInspection:
    """Inspect the session's current tokens (I/O: the metadata, the key set, once)."""
    tokens = client.current_tokens()
    if tokens is None:
        raise NotSignedIn(messages.NOT_SIGNED_IN)
    advertised = client.metadata().id_token_signing_alg_values_supported
    fetched: list[Mapping[str, Any]] = []

    def jwks() -> Mapping[str, Any]:
        if not fetched:
            fetched.append(client.signing_keys())
        return fetched[0]

    access = inspect("Access token", tokens.access_token, jwks, advertised)
    id_token = inspect("ID token", tokens.id_token, jwks, advertised) if tokens.id_token else None
    return TokenInspection(access, id_token)
