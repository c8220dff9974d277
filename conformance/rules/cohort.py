"""Bulk Cohort Group (``bulk-cohort-group``, Bulk Data IG 3.0.0 group.html; SPEC §5).

The profile's rules, written once: what a valid cohort looks like, and every way of
breaking it the suite generates, each tied to its requirement. ``strategies/cohort.py``
turns a valid cohort into an invalid one with a rule's ``breach``; the checks expect
the server to refuse it (400, or 400/422 for profile rules).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .group import PATIENT_GROUP_TYPE
from .model import REFUSED, Constraint, Violation

PROFILE_URL = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"
MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
MEMBERS_REFRESHED = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/members-refreshed"
FHIR_QUERY = "application/x-fhir-query"
VARIANT = "cohort"
REJECTED = 400          # SPEC §5: unsupported filter parts are refused with 400
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


# ---- breaches: (payload, facts, draw) -> payload; payload is a deep copy ------------------

def _first_filter(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["modifierExtension"][0]["valueExpression"]


def _missing_name(payload: dict, facts: Any, draw: Any) -> dict:
    payload.pop("name", None)
    return payload


def _characteristic(payload: dict, facts: Any, draw: Any) -> dict:
    payload["characteristic"] = [draw.sampled_from([
        {"code": {"text": "age"}, "valueQuantity": {"value": 65, "unit": "a"}, "exclude": False},
        {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "valueBoolean": True,
         "exclude": False}])]
    return payload


def _no_member_filter(payload: dict, facts: Any, draw: Any) -> dict:
    payload.pop("modifierExtension", None)
    return payload


def _wrong_language(payload: dict, facts: Any, draw: Any) -> dict:
    _first_filter(payload)["language"] = draw.sampled_from(["text/cql", "text/fhirpath", "application/x-fhir-query2",
                                                            "text/plain"])
    return payload


def _two_resource_types(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype, _, query = expression.partition("?")
    other = "Encounter" if rtype != "Encounter" else "Condition"
    _first_filter(payload)["expression"] = draw.sampled_from([
        f"{rtype},{other}?{query}", f"{expression}&{other}?_id=x", f"{rtype}+{other}?{query}"])
    return payload


def _no_query(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype, _, query = expression.partition("?")
    _first_filter(payload)["expression"] = draw.sampled_from([rtype, query, f"{rtype}?"])
    return payload


RESULT_PARAMETERS = ("_sort=_id", "_count=10", "_include=Condition:subject", "_elements=id", "_summary=count",
                     "_revinclude=Provenance:target", "_total=accurate")


def _result_parameter(payload: dict, facts: Any, draw: Any) -> dict:
    _first_filter(payload)["expression"] += "&" + draw.sampled_from(list(RESULT_PARAMETERS))
    return payload


UNSUPPORTED_PARAMETERS = {
    "Patient": ("name=Smith", "address-city=Madison", "active=true", "death-date=ge2020"),
    "Condition": ("verification-status=confirmed", "abatement-date=ge2020", "severity=24484000", "subject=Patient/x"),
    "Encounter": ("status=finished", "participant=Practitioner/x", "reason-code=44054006", "length=gt1"),
    "Observation": ("category=vital-signs", "status=final", "combo-code=8480-6", "value-string=high"),
}


UNDECLARED_FALLBACK = "fhirck-undeclared-parameter=1"   # no server declares it


def undeclared(candidates: tuple[str, ...], declared: frozenset[str]) -> list[str]:
    """The ``name=value`` candidates whose parameter the target does not declare (a fallback if none)."""
    left = [c for c in candidates if c.split("=", 1)[0].split(":", 1)[0] not in declared]
    return left or [UNDECLARED_FALLBACK]


def _unsupported_parameter(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    declared = getattr(facts, "declared", {}).get(rtype, frozenset())
    _first_filter(payload)["expression"] = expression + "&" + draw.sampled_from(
        undeclared(UNSUPPORTED_PARAMETERS[rtype], declared))
    return payload


def _unsupported_resource_type(payload: dict, facts: Any, draw: Any) -> dict:
    candidates = ["MedicationRequest?code=" + quote("http://www.nlm.nih.gov/research/umls/rxnorm|860975", safe="|:/"),
                  "Procedure?date=ge2020", "Coverage?status=active", "Immunization?vaccine-code=207"]
    declared = getattr(facts, "declared", {})
    left = [c for c in candidates if c.partition("?")[0] not in declared]   # a declared type may be filterable
    _first_filter(payload)["expression"] = draw.sampled_from(left or ["FhirckUndeclaredType?code=1"])
    return payload


MODIFIED = {
    "Patient": ("gender:not=female", "gender:missing=true", "_id:above=x"),
    "Condition": ("code:text=diabetes", "code:not=44054006", "clinical-status:missing=false", "onset-date:missing=true"),
    "Encounter": ("class:not=AMB", "type:text=check", "date:missing=false"),
    "Observation": ("code:text=glucose", "code:below=8480", "value-quantity:missing=true"),
}


def _unsupported_modifier(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    _first_filter(payload)["expression"] = expression + "&" + draw.sampled_from(list(MODIFIED[rtype]))
    return payload


DATE_PARAMETERS = {"Patient": "birthdate", "Condition": "onset-date", "Encounter": "date", "Observation": "date"}


def _unsupported_prefix(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    year = draw.sampled_from(["2019", "2021", "2023-05", "1970-01-01"])
    _first_filter(payload)["expression"] = expression + f"&{DATE_PARAMETERS[rtype]}=ap{year}"
    return payload


def _invalid_date(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    bad = draw.sampled_from(["ge2020-13", "yesterday", "le2021-02-30x", "gt20200101", "eq21"])
    _first_filter(payload)["expression"] = expression + f"&{DATE_PARAMETERS[rtype]}={bad}"
    return payload


def _rule(name: str, requirement: str, description: str, breach: Any, status: int = REJECTED) -> Constraint:
    return Constraint(name, requirement, status, VARIANT, description, breach)


RULES: tuple[Constraint, ...] = (
    _rule("missing-name", "BULK-COHORT-PROFILE", "Group.name left out (1..1 in the profile)", _missing_name, 422),
    _rule("characteristic-present", "BULK-COHORT-PROFILE", "a Group.characteristic (0..0 in the profile)",
          _characteristic, 422),
    _rule("no-member-filter", "BULK-COHORT-PROFILE", "no member-filter modifierExtension (1..*)",
          _no_member_filter, 422),
    _rule("wrong-language", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a member-filter whose language is not application/x-fhir-query", _wrong_language),
    _rule("two-resource-types", "BULK-COHORT-REJECT-UNSUPPORTED",
          "an expression naming more than one resource type", _two_resource_types),
    _rule("no-query", "BULK-COHORT-REJECT-UNSUPPORTED", "an expression that is not Type?parameters", _no_query),
    _rule("result-parameter", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a search result parameter (_sort, _count, _include, _elements ...)", _result_parameter),
    _rule("unsupported-parameter", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a search parameter outside the supported set", _unsupported_parameter),
    _rule("unsupported-resource-type", "BULK-COHORT-REJECT-UNSUPPORTED",
          "a filter on a resource type outside the supported set", _unsupported_resource_type),
    _rule("unsupported-modifier", "BULK-COHORT-REJECT-UNSUPPORTED", "a search modifier (:not, :text, :missing ...)",
          _unsupported_modifier),
    _rule("unsupported-prefix", "BULK-COHORT-REJECT-UNSUPPORTED", "the date prefix ap", _unsupported_prefix),
    _rule("invalid-date", "BULK-COHORT-REJECT-UNSUPPORTED", "a date value that is not a FHIR date", _invalid_date),
)


def violations() -> list[Violation]:
    return [Violation(r.name, r.requirement, r.status, r.description, r.variant) for r in RULES]


def rule(name: str) -> Constraint:
    return next(r for r in RULES if r.name == name)
