"""Patient and Practitioner: read and search only (they are the members groups point at)."""
from __future__ import annotations

from typing import Any
from uuid import uuid4

from flask import Blueprint, Response, current_app
from werkzeug.http import http_date

from .. import prefer, search, store
from ..auth import requires
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..outcomes import FhirError, fhir_response, not_found
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


def index_for(resource: dict[str, Any]) -> store.Index:
    """name matches any family or given part."""
    values: list[str] = []
    for name in resource.get("name", []):
        values += [name["family"]] if name.get("family") else []
        values += list(name.get("given", []))
    return store.Index(strings=[("name", v) for v in dict.fromkeys(values)])


def render(row: store.Row) -> dict[str, Any]:
    meta = {"versionId": str(row.version), "lastUpdated": row.last_updated.isoformat().replace("+00:00", "Z")}
    return {"resourceType": row.rtype, "id": row.id, "meta": meta, **{
        k: v for k, v in row.body.items() if k not in ("resourceType", "id", "meta")
    }}


def make_blueprint(rtype: str) -> Blueprint:
    """Same read/search behaviour for each directory type; writes are left to 405."""
    bp = Blueprint(rtype.lower(), __name__)
    declare(bp, ResourceCapability(rtype, ("read", "search-type"), tuple((p.name, p.fhir_type) for p in SEARCH_PARAMS)))

    @bp.get(f"/{rtype}/<rid>")
    @requires(rtype, "read")
    def read(rid: str) -> Response:
        with current_app.extensions["fhir.store"].read() as conn:
            row = store.get(conn, rtype, rid)
        if row is None:
            raise not_found(rtype, rid)
        headers = {"ETag": f'W/"{row.version}"'}
        if not deviates("last-modified-missing"):
            headers["Last-Modified"] = http_date(row.last_updated)
        return fhir_response(render(row), headers=headers)

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
        with current_app.extensions["fhir.store"].write() as conn:
            row = store.put(conn, rtype, rid, content, index_for(content))
        headers = {"ETag": f'W/"{row.version}"', "Location": f"{base_url()}/{rtype}/{rid}"}
        return prefer.written(201, headers, lambda: render(row), f"Created {rtype}/{rid}")

    @bp.delete(f"/{rtype}/<rid>")
    @requires(rtype, "delete")
    def delete(rid: str) -> Response:
        _writes_allowed(rtype)
        with current_app.extensions["fhir.store"].write() as conn:
            if not store.exists(conn, rtype, rid):
                raise not_found(rtype, rid)
            store.delete(conn, rtype, rid)
        return Response(status=204)

    @bp.get(f"/{rtype}")
    @requires(rtype, "search")
    def search_get() -> Response:
        return fhir_response(search.run(rtype, search.parse(search.request_params(False), SEARCH_PARAMS), render))

    @bp.post(f"/{rtype}/_search")
    @requires(rtype, "search")
    def search_post() -> Response:
        return fhir_response(search.run(rtype, search.parse(search.request_params(True), SEARCH_PARAMS), render))

    return bp


BLUEPRINTS = [make_blueprint(t) for t in DIRECTORY_TYPES]
