"""Group (Canvas Teams and Patient Groups): create, read, update, search; no delete."""
from __future__ import annotations

import sqlite3
from typing import Any
from uuid import uuid4

from flask import Blueprint, Response, current_app, request
from werkzeug.http import http_date

from .. import cohort, preconditions, prefer, search, store
from ..auth import authorize, requires
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..variants import varies
from ..outcomes import FhirError, fhir_response, not_found
from ..payload import read_resource_body
from . import group_rules
from .directory import display_name
from ..urls import base_url

bp = Blueprint("group", __name__)
SEARCH_PARAMS = (
    search.SearchParam("_id", "id", "token"),
    search.SearchParam("type", "token", "token", frozenset(group_rules.CANVAS_GROUP_TYPES)),
    search.SearchParam("name", "string", "string"),
    search.SearchParam("member", "token", "reference"),
)
declare(
    bp,
    ResourceCapability(
        "Group", ("read", "create", "update", "search-type"), tuple((p.name, p.fhir_type) for p in SEARCH_PARAMS),
        operations=(("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"),),
    ),
)


def _store() -> store.Store:
    return current_app.extensions["fhir.store"]


def _base() -> str:
    return base_url()


# ---- storage -------------------------------------------------------------------------


def save(conn: sqlite3.Connection, gid: str, draft: group_rules.GroupDraft, old: store.Row | None) -> store.Row:
    """Write the group, its index rows and its responsibility claims in the caller's transaction."""
    members = draft.members
    if old is not None and deviates("update-keeps-old-members"):
        members = old.body.get("member", [])
    content = {
        "type": draft.type,
        "name": draft.name,
        "actual": draft.actual,
        "characteristic": draft.characteristic(),
        "member": members,
    }
    tokens = [("type", draft.type), *(("member", m) for m in members)]
    strings = [("name", draft.name)] if draft.name else []
    row = store.put(conn, "Group", gid, content, store.Index(strings=strings, tokens=tokens))
    _claim(conn, gid, draft.responsibilities if draft.type == "practitioner" else [], old is not None)
    problem = draft.member_problem or _missing_member(conn, draft.members)
    if problem:
        if old is None and deviates("rejected-create-stored"):
            conn.execute("COMMIT")
        raise FhirError(422, problem)
    return row


def _claim(conn: sqlite3.Connection, gid: str, names: list[str], updating: bool) -> None:
    """Reserve responsibilities; the PRIMARY KEY makes a second holder impossible, even concurrently."""
    if deviates("responsibility-not-unique"):
        return
    if updating:
        if deviates("dropped-responsibility-not-freed"):
            own = {r for (r,) in conn.execute("SELECT name FROM responsibility WHERE group_id = ?", (gid,))}
            names = [n for n in names if n not in own]
        elif deviates("keep-own-responsibility-rejected"):
            marks = ", ".join("?" * len(names))
            conn.execute(f"DELETE FROM responsibility WHERE group_id = ? AND name NOT IN ({marks})", (gid, *names))
        else:
            conn.execute("DELETE FROM responsibility WHERE group_id = ?", (gid,))
    for name in names:
        try:
            conn.execute("INSERT INTO responsibility (name, group_id) VALUES (?, ?)", (name, gid))
        except sqlite3.IntegrityError:
            raise FhirError(422, f"Responsibility {name} is already assigned to another team") from None


def _missing_member(conn: sqlite3.Connection, references: list[str]) -> str | None:
    if deviates("member-existence-unchecked"):
        return None
    for ref in references:
        rtype, _, rid = ref.partition("/")
        if not store.exists(conn, rtype, rid):
            return f"Member '{ref}' does not exist"
    return None


def render(row: store.Row) -> dict[str, Any]:
    """The read view: computed quantity and member displays, actual always true."""
    body = row.body
    if body.get("kind") == "cohort":
        return cohort.render(row)
    out: dict[str, Any] = {
        "resourceType": "Group",
        "id": row.id,
        "meta": {"versionId": str(row.version), "lastUpdated": row.last_updated.isoformat().replace("+00:00", "Z")},
        "type": body["type"],
        "actual": body["actual"] if deviates("actual-echoed") else True,
    }
    if body.get("name") is not None:
        out["name"] = body["name"]
    out["quantity"] = 0 if deviates("quantity-always-zero") else len(body["member"])
    if body["characteristic"]:
        out["characteristic"] = body["characteristic"]
    if body["member"] and not varies("groups-read-only-quantity"):
        out["member"] = [{"entity": _entity(ref)} for ref in body["member"]]
    return out


def _entity(ref: str) -> dict[str, str]:
    rtype, _, rid = ref.partition("/")
    entity = {"reference": ref, "type": rtype}
    with _store().read() as conn:
        target = store.get(conn, rtype, rid)
    display = display_name(target.body) if target else None
    if display:
        entity["display"] = display
    return entity


def _headers(row: store.Row) -> dict[str, str]:
    headers = {} if varies("no-etag") else {"ETag": f'W/"{row.version}"'}
    if not deviates("last-modified-missing"):
        headers["Last-Modified"] = http_date(row.last_updated)
    return headers


# ---- interactions --------------------------------------------------------------------


def _writable() -> None:
    """Groups are read-only under variant groups-read-only-quantity (the usual Bulk Data server)."""
    if varies("groups-read-only-quantity"):
        raise FhirError(405, "Groups are read-only on this server", "not-supported", headers={"Allow": "GET"})


@bp.post("/Group")
@requires("Group", "create")
def create() -> Response:
    _writable()
    body = read_resource_body()
    if cohort.is_cohort_request(body):
        return cohort.create(body)
    draft = group_rules.rules(group_rules.structure(body))
    gid = uuid4().hex
    with _store().write() as conn:
        row = save(conn, gid, draft, None)
    headers = _headers(row)
    if not deviates("create-missing-location"):
        headers["Location"] = f"{_base()}/Group/{gid}" + (f"/_history/{row.version}"
                                                           if varies("location-with-history") else "")
    status = 200 if deviates("create-returns-200") else 201
    return prefer.written(status, headers, lambda: render(row), f"Created Group/{gid}")


@bp.get("/Group/<gid>")
@requires("Group", "read")
def read(gid: str) -> Response:
    with _store().read() as conn:
        row = store.get(conn, "Group", gid)
    if row is None:
        raise not_found("Group", gid)
    return fhir_response(render(row), headers=_headers(row))


@bp.put("/Group/<gid>")
@requires("Group", "update")
def update(gid: str) -> Response:
    _writable()
    group = group_rules.structure(read_resource_body())
    if "id" not in group:
        raise FhirError(400, "Group.id is required on update")
    if group["id"] != gid and not deviates("update-id-mismatch-accepted"):
        raise FhirError(400, f"Group.id '{group['id']}' does not match the URL id '{gid}'")
    draft = group_rules.rules(group)
    since = preconditions.if_unmodified_since()
    with _store().write() as conn:
        old = store.get(conn, "Group", gid)
        if old is None:
            raise not_found("Group", gid)
        if old.body.get("kind") == "cohort":
            raise FhirError(405, "Update of Bulk Cohort groups is not supported (create a new cohort)")
        preconditions.check(old, since)
        row = save(conn, gid, draft, old)
    return prefer.written(200, _headers(row), lambda: render(row), f"Updated Group/{gid}")


@bp.delete("/Group/<gid>")
def delete(gid: str) -> Response:
    """Only Bulk Cohort groups can be deleted; Canvas Teams and Patient Groups answer 405.

    The token is checked first, so an anonymous client learns nothing about which ids exist."""
    authorize("Group", "delete")
    with _store().write() as conn:
        row = store.get(conn, "Group", gid)
        is_cohort = row is not None and row.body.get("kind") == "cohort"
        if row is not None and not is_cohort and not deviates("delete-allowed"):
            raise FhirError(405, "DELETE is not supported for Canvas Teams and Patient Groups (only for Bulk Cohort "
                                 "groups)", headers={"Allow": "GET, PUT"})
        if row is None:
            raise not_found("Group", gid)
        if is_cohort:
            cohort.delete(conn, gid)
            return Response(status=204)
        store.delete(conn, "Group", gid)
        conn.execute("DELETE FROM responsibility WHERE group_id = ?", (gid,))
    return Response(status=204)


@bp.get("/Group")
@requires("Group", "search")
def search_get() -> Response:
    return _search(False)


@bp.post("/Group/_search")
@requires("Group", "search")
def search_post() -> Response:
    return _search(True)


def _search(post: bool) -> Response:
    ignored = frozenset({"type"}) if deviates("search-ignores-type") else frozenset()
    query = search.parse(search.request_params(post), SEARCH_PARAMS, ignored)
    return fhir_response(search.run("Group", query, render))
