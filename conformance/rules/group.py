"""Canvas Group: Teams (``practitioner``) and Patient Groups (``person``).

Source: seed 000 (the attribute table in its front matter) and SPEC.md §2.
Everything the suite knows about Group payload rules is written here once.
"""

from __future__ import annotations

from typing import Any

from .model import Constraint, Field, Kind, PROFILE_RULE, Required, ResourceProfile, SearchParam

TEAM, PATIENT_GROUP = "team", "patient-group"
TYPE_OF = {TEAM: "practitioner", PATIENT_GROUP: "person"}
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
# The R4 required binding of Group.type (http://hl7.org/fhir/group-type).
FHIR_GROUP_TYPES = ("person", "animal", "practitioner", "device", "medication", "substance")


def responsibility(text: str, exclude: bool = False) -> dict[str, Any]:
    """One characteristic as Canvas writes it."""
    return {"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": text}, "exclude": exclude}


def _characteristic_on_patient_group(payload: dict, data: Any, draw: Any) -> dict:
    pool = data.free_responsibilities or RESPONSIBILITIES
    payload["characteristic"] = [responsibility(draw.sampled_from(sorted(pool)))]
    return payload


def _member_of_wrong_kind(payload: dict, data: Any, draw: Any) -> dict:
    wrong = {"practitioner": ("Patient", data.patient_ids), "person": ("Practitioner", data.practitioner_ids)}
    kind, ids = wrong[payload["type"]]
    payload["member"] = [{"entity": {"reference": f"{kind}/{draw.sampled_from(sorted(ids))}"}}]
    return payload


def _member_missing(payload: dict, data: Any, draw: Any) -> dict:
    kind = "Practitioner" if payload["type"] == "practitioner" else "Patient"
    payload["member"] = [{"entity": {"reference": f"{kind}/{data.missing_id()}"}}]
    return payload


GROUP = ResourceProfile(
    resource_type="Group",
    variants=(TEAM, PATIENT_GROUP),
    fields=(
        Field("type", Kind.CODE, "CANVAS-GROUP-TYPE", Required.FHIR,
              allowed=("person", "practitioner"), fhir_codes=FHIR_GROUP_TYPES),
        Field("actual", Kind.BOOLEAN, "CANVAS-GROUP-ACTUAL", Required.FHIR),
        Field("name", Kind.STRING, "CANVAS-GROUP-NAME", Required.PROFILE),
        Field("quantity", Kind.INTEGER, "CANVAS-GROUP-QUANTITY", read_only=True),
        Field("characteristic", Kind.ARRAY, variants=(TEAM,)),
        Field("characteristic[].code", Kind.OBJECT, "CANVAS-GROUP-RESP-CODE", Required.FHIR, variants=(TEAM,)),
        Field("characteristic[].code.text", Kind.STRING, "CANVAS-GROUP-RESP-CODE",
              allowed=("responsibility",), variants=(TEAM,)),
        Field("characteristic[].valueCodeableConcept", Kind.OBJECT, "CANVAS-GROUP-RESP-VALUE", Required.FHIR,
              variants=(TEAM,)),
        Field("characteristic[].valueCodeableConcept.text", Kind.STRING, "CANVAS-GROUP-RESP-VALUE",
              allowed=RESPONSIBILITIES, variants=(TEAM,)),
        Field("characteristic[].exclude", Kind.BOOLEAN, "CANVAS-GROUP-RESP-EXCLUDE", allowed=(False,),
              variants=(TEAM,)),
        Field("member", Kind.ARRAY),
        Field("member[].entity", Kind.OBJECT, "CANVAS-GROUP-MEMBER-KIND", Required.FHIR),
        Field("member[].entity.reference", Kind.STRING, "CANVAS-GROUP-MEMBER-KIND", Required.FHIR),
        Field("member[].entity.type", Kind.STRING, read_only=True),
        Field("member[].entity.display", Kind.STRING, read_only=True),
    ),
    constraints=(
        Constraint("characteristic-on-patient-group", "CANVAS-GROUP-RESP-TEAM-ONLY", PROFILE_RULE, PATIENT_GROUP,
                   "a responsibility on a Patient Group", _characteristic_on_patient_group),
        Constraint("member-wrong-kind", "CANVAS-GROUP-MEMBER-KIND", PROFILE_RULE, TEAM,
                   "a Patient as a Team member", _member_of_wrong_kind, needs=("patients",)),
        Constraint("member-wrong-kind", "CANVAS-GROUP-MEMBER-KIND", PROFILE_RULE, PATIENT_GROUP,
                   "a Practitioner as a Patient Group member", _member_of_wrong_kind, needs=("practitioners",)),
        Constraint("member-missing", "CANVAS-GROUP-MEMBER-EXISTS", PROFILE_RULE, TEAM,
                   "a member reference to a Practitioner that does not exist", _member_missing),
        Constraint("member-missing", "CANVAS-GROUP-MEMBER-EXISTS", PROFILE_RULE, PATIENT_GROUP,
                   "a member reference to a Patient that does not exist", _member_missing),
    ),
    search_params=(
        SearchParam("_id", "token", "CANVAS-GROUP-SEARCH-ID"),
        SearchParam("type", "token", "CANVAS-GROUP-SEARCH-TYPE"),
        SearchParam("name", "string", "CANVAS-GROUP-SEARCH-NAME"),
        SearchParam("member", "reference", "CANVAS-GROUP-SEARCH-MEMBER"),
    ),
)
