"""Fetch the person's picture (the OpenID ``picture`` claim) for the avatar. Qt-free.

The picture lives on any web server, so it is fetched like a browser would fetch an image:
no token, no cookies (a fresh transport each time), a size limit, and the client's one
transport policy (:mod:`desktop.auth.transport`: https, or plain http only to loopback; no
redirect; a timeout). Any failure just leaves the initials.
"""

from __future__ import annotations

MAX_BYTES = 2 * 1024 * 1024
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml")
_CHUNK = 64 * 1024


class PictureError(Exception):
    """The picture could not be fetched; the avatar keeps the initials."""


def fetch_picture(url: str, *, timeout: float = 5.0, max_bytes: int = MAX_BYTES) -> bytes:
    """The image's bytes, or :class:`PictureError`."""
    import requests

    from desktop.auth.errors import AuthError
    from desktop.auth.transport import Transport

    try:
        with Transport(timeout=timeout) as transport:
            response = transport.request(
                "GET",
                url,
                what="The picture URL",
                headers={"Accept": ", ".join(_IMAGE_TYPES)},
                stream=True,
            )
            with response:
                kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if response.status_code != 200 or kind not in _IMAGE_TYPES:
                    raise PictureError(
                        f"The picture URL answered {response.status_code} {kind or 'no type'}."
                    )
                data = b""
                for chunk in response.iter_content(_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise PictureError("The picture is too large.")
    except AuthError as error:
        raise PictureError(str(error)) from None
    except requests.RequestException as error:  # a reset while reading the body
        raise PictureError(f"The picture could not be fetched ({type(error).__name__}).") from None
    return data
