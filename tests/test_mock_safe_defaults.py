"""The mock as a development server (SPEC §7): credentials, auth order, URLs, scopes, banner, logs."""
from __future__ import annotations

import socket
import time

import httpx
import pytest

from conftest import assert_outcome, auth, patient_group, team
from mock_server import MockConfig, banner
from mock_server.server import run_in_thread

DEV_CLIENT = {"grant_type": "client_credentials", "client_id": "dev-client", "client_secret": "dev-secret"}


# -- explicit credentials switch the built-in ones off ---------------------------------


@pytest.mark.parametrize("given", [
    {"tokens": {"mine": ""}},
    {"clients": {"app": ("s3cret", "")}},
    {"jwks_clients": {"smart": ({"keys": []}, "")}},
])
def test_any_credential_option_switches_every_dev_credential_off(make_app, given):
    client = make_app(**given).test_client()
    for token in ("dev-token", "dev-readonly-token"):
        assert_outcome(client.get("/Group", headers=auth(token)), 401)
    refused = client.post("/auth/token/", data=DEV_CLIENT)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"


def test_without_options_the_dev_credentials_work(client):
    assert client.get("/Group", headers=auth("dev-token")).status_code == 200
    assert client.post("/auth/token/", data=DEV_CLIENT).status_code == 200


def test_banner_shows_dev_secrets_only_for_built_in_credentials(make_app):
    dev = banner.text(make_app())
    assert "dev-secret" in dev and "dev-token" in dev and "120 Patient" in dev and "25 Practitioner" in dev
    own = banner.text(make_app(tokens={"very-secret-token": ""}, clients={"app": ("client-secret-value", "")}))
    assert "very-secret-token" not in own and "client-secret-value" not in own and "dev-secret" not in own
    assert "OFF" in own and "client app" in own and "1 bearer token" in own


# -- authentication before method and existence ----------------------------------------


def test_delete_group_without_token_is_401_for_every_id(client, create):
    gid = create(team("Delete me not"))
    for target in (gid, "no-such-group"):
        assert_outcome(client.delete(f"/Group/{target}"), 401, "unknown")
    assert_outcome(client.delete(f"/Group/{gid}", headers=auth()), 405, "not-supported")
    assert_outcome(client.delete("/Group/no-such-group", headers=auth()), 404, "not-found")
    assert_outcome(client.delete(f"/Group/{gid}", headers=auth("dev-readonly-token")), 403, "forbidden")


@pytest.mark.parametrize("method, path", [("DELETE", "/Patient/x"), ("PATCH", "/Task/x"), ("GET", "/Nope/1"),
                                          ("PUT", "/Group")])
def test_unrouted_requests_need_a_token_first(client, method, path):
    assert_outcome(client.open(path, method=method), 401, "unknown")


def test_public_endpoints_stay_public(client):
    assert client.get("/metadata").status_code == 200
    assert client.get("/.well-known/smart-configuration").status_code == 200


# -- absolute URLs never come from the Host header --------------------------------------


def test_forged_host_never_reaches_a_url_test_client(client):
    forged = {**auth(), "Host": "evil.example"}
    created = client.post("/Group", json=patient_group("Host test"), headers=forged)
    assert created.status_code == 201
    assert created.headers["Location"].startswith("http://localhost/Group/")
    bundle = client.get("/Group", headers=forged).get_json()
    assert all("evil" not in link["url"] for link in bundle["link"])
    assert all("evil" not in e["fullUrl"] for e in bundle["entry"])
    for path in ("/metadata", "/.well-known/smart-configuration"):
        assert "evil" not in client.get(path, headers={"Host": "evil.example"}).get_data(as_text=True)


def _export_urls(http: httpx.Client, base: str, public: str, headers: dict[str, str]) -> list[str]:
    """Content-Location, manifest request and file URLs of an export (polled at ``base``)."""
    kick = http.get(f"{base}/Group/f186fa1cbae12dabe442c0955e2ef4d9/$export",
                    headers={**headers, "Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    status = kick.headers["Content-Location"]
    for _ in range(200):
        polled = http.get(base + status.removeprefix(public), headers=headers)
        if polled.status_code == 200:
            manifest = polled.json()
            return [status, manifest["request"], *(o["url"] for o in manifest["output"])]
        time.sleep(0.05)
    raise AssertionError("export did not complete")


@pytest.mark.parametrize("configured", [None, "https://fhir.example.org/r4"])
def test_forged_host_never_reaches_a_url_real_server(tmp_path, configured):
    config = MockConfig(db=str(tmp_path / "m.sqlite3"), tokens={"t": ""}, base_url=configured, export_min_seconds=0)
    with run_in_thread(config) as listening, httpx.Client(timeout=10) as http:
        expected = configured or listening
        headers = {"Authorization": "Bearer t", "Host": "evil.example:666"}
        created = http.post(f"{listening}/Group", json=patient_group("Host test"), headers=headers)
        assert created.headers["Location"].startswith(f"{expected}/Group/")
        urls = _export_urls(http, listening, expected, headers)
        assert all(u.startswith(expected + "/") for u in urls), urls
        smart = http.get(f"{listening}/.well-known/smart-configuration", headers=headers).json()
        assert smart["token_endpoint"] == f"{expected}/auth/token/"


def test_invalid_base_url_is_refused():
    with pytest.raises(ValueError):
        MockConfig(db=":memory:", base_url="not a url")


# -- SMART v1 and v2 scopes -------------------------------------------------------------


def test_smart_configuration_advertises_both_permission_versions(client):
    smart = client.get("/.well-known/smart-configuration").get_json()
    assert {"permission-v1", "permission-v2"} <= set(smart["capabilities"])
    assert "system/*.rs" in smart["scopes_supported"] and "system/*.read" in smart["scopes_supported"]


def test_v2_scopes_grant_exactly_their_letters(make_app):
    client = make_app(tokens={"rs": "system/*.rs", "cruds": "system/Group.cruds", "c": "system/Group.c",
                              "r": "system/Group.r", "s": "system/Group.s"}).test_client()
    assert client.get("/Group", headers=auth("rs")).status_code == 200
    assert client.get("/Patient/x", headers=auth("rs")).status_code == 404
    assert_outcome(client.post("/Group", json=team("v2 rs"), headers=auth("rs")), 403)
    created = client.post("/Group", json=team("v2 cruds"), headers=auth("cruds"))
    assert created.status_code == 201
    gid = created.headers["Location"].rsplit("/", 1)[1]
    assert client.get(f"/Group/{gid}", headers=auth("cruds")).status_code == 200
    assert_outcome(client.get("/Patient", headers=auth("cruds")), 403)
    assert client.post("/Group", json=team("v2 c"), headers=auth("c")).status_code == 201
    assert_outcome(client.get(f"/Group/{gid}", headers=auth("c")), 403)
    assert client.get(f"/Group/{gid}", headers=auth("r")).status_code == 200
    assert_outcome(client.get("/Group", headers=auth("r")), 403)  # r reads, s searches
    assert client.get("/Group", headers=auth("s")).status_code == 200
    assert_outcome(client.get(f"/Group/{gid}", headers=auth("s")), 403)


@pytest.mark.parametrize("scope", ["system/*.rs", "system/Group.cruds", "system/*.read system/Group.cu",
                                   "user/Patient.r"])
def test_token_endpoint_grants_v2_scopes(client, scope):
    r = client.post("/auth/token/", data={**DEV_CLIENT, "scope": scope})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["scope"] == scope


@pytest.mark.parametrize("scope", ["system/*.sr", "system/Group.x", "system/*.", "system/*.rr"])
def test_malformed_v2_scopes_are_invalid_scope(client, scope):
    r = client.post("/auth/token/", data={**DEV_CLIENT, "scope": scope})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"


def test_client_limited_by_v1_scope_gets_v2_subset_only(make_app):
    client = make_app(clients={"ro": ("s", "system/*.read")}).test_client()
    form = {"grant_type": "client_credentials", "client_id": "ro", "client_secret": "s"}
    assert client.post("/auth/token/", data={**form, "scope": "system/*.rs"}).status_code == 200
    assert client.post("/auth/token/", data={**form, "scope": "system/Group.r"}).status_code == 200
    assert client.post("/auth/token/", data={**form, "scope": "system/Group.rc"}).status_code == 400
    assert client.post("/auth/token/", data={**form, "scope": "system/*.cruds"}).status_code == 400


# -- Expect: 100-continue and the access log (real sockets) ------------------------------


def _raw(port: int, request: bytes, final: bytes = b"\r\n\r\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"HTTP/1.1 2" not in data and b"HTTP/1.1 4" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_expect_100_continue_without_body_is_answered(tmp_path):
    with run_in_thread(MockConfig(db=":memory:")) as base:
        port = int(base.rsplit(":", 1)[1])
        answer = _raw(port, b"GET /metadata HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
        assert b"HTTP/1.1 200" in answer
        answer = _raw(port, b"POST /Group/_search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-token\r\n"
                            b"Content-Length: 0\r\nExpect: 100-continue\r\n\r\n")
        assert b"HTTP/1.1 200" in answer


def test_expect_100_continue_with_body_gets_continue_then_answer(tmp_path):
    with run_in_thread(MockConfig(db=":memory:")) as base:
        port = int(base.rsplit(":", 1)[1])
        body = b"name=Fixture"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /Group/_search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-token\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(body)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_access_log_one_line_per_request(tmp_path):
    log = tmp_path / "access.log"
    with run_in_thread(MockConfig(db=":memory:", access_log=str(log))) as base, httpx.Client() as http:
        http.get(f"{base}/metadata")
        http.get(f"{base}/Group?name=x", headers=auth())
        http.get(f"{base}/Group")
    lines = log.read_text().splitlines()
    assert len(lines) == 3
    assert '"GET /metadata HTTP/1.1" 200' in lines[0]
    assert '"GET /Group?name=x HTTP/1.1" 200' in lines[1]
    assert '"GET /Group HTTP/1.1" 401' in lines[2]
    assert "dev-token" not in log.read_text()


# -- Prefer: return=… on create and update -------------------------------------------------


@pytest.mark.parametrize("path, body", [("/Group", team("Prefer team")), ("/Task", None)])
def test_prefer_return_on_create_and_update(client, path, body):
    from test_mock_task import task  # a valid Task payload

    body = body or task()
    plain = client.post(path, json=body, headers=auth())
    assert plain.status_code == 201 and plain.get_data() == b""  # default: Canvas's empty body
    created = client.post(path, json={**body, "name": "Prefer team 2"} if path == "/Group" else body,
                          headers={**auth(), "Prefer": "return=representation"})
    assert created.status_code == 201
    resource = created.get_json(force=True)
    rid = created.headers["Location"].rsplit("/", 1)[1]
    assert resource["id"] == rid and resource["resourceType"] == path[1:] and resource["meta"]["versionId"] == "1"
    minimal = client.put(f"{path}/{rid}", json={**resource}, headers={**auth(), "Prefer": "return=minimal"})
    assert minimal.status_code == 200 and minimal.get_data() == b""
    updated = client.put(f"{path}/{rid}", json={**resource}, headers={**auth(), "Prefer": "return=representation"})
    assert updated.status_code == 200 and updated.get_json(force=True)["meta"]["versionId"] == "3"
    outcome = client.put(f"{path}/{rid}", json={**resource}, headers={**auth(), "Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 200
    assert outcome.get_json(force=True)["resourceType"] == "OperationOutcome"
    assert outcome.get_json(force=True)["issue"][0]["severity"] == "information"


def test_progress_text_leads_with_a_percentage():
    from mock_server.bulk.exporter import progress_text

    assert progress_text(900, 2000) == "45% (900 of 2000 members exported)"
    assert progress_text(0, 0).startswith("100% ")


def test_capability_statement_says_group_delete_is_for_cohorts_only(client):
    resources = {r["type"]: r for r in client.get("/metadata").get_json()["rest"][0]["resource"]}
    delete = [i for i in resources["Group"]["interaction"] if i["code"] == "delete"]
    assert len(delete) == 1 and "Only Bulk Cohort groups" in delete[0]["documentation"]
    assert "Only Bulk Cohort groups" in resources["Group"]["documentation"]
    assert not any(i["code"] == "delete" for i in resources["Task"]["interaction"])
    assert [i["code"] for i in resources["Patient"]["interaction"]] == ["read", "search-type"]
