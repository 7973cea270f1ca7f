"""Device sign-in (RFC 8628): the device authorization endpoint, the page, the polling."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import ISSUER, OTHER_CLIENT_ID, FakeClock, app_client, bearer
from tests.server.robot import DEVICE_GRANT, approve, page_form, poll, start

USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def error(response: Any) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["error"])


def test_device_authorization_answer(client: TestClient) -> None:
    grant = start(client)
    assert set(grant) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert USER_CODE.match(grant["user_code"])
    assert len(grant["device_code"]) >= 43
    assert grant["verification_uri"] == f"{ISSUER}/device"
    compact = grant["user_code"].replace("-", "")
    assert grant["verification_uri_complete"] == f"{ISSUER}/device?user_code={compact}"
    assert grant["expires_in"] == 600
    assert grant["interval"] == 5


def test_user_codes_differ(client: TestClient) -> None:
    codes = {start(client)["user_code"] for _ in range(20)}
    assert len(codes) == 20


def test_device_flow_end_to_end(client: TestClient, clock: FakeClock) -> None:
    grant = start(client)
    assert error(poll(client, grant["device_code"])) == "authorization_pending"

    # The person opens verification_uri_complete: the code is filled in already.
    page = client.get(grant["verification_uri_complete"].removeprefix(ISSUER))
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    form = page_form(page.text)
    assert form.fields["user_code"] == grant["user_code"].replace("-", "")
    assert {"csrf_token", "username", "password"} <= set(form.fields)

    done = approve(client, grant["user_code"])
    assert done.status_code == 200
    assert "Device signed in" in done.text

    clock.advance(5)
    tokens = poll(client, grant["device_code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["refresh_token"]
    assert body["id_token"]
    assert body["scope"] == "openid profile email"  # the default scope
    profile = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert profile.json()["preferred_username"] == "alice"

    # Tokens once.
    clock.advance(5)
    assert error(poll(client, grant["device_code"])) == "invalid_grant"


def test_the_page_says_which_client_asks_before_the_person_signs_in(client: TestClient) -> None:
    # RFC 8628 §5.4: a person lured into entering someone else's code sees whom it lets in.
    grant = start(client, client_id=OTHER_CLIENT_ID, scope="openid email")
    page = client.get(grant["verification_uri_complete"].removeprefix(ISSUER))
    assert page.status_code == 200
    assert f"<strong>{OTHER_CLIENT_ID}</strong> asks to sign you in on a device" in page.text
    assert "It will have access to: openid, email" in page.text
    # Shown again when the sign-in on it fails.
    refused = approve(client, grant["user_code"], "alice", "wrong")
    assert refused.status_code == 400
    assert f"<strong>{OTHER_CLIENT_ID}</strong> asks" in refused.text
    # The bare page names nobody.
    assert "asks to sign you in" not in client.get("/device").text


def test_polling_faster_than_the_interval_slows_down(client: TestClient, clock: FakeClock) -> None:
    grant = start(client)
    assert error(poll(client, grant["device_code"])) == "authorization_pending"
    assert error(poll(client, grant["device_code"])) == "slow_down"
    # §3.5: the interval is now 5 s longer (10 s), for this and every later request.
    clock.advance(5)
    assert error(poll(client, grant["device_code"])) == "slow_down"
    clock.advance(15)
    assert error(poll(client, grant["device_code"])) == "authorization_pending"
    clock.advance(14)
    assert error(poll(client, grant["device_code"])) == "slow_down"


def test_an_approved_code_waits_for_the_interval_too(client: TestClient, clock: FakeClock) -> None:
    grant = start(client)
    assert error(poll(client, grant["device_code"])) == "authorization_pending"
    approve(client, grant["user_code"])
    assert error(poll(client, grant["device_code"])) == "slow_down"
    clock.advance(10)
    assert poll(client, grant["device_code"]).status_code == 200


def test_denial(client: TestClient) -> None:
    grant = start(client)
    # Deny needs no password: the person only says no.
    done = approve(client, grant["user_code"], "", "", decision="deny")
    assert done.status_code == 200
    assert "Request denied" in done.text
    assert error(poll(client, grant["device_code"])) == "access_denied"
    # A denied code cannot be approved afterwards.
    assert approve(client, grant["user_code"]).status_code == 400


def test_expiry(client: TestClient, clock: FakeClock) -> None:
    grant = start(client)
    clock.advance(600)
    assert error(poll(client, grant["device_code"])) == "expired_token"
    late = approve(client, grant["user_code"])
    assert late.status_code == 400
    assert "not valid or has expired" in late.text


def test_a_wrong_password_leaves_the_code_pending(client: TestClient) -> None:
    grant = start(client)
    refused = approve(client, grant["user_code"], "alice", "wrong")
    assert refused.status_code == 400
    assert "The username or password is incorrect" in refused.text
    form = page_form(refused.text)
    assert form.fields["user_code"] == grant["user_code"]
    assert form.fields["password"] == ""
    assert error(poll(client, grant["device_code"])) == "authorization_pending"


@pytest.mark.parametrize("typed", ["lower", "no-dash", "spaces"])
def test_user_codes_are_read_as_people_type_them(client: TestClient, typed: str) -> None:
    grant = start(client)
    code = grant["user_code"]
    variants = {
        "lower": code.lower(),
        "no-dash": code.replace("-", ""),
        "spaces": " " + code.replace("-", " ") + " ",
    }
    assert approve(client, variants[typed]).status_code == 200


def test_user_code_guessing_is_limited(clock: FakeClock) -> None:
    with app_client(clock, max_user_code_failures=3) as client:
        grant = start(client)
        for guess in ("BBBB-BBBB", "not a code", "CCCC-CCCC"):
            assert approve(client, guess).status_code == 400
        # The page's own link counts its code as a typed one: guessing there is limited too.
        guessed = client.get("/device", params={"user_code": "DDDD-DDDD"})
        assert guessed.status_code == 429
        assert "asks to sign you in" not in guessed.text
        # The right code now waits too: guessing is what the limit stops.
        limited = approve(client, grant["user_code"])
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert error(poll(client, grant["device_code"])) == "authorization_pending"
        clock.advance(5 * 60)
        assert approve(client, grant["user_code"]).status_code == 200


def test_device_page_csrf(client: TestClient) -> None:
    grant = start(client)
    response = client.post(
        "/device",
        data={
            "user_code": grant["user_code"],
            "username": "alice",
            "password": "wonderland",
            "decision": "allow",
        },
    )
    assert response.status_code == 403
    assert error(poll(client, grant["device_code"])) == "authorization_pending"


def test_device_page_escapes_what_it_echoes(client: TestClient) -> None:
    page = client.get("/device", params={"user_code": "<script>x</script>"})
    assert page.status_code == 200  # not a code: said on the page, which echoes it escaped
    assert "This code is not valid" in page.text
    assert "<script>" not in page.text
    failed = approve(client, '"><script>', '"><script>', "x")
    assert "<script>" not in failed.text


def test_polling_errors(client: TestClient) -> None:
    grant = start(client)
    assert error(poll(client, grant["device_code"], OTHER_CLIENT_ID)) == "invalid_grant"
    assert error(poll(client, "made-up")) == "invalid_grant"
    missing = client.post("/token", data={"grant_type": DEVICE_GRANT, "client_id": "jwt-desktop"})
    assert error(missing) == "invalid_request"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({"scope": "openid"}, 400, "invalid_client"),
        ({"client_id": "unknown"}, 400, "invalid_client"),
        ({"client_id": "jwt-desktop", "scope": "openid admin"}, 400, "invalid_scope"),
    ],
)
def test_device_authorization_errors(
    client: TestClient, data: dict[str, str], status: int, code: str
) -> None:
    response = client.post("/device_authorization", data=data)
    assert response.status_code == status
    assert response.json()["error"] == code


def test_device_authorization_garbage_is_a_4xx_json_error(client: TestClient) -> None:
    response = client.post(
        "/device_authorization",
        content=b"\xff\xfe\x00",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    basic = client.post(
        "/device_authorization",
        data={"client_id": "jwt-desktop"},
        headers={"Authorization": "Basic eDp5"},
    )
    assert basic.status_code == 401
    assert basic.json()["error"] == "invalid_client"
