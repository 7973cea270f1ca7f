"""The OpenAPI document against the server's real answers: schemathesis, every check, a bounded
number of generated requests per operation (positive and negative), in process."""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.transport import Response

from mock_server import create_app
from tests.server.helpers import ALL_SCOPES, CLIENT_ID, FakeClock, _memory_store
from tests.server.helpers import test_settings as settings_for

# RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION = re.compile(r"^[\x20-\x21\x23-\x5B\x5D-\x7E]+$")
# Per operation and generation mode; the whole run stays well under a minute.
MAX_EXAMPLES = 100


class _KeptStore:
    """The app's store, kept open across the lifespans schemathesis runs for each call."""

    def __init__(self) -> None:
        self._store = _memory_store()

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _app() -> Any:
    return create_app(settings_for(), clock=FakeClock(), store=_KeptStore())  # type: ignore[arg-type]


APP = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schemathesis.check
def error_description_is_fixed_text(ctx: Any, response: Response, case: Case) -> bool | None:
    """Every error's description is plain text in RFC 6749 §5.2's characters."""
    json_answer = response.headers.get("content-type", [""])[0].startswith("application/json")
    if response.status_code >= 400 and case.method != "HEAD" and json_answer:
        description = response.json()["error_description"]
        if not DESCRIPTION.match(description):
            raise AssertionError(f"error_description outside RFC 6749 §5.2: {description!r}")
    return None


load_all_checks()
# Every check schemathesis has (conformance of status, content type, headers and body; negative
# data rejected, positive data accepted; methods, Allow; auth enforced; resources), and ours.
ALL_CHECKS = CHECKS.get_all()


def _token() -> str:
    from starlette.testclient import TestClient

    # Not as a context manager: its lifespan's end would close the app's store.
    client = TestClient(APP, base_url="http://testserver")
    if True:
        response = client.post(
            "/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": "wonderland",
                "client_id": CLIENT_ID,
                "scope": ALL_SCOPES,
            },
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


# With a real admin token, the bearer routes are explored past their 401 as well; the
# ignored_auth check still sends them without and with a wrong token.
TOKEN = _token()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_answers_as_documented(case: Case) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if case.operation.path != "/token" else {}
    case.call_and_validate(headers=headers, checks=ALL_CHECKS)


def test_the_run_covers_every_operation() -> None:
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert {
        ("POST", "/token"),
        ("POST", "/revoke"),
        ("GET", "/userinfo"),
        ("POST", "/userinfo"),
        ("HEAD", "/userinfo"),
        ("GET", "/api/sessions"),
        ("DELETE", "/api/sessions/{session_id}"),
    } <= operations


def test_every_check_runs() -> None:
    names = {check.__name__ for check in ALL_CHECKS}
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "unsupported_method",
        "ignored_auth",
        "error_description_is_fixed_text",
    } <= names
