"""The generated population is realistic (issue 12 item 5): invariants over 2,000 patients.

Every event lies between birth and now (or death); vital signs are plausible for age and
sex; every Observation has a category (vital-signs or laboratory); conditions suit the
age at onset; every resource validates as FHIR R4B (fhir.resources).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import PATIENTS
from mock_server.dates import parse
from mock_server.population import CONDITIONS, NOW, compartment_for, generated_patients

LOINC_VITALS = {"8867-4", "8310-5", "29463-7", "8480-6"}
LOINC_LABS = {"4548-4", "2339-0"}
# (youngest, oldest) age at onset per SNOMED code, as a clinician would bound them (independent of the generator)
ONSET_AGES = {"44054006": (18, None), "38341003": (18, None), "195967001": (1, None), "55822004": (18, None),
              "35489007": (10, None), "69896004": (16, None), "13645005": (35, None), "65363002": (0, 13),
              "406506008": (4, 18)}


def _population(n: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return [(patient, [body for _, _, _, body in compartment_for(patient)]) for _, _, patient in generated_patients(n)]


@pytest.fixture(scope="module")
def population() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return _population(2000) + [(p, [b for _, _, _, b in compartment_for(p)]) for p in PATIENTS]


def _years(birth: datetime, when: datetime) -> float:
    return (when - birth).days / 365.25


def _times(resource: dict[str, Any]) -> list[datetime]:
    texts = [resource.get("onsetDateTime"), resource.get("effectiveDateTime"), resource["meta"]["lastUpdated"],
             *(resource.get("period") or {}).values()]
    return [parse(t).start for t in texts if t]


def test_every_event_lies_between_birth_and_now_or_death(population):
    checked = 0
    for patient, resources in population:
        birth = parse(patient["birthDate"]).start
        end = parse(patient["deceasedDateTime"]).start if "deceasedDateTime" in patient else NOW
        assert end <= datetime.now(timezone.utc)
        for resource in resources:
            for when in _times(resource):
                assert birth <= when <= end, (patient["id"], patient["birthDate"], resource)
                checked += 1
    assert checked > 30_000
    assert any("deceasedDateTime" in p for p, _ in population)
    assert any(_years(parse(p["birthDate"]).start, NOW) < 12 for p, _ in population)


def test_observations_have_a_category_and_plausible_values(population):
    weights: dict[str, list[float]] = {"adult-female": [], "adult-male": [], "child": []}
    for patient, resources in population:
        birth = parse(patient["birthDate"]).start
        for obs in (r for r in resources if r["resourceType"] == "Observation"):
            code = obs["code"]["coding"][0]["code"]
            categories = {c["code"] for cat in obs["category"] for c in cat["coding"]}
            assert categories == ({"vital-signs"} if code in LOINC_VITALS else {"laboratory"}), obs
            assert code in LOINC_VITALS | LOINC_LABS
            age, value = _years(birth, parse(obs["effectiveDateTime"]).start), obs["valueQuantity"]["value"]
            if code == "29463-7":
                if age >= 18:
                    assert value >= 40, (patient, obs)  # no adult under 40 kg
                    weights[f"adult-{patient['gender']}"].append(value)
                else:
                    assert value <= (12 if age < 1 else 4 * age + 20 if age < 13 else 100), (age, value)
                    assert value >= (2 if age < 1 else 8 if age < 10 else 20 if age < 13 else 35), (age, value)
                    weights["child"].append(value)
            elif code == "8867-4":
                assert (50 <= value <= 110) if age >= 12 else (70 <= value <= 170)
            elif code == "8310-5":
                assert 35.5 <= value <= 38.5
            elif code == "8480-6":
                assert (90 <= value <= 170) if age >= 13 else (60 <= value <= 125)
    assert all(len(w) > 30 for w in weights.values())
    mean = {k: sum(v) / len(v) for k, v in weights.items()}
    assert mean["adult-male"] > mean["adult-female"] > mean["child"]


def test_conditions_suit_the_age_at_onset(population):
    children_with_conditions = children = adults_with_conditions = adults = 0
    for patient, resources in population:
        birth = parse(patient["birthDate"]).start
        conditions = [r for r in resources if r["resourceType"] == "Condition"]
        for condition in conditions:
            codings = {c["system"]: c["code"] for c in condition["code"]["coding"]}
            youngest, oldest = ONSET_AGES[codings["http://snomed.info/sct"]]
            assert "http://hl7.org/fhir/sid/icd-10-cm" in codings
            age = _years(birth, parse(condition["onsetDateTime"]).start)
            assert age >= youngest and (oldest is None or age <= oldest), (patient["birthDate"], condition)
        if _years(birth, NOW) < 18:
            children += 1
            children_with_conditions += len(conditions)
        else:
            adults += 1
            adults_with_conditions += len(conditions)
    assert children_with_conditions / children < adults_with_conditions / adults / 2  # not at adult rates
    assert {code for code, *_ in CONDITIONS} == set(ONSET_AGES)


def test_every_generated_resource_validates_as_r4b(population):
    counted = 0
    for patient, resources in population:
        for resource in (patient, *resources):
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            counted += 1
    assert counted > 15_000
