"""The suite's cohort strategies: valid cohorts parse and are mostly non-trivial; each invalid one
breaks the rule it names (the suite's own parser agrees it is invalid)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PATIENTS
from conformance.cohort.filters import FilterError, parse
from conformance.cohort.oracle import Population, expected_members
from conformance.rules.cohort import FHIR_QUERY, MEMBER_FILTER, expressions_of, violations
from conformance.strategies.cohort import Facts, cohort_definition, invalid_cohort
from mock_server.population import compartment_for

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def facts() -> Facts:
    population = Population()
    population.add_all(PATIENTS)
    population.add_all(body for p in PATIENTS for _, _, _, body in compartment_for(p))
    return Facts.of(population)


def test_facts_hold_values_actually_present(facts):
    assert ("Condition", "category") in facts.tokens and ("Encounter", "type") in facts.tokens
    assert facts.genders == sorted({p["gender"] for p in PATIENTS if isinstance(p.get("gender"), str)})
    assert len(facts.genders) >= 2, "the fixture population should hold more than one gender"
    observed = {
        (q.get("system"), q.get("code"), q["value"])
        for _, _, _, body in (r for p in PATIENTS for r in compartment_for(p))
        if body.get("resourceType") == "Observation"
        for q in [body.get("valueQuantity") or {}] if "value" in q
    }
    assert facts.quantities, "no Observation quantity was collected"
    for (value, system, code) in (v for values in facts.quantities.values() for v in values):
        assert (system, code, value) in observed, f"quantity {value} {code} is not in the population"
    assert ("Patient", "birthdate") in facts.dates


def test_valid_cohorts_parse_and_select_some_but_not_all(facts):
    sizes = []

    @SETTINGS
    @given(data=st.data())
    def run(data):
        definition = data.draw(cohort_definition(facts, "t", {"g": set(facts.patient_ids[:30])}))
        assert expressions_of(definition.payload) == definition.expressions
        assert definition.payload["actual"] is ("member" in definition.payload)
        filters = [parse(e) for e in definition.expressions]
        expected = expected_members(filters, facts.population, definition.base)
        universe = facts.population.patient_ids if definition.base is None else definition.base
        sizes.append(0 < len(expected) < len(universe))

    run()
    assert sum(sizes) >= len(sizes) * 0.6, f"only {sum(sizes)} of {len(sizes)} cohorts are non-trivial"


@pytest.mark.parametrize("violation", violations(), ids=lambda v: v.name)
def test_invalid_cohorts_break_their_rule(facts, violation):
    @SETTINGS
    @given(data=st.data())
    def run(data):
        payload = data.draw(invalid_cohort(facts, "t", violation)).payload
        filters = [m for m in payload.get("modifierExtension", []) if m.get("url") == MEMBER_FILTER]
        if violation.name == "missing-name":
            assert "name" not in payload
        elif violation.name == "characteristic-present":
            assert payload["characteristic"]
        elif violation.name == "no-member-filter":
            assert not filters
        elif violation.name == "wrong-language":
            assert filters[0]["valueExpression"]["language"] != FHIR_QUERY
        else:
            with pytest.raises(FilterError):
                parse(filters[0]["valueExpression"]["expression"])

    run()


def test_must_reject_inputs_are_never_what_the_target_declares():
    """SPEC §1: a server may support what it declares, so a "must reject" input never is."""
    from conformance.strategies.cohort import UNDECLARED_FALLBACK, UNSUPPORTED_PARAMETERS, undeclared

    for rtype, candidates in UNSUPPORTED_PARAMETERS.items():
        names = frozenset(c.split("=", 1)[0] for c in candidates)
        assert undeclared(candidates, frozenset()) == list(candidates)
        assert undeclared(candidates, names) == [UNDECLARED_FALLBACK]          # all declared: fallback
        first = candidates[0].split("=", 1)[0]
        assert all(not c.startswith(first + "=") for c in undeclared(candidates, frozenset({first})))


def test_optional_cohort_features_are_named_for_the_skip_reason():
    from conformance.checks.support.cohort import optional_features
    from conformance.rules.cohort import cohort_payload

    declared = {"Condition": frozenset({"code"})}
    plain = cohort_payload("c", ["Condition?code=x"])
    assert optional_features(plain, declared) is None
    narrowed = cohort_payload("c", ["Condition?code=x"], ["Patient/1"])
    assert optional_features(narrowed, declared) == "member narrowing (Group.member)"
    undeclared = optional_features(cohort_payload("c", ["Condition?code=x&onset-date=ge2020"]), declared)
    assert "Condition.onset-date" in undeclared
