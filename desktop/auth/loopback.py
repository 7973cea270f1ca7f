"""Browser sign-in on this machine: PKCE, the authorization URL and the loopback redirect
receiver (RFC 8252 §7.3, RFC 7636, RFC 9207).

The redirect URI is always ``http://127.0.0.1:PORT/callback`` with an ephemeral port chosen
when the listener starts. Providers must register ``http://127.0.0.1/callback`` for the
client and allow any port on it (RFC 8252 §7.3 requires them to); ``localhost`` is not used
because it may resolve elsewhere (RFC 8252 §8.3).

The listener answers the one ``GET /callback`` and closes. Anything else (``/favicon.ico``, a
port scanner, another method) gets 404 and the wait goes on. Connections that send nothing
are timed out per connection, each in its own thread, so they never hold up the redirect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import http.server
import secrets
import socketserver
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from desktop.auth import messages
from desktop.auth.errors import (
    AuthorizationDenied,
    AuthorizationResponseInvalid,
    BrowserSignInError,
    Cancelled,
    ConfigurationError,
    IssuerMismatch,
    SignInTimedOut,
    StateMismatch,
)

REDIRECT_PATH = "/callback"
LOOPBACK_HOST = "127.0.0.1"

# 32 random bytes: 256 bits, 43 characters of base64url (all in RFC 3986's unreserved set).
_RANDOM_BYTES = 32
# Seconds a connection may take to send its request before it is dropped.
SOCKET_TIMEOUT = 5.0
# How often wait() looks at the cancel event; short enough that Cancel feels immediate.
_POLL_SECONDS = 0.05
# error_description is the server's free text: shown bounded and as plain text only.
_DESCRIPTION_LIMIT = 200


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_pkce() -> tuple[str, str]:
    """A fresh PKCE pair ``(code_verifier, code_challenge)`` for the S256 method (RFC 7636 §4)."""
    verifier = secrets.token_urlsafe(_RANDOM_BYTES)
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return verifier, challenge


def new_state() -> str:
    """An unguessable ``state`` (256 bits) that ties the redirect to this sign-in."""
    return secrets.token_urlsafe(_RANDOM_BYTES)


def new_nonce() -> str:
    """An unguessable ``nonce`` (256 bits) that ties the ID token to this sign-in."""
    return secrets.token_urlsafe(_RANDOM_BYTES)


def authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: Iterable[str],
    state: str,
    code_challenge: str,
    nonce: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The URL to open in the browser: every parameter in the query (no PAR).

    A query the endpoint already has is kept (RFC 6749 §3.1); where it names one of our
    parameters, ours wins, since a parameter must not appear twice. ``prompt=consent`` is added
    when ``offline_access`` is asked for, as OIDC Core §11 requires for a refresh token.
    """
    parts = urlsplit(endpoint)
    if parts.fragment:
        raise ConfigurationError(messages.ENDPOINT_NOT_A_URL)
    scopes = list(scope)
    ours: dict[str, str] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if nonce is not None:
        ours["nonce"] = nonce
    if "offline_access" in scopes:
        ours["prompt"] = "consent"
    ours.update(extra or {})
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    query = urlencode([*kept, *ours.items()], quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@dataclass(frozen=True)
class AuthorizationResponse:
    """A redirect that passed every check: the code to redeem (never in ``repr``)."""

    code: str = field(repr=False)
    iss: str | None = None


def _plain(text: str, limit: int = _DESCRIPTION_LIMIT) -> str:
    """Printable ASCII only (RFC 6749 §4.1.2.1's character set for descriptions), bounded."""
    cleaned = "".join(c for c in text if " " <= c <= "~")
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


def _denied(error: str, description: str | None) -> AuthorizationDenied:
    code = _plain(error, 64)
    plain = _plain(description) if description else None
    return AuthorizationDenied(
        messages.authorization_refused(code, plain or None), error=code, description=plain
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:3em auto;max-width:32em;color:#222}}</style>
</head><body><h1>{title}</h1><p>{body}</p></body></html>
"""


def _page(title: str, body: str) -> bytes:
    return _PAGE.format(title=html.escape(title), body=html.escape(body)).encode("utf-8")


class _Outcome:
    """The first /callback decides the sign-in; later requests cannot change it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.result: AuthorizationResponse | None = None
        self.error: Exception | None = None

    def settle(self, result: AuthorizationResponse | None, error: Exception | None) -> bool:
        with self._lock:
            if self.done.is_set():
                return False
            self.result, self.error = result, error
            self.done.set()
            return True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Bound explicitly on 127.0.0.1: no wildcard, no reuse of a port another process holds.
    allow_reuse_address = False

    def __init__(self, receiver: LoopbackReceiver) -> None:
        self.receiver = receiver
        super().__init__((LOOPBACK_HOST, 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow on some machines and
        # pointless here: the name is known.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = LOOPBACK_HOST, self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    # Per-connection socket timeout: a client that connects and sends nothing is dropped.
    timeout = SOCKET_TIMEOUT
    server_version = "jwt-desktop"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    _HEADERS: ClassVar[dict[str, str]] = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
            "form-action 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    def log_message(self, format: str, *args: object) -> None:
        # The request line carries the authorization code: never write it anywhere.
        pass

    def _send(self, status: int, title: str, body: str) -> None:
        content = _page(title, body)
        self.send_response(status)
        for name, value in self._HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    def _not_found(self) -> None:
        self._send(404, "Not found", "There is nothing here.")

    def do_GET(self) -> None:
        receiver = self.server.receiver
        target = urlsplit(self.path)
        if target.path != REDIRECT_PATH or self.headers.get("Host") != receiver.netloc:
            self._not_found()
            return
        result, error = receiver.judge(target.query)
        if not receiver.outcome.settle(result, error):
            self._not_found()  # a second redirect: the first one already decided
        elif error is None:
            self._send(200, "Signed in", "You can close this tab and return to the app.")
        else:
            self._send(400, "Sign-in failed", f"{error} You can close this tab.")

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found


class LoopbackReceiver:
    """A one-shot listener on ``127.0.0.1`` for the authorization response.

    ``issuer`` is the issuer the request went to; ``iss_required`` is the server's
    ``authorization_response_iss_parameter_supported``. An ``iss`` that is present is always
    checked (RFC 9207 §2.4); a missing one is refused only where the server promised it.
    Use as a context manager, or call :meth:`close`; :meth:`wait` closes it too.
    """

    def __init__(self, *, state: str, issuer: str, iss_required: bool = False) -> None:
        self._state = state
        self._issuer = issuer
        self._iss_required = iss_required
        self.outcome = _Outcome()
        try:
            self._server = _Server(self)
        except OSError as error:
            raise BrowserSignInError(messages.LISTENER_FAILED) from error
        self.port: int = self._server.server_address[1]
        self.netloc = f"{LOOPBACK_HOST}:{self.port}"
        self.redirect_uri = f"http://{self.netloc}{REDIRECT_PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="loopback-redirect",
            daemon=True,
        )
        self._thread.start()

    def __enter__(self) -> LoopbackReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def judge(self, query: str) -> tuple[AuthorizationResponse | None, Exception | None]:
        """Check a redirect's query; exactly one of the pair is set."""
        try:
            return self._check(query), None
        except (AuthorizationResponseInvalid, AuthorizationDenied) as error:
            return None, error

    def _check(self, query: str) -> AuthorizationResponse:
        try:
            raw = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=32)
        except ValueError as error:
            raise AuthorizationResponseInvalid(messages.REDIRECT_MALFORMED) from error
        if any(len(values) > 1 for values in raw.values()):
            # RFC 6749 §3.1: parameters must not repeat; which copy to trust is unknowable.
            raise AuthorizationResponseInvalid(messages.REDIRECT_REPEATED)
        params = {name: values[0] for name, values in raw.items()}
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode("utf-8"), self._state.encode("utf-8")):
            raise StateMismatch(messages.REDIRECT_WRONG_STATE)
        iss = params.get("iss")
        if iss is None and self._iss_required:
            raise IssuerMismatch(messages.REDIRECT_NO_ISS)
        if iss is not None and iss != self._issuer:
            raise IssuerMismatch(messages.REDIRECT_WRONG_ISS)
        if "error" in params:
            raise _denied(params["error"], params.get("error_description"))
        code = params.get("code")
        if not code:
            raise AuthorizationResponseInvalid(messages.REDIRECT_NO_CODE)
        return AuthorizationResponse(code=code, iss=iss)

    def wait(self, timeout: float, cancel: threading.Event | None = None) -> AuthorizationResponse:
        """Block until the redirect arrives, ``timeout`` seconds pass or ``cancel`` is set.

        Raises :class:`StateMismatch`, :class:`IssuerMismatch`,
        :class:`AuthorizationResponseInvalid`, :class:`AuthorizationDenied`,
        :class:`SignInTimedOut` or :class:`Cancelled`; the listener is closed either way.
        """
        deadline = time.monotonic() + timeout
        try:
            while not self.outcome.done.is_set():
                if cancel is not None and cancel.is_set():
                    raise Cancelled(messages.CANCELLED)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SignInTimedOut(messages.BROWSER_TIMED_OUT)
                self.outcome.done.wait(min(_POLL_SECONDS, remaining))
        finally:
            self.close()
        if self.outcome.error is not None:
            raise self.outcome.error
        assert self.outcome.result is not None
        return self.outcome.result

    def close(self) -> None:
        """Stop listening (idempotent). The page for a redirect being answered still goes out."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
