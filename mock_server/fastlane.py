"""The fast lane: a few hot routes answered before FastAPI's routing and middleware stack.

Profiled under load (py-spy, tests/bench/test_bench_peer.py), a small request spent most of its
time in FastAPI's layers (its exception, exit-stack, body-limit and telemetry middleware, the
router, the endpoint wrapper), not in its own work. The routes named here (GET discovery, GET
/userinfo, POST /token) are the same endpoint functions the FastAPI routes call, only
dispatched directly: they take the Request and return a Response, and an ``OAuthError`` they
raise becomes the same JSON answer the app's handler gives. Every other method and path, HEAD
included, takes the usual way. It sits inside this app's own middleware (body limit and the
checks around it), so those still apply to the lane.
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
