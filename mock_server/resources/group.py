"""Group (Canvas Teams and Patient Groups): create, read, update, search; no delete."""
from __future__ import annotations

import sqlite3
from typing import Any
from uuid import uuid4

from flask import Blueprint, Flask, Response

from .. import cohort, preconditions, search, db
from ..auth import authorize, requires
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..variants import varies
from ..http import FhirError, fhir_response, get_or_404, not_found, resource_headers, written
from ..payload import read_resource_body
from . import group_rules
from .directory import display_name
from ..urls import base_url

bp = Blueprint("group", __name__)
SEARCH_PARAMS = (
    search.SearchParam("_id", "id", "token"),
    search.SearchParam("type", "token", "token", tuple(sorted(group_rules.CANVAS_GROUP_TYPES))),
    search.SearchParam("name", "string", "string"),
    search.SearchParam("member", "token", "reference"),
)
declare(
    bp,
    ResourceCapability(
        "Group", ("read", "create", "update", "search-type"), search.capability(SEARCH_PARAMS),
        operations=(("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"),),
    ),
)



# ---- storage -------------------------------------------------------------------------


def save(conn: sqlite3.Connection, gid: str, draft: group_rules.GroupDraft, old: db.Row | None) -> db.Row:
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
    row = db.put(conn, "Group", gid, content, db.Index(strings=strings, tokens=tokens))
    _claim(conn, gid, draft.responsibilities if draft.type == group_rules.TEAM else [], old is not None)
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
        if not db.exists(conn, rtype, rid):
            return f"Member '{ref}' does not exist"
    return None


# ---- what other modules read (Task's team, the exporter's members) --------------------------


def team_name(conn: sqlite3.Connection, reference: str) -> str | None:
    """The current name of the team ``Group/<id>`` (None when there is no such group)."""
    row = db.get(conn, "Group", reference.partition("/")[2])
    return row.body.get("name") if row is not None else None


def team_problem(conn: sqlite3.Connection, reference: str) -> str | None:
    """Why ``Group/<id>`` cannot be a Task's team (it is missing, or not a practitioner group), else None."""
    row = db.get(conn, "Group", reference.partition("/")[2])
    if row is None:
        return f"{reference} does not exist"
    if row.body.get("type") != group_rules.TEAM:
        return f"{reference} is not a team (Group of type practitioner)"
    return None


def member_count(conn: sqlite3.Connection, gid: str) -> int:
    """How many members the stored Canvas group lists (from the index: no body parsed)."""
    return conn.execute("SELECT COUNT(*) FROM search_token WHERE rtype = 'Group' AND id = ? AND param = 'member'",
                        (gid,)).fetchone()[0]


def members_page(conn: sqlite3.Connection, gid: str, offset: int, limit: int) -> list[tuple[str, str]]:
    """(type, id) of the group's members from ``offset``, in their listed order (streamed from the index)."""
    rows = conn.execute("SELECT value FROM search_token WHERE rtype = 'Group' AND id = ? AND param = 'member'"
                        " ORDER BY rowid LIMIT ? OFFSET ?", (gid, limit, offset)).fetchall()
    return [tuple(v.split("/", 1)) for (v,) in rows]  # type: ignore[misc]


def membership(app: Flask, conn: sqlite3.Connection, gid: str) -> tuple[str, set[str]] | None:
    """(Group.type, member references) of a stored group now (a cohort's computed); None if unknown."""
    row = db.get(conn, "Group", gid)
    if row is None:
        return None
    if row.body.get("kind") == "cohort":
        return row.body["type"], {f"Patient/{p}" for p in cohort.compute(app, conn, row.body)}
    return row.body["type"], set(row.body["member"])


# ---- the read view ----------------------------------------------------------------------------


def view(conn: sqlite3.Connection, row: db.Row, base: str = "") -> dict[str, Any]:
    """The read view of a stored group: a cohort's own, or a Canvas group with its members' names."""
    if row.body.get("kind") == "cohort":
        return cohort.render(row)
    displays = {}
    for ref in row.body["member"]:
        rtype, _, rid = ref.partition("/")
        target = db.get(conn, rtype, rid)
        display = display_name(target.body) if target else None
        if display:
            displays[ref] = display
    return render(row, displays)


def render(row: db.Row, displays: dict[str, str]) -> dict[str, Any]:
    """The read view: computed quantity, member displays, actual always true (pure)."""
    body = row.body
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
        out["member"] = [{"entity": _entity(ref, displays.get(ref))} for ref in body["member"]]
        if deviates("read-group-not-actual"):
            out["actual"] = False
    if deviates("read-actual-not-boolean"):
        out["actual"] = "yes"
    return out


def _entity(ref: str, display: str | None) -> dict[str, str]:
    entity = {"reference": ref, "type": ref.partition("/")[0]}
    if display:
        entity["display"] = display
    return entity


def _fresh_view(row: db.Row) -> dict[str, Any]:
    """The view of a row just written (Prefer: return=representation)."""
    with db.get_store().read() as conn:
        return view(conn, row)


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
    with db.get_store().write() as conn:
        row = save(conn, gid, draft, None)
    headers = resource_headers(row)
    if not deviates("create-missing-location"):
        headers["Location"] = f"{base_url()}/Group/{gid}" + (f"/_history/{row.version}"
                                                           if varies("location-with-history") else "")
    status = 200 if deviates("create-returns-200") else 201
    return written(status, headers, lambda: _fresh_view(row), f"Created Group/{gid}")


@bp.get("/Group/<gid>")
@requires("Group", "read")
def read(gid: str) -> Response:
    with db.get_store().read() as conn:
        row = get_or_404(conn, "Group", gid)
        return fhir_response(view(conn, row), headers=resource_headers(row))


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
    with db.get_store().write() as conn:
        old = get_or_404(conn, "Group", gid)
        if old.body.get("kind") == "cohort":
            raise FhirError(405, "Update of Bulk Cohort groups is not supported (create a new cohort)")
        preconditions.check(old, since)
        row = save(conn, gid, draft, old)
    return written(200, resource_headers(row), lambda: _fresh_view(row), f"Updated Group/{gid}")


@bp.delete("/Group/<gid>")
def delete(gid: str) -> Response:
    """Only Bulk Cohort groups can be deleted; Canvas Teams and Patient Groups answer 405.

    The token is checked first, so an anonymous client learns nothing about which ids exist."""
    authorize("Group", "delete")
    with db.get_store().write() as conn:
        row = db.get(conn, "Group", gid)
        is_cohort = row is not None and row.body.get("kind") == "cohort"
        if row is not None and not is_cohort and not deviates("delete-allowed"):
            raise FhirError(405, "DELETE is not supported for Canvas Teams and Patient Groups (only for Bulk Cohort "
                                 "groups)", headers={"Allow": "GET, PUT"})
        if row is None:
            raise not_found("Group", gid)  # after the 405: the id's existence is not revealed
        if is_cohort:
            cohort.delete(conn, gid)
            return Response(status=204)
        db.delete(conn, "Group", gid)
        conn.execute("DELETE FROM responsibility WHERE group_id = ?", (gid,))
    return Response(status=204)


def _search(post: bool) -> Response:
    ignored = frozenset({"type"}) if deviates("search-ignores-type") else frozenset()
    query = search.parse(search.request_params(post), SEARCH_PARAMS, ignored)
    return fhir_response(search.run("Group", query, view))


search.add_routes(bp, "Group", _search)
