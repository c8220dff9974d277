"""The membership oracle: which patients a cohort definition must select.

SPEC §5: the exported Patients are exactly the patients of the base population for
which every filter matches a resource in their compartment (or the Patient itself,
for ``Patient?`` filters). A disagreement is explained patient by patient: for a
missing patient every filter holds; for an extra one, the first filter that does not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from .evaluate import matching_patients
from .filters import Filter


@dataclass
class Population:
    """Resources read independently of the cohort, grouped by type."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, resource: dict[str, Any]) -> None:
        self.resources[resource.get("resourceType", "?")].append(resource)

    def add_all(self, resources: Iterable[dict[str, Any]]) -> None:
        for r in resources:
            self.add(r)

    @property
    def patient_ids(self) -> set[str]:
        return {p["id"] for p in self.resources.get("Patient", []) if p.get("id")}


@dataclass
class Verdict:
    expected: set[str]
    actual: set[str]
    explanation: dict[str, str]

    @property
    def agrees(self) -> bool:
        return self.expected == self.actual

    def describe(self, limit: int = 8) -> str:
        missing, extra = sorted(self.expected - self.actual), sorted(self.actual - self.expected)
        lines = [f"expected {len(self.expected)} patients, got {len(self.actual)}: "
                 f"{len(missing)} missing, {len(extra)} extra"]
        lines += [f"  missing Patient/{p}: {self.explanation.get(p, '')}" for p in missing[:limit]]
        lines += [f"  extra Patient/{p}: {self.explanation.get(p, '')}" for p in extra[:limit]]
        return "\n".join(lines)


def expected_members(filters: list[Filter], population: Population, base: set[str] | None = None) -> set[str]:
    """Patients of ``base`` (default: every patient) that every filter selects."""
    selected = set(population.patient_ids if base is None else base)
    for flt in filters:
        selected &= matching_patients(flt, population.resources.get(flt.resource_type, []))
    return selected


def judge(filters: list[Filter], population: Population, actual: set[str],
          base: set[str] | None = None) -> Verdict:
    """Compare a server's members with the oracle's, explaining each difference."""
    per_filter = [(f, matching_patients(f, population.resources.get(f.resource_type, []))) for f in filters]
    universe = set(population.patient_ids if base is None else base)
    expected = set(universe)
    for _, selected in per_filter:
        expected &= selected
    explanation: dict[str, str] = {}
    for pid in expected - actual:
        explanation[pid] = "every filter matches: " + "; ".join(f.expression for f in filters)
    for pid in actual - expected:
        if pid not in universe:
            explanation[pid] = "not in the base population (member narrowing)"
            continue
        failing = next((f for f, selected in per_filter if pid not in selected), None)
        explanation[pid] = f"no match for {failing.expression}" if failing else "?"
    return Verdict(expected, actual, explanation)
