"""The database: private file modes (it holds the signing key), sessions bound to their issuer."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import httpx

from mock_server.store import (
    AuthorizationCode,
    DeviceCode,
    Family,
    Poll,
    Redemption,
    Rotation,
    SqliteStore,
)
from tests.server.helpers import CLIENT_ID
from tests.support.server import StartServer

ISSUER_A = "http://a.example.test:8765"
ISSUER_B = "http://b.example.test:8765"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def companions(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def test_a_new_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite3"
    old_umask = os.umask(0o022)
    try:
        store = SqliteStore(str(db), issuer=ISSUER_A)
    finally:
        os.umask(old_umask)
    try:
        for path in companions(db):
            assert path.exists(), path
            assert mode(path) == 0o600, path
    finally:
        store.close()


def test_a_loose_pre_existing_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    old_umask = os.umask(0o022)
    # Another connection keeps the -wal and -shm files in existence, made with mode 0644.
    other = sqlite3.connect(db)
    try:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("CREATE TABLE t (x)")
        other.execute("INSERT INTO t VALUES (1)")
        other.commit()
        for path in companions(db):
            os.chmod(path, 0o644)
        store = SqliteStore(str(db), issuer=ISSUER_A)
        try:
            assert [mode(p) for p in companions(db)] == [0o600, 0o600, 0o600]
        finally:
            store.close()
    finally:
        other.close()
        os.umask(old_umask)


def _family(family_id: str) -> Family:
    return Family(family_id, "alice", CLIENT_ID, "openid", 1.0, None, 100.0, None, None)


def test_a_session_is_invisible_to_another_issuer(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.sqlite3")
    a = SqliteStore(db, issuer=ISSUER_A)
    b = SqliteStore(db, issuer=ISSUER_B)
    try:
        a.create_family(_family("f1"), "hash-1")
        assert b.find_by_token("hash-1") is None
        assert b.family("f1") is None
        assert b.active_families(2.0) == []
        assert not b.revoke_family("f1", 2.0, "by b")
        assert b.rotate("hash-1", CLIENT_ID, "hash-2", 2.0).outcome is Rotation.UNKNOWN
        # The refusals spent nothing: the session still works where it was made.
        assert a.rotate("hash-1", CLIENT_ID, "hash-2", 2.0).outcome is Rotation.ROTATED
    finally:
        a.close()
        b.close()


_OLD_FAMILIES = """
CREATE TABLE families (
    id TEXT PRIMARY KEY, username TEXT NOT NULL, client_id TEXT NOT NULL, scope TEXT NOT NULL,
    created_at REAL NOT NULL, last_refreshed_at REAL, expires_at REAL NOT NULL,
    revoked_at REAL, revoked_reason TEXT
)"""


def test_a_database_from_before_the_issuer_column_keeps_its_sessions(tmp_path: Path) -> None:
    db = tmp_path / "old-schema.sqlite3"
    with sqlite3.connect(db) as old:
        old.execute(_OLD_FAMILIES)
        old.execute(
            "CREATE TABLE refresh_tokens (hash TEXT PRIMARY KEY, family_id TEXT NOT NULL "
            "REFERENCES families(id), created_at REAL NOT NULL, used_at REAL)"
        )
        old.execute(
            "INSERT INTO families VALUES ('f1', 'alice', ?, 'openid', 1.0, NULL, 100.0, NULL, "
            "NULL)",
            (CLIENT_ID,),
        )
        old.execute("INSERT INTO refresh_tokens VALUES ('hash-1', 'f1', 1.0, NULL)")
    old.close()
    # The first issuer to serve the file after the upgrade keeps its sessions; no other gets them.
    a = SqliteStore(str(db), issuer=ISSUER_A)
    b = SqliteStore(str(db), issuer=ISSUER_B)
    try:
        assert b.rotate("hash-1", CLIENT_ID, "hash-2", 2.0).outcome is Rotation.UNKNOWN
        assert a.rotate("hash-1", CLIENT_ID, "hash-2", 2.0).outcome is Rotation.ROTATED
    finally:
        a.close()
        b.close()


def test_a_refresh_token_is_not_redeemable_at_another_issuer(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = tmp_path / "shared.sqlite3"
    a = start_server(db=db, extra_args=["--issuer", ISSUER_A])
    b = start_server(db=db, extra_args=["--issuer", ISSUER_B])
    signed_in = httpx.post(
        f"{a.url}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "wonderland",
            "client_id": CLIENT_ID,
        },
    )
    assert signed_in.status_code == 200, signed_in.text
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": signed_in.json()["refresh_token"],
        "client_id": CLIENT_ID,
    }
    elsewhere = httpx.post(f"{b.url}/token", data=refresh)
    assert elsewhere.status_code == 400
    assert elsewhere.json()["error"] == "invalid_grant"
    # Refused without spending it: the issuer that made it still rotates it.
    assert httpx.post(f"{a.url}/token", data=refresh).status_code == 200


def test_codes_are_invisible_to_another_issuer(tmp_path: Path) -> None:
    db = str(tmp_path / "codes.sqlite3")
    a = SqliteStore(db, issuer=ISSUER_A)
    b = SqliteStore(db, issuer=ISSUER_B)
    try:
        code = AuthorizationCode(
            CLIENT_ID, "http://127.0.0.1:1/cb", "c" * 43, "alice", "openid", None, 1.0,
            offline=False, expires_at=100.0,
        )  # fmt: skip
        a.add_code("code-hash", code, 1.0)

        def issue(_: object) -> tuple[Family, str | None]:
            return _family("from-code"), None

        assert b.redeem_code("code-hash", 2.0, issue).outcome is Redemption.UNKNOWN
        device = DeviceCode("BCDFGHJK", CLIENT_ID, "openid", 100.0, 5.0)
        assert a.add_device_code("device-hash", device, 1.0)
        assert b.pending_device_code("BCDFGHJK", 2.0) is None
        assert not b.decide_device_code("BCDFGHJK", 2.0, "alice", 2.0)
        assert b.poll_device_code("device-hash", CLIENT_ID, 2.0, issue).outcome is Poll.UNKNOWN
        # Where they were made, they still work.
        assert a.pending_device_code("BCDFGHJK", 2.0) == device
        assert a.redeem_code("code-hash", 2.0, issue).outcome is Redemption.REDEEMED
    finally:
        a.close()
        b.close()
