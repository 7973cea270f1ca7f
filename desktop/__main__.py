"""``jwt-desktop`` / ``python -m desktop``: the GUI, or a headless subcommand.

Any word that is not an option (nor an option's value) is a command, and hands over to
:mod:`desktop.cli`, which runs it or, for an unknown or misspelt one, names the commands and
exits 2: a script that mistypes a command must never end up waiting on a GUI. Only options
(``--demo``, ``--server URL``, ``--user NAME``, Qt's own ``-platform NAME``...) start the GUI.
The GUI path never imports the CLI, and the GUI's own imports wait until the arguments are
known to need them.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

EXIT_USAGE = 2  # as the CLI's (and argparse's) bad usage

# Qt's command-line options that take a value (QGuiApplication, QApplication): the word after
# one is its value, not a command.
QT_OPTIONS_WITH_VALUE = frozenset(
    {
        "-platform",
        "-platformpluginpath",
        "-platformtheme",
        "-plugin",
        "-qmljsdebugger",
        "-style",
        "-stylesheet",
        "-session",
        "-display",
        "-geometry",
        "-title",
        "-name",
        "-qwindowgeometry",
        "-qwindowicon",
        "-qwindowtitle",
        "-qwindowscreen",
        "-screen",
    }
)


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-desktop",
        description=(
            "Sign in to a token server and see your profile. Headless commands: "
            "jwt-desktop login|status|profile|logout|switch (see jwt-desktop login --help)."
        ),
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="the token server to use (remembered; default http://127.0.0.1:8765)",
    )
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="open as this stored account, no password asked (with --server URL when two "
        "servers have one of that name); a running window switches to it",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the bundled mock server in the background (or reuse one already running)",
    )
    parser.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add jwt-desktop to the desktop's application menu (the .desktop file and the "
        "icon in $XDG_DATA_HOME), then exit",
    )
    return parser


def _is_command_line(args: Sequence[str]) -> bool:
    """True when ``args`` name a command: a word that is neither an option nor the value of
    one (``--server URL`` and ``--user NAME`` are the GUI parser's too; Qt's options are
    single-dash)."""
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg == "--client-id" or arg.startswith("--client-id="):
            return True  # the CLI's option: without a command, the CLI says one is missing
        elif arg in ("--server", "--user") or arg in QT_OPTIONS_WITH_VALUE:
            takes_value = True
        elif not arg.startswith("-"):
            return True
    return False


def _install_desktop_entry() -> int:
    from desktop.assets import install_desktop_entry

    try:
        entry, icon = install_desktop_entry()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        sys.stderr.write(f"jwt-desktop: error: could not install the desktop entry: {reason}\n")
        return 1
    sys.stdout.write(f"Installed the desktop entry {entry}\nand its icon {icon}.\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        # The usual start (the desktop menu, a plain `jwt-desktop`): nothing to parse, and
        # building the parser (its help texts go through gettext) costs milliseconds before
        # the first frame.
        return _gui([], server_url=None, demo=False, account=None)
    if _is_command_line(args):
        from desktop.cli import main as cli_main

        return cli_main(args)
    options, qt_args = _gui_parser().parse_known_args(args)
    if options.install_desktop_entry:
        return _install_desktop_entry()
    account = None
    if options.user is not None:
        account = _stored_account(options.user, options.server, demo=options.demo)
        if account is None:
            return EXIT_USAGE
    return _gui(qt_args, server_url=options.server, demo=options.demo, account=account)


def _stored_account(name: str, server_url: str | None, *, demo: bool) -> tuple[str, str] | None:
    """``--user NAME``: the stored account it names, as (server URL, name), resolved as the
    CLI's ``--user`` is (on ``--server`` when given, else on any server, ambiguity refused).
    None, with the reason on stderr, when no single account answers: before any window, so a
    typo never opens the sign-in dialog (nor reaches a running window)."""
    from desktop import accounts
    from desktop import config as config_module

    if demo:
        server_url = config_module.DEFAULT_SERVER_URL  # the demo's server, whatever --server says
    try:
        account = accounts.find(config_module.load_config(), name, server_url)
    except accounts.AccountNotFound as exc:
        sys.stderr.write(f"jwt-desktop: error: {exc}\n")
        return None
    return account.server_url, account.username


def _gui(
    qt_args: list[str], *, server_url: str | None, demo: bool, account: tuple[str, str] | None
) -> int:
    from desktop.ui.x11check import check

    problem = check()
    if problem is not None:
        sys.stderr.write(problem + "\n")
        return 1
    # No cyclic garbage collection until the first frame is up (desktop.app.run turns it on
    # again then): the start creates hundreds of thousands of objects that all live on (modules,
    # classes, Qt's type data), and the collector scanning them again and again is several
    # milliseconds of the start for nothing. Memory is freed by reference counting as usual.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        # Imported before Qt: once PySide6 is loaded, its import hook reads the source of every
        # module imported after it, which costs start-up time for nothing.
        import socket  # noqa: F401 - for the single-instance check (desktop/ui/single_instance.py)

        import desktop.accounts
        import desktop.assets
        import desktop.config  # noqa: F401
        from desktop.app import run

        return run(qt_args, server_url=server_url, demo=demo, account=account)
    finally:
        if gc_was_on:
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())
