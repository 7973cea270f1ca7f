"""The person's side of signing in: authorization requests and the sign-in page's outcome
(RFC 6749 §4.1, PKCE RFC 7636, RFC 9207), and the device flow's requests and page (RFC 8628).

``SignInFlows`` checks what the browser and the device page bring, and leaves codes and
approvals in the store; the token endpoint (``TokenServer``, server.py) redeems them. It shares
the token server's users, password check, throttle and clients, so a sign-in page answers
exactly as the password grant does. Like server.py, it knows nothing of HTTP.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .authorization import (
    AUTHORIZATION_PARAMETERS,
    MAX_ECHOED_LENGTH,
    S256_CHALLENGE,
    USER_CODE_ALPHABET,
    USER_CODE_LENGTH,
    format_user_code,
    loopback_redirect_problem,
    normalize_user_code,
    with_query,
)
from .server import DEFAULT_SCOPE, GRANTABLE_SCOPE, OFFLINE_ACCESS, OAuthError
from .store import AuthorizationCode, DeviceCode
from .throttle import FailureLimiter, address_key
from .tokens import refresh_token_hash

if TYPE_CHECKING:
    from .passwords import User
    from .server import TokenServer


class AuthorizationRedirect(OAuthError):
    """An authorization error answered on the client's redirect URI (RFC 6749 §4.1.2.1), once
    that URI is known to be safe: ``location`` carries error, state and iss."""

    def __init__(self, location: str, error: str, description: str) -> None:
        super().__init__(303, error, description)
        self.location = location


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request (RFC 6749 §4.1.1 with PKCE and OIDC's nonce/prompt)."""

    client_id: str
    redirect_uri: str
    scope: str  # what will be granted: offline_access only with prompt=consent
    state: str | None
    code_challenge: str
    nonce: str | None
    offline: bool
    parameters: Mapping[str, str]  # as sent, for the sign-in form's hidden fields


class SignInFlows:
    """Authorization requests and the device flow, on top of ``server`` (its settings, store,
    clock, clients and password check)."""

    def __init__(self, server: TokenServer) -> None:
        self._server = server
        self.settings = server.settings
        self._user_codes = FailureLimiter(
            server.clock, server.settings.max_user_code_failures, server.settings.failure_window
        )

    # Browser sign-in: the authorization endpoint (RFC 6749 §4.1, PKCE RFC 7636, RFC 9207)

    def authorization_request(self, parameters: Mapping[str, str]) -> AuthorizationRequest:
        """Check an authorization request. Until the client and its redirect URI are known to
        be good the error is an OAuthError for the person (no redirect to an unchecked URI);
        after that, an AuthorizationRedirect back to the client."""
        client_id = self._server._client(parameters.get("client_id"))
        redirect_uri = parameters.get("redirect_uri")
        problem = loopback_redirect_problem(redirect_uri)
        if problem is not None or redirect_uri is None:
            raise OAuthError(400, "invalid_request", problem or "")
        state = parameters.get("state")
        if state is not None and len(state) > MAX_ECHOED_LENGTH:
            raise OAuthError(400, "invalid_request", "The state parameter is too long")

        def refuse(error: str, description: str) -> AuthorizationRedirect:
            location = self._redirect(
                redirect_uri, {"error": error, "error_description": description, "state": state}
            )
            return AuthorizationRedirect(location, error, description)

        response_type = parameters.get("response_type")
        if not response_type:
            raise refuse("invalid_request", "The response_type parameter is required")
        if response_type != "code":
            raise refuse("unsupported_response_type", "Only response_type=code is supported")
        if parameters.get("response_mode", "query") != "query":
            raise refuse("invalid_request", "Only response_mode=query is supported")
        challenge = parameters.get("code_challenge")
        if not challenge:
            raise refuse("invalid_request", "PKCE is required: send a code_challenge (S256)")
        # A missing method means "plain" (RFC 7636 §4.3), which is refused like a named one.
        if parameters.get("code_challenge_method") != "S256":
            raise refuse("invalid_request", "The code_challenge_method must be S256")
        if not S256_CHALLENGE.match(challenge):
            raise refuse("invalid_request", "The code_challenge is not an S256 challenge")
        requested = self._server._scope(parameters.get("scope", DEFAULT_SCOPE), GRANTABLE_SCOPE)
        if requested is None:
            raise refuse("invalid_scope", f"The scope must be made of: {GRANTABLE_SCOPE}")
        nonce = parameters.get("nonce")
        if nonce is not None and len(nonce) > MAX_ECHOED_LENGTH:
            raise refuse("invalid_request", "The nonce parameter is too long")
        prompts = parameters.get("prompt", "").split()
        if "none" in prompts:
            # Every sign-in here asks the person: there is no session to answer silently with.
            raise refuse("login_required", "The person must sign in")
        # OIDC Core §11: offline_access only with prompt=consent; otherwise it is ignored
        # (node-oidc-provider does the same), and no refresh token is issued.
        offline = OFFLINE_ACCESS in requested.split() and "consent" in prompts
        scope = " ".join(s for s in requested.split() if s != OFFLINE_ACCESS or offline)
        if not scope:
            raise refuse("invalid_scope", "offline_access alone needs prompt=consent")
        return AuthorizationRequest(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            code_challenge=challenge,
            nonce=nonce,
            offline=offline,
            parameters={k: v for k, v in parameters.items() if k in AUTHORIZATION_PARAMETERS},
        )

    def _redirect(self, redirect_uri: str, parameters: Mapping[str, str | None]) -> str:
        # RFC 9207: iss on every authorization response, so a client can tell servers apart.
        return with_query(redirect_uri, {**parameters, "iss": self._server.settings.issuer})

    def authorize(
        self, request: AuthorizationRequest, username: str, password: str, client_address: str
    ) -> str:
        """The person signed in and allowed: the redirect location with a fresh code."""
        user = self._page_sign_in(username, password, client_address)
        now = self._server.clock()
        code = secrets.token_urlsafe(32)
        self._server.store.add_code(
            refresh_token_hash(code),
            AuthorizationCode(
                client_id=request.client_id,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
                username=user.username,
                scope=self._server._granted(user, request.scope),
                nonce=request.nonce,
                auth_time=now,
                offline=request.offline,
                expires_at=now + self._server.settings.code_ttl,
            ),
            now,
        )
        return self._redirect(request.redirect_uri, {"code": code, "state": request.state})

    def _page_sign_in(self, username: str, password: str, client_address: str) -> User:
        if not username or not password:
            raise OAuthError(400, "invalid_request", "Enter your username and password")
        return self._server.check_password(username, password, client_address)

    def deny(self, request: AuthorizationRequest) -> str:
        """The person pressed Deny: the redirect location with access_denied."""
        return self._redirect(
            request.redirect_uri,
            {
                "error": "access_denied",
                "error_description": "The person denied the request",
                "state": request.state,
            },
        )

    # Device sign-in (RFC 8628)

    def device_authorization(self, form: Mapping[str, str]) -> dict[str, Any]:
        """§3.2: a device code for the client to poll with, a user code for the person."""
        client_id = self._server._client(form.get("client_id"))
        scope = self._server._requested_scope(form.get("scope"))
        now = self._server.clock()
        device_code = secrets.token_urlsafe(32)
        base = self._server.settings.issuer.rstrip("/")
        while True:  # a user code already in use (about 1 in 10^10) just draws another
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            device = DeviceCode(
                user_code=user_code,
                client_id=client_id,
                scope=scope,
                expires_at=now + self._server.settings.device_code_ttl,
                interval=self._server.settings.device_interval,
            )
            if self._server.store.add_device_code(refresh_token_hash(device_code), device, now):
                break
        return {
            "device_code": device_code,
            "user_code": format_user_code(user_code),
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?{urlencode({'user_code': user_code})}",
            "expires_in": int(self._server.settings.device_code_ttl),
            "interval": int(self._server.settings.device_interval),
        }

    def pending_device(self, typed_code: str, client_address: str) -> DeviceCode:
        """The pending device authorization a person's typed user code names. Wrong codes are
        limited per address (§5.1: 34 bits are guessable without a limit)."""
        key = "address:" + address_key(client_address)
        wait = self._user_codes.begin(key)
        if wait is not None:
            retry_after = max(1, math.ceil(wait))
            raise OAuthError(
                429,
                "too_many_requests",
                f"Too many wrong codes. Try again in {retry_after} seconds.",
                {"Retry-After": str(retry_after)},
            )
        device = None
        try:
            code = normalize_user_code(typed_code)
            device = (
                self._server.store.pending_device_code(code, self._server.clock()) if code else None
            )
        finally:
            self._user_codes.finish(key, failed=device is None)
        if device is None:
            raise OAuthError(
                400, "invalid_user_code", "This code is not valid or has expired; check your device"
            )
        return device

    def decide_device(
        self,
        device: DeviceCode,
        allow: bool,
        username: str,
        password: str,
        client_address: str,
    ) -> None:
        """Approve (after the person's sign-in) or deny the device's request."""
        user = self._page_sign_in(username, password, client_address) if allow else None
        now = self._server.clock()
        decided = self._server.store.decide_device_code(
            device.user_code, now, user.username if user else None, now if user else None
        )
        if not decided:
            raise OAuthError(
                400, "invalid_user_code", "This code was used or has expired; check your device"
            )
