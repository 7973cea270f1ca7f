"""The one HTTP policy of the client: everything that talks HTTP goes through :class:`Transport`.

* Plain ``http://`` only to a loopback host (127.0.0.0/8, ``::1``, ``localhost``), where
  nothing crosses a network; every other URL must be ``https://``, and TLS is always verified.
* No proxy for plain http (an ``http_proxy`` from the environment would carry a password in
  clear text off the machine) nor for loopback.
* Redirects are never followed: a redirect could lead a password, a token or a trusted answer
  to a URL this policy never saw.
* Every request has a timeout, and ``requests`` errors become the core's
  (:class:`ServerUnreachable`, :class:`ServerError`).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import requests

from desktop.auth import messages
from desktop.auth.errors import ConfigurationError, ServerError, ServerUnreachable

__all__ = [
    "DEFAULT_TIMEOUT",
    "Transport",
    "check_transport",
    "is_loopback_host",
    "json_object",
    "normalize_server_url",
    "origin",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
_NO_PROXY = {"http": None, "https": None, "all": None}


def _lost_after_sending(exc: requests.ConnectionError) -> bool:
    """Whether the connection broke after the request went out (reset, closed without an
    answer) rather than before (refused, DNS): urllib3 calls the former a ProtocolError."""
    from urllib3.exceptions import MaxRetryError, ProtocolError

    cause: object = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, ProtocolError)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback IP address (127.0.0.0/8, ``::1``).

    Not ``*.localhost``: RFC 6761 asks resolvers to map those to loopback, but many systems
    send them to DNS (or to a proxy), so nothing guarantees they stay on this machine.
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, *, what: str = "The server URL") -> str:
    """Return ``url`` when it may carry credentials, else raise ConfigurationError."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigurationError(messages.url_invalid(what, url)) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(messages.url_not_web(what, url))
    if parts.username or parts.password:
        raise ConfigurationError(messages.url_with_credentials(what))
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(messages.plain_http(what, host))
    return url


def normalize_server_url(url: str) -> str:
    """Check the transport policy and drop a trailing slash (issuer comparison ignores it)."""
    url = url.strip()
    check_transport(url)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigurationError(messages.url_with_query(url))
    return url.rstrip("/")


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def json_object(response: requests.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, or not an object)."""
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class Transport:
    """Sends requests under the policy above. Thread-safe as far as ``requests`` is.

    ``http`` is a ``requests.Session`` to use (tests pass a counting one); without it the
    transport makes and owns one, closed by :meth:`close`.
    """

    def __init__(
        self, http: requests.Session | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._owns_http = http is None
        self._http = http if http is not None else requests.Session()
        self.timeout = timeout

    def request(
        self, method: str, url: str, *, what: str = "The request URL", **kwargs: Any
    ) -> requests.Response:
        """Send one request; the caller closes (or reads) the response.

        ``what`` names the URL in the sentence of a policy refusal. Any status comes back but
        a redirect, which is refused (:class:`ServerError`) and never followed.
        """
        check_transport(url, what=what)
        if kwargs.get("verify", True) is not True:
            raise ConfigurationError(messages.TLS_DISABLED)
        kwargs["verify"] = True
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        kwargs["allow_redirects"] = False
        parts = urlsplit(url)
        if parts.scheme == "http" or is_loopback_host(parts.hostname or ""):
            kwargs["proxies"] = _NO_PROXY
        where = origin(url)
        try:
            response = self._http.request(method, url, **kwargs)
        except requests.ConnectTimeout as exc:
            raise ServerUnreachable(messages.unreachable(where, "timeout"), url=where) from exc
        except requests.Timeout as exc:  # a read timeout: the request went out
            raise ServerUnreachable(
                messages.unreachable(where, "timeout"), url=where, sent=True
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise ServerUnreachable(messages.unreachable(where, "tls"), url=where) from exc
        except requests.ConnectionError as exc:
            sent = _lost_after_sending(exc)
            why = "lost" if sent else "connect"
            raise ServerUnreachable(messages.unreachable(where, why), url=where, sent=sent) from exc
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise ServerUnreachable(
                messages.unreachable(where, "cut"), url=where, sent=True
            ) from exc
        except requests.RequestException as exc:
            logger.debug("Request failed: %s", type(exc).__name__)
            raise ServerError(messages.request_failed(where)) from exc
        if response.is_redirect:
            response.close()
            raise ServerError(
                messages.redirect_refused(where, response.status_code),
                status=response.status_code,
            )
        return response

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
