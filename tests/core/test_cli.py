"""The headless commands: in-process for the details, real processes for the real thing
(``python -m desktop``, the real Secret Service keyring, several processes at once)."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from desktop.auth.dpop import DPoPKey
from desktop.auth.grants import PasswordGrant
from desktop.auth.messages import Revocation
from desktop.cli import EXIT_KEYRING, main
from desktop.config import Config, config_path, load_config, save_config
from tests.core.fakes import closed_port_url
from tests.support.keyring import MemoryKeyring, SecretServiceKeyring
from tests.support.server import RunningServer

ALICE_PW = "wonderland"


# The CLI's processes read the real clock, so the server's may move at most DPoP's 60 s `iat`
# window ahead of it: 55 s, past the 50 s access tokens. The server requires DPoP (as the demo's
# does), so every stored session here is a bound one, its key in the keyring entry.
ACCESS_TTL, PAST_THE_ACCESS_TOKEN = "50s", 55


@pytest.fixture
def server(start_server: Any) -> RunningServer:
    return start_server(access_ttl=ACCESS_TTL, extra_args=["--dpop", "required"])


def run(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_says_bearer_tokens_are_usable_by_whoever_holds_them(
    start_server: Any,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    bearer = start_server(access_ttl=ACCESS_TTL, extra_args=["--dpop", "off"])
    login = ["--server", bearer.url, "login", "--username", "alice", "--password-stdin"]
    code, out, err = run(login, monkeypatch, capsys, stdin=ALICE_PW + "\n")
    assert code == 0, err
    assert "Tokens: Bearer: usable by whoever holds it.\n" in out
    code, out, err = run(["status"], monkeypatch, capsys)
    assert code == 0, err
    assert "Tokens: Bearer: usable by whoever holds it.\n" in out
    assert "DPoP" not in out
    assert "dpop_key" not in next(iter(memory_keyring.secrets.values()))


def test_login_status_profile_logout_in_process(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    code, out, err = run(
        ["--server", server.url, "login", "--username", "alice", "--password-stdin"],
        monkeypatch,
        capsys,
        stdin=ALICE_PW + "\n",
    )
    assert (code, err) == (0, "")
    assert f"Signed in to {server.url} as Alice" in out
    assert "stored in the OS keyring" in out
    config = load_config()
    assert config.server_url == server.url  # --server given to login is remembered
    assert config.last_username == "alice"
    assert config.remember is True

    code, out, err = run(["status"], monkeypatch, capsys)
    assert code == 0, err
    assert f"Signed in to {server.url} as alice." in out
    assert MemoryKeyring.name in out
    assert re.search(r"^Access token valid for (49|50) s\.$", out, re.MULTILINE)
    assert "Tokens: Bound to this device's key (DPoP).\n" in out

    code, out, err = run(["profile", "--json"], monkeypatch, capsys)
    assert code == 0, err
    profile = json.loads(out)
    assert profile["preferred_username"] == "alice"

    code, out, err = run(["profile"], monkeypatch, capsys)
    assert code == 0, err
    groups = next(line for line in out.splitlines() if line.startswith("groups "))
    assert sorted(groups.split(None, 1)[1].split(", ")) == ["admin", "staff"]

    code, out, err = run(["logout"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert "Signed out alice" in out
    assert memory_keyring.secrets == {}
    assert load_config().last_username is None

    code, out, _ = run(["status"], monkeypatch, capsys)
    assert code == 1
    assert "Not signed in" in out
    code, out, _ = run(["logout"], monkeypatch, capsys)
    assert code == 0 and "nothing to do" in out


def test_no_remember_is_not_stored(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    code, out, _ = run(
        ["login", "--server", server.url, "-u", "bob", "--password-stdin", "--no-remember"],
        monkeypatch,
        capsys,
        stdin="builder",
    )
    assert code == 0
    assert "not stored (--no-remember)" in out
    assert memory_keyring.secrets == {}
    assert load_config().remember is False
    code, _, _ = run(["status"], monkeypatch, capsys)
    assert code == 1


@pytest.mark.parametrize(
    ("argv", "stdin", "code", "message"),
    [
        (["login", "-u", "alice", "--password-stdin"], "nope\n", 1, "username or password is"),
        (["login", "-u", "alice"], "", 2, "with --password-stdin"),
        (["login", "--password-stdin"], ALICE_PW, 2, "use --username NAME"),
        (["login", "-u", "alice", "--password-stdin"], "\n", 2, "empty password"),
        (["profile"], "", 1, "not signed in to"),
        (["--server", "http://example.com", "status"], "", 1, "only loopback"),
    ],
)
def test_errors_are_one_line_on_stderr(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    argv: list[str],
    stdin: str,
    code: int,
    message: str,
) -> None:
    save_config(Config(server_url=server.url))
    got, out, err = run(argv, monkeypatch, capsys, stdin=stdin)
    assert got == code
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("jwt-desktop: error: ")
    assert message in err
    assert "Traceback" not in err


def test_unreachable_server_is_one_line(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    url = closed_port_url()
    code, out, err = run(
        ["--server", url, "login", "-u", "alice", "--password-stdin"],
        monkeypatch,
        capsys,
        stdin=ALICE_PW,
    )
    assert (code, out) == (1, "")
    assert err == f"jwt-desktop: error: Could not connect to the server at {url}.\n"
    assert not config_path().exists()  # a failed login remembers nothing


def test_bad_usage_is_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, _, err = run(["frobnicate"], monkeypatch, capsys)
    assert code == 2
    assert "invalid choice" in err


def _cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "desktop", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _child_env(keyring_env: dict[str, str]) -> dict[str, str]:
    # The config/state dirs are the test's (set by the autouse fixture in os.environ).
    return {**os.environ, **keyring_env}


def test_real_processes_share_one_stored_session(
    server: RunningServer, secret_service_keyring: SecretServiceKeyring
) -> None:
    """login in one process; the server's clock moves past the stored access token's life;
    then 4 `profile` processes at once on the stored session: each is refused its access token,
    they take turns at the lock, the first refreshes and the others adopt what it stored. All
    succeed, the server never sees a refresh token twice, and the session still works."""
    env = _child_env(secret_service_keyring.env)
    service = f"jwt-desktop:{server.url}"
    done = _cli(
        ["--server", server.url, "login", "-u", "alice", "--password-stdin", "--remember"],
        env,
        stdin=ALICE_PW + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert "SecretService Keyring" in done.stdout
    assert "Tokens: Bound to this device's key (DPoP)." in done.stdout
    try:
        before = secret_service_keyring.stored(service, "alice")
        assert before is not None
        key = json.loads(before)["dpop_key"]  # the key travels in the same entry
        server.advance_clock(PAST_THE_ACCESS_TOKEN)  # the stored access token is dead there
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "desktop", "profile", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            assert json.loads(out)["preferred_username"] == "alice"
        with sqlite3.connect(server.db) as db:
            revoked = db.execute("SELECT revoked_at, revoked_reason FROM families").fetchall()
            tokens = db.execute("SELECT count(*) FROM refresh_tokens").fetchone()[0]
        assert revoked == [(None, None)]  # no reuse detected
        assert tokens == 1 + 1  # one rotation; the others reused its result
        after = secret_service_keyring.stored(service, "alice")
        assert after not in (None, before)
        # Still bound to the same key: the rotation happened with a proof of it.
        assert json.loads(after)["dpop_key"] == key
        with sqlite3.connect(server.db) as db:
            bound = db.execute("SELECT dpop_jkt FROM families").fetchall()
        assert bound == [(DPoPKey.from_json(key).thumbprint,)]

        status = _cli(["status"], env)
        assert status.returncode == 0, status.stderr
        assert "Signed in" in status.stdout and "SecretService Keyring" in status.stdout
        assert "Tokens: Bound to this device's key (DPoP)." in status.stdout

        logout = _cli(["logout"], env)
        assert logout.returncode == 0, logout.stderr
        assert "Signed out alice" in logout.stdout
        assert secret_service_keyring.stored(service, "alice") is None
        assert _cli(["status"], env).returncode == 1
    finally:
        if secret_service_keyring.stored(service, "alice") is not None:
            secret_service_keyring.backend.delete_password(service, "alice")


def test_real_process_without_a_keyring_says_so(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    done = _cli(
        ["--server", server.url, "login", "-u", "alice", "--password-stdin"],
        env,
        stdin=ALICE_PW,
    )
    # Signed in, but for nothing: keyring trouble has its own exit status.
    assert done.returncode == EXIT_KEYRING == 3, done.stderr
    assert done.stderr == ""
    assert "The session was not stored: No OS keyring is available" in done.stdout
    status = _cli(["status"], env)
    assert status.returncode == 1


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    done = _cli(["--server", closed_port_url(), "status"], dict(os.environ))
    # Nobody signed in: exit 1 without even contacting the server.
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    done = _cli(["--server", closed_port_url(), "login", "-u", "a", "--password-stdin"], env, "x")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Could not connect" in done.stderr


def test_cli_processes_and_an_in_process_client_share_the_session(
    server: RunningServer, secret_service_keyring: SecretServiceKeyring
) -> None:
    """The GUI's situation: a long-lived client (default lock dir, as the app builds it)
    refreshing while CLI processes refresh the same stored session."""
    from desktop.auth.session import AuthClient
    from desktop.auth.store import KeyringStore
    from tests.core.fakes import FakeClock

    env = _child_env(secret_service_keyring.env)
    service = f"jwt-desktop:{server.url}"
    save_config(Config(server_url=server.url, last_username="alice"))
    clock = FakeClock()
    client = AuthClient(server.url, store=KeyringStore(timeout=10), clock=clock)
    try:
        client.sign_in(PasswordGrant("alice", ALICE_PW), remember=True)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "desktop", "profile", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for _ in range(5):
            clock.advance(45)
            assert client.profile()["preferred_username"] == "alice"
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert json.loads(out)["preferred_username"] == "alice"
        with sqlite3.connect(server.db) as db:
            revoked = db.execute("SELECT revoked_at FROM families").fetchall()
            tokens = db.execute("SELECT count(*) FROM refresh_tokens").fetchone()[0]
        assert revoked == [(None,)]
        # The CLI processes reused the stored access token: only the client's own refreshes.
        assert tokens == 1 + 5
        clock.advance(45)
        assert client.profile()["preferred_username"] == "alice"
        assert client.sign_out() is Revocation.REVOKED
    finally:
        client.close()
        if secret_service_keyring.stored(service, "alice") is not None:
            secret_service_keyring.backend.delete_password(service, "alice")


def test_password_prompt_on_a_terminal_does_not_echo(
    server: RunningServer, secret_service_keyring: SecretServiceKeyring
) -> None:
    """stdin a real terminal (a pty): the password is asked for, and not echoed back."""
    import pty  # POSIX only, like the rest of this module's real-process tests
    import select

    service = f"jwt-desktop:{server.url}"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop", "--server", server.url, "login", "-u", "alice"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_child_env(secret_service_keyring.env),
        start_new_session=True,  # no controlling terminal: getpass uses the pty on stdin
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        import time

        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                seen += chunk

    try:
        read_until(b"Password for alice at ")
        os.write(master, ALICE_PW.encode() + b"\n")
        read_until(b"Signed in to")
        read_until(b"\n", timeout=5)
        assert proc.wait(timeout=60) == 0, seen
        assert b"Signed in to" in seen
        assert ALICE_PW.encode() not in seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        if secret_service_keyring.stored(service, "alice") is not None:
            secret_service_keyring.backend.delete_password(service, "alice")


def test_login_and_logout_succeed_when_the_settings_cannot_be_written(
    server: RunningServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    config_path().mkdir(parents=True)  # a directory where the settings file should be
    code, out, err = run(
        ["--server", server.url, "login", "--username", "alice", "--password-stdin"],
        monkeypatch,
        capsys,
        stdin=ALICE_PW + "\n",
    )
    assert code == 0
    assert f"Signed in to {server.url} as Alice" in out
    assert err.count("\n") == 1
    assert err.startswith("jwt-desktop: warning: could not save the settings")
    assert ALICE_PW not in err
    # The session really is stored, though the settings do not name its user.
    assert any(
        service.startswith("jwt-desktop:") and "probe" not in service
        for service, _ in memory_keyring.secrets
    )

    # The CLI carries on with defaults: logout finds no remembered user, says so, exits 0.
    code, out, err = run(["--server", server.url, "logout"], monkeypatch, capsys)
    assert code == 0
    assert "nothing to do" in out
    assert err == ""


def _token_requests(server: RunningServer) -> int:
    """POSTs to /token the server logged (its access log, one line a request)."""
    return sum('"POST /token ' in line for line in server.output().splitlines())


def test_commands_within_the_access_token_life_make_no_refresh(
    server: RunningServer, secret_service_keyring: SecretServiceKeyring
) -> None:
    """gh/az/MSAL style: `login`, then commands in other processes reuse the stored access
    token while it is valid; once it is not, exactly one refresh, then reuse again."""
    env = _child_env(secret_service_keyring.env)
    service = f"jwt-desktop:{server.url}"
    done = _cli(
        ["--server", server.url, "login", "-u", "alice", "--password-stdin"],
        env,
        stdin=ALICE_PW + "\n",
    )
    assert done.returncode == 0, done.stderr
    try:
        assert _token_requests(server) == 1  # the password grant
        for command in (["profile"], ["status"], ["profile", "--json"], ["status"]):
            run_ = _cli(command, env)
            assert run_.returncode == 0, run_.stderr
        assert "GET /userinfo" in server.output()  # the commands did talk to the server
        assert _token_requests(server) == 1  # and never to its token endpoint
        server.advance_clock(PAST_THE_ACCESS_TOKEN)  # the stored access token is now dead
        stale = _cli(["profile", "--json"], env)
        assert stale.returncode == 0, stale.stderr
        assert json.loads(stale.stdout)["preferred_username"] == "alice"
        assert _token_requests(server) == 2  # one refresh
        for command in (["status"], ["profile"]):
            assert _cli(command, env).returncode == 0
        assert _token_requests(server) == 2  # the refreshed token is reused in turn
    finally:
        if secret_service_keyring.stored(service, "alice") is not None:
            secret_service_keyring.backend.delete_password(service, "alice")
