"""The mock's Bulk Cohort API (SPEC §5): async and sync create, validation, its own filter
evaluator (checked against hand-computed answers on the generated population), read,
search by name, delete, cohort export and Patient-level export."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from conftest import PATIENTS, assert_outcome, auth
from test_mock_export import PERSON_GROUP, MEMBERS, export, local, wait

MF = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
PROFILE = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"
SNOMED, ACT = "http://snomed.info/sct", "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ASYNC = {**auth(), "Prefer": "respond-async"}


def cohort(*expressions: str, members: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Group", "meta": {"profile": [PROFILE]}, "name": "A cohort", "type": "person",
        "actual": bool(members),
        "modifierExtension": [{"url": MF, "valueExpression": {"language": "application/x-fhir-query",
                                                              "expression": e}} for e in expressions]}
    if members:
        body["member"] = [{"entity": {"reference": m}} for m in members]
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def create_async(c, body: dict[str, Any]):
    r = c.post("/Group", json=body, headers=ASYNC)
    assert r.status_code == 202, r.get_data(as_text=True)
    return wait(c, r.headers["Content-Location"])


def create(c, body: dict[str, Any]) -> str:
    done = create_async(c, body)
    assert done.status_code == 200, done.get_data(as_text=True)
    return done.get_json()["entry"][0]["response"]["location"].split("/")[1]


def members(c, gid: str) -> set[str]:
    _, out = export(c, "?_type=Patient", gid)
    return {p["id"] for p in out.get("Patient", [])}


def compartment(c) -> dict[str, list[dict]]:
    r = c.get("/Patient/$export", headers=auth())
    assert r.status_code == 202
    done = wait(c, r.headers["Content-Location"])
    out = {}
    for entry in done.get_json()["output"]:
        body = c.get(local(entry["url"]), headers=auth()).get_data(as_text=True)
        out[entry["type"]] = [json.loads(line) for line in body.splitlines()]
    return out


@pytest.fixture(scope="module")
def data():
    """The population through a Patient-level export (computed once per module)."""
    from mock_server import MockConfig, create_app

    app = create_app(MockConfig(db=":memory:"))
    try:
        yield compartment(app.test_client())
    finally:
        app.extensions["fhir.store"].close()


def patients_with(data, rtype: str, test) -> set[str]:
    return {r["subject"]["reference"].split("/")[1] for r in data[rtype] if test(r)}


def test_patient_export_holds_every_patient_and_compartment(client, data):
    assert {p["id"] for p in data["Patient"]} == {p["id"] for p in PATIENTS}
    assert {"Condition", "Encounter", "Observation"} <= set(data)
    ops = next(r for r in client.get("/metadata").get_json()["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"read", "search-type"} <= {i["code"] for i in ops["interaction"]}
    assert [o["name"] for o in ops["operation"]] == ["export"]


def test_capability_statement_declares_the_cohort_profile(client):
    group = next(r for r in client.get("/metadata").get_json()["rest"][0]["resource"] if r["type"] == "Group")
    assert PROFILE in group["supportedProfile"]
    assert "delete" in {i["code"] for i in group["interaction"]}
    assert "computed on the fly" in group["documentation"] and "value-quantity" in group["documentation"]


def test_async_create_polls_202_then_batch_response(make_app):
    c = make_app(cohort_min_seconds=0.4).test_client()
    r = c.post("/Group", json=cohort("Patient?gender=female"), headers=ASYNC)
    assert r.status_code == 202 and r.headers["Content-Location"].startswith("http://localhost/cohort/status/")
    first = c.get(local(r.headers["Content-Location"]), headers=auth())
    assert first.status_code == 202 and first.headers["Retry-After"]
    done = wait(c, r.headers["Content-Location"])
    assert done.status_code == 200
    bundle = done.get_json()
    assert bundle["type"] == "batch-response" and bundle["entry"][0]["response"]["status"] == "201 Created"
    gid = bundle["entry"][0]["response"]["location"].split("/")[1]
    read = c.get(f"/Group/{gid}", headers=auth()).get_json()
    assert read["name"] == "A cohort" and read["meta"]["profile"] == [PROFILE]
    assert read["modifierExtension"][0]["valueExpression"]["expression"] == "Patient?gender=female"
    assert "extension" not in read  # computed at export: no members-refreshed


def test_sync_create_answers_201(client):
    r = client.post("/Group", json=cohort("Patient?gender=male"), headers=auth())
    assert r.status_code == 201 and "/Group/" in r.headers["Location"]


def test_async_job_failure_is_an_operation_outcome(client):
    done = create_async(client, cohort("Patient?gender=male", members=("Patient/no-such-patient",)))
    assert_outcome(done, 422)


@pytest.mark.parametrize("body, text", [
    (cohort("Patient?gender=male", name=None), "name"),
    (cohort("Patient?gender=male", characteristic=[{"code": {"text": "x"}, "valueBoolean": True, "exclude": False}]),
     "characteristic"),
    (cohort(), "member-filter"),
    (cohort("Condition?verification-status=confirmed"), "verification-status"),
    (cohort("Condition?code:text=diabetes"), ":text"),
    (cohort("Condition?code=x&_sort=_id"), "_sort"),
    (cohort("Condition?code=x&_count=5"), "_count"),
    (cohort("Condition,Encounter?code=x"), "Condition,Encounter"),
    (cohort("Condition"), "Type?parameters"),
    (cohort("Patient?birthdate=ap2000"), "ap"),
    (cohort("Patient?birthdate=ge2000-13"), "2000-13"),
    (cohort("MedicationRequest?code=x"), "MedicationRequest"),
    (cohort("Patient?gender=male", members=("Practitioner/x",)), "Practitioner/x"),
])
def test_invalid_cohorts_are_400_naming_the_part(client, body, text):
    for headers in (auth(), ASYNC):
        r = client.post("/Group", json=body, headers=headers)
        outcome = assert_outcome(r, 400)
        assert text in outcome["issue"][0]["details"]["text"]


def test_wrong_language_is_refused(client):
    body = cohort("Patient?gender=male")
    body["modifierExtension"][0]["valueExpression"]["language"] = "text/cql"
    assert "text/cql" in assert_outcome(client.post("/Group", json=body, headers=ASYNC), 400)["issue"][0]["details"]["text"]


def test_filters_are_anded_and_evaluated_with_fhir_semantics(client, data):
    diabetes = patients_with(data, "Condition", lambda r: r["code"]["coding"][0]["code"] == "44054006")
    amb = patients_with(data, "Encounter", lambda r: r["class"]["code"] == "AMB")
    assert members(client, create(client, cohort(f"Condition?code={SNOMED}|44054006"))) == diabetes
    assert members(client, create(client, cohort("Condition?code=44054006"))) == diabetes
    assert members(client, create(client, cohort("Condition?code=|44054006"))) == set()
    both = create(client, cohort(f"Condition?code={SNOMED}|44054006", f"Encounter?class={ACT}|AMB"))
    assert members(client, both) == diabetes & amb and diabetes - amb and amb - diabetes
    asthma = patients_with(data, "Condition", lambda r: r["code"]["coding"][0]["code"] == "195967001")
    assert members(client, create(client, cohort("Condition?code=44054006,195967001"))) == diabetes | asthma


def test_dates_prefixes_and_partial_precision(client, data):
    born = {p["id"]: p["birthDate"] for p in data["Patient"]}
    day = sorted(born.values())[len(born) // 2]
    assert members(client, create(client, cohort(f"Patient?birthdate=ge{day}"))) == {i for i, d in born.items() if d >= day}
    assert members(client, create(client, cohort(f"Patient?birthdate=gt{day}"))) == {i for i, d in born.items() if d > day}
    year = day[:4]
    assert members(client, create(client, cohort(f"Patient?birthdate={year}"))) == {
        i for i, d in born.items() if d.startswith(year)}
    in_range = create(client, cohort("Encounter?date=ge2022-01&date=lt2023"))
    expected = patients_with(data, "Encounter", lambda r: r["period"]["end"] >= "2022-01" and r["period"]["start"] < "2023")
    assert members(client, in_range) == expected


def test_quantity_comparators(client, data):
    high = patients_with(data, "Observation", lambda r: r["code"]["coding"][0]["code"] == "2339-0"
                         and r["valueQuantity"]["value"] >= 200)
    gid = create(client, cohort("Observation?code=2339-0&value-quantity=ge200|http://unitsofmeasure.org|mg/dL"))
    assert members(client, gid) == high


def test_member_narrows_patients_and_groups(client, data):
    female = {p["id"] for p in data["Patient"] if p["gender"] == "female"}
    some = sorted(p["id"] for p in data["Patient"])[:10]
    narrowed = create(client, cohort("Patient?gender=female", members=tuple(f"Patient/{p}" for p in some)))
    assert members(client, narrowed) == female & set(some)
    by_group = create(client, cohort("Patient?gender=female", members=(f"Group/{PERSON_GROUP['id']}",)))
    assert members(client, by_group) == female & MEMBERS
    of_cohort = create(client, cohort("Condition?code=44054006", members=(f"Group/{narrowed}",)))
    diabetes = patients_with(data, "Condition", lambda r: r["code"]["coding"][0]["code"] == "44054006")
    assert members(client, of_cohort) == female & set(some) & diabetes


def test_full_cohort_export_has_members_and_their_compartments(client):
    gid = create(client, cohort("Patient?gender=female"))
    _, out = export(client, "", gid)
    ids = {p["id"] for p in out["Patient"]}
    assert ids and all(r["subject"]["reference"].split("/")[1] in ids for t in ("Condition", "Encounter", "Observation")
                       for r in out[t])


def test_search_by_name_and_delete(client):
    gid = create(client, cohort("Patient?gender=female", name="Findable cohort"))
    found = client.get("/Group?name=Findable", headers=auth()).get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == [gid]
    assert client.delete(f"/Group/{gid}", headers=auth()).status_code == 204
    assert_outcome(client.get(f"/Group/{gid}", headers=auth()), 404)
    # Canvas groups still cannot be deleted
    assert_outcome(client.delete(f"/Group/{PERSON_GROUP['id']}", headers=auth()), 405)


def test_cohort_cannot_be_updated(client):
    gid = create(client, cohort("Patient?gender=female"))
    r = client.put(f"/Group/{gid}", json={"resourceType": "Group", "id": gid, "type": "person", "actual": True,
                                          "name": "x"}, headers=auth())
    assert_outcome(r, 405)


def test_cohort_job_is_quick(client):
    started = time.monotonic()
    create(client, cohort("Patient?gender=female"))
    assert time.monotonic() - started < 2
