"""The vocabulary for describing a profile's rules declaratively.

A profile lists its fields (JSON type, required-ness, enums, read-only) and its
cross-field constraints, each tied to a requirement id. From that one
description the strategies generate valid payloads and labelled invalid ones,
and the checks know which requirement each breach verifies and which status the
reference behaviour gives it (400 for invalid FHIR, 422 for a profile rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator

# Requirements for breaches of base FHIR JSON rules, whatever the profile.
FHIR_RULES = {
    "empty-string": "FHIR-EMPTY-STRING",
    "wrong-type": "FHIR-JSON-TYPES",
    "unknown-element": "FHIR-UNKNOWN-ELEMENT",
    "wrong-resource-type": "FHIR-RESOURCE-TYPE",
    "id-mismatch": "FHIR-UPDATE-ID",
}
INVALID_FHIR = 400      # SPEC §1 Decision: structurally invalid → 400
PROFILE_RULE = 422      # SPEC §1 Decision: valid FHIR breaking a profile rule → 422
# The status policy for a refused payload: either status is accepted (with an
# OperationOutcome); the reference status above is what FHIR-REJECT-STATUS checks.
REFUSED = (INVALID_FHIR, PROFILE_RULE)


class Required(Enum):
    FHIR = "fhir"          # 1..1 in base R4: missing is invalid FHIR (400)
    PROFILE = "profile"    # optional in R4, required by the profile (422)


class Kind(Enum):
    STRING = "string"
    CODE = "code"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    OBJECT = "object"
    ARRAY = "array"


@dataclass(frozen=True)
class Field:
    """One element, addressed by a dotted path; ``[]`` marks an array element."""

    path: str
    kind: Kind
    requirement: str | None = None
    required: Required | None = None
    allowed: tuple[Any, ...] | None = None       # the profile's enum
    fhir_codes: tuple[str, ...] | None = None    # base-FHIR required binding, if wider
    read_only: bool = False
    variants: tuple[str, ...] = ()               # payload variants that carry it; () = all

    @property
    def container(self) -> str | None:
        """The top-level array this field lives in, if any (e.g. 'member')."""
        return self.path.split("[]")[0] if "[]" in self.path else None

    def applies_to(self, variant: str) -> bool:
        return not self.variants or variant in self.variants


@dataclass(frozen=True)
class Violation:
    """A named way of breaking one rule: the label every invalid payload carries."""

    name: str
    requirement: str
    status: int                 # the reference status (400 or 422)
    description: str
    variant: str                # which payload variant it is applied to
    path: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}[{self.variant}]"


@dataclass(frozen=True)
class Constraint:
    """A cross-field rule; ``strategies/`` keeps, by ``name``, the breach that turns a valid payload into one
    breaking it."""

    name: str
    requirement: str
    status: int
    variant: str
    description: str
    needs: tuple[str, ...] = ()    # target data the breach needs (e.g. 'patients')


# What omitting an element from an update does to its stored value.
KEPT, CLEARED, NOT_KEPT = "kept", "cleared", "not-kept"   # not-kept: rejected or cleared, never kept


@dataclass(frozen=True)
class Omission:
    """An update that leaves ``element`` out: what happens to the stored value, and the rule."""

    element: str
    outcome: str                # KEPT | CLEARED | NOT_KEPT
    requirement: str


@dataclass(frozen=True)
class Uniqueness:
    """A value at most one resource of a kind may hold; a claim on a held value is refused."""

    element: str                # the dotted path of the unique value
    among: str                  # which resources compete for it (e.g. 'Group?type=practitioner')
    status: int                 # the reference status of a refused claim
    issue_code: str             # the OperationOutcome issue code of that refusal
    requirement: str


# Search semantics shared by every resource (FHIR R4 search.html; SPEC §1 paging).
PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 10, 100          # _count when absent, and its ceiling
FHIR_DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str
    requirement: str


@dataclass(frozen=True)
class ResourceProfile:
    resource_type: str
    variants: tuple[str, ...]
    fields: tuple[Field, ...]
    constraints: tuple[Constraint, ...] = ()
    search_params: tuple[SearchParam, ...] = ()
    read_only: tuple[str, ...] = field(default=())

    def field(self, path: str) -> Field:
        return next(f for f in self.fields if f.path == path)

    def violations(self, *, update: bool = False) -> Iterator[Violation]:
        """Every labelled breach derivable from the description, one per rule and variant."""
        for variant in self.variants:
            for f in self.fields:
                if not f.applies_to(variant) or f.read_only:
                    continue
                if f.required is not None:
                    status = INVALID_FHIR if f.required is Required.FHIR else PROFILE_RULE
                    assert f.requirement, f"required field {f.path} needs a requirement id"
                    yield Violation("missing", f.requirement, status,
                                    f"required element {f.path} left out", variant, f.path)
                if f.allowed is not None:
                    if f.fhir_codes:
                        yield Violation("not-a-fhir-code", f.requirement, INVALID_FHIR,
                                        f"{f.path} outside the FHIR value set", variant, f.path)
                        if set(f.fhir_codes) - set(f.allowed):
                            yield Violation("outside-profile-enum", f.requirement, PROFILE_RULE,
                                            f"{f.path} a FHIR code the profile does not allow", variant, f.path)
                    else:
                        yield Violation("outside-enum", f.requirement, PROFILE_RULE,
                                        f"{f.path} outside {list(f.allowed)}", variant, f.path)
                if f.kind in (Kind.STRING, Kind.CODE):
                    yield Violation("empty-string", FHIR_RULES["empty-string"], INVALID_FHIR,
                                    f"{f.path} is an empty string", variant, f.path)
                yield Violation("wrong-type", FHIR_RULES["wrong-type"], INVALID_FHIR,
                                f"{f.path} has the wrong JSON type", variant, f.path)
            yield Violation("unknown-element", FHIR_RULES["unknown-element"], INVALID_FHIR,
                            "an element unknown to FHIR R4", variant)
            yield Violation("wrong-resource-type", FHIR_RULES["wrong-resource-type"], INVALID_FHIR,
                            "resourceType is not " + self.resource_type, variant)
            for c in self.constraints:
                if c.variant == variant:
                    yield Violation(c.name, c.requirement, c.status, c.description, variant)
            if update:
                yield Violation("id-mismatch", FHIR_RULES["id-mismatch"], INVALID_FHIR,
                                "body id differs from the URL id", variant, "id")

    def constraint(self, name: str, variant: str) -> Constraint:
        return next(c for c in self.constraints if c.name == name and c.variant == variant)

    def requirements(self) -> set[str]:
        """Every requirement id the description refers to."""
        ids = {f.requirement for f in self.fields if f.requirement}
        ids |= {c.requirement for c in self.constraints}
        ids |= {p.requirement for p in self.search_params}
        return ids
