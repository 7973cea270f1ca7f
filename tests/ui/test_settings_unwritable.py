"""A settings file that cannot be written never stops the app: it warns and carries on."""

from __future__ import annotations

import logging

import pytest
from pytestqt.qtbot import QtBot

from desktop import config as config_module
from tests.support.keyring import MemoryKeyring
from tests.support.server import StartServer
from tests.ui.conftest import MakeApp
from tests.ui.helpers import sign_in


@pytest.fixture
def unwritable_settings() -> None:
    # A directory where config.json should be: reading gives defaults, writing fails.
    config_module.config_path().mkdir(parents=True)


@pytest.mark.usefixtures("unwritable_settings")
def test_sign_in_reaches_the_main_window_when_the_settings_cannot_be_saved(
    qtbot: QtBot,
    make_app: MakeApp,
    start_server: StartServer,
    memory_keyring: MemoryKeyring,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server()
    # --server URL is saved at start-up: that save fails too, and the app still starts.
    with caplog.at_level(logging.WARNING, logger="desktop.config"):
        app = make_app(server_url=server.url)
        assert app.server_url == server.url
        main = sign_in(qtbot, app, "alice", "wonderland")
    assert main.isVisible() and not app.dialog.isVisible()
    assert main.profile_view.name_label.text() == "Alice Liddell"
    saves = [r for r in caplog.records if r.getMessage().startswith("Could not save")]
    # One warning per failed save (the --server one, the one after sign-in), nothing secret.
    assert [r.levelname for r in saves] == ["WARNING", "WARNING"]
    assert "wonderland" not in caplog.text
    assert config_module.config_path().is_dir()
