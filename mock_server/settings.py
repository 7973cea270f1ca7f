"""Server settings: one frozen object, built by the CLI or by tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_CLIENT_ID = "jwt-desktop"
MEMORY_DB = ":memory:"
# RFC 9449 at the token endpoint and the resources: "off" ignores DPoP headers, "allowed" binds
# the tokens of clients that send proofs (Bearer clients keep working), "required" refuses
# token requests without a proof and Bearer tokens.
DPOP_MODES = ("off", "allowed", "required")

# The names a loopback-bound server answers to besides its issuer's (Host header, no port).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

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


def host_name(host: str) -> str:
    """A Host header value or URL netloc without its port, lower-case: ``[::1]:80`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rpartition(":")[0] if ":" in host else host


def is_loopback_host(host: str) -> bool:
    name = host_name(host)
    return name in LOOPBACK_HOSTS or name.startswith("127.")


def default_db_path() -> Path:
    import platformdirs  # here: a server given --db (tests, scripts) never needs it

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
    # Host names served besides the issuer's (DNS rebinding: any other Host gets 421). The
    # loopback names are added whenever the issuer or one of these is a loopback name.
    allowed_hosts: tuple[str, ...] = ()
    # Origins of this server's own pages besides the issuer's (the CLI adds the address it is
    # bound to, when the issuer names another): any other Origin gets 403.
    allowed_origins: tuple[str, ...] = ()
    # Slowloris: a request must arrive whole within request_timeout of its first byte (or of
    # the connection); an idle keep-alive connection closes after keep_alive_timeout; SIGTERM
    # waits at most shutdown_timeout for requests in flight. Used by the CLI's uvicorn.
    request_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    shutdown_timeout: float = 5.0
    # Seconds after a rotation in which the token just spent may be presented once more (its
    # answer was lost); 0 is strict rotation. See SqliteStore.rotate.
    reuse_grace: float = 0.0
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
        for name, seconds in (
            ("request_timeout", self.request_timeout),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ):
            if not 0 < seconds <= 3600:
                raise ValueError(f"{name} must be above 0 and at most an hour")
        if not 0 <= self.reuse_grace <= MAX_DURATION:
            raise ValueError("reuse_grace must be a duration of at most 10 years, or 0")

    @property
    def served_hosts(self) -> frozenset[str]:
        """The Host names (without port, lower-case) this server answers."""
        names = {host_name(urlsplit(self.issuer).netloc), *map(host_name, self.allowed_hosts)}
        if any(is_loopback_host(name) for name in names):
            names.update(LOOPBACK_HOSTS)
        return frozenset(names)

    @property
    def own_origins(self) -> frozenset[str]:
        """The browser origins of this server's own pages: its issuer's, and the same scheme
        and port under each served host name (a page opened as localhost posts from there)."""
        parts = urlsplit(self.issuer)
        default_port = 443 if parts.scheme == "https" else 80
        port = "" if (parts.port or default_port) == default_port else f":{parts.port}"
        own = {f"{parts.scheme}://{name}{port}" for name in self.served_hosts}
        return frozenset({*own, *self.allowed_origins})

    @property
    def audience(self) -> str:
        # The access tokens are for this server's own resources (/userinfo, /api/...).
        return self.issuer
