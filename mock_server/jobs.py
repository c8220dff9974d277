"""Background jobs: one worker thread per app runs the queued jobs of every registered kind.

A kind (``export``, ``cohort``) registers a runner with ``register(app, kind, runner)``;
the runner runs one queued job of its kind and says whether it found one. Routes queue
a row in their job table and call ``wake(app)``; long jobs ask ``stopping(app)`` and
``pause(app, seconds)`` so that shutdown never waits for them. The job tables
(``export_job``, ``cohort_job`` in ``schema.sql``) share their life cycle
(queued → running → complete | failed), read and claimed through ``find`` and ``claim_next``.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, Callable

from flask import Flask

from . import db
from .http import FhirError

log = logging.getLogger(__name__)
Runner = Callable[[Flask], bool]   # runs one queued job of its kind; True when there was one
WORKER_KEY = "fhir.jobs.worker"
JOB_TABLES = ("export_job", "cohort_job")


class Worker:
    """One background thread per app: runs queued jobs, kind by kind in registration order."""

    def __init__(self, app: Flask):
        self.app = app
        self.runners: dict[str, Runner] = {}
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="fhir-mock-jobs", daemon=True)

    def register(self, kind: str, runner: Runner) -> None:
        if kind in self.runners:
            raise ValueError(f"job kind {kind!r} is already registered")
        self.runners[kind] = runner

    def start(self) -> None:
        self.thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a running job stops at its next check and resumes at the next start."""
        self.stop.set()
        self.wake.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def _loop(self) -> None:
        store = db.get_store(self.app)
        while not self.stop.is_set():
            if store.closed:  # the app was discarded without shutdown: stop quietly
                return
            try:
                with self.app.app_context():
                    if any(run(self.app) for run in self.runners.values()):
                        continue
            except Exception as exc:  # the store closed under us at shutdown, or a bug: keep the thread alive
                if self.stop.is_set() or "no such table" in str(exc):
                    return
                log.exception("job worker error")
                time.sleep(0.2)
            self.wake.wait(0.5)
            self.wake.clear()


def init_app(app: Flask) -> Worker:
    """The app's worker, not yet started (kinds register first, then ``start``)."""
    worker = app.extensions[WORKER_KEY] = Worker(app)
    return worker


def register(app: Flask, kind: str, runner: Runner) -> None:
    app.extensions[WORKER_KEY].register(kind, runner)


def start(app: Flask) -> None:
    app.extensions[WORKER_KEY].start()


def shutdown(app: Flask) -> None:
    worker = app.extensions.get(WORKER_KEY)
    if worker is not None:
        worker.shutdown()


def wake(app: Flask) -> None:
    """A job was queued: run it now rather than at the next half-second tick."""
    worker = app.extensions.get(WORKER_KEY)
    if worker is not None:
        worker.wake.set()


def stopping(app: Flask) -> bool:
    worker = app.extensions.get(WORKER_KEY)
    return worker is not None and worker.stop.is_set()


def pause(app: Flask, seconds: float) -> None:
    """Sleep inside a job, cut short by shutdown."""
    worker = app.extensions.get(WORKER_KEY)
    if worker is not None:
        worker.stop.wait(seconds)
    else:
        time.sleep(seconds)


# ---- the job tables -------------------------------------------------------------------------


def _table(name: str) -> str:
    if name not in JOB_TABLES:
        raise ValueError(f"not a job table: {name}")
    return name


def _as_dict(cur: sqlite3.Cursor, row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    return None if row is None else dict(zip([c[0] for c in cur.description], row))


def find(conn: sqlite3.Connection, table: str, job_id: str) -> dict[str, Any] | None:
    """The job's row as a dict, or None."""
    cur = conn.execute(f"SELECT * FROM {_table(table)} WHERE id = ?", (job_id,))
    return _as_dict(cur, cur.fetchone())


def get_or_404(table: str, job_id: str, unknown: str) -> dict[str, Any]:
    """The job's row for a status or cancel request; 404 with the ``unknown`` text when there is none."""
    with db.get_store().read() as conn:
        job = find(conn, table, job_id)
    if job is None:
        raise FhirError(404, unknown)
    return job


def claim_next(conn: sqlite3.Connection, table: str) -> dict[str, Any] | None:
    """The oldest queued job, marked running (call inside a write transaction), or None."""
    cur = conn.execute(f"SELECT * FROM {_table(table)} WHERE status = 'queued' ORDER BY created LIMIT 1")
    job = _as_dict(cur, cur.fetchone())
    if job is not None:
        conn.execute(f"UPDATE {table} SET status = 'running' WHERE id = ?", (job["id"],))
    return job


def requeue_running(conn: sqlite3.Connection, table: str) -> None:
    """Jobs left running by a stopped mock run again from the start."""
    conn.execute(f"UPDATE {_table(table)} SET status = 'queued' WHERE status = 'running'")


def remove(conn: sqlite3.Connection, table: str, job_id: str) -> None:
    conn.execute(f"DELETE FROM {_table(table)} WHERE id = ?", (job_id,))
