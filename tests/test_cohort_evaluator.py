"""The suite's own FHIR search evaluator and membership oracle, on hand-made resources."""

from __future__ import annotations

import pytest

from conformance.cohort.evaluate import resource_matches
from conformance.cohort.filters import FilterError, parse
from conformance.cohort.oracle import Population, expected_members, judge

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def cond(pid: str, code: str, status: str = "active", onset: str = "2024-01-15", system: str | None = ICD) -> dict:
    coding = {"code": code} if system is None else {"system": system, "code": code}
    return {"resourceType": "Condition", "id": f"c-{pid}-{code}", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [coding]}, "onsetDateTime": onset,
            "clinicalStatus": {"coding": [{"system": CLIN, "code": status}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item"}]}]}


def enc(pid: str, cls: str, start: str, end: str | None = None) -> dict:
    period = {"start": start} | ({"end": end} if end else {})
    return {"resourceType": "Encounter", "id": f"e-{pid}-{start}", "subject": {"reference": f"Patient/{pid}"},
            "class": {"system": ACT, "code": cls}, "period": period}


def obs(pid: str, value: float, when: str = "2024-03-01T10:00:00Z") -> dict:
    return {"resourceType": "Observation", "id": f"o-{pid}-{value}", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}


def matches(expression: str, resource: dict) -> bool:
    return resource_matches(parse(expression), resource)


@pytest.mark.parametrize("expression, expected", [
    (f"Condition?code={ICD}|E11.9", True),
    ("Condition?code=E11.9", True),
    (f"Condition?code={ICD}|", True),
    ("Condition?code=|E11.9", False),            # "|code" means: no system
    (f"Condition?code={ICD}|E10.9,{ICD}|E11.9", True),
    ("Condition?code=http://snomed.info/sct|E11.9", False),
    ("Condition?clinical-status=active&code=E11.9", True),
    ("Condition?clinical-status=resolved&code=E11.9", False),
])
def test_token_forms(expression, expected):
    assert matches(expression, cond("p1", "E11.9")) is expected


def test_token_without_system_matches_only_codings_without_system():
    assert matches("Condition?code=|E11.9", cond("p1", "E11.9", system=None))


@pytest.mark.parametrize("value, expected", [
    ("2024", True), ("eq2024-01", True), ("eq2024-01-15", True), ("eq2024-01-16", False),
    ("ne2024-01-16", True), ("gt2024-01-14", True), ("gt2024-01-15", False), ("ge2024-01-15", True),
    ("lt2024-01-15", False), ("lt2024-01-16", True), ("le2024-01-15", True), ("le2024-01-14", False),
    ("sa2024-01-14", True), ("eb2024-01-16", True), ("eb2024-01-15", False),
])
def test_date_prefixes_on_a_day(value, expected):
    assert matches(f"Condition?onset-date={value}", cond("p1", "E11.9", onset="2024-01-15")) is expected


def test_date_range_on_a_period_needs_both_bounds():
    january = "Encounter?class=AMB&date=ge2024-01-01&date=le2024-01-31"
    assert matches(january, enc("p", "AMB", "2024-01-10T09:00:00Z", "2024-01-10T10:00:00Z"))
    assert not matches(january, enc("p", "AMB", "2024-02-01T09:00:00Z", "2024-02-01T10:00:00Z"))
    assert matches(january, enc("p", "AMB", "2023-12-31T23:00:00Z", "2024-01-01T01:00:00Z"))   # overlaps
    assert not matches(january, enc("p", "IMP", "2024-01-10T09:00:00Z"))
    assert matches(f"Encounter?class={ACT}|AMB", enc("p", "AMB", "2024-01-10"))


@pytest.mark.parametrize("value, observed, expected", [
    ("5.4", 5.4, True), ("5.4", 5.35, True), ("5.4", 5.45, False), ("5.4", 5.34, False),
    ("gt5.4", 5.41, True), ("gt5.4", 5.4, False), ("ge5.4", 5.4, True), ("lt7", 6.9, True),
    ("le7", 7.0, True), ("ne5.4", 6.0, True), ("7|http://unitsofmeasure.org|%", 7.0, True),
    ("7|http://unitsofmeasure.org|mg", 7.0, False), ("7||%", 7.0, True),
])
def test_quantity(value, observed, expected):
    assert matches(f"Observation?value-quantity={value}", obs("p", observed)) is expected


@pytest.mark.parametrize("expression, part", [
    ("Condition?code=E11.9&_sort=onset-date", "_sort"),
    ("Condition?code=E11.9&_count=10", "_count"),
    ("Condition?severity=severe", "severity"),
    ("Condition?code:text=diabetes", ":text"),
    ("MedicationRequest?code=1", "MedicationRequest"),
    ("Condition?onset-date=ap2024", "'ap'"),
    ("Condition?onset-date=2024-13-45x", "not a FHIR date"),
    ("Observation?value-quantity=many", "not a FHIR quantity"),
    ("code=E11.9", "Type?parameters"),
    ("Condition?", "no search parameters"),
])
def test_disallowed_filters_name_the_offending_part(expression, part):
    with pytest.raises(FilterError, match=part.replace("?", r"\?")):
        parse(expression)


def test_ig_example_filters_parse():
    parse("Condition?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"
          f"&clinical-status={CLIN}|active&code={ICD}|E11.9")
    parse(f"Encounter?class={ACT}|AMB&date=ge2024-01-01&date=le2024-01-31")


def test_oracle_ands_filters_and_respects_the_base_population():
    population = Population()
    population.add_all([{"resourceType": "Patient", "id": p, "gender": g} for p, g in
                        (("a", "female"), ("b", "male"), ("c", "female"))])
    population.add_all([cond("a", "E11.9"), cond("b", "E11.9"), cond("c", "I10"),
                        enc("a", "AMB", "2024-01-05"), enc("c", "AMB", "2024-01-06")])
    filters = [parse("Condition?code=E11.9"), parse("Encounter?class=AMB&date=ge2024-01-01&date=le2024-01-31")]
    assert expected_members(filters, population) == {"a"}
    assert expected_members([parse("Patient?gender=female")], population) == {"a", "c"}
    assert expected_members([parse("Patient?gender=female")], population, base={"c"}) == {"c"}
    verdict = judge(filters, population, actual={"a", "b"})
    assert not verdict.agrees
    assert "no match for Encounter?class=AMB" in verdict.explanation["b"]
    assert "1 extra" in verdict.describe()


@pytest.mark.parametrize("expression", ["Patient?birthdate=ge2020-13", "Patient?birthdate=2021-02-30",
                                        "Encounter?date=2024-01-01T25:00:00Z"])
def test_dates_that_do_not_exist_are_refused(expression):
    with pytest.raises(FilterError, match="not a FHIR date"):
        parse(expression)
