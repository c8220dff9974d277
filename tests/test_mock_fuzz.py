"""Fuzzing every route of the mock with malformed and hostile input (SPEC §7: never a 5xx).

Hypothesis drives Flask's test client (in process: fast and bounded). Every rule of the
app's URL map, with each of its methods, is exercised with hostile path ids, query
strings (repeats past the limits, out-of-range dates, huge numbers, odd modifiers),
headers and bodies (random JSON, valid payloads with one field replaced by a value of
another JSON type, bytes that are not JSON). Each answer must be below 500, and every
error must be an OperationOutcome (the OAuth token endpoint answers RFC 6749 JSON).

``FHIR_MOCK_FUZZ_EXAMPLES`` sets the number of requests (default 1200, bounded for CI);
the figures (requests, status counts) are printed (``-s``) and kept in ``FIGURES``.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GROUPS, PATIENTS, PRACTITIONERS, patient_group, team
from mock_server import MockConfig, create_app

EXAMPLES = int(os.environ.get("FHIR_MOCK_FUZZ_EXAMPLES", "1200"))
FIGURES: Counter[str] = Counter()

PARAM_NAMES = ["_id", "type", "name", "member", "status", "due", "modified", "label", "owner", "patient", "requester",
               "description", "_sort", "_count", "_offset", "_since", "_until", "_type", "_outputFormat", "_elements",
               "_typeFilter", "includeAssociatedData", "grant_type", "scope", "client_id", "client_secret"]
MODIFIERS = ["", "", "", ":exact", ":contains", ":missing", ":not", ":"]
HOSTILE_VALUES = [
    "ge9999-12-31", "le0001-01-01", "gt9999-12-31T23:59:59-14:00", "lt0001-01-01T00:00:00+14:00", "eq0000-01-01",
    "2024-13-45", "2024-02-30T25:61:61Z", "9999", "0001", "10000-01-01", "ne9999-12", "sa2024", "ap2024-01-01",
    "99999999999999999999999999", "-1", "1e309", "NaN", "", ",", ",,,,", "a" * 3000, "\x00", "%00", "../../etc/passwd",
    "Practitioner/", "Patient/../x", "Group/x/y", "requested,completed,bogus", "due-date,-due-date,_id,x",
    "application/fhir+ndjson", "text/csv", "Patient,Observation,Nope", "Patient?gender=female", "💥", "' OR 1=1 --",
    ",".join(["x"] * 150), "system/*.rs", "system/*.cruds", "client_credentials",
]
IDS = ([g["id"] for g in GROUPS] + [p["id"] for p in PATIENTS[:3]] + [p["id"] for p in PRACTITIONERS[:3]]
       + ["", "x", "a" * 300, "..", "%2e%2e", "$export", "_search", "💥", "Patient.ndjson", "x y", "\x00"])
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                      st.sampled_from(HOSTILE_VALUES[:14]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                          max_leaves=12)


def _task() -> dict[str, Any]:
    practitioner = PRACTITIONERS[0]["id"]
    return {"resourceType": "Task", "status": "requested", "intent": "unknown", "description": "fuzz",
            "requester": {"reference": f"Practitioner/{practitioner}"},
            "owner": {"reference": f"Practitioner/{practitioner}"},
            "for": {"reference": f"Patient/{PATIENTS[0]['id']}"},
            "restriction": {"period": {"end": "2030-01-01T00:00:00Z"}},
            "note": [{"authorReference": {"reference": f"Practitioner/{practitioner}"}, "text": "n"}],
            "input": [{"type": {"text": "label"}, "valueString": "fuzz"}]}


def _cohort() -> dict[str, Any]:
    return {"resourceType": "Group", "type": "person", "actual": True, "name": "fuzz cohort",
            "meta": {"profile": ["http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"]},
            "modifierExtension": [{"url": "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter",
                                   "valueExpression": {"language": "application/x-fhir-query",
                                                       "expression": "Patient?gender=female"}}]}


def _parameters() -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"}, {"name": "_since", "valueInstant": "2020-01-01T00:00:00Z"},
        {"name": "patient", "valueReference": {"reference": f"Patient/{PATIENTS[0]['id']}"}}]}


TEMPLATES = [team("Fuzz team", ("REVIEW_COVERAGES",), (PRACTITIONERS[0]["id"],)),
             patient_group("Fuzz group", (PATIENTS[0]["id"],)), _task(), _cohort(), _parameters(), PATIENTS[0]]


ROUTE_TEMPLATES = {"/Group": [0, 1, 3], "/Task": [2], "$export": [4], "/auth/token/": [], "/Patient": [5]}
ROUTE_PARAMS = {
    "/Group": ["_id", "type", "name", "member"], "/Task": ["_id", "description", "label", "owner", "patient",
                                                           "requester", "status", "due", "modified", "_sort"],
    "/Patient": ["_id", "name"], "/Practitioner": ["_id", "name"],
    "$export": ["_outputFormat", "_type", "_since", "_until", "_elements", "patient", "_typeFilter",
                "includeAssociatedData"],
    "/auth/token/": ["grant_type", "scope", "client_id", "client_secret", "client_assertion_type", "client_assertion"],
}
DATE_PARAMS = {"due", "modified", "_since", "_until"}
HOSTILE_DATES = ["ge9999-12-31", "le0001-01-01", "gt9999-12-31T23:59:59-14:00", "lt0001-01-01T00:00:00+14:00",
                 "eq0000-01-01", "2024-13-45", "2024-02-30T25:61:61Z", "9999-12-31T23:59:59.999999-12:00",
                 "0001-01-01T00:00:00+14:00", "10000-01-01", "ne9999-12", "sa2024", "2024-01-01T10:00:00+99:99"]
FILTERS = ["Patient?birthdate=ge9999-12-31", "Patient?birthdate=le0001-01-01T00:00:00%2B14:00",
           "Condition?onset-date=sa9999-12-31", "Observation?date=eb0001-01-01&value-quantity=1e309",
           "Encounter?date=9999-12-31T23:59:59-14:00", "Observation?value-quantity=ge99999999999999999999999",
           "Patient?" + "&".join(["gender=female"] * 150), "Patient?_id=" + ",".join(["x"] * 150)]


def _family(rule: str) -> str:
    """Which resource or operation a rule belongs to (for parameter names and payloads)."""
    if "$export" in rule:
        return "$export"
    if rule.startswith("/auth"):
        return "/auth/token/"
    return "/" + rule.strip("/").split("/")[0]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(document: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(document))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return copy


HOSTILE_JSON = st.one_of(JSON_VALUE, st.sampled_from(HOSTILE_DATES + FILTERS + HOSTILE_VALUES))


@st.composite
def mutated_template(draw: st.DrawFn, templates: list[dict[str, Any]]) -> bytes:
    """A valid payload with one element replaced by a value of any JSON type (or a hostile string)."""
    template = draw(st.sampled_from(templates))
    path = draw(st.sampled_from(_paths(template)[1:]))
    return json.dumps(_replace(template, path, draw(HOSTILE_JSON))).encode()


def bodies(rule: str) -> st.SearchStrategy[bytes | None]:
    """Bodies for a route: mostly its own payloads, valid or with one element broken, else anything."""
    own = [TEMPLATES[i] for i in ROUTE_TEMPLATES.get(_family(rule), [])] or TEMPLATES
    valid = st.sampled_from(own).map(lambda t: json.dumps(t).encode())
    return st.one_of(valid, mutated_template(own), valid, mutated_template(own), mutated_template(TEMPLATES),
                     JSON_VALUE.map(lambda v: json.dumps(v).encode()), st.none(), st.just(b""),
                     st.binary(max_size=64),
                     st.just(b'{"resourceType": "Group"' + b', "a": [' * 5000 + b"]" * 5000 + b"}"))


def _value_for(name: str) -> st.SearchStrategy[str]:
    base = name.partition(":")[0]
    if base in DATE_PARAMS:
        return st.one_of(st.sampled_from(HOSTILE_DATES), st.sampled_from(HOSTILE_VALUES), st.text(max_size=30))
    return st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=30))


@st.composite
def query(draw: st.DrawFn, rule: str) -> list[tuple[str, str]]:
    """Mostly the route's own parameters (with odd modifiers), hostile values, and now and then
    one parameter repeated up to or past the limits."""
    own = ROUTE_PARAMS.get(_family(rule), []) + ["_count", "_offset"]
    names = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(PARAM_NAMES), st.text(max_size=10))
    name_with_modifier = names.flatmap(lambda n: st.sampled_from(MODIFIERS).map(lambda m: n + m))
    pairs = draw(st.lists(name_with_modifier.flatmap(lambda n: st.tuples(st.just(n), _value_for(n))), max_size=4))
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(own))
        value = draw(st.sampled_from(HOSTILE_DATES[:4] + ["x", "a,b"]))
        pairs += [(name, value)] * draw(st.sampled_from([99, 100, 101, 300, 1200]))
        if draw(st.booleans()):  # distinct values: each one a clause of its own
            pairs = [(n, f"{v}{i}" if n not in DATE_PARAMS else v) for i, (n, v) in enumerate(pairs)]
    return pairs


AUTHORIZATION = ["Bearer dev-token"] * 30 + ["Bearer dev-readonly-token", "Bearer nope", "Basic x", "Bearer",
                                            "bearer dev-token", ""]
ACCEPT = ["application/fhir+json"] * 40 + ["application/json", "text/html", "*/*", "application/xml;q=1",
                                          "application/fhir+ndjson", ",,;;", "application/fhir+json; fhirVersion=4.0"]


CONTENT_TYPES = ["application/fhir+json"] * 30 + ["application/json", "application/x-www-form-urlencoded", "text/plain",
                                                  "multipart/form-data; boundary=x", "application/json; charset=latin1",
                                                  ";;", ""]


def _headers(authorization: str, accept: str, content_type: str, optional: dict[str, str]) -> dict[str, str]:
    headers = {"Accept": accept, **optional}
    if content_type:
        headers["Content-Type"] = content_type
    if authorization:
        headers["Authorization"] = authorization
    return headers


HEADERS = st.builds(_headers, st.sampled_from(AUTHORIZATION), st.sampled_from(ACCEPT), st.sampled_from(CONTENT_TYPES),
                    st.fixed_dictionaries({}, optional={
    "Prefer": st.sampled_from(["respond-async", "return=representation", "return=minimal", "return=OperationOutcome",
                               "handling=lenient", "respond-async, handling=lenient", "return=bogus", "note-replace",
                               "=;=,"]),
    "If-Match": st.sampled_from(['W/"1"', '"1"', "*", "W/", "garbage", 'W/"99999999999999999999"']),
    "If-Unmodified-Since": st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "yesterday", "Fri, 31 Dec 9999 23:59:59 GMT",
                                           "Mon, 01 Jan 0001 00:00:00 GMT", ""]),
    "Expect": st.just("100-continue"),
    }))


def _routes(app: Flask) -> list[tuple[str, str]]:
    return sorted((rule.rule, method) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"})


@pytest.fixture(scope="module")
def fuzz_app() -> Flask:
    app = create_app(MockConfig(db=":memory:", export_min_seconds=0.0))
    app.config["TESTING"] = False  # exceptions must reach the error handlers, as in production
    yield app
    from mock_server.jobs import shutdown

    shutdown(app)
    app.extensions["fhir.store"].close()


def _check(route: str, method: str, response: Any) -> None:
    status = response.status_code
    FIGURES[str(status)] += 1
    FIGURES["requests"] += 1
    assert status < 500, (route, method, status, response.get_data(as_text=True)[:500])
    if status >= 400:
        body = json.loads(response.get_data(as_text=True))
        if route == "/auth/token/" and "error" in body:  # RFC 6749 (the request limits answer with an outcome)
            assert isinstance(body["error"], str), body
            return
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"][0]["severity"] in ("error", "fatal") and body["issue"][0]["code"], body


def test_no_route_answers_5xx_to_hostile_input(fuzz_app: Flask) -> None:
    routes = _routes(fuzz_app)
    client = fuzz_app.test_client()
    learned: list[str] = []  # job ids and resource ids the mock handed out, reused as path values
    exercised: set[tuple[str, str]] = set()

    def one_request(route: tuple[str, str], ids: st.SearchStrategy[str], data: st.DataObject) -> None:
        rule, method = route
        drawn: list[str] = []

        def fill(m: re.Match[str]) -> str:
            drawn.append(data.draw(ids, label=m.group(1)))
            return quote(drawn[-1], safe="") or "x"

        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", fill, rule)
        pairs = data.draw(query(rule), label="query")
        headers = data.draw(HEADERS, label="headers")
        body = data.draw(bodies(rule), label="body") if method in ("POST", "PUT") else None
        if method == "PUT" and body and drawn and data.draw(st.booleans(), label="id from the path"):
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            if isinstance(document, dict):  # an update whose id matches the URL gets past the first check
                body = json.dumps({**document, "id": drawn[-1]}).encode()
        if method == "POST" and rule.endswith(("_search", "/auth/token/")) and data.draw(st.booleans()):
            body = urlencode(data.draw(query(rule), label="form")).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        target = path + ("?" + urlencode(pairs) if pairs else "")
        response = client.open(target, method=method, headers=headers, data=body)
        exercised.add(route)
        _check(rule, method, response)
        for header in ("Location", "Content-Location"):
            if header in response.headers:
                learned.append(response.headers[header].rstrip("/").rsplit("/", 1)[-1])

    def fuzz(route: tuple[str, str]) -> Any:
        ids = st.sampled_from(IDS + learned[-20:]) | st.text(max_size=40)  # fixed for this route's run

        @settings(max_examples=max(1, EXAMPLES // len(routes)), deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            one_request(route, ids, data)

        return run

    for route in routes:  # every route gets its share, whatever Hypothesis would favour
        fuzz(route)()
    missed = set(routes) - exercised
    assert not missed, f"routes never exercised: {sorted(missed)}"
    statuses = {k: v for k, v in sorted(FIGURES.items()) if k != "requests"}
    fives = sum(v for k, v in statuses.items() if k.startswith("5"))
    print(f"\nfuzz: {FIGURES['requests']} requests over {len(routes)} routes; statuses {statuses}; 5xx = {fives}")
    assert fives == 0


@pytest.mark.parametrize("pairs, limit", [
    ([("name", "x")] * 101, "values per parameter"),
    ([("name", ",".join(["x"] * 101))], "values per parameter"),
    ([(f"p{i}", ",".join(["x"] * 50)) for i in range(21)], "values per query"),
    ([("name", "x" * 2049)], "longer than 2048"),
])
def test_limits_are_400_naming_the_limit(client: Any, pairs: list[tuple[str, str]], limit: str) -> None:
    for path in ("/Group", "/Task", "/Patient", "/metadata"):
        response = client.get(f"{path}?{urlencode(pairs)}", headers={"Authorization": "Bearer dev-token"})
        assert response.status_code == 400, (path, response.status_code)
        outcome = response.get_json(force=True)
        assert outcome["resourceType"] == "OperationOutcome" and limit in outcome["issue"][0]["details"]["text"]


def test_limits_also_cover_post_search_bodies(client: Any) -> None:
    form = urlencode([("name", "x")] * 101)
    response = client.post("/Group/_search", data=form, headers={"Authorization": "Bearer dev-token",
                                                                 "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and "values per parameter" in response.get_data(as_text=True)


def test_one_hundred_distinct_repeats_are_answered(client: Any) -> None:
    """At the limit the query still runs (balanced SQL, no 'Expression tree is too large')."""
    auth = {"Authorization": "Bearer dev-token"}
    for path, name in (("/Group", "name"), ("/Task", "description"), ("/Task", "due"), ("/Patient", "name")):
        values = [f"ge20{i:02d}-01-01" if name == "due" else f"v{i}" for i in range(100)]
        query_string = urlencode([(name, v) for v in values] + [("_id", f"id{i}") for i in range(100)])
        assert client.get(f"{path}?{query_string}", headers=auth).status_code == 200


@pytest.mark.parametrize("path", ["/Task?due=ge9999-12-31", "/Task?due=le0001-01-01", "/Task?modified=gt9999-12-31T23:59Z",
                                  "/Task?due=eq9999-12-31T23:59:59-14:00", "/Task?due=lt0001-01-01T00:00:00%2B14:00"])
def test_dates_at_the_ends_of_the_calendar_are_answered(client: Any, path: str) -> None:
    assert client.get(path, headers={"Authorization": "Bearer dev-token"}).status_code == 200


@pytest.mark.parametrize("path", ["/Task?due=0000-01-01", "/Task?due=10000-01-01", "/Task?due=2024-02-30",
                                  "/Task?modified=2024-01-01T24:00:00Z"])
def test_dates_out_of_range_are_400(client: Any, path: str) -> None:
    response = client.get(path, headers={"Authorization": "Bearer dev-token"})
    assert response.status_code == 400 and response.get_json(force=True)["resourceType"] == "OperationOutcome"


def test_export_parameter_of_the_wrong_json_type_is_400(client: Any) -> None:
    gid = GROUPS[-1]["id"]
    for parameters in (7, "x", {"name": "_type"}, [{"name": 3, "valueString": "Patient"}], [7]):
        response = client.post(f"/Group/{gid}/$export", json={"resourceType": "Parameters", "parameter": parameters},
                               headers={"Authorization": "Bearer dev-token", "Prefer": "respond-async"})
        assert response.status_code == 400, (parameters, response.status_code)
