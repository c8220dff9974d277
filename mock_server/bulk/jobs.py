"""Export jobs: the table they live in, the background worker that runs them, the NDJSON writer.

A kick-off only inserts a ``queued`` row; the worker thread picks jobs up in order and
writes one file per resource type, streaming members in batches (bounded memory). Jobs
and files live beside the database, so both survive a restart (a job that was running
is simply run again).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

from flask import Flask

from .. import store
from ..deviations import deviates
from ..variants import varies

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS export_job (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,              -- queued | running | complete | failed
    created REAL NOT NULL,
    request_url TEXT NOT NULL,
    base_url TEXT NOT NULL,
    group_id TEXT NOT NULL,
    params TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '',
    manifest TEXT,
    error TEXT,
    finished REAL,
    last_poll REAL,
    polls INTEGER NOT NULL DEFAULT 0
);
"""
BATCH = 500
# meta.lastUpdated as exported ("2024-01-02T03:04:05.000000Z") from the stored UTC isoformat text, in SQL
EXPORT_INSTANT_SQL = ("substr(last_updated, 1, 19) || '.' || CASE WHEN substr(last_updated, 20, 1) = '.'"
                      " THEN substr(last_updated, 21, 6) ELSE '000000' END || 'Z'")
COMPARTMENT_TYPES = ("Condition", "Encounter", "Observation")


@dataclass(frozen=True)
class ExportParams:
    types: tuple[str, ...] | None = None        # None: every type
    since: str | None = None                    # ISO instants, compared as datetimes
    until: str | None = None
    elements: tuple[str, ...] | None = None
    patients: tuple[str, ...] | None = None     # POST patient: a subset of the members
    ignored: tuple[str, ...] = ()               # unsupported parameters ignored under handling=lenient
    scope: str = "group"                        # "group" (Group/<id>/$export) or "patients" (Patient/$export)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "ExportParams":
        raw = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def export_dir(app: Flask) -> Path:
    """Where files go: ``--export-dir``, else ``<db>.exports/`` beside a file database, else a temporary
    directory (``:memory:``); always absolute, so writing and serving agree whatever the working
    directory (Flask resolves a relative ``send_file`` path against the package, not the cwd)."""
    path = app.extensions.get("fhir.bulk.dir")
    if path is None:
        config = app.config["MOCK"]
        if config.export_dir is not None:
            path = Path(config.export_dir)
        elif config.db == ":memory:":
            path = Path(tempfile.mkdtemp(prefix="fhir-mock-exports-"))
        else:
            path = Path(config.db + ".exports")
        path = path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        app.extensions["fhir.bulk.dir"] = path
    return path


def job_dir(app: Flask, job_id: str) -> Path:
    return export_dir(app) / job_id


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def progress_text(done: int, total: int) -> str:
    """X-Progress, leading with a percentage (clients display it as such): '45% (900 of 2000 members)'."""
    percent = 100 * done // total if total else 100
    return f"{percent}% ({done} of {total} members exported)"


class Cancelled(Exception):
    """The job was deleted while running."""


class Interrupted(Exception):
    """The mock is shutting down: the job stays 'running' and is queued again at the next start."""


class Writer:
    """One NDJSON file per resource type, opened on first use; counts lines."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.files: dict[str, IO[str]] = {}
        self.counts: dict[str, int] = {}

    def write(self, rtype: str, resource: dict[str, Any], line_type: str | None = None) -> None:
        if line_type is not None:
            resource = {**resource, "resourceType": line_type}
        self.write_text(rtype, json.dumps(resource, separators=(",", ":")))

    def write_text(self, rtype: str, text: str) -> None:
        """One line of JSON text that is already the exported resource (no parse, no re-encode)."""
        handle = self.files.get(rtype)
        if handle is None:
            handle = self.files[rtype] = open(self.directory / f"{rtype}.ndjson", "w", encoding="utf-8",
                                              buffering=1 << 20)
            self.counts[rtype] = 0
        handle.write(text)
        handle.write("\n")
        self.counts[rtype] += 1

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


class Exporter:
    """Runs one job: members in batches, their resources filtered and written as they are read."""

    def __init__(self, app: Flask, job: dict[str, Any]):
        self.app, self.job = app, job
        self.db: store.Store = app.extensions["fhir.store"]
        self.params = ExportParams.from_json(job["params"])
        self.since, self.until = _parse(self.params.since), _parse(self.params.until)
        self.referenced: set[str] = set()    # variant export-referenced-practitioners: written once each
        self.unreadable: list[str] = []      # members whose data could not be read (variant export-member-unreadable)

    def wanted(self, rtype: str) -> bool:
        if self.params.types is None or deviates("export-type-ignored"):
            return True
        return rtype in self.params.types

    def in_window(self, last_updated: str) -> bool:
        when = _parse(last_updated)
        if self.since is not None and when < self.since and not deviates("export-since-ignored"):
            return False
        return self.until is None or when <= self.until

    def window_sql(self) -> tuple[str, list[str]]:
        """``in_window`` as SQL over the stored UTC ISO text (``last_updated``), so skipped rows are never read.

        Stored instants and the window bounds are all ``datetime.isoformat()`` of UTC values, whose
        text order is their time order (``+`` sorts before ``.``, so 07+00:00 < 07.5+00:00)."""
        clauses, args = [], []
        if self.params.since is not None and not deviates("export-since-ignored"):
            clauses.append("last_updated >= ?")
            args.append(_parse(self.params.since).isoformat())
        if self.params.until is not None:
            clauses.append("last_updated <= ?")
            args.append(_parse(self.params.until).isoformat())
        return "".join(f" AND {c}" for c in clauses), args

    def verbatim(self) -> bool:
        """True when stored text can be written as is: no _elements, no deviation rewriting lines."""
        return not self.params.elements and not deviates("export-wrong-line-type")

    def shape(self, body: dict[str, Any], rtype: str, rid: str, last_updated: str) -> dict[str, Any]:
        meta = {**body.get("meta", {}), "lastUpdated": _parse(last_updated).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        out = {"resourceType": rtype, "id": rid, **{k: v for k, v in body.items() if k not in ("resourceType", "id", "meta")}}
        out["meta"] = meta
        if self.params.elements:
            keep = set(self.params.elements) | {"resourceType", "id", "meta"}
            out = {k: v for k, v in out.items() if k in keep}
            tag = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
            out["meta"] = {**meta, "tag": [*meta.get("tag", []), tag]}
        return out

    def members(self) -> Iterator[list[tuple[str, str]]]:
        """(type, id) of the group's members, in batches, read from the index (never the whole list)."""
        if self.params.patients is not None:
            refs = [tuple(p.split("/", 1)) for p in self.params.patients]
            yield [(t, i) for t, i in refs]
            return
        if self.params.scope == "patients":   # Patient-level export: every Patient, in creation order
            last = 0
            while True:
                with self.db.read() as conn:
                    rows = conn.execute("SELECT seq, id FROM resource WHERE rtype = 'Patient' AND seq > ?"
                                        " ORDER BY seq LIMIT ?", (last, BATCH)).fetchall()
                if not rows:
                    return
                last = rows[-1][0]
                yield [("Patient", rid) for _, rid in rows]
        cohort = self._cohort_members()
        if cohort is not None:   # Bulk Cohort group: membership computed now, at export
            for start in range(0, len(cohort), BATCH):
                yield [("Patient", rid) for rid in cohort[start:start + BATCH]]
            return
        offset = 0
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    "SELECT value FROM search_token WHERE rtype = 'Group' AND id = ? AND param = 'member'"
                    " ORDER BY rowid LIMIT ? OFFSET ?", (self.job["group_id"], BATCH, offset)).fetchall()
            if not rows:
                return
            offset += len(rows)
            yield [tuple(v.split("/", 1)) for (v,) in rows]  # type: ignore[misc]

    def check_cancelled(self) -> None:
        worker = self.app.extensions.get("fhir.bulk.worker")
        if worker is not None and worker.stop.is_set():
            raise Interrupted()
        if deviates("export-delete-not-stopping"):
            return
        with self.db.read() as conn:
            row = conn.execute("SELECT 1 FROM export_job WHERE id = ?", (self.job["id"],)).fetchone()
        if row is None:
            raise Cancelled()

    def run(self, directory: Path) -> dict[str, int]:
        config = self.app.config["MOCK"]
        writer = Writer(directory)
        done = 0
        total = self._member_count()
        if total == 0 and deviates("export-empty-group-stuck"):
            raise Interrupted()          # never finishes: the status URL answers 202 for ever
        try:
            first = True
            for batch in self.members():
                self.check_cancelled()
                if "slow-job" in config.faults:
                    worker = self.app.extensions.get("fhir.bulk.worker")
                    worker.stop.wait(config.slow_job_seconds) if worker else time.sleep(config.slow_job_seconds)
                    self.check_cancelled()
                self._write_batch(writer, batch, first)
                first = False
                done += len(batch)
                with self.db.write() as conn:
                    conn.execute("UPDATE export_job SET progress = ? WHERE id = ?",
                                 (progress_text(done, total), self.job["id"]))
            if not deviates("export-unreadable-member-silent"):
                for pid in self.unreadable:
                    writer.write("OperationOutcome", {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "exception", "expression": [f"Patient/{pid}"],
                                   "details": {"text": f"the data of member Patient/{pid} could not be read; "
                                                       "it is not in this export"}}]})
            if self.params.ignored:
                for name in self.params.ignored:
                    writer.write("OperationOutcome", {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "information", "code": "not-supported",
                                   "details": {"text": f"parameter {name} is not supported and was ignored "
                                                       "(Prefer: handling=lenient)"}}]})
        finally:
            writer.close()
        return writer.counts

    def _cohort_members(self) -> list[str] | None:
        if getattr(self, "_cohort", False) is not False:
            return self._cohort
        from .. import cohort

        self._cohort = None
        with self.db.read() as conn:
            row = store.get(conn, "Group", self.job["group_id"])
            if row is not None and row.body.get("kind") == "cohort":
                self._cohort = sorted(cohort.compute(self.app, conn, row.body))
        return self._cohort

    def _member_count(self) -> int:
        if self.params.patients is not None:
            return len(self.params.patients)
        with self.db.read() as conn:
            if self.params.scope == "patients":
                return conn.execute("SELECT COUNT(*) FROM resource WHERE rtype = 'Patient'").fetchone()[0]
        cohort = self._cohort_members()
        if cohort is not None:
            return len(cohort)
        with self.db.read() as conn:
            return conn.execute("SELECT COUNT(*) FROM search_token WHERE rtype = 'Group' AND id = ? AND param = 'member'",
                                (self.job["group_id"],)).fetchone()[0]

    def _write_batch(self, writer: Writer, batch: list[tuple[str, str]], first: bool) -> None:
        patient_ids, practitioner_ids = self._batch_ids(batch, first)
        self._write_rows(writer, patient_ids, practitioner_ids, first)

    def _batch_ids(self, batch: list[tuple[str, str]], first: bool) -> tuple[list[str], list[str]]:
        """The Patient and Practitioner ids of one batch of members (where deviations add or drop one)."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in batch:
            by_type.setdefault(rtype, []).append(rid)
        patient_ids = by_type.get("Patient", [])
        if first and patient_ids and deviates("export-non-member-patient"):
            with self.db.read() as conn:
                stranger = conn.execute(
                    "SELECT id FROM resource WHERE rtype = 'Patient' AND id NOT IN (%s) LIMIT 1"
                    % ",".join("?" * len(patient_ids)), patient_ids).fetchone()
            if stranger:
                patient_ids = [*patient_ids, stranger[0]]
        if first and len(patient_ids) > 1 and deviates("export-missing-member"):
            patient_ids = patient_ids[1:]
        if first and patient_ids and self.params.scope == "group" and self.params.patients is None and (
                varies("export-member-unreadable") or deviates("export-unreadable-member-silent")):
            self.unreadable, patient_ids = patient_ids[:1], patient_ids[1:]
        return patient_ids, by_type.get("Practitioner", [])

    def _write_rows(self, writer: Writer, patient_ids: list[str], practitioner_ids: list[str], first: bool) -> None:
        """The members' own resources, then their compartments and Tasks, streamed to the files."""
        wrong_type = "Observation" if deviates("export-wrong-line-type") else None
        window, window_args = self.window_sql()
        verbatim = self.verbatim()
        with self.db.read() as conn:
            for rtype, ids in (("Patient", patient_ids), ("Practitioner", practitioner_ids)):
                if not ids or not self.wanted(rtype):
                    continue
                marks = ",".join("?" * len(ids))
                if verbatim:  # SQLite sets id and meta.lastUpdated in the stored text: nothing parsed in Python
                    for (text,) in conn.execute(
                            f"SELECT json_set(body, '$.resourceType', rtype, '$.id', id, '$.meta.lastUpdated', "
                            f"{EXPORT_INSTANT_SQL}) FROM resource WHERE rtype = ? AND id IN ({marks}){window}"
                            " ORDER BY seq", [rtype, *ids, *window_args]):
                        writer.write_text(rtype, text)
                    continue
                for rid, last_updated, body in conn.execute(
                        f"SELECT id, last_updated, body FROM resource WHERE rtype = ? AND id IN ({marks}){window}"
                        " ORDER BY seq", [rtype, *ids, *window_args]):
                    writer.write(rtype, self.shape(json.loads(body), rtype, rid, last_updated), wrong_type)
            if not patient_ids:
                return
            marks = ",".join("?" * len(patient_ids))
            foreign = first and deviates("export-foreign-compartment")
            for rtype, rid, last_updated, body in conn.execute(
                    f"SELECT rtype, id, last_updated, body FROM compartment_resource WHERE patient_id IN ({marks})"
                    f"{window} ORDER BY rtype, seq", [*patient_ids, *window_args]):
                if not self.wanted(rtype):
                    continue
                if verbatim and not foreign:  # stored as exported (population.py): streamed without parsing
                    writer.write_text(rtype, body)
                    continue
                resource = self.shape(json.loads(body), rtype, rid, last_updated)
                if foreign:
                    resource["subject"] = {"reference": "Patient/not-a-member"}
                    foreign = False
                writer.write(rtype, resource)
            if self.wanted("Task"):
                self._write_tasks(conn, writer, patient_ids)

    def _write_tasks(self, conn: Any, writer: Writer, patient_ids: list[str]) -> None:
        """Tasks whose ``for`` is a member, found through the Task index and rendered as a read shows them."""
        from ..resources import task as task_resource

        marks = ",".join("?" * len(patient_ids))
        rows = conn.execute(
            "SELECT r.id, r.version, r.last_updated, r.body FROM task_index t"
            " JOIN resource r ON r.rtype = 'Task' AND r.id = t.id"
            f" WHERE t.patient IN ({marks}) ORDER BY r.seq", [f"Patient/{p}" for p in patient_ids]).fetchall()
        if deviates("export-drops-tasks"):
            rows = rows[1::2]     # every other Task of the batch is left out
        with self.app.test_request_context(base_url=self.job["base_url"]):
            for rid, version, last_updated, body in rows:
                if self.in_window(last_updated):
                    row = store.Row("Task", rid, version, datetime.fromisoformat(last_updated), json.loads(body))
                    rendered = task_resource.render(row)
                    writer.write("Task", self.shape(rendered, "Task", rid, last_updated))
                    if varies("export-referenced-practitioners"):
                        self._write_referenced(conn, writer, rendered)

    def _write_referenced(self, conn: Any, writer: Writer, resource: dict[str, Any]) -> None:
        """The Practitioners a written resource references, whatever their lastUpdated (IG: allowed)."""
        if not self.wanted("Practitioner"):
            return
        for element in ("requester", "owner"):
            ref = str((resource.get(element) or {}).get("reference", ""))
            kind, _, pid = ref.partition("/")
            if kind != "Practitioner" or not pid or pid in self.referenced:
                continue
            self.referenced.add(pid)
            row = conn.execute("SELECT last_updated, body FROM resource WHERE rtype = 'Practitioner' AND id = ?",
                               (pid,)).fetchone()
            if row:
                writer.write("Practitioner", self.shape(json.loads(row[1]), "Practitioner", pid, row[0]))


def run_job(app: Flask, job: dict[str, Any]) -> None:
    """Run one job to completion (or failure, or cancellation) and record the manifest."""
    db: store.Store = app.extensions["fhir.store"]
    config = app.config["MOCK"]
    directory = job_dir(app, job["id"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        if "failed-job" in config.faults:
            raise RuntimeError("simulated failure (fault failed-job)")
        counts = Exporter(app, job).run(directory)
        pause = max(0.0, job["created"] + config.export_min_seconds - time.time())
        worker = app.extensions.get("fhir.bulk.worker")
        worker.stop.wait(pause) if worker else time.sleep(pause)
    except Cancelled:
        shutil.rmtree(directory, ignore_errors=True)
        return
    except Interrupted:
        return
    except Exception as exc:  # the job fails; the status URL reports it
        log.warning("export %s failed: %s", job["id"], exc)
        with db.write() as conn:
            conn.execute("UPDATE export_job SET status = 'failed', error = ?, finished = ? WHERE id = ?",
                         (str(exc), time.time(), job["id"]))
        return
    base = job["base_url"]
    files_base = "" if deviates("export-output-url-relative") else base
    output, errors = [], []
    for rtype, count in counts.items():
        entry = {"type": rtype, "url": f"{files_base}/bulk/files/{job['id']}/{rtype}.ndjson", "count": count}
        if varies("export-no-count"):
            del entry["count"]
        (errors if rtype == "OperationOutcome" else output).append(entry)
    request_url = job["request_url"]
    if deviates("export-request-no-query"):
        request_url = request_url.split("?", 1)[0]
    manifest = {
        "transactionTime": datetime.fromtimestamp(job["created"], timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.%f+00:00" if varies("export-transaction-time-offset") else "%Y-%m-%dT%H:%M:%S.%fZ"),
        "request": request_url,
        "requiresAccessToken": not (varies("open-server") or varies("export-files-open")),
        "output": output,
        "error": errors,
    }
    if varies("export-manifest-extras"):
        manifest["deleted"] = []
        manifest["extension"] = {"https://fhir-conformance-kit.example/manifest-note": "variant"}
    with db.write() as conn:
        updated = conn.execute("UPDATE export_job SET status = 'complete', manifest = ?, finished = ? WHERE id = ?",
                               (json.dumps(manifest), time.time(), job["id"])).rowcount
    if not updated:
        shutil.rmtree(directory, ignore_errors=True)


class Worker:
    """One background thread per app: runs queued jobs in creation order; woken on kick-off."""

    def __init__(self, app: Flask):
        self.app = app
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="fhir-mock-export", daemon=True)

    def start(self) -> None:
        db: store.Store = self.app.extensions["fhir.store"]
        with db.write() as conn:
            conn.execute("UPDATE export_job SET status = 'queued' WHERE status = 'running'")  # resumed after a restart
        self.thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a running job stops at its next batch and resumes at the next start."""
        self.stop.set()
        self.wake.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def _next(self) -> dict[str, Any] | None:
        db: store.Store = self.app.extensions["fhir.store"]
        with db.write() as conn:
            cur = conn.execute("SELECT * FROM export_job WHERE status = 'queued' ORDER BY created LIMIT 1")
            row = cur.fetchone()
            if row is None:
                return None
            job = dict(zip([c[0] for c in cur.description], row))
            conn.execute("UPDATE export_job SET status = 'running' WHERE id = ?", (job["id"],))
        return job

    def _loop(self) -> None:
        db: store.Store = self.app.extensions["fhir.store"]
        while not self.stop.is_set():
            if not db._all:  # the store was closed (app discarded without shutdown): stop quietly
                return
            try:
                with self.app.app_context():
                    if any(run(self.app) for run in self.app.extensions.get("fhir.bulk.runners", [])):
                        continue  # other job kinds sharing this worker (cohort creates)
                    job = self._next()
                    if job is not None:
                        run_job(self.app, job)
                        continue
            except Exception as exc:  # the store closed under us at shutdown, or a bug: keep the thread alive
                if self.stop.is_set() or "no such table" in str(exc):  # stopped, or the store was closed
                    return
                log.exception("export worker error")
                time.sleep(0.2)
            self.wake.wait(0.5)
            self.wake.clear()


def shutdown(app: Flask) -> None:
    worker = app.extensions.get("fhir.bulk.worker")
    if worker is not None:
        worker.shutdown()


def start_worker(app: Flask) -> Worker:
    db: store.Store = app.extensions["fhir.store"]
    with db._lock:
        db._conn().executescript(SCHEMA)
    worker = Worker(app)
    app.extensions["fhir.bulk.worker"] = worker
    worker.start()
    return worker
