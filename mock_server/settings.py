"""Server settings: one frozen object, built by the CLI or by tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_CLIENT_ID = "jwt-desktop"
MEMORY_DB = ":memory:"
# RFC 9449 at the token endpoint and the resources: "off" ignores DPoP headers, "allowed" binds
# the tokens of clients that send proofs (Bearer clients keep working), "required" refuses
# token requests without a proof and Bearer tokens.
DPOP_MODES = ("off", "allowed", "required")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Ten years. Far longer would overflow the dates the server shows (/api/sessions' expiry, a
# datetime, ends in year 9999) and means nothing for a sign-in anyway.
MAX_DURATION = 10 * 365 * 86400


def parse_duration(text: str) -> float:
    """``45s``, ``15m``, ``2h``, ``3d`` or plain seconds -> seconds (> 0)."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 45s, 15m, 2h, 3d)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    if seconds > MAX_DURATION:
        raise ValueError(
            f"a duration must be at most 10 years ({MAX_DURATION // 86400}d): {text!r}"
        )
    return seconds


def issuer_problem(issuer: str) -> str | None:
    """Why ``issuer`` cannot be this server's issuer, or None when it can."""
    try:
        parts = urlsplit(issuer)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return f"not an http(s) URL without query: {issuer!r}"
    if parts.path not in ("", "/"):
        # Discovery derives every endpoint from the issuer, but the routes live at the root:
        # an issuer with a path would advertise endpoints that do not exist.
        return f"the issuer cannot have a path (the endpoints are at the root): {issuer!r}"
    return None


def default_db_path() -> Path:
    return platformdirs.user_data_path("jwt-mock-server", appauthor=False) / "mock-server.sqlite3"


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost. The default is OWASP's N=2^15, r=8, p=3 (32 MiB, about as slow as 2^17/p=1)."""

    log2_n: int = 15
    r: int = 8
    p: int = 3


@dataclass(frozen=True)
class Settings:
    issuer: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    db_path: str = MEMORY_DB
    users_file: Path | None = None
    access_ttl: float = 15 * 60
    refresh_ttl: float = 3 * 86400
    clients: tuple[str, ...] = (DEFAULT_CLIENT_ID,)
    # Hidden, for tests only: exposes POST /_testing/advance to move the server's clock.
    testing_clock: bool = False
    password_cost: ScryptParams = field(default_factory=ScryptParams)
    # Failed sign-ins allowed per window before 429, per username and per client address.
    max_failures_per_user: int = 5
    max_failures_per_address: int = 20
    failure_window: float = 5 * 60
    max_body_bytes: int = 16 * 1024
    # Browser and device sign-in: an authorization code lives a minute (RFC 6749 §4.1.2 asks
    # for at most ten); a device code ten minutes, polled every `device_interval` seconds.
    code_ttl: float = 60
    device_code_ttl: float = 10 * 60
    device_interval: float = 5
    # Wrong user codes allowed per client address and window on the device page (RFC 8628 §5.1).
    max_user_code_failures: int = 5
    dpop: str = "allowed"  # one of DPOP_MODES
    # Demand server-provided nonces in DPoP proofs (RFC 9449 §8, §9).
    dpop_nonce: bool = False

    def __post_init__(self) -> None:
        problem = issuer_problem(self.issuer)
        if problem is not None:
            raise ValueError(problem)
        for name, seconds in (("access_ttl", self.access_ttl), ("refresh_ttl", self.refresh_ttl)):
            if not 0 < seconds <= MAX_DURATION:
                raise ValueError(f"{name} must be a duration of at most 10 years, above 0")
        if self.dpop not in DPOP_MODES:
            raise ValueError(f"dpop must be one of {', '.join(DPOP_MODES)}: {self.dpop!r}")

    @property
    def audience(self) -> str:
        # The access tokens are for this server's own resources (/userinfo, /api/...).
        return self.issuer
