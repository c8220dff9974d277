"""The mock's Group $export: async flow, parameters, content, faults, restart (Flask test client)."""
from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from conftest import GROUPS, PATIENTS, auth, patient_group
from mock_server import MockConfig, create_app
from mock_server import jobs
from mock_server.bulk import exporter
from mock_server.population import compartment_for, generated_patients

PERSON_GROUP = next(g for g in GROUPS if g["type"] == "person")
TEAM = next(g for g in GROUPS if g["type"] == "practitioner")
MEMBERS = {m["entity"]["reference"].split("/")[1] for m in PERSON_GROUP["member"]}


def local(url: str) -> str:
    return url.replace("http://localhost", "")


def kickoff(c, gid: str = PERSON_GROUP["id"], query: str = "", **kw: Any):
    return c.get(f"/Group/{gid}/$export{query}", headers={**auth(), **kw.pop("headers", {})}, **kw)


def wait(c, location: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.get(local(location), headers=auth())
        if r.status_code != 202:
            return r
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def files(c, manifest: dict) -> dict[str, list[dict]]:
    out = {}
    for entry in manifest["output"] + manifest["error"]:
        r = c.get(local(entry["url"]), headers=auth())
        assert r.status_code == 200 and r.mimetype == "application/fhir+ndjson"
        out[entry["type"]] = [json.loads(line) for line in r.get_data(as_text=True).splitlines()]
    return out


def export(c, query: str = "", gid: str = PERSON_GROUP["id"]) -> tuple[dict, dict[str, list[dict]]]:
    r = kickoff(c, gid, query)
    assert r.status_code == 202, r.get_data(as_text=True)
    done = wait(c, r.headers["Content-Location"])
    assert done.status_code == 200, done.get_data(as_text=True)
    manifest = done.get_json()
    return manifest, files(c, manifest)


def test_capability_declares_export(client):
    group = next(r for r in client.get("/metadata").get_json()["rest"][0]["resource"] if r["type"] == "Group")
    assert [o["name"] for o in group["operation"]] == ["export"]


def test_flow_and_content(client):
    r = kickoff(client, query="?_outputFormat=ndjson")
    assert r.status_code == 202 and r.headers["Content-Location"].startswith("http://localhost/bulk/status/")
    running = client.get(local(r.headers["Content-Location"]), headers=auth())
    assert running.status_code == 202 and running.headers["Retry-After"] == "1"
    assert re.match(r"^\d{1,3}% \(", running.headers["X-Progress"])  # leads with a percentage (SPEC §7)
    done = wait(client, r.headers["Content-Location"])
    assert done.mimetype == "application/json" and "Expires" in done.headers
    manifest = done.get_json()
    assert manifest["request"].endswith("?_outputFormat=ndjson") and manifest["requiresAccessToken"] is True
    got = files(client, manifest)
    assert {p["id"] for p in got["Patient"]} == MEMBERS
    assert set(got) == {"Patient", "Condition", "Encounter", "Observation"}
    expected = sum(1 for p in PATIENTS if p["id"] in MEMBERS for _ in compartment_for(p))
    assert sum(len(v) for k, v in got.items() if k != "Patient") == expected
    for rtype, resources in got.items():
        assert all(res["resourceType"] == rtype for res in resources)
        assert all(res["subject"]["reference"].split("/")[1] in MEMBERS for res in resources if rtype != "Patient")
    assert {e["count"] for e in manifest["output"]} and all(e["url"].startswith("http://") for e in manifest["output"])


def test_post_parameters_patient_type_since_until_elements(client):
    member = sorted(MEMBERS)[0]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{member}"}},
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_since", "valueInstant": "2020-01-01T00:00:00Z"},
        {"name": "_until", "valueInstant": "2023-01-01T00:00:00Z"}]}
    r = client.post(f"/Group/{PERSON_GROUP['id']}/$export", json=body, headers=auth())
    assert r.status_code == 202, r.get_data(as_text=True)
    got = files(client, wait(client, r.headers["Content-Location"]).get_json())
    assert set(got) <= {"Patient", "Observation"}
    for res in got.get("Observation", []):
        assert "2020-01-01" <= res["meta"]["lastUpdated"] <= "2023-01-01" and res["subject"]["reference"] == f"Patient/{member}"
    body["parameter"][0]["valueReference"]["reference"] = f"Patient/{next(p['id'] for p in PATIENTS if p['id'] not in MEMBERS)}"
    assert client.post(f"/Group/{PERSON_GROUP['id']}/$export", json=body, headers=auth()).status_code == 400
    _, got = export(client, "?_type=Patient&_elements=gender")
    assert all(set(p) == {"resourceType", "id", "meta", "gender"} and p["meta"]["tag"][0]["code"] == "SUBSETTED"
               for p in got["Patient"])


@pytest.mark.parametrize("query", ["?_outputFormat=text/csv", "?_since=yesterday", "?_type=not-a-type",
                                   "?_type=Patient,FhirckNoSuchType", "?_since=2024-13-01T00:00:00Z",
                                   "?_typeFilter=Patient%3Factive%3Dtrue", "?includeAssociatedData=LatestProvenanceResources",
                                   "?patient=Patient/x"])
def test_invalid_or_unsupported_parameters_are_400(client, query):
    r = kickoff(client, query=query)
    assert r.status_code == 400 and r.get_json()["resourceType"] == "OperationOutcome"


def test_lenient_handling_reports_ignored_parameters(client):
    r = kickoff(client, query="?_type=Patient&_typeFilter=Patient%3Factive%3Dtrue",
                headers={"Prefer": "respond-async, handling=lenient"})
    assert r.status_code == 202
    manifest = wait(client, r.headers["Content-Location"]).get_json()
    got = files(client, manifest)
    assert "_typeFilter" in got["OperationOutcome"][0]["issue"][0]["details"]["text"]


def test_team_exports_practitioners(client):
    _, got = export(client, gid=TEAM["id"])
    assert set(got) == {"Practitioner"}
    assert {p["id"] for p in got["Practitioner"]} == {m["entity"]["reference"].split("/")[1] for m in TEAM["member"]}


def test_unknown_group_auth_and_download_token(client):
    assert kickoff(client, "nope").status_code == 404
    assert client.get(f"/Group/{PERSON_GROUP['id']}/$export").status_code == 401
    manifest, _ = export(client)
    url = local(manifest["output"][0]["url"])
    assert client.get(url).status_code == 401
    assert client.get(url, headers={**auth(), "Accept": "application/fhir+ndjson"}).status_code == 200


def test_delete_removes_job_and_files(app, client):
    r = kickoff(client)
    location = local(r.headers["Content-Location"])
    manifest = wait(client, r.headers["Content-Location"]).get_json()
    job_id = location.rsplit("/", 1)[1]
    assert exporter.job_dir(app, job_id).is_dir()
    assert client.delete(location, headers=auth()).status_code == 202
    assert client.get(location, headers=auth()).status_code == 404
    assert client.get(local(manifest["output"][0]["url"]), headers=auth()).status_code == 404
    assert not exporter.job_dir(app, job_id).exists()


def test_polling_too_fast_is_429(make_app):
    c = make_app(export_poll_min=5.0, export_min_seconds=2.0).test_client()
    location = local(kickoff(c).headers["Content-Location"])
    assert c.get(location, headers=auth()).status_code == 202
    r = c.get(location, headers=auth())
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"


@pytest.mark.parametrize("fault, status, code", [("failed-job", 500, "exception"), ("transient-error", 503, "transient")])
def test_faults_on_status(make_app, fault, status, code):
    c = make_app(faults=frozenset({fault})).test_client()
    location = kickoff(c).headers["Content-Location"]
    time.sleep(0.5)
    r = c.get(local(location), headers=auth())
    assert r.status_code == status and r.get_json()["issue"][0]["code"] == code
    if fault == "transient-error":
        assert wait(c, location).status_code == 200


def test_expired_file_fault(make_app):
    c = make_app(faults=frozenset({"expired-file"})).test_client()
    done = wait(c, kickoff(c).headers["Content-Location"])
    assert done.status_code == 200
    assert c.get(local(done.get_json()["output"][0]["url"]), headers=auth()).status_code == 404


def test_jobs_and_files_survive_a_restart(tmp_path):
    db = str(tmp_path / "mock.sqlite3")
    first = create_app(MockConfig(db=db))
    c = first.test_client()
    done_location = kickoff(c).headers["Content-Location"]
    manifest = wait(c, done_location).get_json()
    jobs.shutdown(first)
    first.extensions["fhir.store"].close()
    slow = create_app(MockConfig(db=db, faults=frozenset({"slow-job"}), slow_job_seconds=0.3))
    pending = kickoff(slow.test_client()).headers["Content-Location"]
    time.sleep(0.1)
    jobs.shutdown(slow)  # interrupted mid-job
    slow.extensions["fhir.store"].close()
    second = create_app(MockConfig(db=db))
    try:
        c = second.test_client()
        assert c.get(local(done_location), headers=auth()).get_json() == manifest
        assert c.get(local(manifest["output"][0]["url"]), headers=auth()).status_code == 200
        assert wait(c, pending).status_code == 200
    finally:
        jobs.shutdown(second)
        second.extensions["fhir.store"].close()


def test_generated_population(make_app):
    app = make_app(patients=300)
    c = app.test_client()
    gid = "population-20240602-300"
    assert c.get(f"/Group/{gid}", headers=auth()).get_json()["quantity"] == 300
    manifest, got = export(c, "?_type=Patient,Condition", gid=gid)
    assert len(got["Patient"]) == 300 and {p["id"] for p in got["Patient"]} == {p for p, _, _ in generated_patients(300)}
    stamps = sorted(r["meta"]["lastUpdated"] for r in got["Condition"])
    assert stamps[0] < "2020" and stamps[-1] > "2023"
    _, recent = export(c, "?_type=Condition&_since=2023-01-01T00:00:00Z", gid=gid)
    assert 0 < len(recent["Condition"]) < len(got["Condition"])
    assert all(r["meta"]["lastUpdated"] >= "2023-01-01" for r in recent["Condition"])


def test_created_patient_group_exports_its_members(client, create):
    members = tuple(p["id"] for p in PATIENTS[:3])
    gid = create(patient_group(members=members))
    _, got = export(client, "?_type=Patient", gid=gid)
    assert {p["id"] for p in got["Patient"]} == set(members)


def test_cli_options_for_population_and_faults():
    from mock_server.__main__ import build_parser, main

    args = build_parser().parse_args(["--patients", "1000", "--fault", "slow-job", "--fault", "transient-error",
                                      "--retry-after", "2", "--poll-min", "0.5"])
    assert (args.patients, sorted(args.fault), args.retry_after, args.poll_min) == \
        (1000, ["slow-job", "transient-error"], 2, 0.5)
    assert main(["--fault", "no-such-fault"]) == 2
    with pytest.raises(ValueError, match="unknown fault"):
        MockConfig(db=":memory:", faults=frozenset({"nope"}))


def test_tasks_for_members_are_exported_as_read(client):
    """SPEC §4: Task with `for` belongs to the patient's compartment; only members' tasks are exported."""
    member, stranger = sorted(MEMBERS)[0], next(p["id"] for p in PATIENTS if p["id"] not in MEMBERS)
    requester = TEAM["member"][0]["entity"]["reference"]
    ids = {}
    for pid in (member, stranger):
        r = client.post("/Task", headers=auth(), json={
            "resourceType": "Task", "status": "requested", "intent": "unknown", "description": f"call {pid}",
            "for": {"reference": f"Patient/{pid}"}, "requester": {"reference": requester}})
        assert r.status_code == 201, r.get_data(as_text=True)
        ids[pid] = r.headers["Location"].rsplit("/", 1)[1]
    _, got = export(client, "?_type=Task")
    assert [t["id"] for t in got["Task"]] == [ids[member]]
    task = got["Task"][0]
    assert task["for"]["reference"] == f"Patient/{member}" and task["intent"] == "unknown"
    assert any(e["url"].endswith("task-permalink") and e["valueString"].startswith("http://localhost/")
               for e in task["extension"])


def test_variant_exports_referenced_practitioners_regardless_of_since(make_app):
    """Variant export-referenced-practitioners: the requester of an exported Task comes along, older than _since."""
    client = make_app(variants=frozenset({"export-referenced-practitioners"})).test_client()
    member = sorted(MEMBERS)[0]
    requester = TEAM["member"][0]["entity"]["reference"]
    import datetime as dt
    since = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")   # after the fixtures loaded
    r = client.post("/Task", headers=auth(), json={
        "resourceType": "Task", "status": "requested", "intent": "unknown", "description": "call",
        "for": {"reference": f"Patient/{member}"}, "requester": {"reference": requester}})
    assert r.status_code == 201, r.get_data(as_text=True)
    _, got = export(client, f"?_since={since}")
    practitioners = got.get("Practitioner", [])
    assert [f"Practitioner/{p['id']}" for p in practitioners] == [requester]
    assert practitioners[0]["meta"]["lastUpdated"] < since      # older than _since, and still exported
    _, typed = export(client, f"?_since={since}&_type=Task")
    assert "Practitioner" not in typed                           # _type still rules
