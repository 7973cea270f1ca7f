"""``jwt-desktop`` / ``python -m desktop``: the GUI, or a headless subcommand.

With a subcommand (login, status, profile, logout) this hands over to :mod:`desktop.cli`;
otherwise it starts the GUI. The subcommand names are spelled out here so the GUI path never
imports the CLI, and the GUI's own imports wait until the arguments are known to need them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

SUBCOMMANDS = frozenset({"login", "status", "profile", "logout"})


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-desktop",
        description=(
            "Sign in to a token server and see your profile. Headless commands: "
            "jwt-desktop login|status|profile|logout (see jwt-desktop login --help)."
        ),
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="the token server to use (remembered; default http://127.0.0.1:8765)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the bundled mock server in the background (or reuse one already running)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in SUBCOMMANDS for arg in args):
        from desktop.cli import main as cli_main

        return cli_main(args)
    options, qt_args = _gui_parser().parse_known_args(args)
    from desktop.ui.x11check import check

    problem = check()
    if problem is not None:
        sys.stderr.write(problem + "\n")
        return 1
    # Imported before Qt: once PySide6 is loaded, its import hook reads the source of every
    # module imported after it, which costs start-up time for nothing.
    import desktop.config  # noqa: F401
    from desktop.app import run

    return run(qt_args, server_url=options.server, demo=options.demo)


if __name__ == "__main__":
    sys.exit(main())
