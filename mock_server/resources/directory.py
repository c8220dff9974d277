"""Patient and Practitioner: read and search only (they are the members groups point at)."""
from __future__ import annotations

import sqlite3
from typing import Any, Iterator
from uuid import uuid4

from flask import Blueprint, Response

from .. import search, db
from ..auth import requires
from ..capabilities import ResourceCapability, declare
from ..http import FhirError, fhir_response, get_or_404, not_found, resource_headers, written
from ..payload import read_resource_body
from ..urls import base_url
from ..variants import varies

SEARCH_PARAMS = (
    search.SearchParam("_id", "id", "token"),
    search.SearchParam("name", "string", "string"),
)
DIRECTORY_TYPES = ("Patient", "Practitioner")
WRITABLE = ("create", "delete")   # what variant no-practitioners-with-create adds to Practitioner


def writable(rtype: str) -> bool:
    """Practitioners can be created and deleted under variant no-practitioners-with-create; else read-only."""
    return rtype == "Practitioner" and varies("no-practitioners-with-create")


def _writes_allowed(rtype: str) -> None:
    if not writable(rtype):
        raise FhirError(405, f"{rtype} is read-only on this server", "not-supported", headers={"Allow": "GET"})


def display_name(resource: dict[str, Any]) -> str | None:
    """'Given Family' of the first name (or its text): what Group members show as display."""
    for name in resource.get("name", []):
        if name.get("text"):
            return name["text"]
        parts = [*name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return None


def index_for(resource: dict[str, Any]) -> db.Index:
    """name matches any family or given part."""
    values: list[str] = []
    for name in resource.get("name", []):
        values += [name["family"]] if name.get("family") else []
        values += list(name.get("given", []))
    return db.Index(strings=[("name", v) for v in dict.fromkeys(values)])


def view(conn: object, row: db.Row, base: str = "") -> dict[str, Any]:
    """The read view (search.View): the stored resource as it is."""
    return render(row)


def render(row: db.Row) -> dict[str, Any]:
    meta = {"versionId": str(row.version), "lastUpdated": row.last_updated.isoformat().replace("+00:00", "Z")}
    return {"resourceType": row.rtype, "id": row.id, "meta": meta, **{
        k: v for k, v in row.body.items() if k not in ("resourceType", "id", "meta")
    }}


# ---- what other modules read: the patients (export, cohorts) -----------------------------------


def patient_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM resource WHERE rtype = 'Patient'").fetchone()[0]


def patient_ids(conn: sqlite3.Connection) -> set[str]:
    return {pid for (pid,) in conn.execute("SELECT id FROM resource WHERE rtype = 'Patient'")}


def patients_after(conn: sqlite3.Connection, seq: int, limit: int) -> list[tuple[int, str]]:
    """(creation order, id) of up to ``limit`` Patients created after ``seq``: a stream in batches."""
    return conn.execute("SELECT seq, id FROM resource WHERE rtype = 'Patient' AND seq > ? ORDER BY seq LIMIT ?",
                        (seq, limit)).fetchall()


def patient_not_in(conn: sqlite3.Connection, ids: list[str]) -> str | None:
    """The id of some Patient that is not one of ``ids``."""
    row = conn.execute("SELECT id FROM resource WHERE rtype = 'Patient' AND id NOT IN (%s) LIMIT 1"
                       % ",".join("?" * len(ids)), ids).fetchone()
    return row[0] if row else None


def patient_stamp(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """Changes whenever a Patient is added or updated (cache key)."""
    return tuple(conn.execute("SELECT COUNT(*), MAX(seq), MAX(last_updated) FROM resource"
                              " WHERE rtype = 'Patient'").fetchone())


def patient_bodies(conn: sqlite3.Connection) -> Iterator[tuple[str, str]]:
    """(id, body text) of every Patient, in creation order."""
    yield from conn.execute("SELECT id, body FROM resource WHERE rtype = 'Patient' ORDER BY seq")


def make_blueprint(rtype: str) -> Blueprint:
    """Same read/search behaviour for each directory type; writes are 405 (but for variant no-practitioners-with-create)."""
    bp = Blueprint(rtype.lower(), __name__)
    declare(bp, ResourceCapability(rtype, ("read", "search-type"), search.capability(SEARCH_PARAMS)))

    @bp.get(f"/{rtype}/<rid>")
    @requires(rtype, "read")
    def read(rid: str) -> Response:
        with db.get_store().read() as conn:
            row = get_or_404(conn, rtype, rid)
        return fhir_response(render(row), headers=resource_headers(row))

    @bp.post(f"/{rtype}")
    @requires(rtype, "create")
    def create() -> Response:
        _writes_allowed(rtype)
        body = read_resource_body()
        if body.get("resourceType") != rtype:
            raise FhirError(400, f"resourceType must be '{rtype}', got {body.get('resourceType')!r}")
        names = body.get("name", [])
        if not isinstance(names, list) or not all(isinstance(n, dict) for n in names):
            raise FhirError(400, f"{rtype}.name must be an array of HumanName objects")
        rid = uuid4().hex
        content = {k: v for k, v in body.items() if k not in ("id", "meta")}
        with db.get_store().write() as conn:
            row = db.put(conn, rtype, rid, content, index_for(content))
        headers = {"ETag": f'W/"{row.version}"', "Location": f"{base_url()}/{rtype}/{rid}"}
        return written(201, headers, lambda: render(row), f"Created {rtype}/{rid}")

    @bp.delete(f"/{rtype}/<rid>")
    @requires(rtype, "delete")
    def delete(rid: str) -> Response:
        _writes_allowed(rtype)
        with db.get_store().write() as conn:
            if not db.exists(conn, rtype, rid):
                raise not_found(rtype, rid)
            db.delete(conn, rtype, rid)
        return Response(status=204)

    def answer(post: bool) -> Response:
        return fhir_response(search.run(rtype, search.parse(search.request_params(post), SEARCH_PARAMS), view))

    search.add_routes(bp, rtype, answer)

    return bp


BLUEPRINTS = [make_blueprint(t) for t in DIRECTORY_TYPES]
