"""Bulk Cohort Group (``bulk-cohort-group``, Bulk Data IG 3.0.0 group.html; SPEC §5).

The profile's rules, written once: what a valid cohort looks like, and every way of
breaking it the suite generates, each tied to its requirement. ``strategies/cohort.py``
turns a valid cohort into an invalid one with the breach it keeps for each rule; the checks expect
the server to refuse it (400, or 400/422 for profile rules).
"""

from __future__ import annotations

from typing import Any

from .group import PATIENT_GROUP_TYPE
from .model import INVALID_FHIR, PROFILE_RULE, REFUSED, Constraint, Violation

PROFILE_URL = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"
MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
MEMBERS_REFRESHED = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/members-refreshed"
FHIR_QUERY = "application/x-fhir-query"
VARIANT = "cohort"
REJECTED = INVALID_FHIR   # SPEC §5: unsupported filter parts are refused with 400
PROFILE_STATUSES = REFUSED


def member_filter(expression: str) -> dict[str, Any]:
    return {"url": MEMBER_FILTER, "valueExpression": {"language": FHIR_QUERY, "expression": expression}}


def cohort_payload(name: str, expressions: list[str], member_refs: list[str] | None = None) -> dict[str, Any]:
    """A valid bulk-cohort-group body: name, type person, actual = members given, the filters."""
    payload: dict[str, Any] = {
        "resourceType": "Group",
        "meta": {"profile": [PROFILE_URL]},
        "modifierExtension": [member_filter(e) for e in expressions],
        "name": name,
        "type": PATIENT_GROUP_TYPE,
        "actual": bool(member_refs),
    }
    if member_refs:
        payload["member"] = [{"entity": {"reference": r}} for r in member_refs]
    return payload


def expressions_of(payload: dict[str, Any]) -> list[str]:
    return [m["valueExpression"]["expression"] for m in payload.get("modifierExtension", [])
            if isinstance(m, dict) and m.get("url") == MEMBER_FILTER]


def _rule(name: str, requirement: str, description: str, status: int = REJECTED) -> Constraint:
    return Constraint(name, requirement, status, VARIANT, description)


RULES: tuple[Constraint, ...] = (
    _rule("missing-name", "BULK-COHORT-PROFILE", "Group.name left out (1..1 in the profile)", PROFILE_RULE),
    _rule("characteristic-present", "BULK-COHORT-PROFILE", "a Group.characteristic (0..0 in the profile)",
          PROFILE_RULE),
    _rule("no-member-filter", "BULK-COHORT-PROFILE", "no member-filter modifierExtension (1..*)",
          PROFILE_RULE),
    _rule("wrong-language", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a member-filter whose language is not application/x-fhir-query"),
    _rule("two-resource-types", "BULK-COHORT-REJECT-UNSUPPORTED",
          "an expression naming more than one resource type"),
    _rule("no-query", "BULK-COHORT-REJECT-UNSUPPORTED", "an expression that is not Type?parameters"),
    _rule("result-parameter", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a search result parameter (_sort, _count, _include, _elements ...)"),
    _rule("unsupported-parameter", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a search parameter outside the supported set"),
    _rule("unsupported-resource-type", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a filter on a resource type outside the supported set"),
    _rule("unsupported-modifier", "BULK-COHORT-REJECT-UNSUPPORTED", "a search modifier (:not, :text, :missing ...)"),
    _rule("unsupported-prefix", "BULK-COHORT-REJECT-UNSUPPORTED", "the date prefix ap"),
    _rule("invalid-date", "BULK-COHORT-REJECT-UNSUPPORTED", "a date value that is not a FHIR date"),
)


def violations() -> list[Violation]:
    return [Violation(r.name, r.requirement, r.status, r.description, r.variant) for r in RULES]


def rule(name: str) -> Constraint:
    return next(r for r in RULES if r.name == name)
