"""The server's sessions resource (``/api/sessions``): list the active sign-ins, revoke one.

The server decides who may see them (members of its ``admin`` group, with the
``sessions:admin`` scope): a refusal comes back as :class:`AccessDenied` carrying the server's
own sentence, and the client never guesses from the groups it was told. Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from desktop.auth import messages
from desktop.auth.errors import AccessDenied, ServerError
from desktop.auth.transport import json_object

SESSIONS_PATH = "/api/sessions"


class Requester(Protocol):
    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class SignInSession:
    """One active sign-in (a refresh-token family) as the server lists it."""

    id: str
    username: str
    client_id: str
    scope: str
    started_at: datetime | None
    last_refreshed_at: datetime | None
    expires_at: datetime | None
    current: bool  # the session of the token that asked


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _session(entry: Any) -> SignInSession | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return None
    return SignInSession(
        id=entry["id"],
        username=str(entry.get("username") or "?"),
        client_id=str(entry.get("client_id") or "?"),
        scope=str(entry.get("scope") or ""),
        started_at=_when(entry.get("started_at")),
        last_refreshed_at=_when(entry.get("last_refreshed_at")),
        expires_at=_when(entry.get("expires_at")),
        current=entry.get("current") is True,
    )


def list_sessions(client: Requester) -> list[SignInSession]:
    """The active sign-ins; AccessDenied (with the server's sentence) when not allowed."""
    try:
        response = client.request("GET", SESSIONS_PATH, headers={"Accept": "application/json"})
    except AccessDenied as exc:
        raise AccessDenied(
            messages.sessions_refused(exc.description),
            error=exc.error,
            description=exc.description,
            status=exc.status,
        ) from None
    with response:
        if response.status_code != 200:
            raise ServerError(
                messages.unexpected_answer(response.status_code), status=response.status_code
            )
        document = json_object(response)
    entries = document.get("sessions") if document is not None else None
    if not isinstance(entries, list):
        raise ServerError(messages.SESSIONS_NOT_JSON)
    return [s for s in (_session(e) for e in entries) if s is not None]


def revoke_session(client: Requester, session_id: str) -> bool:
    """End one sign-in at the server: True, or False when it had already ended."""
    url = f"{SESSIONS_PATH}/{quote(session_id, safe='')}"
    response = client.request("DELETE", url)
    with response:
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 204):
            raise ServerError(
                messages.unexpected_answer(response.status_code), status=response.status_code
            )
    return True
