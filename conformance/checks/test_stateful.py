"""Model-based stateful test of Group and Task together (Hypothesis ``RuleBasedStateMachine``).

Random sequences of Team / Patient Group / Task creates, updates (with random
omissions), reads and searches run against the target while an in-memory model
keeps the reference behaviour (SPEC §2-§3): responsibilities belong to one team
and move between teams, task-group displays follow team renames, omitted task
fields are kept or cleared as the seed says, notes append. Every response is
checked against the model. A failure is reported shrunk, with each step's
request and response.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, multiple, rule,
                                 run_state_machine_as_test)

from conformance.client import json_or_none
from conformance.markers import check, needs, profile
from conformance.rules.group import (PATIENT_GROUP, RESPONSIBILITY_UNIQUE as UNIQUE, TEAM, group_body,
                                     responsibilities_of)
from conformance.rules.model import KEPT, NOT_KEPT, PROFILE_RULE, REFUSED
from conformance.rules.task import OMISSION, group_extension
from conformance.strategies.task import valid_task
from conformance.verdicts import expect

from .support.api import GroupApi, TaskApi, require
from .support.tasks import CONTENT_KEY, content, instant, notes, team_value

pytestmark = [profile("canvas"), needs("Task", interaction="update"), needs("Group", interaction="update")]
MODEL = "CANVAS-TASK-MODEL"


@dataclass
class TeamModel:
    name: str
    responsibilities: set[str] = field(default_factory=set)
    members: list[str] = field(default_factory=list)


@dataclass
class TaskModel:
    body: dict[str, Any]                         # last full content, in ``content()`` form
    authored: Any
    notes: list[tuple[Any, Any]]


def _compact(text: str | None) -> str:
    try:
        return json.dumps(json.loads(text or ""), separators=(",", ":"))
    except ValueError:
        return (text or "").replace("\n", " ")


def make_machine(fhir, tasks: TaskApi, groups: GroupApi, data, notes_replace: bool) -> type:
    pool = sorted(data.free_responsibilities)[:4]

    class TeamsAndTasks(RuleBasedStateMachine):
        teams = Bundle("teams")
        patient_groups = Bundle("patient_groups")
        task_ids = Bundle("tasks")

        def __init__(self) -> None:
            super().__init__()
            self.team: dict[str, TeamModel] = {}
            self.task: dict[str, TaskModel] = {}
            self.log: list[str] = []
            self.names = 0

        # -- transcript ----------------------------------------------------------------
        def record(self, what: str) -> Any:
            ex = fhir.recorder.last
            if ex is not None:
                body = (ex.request_body or "")[:400]
                self.log.append(f"step {len(self.log) + 1}: {what}\n    > {ex.method} {ex.url}"
                                + (f"\n    > {body}" if body else "")
                                + f"\n    < {ex.status} {_compact(ex.response_body)[:400]}")
            return ex

        def check(self, condition: Any, message: str, ex: Any = None) -> None:
            if not condition:
                message += "\n  the shrunk sequence, step by step:\n" + "\n".join(self.log)
            expect(MODEL, condition, message, ex or fhir.recorder.last)

        def name(self) -> str:
            self.names += 1
            return f"{data.run_prefix} model team {self.names} {secrets.token_hex(2)}"

        def holder(self, text: str) -> str | None:
            return next((gid for gid, t in self.team.items() if text in t.responsibilities), None)

        # -- teams ---------------------------------------------------------------------
        def _team_body(self, name: str, texts: set[str], gid: str | None = None) -> dict[str, Any]:
            body = group_body(TEAM, name, responsibilities=sorted(texts))
            if gid:
                body["id"] = gid
            return body

        @initialize(target=teams)
        def first_team(self) -> str:
            return self._create_team(set())

        def _create_team(self, texts: set[str]) -> Any:
            body = self._team_body(self.name(), texts)
            response, gid = groups.create(body)
            ex = self.record(f"create team claiming {sorted(texts)}")
            conflict = [t for t in texts if self.holder(t)]
            if conflict:
                self.check(response.status_code == UNIQUE.status, f"a team claiming {conflict} held by another "
                           f"team was answered {response.status_code}, not {UNIQUE.status}", ex)
                return multiple()          # nothing created: no team enters the bundle
            self.check(response.status_code == 201 and gid, f"create team answered {response.status_code}", ex)
            self.team[gid] = TeamModel(body["name"], set(texts))
            return gid

        @rule(target=teams, texts=st.sets(st.sampled_from(pool), max_size=2) if pool else st.just(set()))
        def create_team(self, texts: set[str]) -> Any:
            return self._create_team(texts)

        @rule(gid=teams, texts=st.sets(st.sampled_from(pool), max_size=2) if pool else st.just(set()))
        def update_team(self, gid: str, texts: set[str]) -> None:
            """Rename the team and change its responsibilities (a transfer when another team dropped them)."""
            model = self.team[gid]
            body = self._team_body(self.name(), texts, gid)
            put = groups.update(gid, body)
            ex = self.record(f"update team {gid}: rename, responsibilities {sorted(texts)}")
            conflict = [t for t in texts if self.holder(t) not in (None, gid)]
            if conflict:
                self.check(put.status_code == UNIQUE.status, f"a team claiming {conflict} held by another team "
                           f"was answered {put.status_code}, not {UNIQUE.status}", ex)
            else:
                self.check(put.status_code == 200, f"team update answered {put.status_code}", ex)
                model.name, model.responsibilities = body["name"], set(texts)
            self._verify_team(gid)
            for tid, task in self.task.items():
                if task.body["team"] == f"Group/{gid}":
                    self._verify_task(tid)
                    break

        @rule(gid=teams)
        def read_team(self, gid: str) -> None:
            self._verify_team(gid)

        def _verify_team(self, gid: str) -> None:
            response = fhir.read("Group", gid)
            ex = self.record(f"read team {gid}")
            read = json_or_none(response) or {}
            model = self.team[gid]
            self.check(response.status_code == 200 and read.get("name") == model.name
                       and responsibilities_of(read) == model.responsibilities,
                       f"team {gid} reads name {read.get('name')!r} responsibilities "
                       f"{sorted(responsibilities_of(read))}; the model says {model.name!r} {sorted(model.responsibilities)}",
                       ex)

        @rule(target=patient_groups, members=st.lists(st.sampled_from(sorted(data.patient_ids)), max_size=2, unique=True))
        def create_patient_group(self, members: list[str]) -> Any:
            body = group_body(PATIENT_GROUP, self.name().replace("team", "pg"), members)
            response, gid = groups.create(body)
            ex = self.record("create patient group")
            self.check(response.status_code == 201 and gid, f"create patient group answered {response.status_code}", ex)
            return gid

        # -- tasks ---------------------------------------------------------------------
        @initialize(target=task_ids, d=st.data())
        def first_task(self, d: Any) -> str:
            return self._create_task(d)

        @rule(target=task_ids, d=st.data())
        def create_task(self, d: Any) -> Any:
            return self._create_task(d)

        def _create_task(self, d: Any) -> Any:
            payload = d.draw(valid_task(data, sorted(self.team), full=not self.task), label="task")
            before = dt.datetime.now(dt.timezone.utc)
            response, tid = tasks.create(payload)
            ex = self.record("create task")
            self.check(response.status_code == 201 and tid, f"create task answered {response.status_code}", ex)
            self.task[tid] = TaskModel(content(payload), instant(payload.get("authoredOn")) or before, notes(payload))
            self._verify_task(tid)
            return tid

        @rule(tid=task_ids, d=st.data())
        def update_task(self, tid: str, d: Any) -> None:
            model = self.task[tid]
            payload = d.draw(valid_task(data, sorted(self.team)), label="update")
            omit = d.draw(st.sets(st.sampled_from(sorted(OMISSION))), label="omitted")
            for name in omit:
                payload.pop(name, None)
            if model.body["for"] and "for" not in payload:     # undocumented: never omit a set patient
                payload["for"] = {"reference": model.body["for"]}
            put = tasks.update(tid, payload)
            ex = self.record(f"update task {tid} omitting {sorted(set(omit) | (set(OMISSION) - set(payload)))}")
            omitted = {o.element: o.outcome for o in OMISSION.values() if o.element not in payload}
            if NOT_KEPT in omitted.values() and put.status_code in REFUSED:
                self._verify_task(tid)          # a refusal is one of the allowed answers: nothing changed
                return
            self.check(put.status_code == 200, f"task update answered {put.status_code}", ex)
            new = content(payload)              # what was sent; an omitted element reads back cleared ...
            for element, outcome in omitted.items():
                if outcome == KEPT and element in CONTENT_KEY:   # ... unless the table says it is kept
                    new[CONTENT_KEY[element]] = model.body[CONTENT_KEY[element]]
            model.body = new
            if omitted.get("authoredOn") != KEPT:
                model.authored = instant(payload.get("authoredOn"))
            sent_notes = notes(payload)
            model.notes = sent_notes if notes_replace else model.notes + sent_notes
            self._verify_task(tid)

        @rule(tid=task_ids, gid=patient_groups)
        def assign_task_to_patient_group(self, tid: str, gid: str) -> None:
            """A task's team must be a team: a Patient Group is refused and nothing changes."""
            model = self.task[tid]
            body = {"resourceType": "Task", "intent": "unknown", "status": model.body["status"],
                    "description": model.body["description"] or "x", "requester": {"reference": model.body["requester"]},
                    "extension": [group_extension(gid)]}
            put = tasks.update(tid, body)
            ex = self.record(f"assign task {tid} to patient group {gid}")
            self.check(put.status_code == PROFILE_RULE, f"assigning a task to Patient Group {gid} answered "
                       f"{put.status_code}, not {PROFILE_RULE}", ex)
            self._verify_task(tid)

        @rule(tid=task_ids)
        def read_task(self, tid: str) -> None:
            self._verify_task(tid)

        def _verify_task(self, tid: str) -> None:
            response, read = tasks.read(tid)
            ex = self.record(f"read task {tid}")
            model = self.task[tid]
            self.check(response.status_code == 200 and read, f"read task {tid} answered {response.status_code}", ex)
            got = content(read)
            for key, want in model.body.items():
                self.check(got[key] == want, f"task {tid}: {key} reads {got[key]!r}; the model says {want!r}", ex)
            self.check(notes(read) == model.notes, f"task {tid}: notes read {notes(read)}; model {model.notes}", ex)
            authored = instant(read.get("authoredOn"))
            if isinstance(model.authored, dt.datetime) and isinstance(authored, dt.datetime):
                self.check(abs((authored - model.authored).total_seconds()) < 600,
                           f"task {tid}: authoredOn reads {read.get('authoredOn')!r}; model {model.authored}", ex)
            if model.body["team"]:
                gid = model.body["team"].partition("/")[2]
                display = (team_value(read) or {}).get("display")
                self.check(display == self.team[gid].name,
                           f"task {tid}: team display {display!r}; the team is now named {self.team[gid].name!r}", ex)

        @rule(d=st.data())
        def search_tasks(self, d: Any) -> None:
            if not self.task:
                return
            kind = d.draw(st.sampled_from(["owner", "status", "requester", "patient", "label"]), label="parameter")
            element = {"patient": "for", "label": "labels"}.get(kind, kind)
            values = sorted({v for t in self.task.values()
                             for v in (t.body[element] if kind == "label" else [t.body[element]]) if v})
            if not values:
                return
            value = d.draw(st.sampled_from(values), label="value")
            expected = {tid for tid, t in self.task.items()
                        if (value in t.body[element] if kind == "label" else t.body[element] == value)}
            found, bundles = tasks.search_all({"_id": ",".join(sorted(self.task)), kind: value, "_count": 100})
            ex = self.record(f"search tasks {kind}={value}")
            got = {r.get("id") for r in found}
            self.check(got == expected, f"search {kind}={value} returned {sorted(got)}; the model expects "
                       f"{sorted(expected)}", ex)

        def teardown(self) -> None:
            for gid, model in self.team.items():
                if model.responsibilities:
                    groups.update(gid, self._team_body(model.name, set(), gid))

    return TeamsAndTasks


@check("task-group-model", MODEL, "CANVAS-GROUP-RESP-UNIQUE", "CANVAS-TASK-GROUP", "CANVAS-TASK-GROUP-DISPLAY")
@needs("Task", interaction="create")
@needs("Task", search_param="_id")
def test_teams_and_tasks_behave_as_the_model(fhir, tasks, groups, target_data, settings):
    require(target_data, ["practitioners", "patients"])
    machine = make_machine(fhir, tasks, groups, target_data, settings.notes_replace)
    current = hsettings.default
    run_state_machine_as_test(machine, settings=hsettings(
        current, max_examples=max(3, settings.examples // 2), stateful_step_count=10))
