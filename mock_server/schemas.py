"""The shapes of the server's answers, for the OpenAPI document.

The routes build their JSON themselves (the protocol returns plain data); these models only
describe it, so /openapi.json tells a client, and schemathesis checks, every answer the server
gives: its status, its body and its headers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    # Providers add members over time; a client must ignore the ones it does not know.
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """RFC 6749 §5.2 / RFC 6750 §3: a fixed sentence, never an echo of the request."""

    error: str = Field(examples=["invalid_request"])
    error_description: str = Field(pattern=r"^[\x20-\x21\x23-\x5B\x5D-\x7E]*$")


class TokenResponse(_Open):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str = Field(examples=["Bearer"])
    expires_in: int
    refresh_token: str
    scope: str


class DeviceAuthorization(_Open):
    """RFC 8628 §3.2."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Discovery(_Open):
    """OpenID Connect Discovery 1.0 / RFC 8414 metadata."""

    issuer: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    revocation_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
    claims_supported: list[str]


class Jwk(_Open):
    kty: str
    kid: str
    use: str
    alg: str
    n: str
    e: str


class Jwks(BaseModel):
    keys: list[Jwk]


class UserInfo(_Open):
    """The claims the token's scopes allow: ``sub`` always, the rest by scope."""

    sub: str
    preferred_username: str | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    groups: list[str] | None = None
    locale: str | None = None
    zoneinfo: str | None = None
    updated_at: int | None = None


class SessionInfo(BaseModel):
    id: str
    username: str
    client_id: str
    scope: str
    started_at: str
    last_refreshed_at: str | None
    expires_at: str
    current: bool


class Sessions(BaseModel):
    sessions: list[SessionInfo]


_STRING: dict[str, Any] = {"schema": {"type": "string"}}
_NO_STORE_HEADERS = {"Cache-Control": {**_STRING, "required": True}}
_DESCRIPTIONS = {
    400: "A malformed request (RFC 6749 §5.2 error codes), or a malformed Content-Length",
    401: "No valid credentials; WWW-Authenticate names the scheme (RFC 6750 §3)",
    403: "A request from a foreign web page (Origin), or a token without the scope it needs",
    404: "Nothing with this id",
    408: "The request did not arrive whole in time; the connection is closed",
    413: "The request body is larger than the server accepts",
    421: "The Host header names a host this server does not serve (DNS rebinding)",
    429: "Too many failed sign-ins; Retry-After says when to try again",
}
# Answers any request can get, whatever its path: the checks before the routes.
COMMON = (400, 403, 408, 413, 421)


def page_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a page route: these statuses are HTML pages for the person (the other
    COMMON ones stay JSON, made before the route)."""
    documented = errors(*statuses)
    for status, answer in documented.items():
        # Spelled out: with a `model`, FastAPI puts its schema under the route's own media type
        # (text/html) instead of JSON. ErrorBody is in the components already.
        content: dict[str, Any] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        }
        if status in statuses:
            content["text/html"] = {"schema": {"type": "string"}}
            answer["description"] = (
                "A page that tells the person what went wrong (or, for a request that is not "
                "even a form, the JSON error)"
            )
        answer.pop("model", None)
        answer["content"] = content
    return documented


def errors(*statuses: int, challenge: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for these error statuses (plus COMMON), each with the
    error body; ``challenge``: its 401 and 403 carry WWW-Authenticate (a bearer resource)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*COMMON, *statuses}):
        # The protocol-level 408 (see __main__) is made before any of the application's headers.
        headers = dict(_NO_STORE_HEADERS) if status != 408 else {}
        if status == 429:
            headers["Retry-After"] = {"schema": {"type": "integer"}, "required": True}
        if status == 401 or (challenge and status == 403):
            headers["WWW-Authenticate"] = {**_STRING, "required": True}
        documented[status] = {
            "model": ErrorBody,
            "description": _DESCRIPTIONS[status],
            "headers": headers,
        }
    return documented
