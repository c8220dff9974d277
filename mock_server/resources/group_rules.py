"""Validation of a Group payload: FHIR structure (400) first, then Canvas rules (422)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..deviations import deviates
from ..variants import varies
from ..http import FhirError
from ..validation import REFERENCE_RE, Spec, Validator

FHIR_GROUP_TYPES = frozenset({"person", "animal", "practitioner", "device", "medication", "substance"})
TEAM, PATIENT_GROUP = "practitioner", "person"  # Group.type of a Canvas Team and of a Patient Group
CANVAS_GROUP_TYPES = frozenset({TEAM, PATIENT_GROUP})
MEMBER_KIND = {TEAM: "Practitioner", PATIENT_GROUP: "Patient"}
RESPONSIBILITIES = (
    "COLLECT_SPECIMENS_FROM_PATIENT",
    "COMMUNICATE_DIAGNOSTIC_RESULTS_TO_PATIENT",
    "COORDINATE_REFERRALS_FOR_PATIENT",
    "PROCESS_REFILL_REQUESTS",
    "PROCESS_CHANGE_REQUESTS",
    "SCHEDULE_LAB_VISITS_FOR_PATIENT",
    "POPULATION_HEALTH_CAMPAIGN_OUTREACH",
    "COLLECT_PATIENT_PAYMENTS",
    "COMPLETE_OPEN_LAB_ORDERS",
    "REVIEW_ERA_POSTING_EXCEPTIONS",
    "REVIEW_COVERAGES",
)
VALUE_KEYS = ("valueCodeableConcept", "valueBoolean", "valueQuantity", "valueRange", "valueReference")

GROUP_ELEMENTS: dict[str, Spec] = {
    "identifier": ["Identifier"],
    "active": "boolean",
    "type": "code",
    "actual": "boolean",
    "code": "CodeableConcept",
    "name": "string",
    "quantity": "unsignedInt",
    "managingEntity": "Reference",
    "characteristic": [
        {
            "code": "CodeableConcept",
            "valueCodeableConcept": "CodeableConcept",
            "valueBoolean": "boolean",
            "valueQuantity": "Quantity",
            "valueRange": "Range",
            "valueReference": "Reference",
            "exclude": "boolean",
            "period": "Period",
        }
    ],
    "member": [{"entity": "Reference", "period": "Period", "inactive": "boolean"}],
}


@dataclass
class GroupDraft:
    """What a valid payload asks to store; ``member_problem`` is a 422 decided inside the transaction."""

    type: str
    name: str | None
    actual: bool
    responsibilities: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    member_problem: str | None = None

    def characteristic(self) -> list[dict[str, Any]]:
        return [
            {"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": r}, "exclude": False}
            for r in self.responsibilities
        ]


def structure(body: dict[str, Any]) -> dict[str, Any]:
    """400 for anything that is not a structurally valid FHIR R4 Group."""
    if body.get("resourceType") != "Group":
        raise FhirError(400, f"resourceType must be 'Group', got {body.get('resourceType')!r}")
    validator = Validator(
        allow_unknown=deviates("unknown-elements-accepted"),
        allow_empty=deviates("empty-strings-accepted"),
        coerce_strings=deviates("wrong-json-types-accepted"),
    )
    group = validator.resource(body, GROUP_ELEMENTS, "Group")
    if deviates("readonly-rejected") and (
        "quantity" in group or any("display" in m.get("entity", {}) for m in group.get("member", []))
    ):
        raise FhirError(400, "Read-only elements (quantity, member.entity.display) must not be sent")
    for required in ("type", "actual"):
        if required not in group:
            raise FhirError(400, f"Group.{required} is required")
    for i, ch in enumerate(group.get("characteristic", [])):
        if "code" not in ch:
            raise FhirError(400, f"Group.characteristic[{i}].code is required")
        if not any(k in ch for k in VALUE_KEYS):
            raise FhirError(400, f"Group.characteristic[{i}].value[x] is required")
    for i, m in enumerate(group.get("member", [])):
        if "reference" not in m.get("entity", {}):
            raise FhirError(400, f"Group.member[{i}].entity.reference is required")
    if varies("fhir-invariants-enforced") and group.get("member") and group.get("actual") is False:
        raise FhirError(400, "Group invariant grp-1 violated: can only have members if group is actual")
    return group


def rules(group: dict[str, Any]) -> GroupDraft:
    """422 for valid FHIR that breaks a Canvas rule (member problems are deferred, see GroupDraft)."""
    gtype: str = group["type"]
    if not deviates("type-enum-not-enforced"):
        if gtype not in FHIR_GROUP_TYPES:
            raise FhirError(400, f"Group.type '{gtype}' is not a FHIR group-type code")
        if gtype not in CANVAS_GROUP_TYPES:
            raise FhirError(422, f"Group.type '{gtype}' is not supported: use person or practitioner")
    if "name" not in group and not deviates("name-not-required"):
        raise FhirError(422, "Group.name is required")
    draft = GroupDraft(type=gtype, name=group.get("name"), actual=group["actual"])
    draft.responsibilities = _responsibilities(gtype, group.get("characteristic", []))
    draft.members = [m["entity"]["reference"] for m in group.get("member", [])]
    draft.member_problem = _member_problem(gtype, draft.members)
    return draft


def _responsibilities(gtype: str, characteristics: list[dict[str, Any]]) -> list[str]:
    if characteristics and gtype != TEAM and not deviates("patient-group-characteristic-allowed"):
        raise FhirError(422, "Only teams (type practitioner) may hold responsibilities (characteristic)")
    names: list[str] = []
    for i, ch in enumerate(characteristics):
        if ch["code"].get("text") != "responsibility":
            raise FhirError(422, f"Group.characteristic[{i}].code.text must be 'responsibility'")
        text = ch.get("valueCodeableConcept", {}).get("text")
        if text not in RESPONSIBILITIES:
            raise FhirError(422, f"Group.characteristic[{i}].valueCodeableConcept.text {text!r} is not a known responsibility")
        if ch.get("exclude", False):
            raise FhirError(422, f"Group.characteristic[{i}].exclude must be false")
        if text in names:
            raise FhirError(422, f"Responsibility {text} is listed more than once")
        names.append(text)
    return names


def _member_problem(gtype: str, references: list[str]) -> str | None:
    for ref in references:
        m = REFERENCE_RE.match(ref)
        if not m:
            return f"Member reference '{ref}' is not of the form Type/id"
        kind = MEMBER_KIND.get(gtype)
        if kind and m.group(1) != kind and not deviates("member-kind-unchecked"):
            return f"Member '{ref}' is not a {kind}: a {gtype} group only holds {kind} members"
    return None
