"""RS256 signing keys: kept in the store (so a restart keeps tokens valid), published as JWKS.

After a rotation the retired key stays published, and keeps verifying, until every access
token it signed has expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .store import KeyRecord, Store

# cryptography and PyJWT are imported where keys are made or read, not at start-up: the server
# accepts connections before its first key is needed (about 0.1 s of imports, and RSA key
# generation, which holds the GIL, for a fresh database).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa


def _thumbprint(jwk: dict[str, Any]) -> str:
    # RFC 7638: the kid is the key's own thumbprint, so it is stable and never collides.
    members = {k: jwk[k] for k in ("e", "kty", "n")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def new_key_record(now: float) -> KeyRecord:
    return _new_key(now).record


def _new_key(now: float) -> _LoadedKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    jwk = _public_jwk(private.public_key())
    record = KeyRecord(kid=_thumbprint(jwk), private_pem=pem, created_at=now, retired_at=None)
    jwk["kid"] = record.kid
    return _LoadedKey(record, private, private.public_key(), jwk)


def _public_jwk(public: rsa.RSAPublicKey) -> dict[str, Any]:
    from jwt.algorithms import RSAAlgorithm

    jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    jwk.pop("key_ops", None)  # RFC 7517 §4.3: not together with "use"
    jwk.update({"use": "sig", "alg": "RS256"})
    return jwk


_NOTE_AHEAD = 300.0


@dataclass(frozen=True)
class _LoadedKey:
    record: KeyRecord
    private: rsa.RSAPrivateKey
    public: rsa.RSAPublicKey
    jwk: dict[str, Any]


def _load(record: KeyRecord) -> _LoadedKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = serialization.load_pem_private_key(record.private_pem.encode("ascii"), None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(f"signing key {record.kid} is not an RSA key")
    public = private.public_key()
    jwk = _public_jwk(public)
    jwk["kid"] = record.kid
    return _LoadedKey(record, private, public, jwk)


class SigningKeys:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _LoadedKey] = {}
        self._noted_until: dict[str, float] = {}
        self._ensured = False
        self._ensure_lock = threading.Lock()

    def ensure_key(self) -> None:
        """Make a key if the store has no active one (a fresh database). Done on first use,
        so start-up never waits for it; call it to pay the cost at a moment of your choice."""
        if self._ensured:
            return
        with self._ensure_lock:
            if self._ensured:
                return
            made = None
            if not any(r.retired_at is None for r in self._store.signing_keys()):
                made = _new_key(self._clock())
                if self._store.add_signing_key(made.record, retire_current=False):
                    with self._lock:
                        # Already parsed: reading its PEM back would cost as much again.
                        self._keys[made.record.kid] = made
            self._reload()
            self._ensured = True

    def _reload(self) -> dict[str, _LoadedKey]:
        records = self._store.signing_keys()
        with self._lock:
            # Parsing a PEM is slow; keep parsed keys, and take in what others added (rotate-key).
            keys = {}
            for record in records:
                known = self._keys.get(record.kid)
                keys[record.kid] = (
                    _LoadedKey(record, known.private, known.public, known.jwk)
                    if known is not None
                    else _load(record)
                )
            self._keys = keys
            return keys

    @staticmethod
    def _published(key: _LoadedKey, now: float) -> bool:
        # Judged by our own clock against the tokens' own `exp`, not by when (or on which
        # machine's clock) the key was retired.
        return key.record.retired_at is None or now < (key.record.last_exp or 0.0)

    def current(self) -> tuple[str, rsa.RSAPrivateKey]:
        """The key new tokens are signed with (read afresh: another process may have rotated)."""
        self.ensure_key()
        active = [k for k in self._reload().values() if k.record.retired_at is None]
        if not active:
            raise RuntimeError("no active signing key")
        newest = max(active, key=lambda k: k.record.created_at)
        return newest.record.kid, newest.private

    def sign_for(self, exp: float) -> tuple[str, rsa.RSAPrivateKey]:
        """The current key, recorded as needed until ``exp``, before any token is signed."""
        kid, private = self.current()
        with self._lock:
            noted = self._noted_until.get(kid, 0.0)
        if exp > noted:
            # Noted a little beyond this token's end, so a burst of tokens costs one write,
            # not one each; the key then stays published at most _NOTE_AHEAD longer.
            until = exp + _NOTE_AHEAD
            self._store.note_key_use(kid, until)
            with self._lock:
                self._noted_until[kid] = max(until, self._noted_until.get(kid, 0.0))
        return kid, private

    def verification_key(self, kid: str) -> rsa.RSAPublicKey | None:
        """Our own public key for ``kid``, or None: a token never chooses its key."""
        self.ensure_key()
        now = self._clock()
        key = self._keys.get(kid)
        if key is None or not self._published(key, now):
            # Unknown or past its time here: another process may know better (rotate-key,
            # tokens it signed since); ask the store once.
            key = self._reload().get(kid)
        if key is None or not self._published(key, now):
            return None
        return key.public

    def jwks(self) -> dict[str, Any]:
        self.ensure_key()
        now = self._clock()
        keys = self._reload().values()
        return {"keys": [k.jwk for k in keys if self._published(k, now)]}
