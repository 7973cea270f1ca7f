"""The fast lane: a client's first and hottest routes, answered before FastAPI's routing.

Profiled under load (py-spy, tests/bench/test_bench_peer.py), a small request spent most of its
time in FastAPI's layers (its exception, exit-stack, body-limit and telemetry middleware, the
router, the endpoint wrapper), not in its own work; and at start-up, importing and building
FastAPI was most of the time to the first answer. The routes of the lane (asgi.py: discovery,
the JWKS, health, POST /token, GET and POST /userinfo, POST /revoke) are plain Starlette
endpoints, which the FastAPI routes of the same paths share or call: they take the Request and
return a Response, and an ``OAuthError`` they raise becomes the same JSON answer the app's
handler gives. Every other method and path, HEAD included, goes on to ``app``: the FastAPI
router (create_app), or the FastAPI app built on first need (asgi.Application). The lane sits
inside the body limit and the guard, so their checks apply to it as to every route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .http import FormError, error_response, oauth_error_response
from .server import OAuthError

Endpoint = Callable[[Request], Awaitable[Response]]


class FastLane:
    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self.routes = routes  # read at each request: the app fills it in after adding this

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.routes.get((scope.get("method", ""), scope.get("path", "")))
        if endpoint is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            response = await endpoint(Request(scope, receive))
        except OAuthError as error:
            response = oauth_error_response(error)
        except FormError as error:
            response = error_response(400, "invalid_request", error.description)
        except ClientDisconnect:
            response = error_response(
                400, "invalid_request", "The connection closed before the body ended"
            )
        await response(scope, receive, send)
