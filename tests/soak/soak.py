"""One-minute soak of a shared stored session against a misbehaving real keyring (issue 11).

Not part of the test run (no ``test_`` file here): run it by hand,

    .venv/bin/python -m tests.soak.soak [--seconds 60] [--threads 8]

Three CLI loops (``jwt-desktop profile`` again and again, each a new process) and one
long-lived client with several threads calling ``profile()`` share one stored session, against
the bundled server with 1 s access tokens and strict rotation. Meanwhile gnome-keyring (in a
private D-Bus session) is locked and unlocked twice and its daemon killed once (D-Bus starts it
again, locked; it is then unlocked). Exit 0 when the run ends signed in with one keyring entry
and the server saw no reuse; the counts are printed either way.

Expected along the way: CLI commands that exit 3 while the keyring is locked (they keep the
session and say so) and client calls that fail for a moment; not expected: a session end, a
reuse detection, any other exit status.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import keyring
from keyring.backends import SecretService

from desktop.auth.errors import AuthError, SessionEnded
from desktop.auth.grants import PasswordGrant
from desktop.auth.session import AuthClient
from desktop.auth.store import KeyringStore
from desktop.config import Config, save_config
from mock_server.testing import running_server
from tests.support.keyring import _start_secret_service


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--loops", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="jwt-soak-"))
    os.environ["JWT_DESKTOP_CONFIG_DIR"] = str(root / "config")
    os.environ["JWT_DESKTOP_DATA_DIR"] = str(root / "data")
    (root / "keyring").mkdir()
    secrets = _start_secret_service(root / "keyring")
    os.environ.update(secrets.env)
    keyring.set_keyring(SecretService.Keyring())
    try:
        with running_server(access_ttl=1) as server:
            return _soak(server.url, _db(server.args), secrets, args)
    finally:
        secrets.stop()


def _db(server_args: list[str]) -> str:
    return server_args[server_args.index("--db") + 1]


def _soak(url: str, db: str, secrets: object, args: argparse.Namespace) -> int:
    from tests.support.keyring import SecretServiceKeyring

    assert isinstance(secrets, SecretServiceKeyring)
    counts: collections.Counter[str] = collections.Counter()
    count_lock = threading.Lock()

    def count(key: str) -> None:
        with count_lock:
            counts[key] += 1

    client = AuthClient(url, store=KeyringStore(timeout=5))
    client.sign_in(PasswordGrant("alice", "wonderland"), remember=True)
    save_config(Config(server_url=url, last_username="alice"))
    stop = threading.Event()
    ended: list[str] = []

    def client_loop() -> None:
        while not stop.is_set():
            try:
                client.profile()
                count("client calls ok")
            except SessionEnded as exc:
                ended.append(f"client: {exc}")
                count("client session ended")
                return
            except AuthError as exc:
                count(f"client calls failed ({type(exc).__name__})")
                time.sleep(0.2)
            client.write_back()  # what the GUI's timer does

    def cli_loop() -> None:
        env = dict(os.environ)
        while not stop.is_set():
            done = subprocess.run(
                [sys.executable, "-m", "desktop", "profile", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            count(f"commands exit {done.returncode}")
            if "session has ended" in done.stderr:
                ended.append(f"cli: {done.stderr.strip()}")
                return

    threads = [threading.Thread(target=client_loop) for _ in range(args.threads)]
    threads += [threading.Thread(target=cli_loop) for _ in range(args.loops)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    span = args.seconds

    def at(fraction: float) -> None:
        wait = started + span * fraction - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    faults = [
        (0.15, "lock", secrets.lock),
        (0.25, "unlock", secrets.unlock),
        (0.40, "kill daemon", secrets.kill_daemon),
        (0.50, "unlock", secrets.unlock),
        (0.65, "lock", secrets.lock),
        (0.75, "unlock", secrets.unlock),
    ]
    for fraction, name, action in faults:
        at(fraction)
        action()
        print(f"{time.monotonic() - started:5.1f} s  keyring: {name}", flush=True)
    expected_daemon = secrets.daemon_pid()
    at(1.0)
    stop.set()
    for thread in threads:
        thread.join(180)
    # gnome-keyring-daemon itself sometimes dies under this load (a GLib assertion); D-Bus
    # starts it again, locked, as after the planned kill. A person would unlock it: so do we,
    # and the report counts it.
    unplanned = 0
    if secrets.daemon_pid() != expected_daemon or secrets.is_locked():
        unplanned += 1
        secrets.restore()
    written_back = client.write_back()
    final = subprocess.run(
        [sys.executable, "-m", "desktop", "status"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    client.close()
    entries = secrets.entries(f"jwt-desktop:{url}")
    with sqlite3.connect(db) as conn:
        families = conn.execute("SELECT revoked_reason FROM families").fetchall()
        rotations = conn.execute("SELECT count(*) FROM refresh_tokens").fetchone()[0]
    reuse = sum(1 for (reason,) in families if reason)
    calls = sum(v for k, v in counts.items() if k.startswith("client calls"))
    commands = sum(v for k, v in counts.items() if k.startswith("commands"))
    failures = sum(
        v
        for k, v in counts.items()
        if "failed" in k or (k.startswith("commands exit ") and k != "commands exit 0")
    )
    report = {
        "seconds": round(time.monotonic() - started, 1),
        "client calls": calls,
        "CLI commands": commands,
        "failures (any non-success)": failures,
        "detail": dict(sorted(counts.items())),
        "refresh tokens issued": rotations,
        "reuse detections (revoked families)": reuse,
        "sessions ended": ended,
        "unplanned daemon restarts (unlocked after the run)": unplanned,
        "written back at the end": written_back,
        "final status exit": final.returncode,
        "keyring entries": entries,
    }
    print(json.dumps(report, indent=2))
    ok = final.returncode == 0 and entries == 1 and reuse == 0 and not ended
    print("soak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
