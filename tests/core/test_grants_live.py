"""Browser and device sign-in end to end against the live bundled server, through the real
client (``AuthClient.sign_in`` with :class:`AuthorizationCodeGrant` / :class:`DeviceCodeGrant`
and the ID-token validator the app wires in). The browser is the robot of
tests/support/browser.py (``$BROWSER``: GET the page, POST the form, follow the redirect to the
loopback); device approvals are played by the same robot. Waits between device polls move the
server's clock instead of sleeping."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from desktop.auth import messages
from desktop.auth.errors import (
    AuthorizationDenied,
    Cancelled,
    DeviceCodeExpired,
    InvalidIDToken,
    IssuerMismatch,
    SignInTimedOut,
    StateMismatch,
    SubjectMismatch,
)
from desktop.auth.grants import (
    AuthorizationCodeGrant,
    DeviceCodeGrant,
    GrantContext,
    PasswordGrant,
    Progress,
    open_browser,
)
from desktop.auth.idtoken import IDTokenValidator
from desktop.auth.messages import ErrorKind, describe
from desktop.auth.oauth import requested_scope
from desktop.auth.session import AuthClient
from desktop.auth.store import MemoryStore
from tests.support.browser import Person, RobotBrowser, play, play_device
from tests.support.server import RunningServer, StartServer
from tests.ui.helpers import post_form


class CountingSession(requests.Session):
    """Records every request's method and path (real HTTP all the same); ``rewrite`` may
    change an answer, for the one fault a live server cannot produce (a substituted sub)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.rewrite: Callable[[str, requests.Response], None] | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        path = urllib.parse.urlsplit(str(url)).path
        self.seen.append((str(method), path, dict(kwargs.get("data") or {})))
        response = super().request(method, url, *args, **kwargs)
        if self.rewrite is not None:
            self.rewrite(path, response)
        return response

    def token_grants(self) -> list[str]:
        return [data.get("grant_type", "") for m, p, data in self.seen if p == "/token"]


@pytest.fixture
def server(start_server: StartServer) -> RunningServer:
    return start_server()


@pytest.fixture
def http() -> Iterator[CountingSession]:
    with CountingSession() as session:
        yield session


def _client(server: RunningServer, http: requests.Session, **kwargs: Any) -> AuthClient:
    kwargs.setdefault("wall_clock", server.wall_clock)  # DPoP proofs follow the server's clock
    return AuthClient(
        server.url, store=MemoryStore(), http=http, id_token_validator=IDTokenValidator(), **kwargs
    )


def _refresh_works(server: RunningServer, token: str) -> bool:
    status, _ = post_form(
        f"{server.url}/token",
        {"grant_type": "refresh_token", "refresh_token": token, "client_id": "jwt-desktop"},
    )
    return status == 200


# -- browser ----------------------------------------------------------------------------------


def test_browser_sign_in_end_to_end(
    server: RunningServer, http: CountingSession, browser_robot: RobotBrowser
) -> None:
    seen: list[Progress] = []
    with _client(server, http) as client:
        result = client.sign_in(AuthorizationCodeGrant(), remember=False, progress=seen.append)
        assert result.status.signed_in and result.status.username == "alice"
        assert result.profile is not None and result.profile["preferred_username"] == "alice"
        # The person saw the URL (to copy it if no browser opened), and it is the server's.
        (step,) = seen
        assert step.message == messages.CONTINUE_IN_BROWSER
        assert step.url is not None and step.url.startswith(f"{server.url}/authorize?")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(step.url).query))
        assert query["code_challenge_method"] == "S256" and query["prompt"] == "consent"
        assert "offline_access" in query["scope"].split() and query["nonce"]
        assert query["redirect_uri"].startswith("http://127.0.0.1:")
        assert query["redirect_uri"].endswith("/callback")
        # The code was redeemed once, with the verifier and the same redirect URI.
        (redeem,) = [d for _, p, d in http.seen if d.get("grant_type") == "authorization_code"]
        assert redeem["redirect_uri"] == query["redirect_uri"] and redeem["code_verifier"]
        # The ID token was validated: its key set fetched through the transport.
        assert [p for _, p, _ in http.seen].count("/.well-known/jwks.json") == 1
        # The session refreshes like any other.
        assert client.request("GET", "/userinfo").status_code == 200
    assert browser_robot.says("done: the redirect answered 200"), browser_robot.log()


def test_no_browser_the_person_opens_the_url_themselves(
    server: RunningServer, http: CountingSession
) -> None:
    seen: list[Progress] = []

    def no_browser(url: str) -> bool:
        return False

    def person_reads(step: Progress) -> None:
        seen.append(step)
        if step.message == messages.NO_BROWSER and step.url:
            threading.Thread(target=play, args=(step.url, Person()), daemon=True).start()

    with _client(server, http) as client:
        grant = AuthorizationCodeGrant(opener=no_browser, timeout=30)
        result = client.sign_in(grant, remember=False, progress=person_reads)
    assert result.status.username == "alice"
    assert [s.message for s in seen] == [messages.CONTINUE_IN_BROWSER, messages.NO_BROWSER]
    assert seen[0].url == seen[1].url


def test_access_denied_in_the_browser_is_a_sentence(
    server: RunningServer, http: CountingSession, browser_robot: RobotBrowser
) -> None:
    browser_robot.configure(decision="deny")
    with _client(server, http) as client:
        with pytest.raises(AuthorizationDenied) as caught:
            client.sign_in(AuthorizationCodeGrant(), remember=False)
        assert not client.status().signed_in
    assert caught.value.error == "access_denied"
    failure = describe(caught.value)
    assert failure.kind is ErrorKind.REFUSED
    assert failure.message.startswith("The sign-in was declined or cancelled in the browser.")
    assert "authorization_code" not in http.token_grants()


def _opener_rewriting(**changes: str) -> Callable[[str], bool]:
    """A browser whose redirect is tampered with: the authorization request goes out with
    ``changes`` applied to its query (so the server answers for another request)."""

    def open_tampered(url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.update(changes)
        tampered = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        return open_browser(tampered)

    return open_tampered


def test_a_wrong_state_ends_the_wait_and_no_code_is_redeemed(
    server: RunningServer, http: CountingSession, browser_robot: RobotBrowser
) -> None:
    grant = AuthorizationCodeGrant(opener=_opener_rewriting(state="another-tab"), timeout=30)
    with _client(server, http) as client, pytest.raises(StateMismatch) as caught:
        client.sign_in(grant, remember=False)
    assert describe(caught.value).kind is ErrorKind.REFUSED
    assert str(caught.value) == messages.REDIRECT_WRONG_STATE
    assert "authorization_code" not in http.token_grants()
    assert browser_robot.says("done: the redirect answered 400"), browser_robot.log()


def _context(client: AuthClient, **changes: Any) -> GrantContext:
    metadata = dataclasses.replace(client.metadata(), **changes)
    return GrantContext(
        metadata=metadata,
        transport=client.transport,
        client_id=client.client_id,
        scope=requested_scope(metadata),
        clock=lambda: 0.0,
    )


def test_mix_up_an_iss_from_another_server_is_refused(
    server: RunningServer, http: CountingSession, browser_robot: RobotBrowser
) -> None:
    # The client believes it asked issuer A; the redirect says B sent it (RFC 9207 mix-up).
    with _client(server, http) as client:
        ctx = _context(client, issuer="http://127.0.0.1:9/not-this-server")
        with pytest.raises(IssuerMismatch) as caught:
            AuthorizationCodeGrant(timeout=30).obtain(ctx)
    assert str(caught.value) == messages.REDIRECT_WRONG_ISS
    assert "authorization_code" not in http.token_grants()


def test_the_browser_sign_in_times_out(server: RunningServer, http: CountingSession) -> None:
    opened: list[str] = []

    def ignored(url: str) -> bool:
        opened.append(url)
        return True  # a browser opened, and the person walked away

    with _client(server, http) as client, pytest.raises(SignInTimedOut) as caught:
        client.sign_in(AuthorizationCodeGrant(opener=ignored, timeout=0.2), remember=False)
    assert describe(caught.value) == describe(SignInTimedOut(messages.BROWSER_TIMED_OUT))
    assert describe(caught.value).kind is ErrorKind.REFUSED
    # The listener is closed: the late redirect finds nobody.
    redirect_uri = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(opened[0]).query))[
        "redirect_uri"
    ]
    with pytest.raises(requests.ConnectionError):
        requests.get(redirect_uri, timeout=5)


def test_cancel_ends_the_browser_wait(server: RunningServer, http: CountingSession) -> None:
    cancel = threading.Event()

    def person_cancels(url: str) -> bool:
        cancel.set()
        return True

    with _client(server, http) as client, pytest.raises(Cancelled) as caught:
        client.sign_in(AuthorizationCodeGrant(opener=person_cancels), remember=False, cancel=cancel)
    assert describe(caught.value).kind is ErrorKind.CANCELLED
    assert "authorization_code" not in http.token_grants()


# -- device -----------------------------------------------------------------------------------


class DevicePerson:
    """Reads the progress (the code), and acts on the other device at the n-th wait; each
    wait moves the server's clock by the interval instead of sleeping (``advance=False``:
    the client polls too early, as a slow_down test needs)."""

    def __init__(self, server: RunningServer, *, act_at: int = 1, decision: str = "allow") -> None:
        self.server = server
        self.act_at = act_at
        self.decision = decision
        self.steps: list[Progress] = []
        self.intervals: list[float] = []
        self.early_at: int | None = None  # this wait moves the clock 1 s only: too early
        self.cancel_at: int | None = None

    def progress(self, step: Progress) -> None:
        self.steps.append(step)

    def wait(self, cancel: threading.Event, seconds: float) -> bool:
        self.intervals.append(seconds)
        if len(self.intervals) == self.act_at:
            step = self.steps[-1]
            assert step.complete_url is not None
            outcome = play_device(step.complete_url, person=Person(decision=self.decision))
            assert outcome.status == "done", outcome
        if len(self.intervals) == self.cancel_at:
            cancel.set()
        early = len(self.intervals) == self.early_at
        self.server.advance_clock(1.0 if early else seconds)
        return cancel.is_set()


def test_device_sign_in_pending_then_approved(server: RunningServer, http: CountingSession) -> None:
    person = DevicePerson(server, act_at=2)
    with _client(server, http) as client:
        result = client.sign_in(
            DeviceCodeGrant(wait=person.wait), remember=False, progress=person.progress
        )
    assert result.status.username == "alice"
    (step,) = person.steps
    assert step.url == f"{server.url}/device" and step.user_code
    assert step.complete_url is not None and step.complete_url.startswith(f"{server.url}/device?")
    assert step.message == messages.device_instructions(step.url, step.user_code, step.complete_url)
    # Polled at the server's interval: once pending, once approved.
    assert person.intervals == [5.0, 5.0]
    device = "urn:ietf:params:oauth:grant-type:device_code"
    assert http.token_grants() == [device, device]


def test_device_slow_down_adds_five_seconds(server: RunningServer, http: CountingSession) -> None:
    person = DevicePerson(server, act_at=3)
    person.early_at = 2  # the second poll comes 1 s after the first: slow_down
    with _client(server, http) as client:
        result = client.sign_in(
            DeviceCodeGrant(wait=person.wait), remember=False, progress=person.progress
        )
    assert result.status.username == "alice"
    assert person.intervals == [5.0, 5.0, 10.0]


def test_device_code_expiry_is_a_sentence(server: RunningServer, http: CountingSession) -> None:
    person = DevicePerson(server, act_at=0)

    def wait(cancel: threading.Event, seconds: float) -> bool:
        server.advance_clock(601)  # past the code's ten minutes, at the server
        return False

    with _client(server, http) as client, pytest.raises(DeviceCodeExpired) as caught:
        client.sign_in(DeviceCodeGrant(wait=wait), remember=False, progress=person.progress)
    assert str(caught.value) == messages.DEVICE_EXPIRED
    assert caught.value.error == "expired_token"
    assert describe(caught.value).kind is ErrorKind.REFUSED


def test_device_code_expiry_on_the_clients_clock_stops_polling(
    server: RunningServer, http: CountingSession
) -> None:
    now = [0.0]

    def wait(cancel: threading.Event, seconds: float) -> bool:
        now[0] += 700  # the client's own clock passes expires_in: no poll is worth making
        return False

    with _client(server, http, clock=lambda: now[0]) as client, pytest.raises(DeviceCodeExpired):
        client.sign_in(DeviceCodeGrant(wait=wait), remember=False)
    assert http.token_grants() == []


def test_device_denial_is_a_sentence(server: RunningServer, http: CountingSession) -> None:
    person = DevicePerson(server, decision="deny")
    with _client(server, http) as client, pytest.raises(AuthorizationDenied) as caught:
        client.sign_in(DeviceCodeGrant(wait=person.wait), remember=False, progress=person.progress)
    assert str(caught.value) == messages.DEVICE_DENIED
    assert describe(caught.value).kind is ErrorKind.REFUSED


def test_cancel_ends_the_device_wait(server: RunningServer, http: CountingSession) -> None:
    person = DevicePerson(server, act_at=0)
    person.cancel_at = 2
    with _client(server, http) as client, pytest.raises(Cancelled):
        client.sign_in(DeviceCodeGrant(wait=person.wait), remember=False, progress=person.progress)
    assert len(http.token_grants()) == 1  # the one poll before the cancel


# -- ID tokens --------------------------------------------------------------------------------


def test_the_live_servers_id_tokens_are_validated_and_name_the_account(
    server: RunningServer, http: CountingSession
) -> None:
    validator = IDTokenValidator()
    calls: list[dict[str, Any]] = []

    def spy(id_token: str, **kwargs: Any) -> Any:
        claims = validator(id_token, **kwargs)
        calls.append(dict(claims))
        return claims

    with AuthClient(server.url, store=MemoryStore(), http=http, id_token_validator=spy) as client:
        result = client.sign_in(PasswordGrant("bob", "builder"), remember=False)
        client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
    assert result.status.username == "bob"
    assert [c["preferred_username"] for c in calls] == ["bob", "alice"]
    assert all(c["iss"] == server.url and c["aud"] == "jwt-desktop" for c in calls)
    # One key set fetch for both: the cache is per jwks_uri.
    assert [p for _, p, _ in http.seen].count("/.well-known/jwks.json") == 1


def test_a_tampered_id_token_refuses_the_sign_in_and_revokes(
    server: RunningServer, http: CountingSession
) -> None:
    issued: list[str] = []

    def tamper(path: str, response: requests.Response) -> None:
        if path == "/token" and response.status_code == 200:
            data = response.json()
            issued.append(data["refresh_token"])
            head, body, signature = data["id_token"].split(".")
            flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
            data["id_token"] = f"{head}.{body}.{flipped}"
            response._content = json.dumps(data).encode()

    http.rewrite = tamper
    with _client(server, http) as client:
        with pytest.raises(InvalidIDToken) as caught:
            client.sign_in(PasswordGrant("alice", "wonderland"), remember=False)
        assert not client.status().signed_in
    assert caught.value.reason == "signature"
    assert str(caught.value).startswith("The server's ID token was refused:")
    assert describe(caught.value).kind is ErrorKind.REFUSED
    (token,) = issued
    assert not _refresh_works(server, token)  # the unusable session was revoked


def test_a_substituted_sub_at_userinfo_is_refused(
    server: RunningServer, http: CountingSession, browser_robot: RobotBrowser
) -> None:
    def substitute(path: str, response: requests.Response) -> None:
        if path == "/userinfo" and response.status_code == 200:
            data = response.json()
            data["sub"] = "mallory"
            response._content = json.dumps(data).encode()

    http.rewrite = substitute
    with _client(server, http) as client:
        result = client.sign_in(AuthorizationCodeGrant(), remember=False)
        # Named from the validated ID token; the profile that is someone else's is not used.
        assert result.status.username == "alice"
        assert result.profile is None
        assert isinstance(result.profile_error, SubjectMismatch)
        with pytest.raises(SubjectMismatch):
            client.profile()


def test_no_code_verifier_or_token_in_the_logs(
    server: RunningServer,
    http: CountingSession,
    browser_robot: RobotBrowser,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    issued: list[str] = []

    def keep(path: str, response: requests.Response) -> None:
        if path == "/token" and response.status_code == 200:
            data = response.json()
            issued.extend(data[k] for k in ("access_token", "refresh_token", "id_token"))

    http.rewrite = keep
    with _client(server, http) as client:
        result = client.sign_in(AuthorizationCodeGrant(), remember=False)
        text = f"{caplog.text}{capsys.readouterr()}{result!r}{client!r}"
    (redeem,) = [d for _, p, d in http.seen if d.get("grant_type") == "authorization_code"]
    secrets = [redeem["code"], redeem["code_verifier"], *issued]
    assert len(secrets) == 5
    assert browser_robot.says("done: the redirect answered 200")  # the robot's log is whole
    for secret in secrets:
        assert secret not in text
        assert secret not in browser_robot.log()
