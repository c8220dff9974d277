"""Export jobs: the job rows, the runner the worker calls, and the NDJSON writer.

A kick-off (``routes.py``) only queues a row in ``export_job``; the worker (``..jobs``)
calls ``run_pending``, which writes one file per resource type, streaming members in
batches (bounded memory). What is written is read through the functions of the
modules that own it: members from ``resources.group``/``cohort``, Patients from
``resources.directory``, compartments from ``population``, Tasks from
``resources.task`` (rendered as a read shows them), rows from ``db``. Jobs and files
live beside the database, so both survive a restart (a running job simply runs again).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

from flask import Flask

from .. import cohort, db, jobs, population
from ..deviations import deviates
from ..resources import directory, group, task
from ..variants import varies
from .params import ExportParams

log = logging.getLogger(__name__)
TABLE = "export_job"
BATCH = 500
REWRITING_DEVIATIONS = ("export-wrong-line-type", "export-invalid-binding", "export-invariant-broken")  # no verbatim lines


# ---- the job rows ----------------------------------------------------------------------------------


def queue(app: Flask, request_url: str, base_url: str, group_id: str, params: ExportParams) -> str:
    """A new queued job; the worker is woken. Returns the job id."""
    job_id = uuid.uuid4().hex
    with db.get_store(app).write() as conn:
        conn.execute(f"INSERT INTO {TABLE} (id, status, created, request_url, base_url, group_id, params)"
                     " VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                     (job_id, time.time(), request_url, base_url, group_id, params.to_json()))
    jobs.wake(app)
    return job_id


def record_poll(app: Flask, job_id: str, now: float) -> None:
    with db.get_store(app).write() as conn:
        conn.execute(f"UPDATE {TABLE} SET last_poll = ?, polls = polls + 1 WHERE id = ?", (now, job_id))


def cancel(app: Flask, job_id: str) -> None:
    """Delete the job (a running job notices at its next batch) and its files."""
    with db.get_store(app).write() as conn:
        jobs.remove(conn, TABLE, job_id)
    shutil.rmtree(job_dir(app, job_id), ignore_errors=True)


def init_app(app: Flask) -> None:
    """Jobs left running by a stopped mock are queued again; the worker runs them."""
    with db.get_store(app).write() as conn:
        jobs.requeue_running(conn, TABLE)
    jobs.register(app, "export", run_pending)


def run_pending(app: Flask) -> bool:
    """The worker's runner: run the oldest queued export, if any."""
    with db.get_store(app).write() as conn:
        job = jobs.claim_next(conn, TABLE)
    if job is None:
        return False
    run_job(app, job)
    return True


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


def progress_text(done: int, total: int) -> str:
    """X-Progress, leading with a percentage (clients display it as such): '45% (900 of 2000 members)'."""
    percent = 100 * done // total if total else 100
    return f"{percent}% ({done} of {total} members exported)"


def _instant(value: str | None) -> datetime | None:
    """A window bound as stored by the kick-off (UTC ``isoformat`` text)."""
    return None if value is None else datetime.fromisoformat(value)


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
        self.database: db.Store = db.get_store(app)
        self.params = ExportParams.from_json(job["params"])
        self.since, self.until = _instant(self.params.since), _instant(self.params.until)
        # the window as stored text, for the owners' queries (export-since-ignored drops the lower bound)
        self.window = (None if deviates("export-since-ignored") else self.params.since, self.params.until)
        self.referenced: set[str] = set()    # variant export-referenced-practitioners: written once each
        self.unreadable: list[str] = []      # members whose data could not be read (variant export-member-unreadable)

    def wanted(self, rtype: str) -> bool:
        if self.params.types is None or deviates("export-type-ignored"):
            return True
        return rtype in self.params.types

    def in_window(self, last_updated: str) -> bool:
        when = datetime.fromisoformat(last_updated)
        if self.since is not None and when < self.since and not deviates("export-since-ignored"):
            return False
        return self.until is None or when <= self.until

    def verbatim(self) -> bool:
        """True when stored text can be written as is: no _elements, no deviation rewriting lines."""
        return not self.params.elements and not any(deviates(d) for d in REWRITING_DEVIATIONS)

    def shape(self, body: dict[str, Any], rtype: str, rid: str, last_updated: str) -> dict[str, Any]:
        meta = {**body.get("meta", {}), "lastUpdated": datetime.fromisoformat(last_updated).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        out = {"resourceType": rtype, "id": rid, **{k: v for k, v in body.items() if k not in ("resourceType", "id", "meta")}}
        out["meta"] = meta
        if rtype == "Patient" and deviates("export-invalid-binding"):
            out["gender"] = "unknown-value"
        if rtype == "Observation" and deviates("export-invariant-broken"):
            out["dataAbsentReason"] = {"text": "not asked"}
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
                with self.database.read() as conn:
                    rows = directory.patients_after(conn, last, BATCH)
                if not rows:
                    return
                last = rows[-1][0]
                yield [("Patient", rid) for _, rid in rows]
        computed = self._cohort_members()
        if computed is not None:   # Bulk Cohort group: membership computed now, at export
            for start in range(0, len(computed), BATCH):
                yield [("Patient", rid) for rid in computed[start:start + BATCH]]
            return
        offset = 0
        while True:
            with self.database.read() as conn:
                members = group.members_page(conn, self.job["group_id"], offset, BATCH)
            if not members:
                return
            offset += len(members)
            yield members

    def check_cancelled(self) -> None:
        if jobs.stopping(self.app):
            raise Interrupted()
        if deviates("export-delete-not-stopping"):
            return
        with self.database.read() as conn:
            if jobs.find(conn, TABLE, self.job["id"]) is None:
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
                    jobs.pause(self.app, config.slow_job_seconds)
                    self.check_cancelled()
                self._write_batch(writer, batch, first)
                first = False
                done += len(batch)
                with self.database.write() as conn:
                    conn.execute(f"UPDATE {TABLE} SET progress = ? WHERE id = ?",
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
        with self.database.read() as conn:
            self._cohort = cohort.current_members(self.app, conn, self.job["group_id"])
        return self._cohort

    def _member_count(self) -> int:
        if self.params.patients is not None:
            return len(self.params.patients)
        if self.params.scope == "patients":
            with self.database.read() as conn:
                return directory.patient_count(conn)
        members = self._cohort_members()
        if members is not None:
            return len(members)
        with self.database.read() as conn:
            return group.member_count(conn, self.job["group_id"])

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
            with self.database.read() as conn:
                stranger = directory.patient_not_in(conn, patient_ids)
            if stranger:
                patient_ids = [*patient_ids, stranger]
        if first and len(patient_ids) > 1 and deviates("export-missing-member"):
            patient_ids = patient_ids[1:]
        if first and patient_ids and self.params.scope == "group" and self.params.patients is None and (
                varies("export-member-unreadable") or deviates("export-unreadable-member-silent")):
            self.unreadable, patient_ids = patient_ids[:1], patient_ids[1:]
        return patient_ids, by_type.get("Practitioner", [])

    def _write_rows(self, writer: Writer, patient_ids: list[str], practitioner_ids: list[str], first: bool) -> None:
        """The members' own resources, then their compartments and Tasks, streamed to the files."""
        wrong_type = "Observation" if deviates("export-wrong-line-type") else None
        verbatim = self.verbatim()
        with self.database.read() as conn:
            for rtype, ids in (("Patient", patient_ids), ("Practitioner", practitioner_ids)):
                if not ids or not self.wanted(rtype):
                    continue
                if verbatim:  # SQLite sets id and meta.lastUpdated in the stored text: nothing parsed in Python
                    for text in db.export_texts(conn, rtype, ids, *self.window):
                        writer.write_text(rtype, text)
                    continue
                for rid, last_updated, body in db.bodies(conn, rtype, ids, *self.window):
                    writer.write(rtype, self.shape(json.loads(body), rtype, rid, last_updated), wrong_type)
            if not patient_ids:
                return
            foreign = first and deviates("export-foreign-compartment")
            for rtype, rid, last_updated, body in population.compartment_rows(conn, patient_ids, *self.window):
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
        rows = task.for_patients(conn, patient_ids)
        if deviates("export-drops-tasks"):
            rows = rows[1::2]     # every other Task of the batch is left out
        for row in rows:
            last_updated = row.last_updated.isoformat()
            if self.in_window(last_updated):
                rendered = task.view(conn, row, self.job["base_url"])
                writer.write("Task", self.shape(rendered, "Task", row.id, last_updated))
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
            row = db.get(conn, "Practitioner", pid)
            if row:
                writer.write("Practitioner", self.shape(row.body, "Practitioner", pid, row.last_updated.isoformat()))


def run_job(app: Flask, job: dict[str, Any]) -> None:
    """Run one job to completion (or failure, or cancellation) and record the manifest."""
    database: db.Store = db.get_store(app)
    config = app.config["MOCK"]
    directory = job_dir(app, job["id"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        if "failed-job" in config.faults:
            raise RuntimeError("simulated failure (fault failed-job)")
        counts = Exporter(app, job).run(directory)
        pause = max(0.0, job["created"] + config.export_min_seconds - time.time())
        jobs.pause(app, pause)
    except Cancelled:
        shutil.rmtree(directory, ignore_errors=True)
        return
    except Interrupted:
        return
    except Exception as exc:  # the job fails; the status URL reports it
        log.warning("export %s failed: %s", job["id"], exc)
        with database.write() as conn:
            conn.execute(f"UPDATE {TABLE} SET status = 'failed', error = ?, finished = ? WHERE id = ?",
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
    with database.write() as conn:
        updated = conn.execute(f"UPDATE {TABLE} SET status = 'complete', manifest = ?, finished = ? WHERE id = ?",
                               (json.dumps(manifest), time.time(), job["id"])).rowcount
    if not updated:
        shutil.rmtree(directory, ignore_errors=True)
