"""The SQLite store's write path when SQLite itself refuses a COMMIT."""

from __future__ import annotations

import sqlite3
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
