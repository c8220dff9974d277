"""Bulk Cohort membership: the Patients exported for a cohort are exactly those the suite's own
evaluator selects from the population read by a Patient-level export (SPEC §5 oracle).

A property over generated cohorts, plus pinned cases for the rules a random cohort may
miss: filters ANDed, member narrowing (Patients and a Group), token systems and commas,
the ``ge`` date boundary.
"""

from __future__ import annotations

from itertools import combinations
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.cohort.evaluate import matching_patients
from conformance.cohort.filters import parse
from conformance.markers import check, needs, profile
from conformance.rules.cohort import cohort_payload
from conformance.strategies.cohort import Facts, cohort_definition

from .support.cohort import CohortApi, verify_membership

pytestmark = [profile("bulk-cohort"), needs("Patient", operation="export"), needs("Group", operation="export"),
              needs("Group", interaction="create")]
OTHER_SYSTEM = "http://example.org/fhirck/not-the-system"


def _q(text: str) -> str:
    return quote(text, safe="|:/.-_")


def _simple_filters(facts: Facts) -> list[tuple[str, set[str]]]:
    """One-criterion filters over values present, with the patients each selects (some but not all)."""
    found = []
    for (rtype, param), pairs in sorted(facts.tokens.items()):
        for system, code in pairs:
            expression = f"{rtype}?{param}={_q(f'{system}|{code}' if system else code)}"
            found.append((expression, matching_patients(parse(expression),
                                                        facts.population.resources.get(rtype, []))))
    for gender in facts.genders:
        expression = f"Patient?gender={gender}"
        found.append((expression, matching_patients(parse(expression), facts.population.resources["Patient"])))
    everyone = set(facts.patient_ids)
    return [(e, s) for e, s in found if s and s != everyone]


@check("cohort-membership-oracle", "BULK-COHORT-MEMBERSHIP")
@given(data=st.data())
def test_membership_matches_the_oracle(cohorts: CohortApi, population: Facts, narrowing_groups, data):
    definition = data.draw(cohort_definition(population, cohorts.name(), narrowing_groups), label="cohort")
    verify_membership(cohorts, population, definition.payload, definition.filters, definition.base,
                      "BULK-COHORT-MEMBERSHIP", f"cohort {definition!r}")


@check("cohort-filters-anded", "BULK-COHORT-FILTERS-AND")
def test_two_filters_are_anded(cohorts: CohortApi, population: Facts):
    candidates = _simple_filters(population)
    pair = next(((a, b) for a, b in combinations(candidates, 2)
                 if a[0].partition("?")[0] != b[0].partition("?")[0] and a[1] & b[1]
                 and not a[1] <= b[1] and not b[1] <= a[1]), None)
    if pair is None:
        pytest.skip("the population offers no two filters whose selections overlap without one containing the other")
    expressions = [pair[0][0], pair[1][0]]
    verify_membership(cohorts, population, cohort_payload(cohorts.name("and"), expressions),
                      [parse(e) for e in expressions], None, "BULK-COHORT-FILTERS-AND",
                      f"two filters ({len(pair[0][1])} and {len(pair[1][1])} patients, "
                      f"{len(pair[0][1] & pair[1][1])} in both)")


@pytest.mark.parametrize("kind", ["patients", "group"])
@check("cohort-member-narrowing", "BULK-COHORT-MEMBER-NARROWING")
def test_member_narrows_the_base_population(cohorts: CohortApi, population: Facts, narrowing_groups, kind):
    candidates = sorted(_simple_filters(population), key=lambda c: -len(c[1]))
    if not candidates:
        pytest.skip("the population offers no filter selecting some but not all patients")
    expression, selected = candidates[0]
    if kind == "patients":
        base = set(population.patient_ids[::3][:30])
        refs = [f"Patient/{p}" for p in sorted(base)]
    else:
        if not narrowing_groups:
            pytest.skip("the suite could not create a Patient Group to name as a cohort member")
        gid, members = next(iter(narrowing_groups.items()))
        base, refs = set(members), [f"Group/{gid}"]
    if not selected - base:
        pytest.skip("the filter selects no patient outside the member list: narrowing would not show")
    verify_membership(cohorts, population, cohort_payload(cohorts.name("narrow"), [expression], refs),
                      [parse(expression)], base, "BULK-COHORT-MEMBER-NARROWING",
                      f"cohort {expression} narrowed to {len(base)} patients by {kind}")


def _condition_codes(facts: Facts) -> list[tuple[str, str]]:
    return [(s, c) for s, c in facts.tokens.get(("Condition", "code"), []) if s]


@pytest.mark.parametrize("case", ["other-system", "comma-or"])
@check("cohort-token-semantics", "BULK-COHORT-TOKEN")
def test_token_system_and_comma(cohorts: CohortApi, population: Facts, case):
    codes = _condition_codes(population)
    if len(codes) < 2:
        pytest.skip("the population has fewer than two Condition codes with a system")
    (s1, c1), (s2, c2) = codes[0], codes[1]
    if case == "other-system":
        expression = f"Condition?code={_q(f'{OTHER_SYSTEM}|{c1}')}"
    else:
        expression = f"Condition?code={_q(f'{s1}|{c1}')},{_q(f'{s2}|{c2}')}"
    verify_membership(cohorts, population, cohort_payload(cohorts.name("token"), [expression]), [parse(expression)],
                      None, "BULK-COHORT-TOKEN", f"cohort {expression}")


@check("cohort-date-boundary", "BULK-COHORT-DATE")
def test_ge_includes_the_boundary(cohorts: CohortApi, population: Facts):
    births = population.dates.get(("Patient", "birthdate"), [])
    if not births:
        pytest.skip("no Patient in the population has a birthDate")
    day = births[len(births) // 2][:10]
    expression = f"Patient?birthdate=ge{day}"
    verify_membership(cohorts, population, cohort_payload(cohorts.name("date"), [expression]), [parse(expression)],
                      None, "BULK-COHORT-DATE", f"cohort {expression} (patients born on {day} belong)")

