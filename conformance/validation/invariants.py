"""Core FHIR R4 invariants (constraints) of the resource types the kit deals with.

One declarative table, :data:`INVARIANTS`: each row is the invariant as the FHIR R4 page
states it (key, FHIRPath expression, human text, the page), the type it belongs to, and
where it is evaluated. Expressions run with ``fhirpathpy`` (compiled once, with its R4 model
so ``value`` finds ``valueQuantity`` and ``.is(Composition)`` works). Two rows that hold for
*every* element, ele-1 and ext-1, are evaluated by a walk over the JSON instead (``native``):
running FHIRPath on each element would cost a hundred times more.

``when`` is a speed guard, not a rule: the top-level element names (prefixes, so ``value``
covers ``valueQuantity``) without which the expression is trivially true (they all read
"X.empty() or ..."). A unit test proves each guard on a resource without those elements.

An expression that evaluates to ``false`` is a violation; one that evaluates to empty (e.g.
comparing date-times of different precision) or that the engine cannot evaluate is *not
judged*: the kit's FHIRPath engine is not the HL7 validator, so doubt never fails a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

R4 = "https://hl7.org/fhir/R4"
NOT_DOMAIN_RESOURCES = frozenset({"Bundle", "Parameters", "Binary"})


@dataclass(frozen=True)
class Invariant:
    key: str
    resource_type: str          # a resource type, "DomainResource" or "Element"
    expression: str             # FHIRPath, as the FHIR R4 page gives it
    human: str                  # the page's human-readable text
    source: str                 # the FHIR R4 page (and section) that defines it
    context: str = ""           # "" = the resource itself; else a top-level element, evaluated per item
    when: tuple[str, ...] = ()  # speed guard (see module docstring); () = always evaluated
    native: bool = False        # evaluated by the JSON walk (:func:`element_problems`), not by FHIRPath

    @property
    def where(self) -> str:
        return f"{self.resource_type}.{self.context}" if self.context else self.resource_type


def _inv(key: str, rtype: str, expression: str, human: str, page: str, **kw: Any) -> Invariant:
    return Invariant(key, rtype, expression, human, f"{R4}/{page}", **kw)


CONDITION_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"

INVARIANTS: tuple[Invariant, ...] = (
    # Element and Extension: every element of every resource (native walk)
    _inv("ele-1", "Element", "hasValue() or (children().count() > id.count())",
         "All FHIR elements must have a @value or children", "element.html#invs", native=True),
    _inv("ext-1", "Element", "extension.exists() != value.exists()",
         "Must have either extensions or value[x], not both", "extensibility.html#Extension", native=True),
    # DomainResource: every resource type except Bundle, Parameters, Binary
    _inv("dom-2", "DomainResource", "contained.contained.empty()",
         "If the resource is contained in another resource, it SHALL NOT contain nested Resources",
         "domainresource.html#invs", when=("contained",)),
    _inv("dom-4", "DomainResource", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()",
         "If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a meta.lastUpdated",
         "domainresource.html#invs", when=("contained",)),
    _inv("dom-5", "DomainResource", "contained.meta.security.empty()",
         "If a resource is contained in another resource, it SHALL NOT have a security label",
         "domainresource.html#invs", when=("contained",)),
    # Group
    _inv("grp-1", "Group", "member.empty() or (actual = true)",
         "Can only have members if group is \"actual\"", "group.html#invs", when=("member",)),
    # Task
    _inv("inv-1", "Task", "lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn",
         "Last modified date must be greater than or equal to authored-on date.", "task.html#invs",
         when=("lastModified",)),
    # Patient
    _inv("pat-1", "Patient", "name.exists() or telecom.exists() or address.exists() or organization.exists()",
         "SHALL at least contain a contact's details or a reference to an organization", "patient.html#invs",
         context="contact", when=("contact",)),
    # Observation
    _inv("obs-3", "Observation", "low.exists() or high.exists() or text.exists()",
         "Must have at least a low or a high or text", "observation.html#invs",
         context="referenceRange", when=("referenceRange",)),
    _inv("obs-6", "Observation", "dataAbsentReason.empty() or value.empty()",
         "dataAbsentReason SHALL only be present if Observation.value[x] is not present", "observation.html#invs",
         when=("dataAbsentReason",)),
    _inv("obs-7", "Observation",
         "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
         "If Observation.code is the same as an Observation.component.code then the value element associated "
         "with the code SHALL NOT be present", "observation.html#invs", when=("component",)),
    # Condition (con-3 is left out: a warning in R4 whose expression compares a CodeableConcept
    # with a string, so it fires on any Condition with a category and no clinicalStatus)
    _inv("con-4", "Condition",
         f"abatement.empty() or clinicalStatus.coding.where(system='{CONDITION_CLINICAL}' and "
         "(code='resolved' or code='remission' or code='inactive')).exists()",
         "If condition is abated, then clinicalStatus must be either inactive, resolved, or remission",
         "condition.html#invs", when=("abatement",)),
    _inv("con-5", "Condition",
         f"verificationStatus.coding.where(system='{CONDITION_VER}' and code='entered-in-error').empty() "
         "or clinicalStatus.empty()",
         "Condition.clinicalStatus SHALL NOT be present if verification Status is entered-in-error",
         "condition.html#invs", when=("verificationStatus",)),
    # Bundle
    _inv("bdl-1", "Bundle", "total.empty() or (type = 'searchset') or (type = 'history')",
         "total only when a search or history", "bundle.html#invs"),
    _inv("bdl-2", "Bundle", "entry.search.empty() or (type = 'searchset')",
         "entry.search only when a search", "bundle.html#invs"),
    _inv("bdl-3", "Bundle", "entry.all(request.exists() = (%resource.type = 'batch' or "
         "%resource.type = 'transaction' or %resource.type = 'history'))",
         "entry.request mandatory for batch/transaction/history, otherwise prohibited", "bundle.html#invs"),
    _inv("bdl-4", "Bundle", "entry.all(response.exists() = (%resource.type = 'batch-response' or "
         "%resource.type = 'transaction-response' or %resource.type = 'history'))",
         "entry.response mandatory for batch-response/transaction-response/history, otherwise prohibited",
         "bundle.html#invs"),
    _inv("bdl-5", "Bundle", "resource.exists() or request.exists() or response.exists()",
         "must be a resource unless there's a request or response", "bundle.html#invs", context="entry"),
    _inv("bdl-7", "Bundle",
         "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()",
         "FullUrl must be unique in a bundle, or else entries with the same fullUrl must have different "
         "meta.versionId (except in history bundles)", "bundle.html#invs"),
    _inv("bdl-8", "Bundle", "fullUrl.contains('/_history/').not()",
         "fullUrl cannot be a version specific reference", "bundle.html#invs", context="entry"),
    _inv("bdl-9", "Bundle", "type = 'document' implies (identifier.system.exists() and identifier.value.exists())",
         "A document must have an identifier with a system and a value", "bundle.html#invs"),
    _inv("bdl-10", "Bundle", "type = 'document' implies (timestamp.hasValue())",
         "A document must have a date", "bundle.html#invs"),
    _inv("bdl-11", "Bundle", "type = 'document' implies entry.first().resource.is(Composition)",
         "A document must have a Composition as the first resource", "bundle.html#invs"),
    _inv("bdl-12", "Bundle", "type = 'message' implies entry.first().resource.is(MessageHeader)",
         "A message must have a MessageHeader as the first resource", "bundle.html#invs"),
)
BY_KEY = {inv.key: inv for inv in INVARIANTS}


@dataclass(frozen=True)
class Breach:
    """One invariant that evaluated to false, at one element path (relative to the resource)."""

    invariant: Invariant
    path: list[str | int]


def applicable(resource_type: str) -> tuple[Invariant, ...]:
    """The FHIRPath rows that apply to a resource type (native rows excluded)."""
    return _applicable(resource_type)


@cache
def _applicable(resource_type: str) -> tuple[Invariant, ...]:
    domain = resource_type not in NOT_DOMAIN_RESOURCES
    return tuple(inv for inv in INVARIANTS if not inv.native and (
        inv.resource_type == resource_type or (domain and inv.resource_type == "DomainResource")))


@cache
def _compiled(expression: str) -> Callable[..., list[Any]]:
    from fhirpathpy import compile as fhirpath_compile
    from fhirpathpy.models import models

    return fhirpath_compile(expression, models["r4"])


def breaches(resource: dict[str, Any]) -> tuple[list[Breach], int]:
    """The invariants ``resource`` breaks, and how many could not be judged (empty result or engine error)."""
    found: list[Breach] = []
    unjudged = 0
    keys = tuple(resource)
    for inv in applicable(str(resource.get("resourceType"))):
        if inv.when and not any(k.startswith(inv.when) for k in keys):
            continue
        items: list[tuple[list[str | int], Any]]
        if inv.context:
            value = resource.get(inv.context)
            items = ([([inv.context, i], v) for i, v in enumerate(value)] if isinstance(value, list)
                     else [([inv.context], value)] if value is not None else [])
        else:
            items = [([], resource)]
        for path, item in items:
            try:
                result = _compiled(inv.expression)(item, {"resource": resource, "rootResource": resource})
            except Exception:  # the engine's own limits: not the target's fault
                unjudged += 1
                continue
            if result == [False]:
                found.append(Breach(inv, path))
            elif result != [True]:
                unjudged += 1
    return found, unjudged


def element_problems(resource: dict[str, Any]) -> list[Breach]:
    """ele-1 (no element without a value or children: no null, {} or [] in JSON) and ext-1
    (an extension has a value[x] or extensions, not both, not neither), over the whole resource."""
    found: list[Breach] = []
    _walk(resource, [], found)
    return found


def _walk(value: Any, path: list[str | int], found: list[Breach]) -> None:
    if value is None or value == [] or (isinstance(value, dict) and set(value) <= {"id"}):
        found.append(Breach(BY_KEY["ele-1"], path))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if item is None and path and str(path[-1]).startswith("_"):
                continue   # null aligns a primitive array with its extensions (json.html#primitive)
            _walk(item, [*path, i], found)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in ("extension", "modifierExtension") and isinstance(item, list):
                for i, ext in enumerate(item):
                    if isinstance(ext, dict) and _ext_1_broken(ext):
                        found.append(Breach(BY_KEY["ext-1"], [*path, key, i]))
            _walk(item, [*path, key], found)


def _ext_1_broken(extension: dict[str, Any]) -> bool:
    has_value = any(k.startswith("value") for k in extension)
    has_extensions = bool(extension.get("extension"))
    return has_value == has_extensions
