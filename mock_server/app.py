"""The token server: ``create_app(settings, clock=...)`` builds the FastAPI application."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.responses import JSONResponse, Response
from fastapi.security.base import SecurityBase
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .keys import SigningKeys
from .passwords import User, demo_users, dummy_hash, load_users, verify_password
from .settings import Settings
from .store import Family, Rotation, SqliteStore, Store
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
_SCOPE_CLAIMS = {
    "profile": (
        "preferred_username",
        "name",
        "given_name",
        "family_name",
        "locale",
        "zoneinfo",
        "updated_at",
    ),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FORM_FIELDS = 32


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


# Errors


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """RFC 6749 §5.2 error body; never cached, never echoing what the client sent."""
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=_NO_STORE
    )


class BearerError(Exception):
    """RFC 6750 §3: a refused bearer request, with its WWW-Authenticate challenge."""

    def __init__(self, status: int, error: str | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        challenge = "Bearer"
        if self.error is not None:
            challenge += f' error="{self.error}", error_description="{self.description}"'
        return JSONResponse(
            {"error": self.error or "unauthorized", "error_description": self.description},
            status_code=self.status,
            headers={"WWW-Authenticate": challenge, **_NO_STORE},
        )


class FormError(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, whether announced (Content-Length) or not."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(send, 400, "The Content-Length header is malformed")
                    return
                if int(value) > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(
        self, send: Send, status: int = 413, description: str = "The request body is too large"
    ) -> None:
        response = oauth_error(status, "invalid_request", description)
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict; each parameter at most once."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != _FORM_TYPE:
        raise FormError(f"The request body must be {_FORM_TYPE}")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError("The request body is not a valid UTF-8 form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # RFC 6749 §3.2: parameters must not be included more than once.
            raise FormError(f"The parameter {name[:40]!r} is repeated")
        form[name] = value
    return form


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
        self.keys.ensure_key()
        self.verifier = AccessTokenVerifier(self.keys, settings)
        self._dummy_hash = dummy_hash(settings.password_cost)
        self.user_limiter = FailureLimiter(
            clock, settings.max_failures_per_user, settings.failure_window
        )
        self.address_limiter = FailureLimiter(
            clock, settings.max_failures_per_address, settings.failure_window
        )

    # /token

    def token(self, form: Mapping[str, str], client_address: str) -> Response:
        grant_type = form.get("grant_type")
        if not grant_type:
            return oauth_error(400, "invalid_request", "The grant_type parameter is required")
        refused = self._client_refused(form.get("client_id"))
        if refused is not None:
            return refused
        client_id = form["client_id"]
        if grant_type == "password":
            return self._password_grant(form, client_id, client_address)
        if grant_type == "refresh_token":
            return self._refresh_grant(form, client_id)
        return oauth_error(
            400,
            "unsupported_grant_type",
            "Only the password and refresh_token grants are supported",
        )

    def _client_refused(self, client_id: str | None) -> Response | None:
        # RFC 6749 §5.2: invalid_client is 401 with a WWW-Authenticate challenge when the client
        # tried the Authorization header (refused earlier, see _client_credentials_refused), and
        # may be 400 otherwise. 400 here: a 401 must carry a challenge (RFC 9110 §11.6.1), and
        # no scheme would help a public client that only forgot or misspelled its client_id.
        if not client_id:
            return oauth_error(400, "invalid_client", "The client_id parameter is required")
        if client_id not in self.settings.clients:
            return oauth_error(400, "invalid_client", "The client is not known to this server")
        return None

    def _scope(self, requested: str | None, allowed: str) -> str | None:
        if requested is None:
            return allowed
        wanted = requested.split()
        if not wanted or any(s not in allowed.split() for s in wanted):
            return None
        return " ".join(dict.fromkeys(wanted))

    def _password_grant(
        self, form: Mapping[str, str], client_id: str, client_address: str
    ) -> Response:
        username = form.get("username")
        password = form.get("password")
        if not username or password is None:
            return oauth_error(
                400, "invalid_request", "The username and password parameters are required"
            )
        scope = self._scope(form.get("scope"), DEFAULT_SCOPE)
        if scope is None:
            return oauth_error(400, "invalid_scope", f"The scope must be made of: {DEFAULT_SCOPE}")
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
            response = oauth_error(
                429,
                "too_many_requests",
                f"Too many failed sign-ins. Try again in {retry_after} seconds.",
            )
            response.headers["Retry-After"] = str(retry_after)
            return response
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
            return oauth_error(400, "invalid_grant", "The username or password is incorrect")
        self.user_limiter.reset(user_key)
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

    def _token_response(
        self, user: User, family: Family, scope: str, refresh_token: str, now: float
    ) -> Response:
        access = issue_access_token(
            self.keys, self.settings, user=user, family=family, scope=scope, now=now
        )
        return JSONResponse(
            {
                "access_token": access.token,
                "token_type": "Bearer",
                "expires_in": access.expires_in,
                "refresh_token": refresh_token,
                "scope": scope,
            },
            headers=_NO_STORE,
        )

    def _refresh_grant(self, form: Mapping[str, str], client_id: str) -> Response:
        presented = form.get("refresh_token")
        if not presented:
            return oauth_error(400, "invalid_request", "The refresh_token parameter is required")
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
            return oauth_error(400, "invalid_scope", "The scope must be within the original grant")
        messages = {
            Rotation.UNKNOWN: "The refresh token is invalid",
            Rotation.WRONG_CLIENT: "The refresh token was issued to another client",
            Rotation.REVOKED: "The refresh token has been revoked",
            Rotation.EXPIRED: "The refresh token has expired",
            Rotation.REUSED: "The refresh token was already used; the session is revoked",
        }
        if result.outcome is not Rotation.ROTATED or result.family is None:
            return oauth_error(400, "invalid_grant", messages[result.outcome])
        family = result.family
        user = self.users.get(family.username)
        if user is None:
            self.store.revoke_family(family.id, now, "user removed")
            return oauth_error(400, "invalid_grant", "The user no longer exists")
        return self._token_response(user, family, result.scope or family.scope, new_token, now)

    # /revoke

    def revoke(self, form: Mapping[str, str]) -> Response:
        token = form.get("token")
        if not token:
            return oauth_error(400, "invalid_request", "The token parameter is required")
        refused = self._client_refused(form.get("client_id"))
        if refused is not None:
            return refused
        client_id = form["client_id"]
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
                return oauth_error(
                    400, "unauthorized_client", "The token was issued to another client"
                )
            self.store.revoke_family(family.id, now, "revoked by the client")
        # RFC 7009 §2.2: an unknown or already invalid token is answered with 200 as well.
        return Response(status_code=200, headers=_NO_STORE)

    # Bearer-protected resources

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller of a request with this ``Authorization`` header, or BearerError."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise BearerError(401, None, "An access token is required")
        try:
            claims = self.verifier.verify(token, self.clock())
        except InvalidToken as error:
            raise BearerError(401, "invalid_token", str(error)) from None
        family = self.store.family(claims["sid"])
        # A revoked sign-in takes its access tokens with it at once, not when they expire.
        if family is None or family.revoked_at is not None:
            raise BearerError(401, "invalid_token", "The session of this token has been revoked")
        user = self.users.get(family.username)
        if user is None or user.sub != claims["sub"]:
            raise BearerError(401, "invalid_token", "The user of this token no longer exists")
        return Caller(claims, family, user)

    def userinfo(self, caller: Caller) -> dict[str, Any]:
        profile = caller.user.profile()
        scopes = str(caller.claims["scope"]).split()
        allowed = {"sub"}
        for scope in scopes:
            allowed.update(_SCOPE_CLAIMS.get(scope, ()))
        return {k: v for k, v in profile.items() if k in allowed}

    def sessions(self, caller: Caller) -> dict[str, Any]:
        self._require_admin(caller)
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

    def revoke_session(self, caller: Caller, session_id: str) -> Response:
        self._require_admin(caller)
        family = self.store.family(session_id)
        if family is None or not family.active(self.clock()):
            return oauth_error(404, "not_found", "No active session has this id")
        self.store.revoke_family(family.id, self.clock(), f"revoked by {caller.user.username}")
        return Response(status_code=204)

    def _require_admin(self, caller: Caller) -> None:
        if ADMIN_GROUP not in caller.claims["groups"]:
            raise BearerError(
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
                *_SCOPE_CLAIMS["profile"],
                *_SCOPE_CLAIMS["email"],
                *_SCOPE_CLAIMS["groups"],
            ],
        }


class BearerCaller(SecurityBase):
    """The dependency that turns a request's bearer token into its verified Caller.

    A SecurityBase, so OpenAPI shows the bearer scheme; one step, because FastAPI's dependency
    solving is most of a small request's cost (see tests/bench).
    """

    SCHEME = "HTTPBearer"

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="An access token from POST /token")
        self.scheme_name = self.SCHEME

    async def __call__(self, request: Request) -> Caller:
        server: TokenServer = request.app.state.server
        return server.authenticate(request.headers.get("authorization"))


CallerDep = Annotated[Caller, Depends(BearerCaller())]


def _client_credentials_refused(request: Request) -> Response | None:
    """Our clients are public (auth method "none"): HTTP Basic client credentials are an error,
    answered as RFC 6749 §5.2 says for a client that tried the Authorization header."""
    scheme = request.headers.get("authorization", "").strip().partition(" ")[0]
    if scheme.lower() != "basic":
        return None
    response = oauth_error(
        401,
        "invalid_client",
        "Clients of this server are public: send client_id in the body, without credentials",
    )
    response.headers["WWW-Authenticate"] = 'Basic realm="jwt-mock-server"'
    return response


def _client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _form_openapi(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                _FORM_TYPE: {
                    "schema": {"type": "object", "properties": properties, "required": required}
                }
            },
        }
    }


_STRING = {"type": "string"}


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    *,
    store: Store | None = None,
    users: Mapping[str, User] | None = None,
) -> FastAPI:
    """The server for ``settings``. ``clock`` is wall-clock time (JWT ``exp``/``iat``)."""
    adjustable = AdjustableClock(clock)
    if users is None:
        users = (
            load_users(settings.users_file)
            if settings.users_file is not None
            else demo_users(settings.password_cost)
        )
    server = TokenServer(settings, adjustable, store or SqliteStore(settings.db_path), users)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        server.store.close()

    app = FastAPI(
        title="jwt-mock-server",
        summary="A strict OAuth 2.0 / OpenID Connect token server for jwt-desktop",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.server = server
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    @app.exception_handler(BearerError)
    async def bearer_error(_: Request, error: BearerError) -> Response:
        return error.response()

    @app.exception_handler(FormError)
    async def form_error(_: Request, error: FormError) -> Response:
        return oauth_error(400, "invalid_request", error.description)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> Response:
        # The client hung up mid-body: nobody is left to answer, and nothing went wrong here.
        # Handled, so it is neither a 500 nor a logged traceback; uvicorn drops the answer.
        return oauth_error(400, "invalid_request", "The connection closed before the body ended")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> Response:
        # FastAPI's default echoes the input back; it could be a password.
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in error.errors())
        return oauth_error(400, "invalid_request", f"The request is malformed ({where})")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        response = oauth_error(
            error.status_code, codes.get(error.status_code, "invalid_request"), str(error.detail)
        )
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, __: Exception) -> Response:
        return oauth_error(500, "server_error", "The server hit an unexpected error")

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/.well-known/openid-configuration", tags=["discovery"])
    def openid_configuration() -> dict[str, Any]:
        return server.discovery()

    @app.get("/.well-known/jwks.json", tags=["discovery"])
    def jwks() -> dict[str, Any]:
        return server.keys.jwks()

    @app.post(
        "/token",
        tags=["oauth"],
        summary="Token endpoint (RFC 6749): password and refresh_token grants",
        openapi_extra=_form_openapi(
            {
                "grant_type": {"type": "string", "enum": ["password", "refresh_token"]},
                "client_id": _STRING,
                "username": _STRING,
                "password": {"type": "string", "format": "password"},
                "refresh_token": _STRING,
                "scope": _STRING,
            },
            ["grant_type", "client_id"],
        ),
    )
    async def token(request: Request) -> Response:
        refused = _client_credentials_refused(request)
        if refused is not None:
            return refused
        form = await read_form(request)
        return await run_in_threadpool(server.token, form, _client_address(request))

    @app.post(
        "/revoke",
        tags=["oauth"],
        summary="Revocation endpoint (RFC 7009): ends the token's whole session",
        openapi_extra=_form_openapi(
            {"token": _STRING, "token_type_hint": _STRING, "client_id": _STRING},
            ["token", "client_id"],
        ),
    )
    async def revoke(request: Request) -> Response:
        refused = _client_credentials_refused(request)
        if refused is not None:
            return refused
        form = await read_form(request)
        return await run_in_threadpool(server.revoke, form)

    # The hottest route, so it skips dependency injection (most of a small request's cost in
    # FastAPI) and runs on the event loop (no worker-thread hop): its work is a signature check,
    # remembered per token, and one read that never waits for a writer. OpenAPI still shows it
    # behind the bearer scheme that the /api routes declare.
    async def userinfo(request: Request) -> JSONResponse:
        caller = server.authenticate(request.headers.get("authorization"))
        return JSONResponse(server.userinfo(caller), headers=_NO_STORE)

    app.add_api_route(
        "/userinfo",
        userinfo,
        methods=["GET"],
        tags=["resources"],
        summary="The signed-in person's profile",
        openapi_extra={"security": [{BearerCaller.SCHEME: []}]},
    )
    # OIDC Core §5.3.1: userinfo answers POST as well.
    app.add_api_route("/userinfo", userinfo, methods=["POST"], include_in_schema=False)

    @app.get("/api/sessions", tags=["resources"], summary="Active sessions (admin group only)")
    def list_sessions(caller: CallerDep) -> JSONResponse:
        return JSONResponse(server.sessions(caller), headers=_NO_STORE)

    @app.delete(
        "/api/sessions/{session_id}",
        tags=["resources"],
        summary="Revoke a session (admin group only)",
        status_code=204,
    )
    def delete_session(session_id: str, caller: CallerDep) -> Response:
        return server.revoke_session(caller, session_id)

    if settings.testing_clock:

        @app.post("/_testing/advance", include_in_schema=False)
        async def advance(request: Request) -> Response:
            form = await read_form(request)
            try:
                seconds = float(form.get("seconds", ""))
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds < 0:
                return oauth_error(400, "invalid_request", "seconds must be a number >= 0")
            adjustable.advance(seconds)
            return JSONResponse({"now": adjustable()})

    return app
