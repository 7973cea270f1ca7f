"""The token server: ``create_app(settings, clock=...)`` builds the FastAPI application.

The routes are thin: they read the request (through the dependencies below), call the
protocol (server.py) and shape its data as an answer; http.py holds the plumbing. The protocol
and the fast lane's endpoints are built without FastAPI (asgi.py); the CLI serves them at once
and builds this application on the first request the lane does not answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request, Security
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword
from fastapi.openapi.models import OAuthFlows as OAuthFlowsModel
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase

from . import pages
from .asgi import (
    TESTING,
    Core,
    _authenticate,
    _server,
    build_core,
    client_form,
    healthz,
    proof_request,
)
from .docs import install_docs
from .dpop import ProofRequest
from .fastlane import FastLane
from .http import (
    CSRF_FIELD,
    NO_STORE,
    BodyLimitMiddleware,
    FormError,
    GuardMiddleware,
    check_csrf,
    client_address,
    csrf_token,
    form_openapi,
    install_error_handlers,
    page_response,
    read_form,
    read_query,
    redirect_response,
    set_csrf_cookie,
)
from .passwords import User
from .schemas import (
    DeviceAuthorization,
    Discovery,
    Health,
    Jwks,
    Sessions,
    TokenResponse,
    UserInfo,
    answer_schemas,
    errors,
    ok,
    page_errors,
)
from .server import (
    ADMIN_SCOPE,
    GRANT_TYPES,
    SCOPE_DESCRIPTIONS,
    SCOPES,
    Caller,
    OAuthError,
)
from .settings import Settings
from .signin import AuthorizationRedirect, AuthorizationRequest, SignInFlows
from .store import DeviceCode, Store


class BearerCaller(SecurityBase):
    """The dependency that turns a request's access token (Bearer, or DPoP with its proof)
    into its verified Caller.

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
        return _authenticate(request)


_BEARER = BearerCaller()
CallerDep = Annotated[Caller, Security(_BEARER, scopes=["openid"])]


def _admin(
    request: Request, caller: Annotated[Caller, Security(_BEARER, scopes=[ADMIN_SCOPE])]
) -> Caller:
    _server(request).require_admin(caller)
    return caller


AdminDep = Annotated[Caller, Depends(_admin)]


ClientFormDep = Annotated[dict[str, str], Depends(client_form)]
FormDep = Annotated[dict[str, str], Depends(read_form)]
ClientAddressDep = Annotated[str, Depends(client_address)]
ProofDep = Annotated[ProofRequest, Depends(proof_request)]

_STRING = {"type": "string"}
# RFC 6749 §3.2: an empty parameter counts as omitted, so a required one is never empty.
_REQUIRED_STRING = {"type": "string", "minLength": 1}


def _add_head_routes(app: FastAPI) -> None:
    """HEAD on every GET resource (RFC 9110 §9.1): a twin route with the same answer, which
    Starlette sends without its body. FastAPI routes answer only the methods they name."""
    with_head = {
        r.path for r in app.routes if isinstance(r, APIRoute) and "HEAD" in (r.methods or ())
    }
    for route in list(app.routes):
        if not isinstance(route, APIRoute) or "GET" not in (route.methods or ()):
            continue
        if route.path in with_head:
            continue
        app.add_api_route(
            route.path,
            route.endpoint,
            methods=["HEAD"],
            response_class=Response,
            tags=route.tags,
            summary=f"{route.summary} (headers only)",
            responses={
                **route.responses,
                200: {"description": "The headers of the GET answer, without its body"},
            },
            include_in_schema=route.include_in_schema,
            openapi_extra=route.openapi_extra,
        )


def _without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 on every route with a parameter; this server never sends one
    (a malformed request is 400, see http.py), so the document says so. It also gets the
    answers' schemas, which no route makes at start-up (schemas.ok)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            # The answers' models the routes refer to (schemas.ok), made only now.
            schemas.update(answer_schemas())
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _error_page(error: OAuthError | FormError) -> Response:
    """An error the person sees instead of a redirect: the request was not safe to send back."""
    status = error.status if isinstance(error, OAuthError) else 400
    headers = error.headers if isinstance(error, OAuthError) else None
    body = pages.message_page("Sign-in error", error.description)
    return page_response(body, status, headers)


def _form_page(
    body: str, csrf: str, error: OAuthError | None, *, status: int | None = None
) -> Response:
    """A page with a form: shown again with the error's status (and Retry-After) on a refusal,
    unless ``status`` says otherwise, always with the CSRF cookie its hidden field must match."""
    shown, headers = (error.status, error.headers) if error else (200, None)
    return set_csrf_cookie(page_response(body, status or shown, headers), csrf)


def _sign_in_page(
    request: AuthorizationRequest,
    csrf: str,
    *,
    username: str = "",
    error: OAuthError | None = None,
) -> Response:
    redirect = urlsplit(request.redirect_uri)
    body = pages.sign_in_page(
        client_id=request.client_id,
        scope=request.scope,
        hidden={**request.parameters, CSRF_FIELD: csrf},
        redirect_origin=f"{redirect.scheme}://{redirect.netloc}",
        username=username,
        message=error.description if error else None,
    )
    return _form_page(body, csrf, error)


def _device_page(
    csrf: str,
    *,
    user_code: str = "",
    username: str = "",
    error: OAuthError | None = None,
    device: DeviceCode | None = None,
    status: int | None = None,
) -> Response:
    body = pages.device_page(
        hidden={CSRF_FIELD: csrf},
        user_code=user_code[:32],
        username=username[:200],
        message=error.description if error else None,
        asking=(device.client_id, device.scope) if device is not None else None,
    )
    return _form_page(body, csrf, error, status=status)


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


# A scope is space-separated names the server offers; empty means omitted (the default).
_SCOPE = {"type": "string", "pattern": f"^(({'|'.join(SCOPES)})( ({'|'.join(SCOPES)}))*)?$"}


def _authorization_query(clients: tuple[str, ...]) -> list[dict[str, Any]]:
    """The query of an authorization request, as far as it decides between a page (400: the
    client or its redirect URI is not good) and an answer for the client (200 page or 303)."""
    return [
        _query("client_id", {"type": "string", "enum": list(clients)}, required=True),
        _query(
            "redirect_uri",
            {
                "type": "string",
                "pattern": r"^http://(127\.0\.0\.1|\[::1\]):[1-9][0-9]{0,3}/[A-Za-z0-9/_-]*$",
            },
            required=True,
        ),
        _query("response_type", _STRING),
        _query("code_challenge", _STRING),
        _query("code_challenge_method", _STRING),
        _query("scope", _STRING),
        _query("state", {"type": "string", "maxLength": 512}),
        _query("nonce", _STRING),
        _query("prompt", _STRING),
        _query("response_mode", _STRING),
    ]


_BACK_TO_CLIENT = {
    "description": "Back to the client's redirect URI: a code, or an error (RFC 6749 §4.1.2)",
    "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
}


def _add_sign_in_pages(app: FastAPI, sign_in: SignInFlows) -> None:
    """The browser and device sign-ins: the pages a person sees, browser sign-in (/authorize)
    and device verification (/device), and the device authorization endpoint. The pages answer
    in HTML; an error found before the redirect URI is known to be the client's is a page,
    never a redirect."""

    @app.post(
        "/device_authorization",
        tags=["oauth"],
        summary="Device authorization endpoint (RFC 8628): a user code for the person",
        responses={**ok(DeviceAuthorization), **errors(400, 401)},
        openapi_extra=form_openapi(
            {
                "client_id": {"type": "string", "enum": list(sign_in.settings.clients)},
                "scope": _SCOPE,
            },
            ["client_id"],
        ),
    )
    def device_authorization(form: ClientFormDep) -> JSONResponse:
        return JSONResponse(sign_in.device_authorization(form), headers=NO_STORE)

    @app.get(
        "/authorize",
        tags=["oauth"],
        summary="Authorization endpoint: the sign-in page",
        response_class=HTMLResponse,
        responses={303: _BACK_TO_CLIENT, **page_errors(400)},
        openapi_extra={"parameters": _authorization_query(sign_in.settings.clients)},
    )
    def authorize_page(request: Request) -> Response:
        try:
            authorization = sign_in.authorization_request(read_query(request))
        except AuthorizationRedirect as refused:
            return redirect_response(refused.location)
        except (OAuthError, FormError) as error:
            return _error_page(error)
        return _sign_in_page(authorization, csrf_token(request))

    @app.post(
        "/authorize",
        tags=["oauth"],
        summary="The sign-in page's form: allow (with the password) or deny",
        response_class=HTMLResponse,
        responses={
            303: _BACK_TO_CLIENT,
            **page_errors(400, 403, 429),
        },
        openapi_extra=form_openapi(
            {
                **{p["name"]: p["schema"] for p in _authorization_query(sign_in.settings.clients)},
                CSRF_FIELD: _REQUIRED_STRING,
                "decision": {"type": "string", "enum": ["allow", "deny"]},
                "username": _STRING,
                "password": {"type": "string", "format": "password"},
            },
            ["client_id", "redirect_uri", CSRF_FIELD, "decision"],
        ),
    )
    def authorize_submit(request: Request, form: FormDep, address: ClientAddressDep) -> Response:
        try:
            csrf = check_csrf(request, form)
            authorization = sign_in.authorization_request(form)
        except AuthorizationRedirect as refused:
            return redirect_response(refused.location)
        except OAuthError as error:
            return _error_page(error)
        decision = form.get("decision")
        if decision == "deny":
            return redirect_response(sign_in.deny(authorization))
        username = form.get("username", "")
        try:
            if decision != "allow":
                raise OAuthError(400, "invalid_request", "Choose Allow or Deny")
            location = sign_in.authorize(authorization, username, form.get("password", ""), address)
        except OAuthError as error:
            return _sign_in_page(authorization, csrf, username=username, error=error)
        return redirect_response(location)

    @app.get(
        "/device",
        tags=["oauth"],
        summary="Device verification page",
        response_class=HTMLResponse,
        responses=page_errors(400, 429),
        openapi_extra={"parameters": [_query("user_code", _STRING)]},
    )
    def device_page(request: Request, address: ClientAddressDep) -> Response:
        try:
            query = read_query(request)
        except FormError as error:
            return _error_page(error)
        csrf, typed = csrf_token(request), query.get("user_code", "")
        if not typed:
            return _device_page(csrf)
        # The code of verification_uri_complete, looked up (a wrong one costs a try, as typed)
        # so that the page says which client asks before the person signs in.
        try:
            device = sign_in.pending_device(typed, address)
        except OAuthError as error:
            # Still the page to type the code on, saying why (a 200: the link was followed
            # as asked); only the guessing limit answers with its own 429.
            status = None if error.status == 429 else 200
            return _device_page(csrf, user_code=typed, error=error, status=status)
        return _device_page(csrf, user_code=typed, device=device)

    @app.post(
        "/device",
        tags=["oauth"],
        summary="The device page's form: allow (with the password) or deny a user code",
        response_class=HTMLResponse,
        responses=page_errors(400, 403, 429),
        openapi_extra=form_openapi(
            {
                CSRF_FIELD: _REQUIRED_STRING,
                "user_code": _REQUIRED_STRING,
                "decision": {"type": "string", "enum": ["allow", "deny"]},
                "username": _STRING,
                "password": {"type": "string", "format": "password"},
            },
            [CSRF_FIELD, "user_code", "decision"],
        ),
    )
    def device_submit(request: Request, form: FormDep, address: ClientAddressDep) -> Response:
        try:
            csrf = check_csrf(request, form)
        except OAuthError as error:
            return _error_page(error)
        typed, username = form.get("user_code", ""), form.get("username", "")
        decision = form.get("decision")
        device = None
        try:
            if decision not in ("allow", "deny"):
                raise OAuthError(400, "invalid_request", "Choose Allow or Deny")
            device = sign_in.pending_device(typed, address)
            sign_in.decide_device(
                device, decision == "allow", username, form.get("password", ""), address
            )
        except OAuthError as error:
            return _device_page(
                csrf, user_code=typed, username=username, error=error, device=device
            )
        if decision == "deny":
            return page_response(
                pages.message_page("Request denied", "The device was not signed in.")
            )
        return page_response(
            pages.message_page(
                "Device signed in", "You can close this page and return to your device."
            )
        )


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    *,
    store: Store | None = None,
    users: Mapping[str, User] | None = None,
) -> FastAPI:
    """The server for ``settings``. ``clock`` is wall-clock time (JWT ``exp``/``iat``)."""
    return fastapi_app(build_core(settings, clock, store=store, users=users))


def fastapi_app(core: Core, *, checks: bool = True) -> FastAPI:
    """The FastAPI application of ``core``. ``checks``: with the guard and the fast lane as its
    own middleware, and its store closed at shutdown; without them for asgi.Application, which
    makes them (and closes the store) before and around this app. The body limit is in both."""
    settings, server, answer = core.settings, core.server, core.answer

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if checks:
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
    if checks:
        # Added first, so it is the innermost of this app's middleware: everything added after
        # it (the body limit, request checks) applies to the lane too.
        app.add_middleware(FastLane, routes=core.lane)
    # Inside this app even behind asgi.Application's own limit: an unannounced (chunked) body
    # over the limit raises from receive, and FastAPI's outermost error handler, between the two,
    # would answer that with a 500 before the outer limit could answer 413.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if checks:
        # Outermost: a foreign Host or Origin is refused before the body is even read.
        app.add_middleware(
            GuardMiddleware, hosts=settings.served_hosts, origins=settings.own_origins
        )
    install_error_handlers(app)
    install_docs(app)
    _without_422(app)

    def get(path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        app.add_api_route(path, endpoint, methods=["GET"], **options)

    # The routes answer with a Response they build, and declare their body's model only for
    # the document (schemas.ok): FastAPI then builds no response model at start-up (profiled:
    # a tenth of it) and validates nothing per request. Those of the fast lane's paths are
    # its endpoints (asgi.py), or call the same work; the lane answers them before routing.
    get(
        "/healthz",
        healthz,
        tags=["meta"],
        summary="Liveness",
        responses={**ok(Health), **errors()},
    )

    openid_configuration = core.openid_configuration
    get(
        "/.well-known/openid-configuration",
        openid_configuration,
        tags=["discovery"],
        summary="OpenID Connect discovery (and RFC 8414 metadata)",
        responses={**ok(Discovery), **errors()},
    )

    def jwks() -> JSONResponse:
        return core.jwks()

    get(
        "/.well-known/jwks.json",
        jwks,
        tags=["discovery"],
        summary="The public signing keys (JWKS)",
        responses={**ok(Jwks), **errors()},
    )
    # RFC 8414: the same document, where OAuth clients (not only OIDC ones) look.
    get(
        "/.well-known/oauth-authorization-server",
        openid_configuration,
        tags=["discovery"],
        summary="OAuth 2.0 authorization server metadata (RFC 8414)",
        responses={**ok(Discovery), **errors()},
    )

    # Sync routes: FastAPI runs them on a worker thread, so the slow password hash never
    # blocks the event loop.
    @app.post(
        "/token",
        tags=["oauth"],
        summary="Token endpoint (RFC 6749): password, refresh, code and device grants",
        responses={**ok(TokenResponse), **errors(400, 401, 429)},
        openapi_extra=form_openapi(
            {
                "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
                "client_id": {"type": "string", "enum": list(settings.clients)},
                "username": _STRING,
                "password": {"type": "string", "format": "password"},
                "refresh_token": _STRING,
                "code": _STRING,
                "redirect_uri": _STRING,
                "code_verifier": _STRING,
                "device_code": _STRING,
                "scope": _STRING,
            },
            ["grant_type", "client_id"],
        ),
    )
    def token(form: ClientFormDep, address: ClientAddressDep, proof: ProofDep) -> JSONResponse:
        return core.token(form, address, proof)

    _add_sign_in_pages(app, SignInFlows(server))

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
    def revoke(form: ClientFormDep, proof: ProofDep) -> Response:
        return core.revoke(form, proof)

    # The hottest route, so it skips dependency injection (most of a small request's cost in
    # FastAPI) and runs on the event loop (no worker-thread hop): its work is a signature check,
    # remembered per token, and one read that never waits for a writer. A DPoP proof adds an
    # ECDSA check and one single-row insert (the replay cache), which waits for another
    # process's write only as long as that short write lasts. OpenAPI still shows it
    # behind the bearer scheme that the /api routes declare.
    userinfo = core.userinfo

    userinfo_options: dict[str, Any] = {
        "tags": ["resources"],
        "summary": "The signed-in person's profile",
        "responses": {**ok(UserInfo), **errors(401, challenge=True)},
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
        return answer(server.sessions(caller))

    get(
        "/api/sessions",
        list_sessions,
        tags=["resources"],
        summary="Active sessions (scope sessions:admin, admin group)",
        responses={**ok(Sessions), **errors(401, 403, challenge=True)},
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
        openapi_extra={
            "parameters": [
                {"name": "session_id", "in": "path", "required": True, "schema": _STRING}
            ]
        },
    )
    def delete_session(request: Request, caller: AdminDep) -> Response:
        # Read from the path, not declared as a parameter: the app's one declared parameter
        # made FastAPI import pydantic.v1 to check its type, a tenth of start-up (profiled).
        server.revoke_session(caller, str(request.path_params["session_id"]))
        return Response(status_code=204, headers=server.dpop_nonce_header())

    # The hidden --testing-clock routes, lane endpoints as well (mock_server.testing's
    # advance() and revoke_all() then never build FastAPI in the CLI's server).
    for (method, path), endpoint in core.lane.items():
        if path.startswith(TESTING):
            app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)
    _add_head_routes(app)
    return app
