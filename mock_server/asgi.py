"""The server as the CLI runs it: the fast lane from Starlette alone, FastAPI's app on first need.

Profiled (cProfile, ``python -X importtime``), start to the first answer was mostly FastAPI and
pydantic: importing them (about two thirds) and building the routes and their models (most of
the rest). A client's first requests are all fast-lane routes (fastlane.py): discovery, the key
set, health, a token, the profile, revocation. So ``create_asgi_app`` builds only the protocol
(``TokenServer``), those endpoints and the checks around them (guard, body limit, the JSON 500),
and the FastAPI application (app.py: every other route, the 404 and 405 answers, OpenAPI,
/docs, the pages) is built by the first request the lane does not answer, once.

``create_app`` (app.py) builds the same lane and checks into a FastAPI app at once, for tests
and for code that wants the FastAPI object; the endpoints here are shared by both.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .dpop import ProofRequest
from .fastlane import Endpoint, FastLane
from .http import (
    NO_STORE,
    BodyLimitMiddleware,
    GuardMiddleware,
    client_address,
    error_response,
    read_form,
    refuse_client_credentials,
    unexpected_error,
)
from .passwords import User, demo_users, load_users
from .server import AdjustableClock, Caller, TokenServer
from .settings import Settings
from .store import SqliteStore, Store


def _server(request: Request) -> TokenServer:
    # request.app: the FastAPI app, or the Application below, which both hold the server.
    server: TokenServer = request.app.state.server
    return server


def proof_request(request: Request) -> ProofRequest:
    """What the request brings for DPoP (RFC 9449 §4.3): every ``DPoP`` header, the method,
    and the URL as this server sees it: its issuer and the path (never the Host header). A
    FastAPI dependency too: its one parameter is the request."""
    return _proof_request(request, _server(request))


def _proof_request(request: Request, server: TokenServer) -> ProofRequest:
    # The path as request.url.path gives it (Starlette escapes these three), without building
    # the whole URL (profiled: a tenth of a DPoP request's own work).
    path = request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return ProofRequest(
        tuple(request.headers.getlist("dpop")),
        request.method,
        server.settings.issuer.rstrip("/") + path,
    )


def _authenticate(request: Request, server: TokenServer | None = None) -> Caller:
    server = server or _server(request)  # given by the endpoints that hold it: state is slow
    # A Bearer request (the hot path) builds no ProofRequest.
    proof = _proof_request(request, server) if "dpop" in request.headers else None
    return server.authenticate(request.headers.get("authorization"), proof)


async def client_form(request: Request) -> dict[str, str]:
    # Checked before the body is read: credentials are refused whatever the form says.
    refuse_client_credentials(request)
    return await read_form(request)


class _PreparedResponse(Response):
    """A 200 whose body and header lines were encoded once, for an answer sent many times."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        # Response.__init__ would encode the headers and count the body again each time.
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = list(raw_headers)  # this answer's own: middleware may add to it


# A profile is sensitive, so never stored by a cache (RFC 9111 §5.2.2.5). Pragma, which token
# answers add for HTTP/1.0 caches (RFC 6749 §5.1), is not asked of /userinfo by OIDC Core and
# is deprecated (RFC 9111 §5.4); nosniff here too, so that the guard finds it at once.
_PROFILE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _discovery_endpoint(server: TokenServer) -> Endpoint:
    # On the event loop, the document and its headers encoded once (it depends on settings
    # only); a fresh Response each time, as middleware may add headers to an answer.
    made = JSONResponse(server.discovery(), headers={"X-Content-Type-Options": "nosniff"})
    metadata, raw_headers = bytes(made.body), made.raw_headers

    async def openid_configuration(_: Request) -> Response:
        return _PreparedResponse(metadata, raw_headers)

    return openid_configuration


def _userinfo_endpoint(server: TokenServer) -> Endpoint:
    # The profile follows from the person and the token's scope alone (users are loaded once),
    # so its answer is encoded once; the token (and its DPoP proof) and its session are still
    # checked every time. Profiled, building the Response was a fifth of this endpoint's time.
    answers: dict[tuple[User, str], tuple[bytes, list[tuple[bytes, bytes]]]] = {}

    async def userinfo(request: Request) -> Response:
        caller = _authenticate(request, server)
        key = (caller.user, str(caller.claims["scope"]))
        answer = answers.get(key)
        if answer is None:
            made = JSONResponse(server.userinfo(caller), headers=_PROFILE_HEADERS)
            answer = bytes(made.body), made.raw_headers
            if len(answers) < 4096:
                answers[key] = answer
        body, raw_headers = answer
        # A new DPoP nonce may ride on any answer (RFC 9449 §8.2).
        nonce = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in server.dpop_nonce_header().items()
        ]
        return _PreparedResponse(body, [*raw_headers, *nonce])

    return userinfo


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


TESTING = "/_testing/"


def _testing_endpoints(
    server: TokenServer, clock: AdjustableClock
) -> dict[tuple[str, str], Endpoint]:
    """The hidden --testing-clock routes: move the clock, end every sign-in."""

    async def advance(request: Request) -> Response:
        form = await read_form(request)
        try:
            seconds = float(form.get("seconds", ""))
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            return error_response(400, "invalid_request", "seconds must be a number >= 0")
        clock.advance(seconds)
        return JSONResponse({"now": clock()})

    def revoke_all() -> Response:
        # mock_server.testing's revoke_all(): every sign-in ends, as if all were revoked.
        return JSONResponse({"revoked": server.store.revoke_all(clock(), "revoked by a test")})

    async def revoke_all_endpoint(_: Request) -> Response:
        return await run_in_threadpool(revoke_all)

    return {
        ("POST", TESTING + "advance"): advance,
        ("POST", TESTING + "revoke-all"): revoke_all_endpoint,
    }


class _DatedByClock:
    """``Date`` (RFC 9110 §6.6.1) from the server's own clock, for ``--testing-clock``: moved
    with it, so that a client reading the server's time from its answers sees the time its
    tokens are dated by (uvicorn's ``Date``, which is turned off then, would not move)."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float]) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = email.utils.formatdate(self.clock(), usegmt=True).encode("ascii")
                message = {**message, "headers": [*message.get("headers", ()), (b"date", date)]}
            await send(message)

        await self.app(scope, receive, dated_send)


@dataclass(frozen=True)
class Core:
    """The protocol and the endpoints that need no FastAPI: the fast lane's routes (``lane``,
    by method and path) and the work the FastAPI routes of the same paths call."""

    settings: Settings
    server: TokenServer
    openid_configuration: Endpoint
    userinfo: Endpoint
    lane: Mapping[tuple[str, str], Endpoint]

    def answer(self, data: Any) -> JSONResponse:
        # A new DPoP nonce may ride on any answer (RFC 9449 §8.2, §9); none unless demanded.
        return JSONResponse(data, headers={**NO_STORE, **self.server.dpop_nonce_header()})

    def token(
        self, form: Mapping[str, str], address: str, proof: ProofRequest | None
    ) -> JSONResponse:
        return self.answer(self.server.token(form, address, proof))

    def revoke(self, form: Mapping[str, str], proof: ProofRequest | None) -> Response:
        self.server.revoke(form, proof)
        return Response(status_code=200, headers={**NO_STORE, **self.server.dpop_nonce_header()})

    def jwks(self) -> JSONResponse:
        return JSONResponse(self.server.keys.jwks())


def build_core(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    *,
    store: Store | None = None,
    users: Mapping[str, User] | None = None,
) -> Core:
    """The protocol for ``settings`` and its fast-lane endpoints. ``clock`` is wall-clock time
    (JWT ``exp``/``iat``)."""
    adjustable = AdjustableClock(clock)
    if users is None:
        users = load_users(settings.users_file) if settings.users_file is not None else demo_users()
    if store is None:
        store = SqliteStore(settings.db_path, issuer=settings.issuer)
    server = TokenServer(settings, adjustable, store, users)
    lane: dict[tuple[str, str], Endpoint] = {}
    core = Core(settings, server, _discovery_endpoint(server), _userinfo_endpoint(server), lane)

    async def jwks(_: Request) -> Response:
        # On a worker thread, as FastAPI runs its sync route: the first use of a fresh database
        # makes the signing key, an RSA key generation that must not stall the event loop.
        return await run_in_threadpool(core.jwks)

    async def fast_token(request: Request) -> Response:
        # The FastAPI route's dependencies, in its order: credentials refused, the form, the
        # address, the DPoP proof.
        form = await client_form(request)
        address, proof = client_address(request), proof_request(request)
        if form.get("grant_type") == "refresh_token":
            # No password hash to wait for: a signature and one write, cheaper on the event
            # loop than the hop to a worker thread (the GIL serialises both anyway).
            return core.token(form, address, proof)
        return await run_in_threadpool(core.token, form, address, proof)

    async def fast_revoke(request: Request) -> Response:
        form = await client_form(request)
        return await run_in_threadpool(core.revoke, form, proof_request(request))

    lane.update(
        {
            ("GET", "/healthz"): healthz,
            ("GET", "/.well-known/openid-configuration"): core.openid_configuration,
            # RFC 8414: the same document, where OAuth clients (not only OIDC ones) look.
            ("GET", "/.well-known/oauth-authorization-server"): core.openid_configuration,
            ("GET", "/.well-known/jwks.json"): jwks,
            ("GET", "/userinfo"): core.userinfo,
            ("POST", "/userinfo"): core.userinfo,
            ("POST", "/token"): fast_token,
            ("POST", "/revoke"): fast_revoke,
        }
    )
    if settings.testing_clock:
        lane.update(_testing_endpoints(server, adjustable))
    return core


class Deferred:
    """An ASGI app built by the first request that reaches it, once, however many arrive
    together: they wait for the one build, and every later request goes straight to it."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            # On a worker thread: the build (imports, mostly) takes a few hundred ms, and the
            # event loop goes on answering the fast lane meanwhile.
            app = await run_in_threadpool(self.built)
        await app(scope, receive, send)

    def built(self) -> ASGIApp:
        # The lock, not the event loop, makes it once: an ASGI server may call from several
        # threads and loops (a test client does), and the build runs on worker threads.
        with self._lock:
            if self._app is None:
                self._app = self._build()
            return self._app


def _fastapi_app(core: Core) -> ASGIApp:
    """app.py's FastAPI app for ``core``, without the checks Application already makes."""
    # pydantic's schema building deferred for the models FastAPI defines as it is imported
    # (OpenAPI's, mostly): profiled, building them was the largest single part of importing
    # FastAPI (about a quarter), and most are used only when /openapi.json is first asked
    # for, which then builds them. The routes' own models are made after the default is
    # restored. The switch is pydantic's internal default: without it (a pydantic that moved
    # it) nothing changes but the time.
    try:
        from pydantic._internal import _config
    except ImportError:
        defaults: dict[str, Any] = {}
    else:
        defaults = _config.config_defaults  # type: ignore[assignment]
    saved = defaults.get("defer_build")
    if saved is not None:
        defaults["defer_build"] = True
    try:
        from .app import fastapi_app
    finally:
        if saved is not None:
            defaults["defer_build"] = saved
    return fastapi_app(core, checks=False)


class Application:
    """The CLI's ASGI application (see the module docstring). In order: a JSON 500 for an
    unexpected error (what FastAPI's outermost middleware does), the guard (Host, Origin,
    nosniff), the body limit, the fast lane, and the deferred FastAPI app: the same checks,
    in the same order, as create_app's FastAPI app gives every request."""

    def __init__(self, core: Core) -> None:
        self.core = core
        # What request.app.state holds in the FastAPI app: the endpoints find the server there.
        self.state = State({"server": core.server})
        settings = core.settings
        self.rest = Deferred(lambda: _fastapi_app(core))
        stack: ASGIApp = FastLane(self.rest, routes=core.lane)
        stack = BodyLimitMiddleware(stack, max_bytes=settings.max_body_bytes)
        stack = GuardMiddleware(stack, hosts=settings.served_hosts, origins=settings.own_origins)
        stack = ServerErrorMiddleware(stack, handler=unexpected_error)
        if settings.testing_clock:
            stack = _DatedByClock(stack, core.server.clock)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        # As Starlette's application does: request.app is the app serving the request.
        scope["app"] = self
        await self._stack(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # The FastAPI app's lifespan, which the deferred one does not run: close the store.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.core.server.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_asgi_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    *,
    store: Store | None = None,
    users: Mapping[str, User] | None = None,
) -> Application:
    """The server for ``settings`` as the CLI serves it: the fast lane at once, the rest of the
    routes (FastAPI) built by the first request that needs them."""
    return Application(build_core(settings, clock, store=store, users=users))
