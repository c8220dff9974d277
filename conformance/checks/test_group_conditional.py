"""Conditional update of Group: If-Unmodified-Since (SPEC §1) and If-Match where ETags are sent."""

from __future__ import annotations

import secrets

import pytest

from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange
from conformance.markers import check, needs, profile
from conformance.verdicts import expect

from .support.api import MALFORMED_IF_MATCH, judge_malformed_if_match, judge_stale_if_unmodified_since

pytestmark = [profile("canvas"), needs("Group", interaction="update")]


def _patient_group(prefix: str) -> dict:
    return group_body(PATIENT_GROUP, f"{prefix} cond {secrets.token_hex(4)}")


@check("group-update-if-unmodified-since", "FHIR-PRECONDITION-412", "FHIR-LAST-MODIFIED")
def test_stale_if_unmodified_since_is_refused(groups, target_data, fhir):
    judge_stale_if_unmodified_since(fhir, groups, _patient_group(target_data.run_prefix), "name",
                                    "CANVAS-GROUP-CREATE", "CANVAS-GROUP-READ")


@profile("fhir-core")
@check("group-update-if-match", "FHIR-IF-MATCH")
def test_stale_if_match_is_refused(groups, target_data, fhir):
    body = _patient_group(target_data.run_prefix)
    response, gid = groups.create(body)
    gid = expect_created(fhir, response, "Group", "FHIR-CREATE-201", "create")
    expect_read(fhir, "Group", gid, "FHIR-CREATE-201", "read")
    old_etag = last_exchange(fhir).response_headers.get("etag")
    if not old_etag:
        pytest.skip("the target sends no ETag on read")
    put = groups.update(gid, {**body, "name": body["name"] + " v2"})
    expect("FHIR-UPDATE-200", put.status_code == 200, f"update answered {put.status_code}", last_exchange(fhir))
    put = groups.update(gid, {**body, "name": body["name"] + " v3"}, headers={"If-Match": old_etag})
    expect_error(fhir, put, "FHIR-IF-MATCH", (412,), f"update with stale If-Match {old_etag}")


@profile("fhir-core")
@check("group-update-if-match-malformed", "FHIR-IF-MATCH-MALFORMED")
@pytest.mark.parametrize("form", sorted(MALFORMED_IF_MATCH))
def test_malformed_if_match_is_refused_and_not_applied(form, groups, target_data, fhir):
    judge_malformed_if_match(fhir, groups, _patient_group(target_data.run_prefix), "name", form, "FHIR-CREATE-201")
