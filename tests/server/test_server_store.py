"""The SQLite store's write path when SQLite itself refuses a COMMIT."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from mock_server.store import Family, SqliteStore


def _family(family_id: str) -> Family:
    return Family(family_id, "alice", "jwt-desktop", "openid", 1.0, None, 100.0, None, None)


def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.sqlite3"), issuer="http://127.0.0.1:8765")
    try:
        # A real COMMIT failure: with foreign keys deferred, SQLite checks them at COMMIT,
        # refuses it, and keeps the transaction open.
        with pytest.raises(sqlite3.IntegrityError), store._write() as conn:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute(
                "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ('h', 'none', 1)"
            )
        # The connection is usable again, and the refused write left nothing behind.
        store.create_family(_family("f1"), "token-hash")
        assert store.find_by_token("token-hash") == _family("f1")
        assert store.find_by_token("h") is None
    finally:
        store.close()


@pytest.mark.skipif(
    sys.platform == "win32", reason="flock is POSIX; Windows writers wait in SQLite"
)
def test_writers_take_turns_on_a_file_lock_held_for_the_whole_transaction(tmp_path: Path) -> None:
    import fcntl

    path = str(tmp_path / "state.sqlite3")
    store = SqliteStore(path, issuer="http://127.0.0.1:8765")
    other = os.open(path + "-writer.lock", os.O_RDWR)  # another open file: another writer
    try:
        assert stat.S_IMODE(os.stat(path + "-writer.lock").st_mode) == 0o600
        with store._write(), pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the transaction ended
        fcntl.flock(other, fcntl.LOCK_UN)
        # The DPoP replay cache, a database of its own, has its own turn.
        assert store.remember_dpop_proof(b"j" * 32, 100.0, 50.0)
        assert stat.S_IMODE(os.stat(path + "-dpop-writer.lock").st_mode) == 0o600
    finally:
        os.close(other)
        store.close()
