"""Malformed requests of every kind get a 4xx JSON error: never a 500, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import (
    ALL_SCOPES,
    CLIENT_ID,
    FakeClock,
    app_client,
    bearer,
    client_of_each_app,  # noqa: F401 (client: both assemblies)
    sign_in,
)

GOOD_FORM = "grant_type=password&username=alice&password=wonderland&client_id=jwt-desktop"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def assert_json_error(response: object, status: int, error: str = "invalid_request") -> None:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == error
    assert "Traceback" not in body["error_description"]


def test_the_good_form_works(client: TestClient) -> None:
    # The control for the cases below: only what each case names is wrong.
    assert client.post("/token", content=GOOD_FORM, headers=FORM).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "text/plain", "multipart/form-data; boundary=x", "garbage"],
)
def test_wrong_content_type(client: TestClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/token", content=GOOD_FORM, headers=headers)
    assert_json_error(response, 400)
    assert response.json()["error_description"] == (
        "The request body must be application/x-www-form-urlencoded"
    )


def test_json_body(client: TestClient) -> None:
    response = client.post(
        "/token", json={"grant_type": "password", "username": "alice", "password": "wonderland"}
    )
    assert_json_error(response, 400)


def test_charset_parameter_is_fine(client: TestClient) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    assert client.post("/token", content=GOOD_FORM, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=password&username=%FF%FE&password=x&client_id=jwt-desktop",
        b"grant_type=password&username=\xff\xfe&password=x&client_id=jwt-desktop",
        b"\x00\x01\x02\xff",
    ],
)
def test_non_utf8_body(client: TestClient, body: bytes) -> None:
    response = client.post("/token", content=body, headers=FORM)
    assert_json_error(response, 400)
    assert response.json()["error_description"] == "The request body is not a valid UTF-8 form"


def test_repeated_parameter(client: TestClient) -> None:
    response = client.post("/token", content=GOOD_FORM + "&username=bob", headers=FORM)
    assert_json_error(response, 400)
    # Which one is not said: a description never echoes the request.
    assert response.json()["error_description"] == "A parameter is repeated"


def test_too_many_fields(client: TestClient) -> None:
    body = GOOD_FORM + "".join(f"&f{i}=1" for i in range(40))
    assert_json_error(client.post("/token", content=body, headers=FORM), 400)


def test_huge_body_with_content_length(client: TestClient) -> None:
    body = GOOD_FORM + "&pad=" + "x" * 20_000
    response = client.post("/token", content=body, headers=FORM)
    assert_json_error(response, 413)


# /token is the fast lane's; the others are FastAPI routes (built later in the CLI's assembly).
@pytest.mark.parametrize("path", ["/token", "/device_authorization", "/authorize"])
def test_huge_chunked_body(client: TestClient, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield GOOD_FORM.encode()
        for _ in range(40):
            yield b"&pad=" + b"x" * 1000

    response = client.post(path, content=chunks(), headers=FORM)
    assert_json_error(response, 413)


def test_malformed_content_length(client: TestClient) -> None:
    response = client.post("/token", content=GOOD_FORM, headers={**FORM, "Content-Length": "12abc"})
    assert_json_error(response, 400)


def test_empty_body(client: TestClient) -> None:
    assert_json_error(client.post("/token", content=b"", headers=FORM), 400)


def test_body_that_is_not_a_form(client: TestClient) -> None:
    response = client.post("/token", content=b"{not a form at all}", headers=FORM)
    assert_json_error(response, 400)


def test_long_values_inside_the_limit(client: TestClient) -> None:
    body = f"grant_type=password&username={'a' * 5000}&password={'b' * 5000}&client_id=jwt-desktop"
    assert_json_error(client.post("/token", content=body, headers=FORM), 400, "invalid_grant")


def test_parameters_in_the_query_string_are_not_used(client: TestClient) -> None:
    response = client.post(
        "/token?grant_type=password&username=alice&password=wonderland&client_id=jwt-desktop",
        content=b"",
        headers=FORM,
    )
    assert_json_error(response, 400)


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer \xff\xfe\xfd",
        b"Bearer " + b"a." * 5000,
        b"Bearer a b c",
        b"bearer",
        b"Bearer ",
        b"\xff",
    ],
)
def test_garbage_authorization_header(client: TestClient, authorization: bytes) -> None:
    response = client.get("/userinfo", headers={"Authorization": authorization})  # type: ignore[dict-item]
    assert_json_error(response, 401, response.json()["error"])
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_path_and_wrong_method(client: TestClient) -> None:
    assert_json_error(client.get("/nope"), 404, "not_found")
    wrong = client.get("/token")
    assert_json_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"


def test_long_session_id(client: TestClient) -> None:
    admin = sign_in(client, scope=ALL_SCOPES)
    response = client.delete("/api/sessions/" + "x" * 3000, headers=bearer(admin["access_token"]))
    assert_json_error(response, 404, "not_found")


def test_testing_clock_rejects_bad_input(clock: FakeClock) -> None:
    with app_client(clock, testing_clock=True) as client:
        for value in ("-1", "nan", "inf", "soon", ""):
            response = client.post("/_testing/advance", data={"seconds": value})
            assert_json_error(response, 400)
        assert client.post("/_testing/advance", data={"seconds": "2.5"}).json()["now"] == (
            clock.now + 2.5
        )


def test_validation_errors_never_echo_the_input(clock: FakeClock) -> None:
    with app_client(clock) as client:
        app = client.app

        @app.get("/probe")  # type: ignore[attr-defined,untyped-decorator]
        def probe(n: int) -> dict[str, int]:
            return {"n": n}

        response = client.get("/probe", params={"n": "hunter2-secret"})
        assert_json_error(response, 400)
        assert "hunter2" not in response.text


def test_an_unexpected_error_is_json_without_details(clock: FakeClock) -> None:
    with app_client(clock) as client:
        app = client.app

        @app.get("/boom")  # type: ignore[attr-defined,untyped-decorator]
        def boom() -> None:
            raise RuntimeError("secret-detail-123")

        quiet = TestClient(app, base_url=str(client.base_url), raise_server_exceptions=False)
        response = quiet.get("/boom")
        assert_json_error(response, 500, "server_error")
        assert "secret-detail" not in response.text


def test_revoke_with_garbage(client: TestClient) -> None:
    response = client.post(
        "/revoke", content=b"token=%FF&client_id=" + CLIENT_ID.encode(), headers=FORM
    )
    assert_json_error(response, 400)


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/device_authorization", b"\xff\x00"),
        ("POST", "/device", b"\xff\x00"),
        ("POST", "/authorize", b"\xff\x00"),
        ("POST", "/token", b"grant_type=authorization_code&client_id=jwt-desktop&code=%ff"),
        ("POST", "/token", b"grant_type=urn:ietf:params:oauth:grant-type:device_code&client_id=x"),
        ("PUT", "/device_authorization", b""),
        ("DELETE", "/authorize", b""),
    ],
)
def test_sign_in_endpoints_answer_garbage_with_a_json_4xx(
    client: TestClient, method: str, path: str, content: bytes
) -> None:
    response = client.request(method, path, content=content, headers=FORM)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()


@pytest.mark.parametrize("path", ["/authorize", "/device"])
# (An empty parameter is an omitted one, RFC 6749 §3.1: "=&=&=" is no garbage, "=a&=b" is.)
@pytest.mark.parametrize("query", ["%ff%fe", "user_code=A&user_code=B", "=a&=b"])
def test_sign_in_pages_answer_garbage_with_a_4xx_page(
    client: TestClient, path: str, query: str
) -> None:
    response = client.get(f"{path}?{query}", follow_redirects=False)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
