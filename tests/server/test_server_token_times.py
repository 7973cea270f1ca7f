"""Token times in whole seconds without cutting a token's life short (issue 11, item 7)."""

from __future__ import annotations

import jwt
import pytest

from tests.server.helpers import FakeClock, app_client, bearer, sign_in


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_a_one_second_token_lives_at_least_one_second(fraction: float) -> None:
    clock = FakeClock(1_800_000_000.0 + fraction)
    issued_at = clock.now
    with app_client(clock, access_ttl=1.0) as client:
        tokens = sign_in(client)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
        assert claims["iat"] <= issued_at  # never "issued in the future"
        assert issued_at + 1 <= claims["exp"] < issued_at + 2
        assert tokens["expires_in"] == 1  # a client counting from now never overestimates
        clock.advance(0.999)  # just under its lifetime: still good
        assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
        clock.now = float(claims["exp"])
        assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
