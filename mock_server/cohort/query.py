"""member-filter expressions as the mock reads them: ``Type?name=value&...`` → typed criteria.

Written for the mock alone (the suite has its own parser): anything the mock does not
support is a ``FhirError(400)`` whose text names the offending part.

Supported (SPEC §5): Patient ``_id`` ``gender`` ``birthdate``; Condition ``code``
``clinical-status`` ``category`` ``onset-date``; Encounter ``class`` ``type`` ``date``;
Observation ``code`` ``date`` ``value-quantity``. No modifiers; no result parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from .. import dates, limits
from ..deviations import deviates
from ..variants import varies
from ..http import FhirError

PARAMETERS: dict[str, dict[str, str]] = {
    "Patient": {"_id": "token", "gender": "token", "birthdate": "date"},
    "Condition": {"code": "token", "clinical-status": "token", "category": "token", "onset-date": "date"},
    "Encounter": {"class": "token", "type": "token", "date": "date"},
    "Observation": {"code": "token", "date": "date", "value-quantity": "quantity"},
}
FEWER_FILTER_PARAMETERS = {("Encounter", "class"), ("Condition", "clinical-status"), ("Observation", "value-quantity")}
RESULT_PARAMETERS = frozenset({"_sort", "_count", "_include", "_revinclude", "_elements", "_summary", "_total",
                               "_contained", "_containedType", "_offset", "_format", "_pretty"})
DATE_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"})
QUANTITY_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le"})


@dataclass(frozen=True)
class Criterion:
    param: str
    kind: str                  # token | date | quantity
    values: tuple              # ORed; tokens (system|None|"", code|None), dates (prefix, low, high), quantities


@dataclass(frozen=True)
class Query:
    rtype: str
    criteria: tuple[Criterion, ...]    # ANDed
    text: str


def parse(expression: object) -> Query:
    if not isinstance(expression, str) or "?" not in expression:
        raise FhirError(400, f"member-filter expression {expression!r} is not a FHIR query of the form Type?parameters")
    rtype, _, query = expression.partition("?")
    if rtype not in PARAMETERS:
        raise FhirError(400, f"member-filter resource type {rtype!r} is not supported "
                             f"(one of {', '.join(PARAMETERS)}, one type per expression)")
    if not query:
        raise FhirError(400, f"member-filter expression {expression!r} has no search parameters")
    criteria: list[Criterion] = []
    for key, value in limits.check_params(parse_qsl(query, keep_blank_values=True), "member-filter"):
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMETERS:
            raise FhirError(400, f"search result parameter {name!r} is not allowed in a member-filter")
        if name not in PARAMETERS[rtype] or (varies("cohort-fewer-filter-parameters")
                                             and (rtype, name) in FEWER_FILTER_PARAMETERS):
            if deviates("cohort-unsupported-param-ignored"):
                continue
            raise FhirError(400, f"search parameter {name!r} is not supported on {rtype} in a member-filter "
                                 f"(supported: {', '.join(PARAMETERS[rtype])})", "not-supported")
        if modifier:
            raise FhirError(400, f"modifier ':{modifier}' on {name!r} is not supported in a member-filter",
                            "not-supported")
        if not value:
            raise FhirError(400, f"search parameter {name!r} has an empty value")
        kind = PARAMETERS[rtype][name]
        criteria.append(Criterion(name, kind, tuple(_value(kind, name, v) for v in value.split(","))))
    if not criteria:
        raise FhirError(400, f"member-filter expression {expression!r} has no supported search parameters")
    return Query(rtype, tuple(criteria), expression)


def _prefix(text: str, allowed: frozenset[str], name: str) -> tuple[str, str]:
    prefix, rest = dates.split_prefix(text)
    if prefix not in allowed:
        raise FhirError(400, f"prefix {prefix!r} in {name}={text!r} is not supported", "not-supported")
    return prefix, rest


def _value(kind: str, name: str, text: str) -> tuple:
    if kind == "token":
        if "|" in text:
            system, _, code = text.partition("|")
            return system, code or None
        return None, text
    if kind == "date":
        prefix, rest = _prefix(text, DATE_PREFIXES, name)
        try:
            parsed = dates.parse(rest)
        except ValueError as exc:
            raise FhirError(400, f"{name}={text[:64]!r} is not a FHIR date: {exc} ({dates.RANGE_TEXT})") from None
        return prefix, parsed.start, parsed.end
    prefix, rest = _prefix(text, QUANTITY_PREFIXES, name)
    number, _, unit = rest.partition("|")
    system, _, code = unit.partition("|")
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise FhirError(400, f"{name}={text!r} is not a FHIR quantity") from None
    if not value.is_finite():
        raise FhirError(400, f"{name}={text!r} is not a FHIR quantity")
    return prefix, value, system or None, code or None
