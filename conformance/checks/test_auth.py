"""Bearer auth: 401 without a valid token, 403 without the scope (SPEC §1)."""

from __future__ import annotations

import secrets

import pytest

from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.client import created_id
from conformance.expectations import expect_error
from conformance.markers import check, needs, profile

pytestmark = [profile("canvas"), needs("Group", interaction="search-type")]

REQUESTS = {
    "search": lambda c, d: c.search("Group", {"_count": 1}),
    "read": lambda c, d: c.read("Group", d.missing_id()),
    "create": lambda c, d: c.create(group_body(PATIENT_GROUP, f"{d.run_prefix} auth {secrets.token_hex(4)}")),
}


@check("auth-token-missing", "FHIR-AUTH-401", "FHIR-ERROR-OUTCOME")
@pytest.mark.parametrize("interaction", sorted(REQUESTS))
def test_request_without_token_is_401(interaction, anonymous_fhir, target_data, ledger):
    response = REQUESTS[interaction](anonymous_fhir, target_data)
    if response.status_code == 201 and created_id(response, "Group"):
        ledger.created_group(created_id(response, "Group"), {})
    expect_error(anonymous_fhir, response, "FHIR-AUTH-401", (401,), f"{interaction} without a token")


@check("auth-token-invalid", "FHIR-AUTH-401", "FHIR-ERROR-OUTCOME")
@pytest.mark.parametrize("interaction", sorted(REQUESTS))
def test_request_with_invalid_token_is_401(interaction, fhir, target_data, ledger):
    client = fhir.with_token(f"not-a-valid-token-{secrets.token_hex(8)}")
    response = REQUESTS[interaction](client, target_data)
    if response.status_code == 201 and created_id(response, "Group"):
        ledger.created_group(created_id(response, "Group"), {})
    expect_error(client, response, "FHIR-AUTH-401", (401,), f"{interaction} with an invalid token")


@check("auth-scope-missing", "FHIR-AUTH-403", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="create")
def test_write_without_write_scope_is_403(limited_fhir, target_data, ledger):
    probe = limited_fhir.search("Group", {"_count": 1})
    if probe.status_code == 401:
        raise RuntimeError("the configured limited token was refused with 401: it must be a valid token "
                           "that lacks write scopes (see --limited-token)")
    response = REQUESTS["create"](limited_fhir, target_data)
    if response.status_code == 201 and created_id(response, "Group"):
        ledger.created_group(created_id(response, "Group"), {})
    expect_error(limited_fhir, response, "FHIR-AUTH-403", (403,), "create with a token lacking write scope")
