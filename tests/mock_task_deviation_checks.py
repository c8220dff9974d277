"""One behaviour check per Task deviation, for tests/test_mock_deviations.py (imported there).

Each function passes with its deviation on and fails (AssertionError) on the conforming mock.
"""
from __future__ import annotations

from typing import Any

from conftest import PATIENTS, PRACTITIONERS, auth, team

GROUP_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-group"
_P1, _P2 = PRACTITIONERS[0]["id"], PRACTITIONERS[1]["id"]
_PT = PATIENTS[0]["id"]

__all__ = [
    "task_owner_kept_when_omitted", "task_restriction_kept_when_omitted", "task_input_kept_when_omitted",
    "task_description_kept_when_omitted", "task_authored_cleared_when_omitted", "task_group_cleared_when_omitted",
    "task_notes_replaced", "task_intent_not_enforced", "task_owner_kind_unchecked", "task_label_search_ignored",
    "task_status_search_ignored", "task_sort_ignored", "task_due_lt_as_le", "task_group_display_stale",
]


def _team(c, name: str = "Team T") -> str:
    r = c.post("/Group", json=team(name=name), headers=auth())
    return r.headers["Location"].rsplit("/", 1)[1]


def _task(c, **extra: Any) -> tuple[str, dict[str, Any]]:
    body = {"resourceType": "Task", "status": "requested", "intent": "unknown", "description": "D",
            "requester": {"reference": f"Practitioner/{_P1}"}, "owner": {"reference": f"Practitioner/{_P2}"},
            "authoredOn": "2024-01-01T00:00:00Z", "restriction": {"period": {"end": "2024-02-01T00:00:00Z"}},
            "input": [{"type": {"text": "label"}, "valueString": "L1"}],
            "note": [{"text": "n1", "authorReference": {"reference": f"Practitioner/{_P1}"}}], **extra}
    r = c.post("/Task", json=body, headers=auth())
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.headers["Location"].rsplit("/", 1)[1], body


def _update_without(c, field: str, **extra: Any) -> dict[str, Any]:
    tid, body = _task(c, **extra)
    new = {k: v for k, v in body.items() if k not in (field, "note")}
    r = c.put(f"/Task/{tid}", json={**new, "id": tid}, headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    return c.get(f"/Task/{tid}", headers=auth()).get_json()


def task_owner_kept_when_omitted(c):
    assert (_update_without(c, "owner").get("owner") or {}).get("reference") == f"Practitioner/{_P2}"


def task_restriction_kept_when_omitted(c):
    assert "restriction" in _update_without(c, "restriction")


def task_input_kept_when_omitted(c):
    assert [i["valueString"] for i in _update_without(c, "input").get("input", [])] == ["L1"]


def task_description_kept_when_omitted(c):
    assert _update_without(c, "description")["description"] == "D"


def task_authored_cleared_when_omitted(c):
    assert "authoredOn" not in _update_without(c, "authoredOn")


def task_group_cleared_when_omitted(c):
    gid = _team(c)
    t = _update_without(c, "extension", extension=[{"url": GROUP_EXT, "valueReference": {"reference": f"Group/{gid}"}}])
    assert all(e["url"] != GROUP_EXT for e in t["extension"])


def task_notes_replaced(c):
    tid, body = _task(c)
    new = {**body, "id": tid, "note": [{"text": "n2", "authorReference": {"reference": f"Practitioner/{_P1}"}}]}
    assert c.put(f"/Task/{tid}", json=new, headers=auth()).status_code == 200
    assert [n["text"] for n in c.get(f"/Task/{tid}", headers=auth()).get_json()["note"]] == ["n2"]


def task_intent_not_enforced(c):
    _task(c, intent="order")


def task_owner_kind_unchecked(c):
    _task(c, owner={"reference": f"Patient/{_PT}"})


def task_label_search_ignored(c):
    _task(c)
    _task(c, input=[{"type": {"text": "label"}, "valueString": "L2"}])
    assert c.get("/Task?label=L2", headers=auth()).get_json()["total"] == 2


def task_status_search_ignored(c):
    _task(c)
    assert c.get("/Task?status=completed", headers=auth()).get_json()["total"] == 1


def task_sort_ignored(c):
    first, _ = _task(c, restriction={"period": {"end": "2024-03-01T00:00:00Z"}})
    second, _ = _task(c, restriction={"period": {"end": "2024-01-01T00:00:00Z"}})
    ids = [e["resource"]["id"] for e in c.get("/Task?_sort=due-date", headers=auth()).get_json()["entry"]]
    assert ids == [first, second]


def task_due_lt_as_le(c):
    _task(c)
    assert c.get("/Task?due=lt2024-02-01T00:00:00Z", headers=auth()).get_json()["total"] == 1


def task_group_display_stale(c):
    gid = _team(c, "Before")
    tid, _ = _task(c, extension=[{"url": GROUP_EXT, "valueReference": {"reference": f"Group/{gid}"}}])
    assert c.put(f"/Group/{gid}", json=team(name="After", id=gid), headers=auth()).status_code == 200
    t = c.get(f"/Task/{tid}", headers=auth()).get_json()
    assert t["extension"][0]["valueReference"]["display"] == "Before"
