"""How profile claims and session facts read on screen (Qt-free, tested alone)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from desktop.auth.session import SessionStatus

# Shown in the profile header; everything else goes to the "Details" form.
HEADER_CLAIMS = frozenset({"name", "preferred_username", "email", "groups", "picture"})

_LABELS = {
    "sub": "Subject",
    "given_name": "Given name",
    "family_name": "Family name",
    "middle_name": "Middle name",
    "nickname": "Nickname",
    "email_verified": "Email verified",
    "phone_number": "Phone",
    "phone_number_verified": "Phone verified",
    "zoneinfo": "Time zone",
    "locale": "Locale",
    "updated_at": "Updated",
    "website": "Website",
    "profile": "Profile page",
    "birthdate": "Birth date",
    "gender": "Gender",
    "address": "Address",
    "iss": "Issuer",
    "aud": "Audience",
    "iat": "Issued",
    "exp": "Expires",
    "auth_time": "Signed in",
    "scope": "Scopes",
    "client_id": "Client",
}
_TIMESTAMPS = frozenset({"updated_at", "iat", "exp", "auth_time", "nbf"})


def display_name(profile: dict[str, Any]) -> str:
    """The person's name, else their username, else their subject."""
    for key in ("name", "preferred_username", "sub"):
        value = profile.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "Unknown user"


def initials(name: str) -> str:
    """'Alice Liddell' -> 'AL', 'bob' -> 'B'."""
    words = [word for word in name.replace("_", " ").replace(".", " ").split() if word]
    if not words:
        return "?"
    if len(words) == 1:
        return words[0][0].upper()
    return (words[0][0] + words[-1][0]).upper()


def groups(profile: dict[str, Any]) -> list[str]:
    value = profile.get("groups")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def claim_label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " ").capitalize())


def claim_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if key in _TIMESTAMPS and isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, tz=timezone.utc).astimezone()
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return ", ".join(claim_value(key, item) for item in value) or "—"
    if isinstance(value, dict):
        return "\n".join(f"{claim_label(k)}: {claim_value(k, v)}" for k, v in value.items())
    if value is None or value == "":
        return "—"
    return str(value)


def other_claims(profile: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for every claim not shown in the header, in a stable order."""
    rows = [(k, v) for k, v in profile.items() if k not in HEADER_CLAIMS]
    rows.sort(key=lambda row: (row[0] != "sub", row[0]))
    return [(claim_label(k), claim_value(k, v)) for k, v in rows]


def countdown(seconds: float | None) -> str:
    """Text of the access-token bar."""
    if seconds is None:
        return "No access token"
    if seconds <= 0:
        return "Expired: renewed on the next request"
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d} left"


def refresh_summary(status: SessionStatus) -> str:
    if status.last_refreshed is None or status.refresh_count == 0:
        return "Not refreshed yet"
    when = status.last_refreshed.astimezone().strftime("%H:%M:%S")
    times = "1 refresh" if status.refresh_count == 1 else f"{status.refresh_count} refreshes"
    return f"At {when} ({times} so far)"


def storage_summary(status: SessionStatus) -> tuple[str, str]:
    """(where the refresh token is kept, why) for the session panel."""
    storage = status.storage
    if status.unsaved is not None:  # a keyring write failed: retried until it works
        return ("OS keyring: not saved yet", status.unsaved)
    if storage.persistent and status.remembered:
        return (
            f"OS keyring: {storage.backend}",
            "You stay signed in after a restart until you sign out.",
        )
    if not storage.persistent and storage.reason:
        return ("This session only", storage.reason)
    if not storage.persistent:
        return ("This session only", "No OS keyring is available: quitting signs you out.")
    return ("This session only", "You chose not to stay signed in: quitting signs you out.")
