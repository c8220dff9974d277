"""Valid and labelled-invalid Task payloads, generated from ``rules.task``.

References are drawn from what the suite found on the target (``TargetData``) and
from the teams this run created, so valid payloads are valid *there*; every
invalid payload breaks exactly one rule of the description and says which.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from hypothesis import strategies as st

from ..rules.model import Field, Kind, Violation
from ..rules.task import GROUP_EXT, STATUSES, TASK, TASK_VARIANT, group_extension, label
from .common import InvalidPayload, breach, lists, run_name, sampled_from
from .group import TargetData

ZONES = (dt.timezone.utc, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5)))


def instant_text(when: dt.datetime) -> str:
    """Second precision, with the offset ('Z' for UTC) as Canvas examples write it."""
    text = when.replace(microsecond=0).isoformat()
    return text.replace("+00:00", "Z")


instants = st.builds(
    lambda when, zone: instant_text(when.replace(tzinfo=dt.timezone.utc).astimezone(zone)),
    st.datetimes(min_value=dt.datetime(2021, 1, 1), max_value=dt.datetime(2029, 12, 31)),
    st.sampled_from(ZONES),
)
# authoredOn lies in the past: a server sets lastModified to now, and FHIR Task inv-1 wants
# lastModified >= authoredOn, so a future authoredOn makes a Task no invariant-checking server keeps
past_instants = st.builds(
    lambda when, zone: instant_text(when.replace(tzinfo=dt.timezone.utc).astimezone(zone)),
    st.datetimes(min_value=dt.datetime(2021, 1, 1), max_value=dt.datetime(2025, 12, 31)),
    st.sampled_from(ZONES),
)


def label_pool(prefix: str) -> list[str]:
    """Labels this run uses: a few shared ones (so label search has several hits)."""
    return [f"{prefix}-label-{n}" for n in ("a", "b", "c")]


def practitioner(pid: str) -> dict[str, str]:
    return {"reference": f"Practitioner/{pid}"}


@st.composite
def note(draw: st.DrawFn, data: TargetData, with_time: bool | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": draw(run_name(data.run_prefix)),
                            "authorReference": practitioner(draw(sampled_from(sorted(data.practitioner_ids))))}
    if with_time if with_time is not None else draw(st.booleans()):
        body["time"] = draw(instants)
    return body


@st.composite
def valid_task(draw: st.DrawFn, data: TargetData, teams: Sequence[str], *, full: bool = False,
               status: str | None = None) -> dict[str, Any]:
    """A Task the reference behaviour accepts; ``full`` sets every optional element."""
    practitioners = sorted(data.practitioner_ids)
    payload: dict[str, Any] = {
        "resourceType": "Task",
        "status": status or draw(sampled_from(STATUSES)),
        "intent": "unknown",
        "description": draw(run_name(data.run_prefix)),
        "requester": practitioner(draw(sampled_from(practitioners))),
    }

    def maybe(name: str) -> bool:
        return full or draw(st.booleans(), label=f"with {name}")

    if teams and maybe("team"):
        payload["extension"] = [group_extension(draw(sampled_from(sorted(teams))))]
    if data.patient_ids and maybe("for"):
        payload["for"] = {"reference": f"Patient/{draw(sampled_from(sorted(data.patient_ids)))}"}
    if maybe("owner"):
        payload["owner"] = practitioner(draw(sampled_from(practitioners)))
    if maybe("authoredOn"):
        payload["authoredOn"] = draw(past_instants)
    if maybe("due date"):
        payload["restriction"] = {"period": {"end": draw(instants)}}
    if maybe("notes"):
        payload["note"] = draw(lists(note(data), min_size=1, max_size=2))
    if maybe("labels"):
        pool = label_pool(data.run_prefix)
        names = draw(lists(sampled_from(pool) | run_name(data.run_prefix + "-new"), min_size=1, max_size=3,
                           unique=True))
        payload["input"] = [label(n) for n in names]
    return payload


# ---- breaches of rules.task.TASK's constraints, by name: (payload, target data, draw) -> payload

def _ref(payload: dict, path: str, value: str) -> dict:
    node = payload
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part][0] if isinstance(node[part], list) else node[part]
    node[parts[-1]] = {"reference": value}
    return payload


def _wrong_kind(path: str, kind: str) -> Any:
    def breach(payload: dict, data: Any, draw: Any) -> dict:
        ids = data.patient_ids if kind == "Patient" else data.practitioner_ids
        return _ref(payload, path, f"{kind}/{draw.sampled_from(sorted(ids))}")
    return breach


def _missing(path: str, kind: str) -> Any:
    def breach(payload: dict, data: Any, draw: Any) -> dict:
        return _ref(payload, path, f"{kind}/{data.missing_id()}")
    return breach


def _group_to(kind: str) -> Any:
    def breach(payload: dict, data: Any, draw: Any) -> dict:
        if kind == "Group":
            ref = f"Group/{data.missing_id()}"
        else:
            ref = f"Patient/{draw.sampled_from(sorted(data.patient_ids))}"
        payload["extension"] = [{"url": GROUP_EXT, "valueReference": {"reference": ref}}]
        return payload
    return breach


BREACHES = {
    "requester-wrong-kind": _wrong_kind("requester", "Patient"),
    "requester-missing": _missing("requester", "Practitioner"),
    "owner-wrong-kind": _wrong_kind("owner", "Patient"),
    "owner-missing": _missing("owner", "Practitioner"),
    "patient-wrong-kind": _wrong_kind("for", "Practitioner"),
    "patient-missing": _missing("for", "Patient"),
    "group-missing": _group_to("Group"),
    "group-wrong-kind": _group_to("Patient"),
    "note-author-wrong-kind": _wrong_kind("note.authorReference", "Patient"),
    "note-author-missing": _missing("note.authorReference", "Practitioner"),
}


def _outside(field: Field) -> st.SearchStrategy[Any]:
    near = [v.title() for v in field.allowed] + [v.upper() for v in field.allowed]
    if field.fhir_codes:
        near += ["open", "closed", "todo", "routine"]
    return sampled_from(sorted({v for v in near if v not in field.allowed and v not in (field.fhir_codes or ())}))


@st.composite
def invalid_task(draw: st.DrawFn, data: TargetData, teams: Sequence[str], violation: Violation,
                 base: dict[str, Any] | None = None) -> InvalidPayload:
    """A payload breaking exactly ``violation``; the base is a full valid task (or ``base`` for updates)."""
    if base is None:
        base = draw(valid_task(data, teams, full=True, status="requested"))
    return InvalidPayload(breach(draw, TASK, violation, base, data, _outside, BREACHES), violation)


def violations(update: bool = False) -> list[Violation]:
    return list(TASK.violations(update=update))


def needs(violation: Violation) -> set[str]:
    wanted = {"practitioners", "patients"}
    for c in TASK.constraints:
        if c.name == violation.name:
            wanted |= set(c.needs)
    return wanted


__all__ = ["valid_task", "invalid_task", "violations", "needs", "note", "instants", "label_pool", "TASK_VARIANT",
           "Kind"]
