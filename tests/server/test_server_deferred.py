"""The CLI's application (mock_server/asgi.py) answers a client's first requests without FastAPI,
and builds the FastAPI app, once, on the first request its fast lane does not answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message

from mock_server.asgi import Deferred

REPO = Path(__file__).resolve().parents[2]

# A fresh interpreter, so nothing the test run imported counts: the app the CLI serves, driven
# through httpx's ASGI transport, over a client's first requests; then a route only FastAPI has.
CLIENT = """
import asyncio, json, sys
import httpx
from mock_server.asgi import create_asgi_app
from mock_server.settings import Settings

HEAVY = ("fastapi", "pydantic")
# Needed from the first key, token or DPoP proof on, not for discovery.
CRYPTO = ("jwt", "cryptography")
ISSUER = "http://127.0.0.1:8765"

def loaded(names=HEAVY):
    return [name for name in names if name in sys.modules]

async def main():
    app = create_asgi_app(Settings(issuer=ISSUER, testing_clock=True))
    seen = {"at start": loaded(HEAVY + CRYPTO)}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        statuses = {}
        path = "/.well-known/openid-configuration"
        statuses["first " + path] = (await client.get(path)).status_code
        seen["after discovery"] = loaded(HEAVY + CRYPTO)
        for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json", "/healthz"):
            statuses[path] = (await client.get(path)).status_code
        form = {"grant_type": "password", "username": "alice", "password": "wonderland",
                "client_id": "jwt-desktop"}
        tokens = (await client.post("/token", data=form)).json()
        bearer = {"Authorization": "Bearer " + tokens["access_token"]}
        statuses["/userinfo"] = (await client.get("/userinfo", headers=bearer)).status_code
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                   "client_id": "jwt-desktop"}
        tokens = (await client.post("/token", data=refresh)).json()
        revoke = {"token": tokens["refresh_token"], "client_id": "jwt-desktop"}
        statuses["/revoke"] = (await client.post("/revoke", data=revoke)).status_code
        # What mock_server.testing's fixture does besides signing in.
        for path, form in (("/_testing/advance", {"seconds": "60"}), ("/_testing/revoke-all", {})):
            statuses[path] = (await client.post(path, data=form)).status_code
        # The checks hold on the lane before anything else is built.
        statuses["foreign host"] = (
            await client.get("/healthz", headers={"Host": "evil.example"})
        ).status_code
        seen["after the lane"] = loaded()
        document = await client.get("/openapi.json")
        statuses["/openapi.json"] = document.status_code
        statuses["unknown path"] = (await client.get("/token/")).status_code
        seen["after /openapi.json"] = loaded()
        seen["paths"] = sorted(document.json()["paths"])
    print(json.dumps({"statuses": statuses, "seen": seen}))

asyncio.run(main())
"""


def test_the_first_requests_need_no_fastapi_and_the_rest_is_built_on_demand() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["statuses"] == {
        "first /.well-known/openid-configuration": 200,
        "/.well-known/openid-configuration": 200,
        "/.well-known/jwks.json": 200,
        "/healthz": 200,
        "/userinfo": 200,
        "/revoke": 200,
        "/_testing/advance": 200,
        "/_testing/revoke-all": 200,
        "foreign host": 421,
        "/openapi.json": 200,
        "unknown path": 404,
    }
    seen = report["seen"]
    assert seen["at start"] == []
    assert seen["after discovery"] == []
    assert seen["after the lane"] == []
    assert seen["after /openapi.json"] == ["fastapi", "pydantic"]
    # The deferred app is the whole one: its document names the lane's routes too.
    assert {"/token", "/userinfo", "/revoke", "/authorize"} <= set(seen["paths"])


async def _get(app: ASGIApp) -> bytes:
    body: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    return b"".join(body)


def test_requests_arriving_together_build_the_deferred_app_once() -> None:
    builds: list[float] = []
    release = threading.Event()

    def build() -> ASGIApp:
        # Slow, as the real build is: every first request arrives while it runs.
        release.wait(10)
        builds.append(time.monotonic())
        return PlainTextResponse("built")

    deferred = Deferred(build)

    async def main() -> list[bytes]:
        requests = [asyncio.ensure_future(_get(deferred)) for _ in range(5)]
        await asyncio.sleep(0.05)
        # The event loop is free while the build runs (it is on a worker thread).
        assert not any(request.done() for request in requests)
        release.set()
        answers = await asyncio.gather(*requests)
        answers.append(await _get(deferred))
        return answers

    answers = asyncio.run(main())
    assert answers == [b"built"] * 6
    assert len(builds) == 1
