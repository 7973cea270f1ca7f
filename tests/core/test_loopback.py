"""The loopback redirect receiver on real sockets, PKCE and the authorization URL."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from desktop.auth.errors import (
    AuthorizationDenied,
    AuthorizationResponseInvalid,
    Cancelled,
    ConfigurationError,
    IssuerMismatch,
    SignInTimedOut,
    StateMismatch,
)
from desktop.auth.loopback import (
    REDIRECT_PATH,
    AuthorizationResponse,
    LoopbackReceiver,
    authorization_url,
    new_nonce,
    new_pkce,
    new_state,
)

ISSUER = "https://id.example.com"
STATE = new_state()


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(state=STATE, issuer=ISSUER) as r:
        yield r


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _get(
    receiver: LoopbackReceiver,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def _redirect(receiver: LoopbackReceiver, **params: str) -> tuple[int, dict[str, str], str]:
    return _get(receiver, f"{REDIRECT_PATH}?{urlencode(params)}")


def _waiting(
    pool: ThreadPoolExecutor, receiver: LoopbackReceiver, timeout: float = 10
) -> Future[AuthorizationResponse]:
    return pool.submit(receiver.wait, timeout)


# --- PKCE, state, nonce ---------------------------------------------------------------------


def test_pkce_pair_is_s256_of_a_long_random_verifier() -> None:
    verifier, challenge = new_pkce()
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier)
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert new_pkce()[0] != verifier


def test_rfc7636_appendix_b_example() -> None:
    # The challenge derivation matches RFC 7636 Appendix B's worked example.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    digest = hashlib.sha256(verifier.encode()).digest()
    assert (
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_state_and_nonce_carry_at_least_128_bits() -> None:
    for make in (new_state, new_nonce):
        values = {make() for _ in range(50)}
        assert len(values) == 50
        assert all(len(base64.urlsafe_b64decode(v + "=")) >= 16 for v in values)


# --- authorization URL -------------------------------------------------------------------------


def test_authorization_url_carries_every_parameter_and_keeps_the_endpoint_query() -> None:
    url = authorization_url(
        "https://id.example.com/authorize?tenant=a%20b&client_id=theirs",
        client_id="jwt-desktop",
        redirect_uri="http://127.0.0.1:5000/callback",
        scope=["openid", "profile", "offline_access"],
        state="st",
        code_challenge="ch",
        nonce="no",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "id.example.com", "/authorize")
    query = parse_qs(parts.query)
    assert query == {
        "tenant": ["a b"],
        "response_type": ["code"],
        "client_id": ["jwt-desktop"],  # ours replaces the endpoint's: no parameter twice
        "redirect_uri": ["http://127.0.0.1:5000/callback"],
        "scope": ["openid profile offline_access"],
        "state": ["st"],
        "code_challenge": ["ch"],
        "code_challenge_method": ["S256"],
        "nonce": ["no"],
        "prompt": ["consent"],
    }


def test_no_prompt_without_offline_access_and_no_nonce_when_none() -> None:
    query = parse_qs(
        urlsplit(
            authorization_url(
                "https://id.example.com/authorize",
                client_id="c",
                redirect_uri="http://127.0.0.1:1/callback",
                scope=["openid"],
                state="s",
                code_challenge="c",
            )
        ).query
    )
    assert "prompt" not in query
    assert "nonce" not in query


def test_authorization_endpoint_with_a_fragment_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        authorization_url(
            "https://id.example.com/authorize#x",
            client_id="c",
            redirect_uri="r",
            scope=[],
            state="s",
            code_challenge="c",
        )


# --- the listener ------------------------------------------------------------------------------


def test_redirect_uri_is_loopback_ip_with_the_fixed_path(receiver: LoopbackReceiver) -> None:
    assert receiver.redirect_uri == f"http://127.0.0.1:{receiver.port}/callback"
    assert receiver.port > 0


def test_right_state_returns_the_code_and_a_close_tab_page(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    status, headers, body = _redirect(receiver, code="the-code", state=STATE, iss=ISSUER)
    result = waiting.result(5)
    assert result == AuthorizationResponse(code="the-code", iss=ISSUER)
    assert "the-code" not in repr(result)
    assert status == 200
    assert "You can close this tab" in body
    assert headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Content-Type"].startswith("text/html")


def test_the_listener_closes_after_the_one_redirect(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    _redirect(receiver, code="c", state=STATE)
    waiting.result(5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", receiver.port), timeout=2).close()


def test_the_listener_writes_nothing_to_stderr(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor, capfd: pytest.CaptureFixture[str]
) -> None:
    # http.server logs every request line (which carries the code) unless told not to.
    waiting = _waiting(pool, receiver)
    _get(receiver, "/favicon.ico")
    _redirect(receiver, code="secret-code", state=STATE)
    waiting.result(5)
    out, err = capfd.readouterr()
    assert "secret-code" not in out + err
    assert err == ""


@pytest.mark.parametrize("state", ["wrong", "", STATE + "x"])
def test_wrong_state_ends_the_wait_with_no_code(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor, state: str
) -> None:
    waiting = _waiting(pool, receiver)
    status, _, body = _redirect(receiver, code="c", state=state)
    with pytest.raises(StateMismatch) as caught:
        waiting.result(5)
    assert status == 400
    assert "does not belong to this sign-in" in str(caught.value)
    assert "does not belong to this sign-in" in body


def test_missing_state_ends_the_wait(receiver: LoopbackReceiver, pool: ThreadPoolExecutor) -> None:
    waiting = _waiting(pool, receiver)
    _redirect(receiver, code="c")
    with pytest.raises(StateMismatch):
        waiting.result(5)


def test_access_denied_becomes_a_sentence_and_the_description_plain_text(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    description = "<script>alert(1)</script>\x07" + "x" * 500
    _, _, body = _redirect(
        receiver, error="access_denied", error_description=description, state=STATE
    )
    with pytest.raises(AuthorizationDenied) as caught:
        waiting.result(5)
    error = caught.value
    assert error.error == "access_denied"
    assert str(error).startswith("The sign-in was declined or cancelled in the browser.")
    assert error.description is not None
    assert len(error.description) <= 201
    assert "\x07" not in error.description
    assert "<script>" not in body  # escaped on the page
    assert "&lt;script&gt;" in body


def test_unknown_error_code_gets_a_generic_sentence(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    _redirect(receiver, error="weird_thing", state=STATE)
    with pytest.raises(AuthorizationDenied, match="The server refused the sign-in"):
        waiting.result(5)


def test_iss_mismatch_ends_the_wait(receiver: LoopbackReceiver, pool: ThreadPoolExecutor) -> None:
    waiting = _waiting(pool, receiver)
    _redirect(receiver, code="c", state=STATE, iss="https://evil.example.com")
    with pytest.raises(IssuerMismatch, match="another server"):
        waiting.result(5)


def test_iss_mismatch_also_ends_an_error_response(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    # RFC 9207 §2.4: a response from the wrong issuer is not processed at all.
    waiting = _waiting(pool, receiver)
    _redirect(receiver, error="access_denied", state=STATE, iss="https://evil.example.com")
    with pytest.raises(IssuerMismatch):
        waiting.result(5)


def test_missing_iss_is_refused_when_the_server_promised_it(pool: ThreadPoolExecutor) -> None:
    with LoopbackReceiver(state=STATE, issuer=ISSUER, iss_required=True) as receiver:
        waiting = _waiting(pool, receiver)
        _redirect(receiver, code="c", state=STATE)
        with pytest.raises(IssuerMismatch, match="did not say"):
            waiting.result(5)


def test_missing_iss_is_fine_when_the_server_did_not_promise_it(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    _redirect(receiver, code="c", state=STATE)
    assert waiting.result(5) == AuthorizationResponse(code="c", iss=None)


def test_duplicate_parameters_are_refused(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    _get(receiver, f"{REDIRECT_PATH}?code=a&code=b&state={STATE}")
    with pytest.raises(AuthorizationResponseInvalid, match="repeated"):
        waiting.result(5)


def test_missing_code_is_refused(receiver: LoopbackReceiver, pool: ThreadPoolExecutor) -> None:
    waiting = _waiting(pool, receiver)
    _redirect(receiver, state=STATE)
    with pytest.raises(AuthorizationResponseInvalid, match="no authorization code"):
        waiting.result(5)


def test_timeout_ends_the_wait() -> None:
    with LoopbackReceiver(state=STATE, issuer=ISSUER) as receiver:
        started = time.monotonic()
        with pytest.raises(SignInTimedOut):
            receiver.wait(0.2)
        assert time.monotonic() - started < 2


def test_cancel_ends_the_wait(receiver: LoopbackReceiver, pool: ThreadPoolExecutor) -> None:
    cancel = threading.Event()
    waiting = pool.submit(receiver.wait, 30, cancel)
    cancel.set()
    with pytest.raises(Cancelled):
        waiting.result(5)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/favicon.ico", None),
        ("GET", f"/other?code=c&state={STATE}", None),
        ("POST", f"{REDIRECT_PATH}?code=c&state={STATE}", None),
        ("HEAD", f"{REDIRECT_PATH}?code=c&state={STATE}", None),
        # A page on another site rebound to 127.0.0.1 (DNS rebinding) sends its own Host.
        ("GET", f"{REDIRECT_PATH}?code=c&state={STATE}", {"Host": "evil.test"}),
    ],
)
def test_stray_requests_get_404_and_the_wait_goes_on(
    receiver: LoopbackReceiver,
    pool: ThreadPoolExecutor,
    method: str,
    target: str,
    headers: dict[str, str] | None,
) -> None:
    waiting = _waiting(pool, receiver)
    assert _get(receiver, target, method, headers)[0] == 404
    assert not waiting.done()
    _redirect(receiver, code="real", state=STATE)
    assert waiting.result(5).code == "real"


def test_a_silent_connection_does_not_block_the_redirect(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    waiting = _waiting(pool, receiver)
    silent = socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
    half = socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
    half.sendall(b"GET /callback?code=x HTTP/1.1\r\n")  # and never finishes
    try:
        started = time.monotonic()
        _redirect(receiver, code="real", state=STATE)
        assert waiting.result(5).code == "real"
        assert time.monotonic() - started < 2
    finally:
        silent.close()
        half.close()


def test_a_silent_connection_is_dropped_after_the_socket_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from desktop.auth import loopback

    monkeypatch.setattr(loopback._Handler, "timeout", 0.2)
    with LoopbackReceiver(state=STATE, issuer=ISSUER) as receiver:
        silent = socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
        try:
            assert silent.recv(1) == b""  # the listener hung up on it
        finally:
            silent.close()


def test_a_second_redirect_cannot_change_the_outcome(
    receiver: LoopbackReceiver, pool: ThreadPoolExecutor
) -> None:
    # The wait has not been called yet: the first redirect is kept until it is.
    assert _redirect(receiver, code="first", state=STATE)[0] == 200
    assert _redirect(receiver, code="second", state=STATE)[0] == 404
    assert receiver.wait(5).code == "first"
