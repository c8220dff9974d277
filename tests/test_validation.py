"""conformance.validation: the R4 JSON Schema and the core invariants, on fixtures and on
payloads fhir.resources lets through; each problem names its line, element path and rule."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from conformance.validation import INVARIANT, SCHEMA, ValidationLog, validate
from conformance.validation import invariants, schema
from mock_server.population import compartment_for, generated_patients

FIXTURES = Path(__file__).resolve().parents[1] / "mock_server" / "fixtures"
GROUP = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "name": "cohort",
         "member": [{"entity": {"reference": "Patient/p1"}}]}


def _fixture_resources() -> list[dict]:
    return [json.loads(line) for f in sorted(FIXTURES.glob("*.ndjson")) for line in f.read_text().splitlines() if line]


def test_shipped_schema_is_the_recorded_hl7_file():
    data = schema.schema_bytes()
    assert hashlib.sha256(data).hexdigest() == schema.SCHEMA_SHA256
    assert json.loads(data)["$schema"] == "http://json-schema.org/draft-06/schema#"
    assert {"Group", "Task", "Patient", "Observation", "Condition", "Encounter", "OperationOutcome",
            "Bundle"} <= schema.resource_types()


def test_fixtures_and_generated_population_are_valid():
    resources = _fixture_resources()
    for _, _, patient in generated_patients(40):
        resources += [patient, *(r for *_, r in compartment_for(patient))]
    problems = {r["id"]: validate(r) for r in resources}
    assert len(resources) > 100 and not {k: v for k, v in problems.items() if v}


def test_bogus_group_type_is_a_required_binding_breach_with_line_and_path():
    from fhir.resources.R4B.group import Group
    bad = {**GROUP, "type": "bogus"}
    Group.model_validate(bad)   # fhir.resources accepts it: the reason for this package
    [problem] = validate(bad, line=7)
    assert (problem.kind, problem.line, problem.path) == (SCHEMA, 7, "Group.type")
    assert problem.rule == "schema enum: required binding or fixed code" and "'bogus'" in problem.message
    assert str(problem).startswith("line 7: Group.type: 'bogus' is not one of")


def test_actual_yes_is_not_a_boolean():
    from fhir.resources.R4B.group import Group
    bad = {**GROUP, "actual": "yes"}
    Group.model_validate(bad)   # coerced to True by fhir.resources
    problems = validate(bad, line=3)
    assert [(p.kind, p.path, p.rule) for p in problems if p.kind == SCHEMA] == [(SCHEMA, "Group.actual", "schema JSON type")]
    assert all(p.line == 3 for p in problems)


@pytest.mark.parametrize("change, path, rule", [
    ({"gender": "unknown-value"}, "Patient.gender", "schema enum: required binding or fixed code"),
    ({"birthDate": "1990-13-01"}, "Patient.birthDate", "schema primitive format"),
    ({"nickname": "Bob"}, "Patient", "schema unknown element"),
    ({"name": [{"given": "Ann"}]}, "Patient.name[0].given", "schema JSON type"),
])
def test_patient_schema_breaches(change, path, rule):
    patient = {"resourceType": "Patient", "id": "p1", **change}
    assert [(p.path, p.rule) for p in validate(patient)] == [(path, rule)]


def test_unknown_resource_type():
    [problem] = validate({"resourceType": "Patientt", "id": "x"})
    assert problem.rule == "resourceType" and "Patientt" in problem.message


def test_nested_resources_are_validated_against_their_own_type():
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": 1,
              "entry": [{"resource": {**GROUP, "type": "bogus"}, "search": {"mode": "match"}}]}
    assert [(p.path, p.kind) for p in validate(bundle)] == [("Bundle.entry[0].resource.type", SCHEMA)]
    contained = {"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Organization", "active": "no"}]}
    assert [p.path for p in validate(contained)] == ["Patient.contained[0].active"]


@pytest.mark.parametrize("resource, key, path", [
    ({**GROUP, "actual": False}, "grp-1", "Group"),
    ({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1},
      "dataAbsentReason": {"text": "asked"}}, "obs-6", "Observation"),
    ({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "referenceRange": [{"text": "n"}, {"type": {"text": "normal"}}]},
     "obs-3", "Observation.referenceRange[1]"),
    ({"resourceType": "Patient", "contact": [{"gender": "male"}]}, "pat-1", "Patient.contact[0]"),
    ({"resourceType": "Task", "status": "requested", "intent": "unknown", "authoredOn": "2024-02-01T00:00:00Z",
      "lastModified": "2024-01-01T00:00:00Z"}, "inv-1", "Task"),
    ({"resourceType": "Condition", "subject": {"reference": "Patient/p"}, "abatementDateTime": "2024-01-01",
      "clinicalStatus": {"coding": [{"system": invariants.CONDITION_CLINICAL, "code": "active"}]}}, "con-4", "Condition"),
    ({"resourceType": "Bundle", "type": "collection", "total": 3}, "bdl-1", "Bundle"),
    ({"resourceType": "Bundle", "type": "searchset", "entry": [{"fullUrl": "http://x/Patient/1/_history/2",
                                                              "resource": {"resourceType": "Patient"}}]},
     "bdl-8", "Bundle.entry[0]"),
    ({"resourceType": "Patient", "extension": [{"url": "http://x"}]}, "ext-1", "Patient.extension[0]"),
    ({"resourceType": "Patient", "maritalStatus": {}}, "ele-1", "Patient.maritalStatus"),
])
def test_invariant_breaches(resource, key, path):
    found = [(p.rule, p.path) for p in validate(resource) if p.kind == INVARIANT]
    assert found == [(key, path)], validate(resource)


def test_valid_invariant_cases_pass():
    task = {"resourceType": "Task", "status": "requested", "intent": "unknown",
            "authoredOn": "2024-01-01T00:00:00Z", "lastModified": "2024-02-01T00:00:00Z"}
    assert validate(task) == []
    assert validate(GROUP) == []
    assert validate({**GROUP, "member": [], "actual": False}) == [
        p for p in validate({**GROUP, "member": [], "actual": False}) if p.rule == "ele-1"]


@pytest.mark.parametrize("inv", [i for i in invariants.INVARIANTS if i.when], ids=lambda i: i.key)
def test_speed_guards_only_skip_what_is_trivially_true(inv):
    """Each guarded expression holds on a resource without the guard's elements (so skipping is sound)."""
    if inv.context:   # evaluated per item of the context element: none present, nothing to judge
        assert inv.when == (inv.context,)
        return
    rtype = "Patient" if inv.resource_type == "DomainResource" else inv.resource_type
    minimal = {"resourceType": rtype, "id": "x"}
    assert invariants._compiled(inv.expression)(minimal, {"resource": minimal}) in ([True], [])


def test_log_counts_and_keeps_a_few_examples():
    log = ValidationLog(keep=2)
    for line in range(1, 6):
        log.check({**GROUP, "type": "bogus"} if line % 2 else GROUP, line)
    assert (log.resources, log.invalid[SCHEMA], log.invalid[INVARIANT]) == (5, 3, 0)
    assert [p.line for p in log.examples[SCHEMA]] == [1, 3]
    assert log.summary(SCHEMA).startswith("3 of 5 resources break the FHIR R4 JSON Schema: line 1: Group.type")
    other = copy.deepcopy(log)
    log.merge(other)
    assert log.resources == 10 and log.invalid[SCHEMA] == 6 and len(log.examples[SCHEMA]) == 2


def test_generated_validator_agrees_with_jsonschema(monkeypatch):
    """Past FAST_AFTER resources of a type, fastjsonschema judges first: same verdicts, same problems."""
    cases = [GROUP, {**GROUP, "type": "bogus"}, {**GROUP, "actual": "yes"},
             {"resourceType": "Patient", "id": "p", "gender": "unknown-value", "birthDate": "1990-02-30x"},
             {"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Organization", "active": "no"}]},
             *_fixture_resources()[:30]]
    slow = [validate(r) for r in cases]
    monkeypatch.setattr(schema, "FAST_AFTER", 0)
    assert [validate(r) for r in cases] == slow
    assert sum(map(bool, slow)) == 4


def test_expect_valid_fails_the_schema_requirement_and_warns_on_invariants():
    from conformance import results as verdicts     # CheckRecord, begin, end live in results (issue 9)
    from conformance.expectations import expect_valid

    record = verdicts.CheckRecord("node", "resource-read-valid", ("FHIR-RESOURCE-VALID",))
    verdicts.begin(record, strict=False)
    try:
        expect_valid({**GROUP, "actual": False}, "read of Group/g1")          # grp-1 only: a warning
        assert list(record.warnings) == ["FHIR-RESOURCE-INVARIANTS"]
        assert "read of Group/g1: 1 of 1 resources break FHIR R4 invariants: Group: Can only" \
            in record.warnings["FHIR-RESOURCE-INVARIANTS"].message
        with pytest.raises(verdicts.RequirementFailed, match=r"\[FHIR-RESOURCE-VALID\] read: .*Group.type"):
            expect_valid({**GROUP, "type": "bogus"}, "read")
    finally:
        verdicts.end()
