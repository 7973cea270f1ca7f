"""A little robot that does what a person does with the sign-in pages: GET the page, fill in
the form (keeping its hidden fields; the client keeps the cookies), press a button, and read
where the server sends the browser. Works with a TestClient and with an httpx.Client."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

REDIRECT_URI = "http://127.0.0.1:53682/callback"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class PageForm:
    action: str
    method: str
    fields: dict[str, str]  # every input with a name: hidden ones and the text ones' values
    buttons: list[tuple[str, str]]  # (name, value) of the submit buttons


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[PageForm] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(PageForm(a.get("action", ""), a.get("method", "get"), {}, []))
        elif self.forms and tag == "input" and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif self.forms and tag == "button" and a.get("type", "submit") == "submit":
            self.forms[-1].buttons.append((a.get("name", ""), a.get("value", "")))


def page_form(html: str) -> PageForm:
    parser = _FormParser()
    parser.feed(html)
    assert len(parser.forms) == 1, "the page has exactly one form"
    return parser.forms[0]


def submit(client: Any, page_url: str, fields: dict[str, str], *, decision: str = "allow") -> Any:
    """GET ``page_url``, fill ``fields`` into its form, press the ``decision`` button."""
    page = client.get(page_url, follow_redirects=False)
    assert page.status_code == 200, page.text
    form = page_form(page.text)
    assert form.method.lower() == "post"
    assert ("decision", decision) in form.buttons
    data = {**form.fields, **fields, "decision": decision}
    target = urljoin(str(page.url), form.action)
    # As a browser does: a form post carries the page's origin (the server refuses others).
    parts = urlsplit(str(page.url))
    origin = {"Origin": f"{parts.scheme}://{parts.netloc}"}
    return client.post(target, data=data, headers=origin, follow_redirects=False)


def sign_in_at(
    client: Any,
    authorize_url: str,
    username: str = "alice",
    password: str = "wonderland",
    *,
    decision: str = "allow",
) -> Any:
    return submit(
        client, authorize_url, {"username": username, "password": password}, decision=decision
    )


def redirect_parameters(response: Any, redirect_uri: str = REDIRECT_URI) -> dict[str, str]:
    """The parameters of a 303 to the client's redirect URI (each exactly once)."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.partition("?")[0] == redirect_uri.partition("?")[0]
    parameters = parse_qs(urlsplit(location).query, strict_parsing=True)
    assert all(len(v) == 1 for v in parameters.values())
    return {k: v[0] for k, v in parameters.items()}


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def authorize_url(base: str, pkce: Pkce | None = None, **overrides: str | None) -> str:
    """An authorization request URL; ``None`` in ``overrides`` leaves a parameter out."""
    pkce = pkce or Pkce.new()
    parameters: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "jwt-desktop",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email groups",
        "state": "state-123",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    kept = {k: v for k, v in parameters.items() if v is not None}
    return f"{base}/authorize?{urlencode(kept)}"


def exchange(
    client: Any,
    code: str,
    verifier: str,
    *,
    redirect_uri: str = REDIRECT_URI,
    client_id: str = "jwt-desktop",
) -> Any:
    return client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )


# Device sign-in (RFC 8628): the client's two requests, and the person's page.


def start(client: Any, **data: str) -> dict[str, Any]:
    response = client.post("/device_authorization", data={"client_id": "jwt-desktop", **data})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


def poll(client: Any, device_code: str, client_id: str = "jwt-desktop") -> Any:
    return client.post(
        "/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
    )


def approve(
    client: Any,
    user_code: str,
    username: str = "alice",
    password: str = "wonderland",
    *,
    decision: str = "allow",
) -> Any:
    fields = {"user_code": user_code, "username": username, "password": password}
    return submit(client, "/device", fields, decision=decision)
