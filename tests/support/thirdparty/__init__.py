"""Third-party OAuth/OIDC servers on loopback, as pytest fixtures (a plugin: pyproject's addopts
loads it with ``-p tests.support.thirdparty``).

``dot_server`` (session) / ``start_dot_server`` (factory): django-oauth-toolkit, see
:class:`DotServer`. ``node_oidc_server`` (session) / ``start_node_oidc_server`` (factory):
node-oidc-provider, see :class:`NodeOidcServer`. ``browser_robot``: ``$BROWSER`` plays the
person (tests/support/browser.py). A missing part (Django/DOT, node, npm) skips
the test with the reason, and fails it in CI (``JWT_DESKTOP_REQUIRE_ALL=1``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.browser import browser_robot
from tests.support.requirements import require_or_skip
from tests.support.thirdparty.process import ServerProcess

__all__ = [
    "DotServer",
    "NodeOidcServer",
    "browser_robot",
    "dot_server",
    "node_oidc_server",
    "start_dot_server",
    "start_node_oidc_server",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DEMO_USERS = {"alice": "wonderland", "bob": "builder"}
NODE_OIDC_VERSION = json.loads((HERE / "node_oidc" / "package.json").read_text())["dependencies"][
    "oidc-provider"
]


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass(frozen=True)
class DotServer:
    """django-oauth-toolkit 3.x, mounted under ``/o/``, OIDC on (a fresh RSA key per start),
    PKCE required, refresh-token rotation and reuse protection on (a spent refresh token
    presented again is refused and revokes the newest one of its family too), no grace period.

    DOT allows ONE grant type per application, so there are two public clients:
    ``client_id`` ``jwt-desktop`` (authorization code; redirect URIs ``http://127.0.0.1/callback``
    and ``http://[::1]/callback``, any port, RFC 8252 §7.3) and ``password_client_id``
    ``jwt-desktop-password`` (password grant). Both may use ``refresh_token``.

    ``issuer`` is ``{url}/o``. The OIDC document (``discovery_url``) has no revocation
    endpoint; the RFC 8414 document (``metadata_url``, ``/.well-known/oauth-authorization-server/o``
    at the root, the issuer's path appended) lists it. Users: alice/wonderland (groups staff,
    admin), bob/builder (staff); claims ``groups`` with scope ``groups``. The login page is
    Django's (``/accounts/login/``: ``username``, ``password``, ``csrfmiddlewaretoken``), the
    consent page DOT's (submit ``allow`` to approve, the unnamed Cancel to deny).
    """

    process: ServerProcess = field(repr=False)
    url: str
    access_ttl: int
    client_id: str = "jwt-desktop"
    password_client_id: str = "jwt-desktop-password"
    users: dict[str, str] = field(default_factory=lambda: dict(DEMO_USERS))

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/oauth-authorization-server/o"


def _dot_template() -> Path:
    """Where the migrated, seeded database is kept between runs: named by the versions and
    the project's own files, so a change to any of them builds a new one."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"{version('django')} {version('django-oauth-toolkit')}".encode())
    for name in ("serve.py", "settings.py"):
        digest.update((HERE / "dot" / name).read_bytes())
    folder = cache_dir() / "dot"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"template-{digest.hexdigest()[:16]}.sqlite3"


def start_dot(directory: Path, *, access_ttl: int = 300) -> DotServer:
    if importlib.util.find_spec("oauth2_provider") is None:
        require_or_skip("django-oauth-toolkit is not installed (pip install -e '.[test]')")
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / f"dot-{len(list(directory.glob('dot-*.sqlite3')))}.sqlite3"
    args = [sys.executable, "-m", "tests.support.thirdparty.dot.serve", "--db", str(db)]
    args += ["--template", str(_dot_template())]
    process = ServerProcess(
        "django-oauth-toolkit",
        [*args, "--access-ttl", str(access_ttl)],
        ready=re.compile(r"^dot-server listening on (http://\S+)$"),
        cwd=REPO_ROOT,
        env=_python_env(),
    )
    return DotServer(process=process, url=process.url, access_ttl=access_ttl)


@dataclass(frozen=True)
class NodeOidcServer:
    """node-oidc-provider (npm ``oidc-provider``, version ``NODE_OIDC_VERSION``), issuer ``url``.

    One public native client ``jwt-desktop`` (``token_endpoint_auth_method`` none; grants
    authorization_code, refresh_token, device_code; redirect URIs ``http://127.0.0.1/callback``
    and ``http://[::1]/callback``, any port). No password grant. Refresh tokens only with
    ``offline_access`` AND ``prompt=consent``; rotated on every use. DPoP on (nonces demanded
    when started with ``dpop_nonce=True``); revocation, device flow, userinfo, introspection
    on. The sign-in page (``username``, ``password``, buttons ``decision=allow|deny``) checks
    the demo users; the consent page has the same buttons. State is in memory.
    """

    process: ServerProcess = field(repr=False)
    url: str
    access_ttl: int
    dpop_nonce: bool
    client_id: str = "jwt-desktop"
    users: dict[str, str] = field(default_factory=lambda: dict(DEMO_USERS))

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"


def cache_dir() -> Path:
    """Outside the repository: ``$JWT_DESKTOP_TEST_CACHE`` or ``~/.cache/jwt-desktop-tests``."""
    base = os.environ.get("JWT_DESKTOP_TEST_CACHE") or Path.home() / ".cache" / "jwt-desktop-tests"
    return Path(base)


def ensure_oidc_provider() -> Path:
    """Install the pinned oidc-provider into the cache folder once; returns its entry module."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        require_or_skip("node-oidc-provider needs node and npm on PATH")
        raise AssertionError("unreachable")
    cache = cache_dir() / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    installed = cache / "node_modules" / "oidc-provider" / "package.json"
    with FileLock(str(cache / ".install.lock")):
        if not installed.exists() or json.loads(installed.read_text())["version"] != (
            NODE_OIDC_VERSION
        ):
            shutil.copyfile(HERE / "node_oidc" / "package.json", cache / "package.json")
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"],
                cwd=cache,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"npm install oidc-provider failed:\n{result.stderr}")
    return cache / "node_modules" / "oidc-provider" / "lib" / "index.js"


def start_node_oidc(*, access_ttl: int = 300, dpop_nonce: bool = False) -> NodeOidcServer:
    module = ensure_oidc_provider()
    env = dict(os.environ)
    env.update(
        OIDC_PROVIDER_MODULE=str(module),
        OIDC_ACCESS_TTL=str(access_ttl),
        OIDC_DPOP_NONCE="1" if dpop_nonce else "0",
    )
    process = ServerProcess(
        "node-oidc-provider",
        ["node", str(HERE / "node_oidc" / "server.js")],
        ready=re.compile(r"^node-oidc-provider listening on (http://\S+)$"),
        cwd=HERE / "node_oidc",
        env=env,
    )
    return NodeOidcServer(
        process=process, url=process.url, access_ttl=access_ttl, dpop_nonce=dpop_nonce
    )


@pytest.fixture(scope="session")
def dot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotServer]:
    """One django-oauth-toolkit server for the session (tests use their own tokens)."""
    server = start_dot(tmp_path_factory.mktemp("dot"))
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def start_dot_server(tmp_path: Path) -> Iterator[Callable[..., DotServer]]:
    """Factory: ``start_dot_server(access_ttl=300) -> DotServer``, stopped at teardown."""
    started: list[DotServer] = []

    def start(*, access_ttl: int = 300) -> DotServer:
        started.append(start_dot(tmp_path / "dot", access_ttl=access_ttl))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.process.stop()


@pytest.fixture(scope="session")
def node_oidc_server() -> Iterator[NodeOidcServer]:
    """One node-oidc-provider for the session (DPoP allowed, nonces not demanded)."""
    server = start_node_oidc()
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def start_node_oidc_server() -> Iterator[Callable[..., NodeOidcServer]]:
    """Factory: ``start_node_oidc_server(access_ttl=300, dpop_nonce=False)``."""
    started: list[NodeOidcServer] = []

    def start(*, access_ttl: int = 300, dpop_nonce: bool = False) -> NodeOidcServer:
        started.append(start_node_oidc(access_ttl=access_ttl, dpop_nonce=dpop_nonce))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.process.stop()
