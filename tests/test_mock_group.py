"""Group create/read/update semantics of the mock (SPEC §2)."""
from __future__ import annotations

import pytest

from conftest import GROUPS, PATIENTS, PRACTITIONERS, assert_outcome, auth, patient_group, team

P1, P2, P3 = (p["id"] for p in PRACTITIONERS[:3])


def test_create_returns_201_location_and_empty_body(client):
    r = client.post("/Group", json=team(members=(P1,)), headers=auth())
    assert r.status_code == 201
    assert r.headers["Location"].startswith("http://localhost/Group/")
    assert r.data == b""
    assert r.headers["ETag"] == 'W/"1"'
    assert "Last-Modified" in r.headers


def test_read_shows_computed_fields(client, create):
    gid = create(team(responsibilities=("PROCESS_REFILL_REQUESTS",), members=(P1, P2), actual=False))
    r = client.get(f"/Group/{gid}", headers=auth())
    assert r.status_code == 200
    assert r.headers["ETag"] == 'W/"1"' and r.headers["Last-Modified"].endswith("GMT")
    g = r.get_json()
    assert g["id"] == gid and g["meta"]["versionId"] == "1"
    assert g["actual"] is True and g["quantity"] == 2 and g["name"] == "A Test Team"
    assert g["characteristic"] == [
        {"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": "PROCESS_REFILL_REQUESTS"}, "exclude": False}
    ]
    entity = g["member"][0]["entity"]
    assert entity["reference"] == f"Practitioner/{P1}" and entity["type"] == "Practitioner"
    assert entity["display"] == f"{PRACTITIONERS[0]['name'][0]['given'][0]} {PRACTITIONERS[0]['name'][0]['family']}"


def test_empty_arrays_are_omitted(client, create):
    g = client.get(f"/Group/{create(team())}", headers=auth()).get_json()
    assert "member" not in g and "characteristic" not in g and g["quantity"] == 0


def test_readonly_elements_are_ignored(client, create):
    body = team(members=(P1,), quantity=7, id="ignored", meta={"versionId": "9"})
    body["member"][0]["entity"]["display"] = "Someone Else"
    g = client.get(f"/Group/{create(body)}", headers=auth()).get_json()
    assert g["quantity"] == 1 and g["id"] != "ignored" and g["meta"]["versionId"] == "1"
    assert g["member"][0]["entity"]["display"] != "Someone Else"


def test_unknown_id_404(client):
    body = assert_outcome(client.get("/Group/nope", headers=auth()), 404, "not-found")
    assert body["issue"][0]["details"]["text"] == "Unknown Group resource 'nope'"


@pytest.mark.parametrize(
    "change, status",
    [
        ({"resourceType": "Patient"}, 400),
        ({"foo": 1}, 400),
        ({"actual": "true"}, 400),
        ({"name": 5}, 400),
        ({"name": ""}, 400),
        ({"member": {"entity": {"reference": "Practitioner/x"}}}, 400),
        ({"type": None}, 400),
        ({"type": "nonsense"}, 400),
        ({"type": "animal"}, 422),
        ({"type": "device"}, 422),
        ({"member": [{}]}, 400),
        ({"member": [{"entity": {"display": "x"}}]}, 400),
        ({"member": [{"entity": {"reference": "Practitioner/x", "bogus": 1}}]}, 400),
        ({"characteristic": [{"valueCodeableConcept": {"text": "REVIEW_COVERAGES"}}]}, 400),
        ({"characteristic": [{"code": {"text": "responsibility"}}]}, 400),
        ({"characteristic": [{"code": {"text": "other"}, "valueCodeableConcept": {"text": "PROCESS_REFILL_REQUESTS"}}]}, 422),
        ({"characteristic": [{"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": "MAKE_COFFEE"}}]}, 422),
        ({"characteristic": [{"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": "PROCESS_REFILL_REQUESTS"}, "exclude": True}]}, 422),
        ({"characteristic": [{"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": "PROCESS_REFILL_REQUESTS"}}] * 2}, 422),
        ({"member": [{"entity": {"reference": f"Patient/{PATIENTS[0]['id']}"}}]}, 422),
        ({"member": [{"entity": {"reference": "Practitioner/does-not-exist"}}]}, 422),
        ({"member": [{"entity": {"reference": "not a reference"}}]}, 422),
    ],
)
def test_invalid_team_is_rejected_and_nothing_stored(client, change, status):
    body = {**team(), **change}
    before = client.get("/Group?_count=0", headers=auth()).get_json()["total"]
    assert_outcome(client.post("/Group", json=body, headers=auth()), status, "invalid" if status == 400 else "business-rule")
    assert client.get("/Group?_count=0", headers=auth()).get_json()["total"] == before


@pytest.mark.parametrize("missing, status", [("type", 400), ("actual", 400), ("name", 422)])
def test_required_elements(client, missing, status):
    body = team()
    del body[missing]
    assert_outcome(client.post("/Group", json=body, headers=auth()), status)


def test_patient_group_rules(client, create):
    gid = create(patient_group(members=(PATIENTS[0]["id"], PATIENTS[1]["id"])))
    assert client.get(f"/Group/{gid}", headers=auth()).get_json()["quantity"] == 2
    bad = patient_group(members=(P1,))
    assert_outcome(client.post("/Group", json=bad, headers=auth()), 422, "business-rule")
    with_char = {**patient_group(), **{k: v for k, v in team(responsibilities=("PROCESS_CHANGE_REQUESTS",)).items() if k == "characteristic"}}
    assert_outcome(client.post("/Group", json=with_char, headers=auth()), 422, "business-rule")


def test_responsibility_held_by_fixture_team_is_refused(client):
    r = client.post("/Group", json=team(responsibilities=("REVIEW_COVERAGES",)), headers=auth())
    body = assert_outcome(r, 422, "business-rule")
    assert "REVIEW_COVERAGES" in body["issue"][0]["details"]["text"]


def test_update_replaces_content_and_bumps_version(client, create):
    gid = create(team(members=(P1,), responsibilities=("PROCESS_REFILL_REQUESTS",)))
    new = team(name="Renamed", members=(P2, P3), id=gid)
    r = client.put(f"/Group/{gid}", json=new, headers=auth())
    assert r.status_code == 200 and r.data == b"" and r.headers["ETag"] == 'W/"2"'
    g = client.get(f"/Group/{gid}", headers=auth()).get_json()
    assert g["name"] == "Renamed" and g["quantity"] == 2 and "characteristic" not in g
    assert g["meta"]["versionId"] == "2"


def test_update_keeps_own_and_frees_dropped_responsibilities(client, create):
    a = create(team(responsibilities=("PROCESS_REFILL_REQUESTS", "PROCESS_CHANGE_REQUESTS")))
    keep = team(responsibilities=("PROCESS_REFILL_REQUESTS", "PROCESS_CHANGE_REQUESTS"), id=a)
    assert client.put(f"/Group/{a}", json=keep, headers=auth()).status_code == 200
    drop = team(responsibilities=("PROCESS_REFILL_REQUESTS",), id=a)
    assert client.put(f"/Group/{a}", json=drop, headers=auth()).status_code == 200
    create(team(name="B", responsibilities=("PROCESS_CHANGE_REQUESTS",)))
    assert_outcome(client.post("/Group", json=team(name="C", responsibilities=("PROCESS_REFILL_REQUESTS",)), headers=auth()), 422)


def test_refused_update_changes_nothing(client, create):
    gid = create(team(name="Keep me", responsibilities=("PROCESS_REFILL_REQUESTS",)))
    bad = team(name="Changed", responsibilities=("PROCESS_REFILL_REQUESTS", "REVIEW_COVERAGES"), id=gid)
    assert_outcome(client.put(f"/Group/{gid}", json=bad, headers=auth()), 422, "business-rule")
    g = client.get(f"/Group/{gid}", headers=auth()).get_json()
    assert g["name"] == "Keep me" and g["meta"]["versionId"] == "1"
    # its own responsibility is still held
    assert_outcome(client.post("/Group", json=team(responsibilities=("PROCESS_REFILL_REQUESTS",)), headers=auth()), 422)


def test_update_id_rules(client, create):
    gid = create(team())
    assert_outcome(client.put(f"/Group/{gid}", json=team(), headers=auth()), 400, "invalid")
    assert_outcome(client.put(f"/Group/{gid}", json=team(id="other"), headers=auth()), 400, "invalid")
    assert_outcome(client.put("/Group/unknown", json=team(id="unknown"), headers=auth()), 404, "not-found")


def test_if_unmodified_since(client, create):
    gid = create(team())
    lm = client.get(f"/Group/{gid}", headers=auth()).headers["Last-Modified"]
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    body = team(id=gid)
    assert_outcome(client.put(f"/Group/{gid}", json=body, headers={**auth(), "If-Unmodified-Since": old}), 412, "conflict")
    assert_outcome(client.put(f"/Group/{gid}", json=body, headers={**auth(), "If-Unmodified-Since": "yesterday"}), 400)
    assert client.put(f"/Group/{gid}", json=body, headers={**auth(), "If-Unmodified-Since": lm}).status_code == 200


def test_if_match(client, create):
    gid = create(team())
    body = team(id=gid)
    assert_outcome(client.put(f"/Group/{gid}", json=body, headers={**auth(), "If-Match": 'W/"7"'}), 412, "conflict")
    assert client.put(f"/Group/{gid}", json=body, headers={**auth(), "If-Match": 'W/"1"'}).status_code == 200


def test_delete_is_405(client):
    gid = GROUPS[0]["id"]
    assert_outcome(client.delete(f"/Group/{gid}", headers=auth()), 405, "not-supported")
    assert client.get(f"/Group/{gid}", headers=auth()).status_code == 200


def test_fixtures_loaded(client):
    assert client.get("/Practitioner?_count=0", headers=auth()).get_json()["total"] == 25
    assert client.get("/Patient?_count=0", headers=auth()).get_json()["total"] == 120
    assert client.get("/Group?_count=0", headers=auth()).get_json()["total"] == 3
    p = client.get(f"/Patient/{PATIENTS[0]['id']}", headers=auth())
    assert p.status_code == 200 and p.get_json()["name"] == PATIENTS[0]["name"]
    assert_outcome(client.post("/Patient", json=PATIENTS[0], headers=auth()), 405, "not-supported")
    assert_outcome(client.put(f"/Patient/{PATIENTS[0]['id']}", json=PATIENTS[0], headers=auth()), 405)


def test_metadata(client):
    r = client.get("/metadata")
    cs = r.get_json()
    assert r.status_code == 200 and cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance" and cs["format"] == ["json"]
    rest = cs["rest"][0]
    ext = rest["security"]["extension"][0]["extension"][0]
    assert ext == {"url": "token", "valueUri": "http://localhost/auth/token/"}
    by_type = {r["type"]: r for r in rest["resource"]}
    group = by_type["Group"]
    # delete: Bulk Cohort groups only (Canvas Teams and Patient Groups still answer 405)
    assert {i["code"] for i in group["interaction"]} == {"read", "create", "update", "search-type", "delete"}
    assert {p["name"] for p in group["searchParam"]} == {"_id", "type", "name", "member"}
    assert {i["code"] for i in by_type["Patient"]["interaction"]} == {"read", "search-type"}


def test_persistence_across_restart(make_app, tmp_path):
    db = str(tmp_path / "mock.sqlite3")
    client = make_app(db=db).test_client()
    gid = client.post("/Group", json=team(responsibilities=("PROCESS_REFILL_REQUESTS",)), headers=auth()).headers["Location"].rsplit("/", 1)[1]
    again = make_app(db=db).test_client()
    assert again.get(f"/Group/{gid}", headers=auth()).get_json()["name"] == "A Test Team"
    assert again.get("/Group?_count=0", headers=auth()).get_json()["total"] == 4  # fixtures not duplicated
    assert_outcome(again.post("/Group", json=team(responsibilities=("PROCESS_REFILL_REQUESTS",)), headers=auth()), 422)
