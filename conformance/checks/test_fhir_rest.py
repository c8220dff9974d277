"""Generic FHIR R4 REST rules (SPEC §0 ``fhir-core``), on any server, for the interactions it declares.

The payload is the plainest valid Group (no members, no characteristic, no Canvas
element), so a server of any flavour that declares Group create can take it.
"""

from __future__ import annotations

import copy
import secrets

from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.rules.model import REFUSED
from conformance.client import json_or_none
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange
from conformance.markers import check, needs, profile
from conformance.verdicts import expect

pytestmark = profile("fhir-core")


def plain_group(prefix: str) -> dict:
    return group_body(PATIENT_GROUP, f"{prefix} fhir-core {secrets.token_hex(4)}")


@check("fhir-create-read", "FHIR-CREATE-201")
@needs("Group", interaction="create")
@needs("Group", interaction="read")
def test_create_answers_201_with_location_and_reads_back(groups, target_data, fhir):
    payload = plain_group(target_data.run_prefix)
    response, _ = groups.create(payload)
    gid = expect_created(fhir, response, "Group", "FHIR-CREATE-201", "create of a plain Group")
    body = expect_read(fhir, "Group", gid, "FHIR-CREATE-201", "read of the created Group")
    expect("FHIR-CREATE-201", body.get("name") == payload["name"],
           f"the created Group reads back with name {body.get('name')!r}, sent {payload['name']!r}", last_exchange(fhir))


@check("fhir-update", "FHIR-UPDATE-200", "FHIR-UPDATE-ID", "FHIR-RESOURCE-TYPE")
@needs("Group", interaction="create")
@needs("Group", interaction="update")
def test_update_roundtrip_and_refusals(groups, target_data, fhir):
    response, gid = groups.create(plain_group(target_data.run_prefix))
    if gid is None:
        raise RuntimeError(f"prerequisite failed: create of a plain Group answered {response.status_code} "
                           "(see fhir-create-read)")
    read, body = groups.read(gid)
    if body is None:
        raise RuntimeError(f"prerequisite failed: read of the created Group answered {read.status_code}")
    renamed = {**body, "name": body["name"] + " renamed"}
    put = groups.update(gid, renamed)
    expect("FHIR-UPDATE-200", put.status_code == 200,
           f"update of an existing Group answered {put.status_code}, expected 200", last_exchange(fhir))
    other = {**copy.deepcopy(body), "id": gid + "x"}
    mismatch = fhir.put(f"Group/{gid}", json_body=other)
    expect_error(fhir, mismatch, "FHIR-UPDATE-ID", (400,), "update whose body id differs from the URL id")
    wrong = {**copy.deepcopy(body), "resourceType": "Patient"}
    refused = fhir.put(f"Group/{gid}", json_body=wrong)
    expect_error(fhir, refused, "FHIR-RESOURCE-TYPE", REFUSED, "update of Group/<id> with a Patient body")
    after = json_or_none(fhir.read("Group", gid))
    expect("FHIR-RESOURCE-TYPE", isinstance(after, dict) and after.get("resourceType") == "Group",
           "after the refused updates the Group no longer reads as a Group", last_exchange(fhir))
