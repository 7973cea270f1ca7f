"""The OAuth 2.0 / OpenID Connect protocol as plain functions over the :class:`Transport`.

* :func:`discover`: the server's metadata, read from BOTH the OpenID Connect discovery document
  (``<issuer>/.well-known/openid-configuration``) and the OAuth 2.0 Authorization Server
  Metadata (RFC 8414 §3.1: ``/.well-known/oauth-authorization-server`` inserted before the
  issuer's path). Either may be missing, one must exist; each must name the configured issuer
  (RFC 8414 §3.3, OIDC Discovery §4.3); what they advertise is merged. Some servers
  (django-oauth-toolkit) list their revocation endpoint only in the RFC 8414 document.
* :func:`token_request`: one POST to the token endpoint, its answer or its error as the core's.
* :func:`revoke`: RFC 7009.
* :func:`bearer_error`, :func:`oauth_error`: RFC 6750 §3 challenges and RFC 6749 §5.2 bodies,
  read whatever the status code.
* :func:`requested_scope`: the one place that decides which scopes any grant asks for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests

from desktop.auth import messages
from desktop.auth.errors import (
    AuthError,
    ClientRejected,
    ConfigurationError,
    DPoPRefused,
    InvalidCredentials,
    OAuthError,
    ServerError,
    SessionEnded,
    SubjectMismatch,
    TooManyAttempts,
)
from desktop.auth.messages import Revocation
from desktop.auth.transport import Transport, check_transport, json_object

if TYPE_CHECKING:
    from desktop.auth.dpop import DPoPSigner

__all__ = [
    "BASE_SCOPES",
    "DPOP_ERRORS",
    "OIDC_DISCOVERY_PATH",
    "OPTIONAL_SCOPES",
    "RFC8414_PATH",
    "ServerMetadata",
    "account_name",
    "bearer_error",
    "challenges",
    "discover",
    "metadata_urls",
    "oauth_error",
    "parse_metadata",
    "requested_scope",
    "retry_after",
    "revoke",
    "server_failure",
    "token_request",
    "userinfo_claims",
]

logger = logging.getLogger(__name__)

OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"
RFC8414_PATH = "/.well-known/oauth-authorization-server"
# What the app uses: the profile and its groups.
BASE_SCOPES = ("openid", "profile", "email", "groups")
# Asked for only when the server lists them: offline_access makes OIDC providers issue a
# refresh token at all (OIDC Core §11; node-oidc-provider, Auth0), sessions:admin is for the
# Sessions view.
OPTIONAL_SCOPES = ("offline_access", "sessions:admin")
# RFC 8414 §2: the default when grant_types_supported is omitted.
DEFAULT_GRANT_TYPES = ("authorization_code", "implicit")

_ENDPOINTS = (
    "token_endpoint",
    "revocation_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "authorization_endpoint",
    "device_authorization_endpoint",
    "end_session_endpoint",
)
_LISTS = (
    "grant_types_supported",
    "scopes_supported",
    "code_challenge_methods_supported",
    "id_token_signing_alg_values_supported",
    "dpop_signing_alg_values_supported",
)


@dataclass(frozen=True)
class ServerMetadata:
    """What the server advertises (merged from both documents); absent values are ``None``.

    Every endpoint has passed the transport policy. Lists are tuples of strings.
    """

    issuer: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    end_session_endpoint: str | None = None
    grant_types_supported: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] | None = None
    dpop_signing_alg_values_supported: tuple[str, ...] | None = None
    authorization_response_iss_parameter_supported: bool = False

    def supports_grant(self, grant_type: str) -> bool:
        """Whether the server says it accepts ``grant_type`` (e.g. ``"authorization_code"``,
        ``"urn:ietf:params:oauth:grant-type:device_code"``, ``"password"``).

        Absent ``grant_types_supported`` means RFC 8414's default, authorization code and
        implicit. Callers that can simply try a grant (the password dialog) should still offer
        it when the list is absent and let the server's ``unsupported_grant_type`` answer;
        this is for deciding what to *offer first*.
        """
        listed = self.grant_types_supported
        return grant_type in (DEFAULT_GRANT_TYPES if listed is None else listed)

    def supports_scope(self, scope: str) -> bool:
        return self.scopes_supported is not None and scope in self.scopes_supported


def requested_scope(metadata: ServerMetadata) -> str | None:
    """The scope every grant asks for: the app's base scopes (those the server lists, or all of
    them when it lists none), plus ``offline_access`` and ``sessions:admin`` when listed.
    ``None``: send no scope parameter (the server's default)."""
    listed = metadata.scopes_supported
    if listed is None:
        return " ".join(BASE_SCOPES)
    wanted = [s for s in (*BASE_SCOPES, *OPTIONAL_SCOPES) if s in listed]
    return " ".join(wanted) or None


# -- metadata -------------------------------------------------------------------------------------


def metadata_urls(issuer: str) -> tuple[str, str]:
    """(OIDC discovery URL, RFC 8414 URL) for ``issuer`` (RFC 8414 §3.1 inserts the well-known
    path between the host and the issuer's path)."""
    parts = urlsplit(issuer.rstrip("/"))
    rfc8414 = urlunsplit((parts.scheme, parts.netloc, RFC8414_PATH + parts.path, "", ""))
    return issuer.rstrip("/") + OIDC_DISCOVERY_PATH, rfc8414


def discover(transport: Transport, issuer: str) -> ServerMetadata:
    """Read both metadata documents of ``issuer`` and merge them (the OIDC one wins where both
    name the same field: it is what OIDC clients, and this one so far, were built on)."""
    documents: list[dict[str, Any]] = []
    statuses: list[int] = []
    for url in metadata_urls(issuer):
        document, status = _fetch_document(transport, url, issuer)
        statuses.append(status)
        if document is not None:
            documents.append(parse_document(document, issuer=issuer))
    if not documents:
        raise ConfigurationError(messages.no_metadata(issuer, statuses[0]))
    merged: dict[str, Any] = {}
    for document in reversed(documents):  # the first (OIDC) document last: it wins
        merged.update({k: v for k, v in document.items() if v is not None})
    if "token_endpoint" not in merged:
        raise ConfigurationError(messages.metadata_invalid("token_endpoint"))
    return ServerMetadata(**merged)


def parse_metadata(document: object, *, issuer: str) -> ServerMetadata:
    """One metadata document, validated against the configured issuer."""
    fields = parse_document(document, issuer=issuer)
    if fields.get("token_endpoint") is None:
        raise ConfigurationError(messages.metadata_invalid("token_endpoint"))
    return ServerMetadata(**{k: v for k, v in fields.items() if v is not None})


def parse_document(document: object, *, issuer: str) -> dict[str, Any]:
    """The fields of one metadata document, checked; ``None`` for what it does not name.

    The ``issuer`` must equal the configured one (a trailing slash is ignored): this stops a
    document served from one place from sending credentials elsewhere under another name.
    Every endpoint obeys the transport policy.
    """
    if not isinstance(document, dict):
        raise ConfigurationError(messages.METADATA_NOT_OBJECT)
    named = document.get("issuer")
    if not isinstance(named, str) or not named:
        raise ConfigurationError(messages.METADATA_NO_ISSUER)
    if named.rstrip("/") != issuer.rstrip("/"):
        raise ConfigurationError(messages.issuer_mismatch(named, issuer))
    fields: dict[str, Any] = {"issuer": named}
    for key in _ENDPOINTS:
        fields[key] = _endpoint(document, key)
    for key in _LISTS:
        value = document.get(key)
        fields[key] = (
            tuple(s for s in value if isinstance(s, str)) if isinstance(value, list) else None
        )
    iss_param = document.get("authorization_response_iss_parameter_supported")
    fields["authorization_response_iss_parameter_supported"] = True if iss_param is True else None
    return fields


def _fetch_document(
    transport: Transport, url: str, issuer: str
) -> tuple[dict[str, Any] | None, int]:
    response = transport.request(
        "GET", url, what="The metadata URL", headers={"Accept": "application/json"}
    )
    with response:
        status = response.status_code
        if status >= 500:
            raise server_failure(status)
        if status != 200:
            return None, status  # not published there; the other document may be
        document = json_object(response)
    if document is None:
        raise ConfigurationError(messages.metadata_not_json(issuer, url))
    return document, status


def _endpoint(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(messages.metadata_invalid(key))
    return check_transport(value, what=f"The server's {key}")


# RFC 9449 §12.2: the errors that refuse a proof rather than a grant or a token.
DPOP_ERRORS = ("invalid_dpop_proof", "use_dpop_nonce")

# -- token endpoint -------------------------------------------------------------------------------


def token_request(
    transport: Transport,
    metadata: ServerMetadata,
    form: dict[str, str],
    *,
    client_id: str,
    dpop: DPoPSigner | None = None,
) -> dict[str, Any]:
    """POST ``form`` (with ``client_id``) to the token endpoint; the JSON answer, or the error.

    With ``dpop`` the request carries a proof of the session's key (RFC 9449 §5), and a
    ``use_dpop_nonce`` refusal is sent again once with the server's nonce. The error's class
    depends on the ``grant_type`` in ``form`` (a refused password is
    :class:`InvalidCredentials`, a refused refresh token :class:`SessionEnded`).
    """
    response = _post(
        transport,
        dpop,
        metadata.token_endpoint,
        what="The server's token_endpoint",
        data={**form, "client_id": client_id},
        headers={"Accept": "application/json"},
    )
    with response:
        data = json_object(response)
        if response.status_code == 200:
            if data is None:
                raise ServerError(messages.TOKEN_NOT_JSON, status=200)
            return data
        raise token_error(
            response,
            data,
            grant=form.get("grant_type", ""),
            client_id=client_id,
            dpop=dpop,
        )


def _post(
    transport: Transport, dpop: DPoPSigner | None, url: str, **kwargs: Any
) -> requests.Response:
    if dpop is None:
        return transport.request("POST", url, **kwargs)
    return dpop.send(transport, "POST", url, **kwargs)


def token_error(  # noqa: PLR0911  # one return per kind of answer reads best
    response: requests.Response,
    data: dict[str, Any] | None,
    *,
    grant: str,
    client_id: str,
    dpop: DPoPSigner | None = None,
) -> AuthError:
    """The core's error for a token endpoint's non-200 answer; ``dpop``: the signer of the
    request's proof, whose clock a refused proof's answer is compared with."""
    status = response.status_code
    error, description = oauth_error(data)
    if status == 429 or error == "slow_down":
        wait = retry_after(response.headers.get("Retry-After"))
        return TooManyAttempts(
            messages.throttled(wait, signing_in=grant == "password"),
            error=error or "too_many_requests",
            description=description,
            status=status,
            retry_after=wait,
        )
    if status >= 500:
        return server_failure(status)
    if error is None:
        return ServerError(messages.unexpected_answer(status), status=status)
    if error in DPOP_ERRORS:
        return DPoPRefused(
            messages.dpop_refused(
                error, description, dpop.clock_offset(response) if dpop is not None else None
            ),
            error=error,
            description=description,
            status=status,
        )
    if error == "invalid_grant" and grant == "password":
        return InvalidCredentials(
            messages.WRONG_PASSWORD, error=error, description=description, status=status
        )
    if error == "invalid_grant" and grant == "refresh_token":
        return SessionEnded(
            messages.session_ended(description),
            error=error,
            description=description,
            status=status,
        )
    if error in ("invalid_client", "unauthorized_client", "unsupported_grant_type"):
        return ClientRejected(
            messages.client_rejected(client_id, error, description),
            error=error,
            description=description,
            status=status,
        )
    return OAuthError(
        messages.oauth_refused(error, description),
        error=error,
        description=description,
        status=status,
    )


def revoke(
    transport: Transport,
    metadata: ServerMetadata,
    token: str,
    *,
    client_id: str,
    token_type_hint: str = "refresh_token",  # noqa: S107  # a hint's name, not a secret
    dpop: DPoPSigner | None = None,
) -> Revocation:
    """Revoke ``token`` (RFC 7009), with a proof of ``dpop``'s key when the session has one (a
    server may end a bound session only for its key). Never raises: the outcome says what
    happened."""
    endpoint = metadata.revocation_endpoint
    if endpoint is None:
        logger.info("The server offers no revocation endpoint; forgetting locally only")
        return Revocation.NOT_OFFERED
    try:
        response = _post(
            transport,
            dpop,
            endpoint,
            what="The server's revocation_endpoint",
            data={"token": token, "token_type_hint": token_type_hint, "client_id": client_id},
        )
    except AuthError as exc:
        logger.warning("Could not revoke the session at the server: %s", exc)
        return Revocation.NOT_CONFIRMED
    with response:
        if response.status_code == 200:
            return Revocation.REVOKED
        logger.warning("The server did not confirm revocation (HTTP %d)", response.status_code)
        return Revocation.NOT_CONFIRMED


# -- error parsing --------------------------------------------------------------------------------


# RFC 9110 §11.6.1: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]. One header may
# hold several challenges ("DPoP error=..., algs=..., Bearer"): a bare token after a comma starts
# the next one.
_SEPARATORS = re.compile(r"[ \t,]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_EQUALS = re.compile(r"[ \t]*=[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ESCAPE = re.compile(r"\\(.)")


def challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """The challenges of a ``WWW-Authenticate`` header: (scheme in lower case, its parameters
    by lower-case name; a token68 is dropped). Text that does not parse ends the list."""
    found: list[tuple[str, dict[str, str]]] = []
    position, just_named = 0, False
    while True:
        separator = _SEPARATORS.match(header, position)
        assert separator is not None  # it matches the empty string
        position = separator.end()
        word = _TOKEN.match(header, position)
        if word is None:
            return found
        equals = _EQUALS.match(header, word.end())
        value = None
        if found and equals is not None:
            value = _QUOTED.match(header, equals.end()) or _TOKEN.match(header, equals.end())
        if value is not None:
            text = value.group(1) if value.re is _QUOTED else value.group(0)
            found[-1][1][word.group(0).lower()] = _ESCAPE.sub(r"\1", text)
            position, just_named = value.end(), False
        elif just_named and "," not in separator.group(0):
            token68 = _TOKEN68.match(header, position)
            assert token68 is not None  # a token's first character starts a token68 too
            position, just_named = token68.end(), False
        else:
            found.append((word.group(0).lower(), {}))
            position, just_named = word.end(), True


def bearer_error(response: requests.Response) -> tuple[str | None, str | None]:
    """``error`` and ``error_description`` of a ``WWW-Authenticate: Bearer`` or ``DPoP``
    challenge (RFC 6750 §3, RFC 9449 §7.1): the first of those that names an error."""
    for scheme, params in challenges(response.headers.get("WWW-Authenticate", "")):
        if scheme in ("bearer", "dpop") and params.get("error"):
            return params["error"], params.get("error_description") or None
    return None, None


def oauth_error(data: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """RFC 6749 §5.2 ``error``/``error_description``, whatever the status code was."""
    if data is None:
        return None, None
    error = data.get("error")
    description = data.get("error_description")
    return (
        error if isinstance(error, str) and error else None,
        description if isinstance(description, str) and description else None,
    )


def retry_after(value: str | None) -> int | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0, round((when - datetime.now(timezone.utc)).total_seconds()))


def userinfo_claims(response: requests.Response, *, subject: str | None) -> dict[str, Any]:
    """The claims of a userinfo answer (closed here). ``subject``: the validated ID token's
    ``sub``, which the profile's must equal (OIDC Core §5.3.2: else it is someone else's)."""
    with response:
        if response.status_code != 200:
            raise ServerError(
                messages.profile_failed(response.status_code), status=response.status_code
            )
        data = json_object(response)
    if data is None:
        raise ServerError(messages.PROFILE_NOT_JSON, status=200)
    if subject is not None and data.get("sub") != subject:
        raise SubjectMismatch(messages.USERINFO_OF_ANOTHER, reason="userinfo_sub")
    return data


def account_name(claims: Mapping[str, Any]) -> str:
    """The account's name from ID-token or userinfo claims: ``preferred_username``, else
    ``sub`` (the one identifier every OIDC provider must give)."""
    for key in ("preferred_username", "sub"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    raise ServerError(messages.PROFILE_NO_ACCOUNT)


def server_failure(status: int) -> ServerError:
    return ServerError(messages.server_failed(status), status=status)
