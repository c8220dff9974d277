"""Task payloads: valid ones are stored and read back with what Canvas adds; each invalid
one is refused with an OperationOutcome, for the rule it breaks, and changes nothing."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from conformance.rules.group import TEAM, group_body
from conformance.expectations import expect_created, expect_read, expect_rejected, last_exchange
from conformance.rules.model import PROFILE_RULE, REFUSED
from conformance.markers import check, needs, profile, verifies
from conformance.rules.task import GROUP_EXT, PERMALINK_EXT
from conformance.strategies.task import invalid_task, needs as violation_needs, valid_task, violations
from conformance.verdicts import expect

from .support.api import expect_nothing_stored, require
from .support.tasks import content, expect_same, instant, labels, notes, permalink, team_value

pytestmark = profile("canvas")
# Each invalid-payload case is deterministic in the rule it breaks; a third of the examples is plenty.
FEW = hsettings(max_examples=max(2, hsettings.default.max_examples // 3))
CLOCK_SKEW = dt.timedelta(minutes=10)
OPTIONAL = ("extension", "for", "owner", "authoredOn", "restriction", "note", "input")


def near_now(value: Any, before: dt.datetime, after: dt.datetime) -> bool:
    when = instant(value)
    return isinstance(when, dt.datetime) and before - CLOCK_SKEW <= when <= after + CLOCK_SKEW


def expect_canvas_read(fhir, read: dict[str, Any], sent: dict[str, Any], before: dt.datetime, what: str) -> None:
    """What a read adds: team type/display, permalink, reference types, defaults, lastModified."""
    ex = last_exchange(fhir)
    link = permalink(read)
    expect("CANVAS-TASK-PERMALINK", isinstance(link, str) and link.startswith(("http://", "https://")),
           f"{what}: no task-permalink extension with a URL valueString (got {link!r})", ex)
    for key, kind in (("requester", "Practitioner"), ("owner", "Practitioner"), ("for", "Patient")):
        if key in sent:
            expect("CANVAS-TASK-READ", (read.get(key) or {}).get("type") == kind,
                   f"{what}: {key}.type reads as {(read.get(key) or {}).get('type')!r}, expected {kind}", ex)
    expect("CANVAS-TASK-READ", instant(read.get("lastModified")) is not None
           and isinstance(instant(read.get("lastModified")), dt.datetime),
           f"{what}: lastModified reads as {read.get('lastModified')!r}", ex)
    after = dt.datetime.now(dt.timezone.utc)
    if "authoredOn" not in sent:
        expect("CANVAS-TASK-AUTHORED-DEFAULT", near_now(read.get("authoredOn"), before, after),
               f"{what}: authoredOn was omitted and reads as {read.get('authoredOn')!r}, not the time of ingestion", ex)
    sent_notes = sent.get("note", [])
    expect("CANVAS-TASK-NOTE", notes(read) == notes(sent),
           f"{what}: notes read back as {notes(read)}, sent {notes(sent)}", ex)
    for s, r in zip(sent_notes, read.get("note", []) or []):
        if "time" in s:
            expect("CANVAS-TASK-NOTE", instant(r.get("time")) == instant(s["time"]),
                   f"{what}: note time reads as {r.get('time')!r}, sent {s['time']!r}", ex)
        else:
            expect("CANVAS-TASK-NOTE", near_now(r.get("time"), before, after),
                   f"{what}: a note sent without time reads with time {r.get('time')!r}, not the time of ingestion", ex)
    expect("CANVAS-TASK-LABEL", labels(read) == labels(sent),
           f"{what}: labels read back as {sorted(labels(read))}, sent {sorted(labels(sent))}", ex)


def expect_team_display(fhir, read: dict[str, Any], what: str) -> None:
    value = team_value(read)
    if value is None:
        return
    ex = last_exchange(fhir)
    team = expect_read(fhir, "Group", value.get("reference", "").partition("/")[2], "CANVAS-GROUP-READ", "read the team")
    expect("CANVAS-TASK-GROUP-DISPLAY", value.get("type") == "Group" and value.get("display") == team.get("name"),
           f"{what}: the team reads as type {value.get('type')!r} display {value.get('display')!r}; "
           f"the team is named {team.get('name')!r}", ex)


@check("task-create-valid", "CANVAS-TASK-CREATE", "CANVAS-TASK-READ", "CANVAS-TASK-PERMALINK",
       "CANVAS-TASK-AUTHORED-DEFAULT", "CANVAS-TASK-NOTE", "CANVAS-TASK-LABEL", "CANVAS-TASK-GROUP-DISPLAY",
       "FHIR-CREATE-201")
@needs("Task", interaction="create")
@pytest.mark.parametrize("shape", ["minimal", "full", "any"])
@given(data=st.data())
def test_valid_task_is_created_and_read_back(shape, data, tasks, task_teams, target_data, fhir):
    payload = data.draw(valid_task(target_data, task_teams, full=shape == "full"), label="payload")
    if shape == "minimal":
        payload = {k: v for k, v in payload.items() if k not in OPTIONAL}
    elif shape == "full":
        payload["note"][0].pop("time", None)          # one note takes its time from the server
        payload.pop("authoredOn")                     # and authoredOn its default
    before = dt.datetime.now(dt.timezone.utc)
    response, tid = tasks.create(payload)
    tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", f"create {shape} task")
    read = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read the new task")
    ex = last_exchange(fhir)
    expect_same(payload, read, "CANVAS-TASK-READ", "read the new task", ex)
    expect_canvas_read(fhir, read, payload, before, "read the new task")
    expect_team_display(fhir, read, "read the new task")


@check("task-group-display-follows-team", "CANVAS-TASK-GROUP-DISPLAY")
@needs("Task", interaction="create")
def test_team_display_is_the_current_team_name(tasks, task_teams, target_data, fhir, groups):
    require(target_data, ["practitioners"])
    body = group_body(TEAM, f"{target_data.run_prefix} renamed team {secrets.token_hex(3)}")
    response, gid = groups.create(body)
    gid = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", "create a team")
    task = {"resourceType": "Task", "status": "requested", "intent": "unknown",
            "description": f"{target_data.run_prefix} display {secrets.token_hex(3)}",
            "requester": {"reference": f"Practitioner/{sorted(target_data.practitioner_ids)[0]}"},
            "extension": [{"url": GROUP_EXT, "valueReference": {"reference": f"Group/{gid}"}}]}
    response, tid = tasks.create(task)
    tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", "create a task for the team")
    put = groups.update(gid, {**body, "name": body["name"] + " v2"})
    expect("CANVAS-GROUP-UPDATE", put.status_code == 200, f"team rename answered {put.status_code}", last_exchange(fhir))
    read = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read the task after the team was renamed")
    expect("CANVAS-TASK-GROUP-DISPLAY", (team_value(read) or {}).get("display") == body["name"] + " v2",
           f"after renaming the team the task shows display {(team_value(read) or {}).get('display')!r}",
           last_exchange(fhir))


@check("task-readonly-ignored", "FHIR-READONLY-IGNORED", "CANVAS-TASK-PERMALINK")
@needs("Task", interaction="create")
@given(data=st.data())
def test_read_only_elements_are_ignored(data, tasks, task_teams, target_data, fhir):
    payload = data.draw(valid_task(target_data, task_teams, full=True), label="payload")
    payload["extension"][0]["valueReference"].update(type="Group", display="Someone Else's Team")
    payload["extension"].append({"url": PERMALINK_EXT, "valueString": "https://example.org/permalinks/x"})
    payload["requester"]["type"] = "Practitioner"
    # FHIR Task inv-1: lastModified at or after authoredOn (a server enforcing it refuses anything else)
    stale = max(instant("2001-01-01T00:00:00Z"), instant(payload.get("authoredOn")) or instant("2001-01-01T00:00:00Z"))
    payload["lastModified"] = stale.isoformat().replace("+00:00", "Z")
    response, tid = tasks.create(payload)
    expect("FHIR-READONLY-IGNORED", response.status_code == 201,
           f"a body carrying read-only permalink/display/type/lastModified was answered {response.status_code}",
           last_exchange(fhir))
    read = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read after create")
    ex = last_exchange(fhir)
    expect("CANVAS-TASK-PERMALINK", permalink(read) != "https://example.org/permalinks/x",
           "the permalink sent by the client was stored", ex)
    expect("FHIR-READONLY-IGNORED", (team_value(read) or {}).get("display") != "Someone Else's Team"
           and instant(read.get("lastModified")) != stale,
           f"read-only values sent were stored: {team_value(read)!r}, lastModified {read.get('lastModified')!r}", ex)
    put = tasks.update(tid, {k: v for k, v in read.items() if k != "meta"})
    expect("FHIR-READONLY-IGNORED", put.status_code == 200, f"PUT of the task as read was answered {put.status_code}",
           last_exchange(fhir))


def _violation_params(update: bool) -> list[Any]:
    params = []
    for v in violations(update=update):
        path = (v.path or "").replace("[]", "")
        params.append(pytest.param(v, id="-".join(p for p in (v.name, path) if p), marks=verifies(v.requirement)))
    return params


@check("task-create-invalid", "FHIR-ERROR-OUTCOME", "FHIR-REJECT-STATUS")
@needs("Task", interaction="create")
@pytest.mark.parametrize("violation", _violation_params(update=False))
@FEW
@given(data=st.data())
def test_invalid_task_is_rejected(violation, data, tasks, task_teams, target_data, fhir):
    require(target_data, violation_needs(violation))
    invalid = data.draw(invalid_task(target_data, task_teams, violation), label="invalid")
    response, _ = tasks.create(invalid.payload)
    expect_rejected(fhir, response, violation, "create")


REJECTED_BY_RULE = [p for p in _violation_params(update=False)
                    if p.values[0].status == PROFILE_RULE and p.values[0].path != "description"]


@check("task-create-rejected-stores-nothing", "FHIR-REJECT-NOTHING-STORED")
@needs("Task", search_param="description")
@pytest.mark.parametrize("violation", REJECTED_BY_RULE)
@FEW
@given(data=st.data())
def test_rejected_create_stores_nothing(violation, data, tasks, task_teams, target_data, fhir):
    require(target_data, violation_needs(violation))
    invalid = data.draw(invalid_task(target_data, task_teams, violation), label="invalid")
    marker = f"{target_data.run_prefix} rejected task {secrets.token_hex(6)}"
    invalid.payload["description"] = marker
    response, _ = tasks.create(invalid.payload)
    expect(violation.requirement, response.status_code in REFUSED,
           f"create with {violation.description} answered {response.status_code}", last_exchange(fhir))
    expect_nothing_stored(fhir, "Task", "description", marker, violation.description)


@check("task-update-invalid", "FHIR-ERROR-OUTCOME", "FHIR-REJECT-STATUS", "FHIR-REJECT-NOTHING-STORED")
@needs("Task", interaction="update")
@pytest.mark.parametrize("violation", _violation_params(update=True))
@FEW
@given(data=st.data())
def test_invalid_update_is_rejected_and_changes_nothing(violation, data, tasks, task_teams, target_data, fhir):
    require(target_data, violation_needs(violation))
    base = data.draw(valid_task(target_data, task_teams, full=True, status="requested"), label="stored")
    response, tid = tasks.create(base)
    tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", "create before the invalid update")
    before = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read before the invalid update")
    keep_notes = (violation.path or "").startswith("note") or violation.name.startswith("note")
    update = {**{k: v for k, v in base.items() if keep_notes or k != "note"}, "id": tid}
    invalid = data.draw(invalid_task(target_data, task_teams, violation, base=update), label="invalid")
    put = fhir.put(f"Task/{tid}", json_body=invalid.payload)
    expect_rejected(fhir, put, violation, "update")
    after = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read after the invalid update")
    expect("FHIR-REJECT-NOTHING-STORED", content(after) == content(before) and notes(after) == notes(before),
           f"a rejected update ({violation.description}) changed the task: {content(before)} -> {content(after)}",
           last_exchange(fhir))
