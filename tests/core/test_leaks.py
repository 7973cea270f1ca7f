"""No secret anywhere: a full flow with DEBUG logging everywhere, then every captured output,
the settings file and the text of every error are searched for each token and the password."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest

from desktop.auth.dpop import DPoPKey
from desktop.auth.errors import AuthError, InvalidCredentials, SessionEnded
from desktop.auth.grants import PasswordGrant
from desktop.auth.session import AuthClient
from desktop.auth.store import KeyringStore, StoredSession
from desktop.auth.tokens import TokenSet
from desktop.cli import main
from desktop.config import config_path
from tests.core.fakes import FakeClock
from tests.support.keyring import MemoryKeyring

PASSWORD = "wonderland"


class SecretCollector:
    """Remembers every token any client in this process receives (CLI runs included), by
    watching the one place token responses are parsed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.secrets: set[str] = {PASSWORD}
        original = TokenSet.from_response.__func__  # type: ignore[attr-defined]

        def recording(cls: type[TokenSet], data: dict[str, Any], **kw: Any) -> TokenSet:
            tokens = original(cls, data, **kw)
            self.secrets.add(tokens.access_token)
            if tokens.refresh_token:
                self.secrets.add(tokens.refresh_token)
            return tokens

        monkeypatch.setattr(TokenSet, "from_response", classmethod(recording))

        # DPoP: every proof (and its signature alone), every private key (its keyring form
        # and its private value alone).
        proof = DPoPKey.proof

        def recording_proof(key: DPoPKey, *args: Any, **kw: Any) -> str:
            made = proof(key, *args, **kw)
            self.proofs.append(made)
            self.secrets.update((made, made.rsplit(".", 1)[1]))
            self.add_key(key.to_json())
            return made

        self.proofs: list[str] = []
        monkeypatch.setattr(DPoPKey, "proof", recording_proof)

    def add_key(self, key_json: str) -> None:
        self.secrets.update((key_json, json.loads(key_json)["d"]))

    def add_stored(self, values: Any) -> None:
        """Keyring entries: the JSON value itself and each token in it."""
        for value in values:
            self.secrets.add(value)
            data = json.loads(value)
            self.secrets.update(data[k] for k in ("access_token", "refresh_token") if k in data)
            if "dpop_key" in data:
                self.add_key(data["dpop_key"])


def test_full_flow_leaks_nothing(
    start_server: Any,
    memory_keyring: MemoryKeyring,
    caplog: pytest.LogCaptureFixture,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server(access_ttl="60s")
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    seen = SecretCollector(monkeypatch)
    errors: list[str] = []
    clock = FakeClock()

    # The CLI: login, status, profile, logout.
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["-v", "--server", server.url, "login", "-u", "alice", "--password-stdin"]) == 0
    seen.add_stored(memory_keyring.secrets.values())
    assert main(["-v", "status"]) == 0
    seen.add_stored(memory_keyring.secrets.values())
    assert main(["-v", "profile"]) == 0
    seen.add_stored(memory_keyring.secrets.values())
    config_text = config_path().read_text()

    # The library: sign in, refresh (proactive and 401-driven), errors, sign out.
    client = AuthClient(server.url, store=KeyringStore(), clock=clock, wall_clock=server.wall_clock)
    try:
        client.sign_in(PasswordGrant("alice", PASSWORD), remember=True)
        assert client.status().bound  # the server offers DPoP: the session is bound
        bound_text = repr(client.status()) + repr(client) + repr(client.storage_status())
        bound_text += repr(client._state.dpop) + repr(client._state.tokens)
        stored = StoredSession.from_json(next(iter(memory_keyring.secrets.values())))
        bound_text += repr(stored) + str(stored)
        clock.advance(45)
        client.profile()
        server.advance_clock(120)
        client.profile()
        try:
            client.sign_in(PasswordGrant("alice", PASSWORD + "-wrong"), remember=False)
        except InvalidCredentials as exc:
            errors.append(str(exc) + repr(exc))
        seen.secrets.add(PASSWORD + "-wrong")
        entry = json.loads(next(iter(memory_keyring.secrets.values())))
        stolen = entry["refresh_token"]
        seen.secrets.add(stolen)
        import requests

        # A thief with the whole keyring entry: the refresh token and the DPoP key.
        thief = DPoPKey.from_json(entry["dpop_key"], clock=server.wall_clock)
        with requests.post(
            f"{server.url}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": stolen,
                "client_id": "jwt-desktop",
            },
            headers={"DPoP": thief.proof("POST", f"{server.url}/token")},
            timeout=10,
        ) as answer:
            assert answer.status_code == 200
            seen.secrets.add(answer.json()["refresh_token"])
            seen.secrets.add(answer.json()["access_token"])
        clock.advance(3600)
        with pytest.raises(SessionEnded) as ended:
            client.profile()
        errors.append(str(ended.value) + repr(ended.value))
        status_text = repr(client.status()) + repr(client)
    finally:
        client.close()
    assert main(["-v", "logout"]) == 0

    out, err = capsys.readouterr()
    logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    # password, wrong password, and at least: CLI login (1 pair: status and profile reuse its
    # stored access token), library sign-in + 2 refreshes (3 pairs), the thief's pair.
    assert len(seen.secrets) >= 2 + 8 + 2
    assert "refresh" in logs.lower()  # the capture really saw the flow
    # DPoP was on: proofs for the CLI's and the library's token and resource requests, and
    # the keyring entry held a key (the thief's proof came from it).
    assert len(seen.proofs) >= 8
    status_text += bound_text
    for secret in seen.secrets:
        for name, text in [
            ("logs", logs),
            ("stdout", out),
            ("stderr", err),
            ("config", config_text),
            ("errors", "\n".join(errors)),
            ("status", status_text),
        ]:
            assert secret not in text, f"a secret leaked into {name}"


def test_error_text_from_the_server_is_bounded() -> None:
    from desktop.auth.messages import reason

    assert len(reason("x" * 10_000)) <= 200
    assert reason("line one.\nline two.") == "line one. line two"
    assert issubclass(SessionEnded, AuthError)
