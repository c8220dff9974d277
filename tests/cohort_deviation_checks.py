"""Mock-level checks of the Bulk Cohort deviations (imported by test_mock_deviations.py: one function per
deviation, named after it, that passes only when the deviation is on)."""
from __future__ import annotations

from conftest import PATIENTS, auth
from test_mock_cohort import ASYNC, SNOMED, cohort, create, members
from test_mock_export import wait

__all__ = [
    "cohort_filters_ored", "cohort_member_narrowing_ignored", "cohort_unsupported_param_ignored",
    "cohort_date_ge_as_gt", "cohort_poll_201", "cohort_batch_response_no_location", "cohort_token_system_ignored",
    "cohort_comma_anded", "cohort_name_not_required", "cohort_delete_not_deleting", "cohort_search_name_ignored",
    "cohort_sync_invalid_filter_500",
]


def cohort_filters_ored(c):
    assert members(c, create(c, cohort("Patient?gender=female", "Patient?gender=male"))) == {p["id"] for p in PATIENTS}


def cohort_member_narrowing_ignored(c):
    one = PATIENTS[0]["id"]
    assert len(members(c, create(c, cohort("Patient?gender=female,male", members=(f"Patient/{one}",))))) > 1


def cohort_unsupported_param_ignored(c):
    assert c.post("/Group", json=cohort("Patient?gender=female&name=Smith"), headers=auth()).status_code == 201


def cohort_date_ge_as_gt(c):
    day = PATIENTS[0]["birthDate"]
    assert PATIENTS[0]["id"] not in members(c, create(c, cohort(f"Patient?birthdate=ge{day}")))


def cohort_poll_201(c):
    r = c.post("/Group", json=cohort("Patient?gender=female"), headers=ASYNC)
    assert wait(c, r.headers["Content-Location"]).status_code == 201


def cohort_batch_response_no_location(c):
    r = c.post("/Group", json=cohort("Patient?gender=female"), headers=ASYNC)
    assert "location" not in wait(c, r.headers["Content-Location"]).get_json()["entry"][0]["response"]


def cohort_token_system_ignored(c):
    assert members(c, create(c, cohort("Condition?code=http://example.org/other|44054006")))


def cohort_comma_anded(c):
    assert not members(c, create(c, cohort(f"Condition?code={SNOMED}|44054006,{SNOMED}|195967001")))


def cohort_name_not_required(c):
    assert c.post("/Group", json=cohort("Patient?gender=female", name=None), headers=auth()).status_code == 201


def cohort_delete_not_deleting(c):
    r = c.post("/Group", json=cohort("Patient?gender=female"), headers=auth())
    gid = r.headers["Location"].rsplit("/", 1)[1]
    assert c.delete(f"/Group/{gid}", headers=auth()).status_code == 204
    assert c.get(f"/Group/{gid}", headers=auth()).status_code == 200


def cohort_search_name_ignored(c):
    c.post("/Group", json=cohort("Patient?gender=female", name="Unfindable cohort"), headers=auth())
    assert c.get("/Group?name=Unfindable", headers=auth()).get_json()["total"] == 0


def cohort_sync_invalid_filter_500(c):
    assert c.post("/Group", json=cohort("Patient?gender=female&name=Smith"), headers=auth()).status_code == 500
