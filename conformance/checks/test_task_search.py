"""Task search, sort and paging, checked against a corpus of tasks this run creates.

Every expectation is computed from the corpus itself; searches are scoped to the
corpus with ``_id`` so the checks hold on a shared server full of other tasks.
Date prefixes follow FHIR: a value denotes the range of its precision
([start, end)); eq = inside, ne = outside, gt = at/after end, lt = before start,
ge = at/after start, le = before end.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.client import json_or_none
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange
from conformance.markers import check, needs, profile, verifies
from conformance.rules.task import DATE_PREFIXES, SORTS, STATUSES, group_extension, label
from conformance.strategies.task import label_pool
from conformance.target import bundle_resources, next_link
from conformance.verdicts import expect

from .support.api import require
from .support.tasks import due, instant, labels, ref

pytestmark = [profile("canvas"), needs("Task", interaction="search-type")]
SIZE = 12
BASE_DUE = dt.datetime(2027, 3, 1, 9, 30, tzinfo=dt.timezone.utc)
DUE_ORDER = [7, 2, 10, 0, 5, 9, 1, 11, 4, 8, 3, 6]   # creation order is not due order


@dataclass
class Corpus:
    prefix: str
    sent: dict[str, dict[str, Any]]       # id -> body sent
    read: dict[str, dict[str, Any]]       # id -> body read back after creation

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"Corpus({self.prefix!r}, {len(self.sent)} tasks)")

    @property
    def ids(self) -> list[str]:
        return list(self.sent)

    def where(self, test: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {tid for tid, task in self.read.items() if test(task)}


@pytest.fixture(scope="module")
def corpus(tasks, task_teams, target_data, fhir) -> Corpus:
    require(target_data, ["practitioners", "patients"], at_least=3)
    prefix = f"{target_data.run_prefix} tsrch{secrets.token_hex(3)}"
    practitioners = sorted(target_data.practitioner_ids)[:3]
    patients = sorted(target_data.patient_ids)[:3]
    pool = label_pool(target_data.run_prefix)
    sent, read = {}, {}
    for i in range(SIZE):
        body: dict[str, Any] = {
            "resourceType": "Task", "status": STATUSES[i % 3], "intent": "unknown",
            "description": f"{prefix} {i:02d}",
            "requester": {"reference": f"Practitioner/{practitioners[i % 2]}"},
            "extension": [group_extension(task_teams[i % 2])],
        }
        if i % 4 != 3:
            body["owner"] = {"reference": f"Practitioner/{practitioners[(i // 2) % 3]}"}
        if i % 3 != 2:
            body["for"] = {"reference": f"Patient/{patients[i % 3]}"}
        if i % 6 != 5:   # two tasks without a due date
            when = BASE_DUE + dt.timedelta(days=DUE_ORDER[i], hours=DUE_ORDER[i])
            body["restriction"] = {"period": {"end": when.isoformat().replace("+00:00", "Z")}}
        chosen = [pool[j] for j in range(3) if (i >> j) & 1]
        if chosen:
            body["input"] = [label(n) for n in chosen]
        response, tid = tasks.create(body)
        tid = expect_created(fhir, response, "Task", "CANVAS-TASK-CREATE", f"create search corpus task {i}")
        sent[tid] = body
    for tid in sent:
        read[tid] = expect_read(fhir, "Task", tid, "CANVAS-TASK-READ", "read a corpus task")
    return Corpus(prefix, sent, read)


def search(tasks, fhir, params: dict[str, Any], requirement: str) -> list[dict[str, Any]]:
    found, bundles = tasks.search_all(params)
    ex = last_exchange(fhir)
    ok = bundles and all(isinstance(b, dict) and b.get("resourceType") == "Bundle" for b in bundles)
    status = getattr(bundles[-1], "status_code", 200) if bundles else None
    expect(requirement, ok, f"search {params} did not answer searchset Bundles (HTTP {status})", ex)
    return found


def ids_of(found: list[dict[str, Any]]) -> set[str]:
    return {r.get("id") for r in found}


def scoped(corpus: Corpus, **params: Any) -> dict[str, Any]:
    return {"_id": ",".join(corpus.ids), "_count": 100, **params}


def expect_match(tasks, fhir, corpus: Corpus, requirement: str, params: dict[str, Any], expected: set[str]) -> None:
    found = search(tasks, fhir, scoped(corpus, **params), requirement)
    got = ids_of(found)
    expect(requirement, got == expected,
           f"search {params} among the {SIZE} corpus tasks returned {len(got)}: missing {sorted(expected - got)}, "
           f"unexpected {sorted(got - expected)}", last_exchange(fhir))


@check("task-search-id", "CANVAS-TASK-SEARCH-ID", "FHIR-SEARCH-BUNDLE")
@needs("Task", search_param="_id")
@given(data=st.data())
def test_search_by_id(data, corpus, tasks, fhir):
    chosen = data.draw(st.lists(st.sampled_from(corpus.ids), min_size=1, max_size=5, unique=True))
    found = search(tasks, fhir, {"_id": ",".join(chosen)}, "CANVAS-TASK-SEARCH-ID")
    expect("CANVAS-TASK-SEARCH-ID", ids_of(found) == set(chosen),
           f"_id={','.join(chosen)} returned {sorted(ids_of(found))}", last_exchange(fhir))


REFERENCE_PARAMS = [("owner", "owner", "CANVAS-TASK-SEARCH-OWNER"), ("requester", "requester", "CANVAS-TASK-SEARCH-REQUESTER"),
                    ("patient", "for", "CANVAS-TASK-SEARCH-PATIENT")]


@check("task-search-reference", "FHIR-SEARCH-BUNDLE")
@pytest.mark.parametrize("param, element, requirement",
                         [pytest.param(*p, id=p[0], marks=verifies(p[2])) for p in REFERENCE_PARAMS])
def test_search_by_reference(param, element, requirement, corpus, tasks, fhir):
    values = sorted({ref(t.get(element)) for t in corpus.sent.values() if t.get(element)})
    for value in values:
        expect_match(tasks, fhir, corpus, requirement, {param: value},
                     corpus.where(lambda t: ref(t.get(element)) == value))


@check("task-search-status", "CANVAS-TASK-SEARCH-STATUS")
@pytest.mark.parametrize("status", STATUSES)
def test_search_by_status(status, corpus, tasks, fhir):
    expect_match(tasks, fhir, corpus, "CANVAS-TASK-SEARCH-STATUS", {"status": status},
                 corpus.where(lambda t: t.get("status") == status))


@check("task-search-owner-status", "CANVAS-TASK-SEARCH-OWNER", "CANVAS-TASK-SEARCH-STATUS")
def test_search_by_owner_and_status(corpus, tasks, fhir):
    for task in list(corpus.read.values())[:4]:
        owner, status = ref(task.get("owner")), task.get("status")
        if owner:
            expect_match(tasks, fhir, corpus, "CANVAS-TASK-SEARCH-STATUS", {"owner": owner, "status": status},
                         corpus.where(lambda t: ref(t.get("owner")) == owner and t.get("status") == status))


@check("task-search-label", "CANVAS-TASK-SEARCH-LABEL", "CANVAS-TASK-LABEL")
def test_search_by_label(corpus, tasks, fhir, target_data):
    for name in label_pool(target_data.run_prefix):
        expect_match(tasks, fhir, corpus, "CANVAS-TASK-SEARCH-LABEL", {"label": name},
                     corpus.where(lambda t: name in labels(t)))
        # unscoped: every task carrying the run's label is one of ours
        found = search(tasks, fhir, {"label": name, "_count": 100}, "CANVAS-TASK-SEARCH-LABEL")
        wrong = [t.get("id") for t in found if name not in labels(t)]
        expect("CANVAS-TASK-SEARCH-LABEL", not wrong, f"label={name} returned tasks without it: {wrong}",
               last_exchange(fhir))


@check("task-search-description", "CANVAS-TASK-SEARCH-DESCRIPTION")
@needs("Task", search_param="description")
def test_search_by_description(corpus, tasks, fhir):
    found = search(tasks, fhir, {"description": corpus.prefix, "_count": 100}, "CANVAS-TASK-SEARCH-DESCRIPTION")
    expect("CANVAS-TASK-SEARCH-DESCRIPTION", ids_of(found) == set(corpus.ids),
           f"description={corpus.prefix!r} returned {len(found)} tasks, expected the {SIZE} described so",
           last_exchange(fhir))
    for tid in corpus.ids[:3]:
        text = corpus.sent[tid]["description"]
        found = search(tasks, fhir, {"description": text}, "CANVAS-TASK-SEARCH-DESCRIPTION")
        expect("CANVAS-TASK-SEARCH-DESCRIPTION", ids_of(found) == {tid},
               f"description={text!r} returned {sorted(ids_of(found))}, expected {tid}", last_exchange(fhir))


# ---- dates -----------------------------------------------------------------------------

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?)?)?(Z|[+-]\d{2}:\d{2})?$")


def value_range(text: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a FHIR date/dateTime value, by its precision (suite's own reading of FHIR)."""
    m = _DATE.match(text)
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi, s, frac, _ = m.groups()
    start = instant(text) if h else dt.datetime(int(y), int(mo or 1), int(d or 1), tzinfo=dt.timezone.utc)
    if frac:
        step = dt.timedelta(microseconds=10 ** (6 - min(6, len(frac) - 1)))
    elif s:
        step = dt.timedelta(seconds=1)
    elif mi:
        step = dt.timedelta(minutes=1)
    elif d:
        step = dt.timedelta(days=1)
    else:
        raise ValueError(f"{text}: the checks only use day precision or finer")
    return start, start + step


def matches(prefix: str, value: dt.datetime | None, text: str) -> bool:
    if not isinstance(value, dt.datetime):
        return False
    start, end = value_range(text)
    return {"eq": start <= value < end, "ne": not (start <= value < end), "gt": value >= end,
            "lt": value < start, "ge": value >= start, "le": value < end}[prefix]


def _pivot(corpus: Corpus, get: Callable[[dict[str, Any]], Any], raw: Callable[[dict[str, Any]], str]) -> str:
    dated = sorted((get(t), raw(t)) for t in corpus.read.values() if isinstance(get(t), dt.datetime))
    return dated[len(dated) // 2][1]


def _due_raw(task: dict[str, Any]) -> str:
    return task["restriction"]["period"]["end"]


@check("task-search-due", "CANVAS-TASK-SEARCH-DUE")
@needs("Task", search_param="due")
@pytest.mark.parametrize("prefix", DATE_PREFIXES)
def test_search_by_due_with_prefix(prefix, corpus, tasks, fhir):
    pivot = _pivot(corpus, due, _due_raw)          # exactly a task's due date: lt and le differ on it
    for text in (pivot, pivot[:10]):               # second and day precision
        expect_match(tasks, fhir, corpus, "CANVAS-TASK-SEARCH-DUE", {"due": f"{prefix}{text}"},
                     corpus.where(lambda t: matches(prefix, due(t), text)))


@check("task-search-due-range", "CANVAS-TASK-SEARCH-DUE")
@needs("Task", search_param="due")
def test_search_by_due_range(corpus, tasks, fhir):
    dated = sorted(_due_raw(t) for t in corpus.read.values() if due(t))
    low, high = dated[2], dated[-3]
    found = search(tasks, fhir, [*scoped(corpus).items(), ("due", f"ge{low}"), ("due", f"le{high}")],
                   "CANVAS-TASK-SEARCH-DUE")
    expected = corpus.where(lambda t: matches("ge", due(t), low) and matches("le", due(t), high))
    expect("CANVAS-TASK-SEARCH-DUE", ids_of(found) == expected,
           f"due=ge{low}&due=le{high} returned {len(found)} tasks, expected {len(expected)}", last_exchange(fhir))


def _modified(task: dict[str, Any]) -> Any:
    return instant(task.get("lastModified"))


@check("task-search-modified", "CANVAS-TASK-SEARCH-MODIFIED", "CANVAS-TASK-READ")
@needs("Task", search_param="modified")
@pytest.mark.parametrize("prefix", DATE_PREFIXES)
def test_search_by_modified_with_prefix(prefix, corpus, tasks, fhir):
    expect("CANVAS-TASK-READ", all(isinstance(_modified(t), dt.datetime) for t in corpus.read.values()),
           "a corpus task reads without a lastModified instant")
    pivot = _pivot(corpus, _modified, lambda t: t["lastModified"])
    expect_match(tasks, fhir, corpus, "CANVAS-TASK-SEARCH-MODIFIED", {"modified": f"{prefix}{pivot}"},
                 corpus.where(lambda t: matches(prefix, _modified(t), pivot)))
    if prefix in ("ge", "le"):
        low, high = sorted(t["lastModified"] for t in corpus.read.values())[1], pivot
        found = search(tasks, fhir, [*scoped(corpus).items(), ("modified", f"ge{low}"), ("modified", f"le{high}")],
                       "CANVAS-TASK-SEARCH-MODIFIED")
        expected = corpus.where(lambda t: matches("ge", _modified(t), low) and matches("le", _modified(t), high))
        expect("CANVAS-TASK-SEARCH-MODIFIED", ids_of(found) == expected,
               f"modified=ge{low}&modified=le{high} returned {len(found)}, expected {len(expected)}", last_exchange(fhir))


# ---- sort and paging -------------------------------------------------------------------

@check("task-search-sort", "CANVAS-TASK-SORT")
@pytest.mark.parametrize("sort", SORTS)
def test_sort_order(sort, corpus, tasks, fhir):
    found = search(tasks, fhir, scoped(corpus, _sort=sort), "CANVAS-TASK-SORT")
    order = [t.get("id") for t in found]
    ex = last_exchange(fhir)
    expect("CANVAS-TASK-SORT", sorted(order) == sorted(corpus.ids), f"_sort={sort} returned {len(order)} of {SIZE}", ex)
    if sort.lstrip("-") == "_id":
        expected = sorted(corpus.ids, reverse=sort.startswith("-"))
    else:   # only tasks with a due date have a defined place
        order = [tid for tid in order if due(corpus.read[tid])]
        expected = sorted(order, key=lambda tid: due(corpus.read[tid]), reverse=sort.startswith("-"))
    expect("CANVAS-TASK-SORT", order == expected, f"_sort={sort} gave {order}, expected {expected}", ex)


@check("task-search-paging", "FHIR-SEARCH-PAGING", "FHIR-SEARCH-COUNT")
@given(count=st.integers(min_value=1, max_value=7))
def test_paging(count, corpus, tasks, fhir):
    params = {"_id": ",".join(corpus.ids), "_count": count, "_sort": "_id"}
    found, bundles = tasks.search_all(params)
    ex = last_exchange(fhir)
    sizes = [len(bundle_resources(b)) for b in bundles if isinstance(b, dict)]
    expect("FHIR-SEARCH-PAGING", len(bundles) == -(-SIZE // count) and next_link(bundles[-1]) is None,
           f"{SIZE} results with _count={count}: walked {len(bundles)} pages of sizes {sizes}", ex)
    expect("FHIR-SEARCH-COUNT", max(sizes) <= count and sizes[0] == min(count, SIZE), f"_count={count} gave {sizes}", ex)
    expect("FHIR-SEARCH-PAGING", [t.get("id") for t in found] == sorted(corpus.ids),
           "pages repeat, miss or reorder results", ex)
    expect("FHIR-SEARCH-PAGING", all(b.get("total") == SIZE for b in bundles), "total differs across pages", ex)


INVALID = [({"status": "open"}, "CANVAS-TASK-SEARCH-STATUS"), ({"_sort": "name"}, "CANVAS-TASK-SORT"),
           ({"due": "tomorrow"}, "CANVAS-TASK-SEARCH-DUE"), ({"due": "xx2027-01-01"}, "CANVAS-TASK-SEARCH-DUE"),
           ({"modified": "2027-13-45"}, "CANVAS-TASK-SEARCH-MODIFIED")]


@check("task-search-invalid-value", "FHIR-SEARCH-INVALID", "FHIR-ERROR-OUTCOME")
@pytest.mark.parametrize("params, requirement",
                         [pytest.param(p, r, id="&".join(f"{k}={v}" for k, v in p.items()), marks=verifies(r))
                          for p, r in INVALID])
def test_invalid_value_is_400(params, requirement, fhir):
    response = fhir.search("Task", params)
    expect_error(fhir, response, requirement, (400,), f"Task search with {params}")
    json_or_none(response)
