"""Password hashing (scrypt, salted, in a self-describing string) and the user directory."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import ScryptParams

_PREFIX = "$scrypt$"
_HASH_RE = re.compile(
    r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$"
)
_KEY_LEN = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, params: ScryptParams) -> bytes:
    n = 2**params.log2_n
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=params.r,
        p=params.p,
        maxmem=256 * n * params.r + 1024 * 1024,
        dklen=_KEY_LEN,
    )


def _format(params: ScryptParams, salt: bytes, key: bytes) -> str:
    return f"{_PREFIX}ln={params.log2_n},r={params.r},p={params.p}${_b64(salt)}${_b64(key)}"


def hash_password(password: str, params: ScryptParams) -> str:
    salt = os.urandom(16)
    return _format(params, salt, _scrypt(password, salt, params))


def parse_hash(encoded: str) -> tuple[ScryptParams, bytes, bytes]:
    match = _HASH_RE.match(encoded)
    if match is None:
        raise ValueError("not a password hash made by jwt-mock-server (expected $scrypt$...)")
    params = ScryptParams(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if not (1 <= params.log2_n <= 22 and 1 <= params.r <= 32 and 1 <= params.p <= 16):
        raise ValueError("scrypt parameters out of range")
    return params, _unb64(match.group(4)), _unb64(match.group(5))


def verify_password(password: str, encoded: str) -> bool:
    params, salt, expected = parse_hash(encoded)
    return hmac.compare_digest(_scrypt(password, salt, params), expected)


def dummy_hash(params: ScryptParams) -> str:
    """A hash that matches no password and costs as much to check as a real one.

    Checking an unknown user's password against it makes "no such user" take as long as
    "wrong password", so timing does not tell which usernames exist.
    """
    return _format(params, os.urandom(16), os.urandom(_KEY_LEN))


def _cost(params: ScryptParams) -> int:
    # scrypt's work grows with N * r * p.
    return (1 << params.log2_n) * params.r * params.p


def dummy_hash_for(users: Iterable[User], default: ScryptParams) -> str:
    """The dummy hash for this directory: as costly as its costliest real hash (the demo
    users' cheap one, or a users file's), ``default`` for an empty directory."""
    costs = [parse_hash(user.password_hash)[0] for user in users]
    return dummy_hash(max(costs, key=_cost, default=default))


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    sub: str
    name: str
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    email_verified: bool = False
    groups: tuple[str, ...] = ()
    locale: str = "en-GB"
    zoneinfo: str = "Europe/London"
    updated_at: int = 0
    # Extra claims from the users file ("claims": {...}), standard or custom; see SCOPE_CLAIMS.
    claims: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __repr__(self) -> str:
        # The hash (and claims, which may be personal) stay out of reprs and logs.
        return f"User(username={self.username!r}, groups={self.groups!r})"

    def profile(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "preferred_username": self.username,
            "name": self.name,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "email": self.email,
            "email_verified": self.email_verified,
            "groups": list(self.groups),
            "locale": self.locale,
            "zoneinfo": self.zoneinfo,
            "updated_at": self.updated_at,
            **self.claims,
        }

    def released(self, scopes: Iterable[str]) -> dict[str, Any]:
        """The claims of this person that ``scopes`` release (OIDC Core §5.4), with ``sub``.

        A claim of a scope this server does not offer (address, phone) or a custom claim comes
        with ``profile``: a person's extra details are part of their profile.
        """
        granted = set(scopes)
        return {
            name: value
            for name, value in self.profile().items()
            if name == "sub" or claim_scope(name) in granted
        }


# OIDC Core §5.4, for the scopes this server offers (and groups, its own).
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": (
        "preferred_username",
        "name",
        "given_name",
        "family_name",
        "middle_name",
        "nickname",
        "profile",
        "picture",
        "website",
        "gender",
        "birthdate",
        "locale",
        "zoneinfo",
        "updated_at",
    ),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
}
_CLAIM_SCOPE = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
# Claims a users file cannot set: the token's own (RFC 7519, RFC 9068, OIDC Core §2) and those
# the server derives from the entry itself.
RESERVED_CLAIMS = frozenset(
    {
        *("sub", "iss", "aud", "exp", "nbf", "iat", "jti", "auth_time", "nonce", "acr", "amr"),
        *("azp", "at_hash", "c_hash", "sid", "scope", "client_id", "cnf", "typ", "groups"),
        "preferred_username",
    }
)


def claim_scope(claim: str) -> str:
    """The scope that releases ``claim``."""
    return _CLAIM_SCOPE.get(claim, "profile")


def subject_for(username: str) -> str:
    # Stable across restarts and databases, and not the username itself (OIDC `sub` is an id).
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"jwt-mock-server:user:{username}"))


_USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")

# The demo users' passwords are public (README, DESIGN), so a costly hash would protect
# nothing and only slow every test suite's sign-ins: theirs is scrypt at N=2, r=1, p=1, a salted
# hash that costs microseconds. The unknown-user dummy follows it (dummy_hash_for), so timing
# parity holds: with the demo users every check is cheap; with a users file every check costs
# what the file's hashes cost.
DEMO_COST = ScryptParams(log2_n=1, r=1, p=1)
DEMO_PASSWORDS = {"alice": "wonderland", "bob": "builder"}
_DEMO_UPDATED_AT = 1767225600  # 2026-01-01T00:00:00Z


def demo_users() -> dict[str, User]:
    def pw_hash(username: str) -> str:
        return hash_password(DEMO_PASSWORDS[username], DEMO_COST)

    alice = User(
        username="alice",
        password_hash=pw_hash("alice"),
        sub=subject_for("alice"),
        name="Alice Liddell",
        given_name="Alice",
        family_name="Liddell",
        email="alice@example.org",
        email_verified=True,
        groups=("staff", "admin"),
        updated_at=_DEMO_UPDATED_AT,
    )
    bob = User(
        username="bob",
        password_hash=pw_hash("bob"),
        sub=subject_for("bob"),
        name="Bob Builder",
        given_name="Bob",
        family_name="Builder",
        email="bob@example.org",
        email_verified=True,
        groups=("staff",),
        updated_at=_DEMO_UPDATED_AT,
    )
    return {u.username: u for u in (alice, bob)}


def _user_from_json(entry: Mapping[str, Any]) -> User:
    username = entry.get("username")
    if not isinstance(username, str) or not _USERNAME_RE.match(username):
        raise ValueError(f"bad or missing username: {username!r}")
    password_hash = entry.get("password_hash")
    if not isinstance(password_hash, str):
        raise ValueError(f"user {username!r}: missing password_hash")
    parse_hash(password_hash)
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError(f"user {username!r}: groups must be a list of strings")
    text_fields = ("name", "given_name", "family_name", "email", "locale", "zoneinfo", "sub")
    for key in text_fields:
        if key in entry and not isinstance(entry[key], str):
            raise ValueError(f"user {username!r}: {key} must be a string")
    claims = entry.get("claims", {})
    if not isinstance(claims, dict) or not all(isinstance(k, str) and k for k in claims):
        raise ValueError(f"user {username!r}: claims must be an object of named claims")
    reserved = sorted(RESERVED_CLAIMS.intersection(claims))
    if reserved:
        raise ValueError(f"user {username!r}: claims cannot set {', '.join(reserved)}")
    return User(
        username=username,
        password_hash=password_hash,
        sub=entry.get("sub") or subject_for(username),
        name=entry.get("name", username),
        given_name=entry.get("given_name", ""),
        family_name=entry.get("family_name", ""),
        email=entry.get("email", ""),
        email_verified=bool(entry.get("email_verified", False)),
        groups=tuple(groups),
        locale=entry.get("locale", "en-GB"),
        zoneinfo=entry.get("zoneinfo", "Europe/London"),
        updated_at=int(entry.get("updated_at", 0)),
        claims=dict(claims),
    )


def load_users(path: Path) -> dict[str, User]:
    """Read a users file: ``{"users": [{"username": ..., "password_hash": ..., ...}]}``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("users") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected an object with a list under 'users'")
    users: dict[str, User] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: each user must be an object")
        user = _user_from_json(entry)
        if user.username in users:
            raise ValueError(f"{path}: user {user.username!r} appears twice")
        users[user.username] = user
    return users


def user_entry(
    username: str,
    password_hash: str,
    *,
    name: str | None,
    email: str | None,
    groups: Iterable[str],
    updated_at: int,
) -> dict[str, Any]:
    if not _USERNAME_RE.match(username):
        raise ValueError("a username is 1-64 of A-Z a-z 0-9 . _ @ -")
    entry: dict[str, Any] = {
        "username": username,
        "password_hash": password_hash,
        "name": name or username,
        "groups": sorted(set(groups)),
        "updated_at": updated_at,
    }
    if email:
        entry["email"] = email
        entry["email_verified"] = False
    return entry


def upsert_user_file(path: Path, entry: Mapping[str, Any]) -> None:
    """Add or replace one entry in a users file, creating the file if needed (mode 0600)."""
    data: dict[str, Any] = {"users": []}
    if path.exists():
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not isinstance(loaded.get("users"), list):
            raise ValueError(f"{path}: expected an object with a list under 'users'")
        data = loaded
    users = [u for u in data["users"] if u.get("username") != entry["username"]]
    users.append(dict(entry))
    data["users"] = users
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
