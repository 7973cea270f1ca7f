"""What an authorized request carries, and where a session's DPoP key comes from.

A request carries the access token in the scheme its token type names (RFC 6750 §2.1, RFC 9449
§7.1), and for a DPoP-bound token a proof of the session's key, bound to that token (``ath``):
:class:`Credential`.

DPoP (RFC 9449): when the server lists ES256 in ``dpop_signing_alg_values_supported``, each
sign-in makes a new key pair (:mod:`desktop.auth.dpop`) and every token request of the grant
carries a proof of it. The answer's ``token_type`` decides: ``DPoP`` makes a bound session,
whose key then signs every later request (refresh, revocation, resources, with the server's
nonces) and is kept where its tokens are (memory, the same keyring entry, written with the same
generation); ``Bearer`` makes a Bearer session and the key is dropped. The key travels with the
refresh token: a process that adopts a stored session (or another process's rotation) adopts
its key, and a stored token is revoked with the stored key. :class:`SessionKeys` makes and
reads those keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from desktop.auth import messages
from desktop.auth.dpop import ALGORITHM, DPoPKey, DPoPNonces, DPoPSigner
from desktop.auth.errors import InvalidDPoPKey, ServerError
from desktop.auth.store import StoredSession
from desktop.auth.tokens import DPOP, TokenSet

if TYPE_CHECKING:
    import requests

    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.persistence import LocalCopy
    from desktop.auth.transport import Transport

__all__ = ["Credential", "SessionKeys", "check_binding"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class Credential:
    """What an authorized request is sent with: the access token, in its scheme (the token
    type), with the session's DPoP key when the token is bound."""

    tokens: TokenSet
    dpop: DPoPSigner | None

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def send(
        self, transport: Transport, method: str, url: str, /, **options: Any
    ) -> requests.Response:
        """One resource request: ``Authorization: <token type> <token>`` (RFC 6750 §2.1,
        RFC 9449 §7.1), with a proof bound to the token (``ath``) when it is a DPoP token."""
        headers = dict(options.pop("headers", None) or {})
        tokens = self.tokens
        headers["Authorization"] = f"{tokens.token_type} {tokens.access_token}"
        if tokens.bound and self.dpop is not None:
            return self.dpop.send(
                transport,
                method,
                url,
                access_token=tokens.access_token,
                headers=headers,
                **options,
            )
        return transport.request(method, url, headers=headers, **options)


def check_binding(tokens: TokenSet, signer: DPoPSigner | None) -> None:
    # A DPoP token bound to no key of ours cannot be used (nor was it asked for).
    if tokens.bound and signer is None:
        raise ServerError(messages.bad_token_response("is DPoP-bound though no proof was sent"))


class SessionKeys:
    """The DPoP keys of one client's sessions: a new sign-in's, or a stored session's.
    ``clock`` is the wall clock the proofs' ``iat`` is read from."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        # Nonces belong to a server, not a key: every session of this client shares them.
        self._nonces = DPoPNonces()

    def new(self, metadata: ServerMetadata) -> DPoPSigner | None:
        """A new sign-in's DPoP key, when the server verifies proofs of our algorithm."""
        if ALGORITHM not in (metadata.dpop_signing_alg_values_supported or ()):
            return None
        return DPoPSigner(DPoPKey.generate(clock=self._clock), self._nonces)

    def from_stored(self, stored: StoredSession) -> DPoPSigner | None:
        """The stored session's key; :class:`InvalidDPoPKey` when its tokens are bound and the
        key is missing or unreadable."""
        if stored.dpop_key is None:
            if stored.token_type.lower() == DPOP.lower():
                raise InvalidDPoPKey(messages.DPOP_KEY_MISSING)
            return None
        return DPoPSigner(DPoPKey.from_json(stored.dpop_key, clock=self._clock), self._nonces)

    def of_stored(self, stored: StoredSession) -> DPoPSigner | None:
        """:meth:`from_stored`, for a session that must be spoken for anyway (revoked,
        refreshed): an unreadable key is logged, and the request goes without a proof."""
        try:
            return self.from_stored(stored)
        except InvalidDPoPKey as exc:
            logger.warning("Cannot read the stored session's DPoP key: %s", exc)
            return None

    def of_current(
        self, current: StoredSession | LocalCopy, mine: LocalCopy | None
    ) -> DPoPSigner | None:
        """The key that goes with the session proven current: ours when it is our refresh
        token (our copy, or the stored one we wrote), else the stored one's."""
        if not isinstance(current, StoredSession):
            return current.dpop
        if mine is not None and current.refresh_token == mine.refresh_token:
            return mine.dpop
        return self.of_stored(current)
