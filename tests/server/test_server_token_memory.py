"""The access-token verifier's memory (tokens.AccessTokenVerifier): it spares a client's
repeated requests the RSA check, and refuses all that a fresh check would."""

from __future__ import annotations

import pytest

from mock_server.passwords import demo_users
from mock_server.server import AdjustableClock, TokenServer
from mock_server.tokens import AccessTokenVerifier, InvalidToken
from tests.server.helpers import CLIENT_ID, FakeClock, _memory_store
from tests.server.helpers import test_settings as settings_for


def _server(clock: FakeClock) -> TokenServer:
    return TokenServer(settings_for(), AdjustableClock(clock), _memory_store(), demo_users())


def _token(server: TokenServer) -> str:
    form = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    return str(server.token({**form, "client_id": CLIENT_ID}, "127.0.0.1")["access_token"])


def test_a_remembered_token_is_still_checked_for_time_and_text() -> None:
    clock = FakeClock()
    server = _server(clock)
    verifier = AccessTokenVerifier(server.keys, server.settings)
    token = _token(server)
    claims = verifier.verify(token, clock())
    assert verifier.verify(token, clock()) is claims  # remembered
    head, payload, signature = token.split(".")
    other = "A" if signature[10] != "A" else "B"
    forged = f"{head}.{payload}.{signature[:10]}{other}{signature[11:]}"
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify(forged, clock())
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token, float(claims["exp"]))
    with pytest.raises(InvalidToken, match="future"):
        verifier.verify(token, float(claims["iat"]) - 61)
    server.store.close()


def test_the_memory_keeps_at_most_its_size() -> None:
    clock = FakeClock()
    server = _server(clock)
    verifier = AccessTokenVerifier(server.keys, server.settings, max_entries=2)
    tokens = [_token(server) for _ in range(3)]
    for token in tokens:
        verifier.verify(token, clock())
    assert list(verifier._verified) == tokens[1:]  # the oldest went first
    assert verifier.verify(tokens[0], clock())["sub"]  # and is simply checked again
    server.store.close()
