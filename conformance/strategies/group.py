"""Valid and labelled-invalid Group payloads, generated from ``rules.group``.

Strategies draw member ids and free responsibilities from what the suite found
on the target (``TargetData``), so valid payloads are valid *there*, and every
invalid payload breaks exactly one rule of the description and says which.
"""

from __future__ import annotations

from typing import Any, Protocol

from hypothesis import strategies as st

from ..rules.group import (GROUP, MEMBER_KIND, PATIENT_GROUP, PATIENT_GROUP_TYPE, RESPONSIBILITIES, TEAM,
                              TEAM_TYPE, TYPE_OF, responsibility)
from ..rules.model import Field, Kind, Violation
from .common import InvalidPayload, breach, lists, run_name, sampled_from


class TargetData(Protocol):
    """What the strategies need to know about the target."""

    run_prefix: str
    practitioner_ids: list[str]
    patient_ids: list[str]
    free_responsibilities: list[str]

    def missing_id(self) -> str: ...


def member_ids(data: TargetData, variant: str) -> list[str]:
    return data.practitioner_ids if variant == TEAM else data.patient_ids


def needs(violation: Violation) -> set[str]:
    """The target data a violation's payload needs ('practitioners', 'patients', 'responsibilities')."""
    wanted: set[str] = set()
    container = violation.path.split("[]")[0] if violation.path and "[]" in violation.path else violation.path
    if container == "characteristic" or violation.name == "characteristic-on-patient-group":
        wanted.add("responsibilities")
    if container == "member" or violation.name == "member-wrong-kind":
        wanted.add("practitioners" if violation.variant == TEAM else "patients")
    for c in GROUP.constraints:
        if c.name == violation.name and c.variant == violation.variant:
            wanted |= set(c.needs)
    return wanted


@st.composite
def valid_group(draw: st.DrawFn, data: TargetData, variant: str, *,
                min_members: int = 0, max_members: int = 4,
                min_responsibilities: int = 0, max_responsibilities: int = 2) -> dict[str, Any]:
    """A Team or Patient Group that the reference behaviour accepts."""
    ids = sorted(member_ids(data, variant))
    payload: dict[str, Any] = {
        "resourceType": "Group",
        "type": TYPE_OF[variant],
        "actual": True,
        "name": draw(run_name(data.run_prefix)),
    }
    if ids and max_members:
        chosen = draw(lists(sampled_from(ids), min_size=min(min_members, len(ids)),
                            max_size=min(max_members, len(ids)), unique=True))
        if chosen:
            kind = MEMBER_KIND[variant]
            payload["member"] = [{"entity": {"reference": f"{kind}/{i}"}} for i in chosen]
    if "member" not in payload:
        # FHIR grp-1: only an actual group has members; Canvas reads every group back as actual: true
        payload["actual"] = draw(st.booleans())
    pool = sorted(data.free_responsibilities)
    if variant == TEAM and pool and max_responsibilities:
        texts = draw(lists(sampled_from(pool), min_size=min(min_responsibilities, len(pool)),
                           max_size=min(max_responsibilities, len(pool)), unique=True))
        if texts:
            payload["characteristic"] = [responsibility(t) for t in texts]
    return payload


# ---- breaches of rules.group.GROUP's constraints, by name: (payload, target data, draw) -> payload

def _characteristic_on_patient_group(payload: dict, data: Any, draw: Any) -> dict:
    pool = data.free_responsibilities or RESPONSIBILITIES
    payload["characteristic"] = [responsibility(draw.sampled_from(sorted(pool)))]
    return payload


def _member_of_wrong_kind(payload: dict, data: Any, draw: Any) -> dict:
    wrong = {TEAM_TYPE: ("Patient", data.patient_ids), PATIENT_GROUP_TYPE: ("Practitioner", data.practitioner_ids)}
    kind, ids = wrong[payload["type"]]
    payload["member"] = [{"entity": {"reference": f"{kind}/{draw.sampled_from(sorted(ids))}"}}]
    return payload


def _member_missing(payload: dict, data: Any, draw: Any) -> dict:
    kind = "Practitioner" if payload["type"] == TEAM_TYPE else "Patient"
    payload["member"] = [{"entity": {"reference": f"{kind}/{data.missing_id()}"}}]
    return payload


BREACHES = {"characteristic-on-patient-group": _characteristic_on_patient_group,
            "member-wrong-kind": _member_of_wrong_kind, "member-missing": _member_missing}


def _outside(field: Field) -> st.SearchStrategy[Any]:
    if field.kind is Kind.BOOLEAN:
        return sampled_from([v for v in (True, False) if v not in field.allowed])
    near_misses = [v.lower() for v in field.allowed if isinstance(v, str)] + [
        v.title() for v in field.allowed if isinstance(v, str)]
    if field.path.endswith("valueCodeableConcept.text"):
        near_misses += ["MAKE_COFFEE", "COLLECT_SPECIMENS", "REVIEW_COVERAGE"]
    if field.fhir_codes:
        near_misses += ["robot", "team", "people", "Practitioners"]
    return sampled_from(sorted({v for v in near_misses if v not in field.allowed
                                and v not in (field.fhir_codes or ())}))


def violation_base(data: TargetData, violation: Violation) -> st.SearchStrategy[dict[str, Any]]:
    """The smallest valid payload that holds the element a violation breaks, and nothing else optional."""
    path = violation.path or ""
    in_member = path.startswith("member")
    in_characteristic = path.startswith("characteristic")
    return valid_group(data, violation.variant,
                       min_members=1 if in_member else 0, max_members=1 if in_member else 0,
                       min_responsibilities=1 if in_characteristic else 0,
                       max_responsibilities=1 if in_characteristic else 0)


@st.composite
def invalid_group(draw: st.DrawFn, data: TargetData, violation: Violation,
                  base: dict[str, Any] | None = None) -> InvalidPayload:
    """A payload breaking exactly ``violation``; ``base`` (for updates) is the stored group."""
    if base is None:
        base = draw(violation_base(data, violation))
    return InvalidPayload(breach(draw, GROUP, violation, base, data, _outside, BREACHES), violation)


def violations(update: bool = False) -> list[Violation]:
    return list(GROUP.violations(update=update))


__all__ = ["valid_group", "invalid_group", "violation_base", "violations", "needs", "TEAM", "PATIENT_GROUP",
           "RESPONSIBILITIES"]
