"""Grants: each turns what the person provides into a token response (google-auth style).

A grant is a small object with one method, ``obtain(ctx) -> TokenResponse``. The session
(:meth:`desktop.auth.session.AuthClient.sign_in`) builds the :class:`GrantContext` (the
server's metadata, the transport, the client id, the scope to ask for, the clock, a cancel
event and a progress callback), calls the grant, and from then on does not know which grant
made its tokens: refresh, storage and sign-out are the same for all.

Three grants: :class:`PasswordGrant` (the dialog, first-party servers only),
:class:`AuthorizationCodeGrant` (the system browser, PKCE, a loopback redirect: RFC 8252) and
:class:`DeviceCodeGrant` (a code typed on another device: RFC 8628). Each redeems at the token
endpoint through ``ctx.token_request`` (so a proof of possession added there covers all of them).
A grant that signs a person in without a typed name leaves ``TokenResponse.username`` ``None``:
the session names the account from the (validated) ID token or from userinfo.

Waits are on ``ctx.cancel`` (Cancel ends them at once with :class:`Cancelled`) and, for the
device grant's polling, on an injectable ``wait`` so that tests move a clock instead of
sleeping for the server's interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from desktop.auth import messages
from desktop.auth.errors import (
    AuthorizationDenied,
    Cancelled,
    ConfigurationError,
    DeviceCodeExpired,
    InputError,
    OAuthError,
    ServerError,
)
from desktop.auth.tokens import TokenSet

if TYPE_CHECKING:
    # Only for types: building a grant (on the GUI thread, say) must not import requests.
    from desktop.auth.dpop import DPoPSigner
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.transport import Transport

__all__ = [
    "DEVICE_CODE_GRANT",
    "AuthorizationCodeGrant",
    "DeviceCodeGrant",
    "Grant",
    "GrantContext",
    "PasswordGrant",
    "Progress",
    "SignInMethods",
    "TokenResponse",
    "ignore_progress",
]


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# How long the browser sign-in waits for the redirect before giving up.
BROWSER_TIMEOUT = 300.0
# RFC 8628 §3.2 / §3.5: poll every 5 s unless the server names an interval; +5 s on slow_down.
DEFAULT_INTERVAL = 5.0
SLOW_DOWN_STEP = 5.0
# When the server names no expiry for its device code (it must, §3.2), stop after this long.
DEFAULT_DEVICE_EXPIRY = 600.0


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


Opener = Callable[[str], bool]
Wait = Callable[[threading.Event, float], bool]


@dataclass(frozen=True)
class SignInMethods:
    """Which ways of signing in the sign-in dialog offers for a server (see
    :func:`sign_in_methods`)."""

    password: bool
    browser: bool
    device: bool


def sign_in_methods(metadata: ServerMetadata) -> SignInMethods:
    """The dialog's choice: the password fields unless the server's grant list leaves the
    password grant out (an absent list may still allow it: the server's answer says); the
    browser where the server has an authorization endpoint and the code grant; the device
    grant only where there is no browser-capable grant. Nothing at all: the password fields,
    so the server's own refusal is what the person reads."""
    listed = metadata.grant_types_supported
    password = listed is None or "password" in listed
    browser = metadata.authorization_endpoint is not None and metadata.supports_grant(
        "authorization_code"
    )
    device = (
        not browser
        and metadata.device_authorization_endpoint is not None
        and metadata.supports_grant(DEVICE_CODE_GRANT)
    )
    return SignInMethods(
        password=password or not (browser or device), browser=browser, device=device
    )


def open_browser(url: str) -> bool:
    """The system browser, through :mod:`webbrowser` (which honours ``$BROWSER``); False when
    no browser could be started."""
    import webbrowser

    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def browser_available() -> bool:
    """Whether :func:`open_browser` has a browser to start (``$BROWSER`` or a known one)."""
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _wait_on_event(cancel: threading.Event, seconds: float) -> bool:
    return cancel.wait(seconds)


@dataclass(frozen=True)
class AuthorizationCodeGrant:
    """Authorization code with PKCE in the system browser, back on a loopback redirect
    (RFC 8252 §7.3, RFC 7636 S256, ``state``, a ``nonce`` with ``openid``, RFC 9207 ``iss``).

    ``opener`` opens a URL in a browser and says whether one started (default:
    :func:`open_browser`); the URL is also in the progress report, so the person can copy it
    when none did. ``timeout``: seconds to wait for the redirect.
    """

    opener: Opener = open_browser
    timeout: float = BROWSER_TIMEOUT

    @property
    def grant_type(self) -> str:
        return "authorization_code"

    def obtain(self, ctx: GrantContext) -> TokenResponse:
        from desktop.auth import loopback

        metadata = ctx.metadata
        endpoint = metadata.authorization_endpoint
        if endpoint is None:
            raise ConfigurationError(messages.NO_AUTHORIZATION_ENDPOINT)
        methods = metadata.code_challenge_methods_supported
        if methods is not None and "S256" not in methods:
            raise ConfigurationError(messages.NO_S256)
        ctx.check_cancelled()
        scopes = (ctx.scope or "").split()
        verifier, challenge = loopback.new_pkce()
        state = loopback.new_state()
        nonce = loopback.new_nonce() if "openid" in scopes else None
        with loopback.LoopbackReceiver(
            state=state,
            issuer=metadata.issuer,
            iss_required=metadata.authorization_response_iss_parameter_supported,
        ) as receiver:
            url = loopback.authorization_url(
                endpoint,
                client_id=ctx.client_id,
                redirect_uri=receiver.redirect_uri,
                scope=scopes,
                state=state,
                code_challenge=challenge,
                nonce=nonce,
            )
            ctx.progress(Progress(messages.CONTINUE_IN_BROWSER, url=url, expires_in=self.timeout))
            if not self.opener(url):
                ctx.progress(Progress(messages.NO_BROWSER, url=url, expires_in=self.timeout))
            answer = receiver.wait(self.timeout, cancel=ctx.cancel)
        ctx.check_cancelled()
        form = {
            "grant_type": "authorization_code",
            "code": answer.code,
            "redirect_uri": receiver.redirect_uri,
            "code_verifier": verifier,
        }
        return TokenResponse(ctx.tokens(ctx.token_request(form)), nonce=nonce)


@dataclass(frozen=True)
class DeviceAuthorization:
    """The device authorization response (RFC 8628 §3.2); ``repr`` hides the device code."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


@dataclass(frozen=True)
class DeviceCodeGrant:
    """The device authorization grant (RFC 8628): the person approves a short code on another
    device while this one polls the token endpoint.

    ``wait(cancel, seconds)`` waits between polls, returning early when ``cancel`` is set
    (default: ``cancel.wait``); tests pass one that moves their clock instead.
    """

    wait: Wait = _wait_on_event

    @property
    def grant_type(self) -> str:
        return DEVICE_CODE_GRANT

    def obtain(self, ctx: GrantContext) -> TokenResponse:
        ctx.check_cancelled()
        device = self.authorize(ctx)
        ctx.progress(
            Progress(
                messages.device_instructions(
                    device.verification_uri, device.user_code, device.verification_uri_complete
                ),
                url=device.verification_uri,
                user_code=device.user_code,
                complete_url=device.verification_uri_complete,
                expires_in=device.expires_in,
            )
        )
        deadline = ctx.clock() + device.expires_in
        interval = device.interval
        form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device.device_code}
        while True:
            self.wait(ctx.cancel, interval)
            ctx.check_cancelled()
            if ctx.clock() >= deadline:
                raise DeviceCodeExpired(messages.DEVICE_EXPIRED, error="expired_token")
            try:
                data = ctx.token_request(form)
            except OAuthError as error:
                if error.error == "authorization_pending":
                    continue
                if error.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                    continue
                if error.error == "expired_token":
                    raise DeviceCodeExpired(
                        messages.DEVICE_EXPIRED, error=error.error, status=error.status
                    ) from error
                if error.error == "access_denied":
                    raise AuthorizationDenied(
                        messages.DEVICE_DENIED, error=error.error, status=error.status
                    ) from error
                raise
            return TokenResponse(ctx.tokens(data))

    def authorize(self, ctx: GrantContext) -> DeviceAuthorization:
        """The device authorization request (RFC 8628 §3.1)."""
        from desktop.auth import oauth
        from desktop.auth.transport import json_object

        endpoint = ctx.metadata.device_authorization_endpoint
        if endpoint is None:
            raise ConfigurationError(messages.NO_DEVICE_ENDPOINT)
        form = {"client_id": ctx.client_id}
        if ctx.scope:
            form["scope"] = ctx.scope
        response = ctx.transport.request(
            "POST",
            endpoint,
            what="The server's device_authorization_endpoint",
            data=form,
            headers={"Accept": "application/json"},
        )
        with response:
            data = json_object(response)
            if response.status_code != 200:
                raise oauth.token_error(
                    response, data, grant=DEVICE_CODE_GRANT, client_id=ctx.client_id
                )
        return _device_authorization(data)


def _device_authorization(data: dict[str, Any] | None) -> DeviceAuthorization:
    if data is None:
        raise ServerError(messages.DEVICE_ANSWER_INVALID, status=200)
    device_code, user_code = data.get("device_code"), data.get("user_code")
    # "verification_url": the name some providers (Google) used before RFC 8628 was final.
    uri = data.get("verification_uri") or data.get("verification_url")
    complete = data.get("verification_uri_complete")
    if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
        raise ServerError(messages.DEVICE_ANSWER_INVALID, status=200)
    assert isinstance(device_code, str) and isinstance(user_code, str) and isinstance(uri, str)
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=_seconds(data.get("expires_in"), DEFAULT_DEVICE_EXPIRY),
        interval=_seconds(data.get("interval"), DEFAULT_INTERVAL),
    )


def _seconds(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return float(value)
