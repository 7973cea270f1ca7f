"""Settings file, and what importing the core pulls in (no Qt; config stays light)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SERVER_URL,
    Config,
    config_path,
    load_config,
    save_config,
    state_dir,
)


def test_dirs_follow_the_environment(isolated_dirs: dict[str, Path]) -> None:
    assert config_path() == isolated_dirs["config"] / "config.json"
    assert state_dir() == isolated_dirs["data"]


def test_defaults_when_missing() -> None:
    config = load_config()
    assert config == Config(DEFAULT_SERVER_URL, DEFAULT_CLIENT_ID, None, True)
    assert not config_path().exists()


def test_round_trip_and_atomic_write() -> None:
    config = Config(server_url="http://127.0.0.1:9", last_username="bob", remember=False)
    save_config(config)
    assert load_config() == config
    assert json.loads(config_path().read_text())["last_username"] == "bob"
    # Only the file itself: no temporary file left behind.
    assert [p.name for p in config_path().parent.iterdir()] == ["config.json"]


def test_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "c.json"
    save_config(Config(last_username="carol"), path)
    assert load_config(path).last_username == "carol"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "", '"text"', "\x00\xff"])
def test_corrupt_file_gives_defaults(content: str) -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text(content, encoding="latin-1")
    assert load_config() == Config()


def test_wrong_types_fall_back_per_field() -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text(
        json.dumps(
            {"server_url": 5, "client_id": "app", "last_username": "", "remember": "yes", "x": 1}
        )
    )
    assert load_config() == Config(client_id="app")


def _imported_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(done.stdout.split())


CORE_MODULES = sorted(
    f"desktop.auth.{path.stem}"
    for path in (Path(__file__).parents[2] / "desktop" / "auth").glob("*.py")
    if path.stem != "__init__"
)


def test_the_core_imports_without_qt() -> None:
    # Every module of the core, whatever lanes add to it later.
    assert {"desktop.auth.session", "desktop.auth.transport", "desktop.auth.grants"} <= set(
        CORE_MODULES
    )
    modules = _imported_after(
        "".join(f"import {name}\n" for name in CORE_MODULES)
        + "import desktop.auth, desktop.cli, desktop.config\n"
        "from desktop.auth import AuthClient, SessionStatus, SignInResult, PasswordGrant"
    )
    assert set(CORE_MODULES) <= modules  # the test really imported them
    assert not {m for m in modules if m == "PySide6" or m.startswith("PySide6.")}


def test_building_a_password_grant_stays_light() -> None:
    # The GUI builds the grant on its own thread when the person presses Sign in.
    modules = _imported_after("from desktop.auth.grants import PasswordGrant")
    assert {"requests", "keyring", "PySide6", "filelock"}.isdisjoint(modules)


def test_config_module_stays_light() -> None:
    modules = _imported_after("import desktop.config")
    assert {"requests", "keyring", "jwt", "PySide6", "filelock"}.isdisjoint(modules)


def test_desktop_auth_package_does_not_import_requests_until_needed() -> None:
    modules = _imported_after("import desktop.auth")
    assert "requests" not in modules
    assert "requests" in _imported_after("from desktop.auth import AuthClient")


def test_json_nested_too_deep_gives_defaults() -> None:
    # json raises RecursionError (not ValueError) for nesting beyond the recursion limit.
    config_path().parent.mkdir(parents=True)
    config_path().write_text("[" * 100_000, encoding="utf-8")
    assert load_config() == Config()


def test_a_directory_in_place_of_the_file_gives_defaults() -> None:
    config_path().mkdir(parents=True)
    assert load_config() == Config()


def test_saving_over_a_directory_warns_once_and_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config_path().mkdir(parents=True)
    with caplog.at_level("WARNING", logger="desktop.config"):
        assert save_config(Config(last_username="alice")) is False
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert str(config_path()) in caplog.text
    # No temporary file left behind next to the directory.
    assert [p.name for p in config_path().parent.iterdir()] == ["config.json"]
    assert load_config() == Config()


def test_saving_where_the_directory_cannot_be_made_returns_false(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert save_config(Config(), blocker / "config.json") is False


def test_a_successful_save_returns_true() -> None:
    assert save_config(Config(last_username="bob")) is True
    assert load_config().last_username == "bob"
