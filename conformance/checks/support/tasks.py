"""What the Task checks share: the Task API fixture, the run's own teams, and the
comparisons of what was sent with what is read back."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, Iterable

import pytest

from conformance.rules.group import TEAM, group_body
from conformance.client import FhirClient
from conformance.expectations import expect_created
from conformance.rules.task import GROUP_EXT, PERMALINK_EXT
from conformance.target import Ledger, TargetData
from conformance.verdicts import expect

from .api import GroupApi, TaskApi, require


@pytest.fixture(scope="session")
def tasks(fhir: FhirClient, ledger: Ledger) -> TaskApi:
    return TaskApi(fhir, ledger)


@pytest.fixture(scope="session")
def task_teams(fhir: FhirClient, ledger: Ledger, target_data: TargetData) -> list[str]:
    """Two teams of this run (no responsibilities) that tasks are assigned to."""
    require(target_data, ["practitioners", "patients"])
    api = GroupApi(fhir, ledger)
    made = []
    for n in range(2):
        body = group_body(TEAM, f"{target_data.run_prefix} task team {n} {secrets.token_hex(3)}")
        response, gid = api.create(body)
        made.append(expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", "create a team for tasks"))
    return made


# ---- comparisons ----------------------------------------------------------------------

def instant(value: Any) -> dt.datetime | str | None:
    """A dateTime as an aware UTC datetime (so '+00:00' and 'Z' compare equal); else as is."""
    if not isinstance(value, str) or "T" not in value:
        return value
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def ref(obj: Any) -> str | None:
    return (obj or {}).get("reference") if isinstance(obj, dict) else None


def team_of(task: dict[str, Any]) -> str | None:
    for ext in task.get("extension", []) or []:
        if isinstance(ext, dict) and ext.get("url") == GROUP_EXT:
            return ref(ext.get("valueReference"))
    return None


def team_value(task: dict[str, Any]) -> dict[str, Any] | None:
    for ext in task.get("extension", []) or []:
        if isinstance(ext, dict) and ext.get("url") == GROUP_EXT:
            return ext.get("valueReference")
    return None


def permalink(task: dict[str, Any]) -> Any:
    for ext in task.get("extension", []) or []:
        if isinstance(ext, dict) and ext.get("url") == PERMALINK_EXT:
            return ext.get("valueString")
    return None


def due(task: dict[str, Any]) -> Any:
    return instant((((task.get("restriction") or {}).get("period")) or {}).get("end"))


def labels(task: dict[str, Any]) -> set[str]:
    return {i.get("valueString") for i in task.get("input", []) or [] if isinstance(i, dict)}


def notes(task: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(text, author) of each note, in order."""
    return [(n.get("text"), ref(n.get("authorReference"))) for n in task.get("note", []) or [] if isinstance(n, dict)]


# Where each element of the omission table shows in ``content()`` (authoredOn is compared on its own).
CONTENT_KEY = {"extension": "team", "owner": "owner", "restriction": "due", "input": "labels",
               "description": "description"}


def content(task: dict[str, Any]) -> dict[str, Any]:
    """What the client controls, in comparable form."""
    return {"status": task.get("status"), "intent": task.get("intent"), "description": task.get("description"),
            "requester": ref(task.get("requester")), "owner": ref(task.get("owner")), "for": ref(task.get("for")),
            "team": team_of(task), "due": due(task), "labels": sorted(labels(task))}


def expect_same(sent: dict[str, Any], read: dict[str, Any], requirement: str, what: str, ex: Any,
                skip: Iterable[str] = ()) -> None:
    s, r = content(sent), content(read)
    for key in s:
        if key in skip:
            continue
        expect(requirement, s[key] == r[key], f"{what}: {key} reads back as {r[key]!r}, sent {s[key]!r}", ex)
    if "authoredOn" in sent and "authoredOn" not in skip:
        expect(requirement, instant(read.get("authoredOn")) == instant(sent["authoredOn"]),
               f"{what}: authoredOn reads back as {read.get('authoredOn')!r}, sent {sent['authoredOn']!r}", ex)
