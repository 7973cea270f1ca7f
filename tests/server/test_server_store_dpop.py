"""The store's DPoP state: bound families in the rotation, the replay cache, the nonces, and a
database from before DPoP."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from mock_server.database import CommitWatch
from mock_server.store import Family, Rotation, SqliteStore, replay_cache_path
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


def test_a_forgiven_re_presentation_still_needs_the_bound_key(tmp_path: Path) -> None:
    # The reuse grace forgives a lost answer, not a missing proof: the previous token of a
    # bound sign-in, presented again within the grace, is refused without its key (neither
    # forgiven nor a reuse), and forgiven with it.
    store = SqliteStore(str(tmp_path / "state.sqlite3"), issuer=ISSUER)
    try:
        store.create_family(BOUND, "h1")
        lost = store.rotate("h1", "jwt-desktop", "h2", 2.0, jkt="jkt-1", grace=30.0)
        assert lost.outcome is Rotation.ROTATED
        for jkt in (None, "jkt-2"):
            refused = store.rotate("h1", "jwt-desktop", "h3", 3.0, jkt=jkt, grace=30.0)
            assert refused.outcome is Rotation.WRONG_KEY
        family = store.family("f1")
        assert family is not None and family.revoked_at is None
        retry = store.rotate("h1", "jwt-desktop", "h3", 4.0, jkt="jkt-1", grace=30.0)
        assert retry.outcome is Rotation.ROTATED
        assert retry.family is not None and retry.family.dpop_jkt == "jkt-1"
        # The lost answer's token was spent by the forgiven retry: presenting it is a reuse.
        reused = store.rotate("h2", "jwt-desktop", "h4", 5.0, jkt="jkt-1", grace=30.0)
        assert reused.outcome is Rotation.REUSED
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


def test_the_replay_cache_survives_a_restart_in_an_owner_only_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    old_umask = os.umask(0o022)
    store = SqliteStore(path, issuer=ISSUER)
    try:
        assert store.remember_dpop_proof(b"j" * 32, 160.0, 100.0)
        for companion in ("", "-wal", "-shm"):
            file = Path(replay_cache_path(path) + companion)
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        os.umask(old_umask)
        store.close()
    again = SqliteStore(path, issuer=ISSUER)
    try:
        assert not again.remember_dpop_proof(b"j" * 32, 160.0, 110.0)
        # Kept while its proof could still be accepted: up to and at its expiry.
        assert not again.remember_dpop_proof(b"j" * 32, 160.0, 160.0)
        assert again.remember_dpop_proof(b"k" * 32, 220.0, 160.0)
    finally:
        again.close()


def test_a_session_read_reflects_a_revocation_by_another_store(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    reader, other = SqliteStore(path, issuer=ISSUER), SqliteStore(path, issuer=ISSUER)
    try:
        reader.create_family(BOUND, "h1")
        assert reader.family("f1") == BOUND
        assert reader.family("f1") is reader.family("f1")  # an unchanged row: one Family
        assert other.revoke_family("f1", 5.0, "signed out")
        assert reader.family("f1") == dataclasses.replace(
            BOUND, revoked_at=5.0, revoked_reason="signed out"
        )
    finally:
        reader.close()
        other.close()


REVOKE_IN_ANOTHER_PROCESS = """
import sys
from mock_server.store import SqliteStore
store = SqliteStore(sys.argv[1], issuer=sys.argv[2])
assert store.revoke_family("f1", 5.0, "signed out")
store.close()
"""


def test_a_revocation_by_another_process_counts_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    reader = SqliteStore(path, issuer=ISSUER)
    try:
        reader.create_family(BOUND, "h1")
        # That commit changed the -shm header: unchanged since, it spares the reads a query.
        assert reader._watch is not None and reader._watch.trusted
        assert reader.family("f1") == BOUND
        # Nothing committed since that read: the next one asks SQLite nothing at all.
        statements: list[str] = []
        reader._reader.set_trace_callback(statements.append)
        assert reader.family("f1") == BOUND
        reader._reader.set_trace_callback(None)
        assert statements == []
        subprocess.run(
            [sys.executable, "-c", REVOKE_IN_ANOTHER_PROCESS, path, ISSUER],
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        family = reader.family("f1")
        assert family is not None and family.revoked_at == 5.0
    finally:
        reader.close()


def test_a_commit_watch_that_does_not_follow_the_commits_is_never_used(tmp_path: Path) -> None:
    path, elsewhere = str(tmp_path / "state.sqlite3"), str(tmp_path / "other.sqlite3")
    reader, other = SqliteStore(path, issuer=ISSUER), SqliteStore(elsewhere, issuer=ISSUER)
    try:
        reader._watch = CommitWatch(elsewhere)  # as if SQLite used another -shm than this
        reader.create_family(BOUND, "h1")
        assert reader._watch.trusted is False and reader._watch.mark() is None
        assert reader.family("f1") == BOUND
        third = SqliteStore(path, issuer=ISSUER)
        assert third.revoke_family("f1", 5.0, "signed out")
        third.close()
        family = reader.family("f1")
        assert family is not None and family.revoked_at == 5.0
    finally:
        reader.close()
        other.close()


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
