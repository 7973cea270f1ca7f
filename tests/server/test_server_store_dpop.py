"""The store's DPoP state: bound families in the rotation, the replay cache, the nonces, and a
database from before DPoP."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from mock_server.store import Family, Rotation, SqliteStore
from tests.server.helpers import ISSUER

BOUND = Family("f1", "alice", "jwt-desktop", "openid", 1.0, None, 100.0, None, None, "jkt-1")


def test_a_bound_token_without_its_key_is_neither_spent_nor_a_reuse(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.sqlite3"), issuer=ISSUER)
    try:
        store.create_family(BOUND, "h1")
        for jkt in (None, "jkt-2"):
            assert (
                store.rotate("h1", "jwt-desktop", "h2", 2.0, jkt=jkt).outcome is Rotation.WRONG_KEY
            )
        rotated = store.rotate("h1", "jwt-desktop", "h2", 3.0, jkt="jkt-1")
        assert rotated.outcome is Rotation.ROTATED
        assert rotated.family == dataclasses.replace(BOUND, last_refreshed_at=3.0)
        # The spent token in a thief's hands: refused for the key before any reuse check.
        assert store.rotate("h1", "jwt-desktop", "h3", 4.0).outcome is Rotation.WRONG_KEY
        assert store.family("f1") == rotated.family
        # With the key it is a reuse, and the whole sign-in ends.
        assert store.rotate("h1", "jwt-desktop", "h3", 5.0, jkt="jkt-1").outcome is Rotation.REUSED
    finally:
        store.close()


def test_a_rotation_with_a_key_binds_an_unbound_family(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.sqlite3"), issuer=ISSUER)
    try:
        store.create_family(dataclasses.replace(BOUND, dpop_jkt=None), "h1")
        assert store.rotate("h1", "jwt-desktop", "h2", 2.0, jkt="jkt-9").family is not None
        family = store.family("f1")
        assert family is not None and family.dpop_jkt == "jkt-9"
    finally:
        store.close()


def test_the_replay_cache_and_the_nonces_are_shared_by_two_stores(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    first, second = SqliteStore(path, issuer=ISSUER), SqliteStore(path, issuer=ISSUER)
    try:
        assert first.remember_dpop_proof(b"j" * 32, 160.0, 100.0)
        assert not second.remember_dpop_proof(b"j" * 32, 160.0, 100.0)
        [(nonce, created)] = first.rotate_dpop_nonce("n1", 100.0, 300.0)
        # Another process, a moment later: the nonce is young, so it is kept, not replaced.
        assert second.rotate_dpop_nonce("n2", 150.0, 300.0) == [(nonce, created)]
        assert [n for n, _ in second.rotate_dpop_nonce("n3", 400.0, 300.0)] == ["n3", "n1"]
        # Twice the lifetime after it was made, a nonce is gone.
        assert [n for n, _ in first.rotate_dpop_nonce("n4", 700.0, 300.0)] == ["n4", "n3"]
        assert second.dpop_nonces() == [("n4", 700.0), ("n3", 400.0)]
    finally:
        first.close()
        second.close()


def test_a_database_from_before_dpop_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE families (id TEXT PRIMARY KEY, username TEXT NOT NULL, "
            "client_id TEXT NOT NULL, scope TEXT NOT NULL, created_at REAL NOT NULL, "
            "last_refreshed_at REAL, expires_at REAL NOT NULL, revoked_at REAL, "
            "revoked_reason TEXT)"
        )
        conn.execute(
            "INSERT INTO families VALUES ('old', 'bob', 'jwt-desktop', 'openid', 1, NULL, 100, "
            "NULL, NULL)"
        )
    conn.close()
    store = SqliteStore(str(path), issuer=ISSUER)
    try:
        old = store.family("old")
        assert old is not None and old.dpop_jkt is None
        store.create_family(BOUND, "h1")
        assert store.family("f1") == BOUND
    finally:
        store.close()
