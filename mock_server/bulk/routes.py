"""Bulk Data export routes (SPEC §4; HL7 Bulk Data IG export.html): kick-off, status, cancel, files.

    GET|POST [base]/Group/<id>/$export  -> 202, Content-Location: [base]/bulk/status/<job>
    GET|POST [base]/Patient/$export     -> 202 (every Patient)
    GET    [base]/bulk/status/<job>      -> 202 (X-Progress, Retry-After) | 429 | 200 manifest | 5xx
    DELETE [base]/bulk/status/<job>      -> 202; afterwards 404
    GET    [base]/bulk/files/<job>/<Type>.ndjson  (bearer token required)
"""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, request, send_file
from werkzeug.http import http_date

from .. import db, jobs
from ..auth import authorize
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..http import FhirError, fhir_response, not_found, operation_outcome, prefers
from ..resources.group_rules import PATIENT_GROUP
from ..resources import directory, group
from ..urls import base_url, request_url
from ..variants import varies
from . import exporter, params as export_params
from .params import NDJSON, TYPE_RE

bp = Blueprint("bulk_export", __name__)
declare(bp, ResourceCapability(
    "Patient", (), operations=(("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"),)))


def _group_members(gid: str) -> tuple[str, set[str]] | None:
    with db.get_store().read() as conn:
        return group.membership(current_app, conn, gid)


def _all_patients() -> set[str]:
    with db.get_store().read() as conn:
        return {f"Patient/{rid}" for rid in directory.patient_ids(conn)}


def _kickoff(gid: str, post: bool, scope: str = "group") -> Response:
    if not deviates("export-kickoff-auth-not-enforced"):
        authorize("Group", "read") if scope == "group" else authorize("Patient", "read")
    found = _group_members(gid) if scope == "group" else (PATIENT_GROUP, _all_patients() if post else set())
    if found is None and not deviates("export-unknown-group-accepted"):
        raise not_found("Group", gid)
    lenient = prefers("handling=lenient")
    pairs = export_params.pairs_from_parameters() if post else export_params.pairs_from_query()
    params = export_params.parse(pairs, post, lenient, found[1] if found else None)
    if scope != "group":
        params = export_params.ExportParams(**{**params.__dict__, "scope": scope})
    base = base_url()
    job_id = exporter.queue(current_app, request_url(), base, gid, params)
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
    return jobs.get_or_404(exporter.TABLE, job_id, f"Unknown export job '{job_id}' (never started, deleted or expired)")


@bp.get("/bulk/status/<job_id>")
def status(job_id: str) -> Response:
    authorize("Group", "read")
    config = current_app.config["MOCK"]
    job = _job(job_id)
    now = time.time()
    retry = str(config.export_retry_after)
    exporter.record_poll(current_app, job_id, now)
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
        exporter.cancel(current_app, job_id)
    if varies("export-delete-outcome-body"):
        return fhir_response(operation_outcome("informational", "export cancelled", "information"), 202)
    return fhir_response(None, 202)


@bp.get("/bulk/files/<job_id>/<name>")
def download(job_id: str, name: str) -> Response:
    if not (deviates("export-download-without-token") or varies("export-files-open")):
        if deviates("export-download-without-token-403") and "Authorization" not in request.headers:
            raise FhirError(403, "Authorization failed")
        authorize("Group", "read")
    config = current_app.config["MOCK"]
    job = _job(job_id)
    rtype = name.removesuffix(".ndjson")
    path = exporter.job_dir(current_app, job_id) / f"{rtype}.ndjson"
    if job["status"] != "complete" or not TYPE_RE.match(rtype) or not path.is_file():
        raise FhirError(404, f"No export file {name} for job {job_id}")
    if "expired-file" in config.faults:
        raise FhirError(404, f"Export file {name} has expired", "not-found")
    mimetype = "application/json" if deviates("export-file-content-type-wrong") else NDJSON
    return send_file(path, mimetype=mimetype, conditional=False, etag=False, max_age=0)
