"""Mock-level checks of the export deviations (imported by test_mock_deviations.py: one function per
deviation, named after it, that passes only when the deviation is on)."""
from __future__ import annotations

import json
import time

from conftest import PRACTITIONERS, auth, patient_group
from test_mock_export import MEMBERS, PERSON_GROUP, files, kickoff, local, wait

__all__ = [
    "export_content_location_missing", "export_request_no_query", "export_non_member_patient",
    "export_missing_member", "export_foreign_compartment", "export_type_ignored", "export_since_ignored",
    "export_delete_not_stopping", "export_download_without_token", "export_retry_after_missing",
    "export_output_url_relative", "export_wrong_line_type", "export_unknown_group_accepted",
    "export_output_format_strict", "export_kickoff_auth_not_enforced", "export_file_content_type_wrong",
    "export_invalid_binding", "export_invariant_broken",
    "export_unknown_type_accepted", "export_malformed_since_accepted", "export_empty_group_stuck",
    "export_unreadable_member_silent", "export_drops_tasks",
]


def _manifest(c, query: str = "") -> dict:
    r = kickoff(c, query=query)
    assert r.status_code == 202
    return wait(c, r.headers["Content-Location"]).get_json()


def _raw(c, manifest: dict) -> dict[str, list[dict]]:
    out = {}
    for e in manifest["output"]:
        body = c.get(local(e["url"]) if e["url"].startswith("http") else e["url"], headers=auth()).get_data(as_text=True)
        out[e["type"]] = [json.loads(line) for line in body.splitlines()]
    return out


def export_content_location_missing(c):
    r = kickoff(c)
    assert r.status_code == 202 and "Content-Location" not in r.headers


def export_request_no_query(c):
    assert "?" not in _manifest(c, "?_type=Patient")["request"]


def export_non_member_patient(c):
    assert {p["id"] for p in files(c, _manifest(c, "?_type=Patient"))["Patient"]} - MEMBERS


def export_missing_member(c):
    assert MEMBERS - {p["id"] for p in files(c, _manifest(c, "?_type=Patient"))["Patient"]}


def export_foreign_compartment(c):
    got = files(c, _manifest(c, "?_type=Condition,Encounter,Observation"))
    assert any(r["subject"]["reference"] == "Patient/not-a-member" for rs in got.values() for r in rs)


def export_type_ignored(c):
    assert {e["type"] for e in _manifest(c, "?_type=Patient")["output"]} != {"Patient"}


def export_since_ignored(c):
    got = files(c, _manifest(c, "?_type=Condition&_since=2023-01-01T00:00:00Z"))
    assert any(r["meta"]["lastUpdated"] < "2023" for r in got["Condition"])


def export_delete_not_stopping(c):
    r = kickoff(c)
    assert c.delete(local(r.headers["Content-Location"]), headers=auth()).status_code == 202
    assert wait(c, r.headers["Content-Location"]).status_code == 200


def export_download_without_token(c):
    assert c.get(local(_manifest(c)["output"][0]["url"])).status_code == 200


def export_retry_after_missing(c):
    r = c.get(local(kickoff(c).headers["Content-Location"]), headers=auth())
    assert r.status_code == 202 and "Retry-After" not in r.headers


def export_output_url_relative(c):
    assert all(e["url"].startswith("/bulk/files/") for e in _manifest(c)["output"])


def export_wrong_line_type(c):
    assert all(p["resourceType"] == "Observation" for p in _raw(c, _manifest(c, "?_type=Patient"))["Patient"])


def export_unknown_group_accepted(c):
    assert kickoff(c, "no-such-group").status_code == 202


def export_output_format_strict(c):
    assert kickoff(c, query="?_outputFormat=ndjson").status_code == 400


def export_kickoff_auth_not_enforced(c):
    assert c.get(f"/Group/{PERSON_GROUP['id']}/$export").status_code == 202


def export_file_content_type_wrong(c):
    r = c.get(local(_manifest(c)["output"][0]["url"]), headers=auth())
    assert r.status_code == 200 and r.mimetype == "application/json"


def export_invalid_binding(c):
    patients = _raw(c, _manifest(c, "?_type=Patient"))["Patient"]
    assert patients and all(p["gender"] == "unknown-value" for p in patients)


def export_invariant_broken(c):
    observations = _raw(c, _manifest(c, "?_type=Observation"))["Observation"]
    assert observations and all("dataAbsentReason" in o and "valueQuantity" in o for o in observations)


def export_unknown_type_accepted(c):
    assert _manifest(c, "?_type=FhirckNoSuchType")["output"] == []


def export_malformed_since_accepted(c):
    assert _manifest(c, "?_since=yesterday")["output"] == []


def export_empty_group_stuck(c):
    r = c.post("/Group", json=patient_group("Empty"), headers=auth())
    location = kickoff(c, gid=r.headers["Location"].rsplit("/", 1)[-1]).headers["Content-Location"]
    for _ in range(8):          # the conforming mock completes within export_min_seconds (0.3 s)
        time.sleep(0.2)
        assert c.get(local(location), headers=auth()).status_code == 202


def export_unreadable_member_silent(c):
    manifest = _manifest(c)
    exported = {p["id"] for p in _raw(c, manifest)["Patient"]}
    assert len(exported) == len(MEMBERS) - 1 and manifest["error"] == []


def export_drops_tasks(c):
    member = min(MEMBERS)
    for n in range(2):
        task = {"resourceType": "Task", "status": "requested", "intent": "unknown", "description": f"t{n}",
                "requester": {"reference": f"Practitioner/{PRACTITIONERS[0]['id']}"},
                "for": {"reference": f"Patient/{member}"}}
        assert c.post("/Task", json=task, headers=auth()).status_code == 201
    assert len(_raw(c, _manifest(c, "?_type=Task")).get("Task", [])) == 1
