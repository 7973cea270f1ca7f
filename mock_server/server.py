"""The token server's protocol: ``TokenServer`` answers with data and raises ``OAuthError``.

It knows nothing of HTTP: the routes (app.py) read requests and the plumbing (http.py) turns
data and errors into answers.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .keys import SigningKeys
from .passwords import SCOPE_CLAIMS, User, dummy_hash_for, verify_password
from .settings import Settings
from .store import Family, Rotation, Store
from .throttle import FailureLimiter
from .tokens import (
    AccessTokenVerifier,
    InvalidToken,
    issue_access_token,
    new_refresh_token,
    refresh_token_hash,
)

SCOPES = ("openid", "profile", "email", "groups")
DEFAULT_SCOPE = " ".join(SCOPES)
ADMIN_GROUP = "admin"


class OAuthError(Exception):
    """A refused request: the HTTP status, the OAuth ``error`` code, a safe description (never
    echoing what the client sent) and any headers the answer needs (a challenge, Retry-After)."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})


def bearer_error(status: int, error: str | None, description: str) -> OAuthError:
    """RFC 6750 §3: a refused bearer request, with its WWW-Authenticate challenge."""
    challenge = "Bearer"
    if error is not None:
        challenge += f' error="{error}", error_description="{description}"'
    return OAuthError(status, error or "unauthorized", description, {"WWW-Authenticate": challenge})


class AdjustableClock:
    """Wall-clock time plus an offset that only the test-only endpoint moves."""

    def __init__(self, base: Callable[[], float]) -> None:
        self._base = base
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Caller:
    """A verified bearer request: its claims, its session and its person."""

    claims: Mapping[str, Any]
    family: Family
    user: User


class TokenServer:
    """The server's behaviour, apart from HTTP plumbing."""

    def __init__(
        self,
        settings: Settings,
        clock: AdjustableClock,
        store: Store,
        users: Mapping[str, User],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.users = dict(users)
        self.keys = SigningKeys(store, clock)
        # No key is made here: SigningKeys makes or loads it on first use, after start-up.
        self.verifier = AccessTokenVerifier(self.keys, settings)
        self._dummy_hash = dummy_hash_for(self.users.values(), settings.password_cost)
        self.user_limiter = FailureLimiter(
            clock, settings.max_failures_per_user, settings.failure_window
        )
        self.address_limiter = FailureLimiter(
            clock, settings.max_failures_per_address, settings.failure_window
        )

    # /token

    def token(self, form: Mapping[str, str], client_address: str) -> dict[str, Any]:
        """The token response (RFC 6749 §5.1) for a token request's form."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "invalid_request", "The grant_type parameter is required")
        client_id = self._client(form.get("client_id"))
        if grant_type == "password":
            return self._password_grant(form, client_id, client_address)
        if grant_type == "refresh_token":
            return self._refresh_grant(form, client_id)
        raise OAuthError(
            400,
            "unsupported_grant_type",
            "Only the password and refresh_token grants are supported",
        )

    def _client(self, client_id: str | None) -> str:
        # RFC 6749 §5.2: invalid_client is 401 with a WWW-Authenticate challenge when the client
        # tried the Authorization header (refused earlier, see http.refuse_client_credentials), and
        # may be 400 otherwise. 400 here: a 401 must carry a challenge (RFC 9110 §11.6.1), and
        # no scheme would help a public client that only forgot or misspelled its client_id.
        if not client_id:
            raise OAuthError(400, "invalid_client", "The client_id parameter is required")
        if client_id not in self.settings.clients:
            raise OAuthError(400, "invalid_client", "The client is not known to this server")
        return client_id

    def _scope(self, requested: str | None, allowed: str) -> str | None:
        if requested is None:
            return allowed
        wanted = requested.split()
        if not wanted or any(s not in allowed.split() for s in wanted):
            return None
        return " ".join(dict.fromkeys(wanted))

    def _password_grant(
        self, form: Mapping[str, str], client_id: str, client_address: str
    ) -> dict[str, Any]:
        username = form.get("username")
        password = form.get("password")
        if not username or password is None:
            raise OAuthError(
                400, "invalid_request", "The username and password parameters are required"
            )
        scope = self._scope(form.get("scope"), DEFAULT_SCOPE)
        if scope is None:
            raise OAuthError(400, "invalid_scope", f"The scope must be made of: {DEFAULT_SCOPE}")
        user = self.check_password(username, password, client_address)
        now = self.clock()
        refresh_token = new_refresh_token()
        family = Family(
            id=secrets.token_urlsafe(16),
            username=user.username,
            client_id=client_id,
            scope=scope,
            created_at=now,
            last_refreshed_at=None,
            expires_at=now + self.settings.refresh_ttl,
            revoked_at=None,
            revoked_reason=None,
        )
        self.store.create_family(family, refresh_token_hash(refresh_token))
        return self._token_response(user, family, scope, refresh_token, now)

    def check_password(self, username: str, password: str, client_address: str) -> User:
        """The user these credentials name, or an OAuthError: ``invalid_grant`` with one answer
        for an unknown user and a wrong password, ``too_many_requests`` (429) past the limit."""
        user_key = "user:" + username.casefold()
        address_key = "address:" + client_address
        # Both slots are reserved before the slow hash check, so concurrent guesses count
        # against the limit while they are being checked; a slot taken when the other limit
        # refuses is given back at once.
        user_wait = self.user_limiter.begin(user_key)
        address_wait = self.address_limiter.begin(address_key)
        if user_wait is not None or address_wait is not None:
            if user_wait is None:
                self.user_limiter.finish(user_key, failed=False)
            if address_wait is None:
                self.address_limiter.finish(address_key, failed=False)
            waits = [w for w in (user_wait, address_wait) if w is not None]
            retry_after = max(1, math.ceil(max(waits)))
            raise OAuthError(
                429,
                "too_many_requests",
                f"Too many failed sign-ins. Try again in {retry_after} seconds.",
                {"Retry-After": str(retry_after)},
            )
        user = self.users.get(username)
        failed = True
        try:
            # An unknown user costs one full hash check too, so the answer time tells nothing.
            matches = verify_password(
                password, user.password_hash if user is not None else self._dummy_hash
            )
            failed = user is None or not matches
        finally:
            # A check that raised counts as a failure: an error must not be a free guess.
            self.user_limiter.finish(user_key, failed=failed)
            self.address_limiter.finish(address_key, failed=failed)
        if failed or user is None:
            raise OAuthError(400, "invalid_grant", "The username or password is incorrect")
        self.user_limiter.reset(user_key)
        return user

    def _token_response(
        self, user: User, family: Family, scope: str, refresh_token: str, now: float
    ) -> dict[str, Any]:
        access = issue_access_token(
            self.keys, self.settings, user=user, family=family, scope=scope, now=now
        )
        return {
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "refresh_token": refresh_token,
            "scope": scope,
        }

    def _refresh_grant(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError(400, "invalid_request", "The refresh_token parameter is required")
        requested_scope = form.get("scope")

        def narrow(granted: str) -> str | None:
            return self._scope(requested_scope, granted)

        now = self.clock()
        new_token = new_refresh_token()
        # The scope is checked inside the rotation, after the token's own state: a spent,
        # revoked, expired or unknown token answers invalid_grant whatever scope it brings (a
        # replay still revokes its family), and a bad scope leaves a live token unspent.
        result = self.store.rotate(
            refresh_token_hash(presented),
            client_id,
            refresh_token_hash(new_token),
            now,
            narrow,
            grace=self.settings.reuse_grace,
        )
        if result.outcome is Rotation.INVALID_SCOPE:
            raise OAuthError(400, "invalid_scope", "The scope must be within the original grant")
        messages = {
            Rotation.UNKNOWN: "The refresh token is invalid",
            Rotation.WRONG_CLIENT: "The refresh token was issued to another client",
            Rotation.REVOKED: "The refresh token has been revoked",
            Rotation.EXPIRED: "The refresh token has expired",
            Rotation.REUSED: "The refresh token was already used; the session is revoked",
        }
        if result.outcome is not Rotation.ROTATED or result.family is None:
            raise OAuthError(400, "invalid_grant", messages[result.outcome])
        family = result.family
        user = self.users.get(family.username)
        if user is None:
            self.store.revoke_family(family.id, now, "user removed")
            raise OAuthError(400, "invalid_grant", "The user no longer exists")
        return self._token_response(user, family, result.scope or family.scope, new_token, now)

    # /revoke

    def revoke(self, form: Mapping[str, str]) -> None:
        """RFC 7009: end the session of the token in ``form``, if it is one of ours."""
        token = form.get("token")
        if not token:
            raise OAuthError(400, "invalid_request", "The token parameter is required")
        client_id = self._client(form.get("client_id"))
        now = self.clock()
        family = self.store.find_by_token(refresh_token_hash(token))
        if family is None:
            try:
                claims = self.verifier.verify(token, now)
            except InvalidToken:
                claims = None
            if claims is not None:
                family = self.store.family(claims["sid"])
        if family is not None:
            if family.client_id != client_id:
                raise OAuthError(
                    400, "unauthorized_client", "The token was issued to another client"
                )
            self.store.revoke_family(family.id, now, "revoked by the client")
        # RFC 7009 §2.2: an unknown or already invalid token is answered with 200 as well.

    # Bearer-protected resources

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller of a request with this ``Authorization`` header; OAuthError (RFC 6750)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise bearer_error(401, None, "An access token is required")
        try:
            claims = self.verifier.verify(token, self.clock())
        except InvalidToken as error:
            raise bearer_error(401, "invalid_token", str(error)) from None
        family = self.store.family(claims["sid"])
        # A revoked sign-in takes its access tokens with it at once, not when they expire.
        if family is None or family.revoked_at is not None:
            raise bearer_error(401, "invalid_token", "The session of this token has been revoked")
        user = self.users.get(family.username)
        if user is None or user.sub != claims["sub"]:
            raise bearer_error(401, "invalid_token", "The user of this token no longer exists")
        return Caller(claims, family, user)

    def userinfo(self, caller: Caller) -> dict[str, Any]:
        return caller.user.released(str(caller.claims["scope"]).split())

    def sessions(self, caller: Caller) -> dict[str, Any]:
        """The active sessions; ``caller`` passed ``require_admin`` (the route's dependency)."""
        return {
            "sessions": [
                {
                    "id": f.id,
                    "username": f.username,
                    "client_id": f.client_id,
                    "scope": f.scope,
                    "started_at": _iso(f.created_at),
                    "last_refreshed_at": _iso(f.last_refreshed_at),
                    "expires_at": _iso(f.expires_at),
                    "current": f.id == caller.family.id,
                }
                for f in self.store.active_families(self.clock())
            ]
        }

    def revoke_session(self, caller: Caller, session_id: str) -> None:
        """End a session; ``caller`` passed ``require_admin`` (the route's dependency)."""
        family = self.store.family(session_id)
        if family is None or not family.active(self.clock()):
            raise OAuthError(404, "not_found", "No active session has this id")
        self.store.revoke_family(family.id, self.clock(), f"revoked by {caller.user.username}")

    def require_admin(self, caller: Caller) -> None:
        if ADMIN_GROUP not in caller.claims["groups"]:
            raise bearer_error(
                403, "insufficient_scope", f"This resource is for members of {ADMIN_GROUP}"
            )

    def discovery(self) -> dict[str, Any]:
        base = self.settings.issuer.rstrip("/")
        return {
            "issuer": self.settings.issuer,
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "revocation_endpoint": f"{base}/revoke",
            "grant_types_supported": ["password", "refresh_token"],
            # REQUIRED and non-empty (RFC 8414 §2, OIDC Discovery §3), though it describes an
            # authorization endpoint, and this server has none: sign-in is the password grant.
            # "none" (OAuth 2.0 Multiple Response Type Encoding Practices §4) is the one
            # registered value that promises neither a code nor a token, so no client is
            # invited into a flow that does not exist, as "code" or "token" would.
            "response_types_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(SCOPES),
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                *SCOPE_CLAIMS["profile"],
                *SCOPE_CLAIMS["email"],
                *SCOPE_CLAIMS["groups"],
            ],
        }
