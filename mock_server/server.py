"""The token server's protocol: ``TokenServer`` answers with data and raises ``OAuthError``.

It knows nothing of HTTP: the routes (app.py) read requests and the plumbing (http.py) turns
data and errors into answers. The person's side of the browser and device sign-ins (the
authorization request, the pages' outcomes) is in signin.py; their codes are redeemed here.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .authorization import pkce_matches
from .dpop import ALGORITHMS as DPOP_ALGORITHMS
from .dpop import DPoPError, NonceRotation, ProofRequest, ProofVerifier
from .keys import SigningKeys
from .passwords import SCOPE_CLAIMS, User, dummy_hash_for, verify_password
from .settings import Settings
from .store import (
    AuthorizationCode,
    DeviceCode,
    Family,
    Poll,
    Redemption,
    Rotation,
    Store,
)
from .throttle import FailureLimiter, address_key
from .tokens import (
    AccessTokenVerifier,
    InvalidToken,
    bound_key,
    issue_access_token,
    issue_id_token,
    new_refresh_token,
    refresh_token_hash,
)

OFFLINE_ACCESS = "offline_access"
ADMIN_SCOPE = "sessions:admin"
SCOPES = ("openid", "profile", "email", "groups", OFFLINE_ACCESS, ADMIN_SCOPE)
# Least privilege (RFC 6749 §3.3): without a scope a client gets who the person is, not what
# they may do; `groups`, `sessions:admin` and `offline_access` must be asked for.
DEFAULT_SCOPE = "openid profile email"
GRANTABLE_SCOPE = " ".join(SCOPES)
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = ("password", "refresh_token", "authorization_code", DEVICE_CODE_GRANT)
ADMIN_GROUP = "admin"
SCOPE_DESCRIPTIONS = {
    "openid": "OpenID Connect: the person's subject id",
    "profile": "Name, username, locale",
    "email": "Email address",
    "groups": "Group membership, in the access token and userinfo",
    OFFLINE_ACCESS: "A refresh token for a browser or device sign-in (with prompt=consent)",
    ADMIN_SCOPE: "List and revoke sessions (granted to members of admin only)",
}


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


def _challenge(
    scheme: str, error: str | None, description: str, *extra: str, scope: str | None = None
) -> str:
    params = [f'error="{error}", error_description="{description}"'] if error else []
    if error and scope is not None:
        params.append(f'scope="{scope}"')  # RFC 6750 §3: what insufficient_scope lacks
    params += extra
    return f"{scheme} {', '.join(params)}" if params else scheme


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


@dataclass(frozen=True)
class SignIn:
    """A person's sign-in, for the ID token: when, and the nonce of the request if any."""

    auth_time: float
    nonce: str | None = None


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
    # Whether the request authenticated with DPoP (the token is bound and the proof matched).
    dpop: bool = False


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
        # DPoP (RFC 9449). "off": no verifier, DPoP headers are ignored and no token is bound.
        self.dpop_nonces = (
            NonceRotation(store, clock) if settings.dpop_nonce and settings.dpop != "off" else None
        )
        self.dpop = (
            ProofVerifier(store, clock, nonces=self.dpop_nonces) if settings.dpop != "off" else None
        )

    # /token

    def token(
        self, form: Mapping[str, str], client_address: str, proof: ProofRequest | None = None
    ) -> dict[str, Any]:
        """The token response (RFC 6749 §5.1) for a token request's form and DPoP proof.

        The proof is checked before any grant: every grant gets the key's thumbprint (``jkt``,
        None for a Bearer request) and hands it to ``_start_session`` or the rotation, which
        bind the tokens they issue to it.
        """
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "invalid_request", "The grant_type parameter is required")
        client_id = self._client(form.get("client_id"))
        # Before the password check: a request sent again for a nonce costs no second hash.
        jkt = self.proof_key(proof, required=self.settings.dpop == "required")
        if grant_type == "password":
            return self._password_grant(form, client_id, client_address, jkt)
        if grant_type == "refresh_token":
            return self._refresh_grant(form, client_id, jkt)
        if grant_type == "authorization_code":
            return self._code_grant(form, client_id, jkt)
        if grant_type == DEVICE_CODE_GRANT:
            return self._device_grant(form, client_id, jkt)
        raise OAuthError(
            400,
            "unsupported_grant_type",
            "The supported grant types are: " + ", ".join(GRANT_TYPES),
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

    def proof_key(self, proof: ProofRequest | None, *, required: bool) -> str | None:
        """The ``jkt`` of a token-endpoint request's DPoP proof (RFC 9449 §5), None when it
        has none (and none is ``required``) or DPoP is off; ``invalid_dpop_proof`` (400)
        for a bad proof, ``use_dpop_nonce`` (400, with the nonce) for a missing nonce."""
        if self.dpop is None:
            return None
        if proof is None or not proof.proofs:
            if required:
                raise OAuthError(400, "invalid_dpop_proof", "A DPoP proof is required")
            return None
        try:
            return self.dpop.verify(proof)
        except DPoPError as error:
            raise OAuthError(
                400, error.error, error.description, self.dpop_nonce_header(error)
            ) from None

    def dpop_nonce_header(self, error: DPoPError | None = None) -> dict[str, str]:
        """``DPoP-Nonce`` with the current nonce, when the server demands nonces (§8.2: any
        answer may carry a new one; a ``use_dpop_nonce`` refusal must)."""
        if self.dpop_nonces is None or (error is not None and error.error != "use_dpop_nonce"):
            return {}
        return {"DPoP-Nonce": self.dpop_nonces.current()}

    @staticmethod
    def _granted(user: User, scope: str) -> str:
        """``scope`` as granted to ``user``: sessions:admin only for members of admin. Asked by
        anyone else it is left out, not refused (RFC 6749 §3.3 lets the server grant less, and
        the response's scope says so), so one client can ask it of every user."""
        if ADMIN_GROUP in user.groups:
            return scope
        return " ".join(s for s in scope.split() if s != ADMIN_SCOPE)

    def _password_grant(
        self, form: Mapping[str, str], client_id: str, client_address: str, jkt: str | None
    ) -> dict[str, Any]:
        username = form.get("username")
        password = form.get("password")
        if not username or password is None:
            raise OAuthError(
                400, "invalid_request", "The username and password parameters are required"
            )
        scope = self._requested_scope(form.get("scope"))
        user = self.check_password(username, password, client_address)
        scope = self._granted(user, scope)
        return self._start_session(user, client_id, scope, jkt)

    def _start_session(
        self, user: User, client_id: str, scope: str, jkt: str | None
    ) -> dict[str, Any]:
        """A new sign-in (a refresh-token family) and its first tokens, for any grant that
        signs a person in. With ``jkt`` its tokens are bound to that DPoP key: every client
        here is public, so its refresh tokens are too (RFC 9449 §5)."""
        now = self.clock()
        refresh_token = new_refresh_token()
        family = self._new_family(user.username, client_id, scope, now, jkt)
        self.store.create_family(family, refresh_token_hash(refresh_token))
        return self._token_response(
            user, family, scope, refresh_token, now, jkt=jkt, sign_in=SignIn(now)
        )

    def _requested_scope(self, requested: str | None) -> str:
        scope = self._scope(requested if requested is not None else DEFAULT_SCOPE, GRANTABLE_SCOPE)
        if scope is None:
            raise OAuthError(400, "invalid_scope", f"The scope must be made of: {GRANTABLE_SCOPE}")
        return scope

    def _new_family(
        self, username: str, client_id: str, scope: str, now: float, jkt: str | None
    ) -> Family:
        return Family(
            id=secrets.token_urlsafe(16),
            username=username,
            client_id=client_id,
            scope=scope,
            created_at=now,
            last_refreshed_at=None,
            expires_at=now + self.settings.refresh_ttl,
            revoked_at=None,
            revoked_reason=None,
            dpop_jkt=jkt,
        )

    def check_password(self, username: str, password: str, client_address: str) -> User:
        """The user these credentials name, or an OAuthError: ``invalid_grant`` with one answer
        for an unknown user and a wrong password, ``too_many_requests`` (429) past the limit."""
        user_key = "user:" + username.casefold()
        address = "address:" + address_key(client_address)
        # Both slots are reserved before the slow hash check, so concurrent guesses count
        # against the limit while they are being checked; a slot taken when the other limit
        # refuses is given back at once.
        user_wait = self.user_limiter.begin(user_key)
        address_wait = self.address_limiter.begin(address)
        if user_wait is not None or address_wait is not None:
            if user_wait is None:
                self.user_limiter.finish(user_key, failed=False)
            if address_wait is None:
                self.address_limiter.finish(address, failed=False)
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
            self.address_limiter.finish(address, failed=failed)
        if failed or user is None:
            raise OAuthError(400, "invalid_grant", "The username or password is incorrect")
        self.user_limiter.reset(user_key)
        return user

    def _token_response(
        self,
        user: User,
        family: Family,
        scope: str,
        refresh_token: str | None,
        now: float,
        *,
        jkt: str | None,
        sign_in: SignIn | None = None,
    ) -> dict[str, Any]:
        """The token response; with an ID token when a person just signed in with ``openid``
        (a refresh is not a sign-in: OIDC Core §12.2 makes its ID token optional)."""
        access = issue_access_token(
            self.keys, self.settings, user=user, family=family, scope=scope, now=now, jkt=jkt
        )
        response: dict[str, Any] = {
            "access_token": access.token,
            # RFC 9449 §5: exactly "DPoP" for a bound token (a client compares it as is).
            "token_type": "DPoP" if jkt is not None else "Bearer",
            "expires_in": access.expires_in,
        }
        if refresh_token is not None:
            response["refresh_token"] = refresh_token
        response["scope"] = scope
        if sign_in is not None and "openid" in scope.split():
            response["id_token"] = issue_id_token(
                self.keys,
                self.settings,
                user=user,
                client_id=family.client_id,
                now=now,
                auth_time=sign_in.auth_time,
                nonce=sign_in.nonce,
                access_token=access.token,
                profile=self._profile(user, scope),
            )
        return response

    def _refresh_grant(
        self, form: Mapping[str, str], client_id: str, jkt: str | None
    ) -> dict[str, Any]:
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
            jkt=jkt,
            grace=self.settings.reuse_grace,
        )
        if result.outcome is Rotation.INVALID_SCOPE:
            raise OAuthError(400, "invalid_scope", "The scope must be within the original grant")
        if result.outcome is Rotation.WRONG_KEY:
            raise self._wrong_key(jkt, "The refresh token")
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
        return self._token_response(
            user, family, result.scope or family.scope, new_token, now, jkt=family.dpop_jkt
        )

    @staticmethod
    def _wrong_key(jkt: str | None, what: str) -> OAuthError:
        # A missing proof is the client's omission; another key's proof is not its token.
        if jkt is None:
            return OAuthError(
                400, "invalid_dpop_proof", f"{what} is DPoP-bound: a proof of its key is required"
            )
        return OAuthError(400, "invalid_grant", f"{what} is bound to another DPoP key")

    def _code_grant(
        self, form: Mapping[str, str], client_id: str, jkt: str | None
    ) -> dict[str, Any]:
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        verifier = form.get("code_verifier")
        if not code or not redirect_uri or not verifier:
            raise OAuthError(
                400,
                "invalid_request",
                "The code, redirect_uri and code_verifier parameters are required",
            )
        now = self.clock()
        refresh_token = new_refresh_token()
        issued: list[tuple[User, Family]] = []

        def issue(grant: AuthorizationCode) -> tuple[Family, str | None]:
            # Every mismatch is invalid_grant (RFC 6749 §5.2), and leaves the code unspent.
            if grant.client_id != client_id:
                raise OAuthError(400, "invalid_grant", "The code was issued to another client")
            if grant.redirect_uri != redirect_uri:
                raise OAuthError(400, "invalid_grant", "The redirect_uri does not match the code")
            if not pkce_matches(verifier, grant.code_challenge):
                raise OAuthError(400, "invalid_grant", "The code_verifier does not match")
            user = self.users.get(grant.username)
            if user is None:
                raise OAuthError(400, "invalid_grant", "The user no longer exists")
            family = self._new_family(user.username, client_id, grant.scope, now, jkt)
            issued.append((user, family))
            return family, refresh_token_hash(refresh_token) if grant.offline else None

        result = self.store.redeem_code(refresh_token_hash(code), now, issue)
        messages = {
            Redemption.UNKNOWN: "The code is invalid",
            Redemption.EXPIRED: "The code has expired",
            Redemption.REUSED: "The code was already used; what it issued is revoked",
        }
        if result.outcome is not Redemption.REDEEMED or result.code is None or not issued:
            raise OAuthError(400, "invalid_grant", messages.get(result.outcome, "Code refused"))
        user, family = issued[0]
        grant = result.code
        return self._token_response(
            user,
            family,
            grant.scope,
            refresh_token if grant.offline else None,
            now,
            jkt=jkt,
            sign_in=SignIn(grant.auth_time, grant.nonce),
        )

    def _device_grant(
        self, form: Mapping[str, str], client_id: str, jkt: str | None
    ) -> dict[str, Any]:
        device_code = form.get("device_code")
        if not device_code:
            raise OAuthError(400, "invalid_request", "The device_code parameter is required")
        now = self.clock()
        refresh_token = new_refresh_token()
        issued: list[tuple[User, Family]] = []

        def issue(device: DeviceCode) -> tuple[Family, str | None]:
            user = self.users.get(device.username or "")
            if user is None:
                raise OAuthError(400, "invalid_grant", "The user no longer exists")
            scope = self._granted(user, device.scope)
            family = self._new_family(user.username, client_id, scope, now, jkt)
            issued.append((user, family))
            return family, refresh_token_hash(refresh_token)

        result = self.store.poll_device_code(refresh_token_hash(device_code), client_id, now, issue)
        refusals = {
            Poll.UNKNOWN: ("invalid_grant", "The device code is invalid"),
            Poll.WRONG_CLIENT: ("invalid_grant", "The device code was issued to another client"),
            Poll.SPENT: ("invalid_grant", "The device code was already used"),
            Poll.EXPIRED: ("expired_token", "The device code has expired; start again"),
            Poll.DENIED: ("access_denied", "The person denied the request"),
            Poll.SLOW_DOWN: ("slow_down", "Polling too fast; wait 5 seconds longer each time"),
            Poll.PENDING: ("authorization_pending", "The person has not approved the code yet"),
        }
        if result.outcome is not Poll.ISSUED or result.device is None or not issued:
            error, description = refusals.get(result.outcome, ("invalid_grant", "Refused"))
            raise OAuthError(400, error, description)
        user, family = issued[0]
        auth_time = result.device.auth_time if result.device.auth_time is not None else now
        return self._token_response(
            user, family, family.scope, refresh_token, now, jkt=jkt, sign_in=SignIn(auth_time)
        )

    # /revoke

    def revoke(self, form: Mapping[str, str], proof: ProofRequest | None = None) -> None:
        """RFC 7009: end the session of the token in ``form``, if it is one of ours.

        A DPoP proof is optional (RFC 9449 asks none here) and checked when sent; a bound
        session, though, is ended only with a proof of its key, as its refresh token is
        redeemed only with one: a thief must not end the owner's session."""
        token = form.get("token")
        if not token:
            raise OAuthError(400, "invalid_request", "The token parameter is required")
        client_id = self._client(form.get("client_id"))
        jkt = self.proof_key(proof, required=False)
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
            if family.dpop_jkt is not None and family.dpop_jkt != jkt:
                raise self._wrong_key(jkt, "The token")
            self.store.revoke_family(family.id, now, "revoked by the client")
        # RFC 7009 §2.2: an unknown or already invalid token is answered with 200 as well.

    # Protected resources (Bearer, RFC 6750; DPoP, RFC 9449 §7)

    def resource_error(
        self,
        status: int,
        error: str | None,
        description: str,
        *,
        dpop: bool = False,
        scope: str | None = None,
    ) -> OAuthError:
        """A refused resource request with a challenge for each scheme this server accepts
        (RFC 6750 §3, RFC 9449 §7.1). The error goes on the scheme it concerns (``dpop``: the
        request used DPoP, or its token is bound), listed first."""
        if self.dpop is None:
            return OAuthError(
                status,
                error or "unauthorized",
                description,
                {"WWW-Authenticate": _challenge("Bearer", error, description, scope=scope)},
            )
        dpop = dpop or self.settings.dpop == "required"
        algs = f'algs="{" ".join(DPOP_ALGORITHMS)}"'
        challenges = [
            _challenge("DPoP", error if dpop else None, description, algs, scope=scope),
            _challenge("Bearer", None if dpop else error, description, scope=scope),
        ]
        if self.settings.dpop == "required":
            del challenges[1]
        elif not dpop:
            challenges.reverse()
        headers = {"WWW-Authenticate": ", ".join(challenges)}
        if error == "use_dpop_nonce":
            headers.update(self.dpop_nonce_header())
        return OAuthError(status, error or "unauthorized", description, headers)

    def authenticate(self, authorization: str | None, proof: ProofRequest | None = None) -> Caller:
        """The caller of a request with this ``Authorization`` header and DPoP proof; an
        OAuthError (401 with challenges) otherwise. A bound token is accepted only as
        ``DPoP <token>`` with a proof of its key for this request (§7.1), never as Bearer
        (§7.2); a Bearer token only where Bearer is allowed."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        scheme = scheme.lower()
        dpop = scheme == "dpop" and self.dpop is not None
        if not token or (scheme != "bearer" and not dpop):
            raise self.resource_error(401, None, "An access token is required")
        try:
            claims = self.verifier.verify(token, self.clock())
        except InvalidToken as error:
            raise self.resource_error(401, "invalid_token", str(error), dpop=dpop) from None
        bound = bound_key(claims)
        if dpop and bound is None:
            raise self.resource_error(401, "invalid_token", "The access token is not DPoP-bound")
        if not dpop and bound is not None:
            raise self.resource_error(
                401,
                "invalid_token",
                "The access token is DPoP-bound: send it as DPoP, with a proof",
                dpop=True,
            )
        if not dpop and self.settings.dpop == "required":
            raise self.resource_error(
                401, "invalid_token", "This server accepts DPoP-bound access tokens only"
            )
        family = self.store.family(claims["sid"])
        # A revoked sign-in takes its access tokens with it at once, not when they expire.
        if family is None or family.revoked_at is not None:
            raise self.resource_error(
                401, "invalid_token", "The session of this token has been revoked", dpop=dpop
            )
        user = self.users.get(family.username)
        if user is None or user.sub != claims["sub"]:
            raise self.resource_error(
                401, "invalid_token", "The user of this token no longer exists", dpop=dpop
            )
        if dpop:
            self._check_resource_proof(proof, token, bound)
        return Caller(claims, family, user, dpop)

    def _check_resource_proof(
        self, proof: ProofRequest | None, token: str, bound: str | None
    ) -> None:
        # Last: only a request good in every other way spends its proof's jti.
        assert self.dpop is not None
        try:
            jkt = self.dpop.verify(proof or ProofRequest((), "", ""), access_token=token)
        except DPoPError as error:
            raise self.resource_error(401, error.error, error.description, dpop=True) from None
        if jkt != bound:
            raise self.resource_error(
                401,
                "invalid_dpop_proof",
                "The DPoP proof is signed by another key than the token is bound to",
                dpop=True,
            )

    def userinfo(self, caller: Caller) -> dict[str, Any]:
        return self._profile(caller.user, str(caller.claims["scope"]))

    @staticmethod
    def _profile(user: User, scope: str) -> dict[str, Any]:
        """The person's claims that ``scope`` allows (OIDC Core §5.4), ``sub`` always; a users
        file's extra claims too (User.released says which scope releases which)."""
        return user.released(scope.split())

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
                    # The thumbprint of the DPoP key the session is bound to, or null (Bearer).
                    "dpop_jkt": f.dpop_jkt,
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
        """The admin API needs both the scope (the token was meant for it) and the person's
        current membership of the group (the directory may have changed since the grant)."""
        if ADMIN_SCOPE not in str(caller.claims["scope"]).split() or (
            ADMIN_GROUP not in caller.user.groups
        ):
            raise self.resource_error(
                403,
                "insufficient_scope",
                f"This resource needs the {ADMIN_SCOPE} scope, granted to members of {ADMIN_GROUP}",
                dpop=caller.dpop,
                scope=ADMIN_SCOPE,
            )

    def discovery(self) -> dict[str, Any]:
        """OIDC Discovery and RFC 8414 metadata (one document): exactly what the server does."""
        base = self.settings.issuer.rstrip("/")
        metadata: dict[str, Any] = {
            "issuer": self.settings.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "device_authorization_endpoint": f"{base}/device_authorization",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "revocation_endpoint": f"{base}/revoke",
            "grant_types_supported": list(GRANT_TYPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "prompt_values_supported": ["none", "login", "consent"],
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
                "auth_time",
                "nonce",
                "at_hash",
                *SCOPE_CLAIMS["profile"],
                *SCOPE_CLAIMS["email"],
                *SCOPE_CLAIMS["groups"],
            ],
        }
        if self.dpop is not None:
            metadata["dpop_signing_alg_values_supported"] = list(DPOP_ALGORITHMS)
        return metadata
