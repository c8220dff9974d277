"""Task (Canvas): create, read, update, search; no delete (SPEC §3).

The resource row holds the stored content; ``task_index`` (one row per task, with
composite indexes such as (owner, status, seq)) and ``task_label`` answer searches
without scanning every task.
"""
from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime
from typing import Any
from uuid import uuid4

from flask import Blueprint, Response

from .. import dates, preconditions, search, db
from ..auth import authorize, requires
from ..capabilities import ResourceCapability, declare
from ..deviations import deviates
from ..variants import varies
from ..http import FhirError, fhir_response, get_or_404, prefers, resource_headers, written
from ..payload import read_resource_body
from . import group, task_rules
from .task_rules import GROUP_EXT, PERMALINK_EXT
from ..validation import REFERENCE_RE
from ..urls import base_url

bp = Blueprint("task", __name__)
SORTS = {
    "_id": "t.id ASC",
    "-_id": "t.id DESC",
    "due-date": "(t.due IS NULL), t.due ASC, t.id ASC",
    "-due-date": "(t.due IS NULL), t.due DESC, t.id ASC",
}
PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le"})


CANVAS_TASK_DOC = ("Canvas-style Task: the team is the extension "
                   "http://schemas.canvasmedical.com/fhir/extensions/task-group")   # the Canvas marker (SPEC §0)

# ---- storage -------------------------------------------------------------------------


def _check_references(conn: sqlite3.Connection, draft: task_rules.TaskDraft) -> None:
    for element, kind, ref in draft.references:
        rtype, _, rid = ref.partition("/")
        if kind != "*" and rtype != kind:
            raise FhirError(422, f"Task.{element} must reference a {kind}, got '{ref}'")
        if rtype == "Group":
            problem = group.team_problem(conn, ref)
            if problem:
                raise FhirError(422, f"Task.{element}: {problem}")
        elif not db.exists(conn, rtype, rid):
            raise FhirError(422, f"Task.{element}: {ref} does not exist")


def merge(draft: task_rules.TaskDraft, old: dict[str, Any] | None, replace_notes: bool, now: str) -> dict[str, Any]:
    """The stored content after a create (old None) or an update, per SPEC §3's omission rules."""
    content: dict[str, Any] = {
        "status": draft.status,
        "intent": draft.intent,
        "description": draft.description,
        "requester": draft.requester,
        "owner": draft.owner,
        "patient": draft.patient,
        "group": draft.group,
        "authoredOn": draft.authored_on,
        "due": draft.due,
        "labels": list(draft.labels),
        "notes": list(draft.notes),
    }
    if old is None:
        content["authoredOn"] = draft.authored_on or now
        return content
    # kept when omitted: the group extension and authoredOn (and, Decision, the patient)
    if draft.group is None and not deviates("task-group-cleared-when-omitted"):
        content["group"] = old.get("group")
    if draft.authored_on is None and not deviates("task-authored-cleared-when-omitted"):
        content["authoredOn"] = old.get("authoredOn")
    if draft.patient is None:
        content["patient"] = old.get("patient")
    # cleared when omitted: owner, restriction, input (each deviation keeps one)
    if draft.owner is None and deviates("task-owner-kept-when-omitted"):
        content["owner"] = old.get("owner")
    if draft.due is None and deviates("task-restriction-kept-when-omitted"):
        content["due"] = old.get("due")
    if not draft.labels and deviates("task-input-kept-when-omitted"):
        content["labels"] = old.get("labels", [])
    if draft.description is None and deviates("task-description-kept-when-omitted"):
        content["description"] = old.get("description")
    if not (replace_notes or deviates("task-notes-replaced")):
        content["notes"] = [*old.get("notes", []), *draft.notes]
    return content


def save(conn: sqlite3.Connection, tid: str, draft: task_rules.TaskDraft, old: db.Row | None,
         replace_notes: bool = False) -> db.Row:
    """Check references, then write the task and its index rows, in the caller's transaction."""
    _check_references(conn, draft)
    content = merge(draft, old.body if old else None, replace_notes, task_rules.utcnow_text())
    if content.get("group") and deviates("task-group-display-stale"):
        content["groupDisplay"] = group.team_name(conn, content["group"])
    row = db.put(conn, "Task", tid, content, db.Index())
    seq = conn.execute("SELECT seq FROM resource WHERE rtype = 'Task' AND id = ?", (tid,)).fetchone()[0]
    write_index(conn, tid, seq, content, row.last_updated)
    return row


def write_index(conn: sqlite3.Connection, tid: str, seq: int, content: dict[str, Any], modified: datetime) -> None:
    description = content.get("description")
    conn.execute(
        "INSERT OR REPLACE INTO task_index (id, seq, status, owner, patient, requester, description,"
        " description_lower, due, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (tid, seq, content["status"], content.get("owner"), content.get("patient"), content["requester"],
         description, description.lower() if description else None, task_rules.index_instant(content.get("due")),
         dates.sortable(modified)),
    )
    conn.execute("DELETE FROM task_label WHERE task_id = ?", (tid,))
    labels = content.get("labels", [])
    conn.executemany("INSERT OR IGNORE INTO label (name) VALUES (?)", [(label,) for label in labels])
    conn.executemany("INSERT OR IGNORE INTO task_label (label, task_id) VALUES (?, ?)", [(label, tid) for label in labels])


def for_patients(conn: sqlite3.Connection, patient_ids: list[str]) -> list[db.Row]:
    """The Tasks whose ``for`` is one of the patients (the exporter's compartment Tasks), in creation order."""
    marks = ",".join("?" * len(patient_ids))
    rows = conn.execute(
        "SELECT r.id, r.version, r.last_updated, r.body FROM task_index t JOIN resource r ON r.rtype = 'Task'"
        f" AND r.id = t.id WHERE t.patient IN ({marks}) ORDER BY r.seq", [f"Patient/{p}" for p in patient_ids])
    return [db.Row("Task", rid, version, datetime.fromisoformat(updated), json.loads(body))
            for rid, version, updated, body in rows]


def _permalink(base: str, tid: str) -> str:
    token = base64.b64encode(f"Task:{tid}".encode()).decode()
    return f"{base}/permalinks/v1/{token}"


def _ref(reference: str) -> dict[str, str]:
    return {"reference": reference, "type": reference.partition("/")[0]}


def view(conn: sqlite3.Connection, row: db.Row, base: str) -> dict[str, Any]:
    """The read view of a stored Task, with its team's current name."""
    team = row.body.get("group")
    if not team:
        return render(row, base)
    name = row.body.get("groupDisplay") if deviates("task-group-display-stale") else group.team_name(conn, team)
    return render(row, base, name)


def _fresh_view(row: db.Row) -> dict[str, Any]:
    """The view of a row just written (Prefer: return=representation)."""
    with db.get_store().read() as conn:
        return view(conn, row, base_url())


def render(row: db.Row, base: str, team_name: str | None = None) -> dict[str, Any]:
    """The read view: reference types, the team's name, the permalink, lastModified (pure)."""
    body = row.body
    out: dict[str, Any] = {
        "resourceType": "Task",
        "id": row.id,
        "meta": {"versionId": str(row.version), "lastUpdated": row.last_updated.isoformat().replace("+00:00", "Z")},
    }
    extension = []
    if body.get("group"):
        value = _ref(body["group"])
        if team_name:
            value["display"] = team_name
        extension.append({"url": GROUP_EXT, "valueReference": value})
    extension.append({"url": PERMALINK_EXT, "valueString": _permalink(base, row.id)})
    out["extension"] = extension
    out["status"] = body["status"]
    if body.get("description") is not None:
        out["description"] = body["description"]
    if body.get("patient"):
        out["for"] = _ref(body["patient"])
    if body.get("authoredOn"):
        out["authoredOn"] = body["authoredOn"]
    out["requester"] = _ref(body["requester"])
    if body.get("owner"):
        out["owner"] = _ref(body["owner"])
    out["intent"] = body["intent"]
    if body.get("due"):
        out["restriction"] = {"period": {"end": body["due"]}}
    if body.get("notes"):
        out["note"] = [{"authorReference": _ref(n["author"]), "time": n["time"], "text": n["text"]}
                       for n in body["notes"]]
    if body.get("labels"):
        out["input"] = [{"type": {"text": "label"}, "valueString": label} for label in body["labels"]]
    out["lastModified"] = row.last_updated.isoformat()
    return out


# ---- interactions --------------------------------------------------------------------


@bp.post("/Task")
@requires("Task", "create")
def create() -> Response:
    draft = task_rules.rules(task_rules.structure(read_resource_body()))
    tid = uuid4().hex
    with db.get_store().write() as conn:
        row = save(conn, tid, draft, None)
    headers = resource_headers(row)
    headers["Location"] = f"{base_url()}/Task/{tid}" + (f"/_history/{row.version}"
                                                     if varies("location-with-history") else "")
    return written(201, headers, lambda: _fresh_view(row), f"Created Task/{tid}")


@bp.get("/Task/<tid>")
@requires("Task", "read")
def read(tid: str) -> Response:
    with db.get_store().read() as conn:
        row = get_or_404(conn, "Task", tid)
        return fhir_response(view(conn, row, base_url()), headers=resource_headers(row))


@bp.put("/Task/<tid>")
@requires("Task", "update")
def update(tid: str) -> Response:
    task = task_rules.structure(read_resource_body())
    if "id" not in task:
        raise FhirError(400, "Task.id is required on update")
    if task["id"] != tid:
        raise FhirError(400, f"Task.id '{task['id']}' does not match the URL id '{tid}'")
    draft = task_rules.rules(task)
    since = preconditions.if_unmodified_since()
    with db.get_store().write() as conn:
        old = get_or_404(conn, "Task", tid)
        preconditions.check(old, since)
        row = save(conn, tid, draft, old, prefers("note-replace"))
    return written(200, resource_headers(row), lambda: _fresh_view(row), f"Updated Task/{tid}")


@bp.delete("/Task/<tid>")
def delete(tid: str) -> Response:
    authorize("Task", "delete")
    raise FhirError(405, "DELETE is not supported for Task", headers={"Allow": "GET, PUT"})


# ---- search (the generic search.py, with Task's own compilers and page over task_index) ----


def _reference_values(name: str, kind: str, values: list[str]) -> list[str]:
    out = []
    for value in values:
        ref = value if "/" in value else f"{kind}/{value}"
        m = REFERENCE_RE.match(ref)
        if not m or m.group(1) != kind:
            raise FhirError(400, f"Invalid value for {name}: '{value}' (expected {kind}/<id>)")
        out.append(ref)
    return out


def _date_clause(name: str, column: str, value: str) -> tuple[str, list[str]]:
    prefix, text = dates.split_prefix(value, PREFIXES)
    try:
        parsed = dates.parse(text)
    except ValueError as exc:
        raise FhirError(400, f"Invalid value for {name}: {exc} (expected [eq|ne|gt|lt|ge|le]<date or dateTime>, "
                             f"{dates.RANGE_TEXT})") from None
    s, e = dates.sortable(parsed.start), dates.sortable(parsed.end)
    if prefix == "lt" and name == "due" and deviates("task-due-lt-as-le"):
        prefix = "le"
    return {
        "eq": (f"({column} >= ? AND {column} < ?)", [s, e]),
        "ne": (f"({column} < ? OR {column} >= ?)", [s, e]),
        "gt": (f"{column} >= ?", [e]),
        "lt": (f"{column} < ?", [s]),
        "ge": (f"{column} >= ?", [s]),
        "le": (f"{column} < ?", [e]),
    }[prefix]


def _marks(values: list[str]) -> str:
    return ", ".join("?" * len(values))


def _sort(q: search.Query, modifier: str, values: list[str]) -> None:
    if not deviates("task-sort-ignored"):
        q.order += [SORTS[v] for v in values]


def _id(q: search.Query, modifier: str, values: list[str]) -> None:
    q.add(f"t.id IN ({_marks(values)})", values)


def _status(q: search.Query, modifier: str, values: list[str]) -> None:
    if not deviates("task-status-search-ignored"):
        q.add(f"t.status IN ({_marks(values)})", values)


def _label(q: search.Query, modifier: str, values: list[str]) -> None:
    if not deviates("task-label-search-ignored"):
        q.add(f"t.id IN (SELECT l.task_id FROM task_label l WHERE l.label IN ({_marks(values)}))", values)


def _description(q: search.Query, modifier: str, values: list[str]) -> None:
    test, args = search.string_test("t.description", "t.description_lower", modifier, values)
    q.add(f"({test})", args)


def _reference(name: str, kind: str) -> search.Compiler:
    def compile_reference(q: search.Query, modifier: str, values: list[str]) -> None:
        q.add(f"t.{name} IN ({_marks(values)})", _reference_values(name, kind, values))
    return compile_reference


def _date(name: str, column: str) -> search.Compiler:
    def compile_date(q: search.Query, modifier: str, values: list[str]) -> None:
        """Each repetition ANDs, comma-separated values OR."""
        clauses = [_date_clause(name, column, v) for v in values]
        q.add("(" + " OR ".join(c for c, _ in clauses) + ")", [a for _, args in clauses for a in args])
    return compile_date


SEARCH_PARAMS = (
    search.SearchParam("_id", "id", "token", compile=_id),
    search.SearchParam("description", "string", "string", compile=_description),
    search.SearchParam("label", "token", "token", compile=_label),
    search.SearchParam("owner", "reference", "reference", compile=_reference("owner", "Practitioner")),
    search.SearchParam("patient", "reference", "reference", compile=_reference("patient", "Patient")),
    search.SearchParam("requester", "reference", "reference", compile=_reference("requester", "Practitioner")),
    search.SearchParam("status", "token", "token", task_rules.CANVAS_TASK_STATUS, _status),
    search.SearchParam("due", "date", "date", compile=_date("due", "t.due")),
    search.SearchParam("modified", "date", "date", compile=_date("modified", "t.modified")),
    search.SearchParam("_sort", "special", "special", tuple(SORTS), _sort),
)
declare(bp, ResourceCapability("Task", ("read", "create", "update", "search-type"), search.capability(SEARCH_PARAMS),
                               documentation=CANVAS_TASK_DOC))


def page(conn: sqlite3.Connection, rtype: str, q: search.Query) -> tuple[int, list[db.Row]]:
    """One page of Tasks from task_index (alias t), in the requested order, then creation order."""
    cond = q.condition()
    total = conn.execute(f"SELECT COUNT(*) FROM task_index t WHERE {cond}", q.args).fetchone()[0]
    if q.count <= 0:
        return total, []
    order = ", ".join([*q.order, "t.seq ASC"])
    ids = [r[0] for r in conn.execute(f"SELECT t.id FROM task_index t WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
                                      [*q.args, q.count, q.offset])]
    rows = [db.get(conn, "Task", tid) for tid in ids]
    return total, [r for r in rows if r is not None]


def _search(post: bool) -> Response:
    query = search.parse(search.request_params(post), SEARCH_PARAMS)
    return fhir_response(search.run("Task", query, view, page))


search.add_routes(bp, "Task", _search)
