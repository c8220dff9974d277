"""Responsibility uniqueness: a responsibility belongs to at most one team.

These checks only ever contend with teams this run created: the responsibility
used is one that was free when the run looked (SPEC §2; seed 000 characteristic).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from conformance.client import json_or_none
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange, outcome_text
from conformance.markers import check, needs, profile
from conformance.rules.group import (RESPONSIBILITY_UNIQUE as UNIQUE, TEAM, group_body, responsibilities_of,
                                     responsibility)
from conformance.target import bundle_resources
from conformance.verdicts import expect

from .support.api import GroupApi, require

pytestmark = [profile("canvas"), needs("Group", interaction="create"), needs("Group", interaction="update")]


def team(prefix: str, *texts: str) -> dict[str, Any]:
    return group_body(TEAM, f"{prefix} team {secrets.token_hex(4)}", responsibilities=texts)


@pytest.fixture
def holder(groups: GroupApi, target_data, fhir):
    """A team of ours holding one free responsibility; released afterwards."""
    require(target_data, ["responsibilities"])
    text = target_data.free_responsibilities[0]
    body = team(target_data.run_prefix, text)
    response, gid = groups.create(body)
    gid = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", f"create a team holding {text}")
    yield gid, body, text
    groups.release(gid, body, always=True)


def expect_refused(fhir, response, text: str, what: str) -> None:
    body = expect_error(fhir, response, UNIQUE.requirement, (UNIQUE.status,), what, code=UNIQUE.issue_code)
    expect(UNIQUE.requirement, text in outcome_text(body),
           f"{what}: the OperationOutcome does not name the responsibility {text}", last_exchange(fhir))


@check("group-responsibility-unique-create", "CANVAS-GROUP-RESP-UNIQUE", "FHIR-REJECT-NOTHING-STORED")
def test_claiming_a_held_responsibility_on_create_is_refused(holder, groups, target_data, fhir, conformance_run):
    gid, _, text = holder
    rival = team(target_data.run_prefix, text)
    response, rival_id = groups.create(rival)
    try:
        expect_refused(fhir, response, text, f"create of a second team claiming {text}")
        read = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", "read the holder")
        expect("CANVAS-GROUP-RESP-UNIQUE", text in responsibilities_of(read),
               f"after the refused claim the holder no longer holds {text}", last_exchange(fhir))
        if "name" in conformance_run.capabilities.search_params("Group") or conformance_run.settings.profiles:
            found = bundle_resources(json_or_none(fhir.search("Group", {"name": rival["name"]})))
            expect("FHIR-REJECT-NOTHING-STORED", not [g for g in found if g.get("name") == rival["name"]],
                   "the refused team was stored anyway", last_exchange(fhir))
    finally:
        if rival_id:
            groups.release(rival_id, rival, always=True)


@check("group-responsibility-unique-update", "CANVAS-GROUP-RESP-UNIQUE", "FHIR-REJECT-NOTHING-STORED")
def test_claiming_a_held_responsibility_on_update_is_refused(holder, groups, target_data, fhir):
    gid, _, text = holder
    other = team(target_data.run_prefix)
    response, other_id = groups.create(other)
    other_id = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", "create a team without responsibilities")
    try:
        claim = {**other, "name": other["name"] + " renamed", "characteristic": [responsibility(text)]}
        expect_refused(fhir, groups.update(other_id, claim), text, f"update of another team claiming {text}")
        read = expect_read(fhir, "Group", other_id, "CANVAS-GROUP-READ", "read the refused team")
        expect("FHIR-REJECT-NOTHING-STORED", read.get("name") == other["name"] and not responsibilities_of(read),
               f"the refused update changed the team: name {read.get('name')!r}, "
               f"responsibilities {sorted(responsibilities_of(read))}", last_exchange(fhir))
        holder_read = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", "read the holder")
        expect("CANVAS-GROUP-RESP-UNIQUE", text in responsibilities_of(holder_read),
               f"after the refused claim the holder no longer holds {text}", last_exchange(fhir))
    finally:
        groups.release(other_id, other, always=True)


@check("group-responsibility-keep", "CANVAS-GROUP-RESP-KEEP", "FHIR-UPDATE-200")
def test_team_keeps_its_own_responsibility_on_update(holder, groups, fhir):
    gid, body, text = holder
    renamed = {**body, "name": body["name"] + " kept"}
    put = groups.update(gid, renamed)
    expect("CANVAS-GROUP-RESP-KEEP", put.status_code == 200,
           f"update of the holder keeping its own {text} was answered {put.status_code}", last_exchange(fhir))
    read = expect_read(fhir, "Group", gid, "CANVAS-GROUP-READ", "read after the update")
    expect("CANVAS-GROUP-RESP-KEEP", text in responsibilities_of(read) and read.get("name") == renamed["name"],
           f"after the update the holder shows {sorted(responsibilities_of(read))}, name {read.get('name')!r}",
           last_exchange(fhir))


@check("group-responsibility-free", "CANVAS-GROUP-RESP-FREE")
def test_dropped_responsibility_can_be_claimed_by_another_team(holder, groups, target_data, fhir):
    gid, body, text = holder
    dropped = {k: v for k, v in body.items() if k != "characteristic"}
    put = groups.update(gid, dropped)
    expect("CANVAS-GROUP-UPDATE", put.status_code == 200, f"update dropping {text} answered {put.status_code}",
           last_exchange(fhir))
    newcomer = team(target_data.run_prefix, text)
    response, new_id = groups.create(newcomer)
    try:
        expect("CANVAS-GROUP-RESP-FREE", response.status_code == 201,
               f"a new team claiming the dropped {text} was answered {response.status_code}", last_exchange(fhir))
        read = expect_read(fhir, "Group", new_id, "CANVAS-GROUP-READ", "read the new holder")
        expect("CANVAS-GROUP-RESP-FREE", text in responsibilities_of(read),
               f"the new holder shows {sorted(responsibilities_of(read))}", last_exchange(fhir))
    finally:
        if new_id:
            groups.release(new_id, newcomer, always=True)
