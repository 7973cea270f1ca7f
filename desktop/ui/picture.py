"""Fetch the person's picture (the OpenID ``picture`` claim) for the avatar. Qt-free.

The picture lives on any web server, so it is fetched like a browser would fetch an image:
no token, no cookies, a timeout, a size limit, and the same transport rule as the rest of the
client (https, or plain http only to loopback). Any failure just leaves the initials.
"""

from __future__ import annotations

import urllib.error
import urllib.request

MAX_BYTES = 2 * 1024 * 1024
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml")


class PictureError(Exception):
    """The picture could not be fetched; the avatar keeps the initials."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could lead to plain http off loopback: refuse rather than re-check.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch_picture(url: str, *, timeout: float = 5.0, max_bytes: int = MAX_BYTES) -> bytes:
    """The image's bytes, or :class:`PictureError`."""
    from desktop.auth.discovery import check_transport
    from desktop.auth.errors import ConfigurationError

    try:
        check_transport(url, what="The picture URL")
    except ConfigurationError as error:
        raise PictureError(str(error)) from None
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": ", ".join(_IMAGE_TYPES)})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if response.status != 200 or kind not in _IMAGE_TYPES:
                raise PictureError(f"The picture URL answered {response.status} {kind}.")
            data: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise PictureError(f"The picture URL answered {error.code}.") from None
    except OSError as error:  # URLError, timeouts, resets
        raise PictureError(f"The picture could not be fetched ({type(error).__name__}).") from None
    if len(data) > max_bytes:
        raise PictureError("The picture is too large.")
    return data
