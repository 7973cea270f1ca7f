"""OpenID Connect discovery (``/.well-known/openid-configuration``) and the transport policy.

Transport policy: plain ``http://`` is allowed only to a loopback host (127.0.0.0/8, ``::1``,
``localhost``), where nothing crosses a network; every other URL must be ``https://``, and TLS
is always verified (the session passes ``verify=True`` on every request).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from desktop.auth.errors import ConfigurationError

__all__ = [
    "WELL_KNOWN_PATH",
    "Endpoints",
    "check_transport",
    "is_loopback_host",
    "normalize_server_url",
    "parse_discovery",
]

WELL_KNOWN_PATH = "/.well-known/openid-configuration"


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
        raise ConfigurationError(f"{what} is not a valid URL: {url!r}.") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"{what} must be an http:// or https:// URL with a host: {url!r}.")
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not contain a user name or password.")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(
            f"{what} uses plain http:// to {host}; only loopback addresses may use http://. "
            "Use https:// instead."
        )
    return url


def normalize_server_url(url: str) -> str:
    """Check the transport policy and drop a trailing slash (issuer comparison ignores it)."""
    url = url.strip()
    check_transport(url)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigurationError(f"The server URL must not have a query or fragment: {url!r}.")
    return url.rstrip("/")


@dataclass(frozen=True)
class Endpoints:
    """The endpoints a discovery document names; optional ones are ``None`` when absent."""

    issuer: str
    token_endpoint: str
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    jwks_uri: str | None = None
    scopes_supported: tuple[str, ...] | None = None


def parse_discovery(document: object, *, server_url: str) -> Endpoints:
    """Validate a discovery document against the configured server URL.

    The ``issuer`` must equal the configured URL (OpenID Connect Discovery §4.3; a trailing slash
    is ignored): this stops a document served from one place from sending credentials elsewhere
    under another name. Every endpoint obeys the transport policy.
    """
    if not isinstance(document, dict):
        raise ConfigurationError("The server's discovery document is not a JSON object.")
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ConfigurationError("The server's discovery document has no issuer.")
    if issuer.rstrip("/") != server_url.rstrip("/"):
        raise ConfigurationError(
            f"The server says its issuer is {issuer!r}, not the configured {server_url!r}."
        )
    token = _endpoint(document, "token_endpoint", required=True)
    assert token is not None
    scopes = document.get("scopes_supported")
    return Endpoints(
        issuer=issuer,
        token_endpoint=token,
        userinfo_endpoint=_endpoint(document, "userinfo_endpoint"),
        revocation_endpoint=_endpoint(document, "revocation_endpoint"),
        jwks_uri=_endpoint(document, "jwks_uri"),
        scopes_supported=(
            tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else None
        ),
    )


def _endpoint(document: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = document.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"The server's discovery document has no valid {key}.")
    return check_transport(value, what=f"The server's {key}")
