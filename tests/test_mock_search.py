"""Group/Patient/Practitioner search: parameters, paging links, GET vs POST _search."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import GROUPS, PATIENTS, PRACTITIONERS, assert_outcome, auth, team

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ids(bundle):
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def links(bundle):
    return {l["relation"]: l["url"] for l in bundle.get("link", [])}


def test_bundle_shape(client):
    b = client.get("/Group", headers=auth()).get_json()
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset" and b["total"] == 3
    e = b["entry"][0]
    assert e["fullUrl"] == f"http://localhost/Group/{e['resource']['id']}" and e["search"] == {"mode": "match"}
    assert ids(b) == [g["id"] for g in GROUPS]  # creation order


def test_search_by_id_and_type(client):
    a, b = GROUPS[0]["id"], GROUPS[2]["id"]
    assert ids(client.get(f"/Group?_id={a},{b}", headers=auth()).get_json()) == [a, b]
    assert ids(client.get(f"/Group?_id={a}&_id={b}", headers=auth()).get_json()) == []  # repeats AND
    assert ids(client.get("/Group?type=person", headers=auth()).get_json()) == [b]
    assert len(ids(client.get("/Group?type=practitioner,person", headers=auth()).get_json())) == 3
    assert_outcome(client.get("/Group?type=animal", headers=auth()), 400, "invalid")


def test_search_by_name(client, create):
    gid = create(team(name="Night Shift"))
    assert ids(client.get("/Group?name=night", headers=auth()).get_json()) == [gid]
    assert ids(client.get("/Group?name=shift", headers=auth()).get_json()) == []
    assert ids(client.get("/Group?name:contains=SHIFT", headers=auth()).get_json()) == [gid]
    assert ids(client.get("/Group?name:exact=Night Shift", headers=auth()).get_json()) == [gid]
    assert ids(client.get("/Group?name:exact=night shift", headers=auth()).get_json()) == []
    assert ids(client.get("/Group?name=100%25", headers=auth()).get_json()) == []  # LIKE metacharacters escaped


def test_search_by_member(client):
    ref = GROUPS[0]["member"][0]["entity"]["reference"]
    assert ids(client.get(f"/Group?member={ref}", headers=auth()).get_json()) == [GROUPS[0]["id"]]
    assert ids(client.get("/Group?member=Practitioner/none", headers=auth()).get_json()) == []


def test_unknown_params_ignored_and_left_out_of_links(client):
    b = client.get("/Group?foo=bar&type=person", headers=auth()).get_json()
    assert b["total"] == 1
    assert "foo" not in links(b)["self"] and "type=person" in links(b)["self"]


@pytest.mark.parametrize("query", ["_count=x", "_count=-1", "_offset=x", "_offset=-5", "_count=1.5"])
def test_invalid_paging_values(client, query):
    assert_outcome(client.get(f"/Group?{query}", headers=auth()), 400, "invalid")


def test_paging_walk_covers_total(client):
    seen, url, pages = [], "/Patient?_count=25", 0
    while url:
        b = client.get(url, headers=auth()).get_json()
        assert b["total"] == 120
        seen += ids(b)
        pages += 1
        nxt = links(b).get("next")
        url = nxt.replace("http://localhost", "") if nxt else None
    assert pages == 5 and len(seen) == 120 == len(set(seen))
    assert seen == [p["id"] for p in PATIENTS]


def test_paging_links(client):
    b = client.get("/Patient?_count=50&_offset=50", headers=auth()).get_json()
    ls = links(b)
    assert set(ls) == {"self", "first", "previous", "next", "last"}
    q = dict(parse_qsl(urlsplit(ls["last"]).query))
    assert q == {"_count": "50", "_offset": "100"}
    assert urlsplit(ls["self"]).netloc == "localhost"
    last = client.get("/Patient?_count=50&_offset=100", headers=auth()).get_json()
    assert "next" not in links(last) and len(last["entry"]) == 20


def test_count_default_and_clamp(client):
    assert len(client.get("/Patient", headers=auth()).get_json()["entry"]) == 10
    b = client.get("/Patient?_count=500", headers=auth()).get_json()
    assert len(b["entry"]) == 100 and "_count=100" in links(b)["self"]
    zero = client.get("/Patient?_count=0", headers=auth()).get_json()
    assert zero["total"] == 120 and "entry" not in zero


def test_empty_result_has_no_links(client):
    b = client.get("/Group?name=zzzz", headers=auth()).get_json()
    assert b["total"] == 0 and "link" not in b and "entry" not in b


def test_post_search_equals_get(client):
    get = client.get("/Group?type=practitioner&_count=1", headers=auth()).get_json()
    post = client.post("/Group/_search", data="type=practitioner&_count=1", headers={**auth(), **FORM}).get_json()
    assert ids(get) == ids(post) and get["total"] == post["total"] and links(get) == links(post)
    merged = client.post("/Group/_search?type=practitioner", data="_count=1", headers={**auth(), **FORM}).get_json()
    assert ids(merged) == ids(get)
    empty = client.post("/Group/_search", headers=auth()).get_json()
    assert empty["total"] == 3


def test_patient_and_practitioner_search(client):
    fam = PATIENTS[0]["name"][0]["family"]
    b = client.get(f"/Patient?name={fam[:3].lower()}&_count=100", headers=auth()).get_json()
    expected = [p["id"] for p in PATIENTS if any(n.lower().startswith(fam[:3].lower()) for n in [p["name"][0]["family"], *p["name"][0]["given"]])]
    assert ids(b) == expected
    given = PRACTITIONERS[0]["name"][0]["given"][0]
    assert PRACTITIONERS[0]["id"] in ids(client.get(f"/Practitioner?name={given}&_count=100", headers=auth()).get_json())
    pid = PATIENTS[5]["id"]
    assert ids(client.post("/Patient/_search", data=f"_id={pid}", headers={**auth(), **FORM}).get_json()) == [pid]


def test_search_uses_sql_indexes(app):
    """The query plans hit the index tables rather than scanning every resource body."""
    store = app.extensions["fhir.store"]
    with store.read() as conn:
        plan = " ".join(r[-1] for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT 1 FROM search_string s WHERE s.rtype = 'Group' AND s.param = 'name' AND s.value_lower LIKE 'a%'"))
    assert "search_string_value" in plan
