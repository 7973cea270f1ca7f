"""Accounts: the index in the settings (migration, switching, forgetting) and the CLI over it
(`switch`, `--user`, `status` listing every account, `logout` of one), against the live server.
An unknown command is an error naming the commands, in a real process with no display."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from desktop import accounts
from desktop.accounts import AccountNotFound
from desktop.cli import main
from desktop.config import Account, Config, config_path, load_config, save_config
from tests.support.keyring import MemoryKeyring, SecretServiceKeyring
from tests.support.server import StartServer

PASSWORDS = {"alice": "wonderland", "bob": "builder"}


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any, stdin: str = "") -> Any:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def login(server: str, user: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, out, err = run(
        ["--server", server, "login", "-u", user, "--password-stdin"],
        monkeypatch,
        capsys,
        stdin=PASSWORDS[user] + "\n",
    )
    assert (code, err) == (0, ""), out


# -- the index ---------------------------------------------------------------------------------


def test_a_settings_file_from_before_the_index_migrates() -> None:
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text(
        json.dumps({"server_url": "http://127.0.0.1:9", "last_username": "alice"})
    )
    config = load_config()
    assert config.accounts == (Account("http://127.0.0.1:9", "alice"),)
    assert accounts.active(config) == Account("http://127.0.0.1:9", "alice")
    save_config(config)
    written = json.loads(config_path().read_text())
    assert written["accounts"] == [
        {"server_url": "http://127.0.0.1:9", "username": "alice", "last_used": None}
    ]


def test_the_index_keeps_names_and_times_never_a_token_and_drops_bad_entries() -> None:
    config = accounts.use(
        Config(), "http://127.0.0.1:9/", "alice", now=lambda: "2026-01-01T00:00:00Z"
    )
    config = accounts.use(config, "http://127.0.0.1:9", "bob", now=lambda: "2026-01-02T00:00:00Z")
    save_config(config)
    raw = json.loads(config_path().read_text())
    assert raw["last_username"] == "bob"
    assert [sorted(entry) for entry in raw["accounts"]] == [
        ["last_used", "server_url", "username"]
    ] * 2
    raw["accounts"].append({"server_url": 3, "username": "x"})
    raw["accounts"].append("junk")
    config_path().write_text(json.dumps(raw))
    loaded = load_config()
    assert [a.username for a in accounts.listed(loaded)] == ["bob", "alice"]  # newest first


def test_use_forget_find_and_select_server() -> None:
    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    clock = iter(f"2026-01-0{i}T00:00:00Z" for i in range(1, 10))
    config = Config()
    for server, name in ((a, "alice"), (a, "bob"), (b, "alice"), (b, "carol")):
        config = accounts.use(config, server, name, now=lambda: next(clock))
    assert accounts.active(config) == Account(b, "carol", "2026-01-04T00:00:00Z")
    # The current server's accounts first.
    assert [accounts.label(x) for x in accounts.listed(config)][:2] == [
        f"carol at {b}",
        f"alice at {b}",
    ]
    with pytest.raises(AccountNotFound, match="several servers"):
        accounts.find(config, "alice")
    assert accounts.find(config, "alice", a).server_url == a
    with pytest.raises(AccountNotFound) as error:
        accounts.find(config, "dave")
    assert f"bob at {a}" in str(error.value) and f"carol at {b}" in str(error.value)
    # Another server: its most recent account becomes the active one, not a name moved over.
    moved = accounts.select_server(config, a)
    assert (moved.server_url, moved.last_username) == (a, "bob")
    # Forgetting the active one hands over to the server's next most recent one.
    after = accounts.forget(moved, a, "bob")
    assert accounts.active(after) == Account(a, "alice", "2026-01-01T00:00:00Z")
    assert len(after.accounts) == 3
    alone = accounts.forget(accounts.forget(after, a, "alice"), b, "carol")
    assert accounts.active(alone) is None
    assert [x.username for x in alone.accounts] == ["alice"]


# -- the CLI ------------------------------------------------------------------------------------


def test_two_accounts_switch_without_a_password_and_sign_out_of_one(
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    server = start_server(access_ttl="60s")
    login(server.url, "alice", monkeypatch, capsys)
    login(server.url, "bob", monkeypatch, capsys)
    stored = {key for key in memory_keyring.secrets if key[0] == f"jwt-desktop:{server.url}"}
    assert stored == {(f"jwt-desktop:{server.url}", "alice"), (f"jwt-desktop:{server.url}", "bob")}

    code, out, _ = run(["status"], monkeypatch, capsys)
    assert code == 0
    assert f"Signed in to {server.url} as bob." in out
    assert f"* bob at {server.url} (checked above)" in out
    assert f"  alice at {server.url}" in out

    # No password: nothing on stdin, and the stored session is what `profile` then uses.
    code, out, err = run(["switch", "alice"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out == f"Switched to alice at {server.url}.\n"
    code, out, _ = run(["profile", "--json"], monkeypatch, capsys)
    assert (code, json.loads(out)["preferred_username"]) == (0, "alice")
    code, out, _ = run(["--user", "bob", "profile", "--json"], monkeypatch, capsys)
    assert (code, json.loads(out)["preferred_username"]) == (0, "bob")
    code, out, _ = run(["status"], monkeypatch, capsys)
    assert code == 0 and f"* alice at {server.url}" in out

    code, out, err = run(["switch", "carol"], monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"jwt-desktop: error: no account 'carol'; known accounts: alice at {server.url}, "
        f"bob at {server.url}\n"
    )
    code, _, err = run(["--user", "carol", "status"], monkeypatch, capsys)
    assert code == 2 and "known accounts" in err

    # Signing out of the active one leaves bob stored, and bob becomes the active one.
    code, out, err = run(["logout"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert f"The active account is now bob at {server.url}." in out
    assert (f"jwt-desktop:{server.url}", "alice") not in memory_keyring.secrets
    assert (f"jwt-desktop:{server.url}", "bob") in memory_keyring.secrets
    code, out, _ = run(["status"], monkeypatch, capsys)
    assert code == 0 and f"Signed in to {server.url} as bob." in out
    assert "alice" not in out
    assert [a.username for a in load_config().accounts] == ["bob"]
    for secret in memory_keyring.secrets.values():
        assert secret not in config_path().read_text()


def test_status_exit_1_when_the_active_account_is_not_signed_in(
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    server = start_server(access_ttl="60s")
    login(server.url, "alice", monkeypatch, capsys)
    login(server.url, "bob", monkeypatch, capsys)
    # bob's entry is gone from the keyring (removed by hand, another tool...): the index still
    # lists him, status says what is wrong and fails; alice is listed as well.
    del memory_keyring.secrets[(f"jwt-desktop:{server.url}", "bob")]
    # ... by a process long gone: the marker beside the lock names a process that has exited,
    # so nobody holds a newer session of bob's that the keyring lacks.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    for marker in Path(os.environ["JWT_DESKTOP_DATA_DIR"]).glob("refresh-*.marker"):
        data = json.loads(marker.read_text())
        marker.write_text(json.dumps({**data, "pid": int(gone.stdout)}))
    code, out, _ = run(["status"], monkeypatch, capsys)
    assert code == 1
    assert f"Not signed in to {server.url}" in out
    assert f"  alice at {server.url}" in out
    code, out, _ = run(["--user", "alice", "status"], monkeypatch, capsys)
    assert code == 0 and f"Signed in to {server.url} as alice." in out


def test_switch_in_real_processes_with_the_real_keyring(
    start_server: StartServer, secret_service_keyring: SecretServiceKeyring
) -> None:
    server = start_server(access_ttl="60s")
    env = {**os.environ, **secret_service_keyring.env}
    service = f"jwt-desktop:{server.url}"

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "desktop", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        for user in ("alice", "bob"):
            done = cli(
                "--server",
                server.url,
                "login",
                "-u",
                user,
                "--password-stdin",
                stdin=PASSWORDS[user],
            )
            assert done.returncode == 0, done.stderr
        done = cli("switch", "alice")
        assert (done.returncode, done.stdout) == (0, f"Switched to alice at {server.url}.\n")
        done = cli("profile", "--json")
        assert json.loads(done.stdout)["preferred_username"] == "alice"
        done = cli("--user", "bob", "logout")
        assert done.returncode == 0, done.stderr
        assert secret_service_keyring.stored(service, "bob") is None
        assert secret_service_keyring.stored(service, "alice") is not None
        done = cli("status")
        assert done.returncode == 0
        assert f"Signed in to {server.url} as alice." in done.stdout
    finally:
        for user in ("alice", "bob"):
            if secret_service_keyring.stored(service, user) is not None:
                secret_service_keyring.backend.delete_password(service, user)


# -- commands that do not exist ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["statsu"], "invalid choice: 'statsu'"),
        (["switch"], "the following arguments are required: NAME"),
        # Without a command, --user opens the GUI as that account: an unknown one is refused
        # before any window (tests/ui/test_open_as_account.py has the known one).
        (["--user", "bob"], "no account 'bob'; known accounts: none"),
        (["--client-id", "x"], "the following arguments are required: COMMAND"),
    ],
)
def test_an_unknown_command_is_exit_2_and_never_the_gui(
    args: list[str], expected: str, tmp_path: Any
) -> None:
    """A real process with no display at all: it must not wait on a GUI (the timeout would
    fail the test) nor even import Qt."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    code = (
        "import sys\n"
        "from desktop.__main__ import main\n"
        f"status = main({args!r})\n"
        "assert 'PySide6' not in sys.modules, 'Qt was imported'\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    if args == ["statsu"]:
        for command in ("login", "status", "profile", "logout", "switch"):
            assert command in done.stderr
