"""Group payloads: valid ones are stored and read back; each invalid one is refused
with an OperationOutcome, for the rule it breaks, and changes nothing."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.expectations import expect_created, expect_read, expect_rejected, last_exchange
from conformance.markers import check, needs, profile, verifies
from conformance.rules.group import MEMBER_KIND, responsibilities_of
from conformance.rules.model import PROFILE_RULE, REFUSED
from conformance.strategies.group import (PATIENT_GROUP, TEAM, invalid_group, needs as violation_needs,
                                          valid_group, violation_base, violations)
from conformance.verdicts import expect

from .support.api import expect_nothing_stored, require

pytestmark = profile("canvas")
VARIANTS = [TEAM, PATIENT_GROUP]


def members(group: dict[str, Any]) -> set[str]:
    return {((m or {}).get("entity") or {}).get("reference") for m in group.get("member", []) or []}


def expect_same_content(sent: dict[str, Any], read: dict[str, Any], requirement: str, what: str, ex: Any) -> None:
    """The read shows every field the client sent (name, type, members, responsibilities)."""
    for key in ("name", "type"):
        expect(requirement, read.get(key) == sent.get(key),
               f"{what}: {key} reads back as {read.get(key)!r}, sent {sent.get(key)!r}", ex)
    expect(requirement, members(read) == members(sent),
           f"{what}: members read back as {sorted(members(read))}, sent {sorted(members(sent))}", ex)
    expect(requirement, responsibilities_of(read) == responsibilities_of(sent),
           f"{what}: responsibilities read back as {sorted(responsibilities_of(read))}, "
           f"sent {sorted(responsibilities_of(sent))}", ex)
    for c in read.get("characteristic", []) or []:
        expect(requirement, (c.get("code") or {}).get("text") == "responsibility" and c.get("exclude") in (False, None),
               f"{what}: characteristic reads back as {c!r}", ex)


def expect_canvas_reads(read: dict[str, Any], what: str, ex: Any) -> None:
    expect("CANVAS-GROUP-ACTUAL", read.get("actual") is True, f"{what}: actual reads back as {read.get('actual')!r}", ex)
    expect("CANVAS-GROUP-QUANTITY", read.get("quantity") == len(read.get("member", []) or []),
           f"{what}: quantity {read.get('quantity')!r} but {len(read.get('member', []) or [])} members", ex)


@check("group-create-valid", "CANVAS-GROUP-CREATE", "CANVAS-GROUP-READ", "CANVAS-GROUP-ACTUAL",
       "CANVAS-GROUP-QUANTITY", "FHIR-CREATE-201", "FHIR-LAST-MODIFIED")
@needs("Group", interaction="create")
@pytest.mark.parametrize("variant", VARIANTS)
@given(data=st.data())
def test_valid_group_is_created_and_read_back(variant, data, groups, target_data, fhir):
    payload = data.draw(valid_group(target_data, variant), label="payload")
    response, gid = groups.create(payload)
    try:
        gid = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", f"create {variant}")
        read = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", f"read new {variant}")
        ex = last_exchange(fhir)
        expect("FHIR-LAST-MODIFIED", bool(fhir.recorder.last.response_headers.get("last-modified")),
               "read sent no Last-Modified header", ex)
        expect_same_content(payload, read, "CANVAS-GROUP-READ", f"read new {variant}", ex)
        expect_canvas_reads(read, f"read new {variant}", ex)
    finally:
        if gid:
            groups.release(gid, payload)


@check("group-update-roundtrip", "CANVAS-GROUP-UPDATE", "FHIR-UPDATE-200", "CANVAS-GROUP-ACTUAL",
       "CANVAS-GROUP-QUANTITY")
@needs("Group", interaction="update")
@pytest.mark.parametrize("variant", VARIANTS)
@given(data=st.data())
def test_update_replaces_content(variant, data, groups, target_data, fhir):
    first = data.draw(valid_group(target_data, variant), label="created")
    second = data.draw(valid_group(target_data, variant), label="update")
    response, gid = groups.create(first)
    try:
        gid = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", "create before update")
        put = groups.update(gid, second)
        expect("FHIR-UPDATE-200", put.status_code == 200, f"update answered {put.status_code}", last_exchange(fhir))
        read = expect_read(fhir, "Group", gid, "CANVAS-GROUP-UPDATE", "read after update")
        ex = last_exchange(fhir)
        expect_same_content(second, read, "CANVAS-GROUP-UPDATE", "read after update", ex)
        expect_canvas_reads(read, "read after update", ex)
    finally:
        if gid:
            groups.release(gid, second)


@check("group-readonly-ignored", "FHIR-READONLY-IGNORED", "CANVAS-GROUP-QUANTITY")
@needs("Group", interaction="create")
@pytest.mark.parametrize("variant", VARIANTS)
@given(data=st.data())
def test_read_only_elements_are_ignored(variant, data, groups, target_data, fhir):
    payload = data.draw(valid_group(target_data, variant, max_responsibilities=0), label="payload")
    count = len(payload.get("member", []))
    payload["quantity"] = data.draw(st.integers(0, 999).filter(lambda n: n != count), label="quantity")
    for m in payload.get("member", []):
        m["entity"]["type"] = MEMBER_KIND[variant]
        m["entity"]["display"] = data.draw(st.sampled_from(["Someone Else", "x"]), label="display")
    response, gid = groups.create(payload)
    expect("FHIR-READONLY-IGNORED", response.status_code == 201,
           f"a body carrying read-only quantity/display/type was answered {response.status_code}, not 201",
           last_exchange(fhir))
    read = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", "read after create")
    expect("CANVAS-GROUP-QUANTITY", read.get("quantity") == count,
           f"quantity reads back as {read.get('quantity')!r}; sent {payload['quantity']}, {count} members",
           last_exchange(fhir))
    # Canvas's own examples PUT back what they read: that must work too.
    put = groups.update(gid, {k: v for k, v in read.items() if k != "meta"})
    expect("FHIR-READONLY-IGNORED", put.status_code == 200,
           f"PUT of the group as read was answered {put.status_code}, not 200", last_exchange(fhir))


def _violation_params(update: bool) -> list[Any]:
    params = []
    for v in violations(update=update):
        path = (v.path or "").replace("[]", "")
        case_id = "-".join(p for p in (v.variant, v.name, path) if p)
        params.append(pytest.param(v, id=case_id, marks=verifies(v.requirement)))
    return params


@check("group-create-invalid", "FHIR-ERROR-OUTCOME", "FHIR-REJECT-STATUS")
@needs("Group", interaction="create")
@pytest.mark.parametrize("violation", _violation_params(update=False))
@given(data=st.data())
def test_invalid_group_is_rejected(violation, data, groups, target_data, fhir):
    require(target_data, violation_needs(violation))
    invalid = data.draw(invalid_group(target_data, violation), label="invalid")
    response, gid = groups.create(invalid.payload)
    try:
        expect_rejected(fhir, response, violation, "create")
    finally:
        if gid:
            groups.release(gid, invalid.payload)


REJECTED_BY_RULE = [p for p in _violation_params(update=False) if p.values[0].status == PROFILE_RULE
                    and p.values[0].path != "name"]


@check("group-create-rejected-stores-nothing", "FHIR-REJECT-NOTHING-STORED")
@needs("Group", search_param="name")
@pytest.mark.parametrize("violation", REJECTED_BY_RULE)
@given(data=st.data())
def test_rejected_create_stores_nothing(violation, data, groups, target_data, fhir):
    require(target_data, violation_needs(violation))
    invalid = data.draw(invalid_group(target_data, violation), label="invalid")
    marker = f"{target_data.run_prefix} rejected {secrets.token_hex(6)}"
    invalid.payload["name"] = marker
    response, gid = groups.create(invalid.payload)
    try:
        expect(violation.requirement, response.status_code in REFUSED,
               f"create with {violation.description} answered {response.status_code}", last_exchange(fhir))
        expect_nothing_stored(fhir, "Group", "name", marker, violation.description)
    finally:
        if gid:
            groups.release(gid, invalid.payload)


def _content(group: dict[str, Any]) -> dict[str, Any]:
    return {"name": group.get("name"), "type": group.get("type"), "members": sorted(members(group)),
            "responsibilities": sorted(responsibilities_of(group))}


@check("group-update-invalid", "FHIR-ERROR-OUTCOME", "FHIR-REJECT-STATUS", "FHIR-REJECT-NOTHING-STORED")
@needs("Group", interaction="update")
@pytest.mark.parametrize("violation", _violation_params(update=True))
@given(data=st.data())
def test_invalid_update_is_rejected_and_changes_nothing(violation, data, groups, target_data, fhir):
    require(target_data, violation_needs(violation))
    base = data.draw(violation_base(target_data, violation), label="stored")
    response, gid = groups.create(base)
    try:
        gid = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", "create before the invalid update")
        before = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", "read before the invalid update")
        invalid = data.draw(invalid_group(target_data, violation, base={**base, "id": gid}), label="invalid")
        put = fhir.put(f"Group/{gid}", json_body=invalid.payload)
        expect_rejected(fhir, put, violation, "update")
        after = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", "read after the invalid update")
        expect("FHIR-REJECT-NOTHING-STORED", _content(after) == _content(before),
               f"a rejected update ({violation.description}) changed the group: "
               f"{_content(before)} -> {_content(after)}", last_exchange(fhir))
    finally:
        if gid:
            groups.release(gid, base, always=True)
