"""Validation of a Task payload (SPEC §3): FHIR structure (400) first, then Canvas rules (422).

Reference existence (requester, owner, for, the team) is checked inside the write
transaction by ``task.save``; everything here needs no database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import dates
from ..deviations import deviates
from ..variants import varies
from ..http import FhirError
from ..validation import REFERENCE_RE, Spec, Validator

GROUP_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-group"
PERMALINK_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-permalink"
# R4 required bindings (task-status, task-intent) and the subsets Canvas supports.
FHIR_TASK_STATUS = frozenset({"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                              "in-progress", "on-hold", "failed", "completed", "entered-in-error"})
CANVAS_TASK_STATUS = ("requested", "completed", "cancelled")  # open, closed, closed
FHIR_TASK_INTENT = frozenset({"unknown", "proposal", "plan", "order", "original-order", "reflex-order",
                              "filler-order", "instance-order", "option"})
CANVAS_TASK_INTENT = frozenset({"unknown"})

TASK_ELEMENTS: dict[str, Spec] = {
    "identifier": ["Identifier"],
    "status": "code",
    "intent": "code",
    "priority": "code",
    "code": "CodeableConcept",
    "description": "string",
    "for": "Reference",
    "authoredOn": "dateTime",
    "lastModified": "dateTime",
    "requester": "Reference",
    "owner": "Reference",
    "restriction": {"repetitions": "unsignedInt", "period": "Period", "recipient": ["Reference"]},
    "note": [{"authorReference": "Reference", "authorString": "string", "time": "dateTime", "text": "markdown"}],
    "input": [{"type": "CodeableConcept", "valueString": "string"}],
}


def utcnow_text() -> str:
    return datetime.now(timezone.utc).isoformat()


def normalize_instant(value: str) -> str:
    """A dateTime with a time becomes UTC ISO text (no timezone = UTC); a partial date stays as sent."""
    parsed = dates.parse(value)
    return parsed.start.isoformat() if parsed.has_time else value


def index_instant(value: str | None) -> str | None:
    """Sortable UTC text for the search index (a partial date indexes as the start of its range)."""
    if not value:
        return None
    return dates.sortable(dates.parse(value).start)


@dataclass
class TaskDraft:
    """What a valid payload asks to store; ``None`` for the group/authoredOn means 'not sent'."""

    status: str
    intent: str
    description: str | None
    requester: str
    owner: str | None = None
    patient: str | None = None
    group: str | None = None
    authored_on: str | None = None
    due: str | None = None
    labels: list[str] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)   # {"text", "time", "author"}
    references: list[tuple[str, str, str]] = field(default_factory=list)  # (element, kind wanted, reference)


def _before(later: Any, earlier: Any) -> bool:
    """True when both are dateTimes and ``later`` is before ``earlier`` (FHIR Task inv-1)."""
    a = dates.span(later) if isinstance(later, str) else None
    b = dates.span(earlier) if isinstance(earlier, str) else None
    return a is not None and b is not None and a[0] < b[0]


def structure(body: dict[str, Any]) -> dict[str, Any]:
    """400 for anything that is not a structurally valid FHIR R4 Task."""
    if body.get("resourceType") != "Task":
        raise FhirError(400, f"resourceType must be 'Task', got {body.get('resourceType')!r}")
    task = Validator().resource(body, TASK_ELEMENTS, "Task")
    for required in ("status", "intent"):
        if required not in task:
            raise FhirError(400, f"Task.{required} is required")
    if task["status"] not in FHIR_TASK_STATUS:
        raise FhirError(400, f"Task.status '{task['status']}' is not a FHIR task-status code")
    if task["intent"] not in FHIR_TASK_INTENT and not deviates("task-intent-not-enforced"):
        raise FhirError(400, f"Task.intent '{task['intent']}' is not a FHIR task-intent code")
    if varies("fhir-invariants-enforced") and _before(task.get("lastModified"), task.get("authoredOn")):
        raise FhirError(400, "Task invariant inv-1 violated: lastModified must be at or after authoredOn")
    for i, ext in enumerate(task.get("extension", [])):
        if "url" not in ext:
            raise FhirError(400, f"Task.extension[{i}].url is required")
    for i, note in enumerate(task.get("note", [])):
        if "text" not in note:
            raise FhirError(400, f"Task.note[{i}].text is required")
    for i, item in enumerate(task.get("input", [])):
        if "type" not in item:
            raise FhirError(400, f"Task.input[{i}].type is required")
        if "valueString" not in item:
            raise FhirError(400, f"Task.input[{i}].value[x] is required")
    return task


def _reference(task: dict[str, Any], path: str, kind: str) -> str:
    node = task
    for part in path.split("."):
        node = node[part]
    ref = node.get("reference")
    if ref is None:
        raise FhirError(422, f"Task.{path}.reference is required")
    m = REFERENCE_RE.match(ref)
    if not m:
        raise FhirError(422, f"Task.{path}.reference '{ref}' is not of the form {kind}/<id>")
    return ref


def rules(task: dict[str, Any]) -> TaskDraft:
    """422 for valid FHIR that breaks a Canvas rule (existence is checked by ``task.save``)."""
    if task["status"] not in CANVAS_TASK_STATUS:
        raise FhirError(422, f"Task.status '{task['status']}' is not supported: use requested, completed or cancelled")
    if task["intent"] not in CANVAS_TASK_INTENT and not deviates("task-intent-not-enforced"):
        raise FhirError(422, f"Task.intent must be 'unknown', got '{task['intent']}'")
    if "description" not in task and not deviates("task-description-kept-when-omitted"):
        raise FhirError(422, "Task.description is required")
    if "requester" not in task:
        raise FhirError(422, "Task.requester is required")
    draft = TaskDraft(status=task["status"], intent=task["intent"], description=task.get("description"),
                      requester=_reference(task, "requester", "Practitioner"))
    draft.references.append(("requester", "Practitioner", draft.requester))
    if "owner" in task:
        draft.owner = _reference(task, "owner", "Practitioner")
        if not deviates("task-owner-kind-unchecked"):
            draft.references.append(("owner", "Practitioner", draft.owner))
        else:
            draft.references.append(("owner", "*", draft.owner))
    if "for" in task:
        draft.patient = _reference(task, "for", "Patient")
        draft.references.append(("for", "Patient", draft.patient))
    if "authoredOn" in task:
        draft.authored_on = normalize_instant(task["authoredOn"])
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    draft.due = normalize_instant(end) if end else None
    for i, ext in enumerate(task.get("extension", [])):
        if ext["url"] == GROUP_EXT:
            ref = (ext.get("valueReference") or {}).get("reference")
            if ref is None:
                raise FhirError(422, f"Task.extension[{i}] (task-group) needs valueReference.reference = Group/<id>")
            if not REFERENCE_RE.match(ref) or not ref.startswith("Group/"):
                raise FhirError(422, f"Task.extension[{i}] (task-group) reference '{ref}' is not Group/<id>")
            draft.group = ref
            draft.references.append(("extension.task-group", "Group", ref))
        # the permalink (read-only) and extensions unknown to Canvas are ignored
    for i, item in enumerate(task.get("input", [])):
        if (item["type"].get("text")) != "label":
            raise FhirError(422, f"Task.input[{i}].type.text must be 'label'")
        if item["valueString"] not in draft.labels:
            draft.labels.append(item["valueString"])
    now = utcnow_text()
    for i, note in enumerate(task.get("note", [])):
        if "authorReference" not in note:
            raise FhirError(422, f"Task.note[{i}].authorReference is required")
        author = _note_author(note, i)
        draft.references.append((f"note[{i}].authorReference", "Practitioner", author))
        draft.notes.append({"text": note["text"], "time": normalize_instant(note["time"]) if "time" in note else now,
                            "author": author})
    return draft


def _note_author(note: dict[str, Any], i: int) -> str:
    ref = note["authorReference"].get("reference")
    if ref is None or not REFERENCE_RE.match(ref):
        raise FhirError(422, f"Task.note[{i}].authorReference.reference must be Practitioner/<id>")
    return ref
