"""Canvas Group: Teams (``practitioner``) and Patient Groups (``person``).

Source: seed 000 (the attribute table in its front matter) and SPEC.md §2.
Everything the suite knows about Group payload rules is written here once.
"""

from __future__ import annotations

from typing import Any, Iterable

from .model import Constraint, Field, Kind, PROFILE_RULE, Required, ResourceProfile, SearchParam, Uniqueness

TEAM, PATIENT_GROUP = "team", "patient-group"
# Group.type is practitioner (a Team) or person (a Patient Group): written here only.
TYPE_OF = {TEAM: "practitioner", PATIENT_GROUP: "person"}
TEAM_TYPE, PATIENT_GROUP_TYPE = TYPE_OF[TEAM], TYPE_OF[PATIENT_GROUP]
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
FHIR_GROUP_TYPES = (PATIENT_GROUP_TYPE, "animal", TEAM_TYPE, "device", "medication", "substance")

# A responsibility belongs to at most one team (SPEC §2): a claim on a held one is a 422 business-rule.
RESPONSIBILITY_UNIQUE = Uniqueness("characteristic[].valueCodeableConcept.text", f"Group?type={TEAM_TYPE}",
                                   PROFILE_RULE, "business-rule", "CANVAS-GROUP-RESP-UNIQUE")


def responsibility(text: str, exclude: bool = False) -> dict[str, Any]:
    """One characteristic as Canvas writes it."""
    return {"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": text}, "exclude": exclude}


def responsibilities_of(group: dict[str, Any]) -> set[str]:
    """The responsibility texts a group holds (the values ``RESPONSIBILITY_UNIQUE`` is about)."""
    texts = set()
    for c in group.get("characteristic", []) or []:
        text = ((c or {}).get("valueCodeableConcept") or {}).get("text")
        if text:
            texts.add(text)
    return texts


def group_body(variant: str, name: str, members: Iterable[str] = (),
               responsibilities: Iterable[str] = ()) -> dict[str, Any]:
    """A valid Team or Patient Group body: members by id, responsibilities by text."""
    body: dict[str, Any] = {"resourceType": "Group", "type": TYPE_OF[variant], "actual": True, "name": name}
    refs = [{"entity": {"reference": f"{MEMBER_KIND[variant]}/{m}"}} for m in members]
    if refs:
        body["member"] = refs
    texts = [responsibility(t) for t in responsibilities]
    if texts:
        body["characteristic"] = texts
    return body


GROUP = ResourceProfile(
    resource_type="Group",
    variants=(TEAM, PATIENT_GROUP),
    fields=(
        Field("type", Kind.CODE, "CANVAS-GROUP-TYPE", Required.FHIR,
              allowed=(PATIENT_GROUP_TYPE, TEAM_TYPE), fhir_codes=FHIR_GROUP_TYPES),
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
                   "a responsibility on a Patient Group"),
        Constraint("member-wrong-kind", "CANVAS-GROUP-MEMBER-KIND", PROFILE_RULE, TEAM,
                   "a Patient as a Team member", needs=("patients",)),
        Constraint("member-wrong-kind", "CANVAS-GROUP-MEMBER-KIND", PROFILE_RULE, PATIENT_GROUP,
                   "a Practitioner as a Patient Group member", needs=("practitioners",)),
        Constraint("member-missing", "CANVAS-GROUP-MEMBER-EXISTS", PROFILE_RULE, TEAM,
                   "a member reference to a Practitioner that does not exist"),
        Constraint("member-missing", "CANVAS-GROUP-MEMBER-EXISTS", PROFILE_RULE, PATIENT_GROUP,
                   "a member reference to a Patient that does not exist"),
    ),
    search_params=(
        SearchParam("_id", "token", "CANVAS-GROUP-SEARCH-ID"),
        SearchParam("type", "token", "CANVAS-GROUP-SEARCH-TYPE"),
        SearchParam("name", "string", "CANVAS-GROUP-SEARCH-NAME"),
        SearchParam("member", "reference", "CANVAS-GROUP-SEARCH-MEMBER"),
    ),
)
