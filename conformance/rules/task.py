"""Canvas Task: one payload variant, the rules of seed 003 and SPEC.md §3.

Everything the suite knows about Task payload rules is written here once; the
strategies and checks derive valid payloads, labelled invalid ones, the
field-omission expectations and the search parameters from it.
"""

from __future__ import annotations

from typing import Any

from .model import (CLEARED, FHIR_DATE_PREFIXES, KEPT, NOT_KEPT, Constraint, Field, Kind, Omission, PROFILE_RULE,
                    Required, ResourceProfile, SearchParam)

TASK_VARIANT = "task"
GROUP_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-group"
PERMALINK_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-permalink"
STATUSES = ("requested", "completed", "cancelled")
# R4 required bindings of Task.status and Task.intent.
FHIR_TASK_STATUS = ("draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress",
                    "on-hold", "failed", "completed", "entered-in-error")
FHIR_TASK_INTENT = ("unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                    "instance-order", "option")
SORTS = ("_id", "-_id", "due-date", "-due-date")
DATE_PREFIXES = FHIR_DATE_PREFIXES[:6]       # the prefixes Canvas documents for due/modified

# Update field-omission rules (seed 003 update description; SPEC §3), by element.
OMISSION = {o.element: o for o in (
    Omission("extension", KEPT, "CANVAS-TASK-OMIT-GROUP-KEPT"),
    Omission("authoredOn", KEPT, "CANVAS-TASK-OMIT-AUTHORED-KEPT"),
    Omission("owner", CLEARED, "CANVAS-TASK-OMIT-OWNER-CLEARED"),
    Omission("restriction", CLEARED, "CANVAS-TASK-OMIT-RESTRICTION-CLEARED"),
    Omission("input", CLEARED, "CANVAS-TASK-OMIT-INPUT-CLEARED"),
    Omission("description", NOT_KEPT, "CANVAS-TASK-OMIT-DESCRIPTION"),
)}


def group_extension(team_id: str) -> dict[str, Any]:
    return {"url": GROUP_EXT, "valueReference": {"reference": f"Group/{team_id}"}}


def label(name: str) -> dict[str, Any]:
    return {"type": {"text": "label"}, "valueString": name}


T = TASK_VARIANT
TASK = ResourceProfile(
    resource_type="Task",
    variants=(T,),
    fields=(
        Field("status", Kind.CODE, "CANVAS-TASK-STATUS", Required.FHIR, allowed=STATUSES, fhir_codes=FHIR_TASK_STATUS),
        Field("intent", Kind.CODE, "CANVAS-TASK-INTENT", Required.FHIR, allowed=("unknown",),
              fhir_codes=FHIR_TASK_INTENT),
        Field("description", Kind.STRING, "CANVAS-TASK-DESCRIPTION", Required.PROFILE),
        Field("requester", Kind.OBJECT, "CANVAS-TASK-REQUESTER", Required.PROFILE),
        Field("requester.reference", Kind.STRING, "CANVAS-TASK-REQUESTER", Required.PROFILE),
        Field("requester.type", Kind.STRING, read_only=True),
        Field("for", Kind.OBJECT),
        Field("for.reference", Kind.STRING, "CANVAS-TASK-PATIENT", Required.PROFILE),
        Field("owner", Kind.OBJECT),
        Field("owner.reference", Kind.STRING, "CANVAS-TASK-OWNER", Required.PROFILE),
        Field("authoredOn", Kind.STRING),
        Field("restriction", Kind.OBJECT),
        Field("restriction.period", Kind.OBJECT),
        Field("restriction.period.end", Kind.STRING),
        Field("extension", Kind.ARRAY),
        Field("extension[].url", Kind.STRING, "CANVAS-TASK-GROUP", Required.FHIR),
        Field("extension[].valueReference", Kind.OBJECT, "CANVAS-TASK-GROUP", Required.PROFILE),
        Field("extension[].valueReference.reference", Kind.STRING, "CANVAS-TASK-GROUP", Required.PROFILE),
        Field("extension[].valueReference.display", Kind.STRING, read_only=True),
        Field("note", Kind.ARRAY),
        Field("note[].text", Kind.STRING, "CANVAS-TASK-NOTE", Required.FHIR),
        Field("note[].authorReference", Kind.OBJECT, "CANVAS-TASK-NOTE", Required.PROFILE),
        Field("note[].time", Kind.STRING),
        Field("input", Kind.ARRAY),
        Field("input[].type", Kind.OBJECT, "CANVAS-TASK-LABEL", Required.FHIR),
        Field("input[].type.text", Kind.STRING, "CANVAS-TASK-LABEL", allowed=("label",)),
        Field("input[].valueString", Kind.STRING, "CANVAS-TASK-LABEL", Required.FHIR),
        Field("lastModified", Kind.STRING, read_only=True),
    ),
    constraints=(
        Constraint("requester-wrong-kind", "CANVAS-TASK-REQUESTER", PROFILE_RULE, T, "a Patient as requester",
                   needs=("patients",)),
        Constraint("requester-missing", "CANVAS-TASK-REQUESTER", PROFILE_RULE, T,
                   "a requester Practitioner that does not exist"),
        Constraint("owner-wrong-kind", "CANVAS-TASK-OWNER", PROFILE_RULE, T, "a Patient as owner", needs=("patients",)),
        Constraint("owner-missing", "CANVAS-TASK-OWNER", PROFILE_RULE, T, "an owner Practitioner that does not exist"),
        Constraint("patient-wrong-kind", "CANVAS-TASK-PATIENT", PROFILE_RULE, T, "a Practitioner as for"),
        Constraint("patient-missing", "CANVAS-TASK-PATIENT", PROFILE_RULE, T, "a for Patient that does not exist"),
        Constraint("group-missing", "CANVAS-TASK-GROUP", PROFILE_RULE, T, "a task-group Group that does not exist"),
        Constraint("group-wrong-kind", "CANVAS-TASK-GROUP", PROFILE_RULE, T, "a task-group reference to a Patient",
                   needs=("patients",)),
        Constraint("note-author-wrong-kind", "CANVAS-TASK-NOTE", PROFILE_RULE, T, "a Patient as note author",
                   needs=("patients",)),
        Constraint("note-author-missing", "CANVAS-TASK-NOTE", PROFILE_RULE, T,
                   "a note author Practitioner that does not exist"),
    ),
    search_params=(
        SearchParam("_id", "token", "CANVAS-TASK-SEARCH-ID"),
        SearchParam("description", "string", "CANVAS-TASK-SEARCH-DESCRIPTION"),
        SearchParam("label", "token", "CANVAS-TASK-SEARCH-LABEL"),
        SearchParam("owner", "reference", "CANVAS-TASK-SEARCH-OWNER"),
        SearchParam("patient", "reference", "CANVAS-TASK-SEARCH-PATIENT"),
        SearchParam("requester", "reference", "CANVAS-TASK-SEARCH-REQUESTER"),
        SearchParam("status", "token", "CANVAS-TASK-SEARCH-STATUS"),
        SearchParam("due", "date", "CANVAS-TASK-SEARCH-DUE"),
        SearchParam("modified", "date", "CANVAS-TASK-SEARCH-MODIFIED"),
    ),
)
