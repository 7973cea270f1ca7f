"""Accounts from the command line and over the single-instance socket: ``jwt-desktop --user
NAME`` opens the GUI as a stored account (no password), an unknown name exits 2 naming the
accounts before any window, and a second start with ``--user`` switches the running window;
the socket ignores anything but a well-formed request for a stored account."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

import desktop.__main__ as entry
from desktop import accounts
from desktop import config as config_module
from desktop.app import Application
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import Revocation
from desktop.config import Config
from desktop.ui.controller import Replaced, SessionController
from desktop.ui.single_instance import (
    MAX_LINE,
    Request,
    SingleInstance,
    decode,
    encode,
    notify_running,
    socket_name,
)
from tests.support.keyring import MemoryKeyring
from tests.support.server import RunningServer, StartServer
from tests.ui.conftest import MakeApp
from tests.ui.fakes import FakeClient
from tests.ui.helpers import (
    REPO,
    TIMEOUT_MS,
    ShowCounter,
    fill_and_submit,
    post_form,
    second_start,
    sign_in,
)


def _showing(app: Application, username: str) -> bool:
    main = app._main
    return (
        main is not None
        and main.isVisible()
        and main.profile is not None
        and main.profile.get("preferred_username") == username
    )


def _store_alice_and_bob(qtbot: QtBot, make_app: MakeApp, server: RunningServer) -> Application:
    """alice and bob both stored; alice shown and active."""
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland")
    main.add_account_action.trigger()
    sign_in(qtbot, app, "bob", "builder")
    qtbot.waitUntil(lambda: _showing(app, "bob"), timeout=TIMEOUT_MS)
    app.switch_account(server.url, "alice")
    qtbot.waitUntil(lambda: _showing(app, "alice"), timeout=TIMEOUT_MS)
    return app


def _save_accounts(*accounts_: tuple[str, str]) -> None:
    config = Config()
    for server, name in accounts_:
        config = accounts.use(config, server, name)
    config_module.save_config(config)


# -- --user NAME on the command line -----------------------------------------------------------


def test_user_opens_the_gui_as_that_account_without_a_password(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    first = _store_alice_and_bob(qtbot, make_app, server)
    first.shutdown()
    first._main.hide()  # type: ignore[union-attr]
    # The last sign-in chose not to stay signed in: a plain start would show the dialog, but
    # an account asked for by name is restored all the same.
    config_module.save_config(dataclasses.replace(config_module.load_config(), remember=False))

    second = make_app(server_url=server.url, account=(server.url, "bob"))
    dialog_shown = ShowCounter(second.dialog)
    qtbot.waitUntil(lambda: _showing(second, "bob"), timeout=TIMEOUT_MS)
    assert dialog_shown.count == 0
    assert second._main is not None
    assert [(a.text(), a.isChecked()) for a in second._main.account_actions()] == [
        ("bob", True),
        ("alice", False),
    ]
    # bob is now the active account (as switching in the menu makes him).
    active = accounts.active(config_module.load_config())
    assert active is not None and active.username == "bob"


@pytest.fixture
def gui_started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """What the GUI would have been started with (nothing is started)."""
    started: list[dict[str, object]] = []

    def gui(qt_args: list[str], **kwargs: object) -> int:
        started.append(kwargs)
        return 0

    monkeypatch.setattr(entry, "_gui", gui)
    return started


def test_user_is_resolved_like_the_clis(
    gui_started: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = "http://127.0.0.1:8765", "http://127.0.0.1:9999"
    _save_accounts((one, "alice"), (one, "bob"), (two, "bob"))
    assert not entry._is_command_line(["--user", "bob"])
    assert not entry._is_command_line(["--user=bob", "--server", "http://x"])

    assert entry.main(["--user", "alice"]) == 0
    assert gui_started[-1]["account"] == (one, "alice")
    assert entry.main(["--server", two, "--user=bob"]) == 0
    assert gui_started[-1] == {"server_url": two, "demo": False, "account": (two, "bob")}

    # Two servers have a bob: --server must say which, as for the CLI.
    gui_started.clear()
    assert entry.main(["--user", "bob"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jwt-desktop: error: there is an account 'bob' on several servers")
    assert "--server URL" in err
    # Not on the server given.
    assert entry.main(["--server", two, "--user", "alice"]) == 2
    assert "no account 'alice' at http://127.0.0.1:9999; known accounts:" in capsys.readouterr().err
    assert gui_started == []


def test_an_unknown_user_exits_2_naming_the_accounts_before_any_window(tmp_path: Path) -> None:
    """A real process: with JWT_DESKTOP_EXIT_WHEN_SHOWN, any window would print "shown"."""
    _save_accounts(("http://127.0.0.1:8765", "alice"), ("http://127.0.0.1:8765", "bob"))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "JWT_DESKTOP_EXIT_WHEN_SHOWN": "1"}
    code = (
        "import sys\n"
        "from desktop.__main__ import main\n"
        "status = main(['--user', 'carol'])\n"
        "assert 'PySide6' not in sys.modules, 'Qt was imported'\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        "jwt-desktop: error: no account 'carol'; known accounts: bob at http://127.0.0.1:8765, "
        "alice at http://127.0.0.1:8765\n"
    )


# -- the running instance --------------------------------------------------------------------


@pytest.fixture
def instance(qapp: object) -> Iterator[SingleInstance]:
    first = SingleInstance(
        socket_name(config_module.config_path().parent), config_module.state_dir() / "i.lock"
    )
    assert first.claim()
    first.listen()
    yield first
    first.close()


def _wired(instance: SingleInstance, app: Application) -> None:
    # As desktop.app.run wires them.
    instance.activated.connect(app.raise_window)
    instance.switchRequested.connect(app.open_account)


def test_a_second_start_with_user_switches_the_running_window(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    instance: SingleInstance,
) -> None:
    server = start_server()
    app = _store_alice_and_bob(qtbot, make_app, server)
    _wired(instance, app)
    dialog_shown = ShowCounter(app.dialog)
    asked: list[tuple[str, str]] = []
    instance.switchRequested.connect(lambda url, name: asked.append((url, name)))

    code, out, err = second_start(qtbot, "--user", "bob")
    assert code == 0, err
    assert out == (
        f"jwt-desktop is already running: it was asked to switch to bob at {server.url}.\n"
    )
    qtbot.waitUntil(lambda: _showing(app, "bob"), timeout=TIMEOUT_MS)
    assert asked == [(server.url, "bob")]
    assert dialog_shown.count == 0  # bob's stored session, no password
    assert accounts.active(config_module.load_config()) == accounts.find(
        config_module.load_config(), "bob"
    )


def test_the_running_window_switches_only_to_a_stored_account(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    instance: SingleInstance,
) -> None:
    server = start_server()
    app = _store_alice_and_bob(qtbot, make_app, server)
    _wired(instance, app)
    name = socket_name(config_module.config_path().parent)
    before = config_module.load_config()
    for account in [(server.url, "mallory"), ("http://127.0.0.1:9", "bob")]:
        with qtbot.waitSignal(instance.switchRequested, timeout=TIMEOUT_MS):
            assert notify_running(name, Request(account))
        assert _showing(app, "alice")
        assert app._restoring_username is None  # no switch was started
    assert config_module.load_config() == before


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"raise",  # no newline
        b"RAISE\n",
        b"raise\nraise\n",
        b"\xff\xfe\n",
        b"null\n",
        b"[]\n",
        b'"raise"\n',
        b"[" * (MAX_LINE - 10) + b"\n",  # nested deeper than the parser goes
        b'{"v": 2, "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}\n',
        b'{"v": true, "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}\n',
        b'{"v": 1.0, "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}\n',
        b'{"v": "1", "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}\n',
        b'{"switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}, "x": 1}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765", "user": "bob", "x": 1}}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765"}}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765", "user": 7}}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765", "user": ""}}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765", "user": "bo\\nb"}}\n',
        b'{"v": 1, "switch": ["http://127.0.0.1:8765", "bob"]}\n',
        b'{"v": 1, "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}',  # unfinished
        json.dumps({"v": 1, "switch": {"server": "http://x", "user": "b" * 600}}).encode() + b"\n",
        b" " * (MAX_LINE + 1) + b"\n",
    ],
)
def test_a_line_that_is_not_ours_is_not_a_request(line: bytes) -> None:
    assert decode(line) is None


def test_the_lines_a_later_start_sends() -> None:
    assert encode(Request()) == b"raise\n"
    assert decode(b"raise\n") == Request()
    line = encode(Request(("http://127.0.0.1:8765", "bob")))
    assert line == b'{"v":1,"switch":{"server":"http://127.0.0.1:8765","user":"bob"}}\n'
    assert decode(line) == Request(("http://127.0.0.1:8765", "bob"))
    # A name with spaces or non-ASCII letters travels whole.
    assert decode(encode(Request(("http://h", "Zoë de Vries")))) == Request(
        ("http://h", "Zoë de Vries")
    )


def test_garbage_on_the_socket_is_ignored(qtbot: QtBot, instance: SingleInstance) -> None:
    """Raw clients, as anything of the user's could connect: each is read, ignored, and the
    instance still answers a real start afterwards."""
    raised: list[None] = []
    switched: list[tuple[str, str]] = []
    instance.activated.connect(lambda: raised.append(None))
    instance.switchRequested.connect(lambda url, name: switched.append((url, name)))
    name = socket_name(config_module.config_path().parent)
    payloads = [
        b"",
        b"hello\n",
        b"\x00" * 100 + b"\n",
        os.urandom(64 * 1024),  # far more than a line
        b'{"v": 2, "switch": {"server": "http://127.0.0.1:8765", "user": "bob"}}\n',
        b"[" * 1500 + b"\n",
    ]
    for payload in payloads:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(name)
            client.sendall(payload)
    # Handled in order: once the real start's request is seen, the garbage before it was read.
    with qtbot.waitSignal(instance.activated, timeout=TIMEOUT_MS):
        assert notify_running(name)
    assert raised == [None]
    assert switched == []


# -- Add account over a session that is not stored ---------------------------------------------


def _app_sessions(server: RunningServer) -> list[str]:
    """The usernames of the server's active sessions, from its admin API, asked as a third
    party (its own admin sign-in is left out, and revoked after)."""
    status, tokens = post_form(
        f"{server.url}/token",
        {
            "grant_type": "password",
            "username": "alice",
            "password": "wonderland",
            "client_id": "jwt-desktop",
            "scope": "openid sessions:admin",
        },
    )
    assert status == 200, tokens
    request = urllib.request.Request(
        f"{server.url}/api/sessions",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        listed = json.loads(response.read())["sessions"]
    # Not left among the next call's sessions.
    revoke = {"token": tokens["refresh_token"], "client_id": "jwt-desktop"}
    assert post_form(f"{server.url}/revoke", revoke)[0] == 200
    return sorted(s["username"] for s in listed if not s["current"])


def test_add_account_over_a_session_not_stored_revokes_it_at_the_server(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland", remember=False)
    assert _app_sessions(server) == ["alice"]

    main.add_account_action.trigger()
    # Said before, not after: adding an account ends a session that was not stored.
    assert app.dialog.notice_label.isVisible()
    assert app.dialog.notice_label.text() == (
        "You are signed in as alice without staying signed in: signing in to another account "
        "signs alice out."
    )
    sign_in(qtbot, app, "bob", "builder")
    qtbot.waitUntil(lambda: _showing(app, "bob"), timeout=TIMEOUT_MS)
    # alice's session was revoked at the server, not left to expire there; bob's is live.
    assert _app_sessions(server) == ["bob"]
    assert main.statusBar().currentMessage() == f"Signed out alice from {server.url}."
    assert [(a.text(), a.isChecked()) for a in main.account_actions()] == [("bob", True)]
    status = app.controller.status()
    assert status is not None and status.username == "bob" and status.remembered
    main.reload_button.click()  # the new session works on the core that replaced the old one
    qtbot.waitUntil(
        lambda: "Profile reloaded" in main.statusBar().currentMessage(), timeout=TIMEOUT_MS
    )


def test_a_failed_add_account_leaves_the_session_not_stored_whole(
    qtbot: QtBot, make_app: MakeApp, start_server: StartServer, memory_keyring: MemoryKeyring
) -> None:
    server = start_server()
    app = make_app(server_url=server.url)
    main = sign_in(qtbot, app, "alice", "wonderland", remember=False)
    main.add_account_action.trigger()
    with qtbot.waitSignal(app.controller.settled, timeout=TIMEOUT_MS):
        fill_and_submit(qtbot, app, "bob", "wrong password")
    assert app.dialog.error_label.isVisible()
    # The dialog is closed: alice goes on, signed in, as if nothing had been tried.
    app.dialog.reject()
    assert app.controller.signed_in and main.isVisible()
    assert _app_sessions(server) == ["alice"]
    status = app.controller.status()
    assert status is not None and status.username == "alice"
    with qtbot.waitSignal(app.controller.settled, timeout=TIMEOUT_MS):
        main.reload_button.click()
    assert _showing(app, "alice")


# The controller's part, where the faults come from fakes: a cancelled Add account, and an old
# session whose sign-out fails.


@pytest.fixture
def cores(qapp: object) -> Iterator[tuple[SessionController, list[FakeClient]]]:
    """A controller whose factory makes a new fake core each time; alice signed in on the first
    without staying signed in."""
    made: list[FakeClient] = []

    def factory() -> FakeClient:
        made.append(FakeClient())
        return made[-1]

    control = SessionController(factory)
    done: list[object] = []
    control.sign_in(
        PasswordGrant("alice", "wonderland"),
        remember=False,
        success=done.append,
        failure=done.append,
    )
    yield control, made
    control.shutdown()
    control.deleteLater()


def test_a_cancelled_add_account_is_undone_on_its_own_core(
    qtbot: QtBot, cores: tuple[SessionController, list[FakeClient]]
) -> None:
    control, made = cores
    qtbot.waitUntil(lambda: control.signed_in, timeout=TIMEOUT_MS)
    alice = made[0]
    replaced: list[Replaced] = []
    outcomes: list[object] = []

    # The next sign-in gets a second core, held until released; cancelled meanwhile.
    def hold_next() -> FakeClient:
        core = FakeClient()
        core.hold.set()
        made.append(core)
        return core

    control._client_factory = hold_next
    control.sign_in(
        PasswordGrant("bob", "builder"),
        remember=True,
        success=outcomes.append,
        failure=outcomes.append,
        replaced=replaced.append,
    )
    qtbot.waitUntil(lambda: len(made) == 2 and made[1].holding.is_set(), timeout=TIMEOUT_MS)
    control.cancel_sign_in()
    made[1].release.set()
    qtbot.waitUntil(lambda: made[1].closed, timeout=TIMEOUT_MS)
    # bob's session was signed out on its own core; alice's untouched, still the current one.
    assert made[1].calls == ["sign_in", "sign_out"]
    assert "sign_out" not in alice.calls and not alice.closed
    status = control.status()
    assert status is not None and status.username == "alice"
    assert replaced == [] and outcomes == []


def test_a_failed_sign_out_of_the_old_session_keeps_the_new_one(
    qtbot: QtBot, cores: tuple[SessionController, list[FakeClient]]
) -> None:
    control, made = cores
    qtbot.waitUntil(lambda: control.signed_in, timeout=TIMEOUT_MS)
    alice = made[0]
    alice.sign_out_error = OSError("the server went away")
    replaced: list[Replaced] = []
    with qtbot.waitSignal(control.settled, timeout=TIMEOUT_MS):
        control.sign_in(
            PasswordGrant("bob", "builder"),
            remember=True,
            success=lambda result: None,
            failure=lambda failure: None,
            replaced=replaced.append,
        )
    assert replaced == [Replaced("alice", "http://127.0.0.1:9", Revocation.NOT_CONFIRMED)]
    status = control.status()
    assert status is not None and status.username == "bob"
    assert alice.closed and not made[1].closed
