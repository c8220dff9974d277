"""Task update semantics (seed 003 update description, SPEC §3): which omitted fields are
kept and which cleared, notes appended (or replaced where the target is known to),
a full update round trip, conditional update and unknown ids."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.client import created_id
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange
from conformance.markers import check, needs, profile, verifies
from conformance.rules.model import KEPT, NOT_KEPT, REFUSED
from conformance.rules.task import OMISSION
from conformance.strategies.task import note, valid_task
from conformance.verdicts import expect

from .support.api import MALFORMED_IF_MATCH, judge_malformed_if_match, judge_stale_if_unmodified_since
from .support.tasks import content, expect_same, instant, notes, team_of

pytestmark = [profile("canvas"), needs("Task", interaction="update")]


def _omission_params() -> list[Any]:
    return [pytest.param(o.element, o.outcome, o.requirement, id=o.element, marks=verifies(o.requirement))
            for o in OMISSION.values()]


def _value(task: dict[str, Any], name: str) -> Any:
    c = content(task)
    return {"extension": c["team"], "authoredOn": instant(task.get("authoredOn")), "owner": c["owner"],
            "restriction": c["due"], "input": c["labels"] or None, "description": task.get("description")}[name]


@check("task-omit-field", "CANVAS-TASK-CREATE", "FHIR-UPDATE-200")
@needs("Task", interaction="create")
@pytest.mark.parametrize("field, outcome, requirement", _omission_params())
@given(data=st.data())
def test_omitted_field_is_kept_or_cleared(field, outcome, requirement, data, tasks, task_teams, target_data, fhir):
    created = data.draw(valid_task(target_data, task_teams, full=True, status="requested"), label="created")
    created.pop("note")
    response, tid = tasks.create(created)
    tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", "create with every field set")
    before = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read before the update")
    stored = _value(before, field)
    expect("CANVAS-TASK-READ", stored not in (None, [], ""), f"{field} did not read back after create: {stored!r}",
           last_exchange(fhir))
    update = {k: v for k, v in created.items() if k != field}
    update["status"] = "completed"                    # the update visibly changes something else
    put = tasks.update(tid, update)
    put_ex = last_exchange(fhir)
    after = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", f"read after an update without {field}")
    ex = last_exchange(fhir)
    now = _value(after, field)
    if outcome == NOT_KEPT:
        expect(requirement, put.status_code in REFUSED or (put.status_code == 200 and now in (None, "")),
               f"an update without {field} answered {put.status_code} and {field} reads {now!r} "
               f"(was {stored!r}): it must be rejected or cleared, never kept", ex if put.status_code == 200 else put_ex)
        return
    expect("FHIR-UPDATE-200", put.status_code == 200, f"update without {field} answered {put.status_code}", put_ex)
    expect("CANVAS-TASK-READ", after.get("status") == "completed",
           f"the update without {field} did not apply (status {after.get('status')!r})", ex)
    if outcome == KEPT:
        expect(requirement, now == stored, f"an update without {field} changed it from {stored!r} to {now!r}; "
               "the seed says it keeps its last value", ex)
    else:
        expect(requirement, now is None, f"an update without {field} left it as {now!r}; the seed says omitting "
               "it deletes its contents", ex)


@check("task-notes-update", "CANVAS-TASK-NOTES-APPEND", "CANVAS-TASK-NOTE")
@needs("Task", interaction="create")
@given(data=st.data())
def test_notes_are_appended(data, tasks, task_teams, target_data, fhir, settings):
    created = data.draw(valid_task(target_data, task_teams, status="requested"), label="created")
    created["note"] = [data.draw(note(target_data), label="first note")]
    response, tid = tasks.create(created)
    tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", "create with one note")
    before = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read before the update")
    new = data.draw(st.lists(note(target_data), min_size=1, max_size=2), label="notes in the update")
    keep = {k: v for k, v in created.items() if k != "note"}
    put = tasks.update(tid, {**keep, "note": new})
    expect("FHIR-UPDATE-200", put.status_code == 200, f"update with notes answered {put.status_code}", last_exchange(fhir))
    after = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read after the update")
    sent = [(n["text"], n["authorReference"]["reference"]) for n in new]
    if settings.notes_replace:
        expected, how = sent, "replaced (--notes-replace)"
    else:
        expected, how = notes(before) + sent, "appended"
    expect("CANVAS-TASK-NOTES-APPEND", notes(after) == expected,
           f"after an update with {len(new)} note(s) the notes are {notes(after)}; expected them {how}: {expected}",
           last_exchange(fhir))
    put = tasks.update(tid, keep)
    again = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read after an update without notes")
    expect("CANVAS-TASK-NOTES-APPEND", settings.notes_replace or notes(again) == expected,
           f"an update without notes changed them to {notes(again)}", last_exchange(fhir))


@check("task-update-roundtrip", "CANVAS-TASK-READ", "FHIR-UPDATE-200", "CANVAS-TASK-LABEL")
@needs("Task", interaction="create")
@given(data=st.data())
def test_update_replaces_content(data, tasks, task_teams, target_data, fhir):
    first = data.draw(valid_task(target_data, task_teams, full=True), label="created")
    second = data.draw(valid_task(target_data, task_teams), label="update")
    second.pop("note", None)
    response, tid = tasks.create(first)
    tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", "create before update")
    put = tasks.update(tid, second)
    expect("FHIR-UPDATE-200", put.status_code == 200, f"update answered {put.status_code}", last_exchange(fhir))
    read = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read after update")
    kept = [k for k, o in OMISSION.items() if o.outcome == KEPT and k not in second]
    skip = {"team" if "extension" in kept else "", "authoredOn" if "authoredOn" in kept else "", "for"}
    expect_same(second, read, "CANVAS-TASK-READ", "read after update", last_exchange(fhir), skip=skip)
    if "extension" in kept:
        expect(OMISSION["extension"].requirement, team_of(read) == team_of(first),
               f"team {team_of(first)!r} became {team_of(read)!r} after an update without the extension",
               last_exchange(fhir))


def _simple(prefix: str, practitioner: str) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "unknown",
            "description": f"{prefix} cond {secrets.token_hex(4)}", "requester": {"reference": f"Practitioner/{practitioner}"}}


@check("task-update-if-unmodified-since", "FHIR-PRECONDITION-412", "FHIR-LAST-MODIFIED")
@needs("Task", interaction="create")
def test_stale_if_unmodified_since_is_refused(tasks, task_teams, target_data, fhir):
    judge_stale_if_unmodified_since(fhir, tasks, _simple(target_data.run_prefix, sorted(target_data.practitioner_ids)[0]),
                                    "description", "CANVAS-TASK-CREATE", "CANVAS-TASK-READ")


@profile("fhir-core")
@check("task-update-if-match-malformed", "FHIR-IF-MATCH-MALFORMED")
@needs("Task", interaction="create")
@pytest.mark.parametrize("form", sorted(MALFORMED_IF_MATCH))
def test_malformed_if_match_is_refused_and_not_applied(form, tasks, task_teams, target_data, fhir):
    body = _simple(target_data.run_prefix, sorted(target_data.practitioner_ids)[0])
    judge_malformed_if_match(fhir, tasks, body, "description", form, "CANVAS-TASK-READ")


@check("task-unknown-id", "FHIR-NOT-FOUND", "FHIR-ERROR-OUTCOME")
def test_read_and_update_of_unknown_task_are_404(fhir, target_data):
    missing = target_data.missing_id()
    response = fhir.read("Task", missing)
    expect_error(fhir, response, "FHIR-NOT-FOUND", (404,), "read of an unknown Task", code="not-found")
    body = {**_simple(target_data.run_prefix, (sorted(target_data.practitioner_ids) or ["x"])[0]), "id": missing}
    response = fhir.put(f"Task/{missing}", json_body=body)
    expect_error(fhir, response, "FHIR-NOT-FOUND", (404,), "update of an unknown Task", code="not-found")


@check("task-auth", "FHIR-AUTH-401", "FHIR-AUTH-403", "FHIR-ERROR-OUTCOME")
@needs("Task", interaction="create")
def test_task_requests_need_a_token_and_the_scope(anonymous_fhir, limited_fhir, fhir, tasks, target_data, ledger):
    body = _simple(target_data.run_prefix, (sorted(target_data.practitioner_ids) or ["x"])[0])
    for what, response in (("search", anonymous_fhir.search("Task", {"_count": 1})),
                           ("read", anonymous_fhir.read("Task", target_data.missing_id())),
                           ("create", anonymous_fhir.create(body))):
        if response.status_code == 201 and created_id(response, "Task"):
            ledger.created_task(created_id(response, "Task"), body)
        expect_error(anonymous_fhir, response, "FHIR-AUTH-401", (401,), f"Task {what} without a token")
    response = limited_fhir.create(body)
    if response.status_code == 201 and created_id(response, "Task"):
        ledger.created_task(created_id(response, "Task"), body)
    expect_error(limited_fhir, response, "FHIR-AUTH-403", (403,), "Task create with a token lacking write scope")
