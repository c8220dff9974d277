"""Cohort membership: the mock's own FHIR search evaluator over the stored rows.

Each resource type is reduced once to a search index in memory (per patient: the token
codings, date ranges and quantities the supported parameters look at), rebuilt when the
table changes. A query selects the patients having one resource that meets every
criterion; filters are ANDed; ``member`` narrows the base population (a member may be a
Patient or another Group, a cohort included).
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from flask import Flask

from .. import db, population
from ..deviations import deviates
from ..resources import directory
from ..dates import EARLIEST, LATEST, span
from .query import Query

GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
TOKEN_PATHS = {("Condition", "code"): "code", ("Condition", "clinical-status"): "clinicalStatus",
               ("Condition", "category"): "category", ("Encounter", "class"): "class",
               ("Encounter", "type"): "type", ("Observation", "code"): "code"}


@dataclass
class Entry:
    """One resource as the filters see it."""

    patient: str
    values: dict[str, list[Any]]


def _codings(element: Any) -> list[tuple[str | None, str | None]]:
    if isinstance(element, list):
        return [c for e in element for c in _codings(e)]
    if not isinstance(element, dict):
        return []
    if "coding" in element:
        return [(c.get("system"), c.get("code")) for c in element["coding"] or [] if isinstance(c, dict)]
    if "code" in element or "system" in element:
        return [(element.get("system"), element.get("code"))]
    return []


def _period(period: Any) -> tuple[datetime, datetime] | None:
    if not isinstance(period, dict):
        return None
    start = span(period.get("start", "")) if period.get("start") else None
    end = span(period.get("end", "")) if period.get("end") else None
    if start is None and end is None:
        return None
    return (start[0] if start else EARLIEST), (end[1] if end else LATEST)


def entry(rtype: str, body: dict[str, Any], patient: str) -> Entry:
    values: dict[str, list[Any]] = {}
    for (t, param), path in TOKEN_PATHS.items():
        if t == rtype:
            values[param] = _codings(body.get(path))
    dates: list[Any] = []
    if rtype == "Patient":
        values["_id"] = [body.get("id")]
        values["gender"] = [body.get("gender")]
        dates = [span(body.get("birthDate", ""))]
        values["birthdate"] = [d for d in dates if d]
    elif rtype == "Condition":
        dates = [span(body.get("onsetDateTime", "")), _period(body.get("onsetPeriod"))]
        values["onset-date"] = [d for d in dates if d]
    elif rtype == "Encounter":
        values["date"] = [d for d in [_period(body.get("period"))] if d]
    elif rtype == "Observation":
        dates = [span(body.get(k, "")) for k in ("effectiveDateTime", "effectiveInstant")]
        dates.append(_period(body.get("effectivePeriod")))
        values["date"] = [d for d in dates if d]
        q = body.get("valueQuantity")
        values["value-quantity"] = ([(Decimal(str(q["value"])), q.get("system"), q.get("code"), q.get("unit"))]
                                    if isinstance(q, dict) and q.get("value") is not None else [])
    return Entry(patient, values)


def _token(query_type: str, param: str, value: tuple, found: list[Any]) -> bool:
    system, code = value
    if param == "_id":
        return system in (None, "") and code in found
    if query_type == "Patient" and param == "gender":
        return system in (None, "", GENDER_SYSTEM) and code in found
    for s, c in found:
        if system is None and c == code:
            return True
        if system == "" and s is None and c == code:
            return True
        if system and code is None and s == system:
            return True
        if system and code is not None and c == code and (s == system or deviates("cohort-token-system-ignored")):
            return True
    return False


def _date(value: tuple, found: list[tuple[datetime, datetime]]) -> bool:
    prefix, low, high = value
    for r_low, r_high in found:
        inside = low <= r_low and r_high <= high
        hit = {"eq": inside, "ne": not inside, "gt": r_high > high, "lt": r_low < low,
               "ge": (r_high > high) if deviates("cohort-date-ge-as-gt") else (r_high > low),
               "le": r_low < high, "sa": r_low >= high, "eb": r_high <= low}[prefix]
        if hit:
            return True
    return False


def _quantity(value: tuple, found: list[tuple]) -> bool:
    prefix, number, system, code = value
    step = Decimal(1).scaleb(number.as_tuple().exponent)
    for amount, q_system, q_code, unit in found:
        if system and q_system != system:
            continue
        if code and code not in (q_code, unit):
            continue
        close = number - step / 2 <= amount < number + step / 2
        if {"eq": close, "ne": not close, "gt": amount > number, "lt": amount < number,
                "ge": amount >= number, "le": amount <= number}[prefix]:
            return True
    return False


def matches(query: Query, item: Entry) -> bool:
    for criterion in query.criteria:
        found = item.values.get(criterion.param, [])
        if criterion.kind == "token":
            test = lambda v: _token(query.rtype, criterion.param, v, found)  # noqa: E731
        elif criterion.kind == "date":
            test = lambda v: _date(v, found)  # noqa: E731
        else:
            test = lambda v: _quantity(v, found)  # noqa: E731
        combine = all if deviates("cohort-comma-anded") else any
        if not combine(test(v) for v in criterion.values):
            return False
    return True


class Index:
    """Entries per resource type, cached on the app and rebuilt when the rows change."""

    def __init__(self, app: Flask):
        self.app = app
        self.cache: dict[str, tuple[tuple, list[Entry]]] = {}

    def entries(self, conn: sqlite3.Connection, rtype: str) -> list[Entry]:
        stamp = directory.patient_stamp(conn) if rtype == "Patient" else population.compartment_stamp(conn, rtype)
        cached = self.cache.get(rtype)
        if cached and cached[0] == stamp:
            return cached[1]
        if rtype == "Patient":
            rows: Iterable[tuple[str, str, str]] = ((pid, pid, body) for pid, body in directory.patient_bodies(conn))
        else:
            rows = population.compartment_bodies(conn, rtype)
        built = []
        for rid, patient, body in rows:
            resource = json.loads(body)
            resource.setdefault("id", rid)
            built.append(entry(rtype, resource, patient))
        self.cache[rtype] = (stamp, built)
        return built


def index(app: Flask) -> Index:
    found = app.extensions.get("fhir.cohort.index")
    if found is None:
        found = app.extensions["fhir.cohort.index"] = Index(app)
    return found


def selected(app: Flask, conn: sqlite3.Connection, query: Query) -> set[str]:
    return {e.patient for e in index(app).entries(conn, query.rtype) if matches(query, e)}


def base_population(conn: sqlite3.Connection, references: Iterable[str], compute: Any, depth: int = 0) -> set[str]:
    """Patients the ``member`` references stand for (Groups expanded; cohorts computed)."""
    out: set[str] = set()
    for ref in references:
        rtype, _, rid = ref.partition("/")
        if rtype == "Patient":
            if db.exists(conn, "Patient", rid):
                out.add(rid)
        elif rtype == "Group" and depth < 5:
            row = db.get(conn, "Group", rid)
            if row is None:
                continue
            if row.body.get("kind") == "cohort":
                out |= compute(conn, row.body, depth + 1)
            else:
                out |= {r.partition("/")[2] for r in row.body.get("member", []) if r.startswith("Patient/")}
    return out
