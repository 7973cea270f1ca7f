"""The server's state in SQLite: signing keys, sign-in sessions (families), refresh tokens,
authorization codes and device codes.

One connection per process, guarded by a lock; several processes may share one database file.
Every write runs in ``BEGIN IMMEDIATE``, so writers are serialised by SQLite itself (WAL mode,
with a busy timeout) and the rotation's conditional write is atomic across processes.

Servers with different issuers may share a file: signing keys are shared, but a store sees only
the sessions, authorization codes and device codes of its own issuer, so a refresh token or a
code is never redeemable at another issuer.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .database import CommitWatch, WriterTurn, connect, open_file
from .settings import MEMORY_DB

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signing_keys (
    kid         TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at  REAL NOT NULL,
    retired_at  REAL,
    -- The latest `exp` of a token it signed: a retired key is published until then.
    last_exp    REAL
);
CREATE TABLE IF NOT EXISTS families (
    id                TEXT PRIMARY KEY,
    username          TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    scope             TEXT NOT NULL,
    created_at        REAL NOT NULL,
    last_refreshed_at REAL,
    expires_at        REAL NOT NULL,
    revoked_at        REAL,
    revoked_reason    TEXT,
    -- The thumbprint of the DPoP key its refresh tokens are bound to (RFC 9449 §5), if any.
    dpop_jkt          TEXT,
    -- The issuer that made the sign-in: only that issuer can redeem or list it.
    issuer            TEXT
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash       TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES families(id),
    created_at REAL NOT NULL,
    used_at    REAL,
    -- The token its rotation issued: the reuse grace finds the family's live token through it.
    replaced_by TEXT
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens(family_id);
CREATE TABLE IF NOT EXISTS authorization_codes (
    hash           TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    username       TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    auth_time      REAL NOT NULL,
    offline        INTEGER NOT NULL,
    expires_at     REAL NOT NULL,
    used_at        REAL,
    -- The session the code was redeemed for: revoked when the code comes back.
    family_id      TEXT,
    issuer         TEXT
);
CREATE TABLE IF NOT EXISTS device_codes (
    hash           TEXT PRIMARY KEY,
    user_code      TEXT NOT NULL UNIQUE,
    client_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    expires_at     REAL NOT NULL,
    interval       REAL NOT NULL,
    last_polled_at REAL,
    status         TEXT NOT NULL,
    username       TEXT,
    auth_time      REAL,
    issuer         TEXT
);
-- DPoP nonces handed out (RFC 9449 §8): the current one and the one before it.
CREATE TABLE IF NOT EXISTS dpop_nonces (
    value      TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
"""
# DPoP replay cache (RFC 9449 §11.1): the SHA-256 of each accepted proof's jti, until its iat
# leaves the accepted window. One write per proof, so one b-tree (no rowid, no index: the rare
# pruning can afford a scan). In a database of its own (see SqliteStore._open_replay_cache).
_REPLAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS dpop_proofs (
    jti_hash   BLOB PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_REMEMBER_PROOF = "INSERT OR IGNORE INTO dpop_proofs (jti_hash, expires_at) VALUES (?, ?)"
# Spent and expired codes are kept this long after expiry, so a replay is still recognised
# (and revokes what the code issued) rather than looking unknown.
CODE_RETENTION_SECONDS = 86400.0

# Expired replay-cache entries are deleted at most this often (a write per proof is enough).
_PRUNE_INTERVAL = 30.0
# Session ids whose Family is kept for reuse (SqliteStore.family); past that, forgotten.
_MAX_REMEMBERED_FAMILIES = 4096

_log = logging.getLogger(__name__)


def replay_cache_path(db_path: str) -> str:
    """The file of the DPoP replay cache that goes with the database at ``db_path``."""
    return db_path + "-dpop"


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    private_pem: str = field(repr=False)
    created_at: float
    retired_at: float | None
    last_exp: float | None = None


@dataclass(frozen=True)
class Family:
    """One sign-in: every refresh token rotated from it belongs to it."""

    id: str
    username: str
    client_id: str
    scope: str
    created_at: float
    last_refreshed_at: float | None
    expires_at: float
    revoked_at: float | None
    revoked_reason: str | None
    dpop_jkt: str | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


class Rotation(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    WRONG_CLIENT = "wrong_client"
    REVOKED = "revoked"
    EXPIRED = "expired"
    REUSED = "reused"  # the token was already spent: the family is now revoked
    INVALID_SCOPE = "invalid_scope"  # a live token asked for more than its grant: not spent
    # The token is DPoP-bound and the request has no proof of that key: nothing changed, so a
    # thief can neither spend it nor end its owner's session.
    WRONG_KEY = "wrong_key"


@dataclass(frozen=True)
class AuthorizationCode:
    """What an authorization code stands for (RFC 6749 §4.1.2), stored under the code's hash."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    username: str
    scope: str
    nonce: str | None
    auth_time: float
    offline: bool  # a refresh token may be issued (offline_access with prompt=consent)
    expires_at: float


class Redemption(enum.Enum):
    REDEEMED = "redeemed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REUSED = "reused"  # already redeemed: what it issued is now revoked


@dataclass(frozen=True)
class RedemptionResult:
    outcome: Redemption
    code: AuthorizationCode | None


# issue(code) -> (the family to create, the hash of its first refresh token or None). It runs
# inside the redeeming transaction; raising refuses the request and leaves the code unspent.
IssueForCode = Callable[[AuthorizationCode], tuple[Family, str | None]]


class DeviceStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    ISSUED = "issued"


@dataclass(frozen=True)
class DeviceCode:
    """A device authorization (RFC 8628 §3.2), stored under the device code's hash."""

    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: float
    status: DeviceStatus = DeviceStatus.PENDING
    username: str | None = None
    auth_time: float | None = None


class Poll(enum.Enum):
    ISSUED = "issued"  # approved: tokens now, once
    UNKNOWN = "unknown"
    WRONG_CLIENT = "wrong_client"
    EXPIRED = "expired"
    SLOW_DOWN = "slow_down"  # polled before the interval passed: the interval grows
    PENDING = "pending"
    DENIED = "denied"
    SPENT = "spent"  # tokens were issued for it already


@dataclass(frozen=True)
class PollResult:
    outcome: Poll
    device: DeviceCode | None


# issue(device) -> (family, refresh token hash), inside the polling transaction.
IssueForDevice = Callable[[DeviceCode], tuple[Family, str | None]]


@dataclass(frozen=True)
class RotationResult:
    outcome: Rotation
    family: Family | None
    # ROTATED: the scope granted to the new access token (the family's, or narrower).
    scope: str | None = None


class Store(Protocol):
    def close(self) -> None: ...
    def signing_keys(self) -> list[KeyRecord]: ...
    def add_signing_key(self, record: KeyRecord, *, retire_current: bool) -> bool: ...
    def note_key_use(self, kid: str, exp: float) -> None: ...
    def create_family(self, family: Family, token_hash: str | None) -> None: ...
    def rotate(
        self,
        token_hash: str,
        client_id: str,
        new_hash: str,
        now: float,
        narrow: Callable[[str], str | None] | None = None,
        *,
        jkt: str | None = None,
        grace: float = 0.0,
    ) -> RotationResult: ...
    def find_by_token(self, token_hash: str) -> Family | None: ...
    def family(self, family_id: str) -> Family | None: ...
    def revoke_family(self, family_id: str, now: float, reason: str) -> bool: ...
    def active_families(self, now: float) -> list[Family]: ...
    def revoke_all(self, now: float, reason: str) -> int: ...
    def add_code(self, code_hash: str, code: AuthorizationCode, now: float) -> None: ...
    def redeem_code(self, code_hash: str, now: float, issue: IssueForCode) -> RedemptionResult: ...
    def add_device_code(self, device_hash: str, device: DeviceCode, now: float) -> bool: ...
    def pending_device_code(self, user_code: str, now: float) -> DeviceCode | None: ...
    def decide_device_code(
        self, user_code: str, now: float, username: str | None, auth_time: float | None
    ) -> bool: ...
    def poll_device_code(
        self, device_hash: str, client_id: str, now: float, issue: IssueForDevice
    ) -> PollResult: ...
    def remember_dpop_proof(self, jti_hash: bytes, expires_at: float, now: float) -> bool: ...
    def rotate_dpop_nonce(
        self, candidate: str, now: float, lifetime: float
    ) -> list[tuple[str, float]]: ...
    def dpop_nonces(self) -> list[tuple[str, float]]: ...


# Every family query names the issuer: a store never sees another issuer's sessions.
_SELECT_FAMILY = (
    "SELECT id, username, client_id, scope, created_at, last_refreshed_at, expires_at, "
    "revoked_at, revoked_reason, dpop_jkt FROM families "
)
_FAMILY_BY_ID = _SELECT_FAMILY + "WHERE id = ? AND issuer = ?"
_FAMILY_BY_REFRESH_HASH = (
    "SELECT f.id, f.username, f.client_id, f.scope, f.created_at, f.last_refreshed_at, "
    "f.expires_at, f.revoked_at, f.revoked_reason, f.dpop_jkt "
    "FROM refresh_tokens t JOIN families f ON f.id = t.family_id "
    "WHERE t.hash = ? AND f.issuer = ?"
)
_ACTIVE_FAMILIES = (
    _SELECT_FAMILY
    + "WHERE revoked_at IS NULL AND expires_at > ? AND issuer = ? ORDER BY created_at"
)
_INSERT_FAMILY = (
    "INSERT INTO families (id, username, client_id, scope, created_at, last_refreshed_at, "
    "expires_at, revoked_at, revoked_reason, dpop_jkt, issuer) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _family(row: tuple[object, ...]) -> Family:
    return Family(*row)  # type: ignore[arg-type]


def _refusal(family: Family, client_id: str, now: float, jkt: str | None) -> Rotation | None:
    """Why a token of ``family`` cannot be rotated by ``client_id`` with a proof of ``jkt``,
    spent or not."""
    if family.client_id != client_id:
        return Rotation.WRONG_CLIENT
    if family.revoked_at is not None:
        return Rotation.REVOKED
    if now >= family.expires_at:
        return Rotation.EXPIRED
    if family.dpop_jkt is not None and family.dpop_jkt != jkt:
        return Rotation.WRONG_KEY
    return None


def _poll_refusal(
    device: DeviceCode, client_id: str, now: float, last_polled_at: object
) -> Poll | None:
    """Why a poll for ``device`` gets no tokens now, or None when it gets them; the first
    reason that holds, in this order."""
    too_soon = isinstance(last_polled_at, float) and now - last_polled_at < device.interval
    reasons = (
        (device.client_id != client_id, Poll.WRONG_CLIENT),
        (device.status is DeviceStatus.ISSUED, Poll.SPENT),
        (now >= device.expires_at, Poll.EXPIRED),
        (device.status is DeviceStatus.DENIED, Poll.DENIED),
        (too_soon, Poll.SLOW_DOWN),
        (device.status is DeviceStatus.PENDING, Poll.PENDING),
    )
    return next((outcome for holds, outcome in reasons if holds), None)


def _create_schema(conn: sqlite3.Connection, issuer: str | None) -> None:
    """The tables, and the columns a database from an earlier version lacks (in a write
    transaction)."""
    # Statement by statement: executescript() would commit our transaction.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(signing_keys)")}
    if "last_exp" not in columns:  # a database from before the column existed
        conn.execute("ALTER TABLE signing_keys ADD COLUMN last_exp REAL")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(families)")}
    if "dpop_jkt" not in columns:  # a database from before DPoP
        conn.execute("ALTER TABLE families ADD COLUMN dpop_jkt TEXT")
    for table in ("families", "authorization_codes", "device_codes"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if "issuer" not in columns:  # a database from before the issuer column
            conn.execute(f"ALTER TABLE {table} ADD COLUMN issuer TEXT")
    # Older codes stay without one: they live minutes, and are simply unknown now.
    if issuer is not None:
        # Sessions from before then belong to the first issuer that serves the
        # file after the upgrade: they keep working there, and nowhere else.
        conn.execute("UPDATE families SET issuer = ? WHERE issuer IS NULL", (issuer,))
    columns = {row[1] for row in conn.execute("PRAGMA table_info(refresh_tokens)")}
    if "replaced_by" not in columns:  # a database from before the reuse grace
        conn.execute("ALTER TABLE refresh_tokens ADD COLUMN replaced_by TEXT")


class SqliteStore:
    """``issuer`` scopes the sessions: the store makes, finds, rotates, lists and revokes only
    that issuer's families (signing keys are shared by every issuer of the file). Without one
    (``rotate-key``) it sees signing keys only."""

    def __init__(self, db_path: str, *, issuer: str | None = None) -> None:
        self._lock = threading.RLock()
        self._issuer = issuer
        self._watch: CommitWatch | None = None  # set once the database is in WAL mode
        if db_path != MEMORY_DB:
            Path(db_path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The file holds the private signing keys: readable by its owner only.
            self._conn = open_file(db_path, synchronous="NORMAL")
        else:
            self._conn = connect(db_path)
        self._turn = WriterTurn(db_path)
        with self._lock:
            self._conn.execute("PRAGMA foreign_keys = ON")
            with self._write() as conn:
                _create_schema(conn, issuer)
        self._pruned_at = -math.inf
        # The replay cache: in memory, a table of the one connection (no other process can
        # share it); for a file, a database of its own, opened on the first proof.
        self._replay_path: str | None = None
        self._replay: sqlite3.Connection | None = None
        self._replay_lock: threading.Lock | threading.RLock = threading.Lock()
        self._replay_turn = WriterTurn(MEMORY_DB)  # the file's own, once it is opened
        if db_path == MEMORY_DB:
            with self._lock:
                self._conn.execute(_REPLAY_SCHEMA)
            self._replay, self._replay_lock = self._conn, self._lock
        else:
            self._replay_path = replay_cache_path(db_path)
        # The last Family read for each session id: the commit mark from before its query,
        # its row, and the Family built from that row.
        self._families: dict[str, tuple[bytes | None, tuple[object, ...], Family]] = {}
        # Reads get a connection of their own: in WAL mode they never wait for a writer, so a
        # read is always quick, even while a write waits for another process's lock. (One
        # in-memory database cannot have two connections; there, nothing else can write.)
        self._reader = self._conn
        self._reader_lock = self._lock
        if db_path != MEMORY_DB:
            self._reader = connect(db_path)
            self._reader_lock = threading.RLock()
        self._watch = CommitWatch(db_path) if db_path != MEMORY_DB else None

    def close(self) -> None:
        with self._lock, self._reader_lock, self._replay_lock:
            if self._watch is not None:
                self._watch.close()
            if self._reader is not self._conn:
                self._reader.close()
            if self._replay is not None and self._replay is not self._conn:
                self._replay.close()
                self._replay = None
            self._conn.close()
            self._turn.close()
            self._replay_turn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the database's write lock up front, so a read-check-write inside
        # it cannot interleave with another writer, in this process or any other.
        with self._lock, self._turn():
            self._conn.execute("BEGIN IMMEDIATE")
            watch = self._watch if self._watch is not None and self._watch.trusted is None else None
            before = (watch.header(), self._conn.total_changes) if watch is not None else None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a deferred constraint, a full disk) can leave the transaction
                # open; on this shared connection every later write would then fail.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            if before is not None and self._conn.total_changes != before[1]:
                assert watch is not None  # before is taken exactly when there is one
                watch.check(before[0])

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._reader_lock:
            return self._reader.execute(sql, params).fetchall()

    # Signing keys

    def signing_keys(self) -> list[KeyRecord]:
        rows = self._read(
            "SELECT kid, private_pem, created_at, retired_at, last_exp FROM signing_keys "
            "ORDER BY created_at"
        )
        return [KeyRecord(*row) for row in rows]  # type: ignore[arg-type]

    def add_signing_key(self, record: KeyRecord, *, retire_current: bool) -> bool:
        """Store a new active key. Without ``retire_current``, only when none is active yet.

        Returns whether the key was stored (two processes starting at once make one key).
        """
        with self._write() as conn:
            active = conn.execute(
                "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL"
            ).fetchone()[0]
            if active and not retire_current:
                return False
            conn.execute(
                "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL",
                (record.created_at,),
            )
            conn.execute(
                "INSERT INTO signing_keys (kid, private_pem, created_at, retired_at) "
                "VALUES (?, ?, ?, NULL)",
                (record.kid, record.private_pem, record.created_at),
            )
            return True

    def note_key_use(self, kid: str, exp: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE signing_keys SET last_exp = max(coalesce(last_exp, 0), ?) WHERE kid = ?",
                (exp, kid),
            )

    # Families and refresh tokens

    def create_family(self, family: Family, token_hash: str | None) -> None:
        """Store a new sign-in, with its first refresh token when it has one."""
        with self._write() as conn:
            self._insert_family(conn, family, token_hash)

    def _insert_family(
        self, conn: sqlite3.Connection, family: Family, token_hash: str | None
    ) -> None:
        conn.execute(
            _INSERT_FAMILY,
            (
                family.id,
                family.username,
                family.client_id,
                family.scope,
                family.created_at,
                family.last_refreshed_at,
                family.expires_at,
                family.revoked_at,
                family.revoked_reason,
                family.dpop_jkt,
                self._issuer,
            ),
        )
        if token_hash is not None:
            conn.execute(
                "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES (?, ?, ?)",
                (token_hash, family.id, family.created_at),
            )

    def rotate(
        self,
        token_hash: str,
        client_id: str,
        new_hash: str,
        now: float,
        narrow: Callable[[str], str | None] | None = None,
        *,
        jkt: str | None = None,
        grace: float = 0.0,
    ) -> RotationResult:
        """Spend the token and store ``new_hash`` in its family, all or nothing.

        ``narrow`` maps the family's scope to the scope asked for, None when it asks beyond
        it. It is consulted only once the token is known to be live and unspent (or forgiven),
        so a replayed token revokes its family whatever scope comes with it.

        ``jkt`` is the thumbprint of the request's DPoP key. A bound family's tokens are
        refused without it, before anything else (WRONG_KEY: not spent, not a reuse, not
        forgiven either); an unbound family is bound to it from now on (RFC 9449 §5).

        ``grace`` (seconds, 0 = strict) forgives a lost answer: within it after a token's
        rotation, that token may be presented again while the token its rotation issued is
        still unspent. That token is then spent instead, so the family never holds two live
        refresh tokens. An older token, or one presented later, revokes the family.
        """
        with self._write() as conn:
            row = conn.execute(_FAMILY_BY_REFRESH_HASH, (token_hash, self._issuer)).fetchone()
            if row is None:
                return RotationResult(Rotation.UNKNOWN, None)
            family = _family(row)
            refusal = _refusal(family, client_id, now, jkt)
            if refusal is not None:
                return RotationResult(refusal, family)
            used_at, successor = conn.execute(
                "SELECT used_at, replaced_by FROM refresh_tokens WHERE hash = ?", (token_hash,)
            ).fetchone()
            if used_at is not None and not (
                grace > 0 and successor is not None and now - used_at <= grace
            ):
                return self._reused(conn, family, now)
            scope = family.scope if narrow is None else narrow(family.scope)
            if scope is None:
                return RotationResult(Rotation.INVALID_SCOPE, family)
            # The conditional write is the single point of truth: of N concurrent requests
            # with one token, exactly one changes its row. A forgiven token is not spent again:
            # the live token its lost answer carried is, under the same condition (and gets no
            # successor, so presenting it later is a reuse).
            if used_at is None:
                spent = conn.execute(
                    "UPDATE refresh_tokens SET used_at = ?, replaced_by = ? "
                    "WHERE hash = ? AND used_at IS NULL",
                    (now, new_hash, token_hash),
                ).rowcount
            else:
                spent = conn.execute(
                    "UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                    (now, successor),
                ).rowcount
            if spent != 1:
                return self._reused(conn, family, now)
            if used_at is not None:
                # A retry of this retry, still within the window, finds the new token live.
                conn.execute(
                    "UPDATE refresh_tokens SET replaced_by = ? WHERE hash = ?",
                    (new_hash, token_hash),
                )
            conn.execute(
                "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES (?, ?, ?)",
                (new_hash, family.id, now),
            )
            bound = family.dpop_jkt or jkt
            conn.execute(
                "UPDATE families SET last_refreshed_at = ?, dpop_jkt = ? WHERE id = ?",
                (now, bound, family.id),
            )
            return RotationResult(
                Rotation.ROTATED,
                dataclasses.replace(family, last_refreshed_at=now, dpop_jkt=bound),
                scope,
            )

    @staticmethod
    def _reused(conn: sqlite3.Connection, family: Family, now: float) -> RotationResult:
        conn.execute(
            "UPDATE families SET revoked_at = ?, revoked_reason = ? "
            "WHERE id = ? AND revoked_at IS NULL",
            (now, "refresh token reused", family.id),
        )
        return RotationResult(Rotation.REUSED, family)

    def find_by_token(self, token_hash: str) -> Family | None:
        rows = self._read(_FAMILY_BY_REFRESH_HASH, (token_hash, self._issuer))
        return _family(rows[0]) if rows else None

    def family(self, family_id: str) -> Family | None:
        """The session as the database holds it now. Asked on every authorized request, so
        that a revocation by any process counts at once; profiled, the query (its read
        transaction's locks, nine columns) was most of a Bearer request's own work, and
        building the Family a good part of the rest. So: when nothing has been committed to
        the database since this session was last read (CommitWatch), that read is still
        true and no query is made; and a row equal in every column to the last one read
        gives back the Family built from it."""
        mark = self._watch.mark() if self._watch is not None else None
        known = self._families.get(family_id)
        if mark is not None and known is not None and known[0] == mark:
            return known[2]
        with self._reader_lock:
            row = self._reader.execute(_FAMILY_BY_ID, (family_id, self._issuer)).fetchone()
        if row is None:
            return None
        family = known[2] if known is not None and known[1] == row else _family(row)
        if len(self._families) >= _MAX_REMEMBERED_FAMILIES:
            self._families.clear()
        self._families[family_id] = (mark, row, family)
        return family

    def revoke_family(self, family_id: str, now: float, reason: str) -> bool:
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE families SET revoked_at = ?, revoked_reason = ? "
                "WHERE id = ? AND issuer = ? AND revoked_at IS NULL",
                (now, reason, family_id, self._issuer),
            ).rowcount
            return changed == 1

    def revoke_all(self, now: float, reason: str) -> int:
        """Revoke every family not revoked yet; how many were."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE families SET revoked_at = ?, revoked_reason = ? "
                "WHERE revoked_at IS NULL AND issuer = ?",
                (now, reason, self._issuer),
            ).rowcount

    def active_families(self, now: float) -> list[Family]:
        rows = self._read(_ACTIVE_FAMILIES, (now, self._issuer))
        return [_family(row) for row in rows]

    # Authorization codes

    def add_code(self, code_hash: str, code: AuthorizationCode, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM authorization_codes WHERE expires_at < ?",
                (now - CODE_RETENTION_SECONDS,),
            )
            conn.execute(
                "INSERT INTO authorization_codes (hash, client_id, redirect_uri, code_challenge, "
                "username, scope, nonce, auth_time, offline, expires_at, issuer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code_hash,
                    code.client_id,
                    code.redirect_uri,
                    code.code_challenge,
                    code.username,
                    code.scope,
                    code.nonce,
                    code.auth_time,
                    int(code.offline),
                    code.expires_at,
                    self._issuer,
                ),
            )

    def redeem_code(self, code_hash: str, now: float, issue: IssueForCode) -> RedemptionResult:
        """Spend the code and create the session ``issue`` makes for it, all or nothing.

        A code already spent answers REUSED and revokes the session it was spent for (RFC 6749
        §4.1.2). ``issue`` checks the request against the code (client, redirect URI, PKCE);
        when it raises, the transaction rolls back and the code stays unspent.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT client_id, redirect_uri, code_challenge, username, scope, nonce, "
                "auth_time, offline, expires_at, used_at, family_id "
                "FROM authorization_codes WHERE hash = ? AND issuer = ?",
                (code_hash, self._issuer),
            ).fetchone()
            if row is None:
                return RedemptionResult(Redemption.UNKNOWN, None)
            (client_id, redirect_uri, challenge, username, scope, nonce, auth_time) = row[:7]
            offline, expires_at, used_at, family_id = row[7:]
            code = AuthorizationCode(
                client_id,
                redirect_uri,
                challenge,
                username,
                scope,
                nonce,
                auth_time,
                offline=bool(offline),
                expires_at=expires_at,
            )
            if used_at is not None:
                if family_id is not None:
                    conn.execute(
                        "UPDATE families SET revoked_at = ?, revoked_reason = ? "
                        "WHERE id = ? AND revoked_at IS NULL",
                        (now, "authorization code reused", family_id),
                    )
                return RedemptionResult(Redemption.REUSED, code)
            if now >= code.expires_at:
                return RedemptionResult(Redemption.EXPIRED, code)
            family, token_hash = issue(code)
            # The conditional write makes the code single-use, whatever runs concurrently.
            spent = conn.execute(
                "UPDATE authorization_codes SET used_at = ?, family_id = ? "
                "WHERE hash = ? AND used_at IS NULL",
                (now, family.id, code_hash),
            ).rowcount
            if spent != 1:
                return RedemptionResult(Redemption.REUSED, code)
            self._insert_family(conn, family, token_hash)
            return RedemptionResult(Redemption.REDEEMED, code)

    # Device codes (RFC 8628)

    def add_device_code(self, device_hash: str, device: DeviceCode, now: float) -> bool:
        """Store a new device authorization; False when its user code is taken (pick another)."""
        try:
            with self._write() as conn:
                conn.execute(
                    "DELETE FROM device_codes WHERE expires_at < ?",
                    (now - CODE_RETENTION_SECONDS,),
                )
                conn.execute(
                    "INSERT INTO device_codes (hash, user_code, client_id, scope, expires_at, "
                    "interval, status, issuer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        device_hash,
                        device.user_code,
                        device.client_id,
                        device.scope,
                        device.expires_at,
                        device.interval,
                        device.status.value,
                        self._issuer,
                    ),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    _SELECT_DEVICE = (
        "SELECT user_code, client_id, scope, expires_at, interval, status, username, auth_time "
        "FROM device_codes "
    )

    @staticmethod
    def _device(row: tuple[object, ...]) -> DeviceCode:
        user_code, client_id, scope, expires_at, interval, status, username, auth_time = row
        return DeviceCode(
            user_code,  # type: ignore[arg-type]
            client_id,  # type: ignore[arg-type]
            scope,  # type: ignore[arg-type]
            expires_at,  # type: ignore[arg-type]
            interval,  # type: ignore[arg-type]
            DeviceStatus(status),
            username,  # type: ignore[arg-type]
            auth_time,  # type: ignore[arg-type]
        )

    def pending_device_code(self, user_code: str, now: float) -> DeviceCode | None:
        """The live, undecided device authorization with this (normalised) user code."""
        rows = self._read(
            self._SELECT_DEVICE
            + "WHERE user_code = ? AND status = ? AND expires_at > ? AND issuer = ?",
            (user_code, DeviceStatus.PENDING.value, now, self._issuer),
        )
        return self._device(rows[0]) if rows else None

    def decide_device_code(
        self, user_code: str, now: float, username: str | None, auth_time: float | None
    ) -> bool:
        """Approve (``username`` given) or deny (None) a pending code; False when it is not
        pending any more (decided, expired) or unknown."""
        status = DeviceStatus.APPROVED if username is not None else DeviceStatus.DENIED
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE device_codes SET status = ?, username = ?, auth_time = ? "
                "WHERE user_code = ? AND status = ? AND expires_at > ? AND issuer = ?",
                (
                    status.value,
                    username,
                    auth_time,
                    user_code,
                    DeviceStatus.PENDING.value,
                    now,
                    self._issuer,
                ),
            ).rowcount
            return changed == 1

    def poll_device_code(
        self, device_hash: str, client_id: str, now: float, issue: IssueForDevice
    ) -> PollResult:
        """One poll of the token endpoint (RFC 8628 §3.5): its answer, and the tokens' session
        created once, when the code was approved."""
        with self._write() as conn:
            row = conn.execute(
                self._SELECT_DEVICE.replace("FROM", ", last_polled_at FROM")
                + "WHERE hash = ? AND issuer = ?",
                (device_hash, self._issuer),
            ).fetchone()
            if row is None:
                return PollResult(Poll.UNKNOWN, None)
            device = self._device(row[:-1])
            last_polled_at = row[-1]
            waiting = _poll_refusal(device, client_id, now, last_polled_at)
            if waiting in (Poll.SLOW_DOWN, Poll.PENDING):
                # §3.5: on slow_down the interval grows by 5 seconds, for this request and
                # every later one.
                grow = 5 if waiting is Poll.SLOW_DOWN else 0
                conn.execute(
                    "UPDATE device_codes SET interval = interval + ?, last_polled_at = ? "
                    "WHERE hash = ?",
                    (grow, now, device_hash),
                )
            if waiting is not None:
                return PollResult(waiting, device)
            family, token_hash = issue(device)
            spent = conn.execute(
                "UPDATE device_codes SET status = ?, last_polled_at = ? "
                "WHERE hash = ? AND status = ?",
                (DeviceStatus.ISSUED.value, now, device_hash, DeviceStatus.APPROVED.value),
            ).rowcount
            if spent != 1:
                return PollResult(Poll.SPENT, device)
            self._insert_family(conn, family, token_hash)
            return PollResult(Poll.ISSUED, device)

    # DPoP (RFC 9449): the replay cache and the server's nonces

    def remember_dpop_proof(self, jti_hash: bytes, expires_at: float, now: float) -> bool:
        """Record an accepted proof's jti; False when any process saw it before (a replay)."""
        with self._replay_lock:
            conn = self._replay if self._replay is not None else self._open_replay_cache()
            with self._replay_turn():
                return self._remember(conn, jti_hash, expires_at, now)

    def _remember(
        self, conn: sqlite3.Connection, jti_hash: bytes, expires_at: float, now: float
    ) -> bool:
        if now - self._pruned_at >= _PRUNE_INTERVAL:
            # Strictly before now: a proof whose `iat` is exactly the window's age is still
            # accepted (ProofVerifier refuses only older ones), so its entry must stay.
            conn.execute("DELETE FROM dpop_proofs WHERE expires_at < ?", (now,))
            self._pruned_at = now
        # One statement, so its own transaction (no BEGIN/COMMIT round trips): the primary
        # key makes it atomic across processes. An entry not pruned yet still refuses its jti.
        return int(conn.execute(_REMEMBER_PROOF, (jti_hash, expires_at)).rowcount) == 1

    def _open_replay_cache(self) -> sqlite3.Connection:
        """The replay cache's own database (replay_cache_path), shared by every process of the
        main one and kept across restarts like it.

        Apart from the main database because it takes a write per DPoP request: there, each
        such write would make the connection that reads sessions drop its page cache (any
        commit by another connection does), and would share checkpoints with the sessions.

        ``synchronous = OFF``: a commit never waits for the disk (nor does a checkpoint). A
        server process that crashes loses nothing (the writes are in the operating system's
        cache); an operating-system crash or power loss may lose the last seconds of entries,
        or leave the file damaged (delete it then: it holds nothing else). Either way nothing
        of value is lost: an entry matters only while its proof's `iat` is within the 60 s
        window, and after a crash the machine must boot and the server start again before a
        replayed proof could reach it. The main database keeps synchronous = NORMAL."""
        assert self._replay_path is not None
        path = self._replay_path
        conn = open_file(path, synchronous="OFF")
        conn.execute(_REPLAY_SCHEMA)
        self._replay_turn = WriterTurn(path)  # as the main database's writers do
        self._replay = conn
        return conn

    def rotate_dpop_nonce(
        self, candidate: str, now: float, lifetime: float
    ) -> list[tuple[str, float]]:
        with self._write() as conn:
            newest = conn.execute("SELECT max(created_at) FROM dpop_nonces").fetchone()[0]
            # Checked inside the write lock: of processes rotating at once, one adds a nonce.
            if newest is None or now - newest >= lifetime:
                conn.execute(
                    "INSERT INTO dpop_nonces (value, created_at) VALUES (?, ?)", (candidate, now)
                )
            conn.execute("DELETE FROM dpop_nonces WHERE created_at <= ?", (now - 2 * lifetime,))
            rows = conn.execute(
                "SELECT value, created_at FROM dpop_nonces ORDER BY created_at DESC"
            ).fetchall()
        return [(str(value), float(created)) for value, created in rows]

    def dpop_nonces(self) -> list[tuple[str, float]]:
        rows = self._read("SELECT value, created_at FROM dpop_nonces ORDER BY created_at DESC")
        return [(str(value), float(created)) for value, created in rows]  # type: ignore[arg-type]
