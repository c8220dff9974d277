"""``validate(resource) -> list[Problem]``: a resource against the FHIR R4 JSON Schema and the
core invariants, every violation with its element path and rule (and line number, for NDJSON).

:class:`ValidationLog` gathers the problems of many resources (one export file, one run's
reads): counts per kind and the first few examples, which is what a report can show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import invariants, schema

SCHEMA = "schema"
INVARIANT = "invariant"
RULE_NAMES = {"enum": "enum: required binding or fixed code", "type": "JSON type", "pattern": "primitive format",
              "additionalProperties": "unknown element", "const": "fixed value", "required": "required member"}
MESSAGE_CHARS = 240


@dataclass(frozen=True)
class Problem:
    """One violation: what kind (``schema`` or ``invariant``), where, which rule, and why."""

    kind: str
    path: str          # element path, FHIRPath style: Bundle.entry[0].resource.member[1].entity
    rule: str          # "schema enum: required binding or fixed code" or an invariant key ("grp-1")
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.message} [{self.rule}]"


def validate(resource: Any, line: int | None = None, *, check_invariants: bool = True) -> list[Problem]:
    """Every problem of one resource (empty when it is valid)."""
    return check(resource, line, check_invariants=check_invariants)[0]


def check(resource: Any, line: int | None = None, *,
          check_invariants: bool = True) -> tuple[list[Problem], int]:
    """:func:`validate`, plus how many invariant evaluations could not be judged."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [Problem(SCHEMA, "", "resourceType", "not a JSON object with a resourceType", line)], 0
    problems: list[Problem] = []
    unjudged = _check(resource, resource["resourceType"], line, problems, check_invariants)
    if check_invariants:
        problems += [Problem(INVARIANT, _path(resource["resourceType"], b.path), b.invariant.key,
                             b.invariant.human, line) for b in invariants.element_problems(resource)]
    return problems, unjudged


def _check(resource: dict[str, Any], where: str, line: int | None, problems: list[Problem],
           check_invariants: bool) -> int:
    rtype = resource.get("resourceType")
    if rtype not in schema.resource_types():
        problems.append(Problem(SCHEMA, where, "resourceType", f"unknown resourceType {rtype!r}", line))
        return 0
    found = schema.errors(resource)
    mistyped = {tuple(parts) for parts, keyword, _ in found if keyword == "type"}
    for parts, keyword, message in found:
        if keyword == "pattern" and tuple(parts) in mistyped:
            continue   # "'yes' is not of type 'boolean'" says it; the boolean's string pattern adds nothing
        problems.append(Problem(SCHEMA, _path(where, parts), f"schema {RULE_NAMES.get(keyword, keyword)}",
                                message[:MESSAGE_CHARS], line))
    unjudged = 0
    if check_invariants:
        breaches, unjudged = invariants.breaches(resource)
        problems += [Problem(INVARIANT, _path(where, b.path), b.invariant.key, b.invariant.human, line)
                     for b in breaches]
    for parts, nested in schema.nested_resources(resource):
        if isinstance(nested, dict) and isinstance(nested.get("resourceType"), str):
            unjudged += _check(nested, _path(where, parts), line, problems, check_invariants)
    return unjudged


def _path(start: str, parts: list[str | int]) -> str:
    return start + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


@dataclass
class ValidationLog:
    """Problems of many resources: counts per kind and the first ``keep`` examples of each."""

    keep: int = 3
    resources: int = 0
    invalid: dict[str, int] = field(default_factory=lambda: {SCHEMA: 0, INVARIANT: 0})  # resources, per kind
    examples: dict[str, list[Problem]] = field(default_factory=lambda: {SCHEMA: [], INVARIANT: []})
    unjudged: int = 0

    def check(self, resource: Any, line: int | None = None) -> list[Problem]:
        problems, unjudged = check(resource, line)
        self.resources += 1
        self.unjudged += unjudged
        for kind in (SCHEMA, INVARIANT):
            mine = [p for p in problems if p.kind == kind]
            if mine:
                self.invalid[kind] += 1
                room = self.keep - len(self.examples[kind])
                self.examples[kind] += mine[:max(room, 0)]
        return problems

    def merge(self, other: "ValidationLog") -> None:
        self.resources += other.resources
        self.unjudged += other.unjudged
        for kind in (SCHEMA, INVARIANT):
            self.invalid[kind] += other.invalid[kind]
            room = self.keep - len(self.examples[kind])
            self.examples[kind] += other.examples[kind][:max(room, 0)]

    def summary(self, kind: str, what: str = "") -> str:
        """'2 of 40 resources <what>break …: line 3: Patient.gender: … [schema enum …]; …'."""
        rule = "the FHIR R4 JSON Schema" if kind == SCHEMA else "FHIR R4 invariants"
        count = self.invalid[kind]
        shown = "; ".join(str(p) for p in self.examples[kind])
        return f"{count} of {self.resources} resources {what}break {rule}: {shown}"
