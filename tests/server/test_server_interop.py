"""Interop: a third-party OAuth client (Authlib) signs in, refreshes and reads /userinfo live."""

from __future__ import annotations

import time

import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.support.server import RunningServer


def test_authlib_signs_in_refreshes_and_reads_userinfo(live_server: RunningServer) -> None:
    with OAuth2Session(client_id="jwt-desktop", token_endpoint_auth_method="none") as discover:
        url = f"{live_server.url}/.well-known/openid-configuration"
        metadata = discover.get(url, withhold_token=True).json()
    assert "password" in metadata["grant_types_supported"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["none"]

    with OAuth2Session(
        client_id="jwt-desktop",
        token_endpoint_auth_method="none",
        scope="openid profile email groups",
        token_endpoint=metadata["token_endpoint"],
    ) as session:
        token = session.fetch_token(
            metadata["token_endpoint"],
            grant_type="password",
            username="alice",
            password="wonderland",
        )
        assert token["token_type"] == "Bearer"
        profile = session.get(metadata["userinfo_endpoint"])
        assert profile.status_code == 200
        assert profile.json()["preferred_username"] == "alice"

        first_refresh_token = token["refresh_token"]
        refreshed = session.refresh_token(metadata["token_endpoint"])
        assert refreshed["refresh_token"] != first_refresh_token
        assert session.get(metadata["userinfo_endpoint"]).json()["groups"] == ["staff", "admin"]

        # Authlib's own automatic refresh, when it believes the access token expired.
        before = session.token["refresh_token"]
        session.token["expires_at"] = int(time.time()) - 10
        assert session.get(metadata["userinfo_endpoint"]).status_code == 200
        assert session.token["refresh_token"] != before

        # The spent token, replayed through Authlib, is refused the standard way.
        with pytest.raises(OAuthError) as refused:
            session.refresh_token(metadata["token_endpoint"], refresh_token=first_refresh_token)
        assert refused.value.error == "invalid_grant"

        revoked = session.revoke_token(
            metadata["revocation_endpoint"], token=before, token_type_hint="refresh_token"
        )
        assert revoked.status_code == 200
