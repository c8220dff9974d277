"""Each deviation changes exactly the behaviour it names (the baseline is tested elsewhere)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from conftest import GROUPS, PATIENTS, PRACTITIONERS, auth, patient_group, team
from export_deviation_checks import *  # noqa: F401,F403  (Group $export deviations)
from cohort_deviation_checks import *  # noqa: F401,F403  (Bulk Cohort deviations)
from smart_deviation_checks import *  # noqa: F401,F403  (SMART, TLS, declaration deviations)
from mock_server import MockConfig
from mock_server.deviations import DEVIATIONS

P1, P2 = PRACTITIONERS[0]["id"], PRACTITIONERS[1]["id"]
REQUIREMENTS = Path(__file__).resolve().parents[1] / "conformance" / "rules"


def _create(c, body):
    r = c.post("/Group", json=body, headers=auth())
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    return r.headers.get("Location", "").rsplit("/", 1)[-1]


def _read(c, gid):
    return c.get(f"/Group/{gid}", headers=auth()).get_json()


def _put(c, gid, body, **headers):
    return c.put(f"/Group/{gid}", json={**body, "id": gid}, headers={**auth(), **headers})


def responsibility_not_unique(c):
    assert c.post("/Group", json=team(responsibilities=("REVIEW_COVERAGES",)), headers=auth()).status_code == 201


def create_missing_location(c):
    r = c.post("/Group", json=team(), headers=auth())
    assert r.status_code == 201 and "Location" not in r.headers


def create_returns_200(c):
    assert c.post("/Group", json=team(), headers=auth()).status_code == 200


def type_enum_not_enforced(c):
    assert c.post("/Group", json=team(type="animal"), headers=auth()).status_code == 201


def errors_not_operationoutcome(c):
    r = c.get("/Group/nope", headers=auth())
    assert r.status_code == 404 and r.get_json() == {"error": "Unknown Group resource 'nope'"}


def search_ignores_type(c):
    assert c.get("/Group?type=person", headers=auth()).get_json()["total"] == 3


def paging_next_on_last_page(c):
    b = c.get("/Group?_count=2&_offset=2", headers=auth()).get_json()
    assert any(l["relation"] == "next" and "_offset=4" in l["url"] for l in b["link"])


def auth_not_enforced(c):
    assert c.get("/Group").status_code == 200


def scopes_not_enforced(c):
    assert c.post("/Group", json=team(), headers=auth("dev-readonly-token")).status_code == 201


def quantity_always_zero(c):
    assert _read(c, GROUPS[0]["id"])["quantity"] == 0


def actual_echoed(c):
    assert _read(c, _create(c, team(actual=False)))["actual"] is False


def if_unmodified_since_ignored(c):
    gid = _create(c, team())
    assert _put(c, gid, team(), **{"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    assert _put(c, gid, team(), **{"If-Match": 'W/"1"'}).status_code == 412  # If-Match still honoured


def readonly_rejected(c):
    assert c.post("/Group", json=team(quantity=0), headers=auth()).status_code == 400


def member_existence_unchecked(c):
    assert c.post("/Group", json=team(members=("missing",)), headers=auth()).status_code == 201


def member_kind_unchecked(c):
    body = team()
    body["member"] = [{"entity": {"reference": f"Patient/{PATIENTS[0]['id']}"}}]
    assert c.post("/Group", json=body, headers=auth()).status_code == 201


def patient_group_characteristic_allowed(c):
    body = {**patient_group(), "characteristic": team(responsibilities=("PROCESS_REFILL_REQUESTS",))["characteristic"]}
    assert c.post("/Group", json=body, headers=auth()).status_code == 201


def delete_allowed(c):
    gid = GROUPS[2]["id"]
    assert c.delete(f"/Group/{gid}", headers=auth()).status_code == 204
    assert c.get(f"/Group/{gid}", headers=auth()).status_code == 404


def count_ignored(c):
    assert len(c.get("/Patient?_count=3", headers=auth()).get_json()["entry"]) == 10


def post_search_ignores_body(c):
    r = c.post("/Group/_search", data="type=person", headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"})
    assert r.get_json()["total"] == 3


def update_id_mismatch_accepted(c):
    gid = _create(c, team())
    assert c.put(f"/Group/{gid}", json=team(id="other"), headers=auth()).status_code == 200


def dropped_responsibility_not_freed(c):
    gid = _create(c, team(responsibilities=("PROCESS_REFILL_REQUESTS",)))
    assert _put(c, gid, team()).status_code == 200
    assert c.post("/Group", json=team(responsibilities=("PROCESS_REFILL_REQUESTS",)), headers=auth()).status_code == 422


def keep_own_responsibility_rejected(c):
    gid = _create(c, team(responsibilities=("PROCESS_REFILL_REQUESTS",)))
    assert _put(c, gid, team(responsibilities=("PROCESS_REFILL_REQUESTS",))).status_code == 422


def unknown_elements_accepted(c):
    assert c.post("/Group", json=team(colour="blue"), headers=auth()).status_code == 201


def empty_strings_accepted(c):
    assert c.post("/Group", json=team(name=""), headers=auth()).status_code == 201


def name_not_required(c):
    body = team()
    del body["name"]
    assert c.post("/Group", json=body, headers=auth()).status_code == 201


def update_keeps_old_members(c):
    gid = _create(c, team(members=(P1,)))
    assert _put(c, gid, team(members=(P2,))).status_code == 200
    assert _read(c, gid)["member"][0]["entity"]["reference"] == f"Practitioner/{P1}"


def not_found_as_400(c):
    r = c.get("/Group/nope", headers=auth())
    assert r.status_code == 400 and r.get_json()["issue"][0]["code"] == "invalid"


def rejected_create_stored(c):
    assert c.post("/Group", json=team(name="Ghost", members=("missing",)), headers=auth()).status_code == 422
    assert c.get("/Group?name=Ghost", headers=auth()).get_json()["total"] == 1


def last_modified_missing(c):
    r = c.get(f"/Group/{GROUPS[0]['id']}", headers=auth())
    assert r.status_code == 200 and "Last-Modified" not in r.headers


def if_match_malformed_ignored(c):
    gid = _create(c, patient_group(name="Tagged"))
    assert _put(c, gid, patient_group(name="Tagged again"), **{"If-Match": "1"}).status_code == 200


def wrong_json_types_accepted(c):
    assert c.post("/Group", json=team(actual="true"), headers=auth()).status_code == 201


def read_actual_not_boolean(c):
    assert _read(c, GROUPS[0]["id"])["actual"] == "yes"
    assert all(e["resource"]["actual"] == "yes" for e in c.get("/Group?_count=5", headers=auth()).get_json()["entry"])


def read_group_not_actual(c):
    group = _read(c, GROUPS[0]["id"])
    assert group["member"] and group["actual"] is False


from mock_task_deviation_checks import *  # noqa: E402,F401,F403  (the Task deviations' checks)

CHECKS = {name.replace("_", "-"): fn for name, fn in list(globals().items()) if callable(fn) and name.replace("_", "-") in DEVIATIONS}


def test_every_deviation_has_a_check():
    assert set(CHECKS) == set(DEVIATIONS)


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_deviation_changes_its_behaviour(make_app, name):
    CHECKS[name](make_app(deviations=frozenset({name})).test_client())


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_check_fails_without_the_deviation(make_app, name):
    """The same assertion does not hold on the conforming mock, so each check is meaningful."""
    with pytest.raises(AssertionError):
        CHECKS[name](make_app().test_client())


def test_breaks_are_known_requirement_ids():
    known = {r["id"] for f in REQUIREMENTS.glob("*.toml") for r in tomllib.loads(f.read_text())["requirement"]}
    for d in DEVIATIONS.values():
        assert d.breaks and set(d.breaks) <= known, d


def test_unknown_deviation_is_a_value_error():
    with pytest.raises(ValueError, match="valid names: .*actual-echoed"):
        MockConfig(db=":memory:", deviations=frozenset({"no-such-thing"}))
