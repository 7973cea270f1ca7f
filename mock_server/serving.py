"""Serving the CLI's app with uvicorn, on a socket already bound: in this process, or in
``--workers`` processes that share the socket.

A module of its own, never ``__main__``: worker processes import what they are named here by
path (``worker_app``, the access-log filter), and find the same module the parent used.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from .asgi import create_asgi_app
from .protocol import MAX_HEAD_BYTES, DeadlineConfig
from .settings import ScryptParams, Settings

LISTENING = "jwt-mock-server listening on {url}"


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class StripQueryString(logging.Filter):
    """Access-log lines without query strings: a token must never reach a log, even when a
    client wrongly puts one in a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            address, method, path, version, status = record.args
            record.args = (address, method, str(path).split("?", 1)[0], version, status)
        return True


def _logging_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"strip_query": {"()": f"{__name__}.StripQueryString"}}
    config["loggers"]["uvicorn.access"]["filters"] = ["strip_query"]
    return config


def uvicorn_config(app: Any, settings: Settings, log_level: str, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for serving ``app`` (an app, or the import path of a factory,
    with ``options`` such as ``workers``) with ``settings``' timeouts."""
    return DeadlineConfig(
        app,
        request_timeout=settings.request_timeout,
        log_config=_logging_config(),
        log_level=log_level,
        # Only where the level shows them: uvicorn builds each access line's arguments (the
        # client's address, the path) before the logger drops it (profiled: 2% of a /userinfo
        # request's time at --log-level warning).
        access_log=log_level in ("info", "debug"),
        server_header=False,
        # With --testing-clock the app dates its answers by its own clock (asgi.py).
        date_header=not settings.testing_clock,
        # By name, not the class: worker processes unpickle the config and import the
        # protocol themselves (and find the deadline in the config).
        http="mock_server.protocol:HardenedH11Protocol",
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=settings.keep_alive_timeout,
        # Without a bound, SIGTERM waits for every request in flight, even one whose client
        # never finishes sending it.
        timeout_graceful_shutdown=settings.shutdown_timeout,
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any local client could then
        # pick its own address and dodge the per-address sign-in limit. No proxy sits in front
        # of this server, so the socket's peer is the client.
        proxy_headers=False,
        forwarded_allow_ips=[],
        **options,
    )


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            # Only now does the socket accept connections: scripts wait for this line.
            say(LISTENING.format(url=self._url))


def serve(app: Any, settings: Settings, sock: socket.socket, url: str, log_level: str) -> None:
    """Serve ``app`` on ``sock`` (bound) in this process until a signal stops it."""
    _Server(uvicorn_config(app, settings, log_level), url).run(sockets=[sock])


# --workers: uvicorn's worker processes share the bound socket; each builds its own app from
# the settings passed in the environment. They share the state through the SQLite file, whose
# rotation is one conditional write inside BEGIN IMMEDIATE, atomic across processes.
_SETTINGS_ENV = "JWT_MOCK_SERVER_WORKER_SETTINGS"


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory; see serve_workers)."""
    data = json.loads(os.environ[_SETTINGS_ENV])
    for name in ("clients", "allowed_hosts", "allowed_origins"):
        data[name] = tuple(data[name])
    data["password_cost"] = ScryptParams(**data["password_cost"])
    if data["users_file"] is not None:
        data["users_file"] = Path(data["users_file"])
    return create_asgi_app(Settings(**data))


# Linux spreads the connections to one port over the sockets listening on it with SO_REUSEPORT
# (by a hash of each connection's addresses); elsewhere it does not, or the option is missing.
SPREADS_CONNECTIONS = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int, *, workers: int = 1) -> socket.socket:
    """The server's socket, bound (``OSError`` if it cannot be), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Shareable with the workers' own sockets (see _Workers).
    return _bound(family, (host, port), reuse_port=workers > 1 and SPREADS_CONNECTIONS)


def _bound(family: int, address: Any, *, reuse_port: bool) -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every keep-alive answer waits ~40 ms (Nagle against delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class _Workers(Multiprocess):
    """uvicorn's workers, each listening on a socket of its own where the system spreads the
    connections over them. On one shared socket, every worker's event loop wakes for a new
    connection and the first takes all that are waiting: measured under wrk's 16 keep-alive
    connections, one worker held all of them in 2 runs of 5, and served at one core's rate."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], url: str) -> None:
        super().__init__(config, sockets)
        self._url = url

    def init_processes(self) -> None:
        if not SPREADS_CONNECTIONS:
            super().init_processes()
        else:  # bind() made the first socket shareable
            for _ in range(self.processes_num):
                first = self.sockets[0]
                own = _bound(first.family, first.getsockname(), reuse_port=True)
                try:
                    process = Process(self.config, [own])
                    process.start()  # the worker inherits the socket as it starts
                finally:
                    # The worker's own now: it must close with the worker, or connections sent
                    # to it after a crash would wait on a socket nobody accepts from. A worker
                    # uvicorn starts in a dead one's place listens on the first socket.
                    own.close()
                self.processes.append(process)
        # The line scripts wait for, once one worker accepts connections.
        while not self.should_exit.is_set():
            if any(process.is_ready(0.05) for process in self.processes):
                say(LISTENING.format(url=self._url))
                return
            if not any(process.is_alive() for process in self.processes):
                return


def serve_workers(
    settings: Settings, sock: socket.socket, url: str, log_level: str, workers: int
) -> None:
    """Serve ``settings``' app on ``sock`` (bound) in ``workers`` processes until stopped."""
    data = dataclasses.asdict(settings)
    data["users_file"] = None if settings.users_file is None else str(settings.users_file)
    os.environ[_SETTINGS_ENV] = json.dumps(data)
    config = uvicorn_config(
        f"{__name__}:worker_app", settings, log_level, factory=True, workers=workers
    )
    _Workers(config, [sock], url).run()
