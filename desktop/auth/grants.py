"""Grants: each turns what the person provides into a token response (google-auth style).

A grant is a small object with one method, ``obtain(ctx) -> TokenResponse``. The session
(:meth:`desktop.auth.session.AuthClient.sign_in`) builds the :class:`GrantContext` (the
server's metadata, the transport, the client id, the scope to ask for, the clock, a cancel
event and a progress callback), calls the grant, and from then on does not know which grant
made its tokens: refresh, storage and sign-out are the same for all.

A new grant (authorization code with PKCE on a loopback redirect, device code per RFC 8628) is
a new class satisfying :class:`Grant`, in its own module if it is large; nothing in the session
changes. A grant that signs a person in without a typed name leaves ``TokenResponse.username``
``None``: the session names the account from the (validated) ID token or from userinfo.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from desktop.auth import messages
from desktop.auth.errors import Cancelled, InputError
from desktop.auth.tokens import TokenSet

if TYPE_CHECKING:
    # Only for types: building a grant (on the GUI thread, say) must not import requests.
    from desktop.auth.dpop import DPoPSigner
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.transport import Transport

__all__ = [
    "Grant",
    "GrantContext",
    "PasswordGrant",
    "Progress",
    "TokenResponse",
    "ignore_progress",
]


@dataclass(frozen=True)
class Progress:
    """Something the person must do for a grant to go on (shown by the GUI, printed by the
    CLI). ``message`` is a sentence; the rest is what a grant has to offer."""

    message: str
    url: str | None = None  # open this (the browser's authorization URL, a verification URI)
    user_code: str | None = None  # type this code there (device grant)
    complete_url: str | None = None  # the URL with the code in it (verification_uri_complete)
    expires_in: float | None = None  # seconds until the code or the wait expires


def ignore_progress(progress: Progress) -> None:
    """The progress callback when nobody shows progress."""


@dataclass(frozen=True)
class GrantContext:
    """What a grant may use. Built by the session for one sign-in."""

    metadata: ServerMetadata
    transport: Transport
    client_id: str
    scope: str | None  # from oauth.requested_scope: the same for every grant
    clock: Callable[[], float]  # monotonic seconds: waits and expiries are measured on it
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Callable[[Progress], None] = ignore_progress
    # The new session's DPoP key when the server offers DPoP: every token request of the
    # grant carries a proof of it, so the tokens are bound to it (RFC 9449 §5).
    dpop: DPoPSigner | None = None

    def token_request(self, form: dict[str, str]) -> dict[str, Any]:
        """POST ``form`` to the token endpoint (client id added, a DPoP proof when the session
        has a key); the answer or the error."""
        from desktop.auth import oauth

        return oauth.token_request(
            self.transport, self.metadata, form, client_id=self.client_id, dpop=self.dpop
        )

    def tokens(self, data: dict[str, Any]) -> TokenSet:
        """A token endpoint's answer as a :class:`TokenSet`, timed on the context's clock."""
        return TokenSet.from_response(data, now=self.clock())

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` once the person cancelled (call it between waits)."""
        if self.cancel.is_set():
            raise Cancelled("The sign-in was cancelled.")


@dataclass(frozen=True, repr=False)
class TokenResponse:
    """What a grant obtained. ``repr`` shows no secret.

    ``username``: the name the person typed (the password grant), else ``None`` (the session
    names the account from the tokens). ``nonce``: the nonce the grant sent in its
    authorization request, which the ID token must carry (OIDC Core §3.1.3.7).
    """

    tokens: TokenSet
    username: str | None = None
    nonce: str | None = None

    def __repr__(self) -> str:
        return f"TokenResponse(tokens={self.tokens!r}, username={self.username!r})"


class Grant(Protocol):
    """One way of signing in. ``grant_type`` is its OAuth name (for metadata checks, logs)."""

    @property
    def grant_type(self) -> str: ...

    def obtain(self, ctx: GrantContext) -> TokenResponse:
        """Turn what the person provided into tokens; raise an :class:`AuthError` otherwise
        (:class:`Cancelled` when ``ctx.cancel`` is set while waiting)."""
        ...


@dataclass(frozen=True, repr=False)
class PasswordGrant:
    """The resource owner password credentials grant (RFC 6749 §4.3): only for a first-party
    server (RFC 9700 §2.4), which is what the sign-in dialog is for."""

    username: str
    password: str

    @property
    def grant_type(self) -> str:
        return "password"

    def obtain(self, ctx: GrantContext) -> TokenResponse:
        if not self.username or not self.password:
            raise InputError(messages.EMPTY_CREDENTIALS)
        ctx.check_cancelled()
        form = {"grant_type": "password", "username": self.username, "password": self.password}
        if ctx.scope:
            form["scope"] = ctx.scope
        return TokenResponse(ctx.tokens(ctx.token_request(form)), username=self.username)

    def __repr__(self) -> str:
        return f"PasswordGrant(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__
