"""The database: every table (``schema.sql``), every connection, and the resource rows.

Like flaskr's ``db.py``: ``init_app`` opens the store, ``get_store`` reaches it from anywhere.
Modules own their tables (``schema.sql`` says which) and reach them through a connection
from here; the ``resource`` rows and their search index are read and written below.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from flask import Flask, current_app

SCHEMA = (Path(__file__).parent / "schema.sql").read_text(encoding="utf-8")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Row:
    rtype: str
    id: str
    version: int
    last_updated: datetime
    body: dict[str, Any]


@dataclass(frozen=True)
class Index:
    """Search-index rows of one resource: (param, value) pairs."""

    strings: Sequence[tuple[str, str]] = ()
    tokens: Sequence[tuple[str, str]] = ()


class Store:
    """Connections to one database.

    ``:memory:`` uses one connection guarded by a lock (a private in-memory DB cannot be
    shared between connections without shared-cache locking errors); a file uses one
    connection per thread with WAL and a busy timeout, and writes in BEGIN IMMEDIATE.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.memory = path == ":memory:"
        if not self.memory:         # `--db data/mock.sqlite3` in a fresh directory: make data/
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._closed = False
        with self._lock:  # executescript commits on its own: run it outside any transaction
            self._conn().executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        if not self.memory:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self.memory:
            if not self._all:
                self._connect()
            return self._all[0]
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; a file DB reads in one deferred transaction (one WAL snapshot,
        so a search's count and page agree). Nested reads on the same thread reuse it."""
        if self.memory:
            with self._lock:
                yield self._conn()
            return
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A BEGIN IMMEDIATE transaction: committed on success, rolled back on any exception."""
        if self.memory:
            self._lock.acquire()
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")
        finally:
            if self.memory:
                self._lock.release()

    @property
    def closed(self) -> bool:
        """True once ``close`` ran (a background thread then stops quietly)."""
        return self._closed

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            self._closed = True
        self._local = threading.local()


STORE_KEY = "fhir.store"


def init_app(app: Flask, path: str) -> Store:
    """Open (and, if new, create) the database of ``app``."""
    store = app.extensions[STORE_KEY] = Store(path)
    return store


def get_store(app: Flask | None = None) -> Store:
    """The store of ``app`` (default: the current app)."""
    return (app or current_app).extensions[STORE_KEY]


def _row(r: tuple[Any, ...]) -> Row:
    return Row(r[0], r[1], r[2], datetime.fromisoformat(r[3]), json.loads(r[4]))


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many resources of each type are stored."""
    return dict(conn.execute("SELECT rtype, COUNT(*) FROM resource GROUP BY rtype").fetchall())


def get(conn: sqlite3.Connection, rtype: str, rid: str) -> Row | None:
    r = conn.execute(
        "SELECT rtype, id, version, last_updated, body FROM resource WHERE rtype = ? AND id = ?", (rtype, rid)
    ).fetchone()
    return _row(r) if r else None


def exists(conn: sqlite3.Connection, rtype: str, rid: str) -> bool:
    return conn.execute("SELECT 1 FROM resource WHERE rtype = ? AND id = ?", (rtype, rid)).fetchone() is not None


def put(conn: sqlite3.Connection, rtype: str, rid: str, body: dict[str, Any], index: Index) -> Row:
    """Insert or replace a resource (keeping its creation order) and its index rows."""
    now = utcnow()
    cur = conn.execute("SELECT version FROM resource WHERE rtype = ? AND id = ?", (rtype, rid)).fetchone()
    version = 1 if cur is None else cur[0] + 1
    data = json.dumps(body, separators=(",", ":"))
    if cur is None:
        conn.execute(
            "INSERT INTO resource (rtype, id, version, last_updated, body) VALUES (?, ?, ?, ?, ?)",
            (rtype, rid, version, now.isoformat(), data),
        )
    else:
        conn.execute(
            "UPDATE resource SET version = ?, last_updated = ?, body = ? WHERE rtype = ? AND id = ?",
            (version, now.isoformat(), data, rtype, rid),
        )
    _drop_index(conn, rtype, rid)
    conn.executemany(
        "INSERT INTO search_string (rtype, id, param, value, value_lower) VALUES (?, ?, ?, ?, ?)",
        [(rtype, rid, p, v, v.lower()) for p, v in index.strings],
    )
    conn.executemany(
        "INSERT INTO search_token (rtype, id, param, value) VALUES (?, ?, ?, ?)",
        [(rtype, rid, p, v) for p, v in index.tokens],
    )
    return Row(rtype, rid, version, now, body)


def delete(conn: sqlite3.Connection, rtype: str, rid: str) -> None:
    conn.execute("DELETE FROM resource WHERE rtype = ? AND id = ?", (rtype, rid))
    _drop_index(conn, rtype, rid)


def _drop_index(conn: sqlite3.Connection, rtype: str, rid: str) -> None:
    conn.execute("DELETE FROM search_string WHERE rtype = ? AND id = ?", (rtype, rid))
    conn.execute("DELETE FROM search_token WHERE rtype = ? AND id = ?", (rtype, rid))


def page(
    conn: sqlite3.Connection, rtype: str, where: Sequence[str], args: Sequence[Any], limit: int, offset: int
) -> tuple[int, list[Row]]:
    """Total count and one page of rows matching all ``where`` clauses, in creation order."""
    cond = " AND ".join(["r.rtype = ?", *where])
    params = [rtype, *args]
    total = conn.execute(f"SELECT COUNT(*) FROM resource r WHERE {cond}", params).fetchone()[0]
    rows: list[Row] = []
    if limit > 0:
        rows = [
            _row(r)
            for r in conn.execute(
                f"SELECT r.rtype, r.id, r.version, r.last_updated, r.body FROM resource r WHERE {cond}"
                " ORDER BY r.seq LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        ]
    return total, rows


# ---- reads for the exporter: rows by id within a lastUpdated window, without parsing bodies ----

# meta.lastUpdated as exported ("2024-01-02T03:04:05.000000Z") from the stored UTC isoformat text, in SQL
EXPORT_INSTANT_SQL = ("substr(last_updated, 1, 19) || '.' || CASE WHEN substr(last_updated, 20, 1) = '.'"
                      " THEN substr(last_updated, 21, 6) ELSE '000000' END || 'Z'")


def window(since: str | None, until: str | None) -> tuple[str, list[str]]:
    """`` AND …`` clauses keeping rows with since <= last_updated <= until (bounds as UTC isoformat text).

    Stored instants and the bounds are all ``datetime.isoformat()`` of UTC values, whose text
    order is their time order (``+`` sorts before ``.``, so 07+00:00 < 07.5+00:00)."""
    clauses, args = [], []
    if since is not None:
        clauses.append("last_updated >= ?")
        args.append(since)
    if until is not None:
        clauses.append("last_updated <= ?")
        args.append(until)
    return "".join(f" AND {c}" for c in clauses), args


def bodies(conn: sqlite3.Connection, rtype: str, ids: Sequence[str], since: str | None = None,
           until: str | None = None) -> Iterator[tuple[str, str, str]]:
    """(id, last_updated text, body text) of the ``ids`` in the window, in creation order."""
    where, args = window(since, until)
    marks = ",".join("?" * len(ids))
    yield from conn.execute(f"SELECT id, last_updated, body FROM resource WHERE rtype = ? AND id IN ({marks}){where}"
                            " ORDER BY seq", [rtype, *ids, *args])


def export_texts(conn: sqlite3.Connection, rtype: str, ids: Sequence[str], since: str | None = None,
                 until: str | None = None) -> Iterator[str]:
    """The rows as exported JSON text (SQLite sets resourceType, id and meta.lastUpdated: nothing parsed)."""
    where, args = window(since, until)
    marks = ",".join("?" * len(ids))
    for (text,) in conn.execute(
            f"SELECT json_set(body, '$.resourceType', rtype, '$.id', id, '$.meta.lastUpdated', {EXPORT_INSTANT_SQL})"
            f" FROM resource WHERE rtype = ? AND id IN ({marks}){where} ORDER BY seq", [rtype, *ids, *args]):
        yield text
