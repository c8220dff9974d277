"""Bulk Cohort API (SPEC §5; Bulk Data IG 3.0.0 group.html): criteria-based Groups.

    POST [base]/Group  (bulk-cohort-group body)
        Prefer: respond-async -> 202, Content-Location: [base]/cohort/status/<job>
        otherwise             -> 201, Location: [base]/Group/<id>
    GET    [base]/cohort/status/<job>  -> 202 while working | 200 batch-response Bundle | 4xx OperationOutcome
    DELETE [base]/cohort/status/<job>  -> 202
    GET    [base]/Group/<id>, GET [base]/Group?name=..., DELETE [base]/Group/<id>, GET [base]/Group/<id>/$export

Membership is computed on the fly whenever it is needed (at export), never stored, so a
cohort carries no ``members-refreshed`` extension. The mock shares nothing with the
suite's evaluator: ``query.py`` parses, ``members.py`` evaluates.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from .. import db, jobs
from ..auth import authorize
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..variants import varies
from ..http import FhirError, fhir_response, operation_outcome, prefers, written
from . import members as membership
from ..resources import directory
from ..resources.group_rules import PATIENT_GROUP
from .query import PARAMETERS, parse
from ..urls import base_url

PROFILE = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"
MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
FHIR_QUERY = "application/x-fhir-query"
ALLOWED = {"resourceType", "id", "meta", "text", "extension", "modifierExtension", "identifier", "active", "type",
           "actual", "code", "name", "quantity", "managingEntity", "member", "characteristic", "implicitRules",
           "language"}
DOCUMENTATION = (
    "Bulk Cohort API (profile bulk-cohort-group): POST a Group with Prefer: respond-async (or synchronously). "
    "Membership is computed on the fly when the cohort is exported, never on a schedule, so cohorts carry no "
    "members-refreshed extension. Supported member-filter search parameters: "
    + "; ".join(f"{t}: {', '.join(p)}" for t, p in PARAMETERS.items())
    + ". Token system|code, |code, code and system|; comma = OR; repeated parameter = AND; date prefixes "
      "eq ne gt lt ge le sa eb with partial dates; quantity prefixes eq ne gt lt ge le with optional |system|code. "
      "No modifiers and no search result parameters; anything else is refused with 400."
)

TABLE = "cohort_job"
bp = Blueprint("cohort", __name__)
DELETE_DOCUMENTATION = ("Only Bulk Cohort groups (profile bulk-cohort-group) can be deleted; DELETE of a Canvas "
                        "Team or Patient Group answers 405.")
declare(bp, ResourceCapability("Group", ("delete",), profiles=(PROFILE,),
                               documentation=DOCUMENTATION + " " + DELETE_DOCUMENTATION,
                               interaction_docs=(("delete", DELETE_DOCUMENTATION),)))


def init_app(app: Flask) -> None:
    jobs.register(app, "cohort", run_pending)



def is_cohort_request(body: dict[str, Any]) -> bool:
    """A create is a cohort create when it says so: the profile, a member-filter, or the async pattern."""
    profiles = (body.get("meta") or {}).get("profile") if isinstance(body.get("meta"), dict) else None
    return ("modifierExtension" in body or (isinstance(profiles, list) and PROFILE in profiles)
            or prefers("respond-async"))


# ---- validation --------------------------------------------------------------------


def definition(body: dict[str, Any]) -> dict[str, Any]:
    """What to store for a valid bulk-cohort-group body; 400 naming the offending part otherwise."""
    if body.get("resourceType") != "Group":
        raise FhirError(400, f"resourceType must be 'Group', got {body.get('resourceType')!r}")
    unknown = sorted(set(body) - ALLOWED)
    if unknown:
        raise FhirError(400, f"Unknown element(s) in Group: {', '.join(unknown)}")
    name = body.get("name")
    if name is None and not deviates("cohort-name-not-required"):
        raise FhirError(400, "Group.name is required by the bulk-cohort-group profile")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise FhirError(400, "Group.name must be a non-empty string")
    if body.get("member") and varies("cohort-no-member-narrowing"):
        raise FhirError(400, "Group.member (narrowing a cohort) is not supported", "not-supported")
    if "characteristic" in body:
        raise FhirError(400, "Group.characteristic is not allowed in a bulk-cohort-group (use member-filter)")
    if body.get("type") != PATIENT_GROUP:
        raise FhirError(400, f"Group.type {body.get('type')!r} is not supported for cohorts: only person "
                             "(patient cohorts)", "not-supported")
    if not isinstance(body.get("actual"), bool):
        raise FhirError(400, "Group.actual is required (a boolean)")
    filters = []
    modifiers = body.get("modifierExtension", [])
    if not isinstance(modifiers, list):
        raise FhirError(400, "Group.modifierExtension must be an array")
    for i, ext in enumerate(modifiers):
        if not isinstance(ext, dict) or ext.get("url") != MEMBER_FILTER:
            url = ext.get("url") if isinstance(ext, dict) else ext
            raise FhirError(400, f"Group.modifierExtension[{i}] {url!r} is not understood (only member-filter)",
                            "not-supported")
        value = ext.get("valueExpression")
        if not isinstance(value, dict):
            raise FhirError(400, f"Group.modifierExtension[{i}] (member-filter) needs a valueExpression")
        if value.get("language") != FHIR_QUERY:
            raise FhirError(400, f"member-filter language {value.get('language')!r} is not supported: "
                                 f"use {FHIR_QUERY}", "not-supported")
        parse(value.get("expression"))
        filters.append(value["expression"])
    if not filters:
        raise FhirError(400, "a bulk-cohort-group needs at least one member-filter modifierExtension")
    references = []
    for i, m in enumerate(body.get("member", []) or []):
        ref = ((m or {}).get("entity") or {}).get("reference") if isinstance(m, dict) else None
        if not isinstance(ref, str) or ref.partition("/")[0] not in ("Patient", "Group") or not ref.partition("/")[2]:
            raise FhirError(400, f"Group.member[{i}].entity.reference {ref!r}: a cohort's members must be "
                                 "Patient/<id> or Group/<id>")
        references.append(ref)
    return {"kind": "cohort", "type": PATIENT_GROUP, "name": name, "actual": body["actual"], "member": references,
            "filters": filters, "characteristic": []}


def _check_members(conn: sqlite3.Connection, content: dict[str, Any]) -> None:
    for ref in content["member"]:
        rtype, _, rid = ref.partition("/")
        if not db.exists(conn, rtype, rid):
            raise FhirError(422, f"Member '{ref}' does not exist")


def save(conn: sqlite3.Connection, content: dict[str, Any]) -> str:
    _check_members(conn, content)
    gid = uuid.uuid4().hex
    strings = [] if deviates("cohort-search-name-ignored") or not content["name"] else [("name", content["name"])]
    db.put(conn, "Group", gid, content, db.Index(strings=strings, tokens=[("type", PATIENT_GROUP)]))
    return gid


# ---- interactions ------------------------------------------------------------------


def create(body: dict[str, Any]) -> Response:
    """POST /Group with a cohort body (called by the Group blueprint); auth already checked."""
    sync = not prefers("respond-async")
    try:
        content = definition(body)
    except FhirError as exc:
        if sync and exc.status == 400 and deviates("cohort-sync-invalid-filter-500"):
            raise FhirError(500, f"internal error while creating the group: {exc.text}", "exception") from None
        raise
    base = base_url()
    if sync:
        with db.get_store().write() as conn:
            gid = save(conn, content)
            row = db.get(conn, "Group", gid)
        return written(201, {"Location": f"{base}/Group/{gid}"}, lambda: render(row), f"Created Group/{gid}")
    job_id = uuid.uuid4().hex
    with db.get_store().write() as conn:
        conn.execute(f"INSERT INTO {TABLE} (id, status, created, base_url, body) VALUES (?, 'queued', ?, ?, ?)",
                     (job_id, time.time(), base, json.dumps(content)))
    jobs.wake(current_app)
    return fhir_response(None, 202, {"Content-Location": f"{base}/cohort/status/{job_id}"})


def run_pending(app: Flask) -> bool:
    """Run one queued cohort job (on the export worker's thread); True when one was run."""
    database: db.Store = db.get_store(app)
    with database.write() as conn:
        job = jobs.claim_next(conn, TABLE)
    if job is None:
        return False
    job_id, body = job["id"], job["body"]
    try:
        with database.write() as conn:
            gid = save(conn, json.loads(body))
            conn.execute(f"UPDATE {TABLE} SET status = 'complete', group_id = ? WHERE id = ?", (gid, job_id))
    except FhirError as exc:
        with database.write() as conn:
            conn.execute(f"UPDATE {TABLE} SET status = 'failed', error = ?, error_status = ? WHERE id = ?",
                         (exc.text, exc.status, job_id))
    return True


def _job(job_id: str) -> dict[str, Any]:
    return jobs.get_or_404(TABLE, job_id, f"Unknown cohort job '{job_id}'")


@bp.get("/cohort/status/<job_id>")
def status(job_id: str) -> Response:
    authorize("Group", "read")
    config = current_app.config["MOCK"]
    job = _job(job_id)
    deadline = time.time() + 0.25   # answer at once when the job is about to finish
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.01)
        job = _job(job_id)
    if job["status"] in ("queued", "running") or time.time() < job["created"] + config.cohort_min_seconds:
        return fhir_response(None, 202, {"Retry-After": str(config.export_retry_after), "X-Progress": f"0% ({job['status']})"})
    if job["status"] == "failed":
        return fhir_response(operation_outcome("invalid" if job["error_status"] < 500 else "exception", job["error"]),
                             job["error_status"])
    response: dict[str, Any] = {"status": "201 Created"}
    if not deviates("cohort-batch-response-no-location"):
        response["location"] = f"Group/{job['group_id']}"
    bundle = {"resourceType": "Bundle", "type": "batch-response", "entry": [{"response": response}]}
    return fhir_response(bundle, 201 if deviates("cohort-poll-201") else 200)


@bp.delete("/cohort/status/<job_id>")
def cancel(job_id: str) -> Response:
    authorize("Group", "write")
    _job(job_id)
    with db.get_store().write() as conn:
        jobs.remove(conn, TABLE, job_id)
    return fhir_response(None, 202)


def delete(conn: sqlite3.Connection, gid: str) -> None:
    if not deviates("cohort-delete-not-deleting"):
        db.delete(conn, "Group", gid)


def render(row: db.Row) -> dict[str, Any]:
    body = row.body
    out: dict[str, Any] = {
        "resourceType": "Group", "id": row.id,
        "meta": {"versionId": str(row.version), "lastUpdated": row.last_updated.isoformat().replace("+00:00", "Z"),
                 "profile": [PROFILE]},
        "modifierExtension": [{"url": MEMBER_FILTER, "valueExpression": {"language": FHIR_QUERY, "expression": e}}
                              for e in body["filters"]],
        "type": body["type"], "actual": body["actual"],
    }
    if body.get("name") is not None:
        out["name"] = body["name"]
    if body["member"]:
        out["member"] = [{"entity": {"reference": r}} for r in body["member"]]
    return out


# ---- membership ----------------------------------------------------------------------


def current_members(app: Flask, conn: sqlite3.Connection, gid: str) -> list[str] | None:
    """The Patient ids of cohort Group/<gid> as of now (sorted); None when it is not a cohort."""
    row = db.get(conn, "Group", gid)
    if row is None or row.body.get("kind") != "cohort":
        return None
    return sorted(compute(app, conn, row.body))


def compute(app: Flask, conn: sqlite3.Connection, content: dict[str, Any], depth: int = 0) -> set[str]:
    """The cohort's members now: base population (member, else every Patient) ∩ every filter."""
    def nested(c: sqlite3.Connection, body: dict[str, Any], d: int) -> set[str]:
        return compute(app, c, body, d)

    if content["member"] and not deviates("cohort-member-narrowing-ignored"):
        base = membership.base_population(conn, content["member"], nested, depth)
    else:
        base = directory.patient_ids(conn)
    chosen = [membership.selected(app, conn, parse(e)) for e in content["filters"]]
    if deviates("cohort-filters-ored"):
        return base & set().union(*chosen)
    for s in chosen:
        base &= s
    return base
