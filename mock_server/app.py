"""The token server: ``create_app(settings, clock=...)`` builds the FastAPI application.

The routes are thin: they read the request (through the dependencies below), call the
protocol (server.py) and shape its data as an answer; http.py holds the plumbing.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword
from fastapi.openapi.models import OAuthFlows as OAuthFlowsModel
from fastapi.responses import JSONResponse, Response
from fastapi.security.base import SecurityBase

from .docs import install_docs
from .http import (
    NO_STORE,
    BodyLimitMiddleware,
    GuardMiddleware,
    client_address,
    error_response,
    form_openapi,
    install_error_handlers,
    read_form,
    refuse_client_credentials,
)
from .passwords import User, demo_users, load_users
from .schemas import Discovery, Health, Jwks, Sessions, TokenResponse, UserInfo, errors
from .server import ADMIN_SCOPE, SCOPE_DESCRIPTIONS, AdjustableClock, Caller, TokenServer
from .settings import Settings
from .store import SqliteStore, Store


def _server(request: Request) -> TokenServer:
    server: TokenServer = request.app.state.server
    return server


class BearerCaller(SecurityBase):
    """The dependency that turns a request's bearer token into its verified Caller.

    A SecurityBase, so OpenAPI shows the scheme (OAuth 2.0 with the password flow at /token,
    which is how a token is had); one step, because FastAPI's dependency solving is most of a
    small request's cost (see tests/bench).
    """

    SCHEME = "OAuth2"

    def __init__(self) -> None:
        self.model = OAuth2Model(
            description="An access token from POST /token, sent as `Authorization: Bearer`",
            flows=OAuthFlowsModel(
                password=OAuthFlowPassword(
                    tokenUrl="/token", refreshUrl="/token", scopes=SCOPE_DESCRIPTIONS
                )
            ),
        )
        self.scheme_name = self.SCHEME

    async def __call__(self, request: Request) -> Caller:
        return _server(request).authenticate(request.headers.get("authorization"))


_BEARER = BearerCaller()
CallerDep = Annotated[Caller, Security(_BEARER, scopes=["openid"])]


def _admin(
    request: Request, caller: Annotated[Caller, Security(_BEARER, scopes=[ADMIN_SCOPE])]
) -> Caller:
    _server(request).require_admin(caller)
    return caller


AdminDep = Annotated[Caller, Depends(_admin)]


async def _client_form(request: Request) -> dict[str, str]:
    # Checked before the body is read: credentials are refused whatever the form says.
    refuse_client_credentials(request)
    return await read_form(request)


ClientFormDep = Annotated[dict[str, str], Depends(_client_form)]
FormDep = Annotated[dict[str, str], Depends(read_form)]
ClientAddressDep = Annotated[str, Depends(client_address)]

_STRING = {"type": "string"}
# RFC 6749 §3.2: an empty parameter counts as omitted, so a required one is never empty.
_REQUIRED_STRING = {"type": "string", "minLength": 1}


def _without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 on every route with a parameter; this server never sends one
    (a malformed request is 400, see http.py), so the document says so."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = spec.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


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
    if store is None:
        store = SqliteStore(settings.db_path, issuer=settings.issuer)
    server = TokenServer(settings, adjustable, store, users)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        server.store.close()

    app = FastAPI(
        title="jwt-mock-server",
        summary="A strict OAuth 2.0 / OpenID Connect token server for jwt-desktop",
        version="0.1.0",
        lifespan=lifespan,
        # Never a redirect (RFC 9700 §4.12: a 307 makes a client re-send the password to
        # wherever Location points): `/token/` is just an unknown path, 404.
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    app.state.server = server
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outermost: a foreign Host or Origin is refused before the body is even read.
    app.add_middleware(GuardMiddleware, hosts=settings.served_hosts, origins=settings.own_origins)
    install_error_handlers(app)
    install_docs(app)
    _without_422(app)

    def get(path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        """A GET route and its HEAD twin (RFC 9110 §9.1): same answer, headers only."""
        app.add_api_route(path, endpoint, methods=["GET"], **options)
        head = {**options, "summary": f"{options['summary']} (headers only)"}
        head["responses"] = {
            **options.get("responses", {}),
            200: {"description": "The headers of the GET answer, without its body"},
        }
        app.add_api_route(
            path,
            endpoint,
            methods=["HEAD"],
            response_class=Response,
            **{k: v for k, v in head.items() if k != "response_model"},
        )

    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    get(
        "/healthz",
        healthz,
        tags=["meta"],
        summary="Liveness",
        response_model=Health,
        responses=errors(),
    )

    def openid_configuration() -> JSONResponse:
        return JSONResponse(server.discovery())

    get(
        "/.well-known/openid-configuration",
        openid_configuration,
        tags=["discovery"],
        summary="OpenID Connect discovery (and RFC 8414 metadata)",
        response_model=Discovery,
        responses=errors(),
    )

    def jwks() -> JSONResponse:
        return JSONResponse(server.keys.jwks())

    get(
        "/.well-known/jwks.json",
        jwks,
        tags=["discovery"],
        summary="The public signing keys (JWKS)",
        response_model=Jwks,
        responses=errors(),
    )

    # Sync routes: FastAPI runs them on a worker thread, so the slow password hash never
    # blocks the event loop.
    @app.post(
        "/token",
        tags=["oauth"],
        summary="Token endpoint (RFC 6749): password and refresh_token grants",
        response_model=TokenResponse,
        responses=errors(400, 401, 429),
        openapi_extra=form_openapi(
            {
                "grant_type": {"type": "string", "enum": ["password", "refresh_token"]},
                "client_id": {"type": "string", "enum": list(settings.clients)},
                "username": _STRING,
                "password": {"type": "string", "format": "password"},
                "refresh_token": _STRING,
                "scope": _STRING,
            },
            ["grant_type", "client_id"],
        ),
    )
    def token(form: ClientFormDep, address: ClientAddressDep) -> JSONResponse:
        return JSONResponse(server.token(form, address), headers=NO_STORE)

    @app.post(
        "/revoke",
        tags=["oauth"],
        summary="Revocation endpoint (RFC 7009): ends the token's whole session",
        response_class=Response,
        responses={
            200: {"description": "Revoked, or not a token of this server: the same answer"},
            **errors(400, 401),
        },
        openapi_extra=form_openapi(
            {
                "token": _REQUIRED_STRING,
                "token_type_hint": _STRING,
                "client_id": {"type": "string", "enum": list(settings.clients)},
            },
            ["token", "client_id"],
        ),
    )
    def revoke(form: ClientFormDep) -> Response:
        server.revoke(form)
        return Response(status_code=200, headers=NO_STORE)

    # The hottest route, so it skips dependency injection (most of a small request's cost in
    # FastAPI) and runs on the event loop (no worker-thread hop): its work is a signature check,
    # remembered per token, and one read that never waits for a writer. OpenAPI still shows it
    # behind the bearer scheme that the /api routes declare.
    async def userinfo(request: Request) -> JSONResponse:
        caller = server.authenticate(request.headers.get("authorization"))
        return JSONResponse(server.userinfo(caller), headers=NO_STORE)

    userinfo_options: dict[str, Any] = {
        "tags": ["resources"],
        "summary": "The signed-in person's profile",
        "response_model": UserInfo,
        "responses": errors(401, challenge=True),
        "openapi_extra": {"security": [{BearerCaller.SCHEME: ["openid"]}]},
    }
    get("/userinfo", userinfo, **userinfo_options)
    # OIDC Core §5.3.1: userinfo answers POST as well.
    app.add_api_route(
        "/userinfo",
        userinfo,
        methods=["POST"],
        **{**userinfo_options, "summary": "The signed-in person's profile (POST)"},
    )

    def list_sessions(caller: AdminDep) -> JSONResponse:
        return JSONResponse(server.sessions(caller), headers=NO_STORE)

    get(
        "/api/sessions",
        list_sessions,
        tags=["resources"],
        summary="Active sessions (scope sessions:admin, admin group)",
        response_model=Sessions,
        responses=errors(401, 403, challenge=True),
    )

    @app.delete(
        "/api/sessions/{session_id}",
        tags=["resources"],
        summary="Revoke a session (scope sessions:admin, admin group)",
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "The session is revoked"},
            **errors(401, 403, 404, challenge=True),
        },
    )
    def delete_session(session_id: str, caller: AdminDep) -> Response:
        server.revoke_session(caller, session_id)
        return Response(status_code=204)

    if settings.testing_clock:

        @app.post("/_testing/advance", include_in_schema=False)
        async def advance(form: FormDep) -> Response:
            try:
                seconds = float(form.get("seconds", ""))
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds < 0:
                return error_response(400, "invalid_request", "seconds must be a number >= 0")
            adjustable.advance(seconds)
            return JSONResponse({"now": adjustable()})

    return app
