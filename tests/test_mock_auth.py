"""Bearer tokens, scopes and the client-credentials token endpoint."""
from __future__ import annotations

import pytest

from conftest import assert_outcome, auth, team


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic ZGV2OmRldg=="}, {"Authorization": "Bearer"}])
def test_missing_or_bad_token_401(client, headers):
    body = assert_outcome(client.get("/Group", headers=headers), 401, "unknown")
    assert body["issue"][0]["details"]["text"] == "Authentication failed"


def test_metadata_needs_no_token(client):
    assert client.get("/metadata").status_code == 200


def test_readonly_token_can_read_not_write(client):
    ro = auth("dev-readonly-token")
    assert client.get("/Group", headers=ro).status_code == 200
    assert client.post("/Group/_search", headers=ro).status_code == 200
    body = assert_outcome(client.post("/Group", json=team(), headers=ro), 403, "forbidden")
    assert body["issue"][0]["details"]["text"] == "Authorization failed"


def test_type_specific_scopes(make_app):
    client = make_app(tokens={"pat": "user/Patient.read", "grp": "system/Group.*"}).test_client()
    assert client.get("/Patient", headers=auth("pat")).status_code == 200
    assert_outcome(client.get("/Group", headers=auth("pat")), 403)
    assert client.post("/Group", json=team(), headers=auth("grp")).status_code == 201
    assert_outcome(client.get("/Practitioner", headers=auth("grp")), 403)
    assert_outcome(client.get("/Group", headers=auth("dev-token")), 401)  # defaults replaced


def token(client, **form):
    return client.post("/auth/token/", data={"grant_type": "client_credentials", "client_id": "dev-client", "client_secret": "dev-secret", **form})


def test_token_endpoint_issues_usable_token(client):
    r = token(client)
    assert r.status_code == 200
    data = r.get_json()
    assert data["token_type"] == "Bearer" and data["expires_in"] == 3600 and data["scope"]
    assert client.post("/Group", json=team(), headers=auth(data["access_token"])).status_code == 201


def test_token_endpoint_scope_request(client):
    data = token(client, scope="system/Group.read").get_json()
    assert data["scope"] == "system/Group.read"
    assert client.get("/Group", headers=auth(data["access_token"])).status_code == 200
    assert_outcome(client.post("/Group", json=team(), headers=auth(data["access_token"])), 403)


def test_token_endpoint_errors(client):
    r = token(client, client_secret="nope")
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"
    r = token(client, grant_type="password")
    assert r.status_code == 400 and r.get_json()["error"] == "unsupported_grant_type"
    r = token(client, scope="everything")
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"


def test_restricted_client(make_app):
    client = make_app(clients={"ro": ("s", "system/*.read")}).test_client()
    base = {"grant_type": "client_credentials", "client_id": "ro", "client_secret": "s"}
    data = client.post("/auth/token/", data=base).get_json()
    assert data["scope"] == "system/*.read"
    assert client.post("/auth/token/", data={**base, "scope": "system/Group.write"}).status_code == 400
    assert client.post("/auth/token/", data={**base, "scope": "system/Group.read"}).status_code == 200


def test_expired_token(make_app):
    client = make_app(token_ttl=-1).test_client()
    data = token(client).get_json()
    assert_outcome(client.get("/Group", headers=auth(data["access_token"])), 401)
