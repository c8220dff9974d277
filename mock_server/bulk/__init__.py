"""Bulk Data Group export (SPEC §4; HL7 Bulk Data IG export.html): kick-off, status, cancel, files.

    GET|POST [base]/Group/<id>/$export  -> 202, Content-Location: [base]/bulk/status/<job>
    GET    [base]/bulk/status/<job>      -> 202 (X-Progress, Retry-After) | 429 | 200 manifest | 5xx
    DELETE [base]/bulk/status/<job>      -> 202; afterwards 404
    GET    [base]/bulk/files/<job>/<Type>.ndjson  (bearer token required)
"""
from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, send_file
from werkzeug.http import http_date

from .. import fhirdate, limits, store
from ..auth import authorize
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..variants import varies
from ..outcomes import FhirError, fhir_response, not_found, operation_outcome
from ..payload import read_resource_body
from . import jobs
from ..urls import base_url, request_url

bp = Blueprint("bulk_export", __name__)
declare(bp, ResourceCapability(
    "Patient", (), operations=(("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"),)))
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
EXTRA_OUTPUT_FORMATS = ("text/csv", "application/x-ndjson")  # variant export-extra-output-formats
NDJSON = "application/fhir+ndjson"
TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
ELEMENT_RE = re.compile(r"^([A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*$")
EXPORT_TYPES = ("Patient", "Practitioner", "Condition", "Encounter", "Observation", "Task")  # what an export holds
UNSUPPORTED = ("_typeFilter", "includeAssociatedData")
KNOWN = ("_outputFormat", "_type", "_since", "_until", "_elements", "patient", *UNSUPPORTED)


def init_app(app: Flask) -> None:
    jobs.start_worker(app)


def _store() -> store.Store:
    return current_app.extensions["fhir.store"]


def _instant(name: str, value: str) -> str:
    try:
        parsed = fhirdate.parse(value)
    except ValueError as exc:
        raise FhirError(400, f"{name} is not a FHIR instant: {exc} ({fhirdate.RANGE_TEXT})") from None
    if not parsed.has_zone:
        raise FhirError(400, f"{name} must be an instant with a time and a time zone: '{value[:64]}'")
    return parsed.start.isoformat()


def _pairs_from_query() -> list[tuple[str, str]]:
    return [(k, v) for k, values in request.args.lists() for v in values]


def _pairs_from_parameters() -> list[tuple[str, Any]]:
    body = read_resource_body()
    if body.get("resourceType") != "Parameters":
        raise FhirError(400, "POST $export expects a Parameters resource")
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list):
        raise FhirError(400, f"Parameters.parameter must be an array, got {type(parameters).__name__}")
    pairs: list[tuple[str, Any]] = []
    for p in parameters:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise FhirError(400, "every Parameters.parameter needs a name")
        values = [v for k, v in p.items() if k.startswith("value")]
        if len(values) != 1:
            raise FhirError(400, f"parameter {p['name']} needs exactly one value[x]")
        value = values[0]
        if isinstance(value, dict):
            value = value.get("reference", "")
        pairs.append((p["name"], value if isinstance(value, str) else json.dumps(value)))
    return limits.check_params(pairs, "Parameters")


def _params(pairs: list[tuple[str, str]], post: bool, lenient: bool, members: set[str] | None) -> jobs.ExportParams:
    fields: dict[str, Any] = {}
    ignored: list[str] = []
    types: list[str] = []
    for name, value in pairs:
        if name == "_outputFormat":
            strict = deviates("export-output-format-strict")
            extra = EXTRA_OUTPUT_FORMATS if varies("export-extra-output-formats") else ()
            if value not in OUTPUT_FORMATS + extra or (strict and value != OUTPUT_FORMATS[0]):
                raise FhirError(400, f"_outputFormat '{value}' is not supported; use one of {', '.join(OUTPUT_FORMATS)}")
        elif name == "_type":
            for t in (s.strip() for s in value.split(",")):
                if not TYPE_RE.match(t):
                    raise FhirError(400, f"_type '{t}' is not a resource type")
                if t not in EXPORT_TYPES and not deviates("export-unknown-type-accepted"):
                    raise FhirError(400, f"_type '{t}' is not a resource type this server exports (it exports "
                                         f"{', '.join(EXPORT_TYPES)})", "not-supported")
                types.append(t)
        elif name in ("_since", "_until"):
            try:
                fields[name[1:]] = _instant(name, value)
            except FhirError:
                if not deviates("export-malformed-since-accepted"):
                    raise
                fields["types"] = []     # accepted, and nothing exported: an empty manifest
        elif name == "_elements":
            if varies("export-elements-unsupported"):
                raise FhirError(400, "parameter _elements is not supported", "not-supported")
            if varies("export-elements-ignored"):
                continue
            elements = [e.strip() for e in value.split(",") if e.strip()]
            if not elements or not all(ELEMENT_RE.match(e) for e in elements):
                raise FhirError(400, f"_elements '{value}' is not a list of element names")
            fields["elements"] = [e.split(".")[-1] for e in elements]
        elif name == "patient":
            if varies("export-patient-unsupported"):
                raise FhirError(400, "parameter patient is not supported", "not-supported")
            if not post:
                raise FhirError(400, "the patient parameter is only accepted in a POST kick-off")
            fields.setdefault("patients", []).append(value)
        elif name in UNSUPPORTED or name not in KNOWN:
            if not lenient:
                raise FhirError(400, f"parameter {name} is not supported (send Prefer: handling=lenient to ignore it)",
                                "not-supported")
            ignored.append(name)
    if types and "types" not in fields:
        fields["types"] = list(dict.fromkeys(types))
    if "patients" in fields and members is not None:
        strangers = [p for p in fields["patients"] if p not in members]
        if strangers:
            raise FhirError(400, f"patient(s) not members of the group: {', '.join(strangers)}")
    fields["ignored"] = ignored
    return jobs.ExportParams(**fields)


def _group_members(gid: str) -> tuple[str, set[str]] | None:
    from .. import cohort

    with _store().read() as conn:
        row = store.get(conn, "Group", gid)
        if row is None:
            return None
        if row.body.get("kind") == "cohort":   # a Bulk Cohort group: its members as of now
            return row.body["type"], {f"Patient/{p}" for p in cohort.compute(current_app, conn, row.body)}
    return row.body["type"], set(row.body["member"])


def _all_patients() -> set[str]:
    with _store().read() as conn:
        return {f"Patient/{rid}" for (rid,) in conn.execute("SELECT id FROM resource WHERE rtype = 'Patient'")}


def _kickoff(gid: str, post: bool, scope: str = "group") -> Response:
    if not deviates("export-kickoff-auth-not-enforced"):
        authorize("Group", "read") if scope == "group" else authorize("Patient", "read")
    group = _group_members(gid) if scope == "group" else ("person", _all_patients() if post else set())
    if group is None and not deviates("export-unknown-group-accepted"):
        raise not_found("Group", gid)
    prefer = request.headers.get("Prefer", "")
    lenient = "handling=lenient" in prefer.replace(" ", "")
    pairs = _pairs_from_parameters() if post else _pairs_from_query()
    params = _params(pairs, post, lenient, group[1] if group else None)
    if scope != "group":
        params = jobs.ExportParams(**{**params.__dict__, "scope": scope})
    job_id = uuid.uuid4().hex
    base = base_url()
    with _store().write() as conn:
        conn.execute("INSERT INTO export_job (id, status, created, request_url, base_url, group_id, params)"
                     " VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                     (job_id, time.time(), request_url(), base, gid, params.to_json()))
    current_app.extensions["fhir.bulk.worker"].wake.set()
    headers = {} if deviates("export-content-location-missing") else {"Content-Location": f"{base}/bulk/status/{job_id}"}
    return fhir_response(None, 202, headers)


@bp.get("/Group/<gid>/$export")
def kickoff_get(gid: str) -> Response:
    return _kickoff(gid, False)


@bp.post("/Group/<gid>/$export")
def kickoff_post(gid: str) -> Response:
    if varies("export-no-post-kickoff"):
        authorize("Group", "read")
        raise FhirError(404, "No POST route for $export (only GET kick-off is offered)", "not-found")
    return _kickoff(gid, True)


@bp.get("/Patient/$export")
def patient_kickoff_get() -> Response:
    """Patient-level export (IG export.html): every Patient and their compartments."""
    return _kickoff("", False, "patients")


@bp.post("/Patient/$export")
def patient_kickoff_post() -> Response:
    return _kickoff("", True, "patients")


def _job(job_id: str) -> dict[str, Any]:
    with _store().read() as conn:
        cur = conn.execute("SELECT * FROM export_job WHERE id = ?", (job_id,))
        row = cur.fetchone()
        if row is None:
            raise FhirError(404, f"Unknown export job '{job_id}' (never started, deleted or expired)")
        return dict(zip([c[0] for c in cur.description], row))


@bp.get("/bulk/status/<job_id>")
def status(job_id: str) -> Response:
    authorize("Group", "read")
    config = current_app.config["MOCK"]
    job = _job(job_id)
    now = time.time()
    retry = str(config.export_retry_after)
    with _store().write() as conn:
        conn.execute("UPDATE export_job SET last_poll = ?, polls = polls + 1 WHERE id = ?", (now, job_id))
    if "transient-error" in config.faults and job["polls"] == 0:
        raise FhirError(503, "Simulated transient failure while polling; retry later", "transient",
                        headers={"Retry-After": "1"})
    if job["status"] in ("queued", "running"):
        if (config.export_poll_min > 0 and job["last_poll"] is not None
                and now - job["last_poll"] < config.export_poll_min):
            raise FhirError(429, "Polled too frequently; honour Retry-After", "throttled", headers={"Retry-After": retry})
        headers = ({} if varies("export-no-x-progress")
                   else {"X-Progress": (job["progress"] or f"0% ({job['status']})")[:99]})
        if not deviates("export-retry-after-missing"):
            headers["Retry-After"] = (http_date(now + config.export_retry_after)
                                      if varies("export-retry-after-http-date") else retry)
        return fhir_response(None, 202, headers)
    if job["status"] == "failed":
        raise FhirError(500, f"Export failed: {job['error']}", "exception")
    expires = (job["finished"] or now) + config.export_ttl
    if "expired-file" in config.faults:
        expires = now - 1
    response = Response(job["manifest"], status=200, content_type="application/json")
    if not varies("export-no-expires"):
        response.headers["Expires"] = http_date(expires)
    return response


@bp.delete("/bulk/status/<job_id>")
def cancel(job_id: str) -> Response:
    authorize("Group", "read")
    _job(job_id)
    if not deviates("export-delete-not-stopping"):
        with _store().write() as conn:
            conn.execute("DELETE FROM export_job WHERE id = ?", (job_id,))
        shutil.rmtree(jobs.job_dir(current_app, job_id), ignore_errors=True)
    if varies("export-delete-outcome-body"):
        return fhir_response(operation_outcome("informational", "export cancelled", "information"), 202)
    return fhir_response(None, 202)


@bp.get("/bulk/files/<job_id>/<name>")
def download(job_id: str, name: str) -> Response:
    if not (deviates("export-download-without-token") or varies("export-files-open")):
        authorize("Group", "read")
    config = current_app.config["MOCK"]
    job = _job(job_id)
    rtype = name.removesuffix(".ndjson")
    path = jobs.job_dir(current_app, job_id) / f"{rtype}.ndjson"
    if job["status"] != "complete" or not TYPE_RE.match(rtype) or not path.is_file():
        raise FhirError(404, f"No export file {name} for job {job_id}")
    if "expired-file" in config.faults:
        raise FhirError(404, f"Export file {name} has expired", "not-found")
    mimetype = "application/json" if deviates("export-file-content-type-wrong") else NDJSON
    return send_file(path, mimetype=mimetype, conditional=False, etag=False, max_age=0)
