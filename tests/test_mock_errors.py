"""Every error is an OperationOutcome with the right status and issue code."""
from __future__ import annotations

import pytest

from conftest import assert_outcome, auth, team


def test_unknown_route_404(client):
    body = assert_outcome(client.get("/Nope/1", headers=auth()), 404, "not-found")
    assert body["issue"][0]["details"]["text"].startswith("Unknown route")
    assert_outcome(client.get("/Nope"), 401, "unknown")  # authentication before existence (SPEC §7)


@pytest.mark.parametrize("method, path", [("PATCH", "/Group/x"), ("DELETE", "/Patient/x"), ("PUT", "/Group"), ("DELETE", "/metadata"), ("GET", "/auth/token/")])
def test_unsupported_method_405(client, method, path):
    assert_outcome(client.open(path, method=method, headers=auth()), 405, "not-supported")


def test_malformed_json_400(client):
    r = client.post("/Group", data="{not json", headers={**auth(), "Content-Type": "application/fhir+json"})
    assert_outcome(r, 400, "invalid")
    r = client.post("/Group", data="[1, 2]", headers={**auth(), "Content-Type": "application/json"})
    assert_outcome(r, 400, "invalid")
    r = client.post("/Group", data='{"a": NaN}', headers={**auth(), "Content-Type": "application/json"})
    assert_outcome(r, 400, "invalid")
    r = client.post("/Group", data=b"\xff\xfe", headers={**auth(), "Content-Type": "application/json"})
    assert_outcome(r, 400, "invalid")


def test_wrong_content_type_415(client):
    r = client.post("/Group", data='{"resourceType": "Group"}', headers={**auth(), "Content-Type": "text/plain"})
    assert_outcome(r, 415, "not-supported")
    r = client.post("/Group", data='{}', headers=auth())
    assert_outcome(r, 415, "not-supported")


def test_charset_parameter_allowed(client):
    import json

    r = client.post("/Group", data=json.dumps(team()), headers={**auth(), "Content-Type": "application/fhir+json; charset=utf-8"})
    assert r.status_code == 201


def test_accept_406(client):
    assert_outcome(client.get("/Group", headers={**auth(), "Accept": "text/html"}), 406, "not-supported")
    for ok in ("application/json", "application/fhir+json", "*/*", "text/html, application/fhir+json;q=0.5"):
        assert client.get("/Group", headers={**auth(), "Accept": ok}).status_code == 200


def test_oversized_body_413(make_app):
    client = make_app(max_body_bytes=1000).test_client()
    body = team(name="x" * 2000)
    assert_outcome(client.post("/Group", json=body, headers=auth()), 413, "too-long")


def test_oversized_chunked_body_413_over_http():
    """Against waitress: a chunked body without Content-Length is capped while reading."""
    import httpx

    from mock_server import MockConfig
    from mock_server.server import run_in_thread

    def chunks():
        yield b'{"resourceType": "Group", "name": "'
        for _ in range(50):
            yield b"x" * 100
        yield b'"}'

    with run_in_thread(MockConfig(db=":memory:", max_body_bytes=1000, fixtures_dir=None)) as base:
        r = httpx.post(f"{base}/Group", content=chunks(), headers={**auth(), "Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-long"
        big = httpx.post(f"{base}/Group", content=b"x" * 5000, headers={**auth(), "Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["resourceType"] == "OperationOutcome"


def test_internal_error_500(app, client, monkeypatch):
    from mock_server.resources import group

    monkeypatch.setattr(group, "render", lambda row, displays: 1 / 0)
    assert_outcome(client.get("/Group", headers=auth()), 500, "exception")


def test_every_error_is_operation_outcome(client):
    """A sweep of client mistakes: none yields 500, all carry an OperationOutcome."""
    cases = [
        client.get("/Group/x"),
        client.get("/Group/x", headers=auth()),
        client.post("/Group", json=team(type="animal"), headers=auth()),
        client.post("/Group", json={"resourceType": "Group"}, headers=auth()),
        client.post("/Group", json={}, headers=auth()),
        client.put("/Group/x", json={"resourceType": "Group", "id": 5}, headers=auth()),
        client.get("/Group?_count=abc", headers=auth()),
        client.get("/Group?_offset=-1", headers=auth()),
        client.get("/Group?type=animal", headers=auth()),
        client.get("/Group?name:fuzzy=a", headers=auth()),
        client.get("/Patient/x", headers=auth()),
        client.get("/%00", headers=auth()),
        client.post("/Group/_search", data="_count=x", headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"}),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, r.status_code
        assert r.get_json(force=True)["resourceType"] == "OperationOutcome"


def test_hostile_bodies_are_400_not_500(client):
    import json

    deep = '{"resourceType": "Group", "type": "practitioner", "actual": true, "name": "x", "extension": ' + "[{\"url\": \"u\", \"extension\": " * 3000 + "[]" + "}]" * 3000 + "}"
    for data in (deep, "[" * 100000, json.dumps(team(name="\ud800"))):
        r = client.post("/Group", data=data, headers={**auth(), "Content-Type": "application/json"})
        assert_outcome(r, 400, "invalid")


def test_hostile_search_values(client):
    assert client.get(f"/Group?_offset={10**30}", headers=auth()).get_json()["total"] == 3
    assert_outcome(client.get("/Group?_id=" + ",".join(str(i) for i in range(5000)), headers=auth()), 400)
