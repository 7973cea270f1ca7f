"""A person in a browser, for tests: usable as ``$BROWSER`` and as a function.

Python's ``webbrowser`` runs ``$BROWSER`` as ONE executable path with the URL as its only
argument (the value is not split into words and a ``%s`` in it is not replaced), and it WAITS
for that process to exit. So ``$BROWSER`` must be an executable file: :func:`install` writes a
small wrapper that runs this module with the test's interpreter, and returns the environment to
use. A real browser returns at once; so does the robot by default (it detaches and plays in the
background), so a client that opens the browser before it serves its redirect listener does not
deadlock. ``JWT_TEST_BROWSER_DETACH=0`` keeps it in the foreground.

What it does, like a person: GET the URL, keep cookies, on an HTML page take the form (a form
with a password field first), fill ``username`` (or ``login``/``email``) and ``password``, keep
every other field (CSRF tokens), press the approving submit button (or the refusing one with
``JWT_TEST_DECISION=deny``), follow redirects, and finally GET the loopback redirect
(``redirect_uri`` of the first URL). It never goes to a host that is not loopback.

Device mode (``--device URI [--user-code CODE]``, or :func:`play_device`): open the
verification URI (``verification_uri_complete``, or the URI plus a code typed into the
``user_code`` field), sign in and approve, until a page without a form (the success page).

Environment (the script's interface):
  JWT_TEST_USERNAME, JWT_TEST_PASSWORD  what the person types (default alice / wonderland)
  JWT_TEST_DECISION                     allow (default) or deny
  JWT_TEST_BROWSER_LOG                  a file the robot appends what it does to (never a
                                        password nor a code)
  JWT_TEST_BROWSER_DETACH               1 (default): return at once, play in the background

In tests, the ``browser_robot`` fixture (:class:`RobotBrowser`) does all of that for the test's
process and its children, and resets ``webbrowser``'s once-per-process choice of browser.

Exit status / :class:`Outcome.status`: ``done`` (0), ``refused`` (2: the sign-in form came
back), ``blocked`` (3: a redirect to a non-loopback host), ``stuck`` (4: nothing to press, a
server error, or too many steps).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import sys
import time
import urllib.parse
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

MAX_STEPS = 25
TIMEOUT = 15.0
EXIT_CODES = {"done": 0, "refused": 2, "blocked": 3, "stuck": 4}
_APPROVE = re.compile(
    r"allow|approve|authori[sz]e|consent|accept|continue|confirm|yes|sign|log", re.I
)
_REFUSE = re.compile(r"deny|cancel|abort|reject|decline|\bno\b", re.I)
_USER_FIELDS = ("username", "login", "email", "user")
_SECRET_QUERY_KEYS = {"code", "user_code", "password", "access_token", "id_token", "code_verifier"}


@dataclass
class Field:
    name: str
    value: str
    kind: str  # input type, "button", "select" or "textarea"
    label: str = ""
    checked: bool = False
    form_id: str | None = None  # a `form="id"` attribute: belongs to that form wherever it is


@dataclass
class Form:
    action: str
    method: str
    form_id: str | None
    fields: list[Field] = field(default_factory=list)

    @property
    def submits(self) -> list[Field]:
        return [f for f in self.fields if f.kind in ("submit", "button", "image")]

    @property
    def has_password(self) -> bool:
        return any(f.kind == "password" for f in self.fields)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.orphans: list[Field] = []
        self.title = ""
        self._current: Form | None = None
        self._button: Field | None = None
        self._in_title = False

    def _add(self, item: Field) -> None:
        if item.form_id is not None:
            self.orphans.append(item)
        elif self._current is not None:
            self._current.fields.append(item)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        owner = a.get("form") or None
        if tag == "form":
            self._current = Form(a.get("action", ""), a.get("method", "get").lower(), a.get("id"))
            self.forms.append(self._current)
        elif tag == "input":
            kind = a.get("type", "text").lower()
            label = a.get("value", "")
            self._add(
                Field(a.get("name", ""), a.get("value", ""), kind, label, "checked" in a, owner)
            )
        elif tag == "button":
            kind = a.get("type", "submit").lower()
            self._button = Field(a.get("name", ""), a.get("value", ""), kind, "", False, owner)
            self._add(self._button)
        elif tag in ("select", "textarea"):
            self._add(Field(a.get("name", ""), a.get("value", ""), tag, "", False, owner))
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "button":
            self._button = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.label += data.strip()
        if self._in_title:
            self.title += data.strip()


def parse_forms(html: str) -> tuple[list[Form], str]:
    """The page's forms (fields with a ``form`` attribute attached to their form) and title."""
    parser = _FormParser()
    parser.feed(html)
    by_id = {f.form_id: f for f in parser.forms if f.form_id}
    for orphan in parser.orphans:
        if orphan.form_id in by_id:
            by_id[orphan.form_id].fields.append(orphan)
    return parser.forms, parser.title


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(url: str) -> str:
    """The URL for the log: secret query values replaced."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, "[redacted]" if k in _SECRET_QUERY_KEYS else v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@dataclass(frozen=True)
class Person:
    username: str = "alice"
    password: str = field(default="wonderland", repr=False)
    decision: str = "allow"  # or "deny"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Person:
        return cls(
            env.get("JWT_TEST_USERNAME", "alice"),
            env.get("JWT_TEST_PASSWORD", "wonderland"),
            env.get("JWT_TEST_DECISION", "allow").lower(),
        )


@dataclass(frozen=True)
class Outcome:
    status: str  # done | refused | blocked | stuck
    detail: str
    final_url: str | None = None  # the redirect reached (auth mode), redacted
    final_status: int | None = None


class _Log:
    def __init__(self, path: str | None) -> None:
        self._path = path

    def __call__(self, message: str) -> None:
        if self._path:
            with open(self._path, "a", encoding="utf-8") as out:
                out.write(f"{time.strftime('%H:%M:%S')} [{os.getpid()}] {message}\n")


def _choose_button(form: Form, decision: str) -> Field | None:
    def text(button: Field) -> str:
        return " ".join((button.name, button.value, button.label))

    refusing = [b for b in form.submits if _REFUSE.search(text(b))]
    approving = [b for b in form.submits if b not in refusing and _APPROVE.search(text(b))]
    others = [b for b in form.submits if b not in refusing and b not in approving]
    # Refuse where the page offers it; a page without a refusing button (a code entry, a
    # sign-in page) is passed through, so the person refuses at the next step.
    if decision == "deny" and refusing:
        return refusing[0]
    candidates = approving or others
    return candidates[0] if candidates else None


def _fill(
    form: Form, person: Person, button: Field | None, user_code: str | None
) -> list[tuple[str, str]]:
    data: list[tuple[str, str]] = []
    for f in form.fields:
        if not f.name or f.kind in ("submit", "button", "image", "reset", "file"):
            continue
        if f.kind in ("checkbox", "radio") and not f.checked:
            continue
        value = f.value
        if f.kind == "password":
            value = person.password
        elif f.kind in ("text", "email") and f.name.lower() in _USER_FIELDS:
            value = person.username
        elif f.name == "user_code" and user_code and not value:
            value = user_code
        data.append((f.name, value))
    if button is not None and button.name:
        data.append((button.name, button.value))
    return data


def _page_text(html: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())[:300]


def play(
    url: str,
    person: Person | None = None,
    *,
    log_path: str | None = None,
    user_code: str | None = None,
    device: bool = False,
) -> Outcome:
    """Do what a person does with ``url``; see the module docstring."""
    person = person or Person.from_env()
    log = _Log(log_path)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    redirect_uri = None if device else query.get("redirect_uri")
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy, no netrc
    method, referer = "GET", None
    data: list[tuple[str, str]] | None = None
    signed_in = refused = False
    mode = "device" if device else "auth"
    log(f"start {mode} mode as {person.username!r}, decision {person.decision}")
    for _ in range(MAX_STEPS):
        if not is_loopback(url):
            log(f"blocked: not loopback: {redact(url)}")
            return Outcome("blocked", f"refused to visit {redact(url)}")
        headers = {"Accept": "text/html,*/*"}
        if method == "POST" and referer:
            parts = urllib.parse.urlsplit(referer)
            headers.update(Origin=f"{parts.scheme}://{parts.netloc}", Referer=referer)
        fields = ", ".join(k for k, _ in data or [])
        log(f"{method} {redact(url)}" + (f" fields: {fields}" if method == "POST" else ""))
        reached_redirect = (
            redirect_uri is not None and url.split("?", maxsplit=1)[0] == redirect_uri.split("?")[0]
        )
        response = session.request(
            method, url, data=data, headers=headers, allow_redirects=False, timeout=TIMEOUT
        )
        log(f"  -> {response.status_code} {response.headers.get('Content-Type', '')}")
        if reached_redirect:
            log(f"done: the redirect answered {response.status_code}")
            return Outcome("done", "reached the redirect URI", redact(url), response.status_code)
        if response.is_redirect:
            method, data = "GET", None
            url = urllib.parse.urljoin(url, response.headers["Location"])
            continue
        html = response.text if "html" in response.headers.get("Content-Type", "") else ""
        forms, title = parse_forms(html)
        if refused:  # a person who pressed "deny" reads the page that follows and stops
            log(f"done: refused; then {response.status_code} {title!r}")
            return Outcome(
                "done", f"refused; {title}: {_page_text(html)}", None, response.status_code
            )
        forms = [f for f in forms if f.submits or f.has_password or f.fields]
        if not forms:
            text = _page_text(html) or response.text[:300]
            status = "done" if device and response.status_code < 400 else "stuck"
            log(f"{status}: page without a form ({response.status_code}): {title!r} {text!r}")
            return Outcome(
                status, f"{response.status_code} {title}: {text}", None, response.status_code
            )
        form = next((f for f in forms if f.has_password), forms[0])
        if form.has_password:
            if signed_in:
                log("refused: the sign-in form came back")
                return Outcome(
                    "refused", f"sign-in refused: {_page_text(html)}", None, response.status_code
                )
            signed_in = True
        button = _choose_button(form, person.decision)
        if button is None and form.submits:
            log(f"stuck: no button for {person.decision!r} on {title!r}")
            return Outcome("stuck", f"no {person.decision} button on {title!r}")
        refused = (
            button is not None
            and _REFUSE.search(f"{button.name} {button.value} {button.label}") is not None
        )
        log(f"  form {title!r}: pressing {button.label or button.value if button else '(enter)'!r}")
        referer = url
        url = urllib.parse.urljoin(url, form.action or url)
        method = "POST" if form.method == "post" else "GET"
        data = _fill(form, person, button, user_code)
        if method == "GET":
            url = f"{url.split('?')[0]}?{urllib.parse.urlencode(data)}"
            data = None
    log("stuck: too many steps")
    return Outcome("stuck", "too many steps")


def play_device(
    verification_uri: str,
    user_code: str | None = None,
    person: Person | None = None,
    *,
    log_path: str | None = None,
) -> Outcome:
    """Open the verification URI (complete, or plain with ``user_code``), sign in, approve."""
    return play(verification_uri, person, log_path=log_path, user_code=user_code, device=True)


def install(
    directory: Path,
    *,
    username: str = "alice",
    password: str = "wonderland",
    decision: str = "allow",
    detach: bool = True,
) -> dict[str, str]:
    """Write the ``$BROWSER`` wrapper into ``directory``; returns the environment variables
    to set (``BROWSER``, the ``JWT_TEST_*`` ones; the log is ``directory/browser.log``)."""
    wrapper = directory / "browser-robot"
    script = Path(__file__).resolve()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {
        "BROWSER": str(wrapper),
        "JWT_TEST_USERNAME": username,
        "JWT_TEST_PASSWORD": password,
        "JWT_TEST_DECISION": decision,
        "JWT_TEST_BROWSER_LOG": str(directory / "browser.log"),
        "JWT_TEST_BROWSER_DETACH": "1" if detach else "0",
    }


@dataclass
class RobotBrowser:
    """What the ``browser_robot`` fixture gives: ``$BROWSER`` is set for this test (and for
    subprocesses that inherit the environment); ``configure`` changes the person."""

    directory: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def log_path(self) -> Path:
        return self.directory / "browser.log"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def says(self, text: str, timeout: float = 30.0) -> bool:
        """Whether the log comes to contain ``text`` within ``timeout`` seconds. The robot is
        another process: it reads the redirect's answer and logs it after the client under test
        has sent that answer and returned, so the line may not be written yet."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def configure(
        self,
        username: str = "alice",
        password: str = "wonderland",
        decision: str = "allow",
        *,
        detach: bool = True,
    ) -> None:
        env = install(
            self.directory, username=username, password=password, decision=decision, detach=detach
        )
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        # webbrowser reads $BROWSER once per process, at its first use; forget that choice.
        self.monkeypatch.setattr(webbrowser, "_tryorder", None)
        self.monkeypatch.setattr(webbrowser, "_browsers", {})


@pytest.fixture
def browser_robot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RobotBrowser:
    """``$BROWSER`` is the robot, playing alice/wonderland who allows; see :class:`RobotBrowser`."""
    directory = tmp_path / "browser-robot"
    directory.mkdir()
    robot = RobotBrowser(directory, monkeypatch)
    robot.configure()
    return robot


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    device = bool(args) and args[0] == "--device"
    if device:
        args.pop(0)
    user_code = None
    if "--user-code" in args:
        at = args.index("--user-code")
        user_code = args[at + 1]
        del args[at : at + 2]
    if len(args) != 1:
        print("usage: browser.py [--device] URL [--user-code CODE]", file=sys.stderr)
        return 64
    if os.environ.get("JWT_TEST_BROWSER_DETACH", "1") == "1" and hasattr(os, "fork"):
        if os.fork() > 0:
            return 0  # like a real browser: the caller goes on at once
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    log_path = os.environ.get("JWT_TEST_BROWSER_LOG")
    try:
        outcome = play(args[0], log_path=log_path, user_code=user_code, device=device)
    except requests.RequestException as error:
        _Log(log_path)(f"stuck: {type(error).__name__}")
        return EXIT_CODES["stuck"]
    print(f"{outcome.status}: {outcome.detail}")
    return EXIT_CODES[outcome.status]


if __name__ == "__main__":
    sys.exit(main())
