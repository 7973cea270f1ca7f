"""The one place that builds and wires everything: config, core, controller, windows.

Start-up is tuned for the first frame: only Qt, the config module and the widgets are imported
before the first window is painted. The core (``requests``, ``keyring``, ``jwt``) is imported
and built by the controller's first background task, which starts after that first frame.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QWidget

from desktop import accounts, assets
from desktop import config as config_module

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QIcon

    from desktop.auth.grants import Grant, SignInMethods
    from desktop.auth.messages import Revocation
    from desktop.auth.oauth import ServerMetadata
    from desktop.auth.session import SessionStatus, SignInResult
    from desktop.auth.store import StorageStatus
    from desktop.demo import DemoServer
    from desktop.ui.controller import AuthClientLike, Reloaded, Replaced, SessionController
    from desktop.ui.main_window import MainWindow
    from desktop.ui.messages import Failure
    from desktop.ui.sign_in_dialog import SignInDialog
    from desktop.ui.theme import SchemeFollower

_log = logging.getLogger(__name__)

# Set to 1, the app prints "jwt-desktop: shown <title>" once its first window is painted, and
# quits: the start-up benchmark measures up to that line.
EXIT_WHEN_SHOWN_ENV = "JWT_DESKTOP_EXIT_WHEN_SHOWN"


class _FirstFrame(QObject):
    """Emits ``painted`` once, on the event loop turn after ``widget`` first paints.

    Signals:
        painted(): the first frame of ``widget`` is on screen.
    """

    painted = Signal()

    def __init__(self, widget: QWidget, parent: QObject) -> None:
        super().__init__(parent)
        self._widget: QWidget | None = widget
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.painted)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self._widget is not None:
            self._widget.removeEventFilter(self)
            self._widget = None
            self._timer.start()
        return False


def real_client_factory(
    server_url: str, client_id: str, demo: DemoServer | None
) -> Callable[[], AuthClientLike]:
    """Build the real core, in the controller's worker (the imports are the slow part)."""

    def build() -> AuthClientLike:
        url = demo.ensure() if demo is not None else server_url
        from desktop.auth import AuthClient, KeyringStore
        from desktop.auth.idtoken import IDTokenValidator

        return AuthClient(
            url,
            client_id=client_id,
            store=KeyringStore(),
            lock_dir=config_module.state_dir(),
            id_token_validator=IDTokenValidator(),
        )

    return build


class Application(QObject):
    """Owns the controller and the windows, and moves between their states:
    silent sign-in ("Signing in…"), the sign-in dialog, and the signed-in main window.

    Accounts (:mod:`desktop.accounts`): the stored ones are listed in the main window's
    Accounts menu; choosing one restores its stored session (no password), "Add account…"
    opens the dialog with the current session kept (one not stored is revoked once the new
    account is signed in: nothing could bring it back), and signing out of one moves on to the
    most recently used other account of the server, when there is one. ``--user NAME`` opens
    as a stored account, and a later start with it switches this one (:meth:`open_account`).

    Signals:
        firstFrameShown(): the first window has painted (what is not needed for it waits).
    """

    firstFrameShown = Signal()

    def __init__(
        self,
        *,
        server_url: str | None = None,
        demo: DemoServer | None = None,
        client_factory: Callable[[], AuthClientLike] | None = None,
        settings: QSettings | None = None,
        quit_app: Callable[[], None] = QApplication.quit,
        account: tuple[str, str] | None = None,
        parent: QObject | None = None,
    ) -> None:
        """``account``: (server URL, name) of a stored account to open as (``--user NAME``),
        whatever the active one is; it becomes the active one."""
        super().__init__(parent)
        self._demo = demo
        self._quit = quit_app
        loaded = config = config_module.load_config()
        if server_url is not None and server_url != config.server_url and demo is None:
            config = accounts.select_server(config, server_url)
        if demo is not None:
            # Not saved: a demo run does not change the server remembered for normal runs.
            config = accounts.select_server(config, config_module.DEFAULT_SERVER_URL)
        if account is not None:
            config = accounts.use(config, *account)
        if demo is None and config != loaded:
            config_module.save_config(config)
        # Asked for by name: restored even when the last sign-in chose not to stay signed in.
        self._open_as = account is not None
        self._config = config
        self.server_url = config.server_url
        self._client_factory_for: Callable[[str], Callable[[], AuthClientLike]] = lambda url: (
            real_client_factory(url, config.client_id, None)
        )
        if client_factory is None:
            client_factory = real_client_factory(self.server_url, config.client_id, demo)
        self._client_factory = client_factory
        # The account shown or being restored, (server URL, name): the one a session end or
        # a sign-out forgets.
        self._account: tuple[str, str] | None = None
        self._switch_notice: str | None = None
        self._controller: SessionController | None = None
        self._settings = settings
        self._main: MainWindow | None = None
        self._restoring_username: str | None = None
        # username (None: named from the tokens), remember
        self._pending: tuple[str | None, bool] | None = None
        self._started_core = False
        self._first_frame_done = False

        self._dialog: SignInDialog | None = None
        self._storage: StorageStatus | None = None
        self._methods: SignInMethods | None = None  # what the server offers, once discovered
        self._icon: QIcon | None = None
        self._scheme: SchemeFollower | None = None

    @property
    def dialog(self) -> SignInDialog:
        """Built on first use: a silent sign-in may never need it."""
        if self._dialog is None:
            from desktop.ui.sign_in_dialog import SignInDialog

            demo_credentials = None
            if self._demo is not None:
                from desktop.demo import DEMO_PASSWORD, DEMO_USERNAME

                demo_credentials = (DEMO_USERNAME, DEMO_PASSWORD)
            dialog = SignInDialog(self.server_url, demo_credentials=demo_credentials)
            if self._config.last_username:
                dialog.set_username(self._config.last_username)
            dialog.set_remember(self._config.remember)
            if self._storage is not None:
                dialog.set_storage(self._storage)
            if self._icon is not None:
                dialog.set_icon(self._icon)
            status = self._status()
            if status is not None:
                dialog.set_server(status.server_url)
            self._dialog = dialog
            self._apply_methods()
            dialog.submitted.connect(self._on_submitted)
            dialog.browserRequested.connect(self._on_browser_requested)
            dialog.deviceRequested.connect(self._on_device_requested)
            dialog.cancelled.connect(self._on_cancelled)
            dialog.rejected.connect(self._on_dialog_dismissed)
            self._dialog = dialog
        return self._dialog

    @property
    def controller(self) -> SessionController:
        """Built on first use, after the first frame (it is not needed to paint it)."""
        if self._controller is None:
            from desktop.ui.controller import SessionController

            c = SessionController(self._client_factory, self)
            # What belongs to the session; each request brings its own handlers.
            c.requestFailed.connect(self._on_request_failed)
            c.sessionEnded.connect(self._on_session_ended)
            c.refreshed.connect(self._on_refreshed)
            c.signInProgress.connect(self._on_sign_in_progress)
            c.busyChanged.connect(self._on_busy_changed)
            self._controller = c
        return self._controller

    def _status(self) -> SessionStatus | None:
        return self._controller.status() if self._controller is not None else None

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> QWidget:
        """Show the first window and return it: "Signing in…" when a session is stored
        (silent sign-in), else the sign-in dialog. The core starts after its first frame."""
        remember = self._config.remember or self._open_as
        username = self._config.last_username if remember else None
        first: QWidget
        if username:
            self._restoring_username = username
            self._account = (self.server_url, username)
            main = self.main_window()
            main.show_signing_in(username)
            main.show()
            first = main
        else:
            self.dialog.show()
            first = self.dialog
        self._first_frame = _FirstFrame(first, self)
        self._first_frame.painted.connect(self._after_first_frame)
        # In case no paint ever comes (a window manager that starts it minimized...), the
        # core must start anyway, or a silent sign-in would wait for ever.
        self._fallback = QTimer(self)
        self._fallback.setSingleShot(True)
        self._fallback.timeout.connect(self._after_first_frame)
        self._fallback.start(2000)
        return first

    def _after_first_frame(self) -> None:
        if self._first_frame_done:
            return
        self._first_frame_done = True
        self._fallback.stop()
        if os.environ.get(EXIT_WHEN_SHOWN_ENV) == "1":
            window = QApplication.activeWindow() or self._visible_window()
            title = window.windowTitle() if window is not None else ""
            print(f"jwt-desktop: shown {title}", flush=True)  # noqa: T201 - the bench reads it
            QApplication.quit()
            return
        try:
            self._apply_resources()
            if self._main is not None:
                self._main.install_shortcuts()
            self._start_core()
        finally:
            # Whatever failed above: what waits for the first frame (garbage collection back
            # on, the single-instance server) must not wait for ever.
            self.firstFrameShown.emit()

    def _start_core(self) -> None:
        if self._started_core:
            return
        self._started_core = True
        self.controller.warm_up(self._on_storage_checked, self._on_request_failed)
        # Off the GUI thread like every request: which ways of signing in the dialog offers.
        self.controller.discover(self._on_metadata)
        if self._restoring_username:
            self.controller.restore(
                self._restoring_username, self._on_restored, self._on_request_failed
            )

    def _visible_window(self) -> QWidget | None:
        if self._dialog is not None and self._dialog.isVisible():
            return self._dialog
        if self._main is not None and self._main.isVisible():
            return self._main
        return None

    def follow_color_scheme(self) -> None:
        """Light or dark as the system says, now and when it changes (see desktop.ui.theme)."""
        if self._scheme is None:
            from desktop.ui.theme import SchemeFollower

            app = QApplication.instance()
            if isinstance(app, QApplication):
                self._scheme = SchemeFollower(app, self)

    def _apply_resources(self) -> None:
        self.follow_color_scheme()
        # After the first frame: the SVG image plugin is not needed to paint it.
        icon = load_icon()
        if icon is not None:
            self._icon = icon
            QApplication.setWindowIcon(self._icon)
            if self._dialog is not None:
                self._dialog.set_icon(self._icon)

    def shutdown(self) -> None:
        """Save the geometry, wait for the request in flight, stop a demo server we started."""
        if self._main is not None:
            self._main.save_geometry()
            self._main.stop()
        if self._controller is not None:
            self._controller.shutdown()
        if self._demo is not None:
            self._demo.stop()

    def main_window(self) -> MainWindow:
        if self._main is None:
            from PySide6.QtCore import QSettings

            from desktop.ui.main_window import MainWindow

            if self._settings is None:
                self._settings = QSettings(
                    str(config_module.config_path().parent / "window.ini"),
                    QSettings.Format.IniFormat,
                )
            main = MainWindow(self._status, self._settings)
            main.reloadRequested.connect(self._on_reload)
            main.signOutRequested.connect(self._on_sign_out_requested)
            main.retryRequested.connect(self._on_retry)
            main.tokensRequested.connect(self._on_tokens_requested)
            main.sessionsRequested.connect(self._on_sessions_requested)
            main.revokeRequested.connect(self._on_revoke_requested)
            main.quitRequested.connect(self._quit)
            main.switchRequested.connect(self.switch_account)
            main.addAccountRequested.connect(self.add_account)
            main.set_accounts(accounts.listed(self._config), accounts.active(self._config))
            self._main = main
        return self._main

    # -- transitions ----------------------------------------------------------------------

    def _show_dialog(self, notice: str | None) -> None:
        username = self._restoring_username
        if self._main is not None:
            if self._main.profile is not None:
                username = self._main.profile.get("preferred_username") or username
            self._main.stop()
            self._main.hide()
        self._restoring_username = None
        # Signing in again is usually the same person: only the password is left to type.
        if isinstance(username, str) and username and not self.dialog.username_edit.text():
            self.dialog.set_username(username)
        self.dialog.reset()
        self.dialog.show_notice(notice)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    def _show_main(self, profile: dict[str, Any]) -> None:
        main = self.main_window()
        main.show_profile(profile)
        picture = profile.get("picture")
        if isinstance(picture, str) and picture and not main.profile_view.avatar.has_picture():
            self.controller.load_picture(
                picture, lambda data: self._on_picture_loaded(picture, data)
            )
        main.show()
        if self._dialog is not None:
            self._dialog.hide()
            self._dialog.reset()

    def _forget_username(self) -> None:
        """The current account's stored session is gone: drop it from the index."""
        account, self._account = self._account, None
        if account is not None:
            self._save_config(accounts.forget(self._config, *account))

    def _save_config(self, config: config_module.Config) -> None:
        self._config = config
        config_module.save_config(config)
        if self._main is not None:
            self._main.set_accounts(accounts.listed(config), accounts.active(config))

    # -- accounts and the running instance ----------------------------------------------

    def switch_account(self, server_url: str, username: str) -> None:
        """Restore ``username``'s stored session at ``server_url`` (no password); the result
        arrives like a silent sign-in's."""
        key = (config_module.server_key(server_url), username)
        current = self._account
        shown = self._controller is not None and self._controller.signed_in
        if (
            shown
            and current is not None
            and (config_module.server_key(current[0]), current[1]) == key
        ):
            return  # already the one shown
        factory = None
        if key[0] != config_module.server_key(self.server_url):
            factory = self._client_factory_for(server_url)
            self.server_url = server_url
            if self._dialog is not None:
                self._dialog.set_server(server_url)
        self._account = (server_url, username)
        self._restoring_username = username
        self._save_config(accounts.use(self._config, server_url, username))
        main = self.main_window()
        main.stop()
        if main.profile_view.avatar.has_picture():
            main.profile_view.avatar.set_picture(None)
        main.show_signing_in(username)
        main.show()
        if self._dialog is not None:
            self._dialog.hide()
            self._dialog.reset()
        self._start_core()
        self.controller.switch_account(
            username, factory, self._on_restored, self._on_request_failed
        )

    def add_account(self) -> None:
        """The sign-in dialog, for another account; the current session stays until the new
        one is signed in, and stays stored after. One that is not stored is then signed out
        (see :meth:`SessionController.sign_in`): the dialog says so before."""
        dialog = self.dialog
        dialog.reset()
        dialog.set_username("")
        status = self._status()
        notice = None
        if status is not None and status.signed_in and not status.remembered:
            notice = (
                f"You are signed in as {status.username} without staying signed in: signing in "
                f"to another account signs {status.username} out."
            )
        dialog.show_notice(notice)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def open_account(self, server_url: str, username: str) -> None:
        """Another start asked for an account (``jwt-desktop --user NAME``): switch to it when
        it is a stored one, never to anything else (the request comes over a socket), and
        bring the window to the front."""
        # From the file, not this window's copy: the CLI may have added the account since.
        known = config_module.load_config()
        try:
            account = accounts.find(known, username, server_url)
        except accounts.AccountNotFound:
            _log.warning("Another start asked for an account that is not stored; ignored")
        else:
            self._config = known
            self.switch_account(account.server_url, account.username)
        self.raise_window()

    def raise_window(self) -> None:
        """Another start asked for this instance: bring its window to the front."""
        from PySide6.QtCore import Qt

        window = self._visible_window()
        if window is None:
            return
        window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
        window.show()
        window.raise_()
        window.activateWindow()

    # -- slots ----------------------------------------------------------------------------

    def _on_storage_checked(self, storage: StorageStatus) -> None:
        self._storage = storage
        if self._dialog is not None:
            self._dialog.set_storage(storage)
            status = self._status()
            if status is not None:
                self._dialog.set_server(status.server_url)

    def _on_sign_in_failed(self, failure: Failure) -> None:
        self.dialog.show_error(failure)

    def _on_submitted(self, username: str, password: str, remember: bool) -> None:
        from desktop.auth.grants import PasswordGrant  # light: no requests, no keyring

        self._pending = (username, remember)
        self._start_core()
        self.controller.sign_in(
            PasswordGrant(username, password),
            remember=remember,
            success=self._on_sign_in_finished,
            failure=self._on_sign_in_failed,
            replaced=self._on_replaced,
        )

    def _on_browser_requested(self, remember: bool) -> None:
        from desktop.auth.grants import AuthorizationCodeGrant

        self._sign_in_without_password(AuthorizationCodeGrant(), remember)

    def _on_device_requested(self, remember: bool) -> None:
        from desktop.auth.grants import DeviceCodeGrant

        self._sign_in_without_password(DeviceCodeGrant(), remember)

    def _sign_in_without_password(self, grant: Grant, remember: bool) -> None:
        # No typed name: the account is named from the tokens (see _remember_sign_in).
        self._pending = (None, remember)
        self._start_core()
        self.controller.sign_in(
            grant,
            remember=remember,
            success=self._on_sign_in_finished,
            failure=self._on_sign_in_failed,
            replaced=self._on_replaced,
        )

    def _on_sign_in_progress(self, message: str, url: str, code: str, complete: str) -> None:
        if self._dialog is not None and self._dialog.busy:
            self._dialog.show_progress(message, url, code, complete)

    def _on_metadata(self, metadata: ServerMetadata) -> None:
        from desktop.auth.grants import sign_in_methods

        self._methods = sign_in_methods(metadata)
        self._apply_methods()

    def _apply_methods(self) -> None:
        methods, dialog = self._methods, self._dialog
        if methods is not None and dialog is not None:
            dialog.set_methods(
                password=methods.password, browser=methods.browser, device=methods.device
            )

    def _on_sign_in_finished(self, result: SignInResult) -> None:
        # A session signed out on the way (see _on_replaced), said over "Signed in as…" but
        # not over why the profile is missing.
        if result.profile_error is not None or result.profile is None:
            from desktop.ui.messages import describe

            self._switch_notice = None
            self._on_signed_in_without_profile(
                describe(result.profile_error or RuntimeError("no profile"))
            )
        else:
            self._on_signed_in(result.profile)
            self._show_switch_notice()

    def _on_replaced(self, replaced: Replaced) -> None:
        """The new account signed in over a session that was not stored, now signed out: said
        once the new account is shown (its own status line would cover it)."""
        from desktop.auth.messages import sign_out_line

        stored = self._status()
        if stored is not None and stored.username == replaced.username:
            return  # the same person signed in again: nobody was signed out, as they see it
        self._switch_notice = sign_out_line(
            replaced.revocation, replaced.username, replaced.server_url
        )

    def _show_switch_notice(self) -> None:
        """The notice of a session signed out on the way, once, where the new one is shown."""
        notice, self._switch_notice = self._switch_notice, None
        if notice and self._main is not None:
            self._main.statusBar().showMessage(notice)

    def _on_signed_in(self, profile: dict[str, Any]) -> None:
        self._remember_sign_in()
        self._show_main(profile)

    def _on_signed_in_without_profile(self, failure: Failure) -> None:
        # The password was accepted and the session is live (stored, if asked): the person is
        # signed in, so they get the signed-in window, not a dialog saying the sign-in failed
        # over a session that would silently come back at the next start. What failed is the
        # profile: said there, with Reload (and automatic retries when the server is down).
        from desktop.ui.messages import ErrorKind

        username = self._remember_sign_in()
        status = self._status()
        name = username or (status.username if status is not None else None) or ""
        retried = failure.kind in (ErrorKind.UNREACHABLE, ErrorKind.SERVER)
        main = self.main_window()
        main.show_profile_missing(name, None if retried else failure.message)
        main.show()
        if retried:
            main.show_unreachable(failure.message)
        else:
            main.show_error(failure.message)
        if self._dialog is not None:
            self._dialog.hide()
            self._dialog.reset()

    def _remember_sign_in(self) -> str | None:
        """Save who signed in and their choice; returns the username."""
        username, remember = self._pending or (None, True)
        self._pending = None
        stored = self._status()
        if stored is not None and stored.username:
            # The session's account name is the key of the stored session (typed for a
            # password, from the tokens for other grants).
            username = stored.username
        keep = remember and (stored is None or stored.remembered)
        # Without a keyring the box was disabled, not unchecked by the person: keep their choice.
        keyring_usable = self._storage is None or self._storage.persistent
        config = dataclasses.replace(
            self._config, remember=remember if keyring_usable else self._config.remember
        )
        server = stored.server_url if stored is not None else self.server_url
        if username:
            if keep:
                config = accounts.use(config, server, username)
            else:
                # Not stored: a session stored earlier for this account was revoked by the
                # sign-in, and a start must not try to restore it.
                config = accounts.forget(config, server, username)
            self._account = (server, username)
        self._save_config(config)
        return username

    def _on_restored(self, profile: dict[str, Any] | None) -> None:
        if profile is not None:
            if self._dialog is not None and self._dialog.isVisible():
                self._dialog.hide()
            self._restoring_username = None
            self._show_main(profile)
            self._show_switch_notice()
        else:
            self._switch_notice = None
            notice = None
            if self._storage is not None and not self._storage.persistent:
                # Nothing could be read because the keyring is missing or locked: say so,
                # rather than silently asking for the password again.
                notice = f"Your saved session could not be read. {self._storage.reason or ''}"
            else:
                self._forget_username()
            self._show_dialog(notice.strip() if notice else None)

    def _on_profile_loaded(self, reloaded: Reloaded) -> None:
        self._show_main(reloaded.profile)
        if self._main is not None:
            self._main.show_reloaded(renewed=reloaded.renewed)

    def _on_request_failed(self, failure: Failure) -> None:
        from desktop.ui.messages import ErrorKind

        main = self._main
        if main is None or not main.isVisible():
            self.dialog.show_error(failure)
            return
        if failure.kind in (ErrorKind.UNREACHABLE, ErrorKind.SERVER):
            # The session is kept: say so without blocking, and try again later.
            main.show_unreachable(failure.message)
        elif self._restoring_username:
            self._show_dialog(failure.message)
        else:
            main.show_error(failure.message)

    def _on_reload(self) -> None:
        self.controller.reload_profile(self._on_profile_loaded, self._on_request_failed)

    def _on_cancelled(self) -> None:
        self._pending = None
        if self._controller is not None:
            self._controller.cancel_sign_in()

    def _on_retry(self) -> None:
        if self._restoring_username:
            self.controller.restore(
                self._restoring_username, self._on_restored, self._on_request_failed
            )
        else:
            self._on_reload()

    def _on_session_ended(self, failure: Failure) -> None:
        self._forget_username()
        self._show_dialog(failure.message)

    def _on_sign_out_requested(self) -> None:
        if self._main is not None:
            self._main.statusBar().showMessage("Signing out…")
        self.controller.sign_out(self._on_signed_out)

    def _on_signed_out(self, revocation: Revocation) -> None:
        from desktop.auth.messages import sign_out_notice

        notice = sign_out_notice(revocation)
        self._forget_username()
        # Signing out of one account leaves the others stored: the next one of this server
        # takes over at once (as `gh auth logout` does), else the dialog.
        following = accounts.active(self._config)
        if following is not None and self._controller is not None:
            self.switch_account(following.server_url, following.username)
            # Said once the next account is shown (its own status line would cover it).
            self._switch_notice = f"{notice} Now signed in as {following.username}."
            return
        self._show_dialog(notice)

    def _on_refreshed(self) -> None:
        main = self._main
        if main is not None and main.isVisible():
            main.show_refreshed()
            if main.tokens_view_open():
                # New access token: new jti, new expiry, shown live.
                self._on_tokens_requested()

    # -- the Tokens and Sessions views ----------------------------------------------------

    def _on_tokens_requested(self) -> None:
        from desktop.auth.inspection import inspect_session

        main = self.main_window()
        self.controller.op("tokens", inspect_session, main.tokens_view.show_inspection).failure(
            main.tokens_view.show_failure
        ).run()

    def _on_sessions_requested(self) -> None:
        from desktop.auth.admin import list_sessions

        view = self.main_window().sessions_view
        self.controller.op("sessions", list_sessions, view.show_sessions).failure(
            view.show_refusal
        ).run()

    def _on_revoke_requested(self, session_id: str) -> None:
        from desktop.auth.admin import revoke_session

        view = self.main_window().sessions_view

        def revoked(ended: bool) -> None:
            view.show_revoked(session_id, ended)
            self._on_sessions_requested()

        self.controller.op(
            "revoke_session", lambda client: revoke_session(client, session_id), revoked
        ).failure(lambda failure: self.main_window().show_error(failure.message)).run()

    def _on_picture_loaded(self, url: str, data: bytes) -> None:
        main = self._main
        if main is not None and main.profile is not None and main.profile.get("picture") == url:
            main.profile_view.avatar.set_picture(data)

    def _on_busy_changed(self, busy: bool) -> None:
        if self._main is not None:
            self._main.set_busy(busy)

    def _on_dialog_dismissed(self) -> None:
        if self._controller is None or not self._controller.signed_in:
            self._quit()


def load_stylesheet() -> str:
    return assets.read_text(assets.STYLESHEET) or ""


def load_icon() -> QIcon | None:
    """The app's icon from its resources, or None."""
    from PySide6.QtGui import QIcon, QPixmap

    found = assets.resource(assets.ICON)
    if isinstance(found, Path):
        return QIcon(str(found))  # from the file: Qt draws the SVG at every size asked
    # Inside a zipped install there is no file to give Qt: the bytes, drawn once.
    data = assets.read_bytes(assets.ICON)
    pixmap = QPixmap()
    if data is None or not pixmap.loadFromData(data, "SVG"):
        return None
    return QIcon(pixmap)


def _collect_garbage_again() -> None:
    """desktop.__main__ starts the GUI with the cyclic garbage collector off, for the start's
    sake. Once the first frame is up: what the start built (modules, classes, widgets) lives
    as long as the app, so it is frozen (moved out of the collector's sight, instead of being
    scanned once more in a pause right after the first frame), and collection resumes."""
    gc.freeze()
    gc.enable()


def run(
    argv: Sequence[str],
    *,
    server_url: str | None,
    demo: bool,
    account: tuple[str, str] | None = None,
) -> int:
    """Start the GUI. ``argv`` are the arguments left for Qt (e.g. ``-platform``); ``account``
    (server URL, name): the stored account to open as (``--user``)."""
    qt_app = QApplication([sys.argv[0], *argv])
    qt_app.setApplicationName("jwt-desktop")
    qt_app.setOrganizationName("jwt-desktop")
    # No applicationDisplayName: Qt would append it to every window title on X11, and the
    # dialog's title is exactly "Sign in" (the main window's titles name the app themselves).
    qt_app.setDesktopFileName("jwt-desktop")
    qt_app.setQuitOnLastWindowClosed(False)
    qt_app.setStyleSheet(load_stylesheet())
    from desktop.ui.single_instance import Request, SingleInstance, socket_name

    # First: a second start (with --demo too) only raises the running window (switched to
    # --user's account); it starts no demo server, and builds nothing else.
    instance = SingleInstance(
        socket_name(config_module.config_path().parent),
        config_module.state_dir() / "instance.lock",
    )
    if not instance.claim(Request(account)):
        if account is None:
            print("jwt-desktop is already running: its window was brought to the front.")  # noqa: T201
        else:
            print(  # noqa: T201
                f"jwt-desktop is already running: it was asked to switch to {account[1]} at "
                f"{account[0]}."
            )
        return 0
    demo_server: DemoServer | None = None
    if demo:
        from desktop.demo import DemoServer

        demo_server = DemoServer(db=config_module.state_dir() / "demo.db")
    application = Application(server_url=server_url, demo=demo_server, account=account)
    if os.environ.get(config_module.COLOR_SCHEME_ENV):
        application.follow_color_scheme()  # forced: before the first frame, not after it
    instance.activated.connect(application.raise_window)
    instance.switchRequested.connect(application.open_account)
    application.firstFrameShown.connect(_collect_garbage_again)  # first: nothing may skip it
    application.firstFrameShown.connect(instance.listen)
    # Ctrl+C or SIGTERM: quit through the event loop, so shutdown() runs and a demo server we
    # started is stopped. Python only sees a signal when it runs, hence the idle ticker.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: QApplication.quit())
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    try:
        application.start()
        return qt_app.exec()
    finally:
        ticker.stop()
        instance.close()
        application.shutdown()
