"""ASGI plumbing of the token server: host and origin checks, body limit, form parsing, error
responses and handlers.

The protocol (server.py) raises ``OAuthError``; this module turns it, and every other failure
FastAPI or Starlette can raise, into a JSON error answer. Nothing here knows OAuth grants.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .pages import CONTENT_SECURITY_POLICY
from .server import OAuthError
from .settings import host_name

# Starlette only at import: the fast lane's checks and answers are made from this module before
# FastAPI is imported (asgi.py); the handlers FastAPI needs import what they use.
if TYPE_CHECKING:
    from fastapi import FastAPI

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
NOSNIFF = (b"x-content-type-options", b"nosniff")
FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FORM_FIELDS = 32


def error_response(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """RFC 6749 §5.2 error body; never cached, never echoing what the client sent: the
    description is one of the server's fixed sentences (checked by the tests to stay within
    §5.2's characters)."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        # nosniff here as well as in GuardMiddleware: a 500 is made outside the middleware.
        headers={**(headers or {}), **NO_STORE, "X-Content-Type-Options": "nosniff"},
    )


def oauth_error_response(error: OAuthError) -> JSONResponse:
    return error_response(error.status, error.error, error.description, error.headers)


class GuardMiddleware:
    """The checks that come before anything else, and a header on every answer.

    - ``Host`` must name this server (``hosts``: names without port, lower-case), else 421:
      a page on a foreign name that DNS-rebinds to our address must not reach the API.
    - ``Origin``, when present, must be one of ``origins`` (the server's own pages), else 403,
      before any body is read: a cross-site form post must not spend anyone's sign-in tries.
      Without ``Origin`` (no browser, or a same-origin GET) the request goes on.
    - Every answer carries ``X-Content-Type-Options: nosniff``.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str], origins: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def nosniff_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == NOSNIFF[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        headers = {name: value for name, value in scope["headers"] if name in (b"host", b"origin")}
        host = headers.get(b"host", b"").decode("latin-1")
        if host_name(host) not in self.hosts:
            refusal = error_response(
                421, "invalid_request", "This server does not serve the host name in the request"
            )
        elif b"origin" in headers and headers[b"origin"].decode("latin-1") not in self.origins:
            refusal = error_response(
                403, "invalid_request", "Requests from other web sites are refused"
            )
        else:
            await self.app(scope, receive, nosniff_send)
            return
        await refusal(scope, _empty_receive, nosniff_send)


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
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(send, 400, "The Content-Length header is malformed")
                    return
                if int(value) > self.max_bytes:
                    await self._refuse(send)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:
            # The body is at most the Content-Length checked above (the HTTP parser holds the
            # client to it), or empty: nothing to count, so no wrapper on every message (a
            # tenth of a small request's time, profiled).
            await self.app(scope, receive, send)
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
        response = error_response(status, "invalid_request", description)
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict; each parameter at most once,
    and one without a value is left out (RFC 6749 §3.2: treated as omitted)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise FormError(f"The request body must be {FORM_TYPE}")
    return _parameters(await request.body(), "request body")


def read_query(request: Request) -> dict[str, str]:
    """The query string as a dict, by the same rules as a form (RFC 6749 §3.1)."""
    return _parameters(request.scope.get("query_string", b""), "query")


def _parameters(encoded: bytes, what: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            encoded.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError(f"The {what} is not a valid UTF-8 form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if not value:
            continue
        if name in form:
            # RFC 6749 §3.2: parameters must not be included more than once. Which one is not
            # said: a description never echoes what the client sent.
            raise FormError("A parameter is repeated")
        form[name] = value
    return form


def refuse_client_credentials(request: Request) -> None:
    """Our clients are public (auth method "none"): HTTP Basic client credentials are an error,
    answered as RFC 6749 §5.2 says for a client that tried the Authorization header."""
    scheme = request.headers.get("authorization", "").strip().partition(" ")[0]
    if scheme.lower() == "basic":
        raise OAuthError(
            401,
            "invalid_client",
            "Clients of this server are public: send client_id in the body, without credentials",
            {"WWW-Authenticate": 'Basic realm="jwt-mock-server"'},
        )


# Pages: no framing (clickjacking of Allow), no scripts, nothing cached, and no referrer to
# another origin (the authorization URL carries state and challenge). "same-origin", not
# "no-referrer": under no-referrer a browser sends the form's POST with `Origin: null`, which
# an Origin check must refuse.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    **NO_STORE,
}
CSRF_COOKIE = "jwt_mock_csrf"
CSRF_FIELD = "csrf_token"
_CSRF_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def page_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**(headers or {}), **PAGE_HEADERS})


def redirect_response(location: str) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET.
    return RedirectResponse(location, status_code=303, headers=PAGE_HEADERS)


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser: its cookie's when it has one (so two open sign-in tabs
    both stay valid), else a new one. Set it with ``set_csrf_cookie``."""
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if _CSRF_TOKEN.match(token) else secrets.token_urlsafe(32)


def set_csrf_cookie(response: Response, token: str) -> Response:
    # Double submit: a page of another site can make the browser post here, with the cookie,
    # but cannot read it to put the same value in the form. SameSite=Strict keeps it home.
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


def check_csrf(request: Request, form: Mapping[str, str]) -> str:
    """The form's CSRF token when it matches the cookie, else an OAuthError for the page."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not _CSRF_TOKEN.match(cookie) or not hmac.compare_digest(cookie, sent):
        # 403: the request may be well formed, it is just not one this server's page sent.
        raise OAuthError(
            403,
            "invalid_request",
            "This form has expired or did not come from this server. Open the page again.",
        )
    return sent


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def form_openapi(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """OpenAPI for a route that reads its form itself (read_form), not through FastAPI."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                FORM_TYPE: {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": required,
                        # RFC 6749 §3.2: unknown parameters are ignored, each at most once.
                        "additionalProperties": {"type": "string"},
                    }
                }
            },
        }
    }


_HTTP_ERRORS = {
    404: ("not_found", "There is nothing at this path"),
    405: ("method_not_allowed", "This method is not allowed here"),
}


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    from starlette.routing import BaseRoute, Match

    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(scope)[0] is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def unexpected_error(_: Request, __: Exception) -> Response:
    return error_response(500, "server_error", "The server hit an unexpected error")


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes a JSON error answer: never FastAPI's defaults, never a traceback."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(OAuthError)
    async def oauth_error(_: Request, error: OAuthError) -> Response:
        return oauth_error_response(error)

    @app.exception_handler(FormError)
    async def form_error(_: Request, error: FormError) -> Response:
        return error_response(400, "invalid_request", error.description)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> Response:
        # The client hung up mid-body: nobody is left to answer, and nothing went wrong here.
        # Handled, so it is neither a 500 nor a logged traceback; uvicorn drops the answer.
        return error_response(400, "invalid_request", "The connection closed before the body ended")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, __: RequestValidationError) -> Response:
        # FastAPI's default echoes the input back; it could be a password.
        return error_response(400, "invalid_request", "The request is malformed")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        # Fixed sentences: a detail could carry something of the request.
        code, description = _HTTP_ERRORS.get(
            error.status_code, ("invalid_request", "The request cannot be served")
        )
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path has a
            # route per method here (GET and its HEAD twin, POST /userinfo).
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return error_response(error.status_code, code, description, headers)

    app.add_exception_handler(Exception, unexpected_error)
