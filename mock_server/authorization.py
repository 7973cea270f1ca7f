"""The rules of browser and device sign-in requests, as plain functions: which redirect URIs
get codes (RFC 8252 §7.3), PKCE (RFC 7636), user codes (RFC 8628 §6.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

# RFC 8628 §6.1: no vowels (no words), no look-alike digits; 20^8 codes, about 34 bits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# The parameters of an authorization request that the sign-in form carries back.
AUTHORIZATION_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
    "response_mode",
)
MAX_ECHOED_LENGTH = 512
_MAX_REDIRECT_URI_LENGTH = 2048
# RFC 8252 §7.3: loopback IP literals, any port. Not "localhost" (§8.3: it may resolve to
# another interface, or be redefined; the client listens on 127.0.0.1 and names that).
_LOOPBACK_NETLOC = re.compile(r"^(?:127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?$")
S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CODE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1


def with_query(uri: str, parameters: Mapping[str, str | None]) -> str:
    """``uri`` with ``parameters`` added to its query, keeping the query it has (§3.1.2)."""
    parts = urlsplit(uri)
    added = urlencode({k: v for k, v in parameters.items() if v is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def loopback_redirect_problem(uri: str | None) -> str | None:
    """Why ``uri`` is not a redirect URI this server sends codes to, or None when it is."""
    if not uri:
        return "The redirect_uri parameter is required"
    if len(uri) > _MAX_REDIRECT_URI_LENGTH or not all(33 <= ord(c) < 127 for c in uri):
        return "The redirect_uri is too long or has characters a URI cannot have"
    try:
        parts = urlsplit(uri)
        match = _LOOPBACK_NETLOC.match(parts.netloc) if parts.scheme == "http" else None
    except ValueError:
        match = None
    if match is None or (match.group(1) is not None and not 0 < int(match.group(1)) < 65536):
        return (
            "The redirect_uri must be a loopback address with any port, such as "
            "http://127.0.0.1:PORT/callback or http://[::1]:PORT/callback (RFC 8252 §7.3)"
        )
    if "#" in uri:
        return "The redirect_uri cannot have a fragment"
    return None


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: a well-formed verifier whose S256 is the challenge."""
    return bool(_CODE_VERIFIER.match(verifier)) and hmac.compare_digest(s256(verifier), challenge)


def normalize_user_code(text: str) -> str | None:
    """A user code as typed (any case, dashes, spaces) in its stored form, or None (§6.1)."""
    code = "".join(c for c in text.upper() if c not in "- \t")
    if len(code) != USER_CODE_LENGTH or not all(c in USER_CODE_ALPHABET for c in code):
        return None
    return code


def format_user_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"
