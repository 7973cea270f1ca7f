"""The token server: ``create_app(settings, clock=...)`` builds the FastAPI application.

The routes are thin: they read the request (through the dependencies below), call the
protocol (server.py) and shape its data as an answer; http.py holds the plumbing.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.responses import JSONResponse, Response
from fastapi.security.base import SecurityBase
from starlette.concurrency import run_in_threadpool

from .fastlane import Endpoint, FastLane
from .http import (
    NO_STORE,
    BodyLimitMiddleware,
    client_address,
    error_response,
    form_openapi,
    install_error_handlers,
    read_form,
    refuse_client_credentials,
)
from .passwords import User, demo_users, load_users
from .server import AdjustableClock, Caller, TokenServer
from .settings import Settings
from .store import SqliteStore, Store


def _server(request: Request) -> TokenServer:
    server: TokenServer = request.app.state.server
    return server


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
        return _server(request).authenticate(request.headers.get("authorization"))


CallerDep = Annotated[Caller, Depends(BearerCaller())]


def _admin(request: Request, caller: CallerDep) -> Caller:
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
        users = load_users(settings.users_file) if settings.users_file is not None else demo_users()
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
    # Added first, so it is the innermost of this app's middleware: everything added after it
    # (the body limit, request checks) applies to the lane too. Its routes are set below.
    lane: dict[tuple[str, str], Endpoint] = {}
    app.add_middleware(FastLane, routes=lane)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)

    # These answer with a JSONResponse, not a dict: FastAPI then builds no response model (a
    # tenth of start-up, importing pydantic.v1 for the check) and validates nothing per request.
    # Discovery runs on the event loop, its document encoded once (it depends on settings only);
    # a fresh Response each time, as middleware may add headers to an answer.
    metadata = JSONResponse(server.discovery()).body

    @app.get("/healthz", tags=["meta"], response_class=JSONResponse)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/.well-known/openid-configuration", tags=["discovery"], response_class=JSONResponse)
    async def openid_configuration() -> Response:
        return Response(metadata, media_type="application/json")

    @app.get("/.well-known/jwks.json", tags=["discovery"], response_class=JSONResponse)
    def jwks() -> Response:
        return JSONResponse(server.keys.jwks())

    # Sync routes: FastAPI runs them on a worker thread, so the slow password hash never
    # blocks the event loop.
    @app.post(
        "/token",
        tags=["oauth"],
        summary="Token endpoint (RFC 6749): password and refresh_token grants",
        openapi_extra=form_openapi(
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
    def token(form: ClientFormDep, address: ClientAddressDep) -> JSONResponse:
        return JSONResponse(server.token(form, address), headers=NO_STORE)

    async def fast_token(request: Request) -> Response:
        form = await _client_form(request)
        if form.get("grant_type") == "refresh_token":
            # No password hash to wait for: a signature and one write, cheaper on the event
            # loop than the hop to a worker thread (the GIL serialises both anyway).
            return token(form, client_address(request))
        return await run_in_threadpool(token, form, client_address(request))

    @app.post(
        "/revoke",
        tags=["oauth"],
        summary="Revocation endpoint (RFC 7009): ends the token's whole session",
        openapi_extra=form_openapi(
            {"token": _STRING, "token_type_hint": _STRING, "client_id": _STRING},
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

    async def fast_discovery(_: Request) -> Response:
        return await openid_configuration()

    lane.update(
        {
            ("GET", "/.well-known/openid-configuration"): fast_discovery,
            ("GET", "/userinfo"): userinfo,
            ("POST", "/userinfo"): userinfo,
            ("POST", "/token"): fast_token,
        }
    )

    @app.get("/api/sessions", tags=["resources"], summary="Active sessions (admin group only)")
    def list_sessions(caller: AdminDep) -> JSONResponse:
        return JSONResponse(server.sessions(caller), headers=NO_STORE)

    @app.delete(
        "/api/sessions/{session_id}",
        tags=["resources"],
        summary="Revoke a session (admin group only)",
        status_code=204,
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

        @app.post("/_testing/revoke-all", include_in_schema=False)
        def revoke_all() -> JSONResponse:
            # mock_server.testing's revoke_all(): every sign-in ends, as if all were revoked.
            return JSONResponse(
                {"revoked": server.store.revoke_all(adjustable(), "revoked by a test")}
            )

    return app
