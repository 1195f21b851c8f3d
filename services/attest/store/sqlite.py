"""Embedded SQLite store: WAL journal, synchronous=FULL (fsync on every commit).

Writers take the database lock up front (BEGIN IMMEDIATE), so concurrent
transactions — threads here or other processes on the same file — serialise
and a compare-and-swap inside one is atomic.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.attest.store.base import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, record BLOB NOT NULL, hash BLOB NOT NULL);
"""


class _SqliteTxn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, key: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        self._conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete(self, key: str) -> None:
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        upper = prefix + "\U0010ffff"
        rows = self._conn.execute(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, upper)
        ).fetchall()
        for key, value in rows:
            yield str(key), bytes(value)

    def append_log(self, record: bytes, chain_hash: bytes) -> int:
        cursor = self._conn.execute(
            "INSERT INTO log (record, hash) VALUES (?, ?)", (record, chain_hash)
        )
        return int(cursor.lastrowid or 0)

    def log_head(self) -> tuple[int, bytes]:
        row = self._conn.execute("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, b"") if row is None else (int(row[0]), bytes(row[1]))


def _blob(value: bytes | str) -> bytes:
    """A value as bytes, even if someone rewrote it as TEXT behind our back."""
    return value.encode() if isinstance(value, str) else bytes(value)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # create it 0600, not umask's
        os.close(fd)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[_SqliteTxn]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(f"cannot start a transaction: {err}") from err
            try:
                yield _SqliteTxn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._conn.execute("ROLLBACK")
                raise StoreError(f"commit failed: {err}") from err

    def read_log(self, after: int, limit: int) -> list[tuple[int, bytes, bytes]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, record, hash FROM log WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(int(s), _blob(r), _blob(h)) for s, r, h in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
