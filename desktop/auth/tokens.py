"""The token set: access token, refresh token, ID token, expiry on a monotonic clock.

The access token is opaque to the client (OAuth 2.0 §1.4): the client never decodes or verifies
it, it only trusts ``expires_in``, measured against a monotonic clock so that a wrong or changing
wall clock cannot make a token look fresh or stale within a process. Across processes (the
stored session) a monotonic reading means nothing, so the store keeps the expiry as wall-clock
epoch seconds: :meth:`TokenSet.wall_expiry` and :meth:`TokenSet.from_stored` convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desktop.auth import messages
from desktop.auth.errors import ServerError

__all__ = ["DPOP", "TOKEN_TYPES", "TokenSet"]

DPOP = "DPoP"
TOKEN_TYPES = {"bearer": "Bearer", "dpop": DPOP}


@dataclass(frozen=True, repr=False)
class TokenSet:
    """One successful token response. ``repr`` never shows a token.

    ``expires_at`` and ``issued_at`` are readings of the client's monotonic clock;
    ``expires_at`` is ``None`` when the server gave no ``expires_in`` (the client then only
    refreshes after a 401).
    """

    access_token: str
    refresh_token: str | None
    token_type: str
    issued_at: float
    expires_at: float | None
    scope: str | None = None
    id_token: str | None = None  # as received: validated by the session before any use

    @property
    def bound(self) -> bool:
        """Sender-constrained (RFC 9449): useless without the session's DPoP key."""
        return self.token_type == DPOP

    @property
    def lifetime(self) -> float | None:
        """The ``expires_in`` the server gave, in seconds."""
        return None if self.expires_at is None else self.expires_at - self.issued_at

    def expires_in(self, now: float) -> float | None:
        """Seconds left at monotonic time ``now`` (negative once expired)."""
        return None if self.expires_at is None else self.expires_at - now

    def is_stale(self, now: float, leeway: float) -> bool:
        """True when the access token should be refreshed before use.

        The leeway is capped at half the lifetime: a provider issuing very short tokens
        (shorter than the leeway) would otherwise make every single call refresh.
        """
        if self.expires_at is None:
            return False
        lifetime = self.expires_at - self.issued_at
        margin = min(leeway, max(lifetime, 0.0) / 2)
        return now >= self.expires_at - margin

    @classmethod
    def from_response(
        cls, data: dict[str, Any], *, now: float, previous_refresh_token: str | None = None
    ) -> TokenSet:
        """Build from a token endpoint's JSON (RFC 6749 §5.1); a malformed one is a ServerError.

        A refresh response may omit ``refresh_token`` (RFC 6749 §6): the old one stays valid.
        """
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise ServerError(messages.bad_token_response("has no access token"))
        # RFC 6749 §7.1: the type is compared case-insensitively; it names the scheme the
        # token is sent with (RFC 6750 Bearer, RFC 9449 DPoP), kept in its canonical spelling.
        token_type = TOKEN_TYPES.get(str(data.get("token_type")).lower())
        if token_type is None:
            raise ServerError(messages.bad_token_response("is neither a Bearer nor a DPoP token"))
        refresh = data.get("refresh_token", previous_refresh_token)
        if refresh is not None and (not isinstance(refresh, str) or not refresh):
            raise ServerError(messages.bad_token_response("has a malformed refresh token"))
        expires_in = data.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)  # some providers send a string
        if expires_in is None:
            expires_at = None
        elif isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
            if expires_in <= 0:
                raise ServerError(messages.bad_token_response("has an invalid lifetime"))
            expires_at = now + float(expires_in)
        else:
            raise ServerError(messages.bad_token_response("has an invalid lifetime"))
        scope = data.get("scope")
        id_token = data.get("id_token")
        if id_token is not None and (not isinstance(id_token, str) or not id_token):
            raise ServerError(messages.bad_token_response("has a malformed ID token"))
        return cls(
            access_token=access,
            refresh_token=refresh,
            token_type=token_type,
            issued_at=now,
            expires_at=expires_at,
            scope=scope if isinstance(scope, str) else None,
            id_token=id_token,
        )

    def to_wall(self, *, now: float, wall_now: float) -> tuple[float, float | None]:
        """(issued_at, expires_at) as wall-clock epoch seconds, given the monotonic ``now``
        and the wall clock's ``wall_now`` read at the same moment."""
        issued = wall_now - (now - self.issued_at)
        return issued, None if self.expires_at is None else wall_now + (self.expires_at - now)

    @classmethod
    def from_stored(
        cls,
        *,
        access_token: str,
        refresh_token: str | None,
        token_type: str,
        scope: str | None,
        issued_at: float | None,
        expires_at: float | None,
        now: float,
        wall_now: float,
    ) -> TokenSet:
        """Tokens another process stored, ``issued_at``/``expires_at`` in wall-clock epoch
        seconds (``issued_at`` unknown: taken as now, so the lifetime is what is left)."""
        issued = now if issued_at is None else now - max(0.0, wall_now - issued_at)
        expires = None if expires_at is None else now + (expires_at - wall_now)
        return cls(
            access_token=access_token,
            refresh_token=refresh_token,
            token_type=TOKEN_TYPES.get(token_type.lower(), token_type),
            issued_at=issued,
            expires_at=expires,
            scope=scope,
        )

    def __repr__(self) -> str:
        refresh = "<redacted>" if self.refresh_token else None
        id_token = "<redacted>" if self.id_token else None
        return (
            f"TokenSet(access_token=<redacted>, refresh_token={refresh}, id_token={id_token}, "
            f"token_type={self.token_type!r}, lifetime={self.lifetime!r}, scope={self.scope!r})"
        )

    __str__ = __repr__
