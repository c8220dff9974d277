"""Task semantics of the mock (SPEC §3): validation, read view, update omission rules, search."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from conftest import PATIENTS, PRACTITIONERS, assert_outcome, auth, patient_group, team

GROUP_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-group"
PERMALINK_EXT = "http://schemas.canvasmedical.com/fhir/extensions/task-permalink"
P1, P2, P3 = (p["id"] for p in PRACTITIONERS[:3])
PT1, PT2 = (p["id"] for p in PATIENTS[:2])


def task(team_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Task", "status": "requested", "intent": "unknown", "description": "Call the patient",
        "requester": {"reference": f"Practitioner/{P1}"}, "owner": {"reference": f"Practitioner/{P2}"},
        "for": {"reference": f"Patient/{PT1}"}, "authoredOn": "2023-09-22T14:00:00.000Z",
        "restriction": {"period": {"end": "2023-09-23T14:00:00.000Z"}},
        "note": [{"text": "first", "time": "2023-09-22T14:00:00Z", "authorReference": {"reference": f"Practitioner/{P1}"}}],
        "input": [{"type": {"text": "label"}, "valueString": "Urgent"}],
    }
    if team_id:
        body["extension"] = [{"url": GROUP_EXT, "valueReference": {"reference": f"Group/{team_id}"}}]
    body.update(extra)
    return body


@pytest.fixture
def new_team(create):
    return create(team(name="Payment Collection"))


@pytest.fixture
def make_task(client):
    def do(body: dict[str, Any]) -> str:
        r = client.post("/Task", json=body, headers=auth())
        assert r.status_code == 201, r.get_data(as_text=True)
        assert r.data == b"" and r.headers["Location"].startswith("http://localhost/Task/")
        return r.headers["Location"].rsplit("/", 1)[1]
    return do


def read(client, tid: str) -> dict[str, Any]:
    r = client.get(f"/Task/{tid}", headers=auth())
    assert r.status_code == 200 and "Last-Modified" in r.headers
    return r.get_json()


def put(client, tid: str, body: dict[str, Any], **headers: str):
    return client.put(f"/Task/{tid}", json={**body, "id": tid}, headers={**auth(), **headers})


def test_read_view(client, new_team, make_task):
    t = read(client, make_task(task(new_team)))
    group_ext, permalink = t["extension"]
    assert group_ext == {"url": GROUP_EXT, "valueReference": {"reference": f"Group/{new_team}", "type": "Group",
                                                             "display": "Payment Collection"}}
    assert permalink["url"] == PERMALINK_EXT and permalink["valueString"].startswith("http://localhost/permalinks/")
    assert t["requester"] == {"reference": f"Practitioner/{P1}", "type": "Practitioner"}
    assert t["for"]["type"] == "Patient" and t["owner"]["type"] == "Practitioner"
    assert t["authoredOn"] == "2023-09-22T14:00:00+00:00"
    assert t["restriction"] == {"period": {"end": "2023-09-23T14:00:00+00:00"}}
    assert t["note"][0]["time"] == "2023-09-22T14:00:00+00:00" and t["note"][0]["authorReference"]["type"] == "Practitioner"
    assert t["input"] == [{"type": {"text": "label"}, "valueString": "Urgent"}]
    assert t["lastModified"] and t["intent"] == "unknown"


def test_defaults_and_display_follows_rename(client, new_team, make_task):
    body = task(new_team)
    del body["authoredOn"], body["note"][0]["time"]
    tid = make_task(body)
    t = read(client, tid)
    assert t["authoredOn"].startswith("20") and t["note"][0]["time"].startswith("20")
    assert client.put(f"/Group/{new_team}", json=team(name="Renamed", id=new_team), headers=auth()).status_code == 200
    assert read(client, tid)["extension"][0]["valueReference"]["display"] == "Renamed"


def test_read_only_elements_are_ignored(client, new_team, make_task):
    t = read(client, make_task(task(new_team)))
    again = copy.deepcopy(t)
    again["extension"][1]["valueString"] = "http://elsewhere/x"
    again["lastModified"] = "2001-01-01T00:00:00Z"
    assert put(client, t["id"], again).status_code == 200
    after = read(client, t["id"])
    assert after["extension"][1]["valueString"] == t["extension"][1]["valueString"]
    assert len(after["note"]) == 2   # the note sent back was appended again


@pytest.mark.parametrize(
    "change, status",
    [
        ({"resourceType": "Group"}, 400), ({"status": "open"}, 400), ({"status": "draft"}, 422), ({"status": ""}, 400),
        ({"intent": "order"}, 422), ({"intent": "Unknown"}, 400), ({"intent": None}, 400), ({"xFoo": 1}, 400),
        ({"description": 5}, 400), ({"requester": {"reference": f"Patient/{PT1}"}}, 422),
        ({"requester": {"reference": "Practitioner/nope"}}, 422), ({"requester": {}}, 422),
        ({"owner": {"reference": f"Patient/{PT1}"}}, 422), ({"for": {"reference": f"Practitioner/{P1}"}}, 422),
        ({"for": {"reference": "Patient/nope"}}, 422), ({"authoredOn": "yesterday"}, 400),
        ({"extension": [{"url": GROUP_EXT, "valueReference": {"reference": "Group/nope"}}]}, 422),
        ({"extension": [{"url": GROUP_EXT}]}, 422), ({"extension": [{"valueString": "x"}]}, 400),
        ({"note": [{"authorReference": {"reference": f"Practitioner/{P1}"}}]}, 400), ({"note": [{"text": "x"}]}, 422),
        ({"note": [{"text": "x", "authorReference": {"reference": f"Patient/{PT1}"}}]}, 422),
        ({"input": [{"type": {"text": "tag"}, "valueString": "x"}]}, 422), ({"input": [{"valueString": "x"}]}, 400),
        ({"input": [{"type": {"text": "label"}}]}, 400),
    ],
)
def test_invalid_task_is_rejected_and_nothing_stored(client, change, status):
    before = client.get("/Task?_count=0", headers=auth()).get_json()["total"]
    body = {**task(), **change}
    assert_outcome(client.post("/Task", json=body, headers=auth()), status, "invalid" if status == 400 else "business-rule")
    assert client.get("/Task?_count=0", headers=auth()).get_json()["total"] == before


@pytest.mark.parametrize("missing, status", [("status", 400), ("intent", 400), ("description", 422), ("requester", 422)])
def test_required_elements(client, missing, status):
    body = task()
    del body[missing]
    assert_outcome(client.post("/Task", json=body, headers=auth()), status)


def test_task_group_must_be_a_team(client, create):
    pg = create(patient_group(members=(PT1,)))
    assert_outcome(client.post("/Task", json=task(pg), headers=auth()), 422, "business-rule")


@pytest.mark.parametrize("field, kept", [("extension", True), ("authoredOn", True), ("owner", False),
                                         ("restriction", False), ("input", False)])
def test_update_omission_rules(client, new_team, make_task, field, kept):
    tid = make_task(task(new_team))
    before = read(client, tid)
    body = {k: v for k, v in task(new_team).items() if k not in (field, "note")}
    assert put(client, tid, body).status_code == 200
    after = read(client, tid)
    if field == "extension":
        assert after["extension"][0] == before["extension"][0]
    elif kept:
        assert after[field] == before[field]
    else:
        assert field not in after


def test_update_without_description_is_rejected(client, make_task):
    tid = make_task(task())
    body = task()
    del body["description"]
    assert_outcome(put(client, tid, body), 422, "business-rule")
    assert read(client, tid)["description"] == "Call the patient"


def test_notes_append_or_replace(client, make_task):
    tid = make_task(task())
    second = [{"text": "second", "authorReference": {"reference": f"Practitioner/{P2}"}}]
    assert put(client, tid, task(note=second)).status_code == 200
    assert [n["text"] for n in read(client, tid)["note"]] == ["first", "second"]
    assert put(client, tid, task(note=[{**second[0], "text": "third"}]), Prefer="note-replace").status_code == 200
    assert [n["text"] for n in read(client, tid)["note"]] == ["third"]


def test_update_errors(client, make_task):
    tid = make_task(task())
    assert_outcome(client.put(f"/Task/{tid}", json=task(), headers=auth()), 400)            # no id
    assert_outcome(put(client, "unknown", task()), 404, "not-found")
    assert_outcome(client.get("/Task/unknown", headers=auth()), 404, "not-found")
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert_outcome(put(client, tid, task(), **{"If-Unmodified-Since": old}), 412, "conflict")
    assert_outcome(put(client, tid, task(), **{"If-Match": 'W/"9"'}), 412, "conflict")
    assert_outcome(client.delete(f"/Task/{tid}", headers=auth()), 405, "not-supported")
    assert_outcome(client.get("/Task"), 401)
    assert_outcome(client.post("/Task", json=task(), headers=auth("dev-readonly-token")), 403, "forbidden")


@pytest.fixture
def corpus(client, new_team, make_task):
    """Six tasks: (status, owner, patient, due, labels)."""
    specs = [("requested", P2, PT1, "2024-01-05T10:00:00Z", ["a"]), ("completed", P2, PT2, "2024-01-03T10:00:00Z", ["a", "b"]),
             ("requested", P3, PT1, "2024-01-04T10:00:00Z", []), ("cancelled", P3, None, None, ["b"]),
             ("requested", P2, PT2, "2024-01-01T10:00:00Z", []), ("completed", None, PT1, "2024-01-02T10:00:00Z", ["c"])]
    ids = []
    for i, (status, owner, patient, due, labels) in enumerate(specs):
        body = {"resourceType": "Task", "status": status, "intent": "unknown", "description": f"Corpus task {i}",
                "requester": {"reference": f"Practitioner/{P1 if i % 2 else P3}"}}
        if owner:
            body["owner"] = {"reference": f"Practitioner/{owner}"}
        if patient:
            body["for"] = {"reference": f"Patient/{patient}"}
        if due:
            body["restriction"] = {"period": {"end": due}}
        if labels:
            body["input"] = [{"type": {"text": "label"}, "valueString": n} for n in labels]
        ids.append(make_task(body))
    return ids


def found(client, query: str) -> list[str]:
    r = client.get(f"/Task?{query}&_count=100", headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    return [e["resource"]["id"] for e in r.get_json().get("entry", [])]


def test_search_parameters(client, corpus):
    t = corpus
    assert found(client, f"owner=Practitioner/{P2}&status=requested") == [t[0], t[4]]
    assert found(client, f"owner={P3}") == [t[2], t[3]]
    assert found(client, f"patient=Patient/{PT2}") == [t[1], t[4]]
    assert found(client, f"requester=Practitioner/{P1}") == [t[1], t[3], t[5]]
    assert found(client, "label=a") == [t[0], t[1]] and found(client, "label=b,c") == [t[1], t[3], t[5]]
    assert found(client, "status=completed,cancelled") == [t[1], t[3], t[5]]
    assert found(client, "description=corpus task 3") == [t[3]]
    assert found(client, f"_id={t[2]},{t[5]}") == [t[2], t[5]]


@pytest.mark.parametrize("prefix, expected", [("eq", [2]), ("ne", [0, 1, 4, 5]), ("gt", [0]), ("lt", [1, 4, 5]),
                                              ("ge", [0, 2]), ("le", [1, 2, 4, 5])])
def test_due_prefixes(client, corpus, prefix, expected):
    assert found(client, f"due={prefix}2024-01-04T10:00:00Z") == [corpus[i] for i in expected]


def test_due_day_precision_and_range(client, corpus):
    assert found(client, "due=2024-01-04") == [corpus[2]]
    assert found(client, "due=ge2024-01-02&due=lt2024-01-04T10:00:00Z") == [corpus[1], corpus[5]]
    assert found(client, "modified=gt2000-01-01") == corpus
    assert found(client, "modified=lt2000-01-01") == []


@pytest.mark.parametrize("sort", ["_id", "-_id", "due-date", "-due-date"])
def test_sort(client, corpus, sort):
    got = found(client, f"_sort={sort}")
    if sort.endswith("_id"):
        assert got == sorted(corpus, reverse=sort.startswith("-"))
    else:
        dated = [corpus[i] for i in (4, 5, 1, 2, 0)]
        assert got == (dated if sort == "due-date" else dated[::-1]) + [corpus[3]]


def test_paging(client, corpus):
    r = client.get("/Task?_count=4&_sort=_id", headers=auth()).get_json()
    assert r["total"] == 6 and len(r["entry"]) == 4
    assert {link["relation"] for link in r["link"]} == {"self", "first", "next", "last"}
    nxt = next(link["url"] for link in r["link"] if link["relation"] == "next")
    page2 = client.get(nxt.replace("http://localhost", ""), headers=auth()).get_json()
    assert len(page2["entry"]) == 2 and "next" not in {link["relation"] for link in page2["link"]}
    assert client.post("/Task/_search", data={"label": "a"}, headers=auth()).get_json()["total"] == 2


@pytest.mark.parametrize("query", ["status=open", "_sort=name", "due=tomorrow", "due=xx2024-01-01", "owner=Patient/x",
                                   "modified=2024-13-45", "_count=-1"])
def test_invalid_search_values_are_400(client, query):
    assert_outcome(client.get(f"/Task?{query}", headers=auth()), 400, "invalid")


def test_metadata_lists_task(client):
    rest = client.get("/metadata").get_json()["rest"][0]
    task_cap = next(r for r in rest["resource"] if r["type"] == "Task")
    assert {i["code"] for i in task_cap["interaction"]} == {"read", "create", "update", "search-type"}
    assert {p["name"] for p in task_cap["searchParam"]} == {"_id", "description", "label", "owner", "patient",
                                                             "requester", "status", "due", "modified"}


def test_owner_status_search_uses_the_composite_index(app):
    with app.app_context(), app.extensions["fhir.store"].read() as conn:
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT t.id FROM task_index t WHERE t.owner IN (?) AND t.status IN (?)"
            " ORDER BY t.seq LIMIT 10", ("Practitioner/x", "requested")))
    assert "task_owner_status" in plan
