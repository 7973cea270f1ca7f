"""How the server keeps its SQLite files: readable by their owner only, in WAL mode, with
a cheap way to tell that nothing was committed since a read (CommitWatch) and a turn for
writers across processes (WriterTurn). The tables and what they mean are store.py's."""

from __future__ import annotations

import logging
import mmap
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from .settings import MEMORY_DB

try:
    import fcntl
except ImportError:  # Windows: SQLite's own waiting only
    fcntl = None  # type: ignore[assignment]

BUSY_TIMEOUT_SECONDS = 15.0
OWNER_ONLY = 0o600
_log = logging.getLogger(__name__)


def secure_permissions(db_path: str) -> None:
    """Make the database and its WAL companions readable by their owner only: they hold the
    private signing keys. A file made earlier with looser permissions is tightened (with a
    warning), not refused, so an existing database keeps working; an OSError (a file owned by
    someone else) stops the start."""
    for path in (db_path, db_path + "-wal", db_path + "-shm"):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            continue
        if mode & ~OWNER_ONLY:
            os.chmod(path, OWNER_ONLY)
            _log.warning("%s was readable by others (mode %04o); now 0600", path, mode)


class CommitWatch:
    """Whether anything was committed to a WAL database since an earlier look, without a query.

    SQLite keeps the wal-index header (https://www.sqlite.org/walformat.html, 2.2.1) at the
    start of the database's -shm file, the memory that every connection of every process on the
    database maps. Every commit changes that header (its change counter, frame count and
    checksum) before COMMIT returns; a writer updates its two 48-byte copies one after the
    other, so two equal copies are a header that no writer is changing. An unchanged header
    therefore means that no transaction has committed since: a row read after the earlier look
    is still what the same query would read now.

    Trusted only once seen to work (``check``): a commit of this process that changed rows
    must change the header mapped here. Until then, or for good if it did not (the file mapped
    is not the one SQLite uses), ``mark`` is None and every read queries.
    """

    _HEADER = 96  # the two copies of the header

    def __init__(self, db_path: str) -> None:
        self.trusted: bool | None = None  # None: not seen yet; False: never to be used
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(os.path.realpath(db_path) + "-shm", os.O_RDONLY)
            try:
                self._map = mmap.mmap(fd, self._HEADER, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        except (OSError, ValueError):  # no -shm, or one too short for a header
            self.trusted = False

    def header(self) -> bytes | None:
        """The header as it is now, when both copies agree."""
        if self._map is None:
            return None
        header = self._map[: self._HEADER]
        half = self._HEADER // 2
        return header if header[:half] == header[half:] else None

    def mark(self) -> bytes | None:
        return self.header() if self.trusted else None

    def check(self, before: bytes | None) -> None:
        """After a commit that changed rows, with the header from before it (taken under the
        write lock): trusted if the header changed, never again if it did not."""
        if self.trusted is None and before is not None:
            after = self.header()
            if after is not None:
                self.trusted = after != before
                if not self.trusted:
                    _log.warning("the -shm of the database does not follow its commits")

    def close(self) -> None:
        self.trusted = False
        if self._map is not None:
            self._map.close()
            self._map = None


def connect(db_path: str) -> sqlite3.Connection:
    """A connection as the store uses it: explicit transactions, shared by threads."""
    conn = sqlite3.connect(
        db_path,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,  # transactions are explicit (SqliteStore._write)
        check_same_thread=False,  # shared between worker threads under the store's locks
    )
    return conn


def open_file(db_path: str, *, synchronous: str) -> sqlite3.Connection:
    """A connection to the database file at ``db_path`` in WAL mode, the file and its -wal and
    -shm companions readable by their owner only."""
    os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, OWNER_ONLY))
    secure_permissions(db_path)
    conn = connect(db_path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # SQLite gives new -wal/-shm files the database's mode; older ones may not be.
    secure_permissions(db_path)
    return conn


class WriterTurn:
    """Writers of one database file take turns on a file lock before SQLite's own write lock.

    SQLite's busy handler waits for a held write lock by sleeping (1 ms, then 2, 5, 10 ms...),
    so with ``--workers N`` a refresh that met another worker's transaction of a tenth of a
    millisecond slept ten times as long (measured with two workers: 758-1,188 refreshes/s
    before, 1,309-1,674/s with the turns, same run). A blocking flock wakes the waiter as the
    holder lets go. SQLite's locks still decide what is correct; this only orders the writers
    who use it, and is skipped where flock is missing (Windows) or the database is in memory."""

    def __init__(self, db_path: str) -> None:
        self._fd: int | None = None
        if db_path == MEMORY_DB or fcntl is None:
            return
        self._fd = os.open(db_path + "-writer.lock", os.O_RDWR | os.O_CREAT, OWNER_ONLY)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        assert fcntl is not None  # a descriptor is opened only where flock exists
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
