"""The pages of browser and device sign-in: small ``string.Template`` files in this folder,
every value HTML-escaped unless this module itself built it as ``Markup``.

The style sheet is inline and allowed by its hash, so the Content-Security-Policy can forbid
everything else (no scripts at all, no framing, no other origins).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from string import Template


class Markup(str):
    """Text that is already HTML. Only this module makes it, from escaped pieces."""


def _escape(value: object) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=True)


def _read(name: str) -> str:
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


@cache
def _template(name: str) -> Template:
    return Template(_read(name))


STYLE = Markup(_read("base.css"))
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")
# No form-action: it would also govern the redirect to the client's loopback address after
# the form, and CSP source expressions cannot name http://[::1]:PORT.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; frame-ancestors 'none'; base-uri 'none'"
)


def render(name: str, **values: object) -> str:
    """The template ``name`` with ``values`` substituted, each escaped (``Markup`` as is)."""
    escaped = {key: _escape(value) for key, value in values.items()}
    return _template(name).substitute(escaped, style=STYLE)


def hidden_fields(fields: Mapping[str, str]) -> Markup:
    return Markup(
        "\n".join(
            f'<input type="hidden" name="{_escape(name)}" value="{_escape(value)}">'
            for name, value in fields.items()
        )
    )


def _sign_in_fields(username: str) -> Markup:
    """Username, password and the Allow / Deny buttons, the same on both pages."""
    return Markup(render("sign_in_fields.html", username=username))


def _message(text: str | None) -> Markup:
    if not text:
        return Markup("")
    return Markup(f'<p class="message" role="alert">{_escape(text)}</p>')


def sign_in_page(
    *,
    client_id: str,
    scope: str,
    hidden: Mapping[str, str],
    redirect_origin: str,
    username: str = "",
    message: str | None = None,
) -> str:
    """The authorization endpoint's page: sign in, then Allow or Deny, in one form."""
    return render(
        "sign_in.html",
        client_id=client_id,
        scope=", ".join(scope.split()),
        hidden=hidden_fields(hidden),
        redirect_origin=redirect_origin,
        fields=_sign_in_fields(username),
        message=_message(message),
    )


def device_page(
    *,
    hidden: Mapping[str, str],
    user_code: str = "",
    username: str = "",
    message: str | None = None,
    asking: tuple[str, str] | None = None,
) -> str:
    """The device verification page (RFC 8628 §3.3): the code, sign in, Allow or Deny.
    ``asking``, the client and scope of the code once it is known, is shown above the form
    (§5.4: a person lured into typing someone else's code sees whom they would let in)."""
    return render(
        "device.html",
        hidden=hidden_fields(hidden),
        user_code=user_code,
        fields=_sign_in_fields(username),
        message=_message(message),
        asking=_asking(asking),
    )


def _asking(asking: tuple[str, str] | None) -> Markup:
    if asking is None:
        return Markup("")
    client_id, scope = asking
    return Markup(
        f"<p><strong>{_escape(client_id)}</strong> asks to sign you in on a device.</p>\n"
        f'<p class="muted">It will have access to: {_escape(", ".join(scope.split()))}</p>'
    )


def message_page(title: str, text: str) -> str:
    return render("message.html", title=title, text=text)
