"""Cohort definitions drawn from the target's own data, and labelled invalid ones.

Valid cohorts: 1-3 member-filters whose values come from the population the suite read
independently (codes actually present, dates around actual values with random
prefixes and precisions, quantities near actual values), optionally narrowed by
``member`` (some Patients, or a Group the suite created). Non-trivial: the strategy
retries a few times to select some but not all of the base population.

Invalid cohorts: a valid one broken by one rule of ``rules/cohort.py``, labelled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from ..brief import Brief
from ..cohort.evaluate import codings
from ..cohort.filters import Filter, parse
from ..cohort.oracle import Population, expected_members
from ..rules.cohort import cohort_payload
from ..rules.model import FHIR_DATE_PREFIXES as DATE_PREFIXES, Violation
from .common import DrawAdapter, InvalidPayload, lists, sampled_from

TOKEN_PATHS = {("Condition", "code"): "code", ("Condition", "clinical-status"): "clinicalStatus",
               ("Condition", "category"): "category", ("Encounter", "class"): "class",
               ("Encounter", "type"): "type", ("Observation", "code"): "code"}
DATE_PATHS = {("Patient", "birthdate"): ("birthDate",), ("Condition", "onset-date"): ("onsetDateTime",),
              ("Encounter", "date"): ("period.start", "period.end"), ("Observation", "date"): ("effectiveDateTime",)}
QUANTITY_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")
SAFE = "|:/.-_"


def _get(resource: dict[str, Any], path: str) -> Any:
    node: Any = resource
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@dataclass(repr=False)
class Facts(Brief):
    """What the population offers to filters: values actually present, per (type, parameter)."""

    population: Population
    tokens: dict[tuple[str, str], list[tuple[str | None, str]]] = field(default_factory=dict)
    dates: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    quantities: dict[tuple[str | None, str], list[tuple[float, str | None, str | None]]] = field(default_factory=dict)
    genders: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    # what the target's CapabilityStatement declares: resource type -> search parameter names.
    # A "must reject" input is never one of these (SPEC §1): a server may support what it declares.
    declared: dict[str, frozenset[str]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Facts({len(self.patient_ids)} patients, {sum(len(v) for v in self.tokens.values())} codes)"

    @classmethod
    def of(cls, population: Population) -> "Facts":
        facts = cls(population)
        res = population.resources
        facts.patient_ids = sorted(population.patient_ids)
        facts.genders = sorted({p["gender"] for p in res.get("Patient", []) if isinstance(p.get("gender"), str)})
        for (rtype, param), path in TOKEN_PATHS.items():
            found = {(c.get("system"), c["code"]) for r in res.get(rtype, [])
                     for c in codings(r.get(path)) if isinstance(c.get("code"), str)}
            if found:
                facts.tokens[(rtype, param)] = sorted(found, key=lambda t: (t[0] or "", t[1]))
        for (rtype, param), paths in DATE_PATHS.items():
            found_dates = sorted({v for r in res.get(rtype, []) for p in paths
                                  if isinstance(v := _get(r, p), str)})
            if found_dates:
                facts.dates[(rtype, param)] = found_dates
        for obs in res.get("Observation", []):
            q = obs.get("valueQuantity")
            if isinstance(q, dict) and isinstance(q.get("value"), (int, float)):
                for system, code in [(c.get("system"), c.get("code")) for c in codings(obs.get("code"))][:1]:
                    facts.quantities.setdefault((system, code), []).append((q["value"], q.get("system"), q.get("code")))
        return facts

    def resource_types(self) -> list[str]:
        types = {t for t, _ in self.tokens} | {t for t, _ in self.dates}
        if self.patient_ids:
            types.add("Patient")
        return sorted(types)


@dataclass
class CohortDefinition:
    """A valid cohort: its payload, parsed filters, and the base population (None: every patient)."""

    payload: dict[str, Any]
    expressions: list[str]
    base: set[str] | None = None
    narrowing: str = "none"

    @property
    def filters(self) -> list[Filter]:
        return [parse(e) for e in self.expressions]

    def __repr__(self) -> str:
        base = "every patient" if self.base is None else f"{len(self.base)} patients ({self.narrowing})"
        return f"Cohort(filters={self.expressions!r}, base={base})"


def _q(text: str) -> str:
    return quote(text, safe=SAFE)


@st.composite
def token_value(draw: st.DrawFn, pairs: list[tuple[str | None, str]]) -> str:
    system, code = draw(sampled_from(pairs))
    form = draw(sampled_from(["system|code", "system|code", "code", "|code", "system|"] if system else ["code"]))
    value = {"system|code": f"{system}|{code}", "code": code, "|code": f"|{code}", "system|": f"{system}|"}[form]
    if draw(st.integers(0, 3)) == 0:   # comma: OR with another value
        s2, c2 = draw(sampled_from(pairs))
        value += "," + (f"{s2}|{c2}" if s2 and form != "code" else c2)
    return ",".join(_q(v) for v in value.split(","))


@st.composite
def date_value(draw: st.DrawFn, dates: list[str]) -> str:
    raw = draw(sampled_from(dates))
    when = datetime.fromisoformat(raw.replace("Z", "+00:00")) if "T" in raw else datetime.fromisoformat(raw)
    shift = draw(sampled_from([0, 0, 0, 1, -1, 30, -30, 365, -400]))
    when = when + timedelta(days=shift)
    precision = draw(sampled_from(["year", "month", "day", "day", "second"] if "T" in raw
                                  else ["year", "month", "day", "day"]))
    text = {"year": f"{when.year:04d}", "month": f"{when.year:04d}-{when.month:02d}",
            "day": when.strftime("%Y-%m-%d"), "second": when.strftime("%Y-%m-%dT%H:%M:%SZ")}[precision]
    prefix = draw(sampled_from(("",) + DATE_PREFIXES))
    return _q(prefix + text)


@st.composite
def quantity_value(draw: st.DrawFn, values: list[tuple[float, str | None, str | None]]) -> str:
    number, system, code = draw(sampled_from(values))
    base = Decimal(str(number)) + draw(sampled_from([Decimal(0), Decimal(0), Decimal(1), Decimal(-3),
                                                      Decimal("0.5"), Decimal(10)]))
    text = draw(sampled_from([str(base), str(base.quantize(Decimal(1))), f"{base:.2f}"]))
    prefix = draw(sampled_from(("",) + QUANTITY_PREFIXES))
    unit = draw(sampled_from(["", "", f"|{system}|{code}" if system and code else "", f"||{code}" if code else ""]))
    return _q(prefix + text + unit)


@st.composite
def criterion(draw: st.DrawFn, facts: Facts, rtype: str) -> str:
    choices = [p for (t, p) in facts.tokens if t == rtype] + [p for (t, p) in facts.dates if t == rtype]
    if rtype == "Patient":
        choices += ["gender"] * bool(facts.genders) + ["_id"]
    if rtype == "Observation" and facts.quantities:
        choices.append("value-quantity")
    name = draw(sampled_from(sorted(choices)))
    if name == "gender":
        return f"gender={draw(sampled_from(facts.genders))}"
    if name == "_id":
        ids = draw(lists(sampled_from(facts.patient_ids), min_size=1, max_size=3, unique=True))
        return "_id=" + ",".join(_q(i) for i in ids)
    if name == "value-quantity":
        key = draw(sampled_from(sorted(facts.quantities, key=lambda k: (k[0] or "", k[1]))))
        value = draw(quantity_value(facts.quantities[key]))
        code = f"{key[0]}|{key[1]}" if key[0] else key[1]
        return f"code={_q(code)}&value-quantity={value}"   # a value is read for one kind of observation
    if (rtype, name) in facts.dates:
        return f"{name}={draw(date_value(facts.dates[(rtype, name)]))}"
    return f"{name}={draw(token_value(facts.tokens[(rtype, name)]))}"


@st.composite
def filter_expression(draw: st.DrawFn, facts: Facts) -> str:
    rtype = draw(sampled_from(facts.resource_types()))
    parts = [draw(criterion(facts, rtype)) for _ in range(draw(st.integers(1, 2)))]
    return f"{rtype}?" + "&".join(parts)


@st.composite
def narrowing(draw: st.DrawFn, facts: Facts, groups: dict[str, set[str]]) -> tuple[list[str], set[str] | None, str]:
    """(member references, base population, description)."""
    kinds = ["none", "none", "patients"] + (["group"] if groups else [])
    kind = draw(sampled_from(kinds))
    if kind == "patients" and facts.patient_ids:
        ids = draw(lists(sampled_from(facts.patient_ids), min_size=1,
                         max_size=max(1, min(40, len(facts.patient_ids) // 2)), unique=True))
        return [f"Patient/{i}" for i in ids], set(ids) & set(facts.patient_ids), "patients"
    if kind == "group":
        gid = draw(sampled_from(sorted(groups)))
        return [f"Group/{gid}"], set(groups[gid]) & set(facts.patient_ids), f"Group/{gid}"
    return [], None, "none"


@st.composite
def cohort_definition(draw: st.DrawFn, facts: Facts, name: str, groups: dict[str, set[str]] | None = None,
                      min_filters: int = 1, max_filters: int = 3, attempts: int = 6) -> CohortDefinition:
    """A valid cohort over ``facts``; prefers ones that select some but not all of the base."""
    definition = None
    for _ in range(attempts):
        expressions = [draw(filter_expression(facts)) for _ in range(draw(st.integers(min_filters, max_filters)))]
        refs, base, kind = draw(narrowing(facts, groups or {}))
        definition = CohortDefinition(cohort_payload(name, expressions, refs), expressions, base, kind)
        expected = expected_members(definition.filters, facts.population, base)
        universe = facts.population.patient_ids if base is None else base
        if 0 < len(expected) < len(universe):
            break
    return definition  # type: ignore[return-value]


# ---- breaches of rules.cohort.RULES: (payload, facts, draw) -> payload; payload is a deep copy ------

def _first_filter(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["modifierExtension"][0]["valueExpression"]


def _missing_name(payload: dict, facts: Any, draw: Any) -> dict:
    payload.pop("name", None)
    return payload


def _characteristic(payload: dict, facts: Any, draw: Any) -> dict:
    payload["characteristic"] = [draw.sampled_from([
        {"code": {"text": "age"}, "valueQuantity": {"value": 65, "unit": "a"}, "exclude": False},
        {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "valueBoolean": True,
         "exclude": False}])]
    return payload


def _no_member_filter(payload: dict, facts: Any, draw: Any) -> dict:
    payload.pop("modifierExtension", None)
    return payload


def _wrong_language(payload: dict, facts: Any, draw: Any) -> dict:
    _first_filter(payload)["language"] = draw.sampled_from(["text/cql", "text/fhirpath", "application/x-fhir-query2",
                                                            "text/plain"])
    return payload


def _two_resource_types(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype, _, query = expression.partition("?")
    other = "Encounter" if rtype != "Encounter" else "Condition"
    _first_filter(payload)["expression"] = draw.sampled_from([
        f"{rtype},{other}?{query}", f"{expression}&{other}?_id=x", f"{rtype}+{other}?{query}"])
    return payload


def _no_query(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype, _, query = expression.partition("?")
    _first_filter(payload)["expression"] = draw.sampled_from([rtype, query, f"{rtype}?"])
    return payload


RESULT_PARAMETERS = ("_sort=_id", "_count=10", "_include=Condition:subject", "_elements=id", "_summary=count",
                     "_revinclude=Provenance:target", "_total=accurate")


def _result_parameter(payload: dict, facts: Any, draw: Any) -> dict:
    _first_filter(payload)["expression"] += "&" + draw.sampled_from(list(RESULT_PARAMETERS))
    return payload


UNSUPPORTED_PARAMETERS = {
    "Patient": ("name=Smith", "address-city=Madison", "active=true", "death-date=ge2020"),
    "Condition": ("verification-status=confirmed", "abatement-date=ge2020", "severity=24484000", "subject=Patient/x"),
    "Encounter": ("status=finished", "participant=Practitioner/x", "reason-code=44054006", "length=gt1"),
    "Observation": ("category=vital-signs", "status=final", "combo-code=8480-6", "value-string=high"),
}


UNDECLARED_FALLBACK = "fhirck-undeclared-parameter=1"   # no server declares it


def undeclared(candidates: tuple[str, ...], declared: frozenset[str]) -> list[str]:
    """The ``name=value`` candidates whose parameter the target does not declare (a fallback if none)."""
    left = [c for c in candidates if c.split("=", 1)[0].split(":", 1)[0] not in declared]
    return left or [UNDECLARED_FALLBACK]


def _unsupported_parameter(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    declared = getattr(facts, "declared", {}).get(rtype, frozenset())
    _first_filter(payload)["expression"] = expression + "&" + draw.sampled_from(
        undeclared(UNSUPPORTED_PARAMETERS[rtype], declared))
    return payload


def _unsupported_resource_type(payload: dict, facts: Any, draw: Any) -> dict:
    candidates = ["MedicationRequest?code=" + quote("http://www.nlm.nih.gov/research/umls/rxnorm|860975", safe="|:/"),
                  "Procedure?date=ge2020", "Coverage?status=active", "Immunization?vaccine-code=207"]
    declared = getattr(facts, "declared", {})
    left = [c for c in candidates if c.partition("?")[0] not in declared]   # a declared type may be filterable
    _first_filter(payload)["expression"] = draw.sampled_from(left or ["FhirckUndeclaredType?code=1"])
    return payload


MODIFIED = {
    "Patient": ("gender:not=female", "gender:missing=true", "_id:above=x"),
    "Condition": ("code:text=diabetes", "code:not=44054006", "clinical-status:missing=false", "onset-date:missing=true"),
    "Encounter": ("class:not=AMB", "type:text=check", "date:missing=false"),
    "Observation": ("code:text=glucose", "code:below=8480", "value-quantity:missing=true"),
}


def _unsupported_modifier(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    _first_filter(payload)["expression"] = expression + "&" + draw.sampled_from(list(MODIFIED[rtype]))
    return payload


DATE_PARAMETERS = {"Patient": "birthdate", "Condition": "onset-date", "Encounter": "date", "Observation": "date"}


def _unsupported_prefix(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    year = draw.sampled_from(["2019", "2021", "2023-05", "1970-01-01"])
    _first_filter(payload)["expression"] = expression + f"&{DATE_PARAMETERS[rtype]}=ap{year}"
    return payload


def _invalid_date(payload: dict, facts: Any, draw: Any) -> dict:
    expression = _first_filter(payload)["expression"]
    rtype = expression.partition("?")[0]
    bad = draw.sampled_from(["ge2020-13", "yesterday", "le2021-02-30x", "gt20200101", "eq21"])
    _first_filter(payload)["expression"] = expression + f"&{DATE_PARAMETERS[rtype]}={bad}"
    return payload


BREACHES = {"missing-name": _missing_name, "characteristic-present": _characteristic,
            "no-member-filter": _no_member_filter, "wrong-language": _wrong_language,
            "two-resource-types": _two_resource_types, "no-query": _no_query, "result-parameter": _result_parameter,
            "unsupported-parameter": _unsupported_parameter, "unsupported-resource-type": _unsupported_resource_type,
            "unsupported-modifier": _unsupported_modifier, "unsupported-prefix": _unsupported_prefix,
            "invalid-date": _invalid_date}


@st.composite
def invalid_cohort(draw: st.DrawFn, facts: Facts, name: str, violation: Violation) -> InvalidPayload:
    """A cohort breaking exactly ``violation`` (member narrowing left out: one rule at a time)."""
    expressions = [draw(filter_expression(facts)) for _ in range(draw(st.integers(1, 2)))]
    payload = copy.deepcopy(cohort_payload(name, expressions))
    payload = BREACHES[violation.name](payload, facts, DrawAdapter(draw))
    return InvalidPayload(payload, violation)
