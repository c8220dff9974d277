"""member-filter expressions: parsing and validation (Bulk Data IG 3.0.0, group.html).

An expression is a FHIR REST query on one resource type,
``Condition?code=http://hl7.org/fhir/sid/icd-10-cm|E11.9&clinical-status=active``.
Here it becomes a ``Filter`` of typed criteria, or a ``FilterError`` naming the part
that is not allowed — the same judgement the suite expects a server to make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from ..rules.model import FHIR_DATE_PREFIXES as DATE_PREFIXES

# The search parameters the kit's cohort profile covers (SPEC §5), by resource type.
TOKEN, DATE, QUANTITY = "token", "date", "quantity"
SUPPORTED: dict[str, dict[str, str]] = {
    "Patient": {"_id": TOKEN, "gender": TOKEN, "birthdate": DATE},
    "Condition": {"code": TOKEN, "clinical-status": TOKEN, "category": TOKEN, "onset-date": DATE},
    "Encounter": {"class": TOKEN, "type": TOKEN, "date": DATE},
    "Observation": {"code": TOKEN, "date": DATE, "value-quantity": QUANTITY},
}
# Search result parameters: never allowed as criteria (IG group.html).
RESULT_PARAMETERS = {"_sort", "_count", "_include", "_revinclude", "_elements", "_summary", "_total",
                     "_contained", "_containedType", "_offset", "_format", "_pretty"}
QUANTITY_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")
ALL_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")    # FHIR R4 search.html#prefix
DATE_PATTERN = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


class FilterError(ValueError):
    """A filter the profile (or the kit's supported subset) does not allow; says which part."""


@dataclass(frozen=True)
class Token:
    system: str | None      # None: any system; "": no system (the "|code" form)
    code: str | None        # None: any code in the system (the "system|" form)


@dataclass(frozen=True)
class DateValue:
    prefix: str
    text: str               # the date as written, precision included


@dataclass(frozen=True)
class QuantityValue:
    prefix: str
    number: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True)
class Criterion:
    """One ``name=value[,value]`` pair: its values are ORed."""

    name: str
    kind: str
    values: tuple[Token | DateValue | QuantityValue, ...]


@dataclass(frozen=True)
class Filter:
    """One expression: every criterion must hold (repeated parameters AND)."""

    resource_type: str
    criteria: tuple[Criterion, ...]
    expression: str


def parse(expression: str) -> Filter:
    if not isinstance(expression, str) or "?" not in expression:
        raise FilterError(f"expression {expression!r} is not of the form Type?parameters")
    rtype, _, query = expression.partition("?")
    if rtype not in SUPPORTED:
        raise FilterError(f"resource type {rtype!r} is not supported in a member-filter "
                          f"(supported: {', '.join(SUPPORTED)})")
    if not query:
        raise FilterError(f"expression {expression!r} has no search parameters")
    criteria = []
    for raw_name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMETERS:
            raise FilterError(f"search result parameter {name!r} is not allowed in a member-filter")
        if name not in SUPPORTED[rtype]:
            raise FilterError(f"search parameter {name!r} is not supported on {rtype}")
        if modifier:
            raise FilterError(f"modifier ':{modifier}' on {name!r} is not supported")
        if value == "":
            raise FilterError(f"search parameter {name!r} has an empty value")
        kind = SUPPORTED[rtype][name]
        values = tuple(_parse_value(kind, name, v) for v in value.split(","))
        criteria.append(Criterion(name, kind, values))
    return Filter(rtype, tuple(criteria), expression)


def _parse_value(kind: str, name: str, text: str) -> Token | DateValue | QuantityValue:
    if kind == TOKEN:
        if "|" in text:
            system, _, code = text.partition("|")
            return Token(system, code or None)
        return Token(None, text)
    if kind == DATE:
        prefix, rest = _split_prefix(text, DATE_PREFIXES)
        if not _is_date(rest):
            raise FilterError(f"{name}={text!r} is not a FHIR date")
        return DateValue(prefix, rest)
    prefix, rest = _split_prefix(text, QUANTITY_PREFIXES)
    number, _, unit = rest.partition("|")
    system, _, code = unit.partition("|") if unit else ("", "", "")
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise FilterError(f"{name}={text!r} is not a FHIR quantity") from None
    if not value.is_finite():
        raise FilterError(f"{name}={text!r} is not a FHIR quantity")
    return QuantityValue(prefix, value, system or None, code or None)


def _is_date(text: str) -> bool:
    """The FHIR date syntax, and a day that exists (no month 13, no 30 February)."""
    m = DATE_PATTERN.match(text)
    if not m:
        return False
    year, month, day, hour, minute, second, _ = m.groups()
    try:
        datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return False
    return True


def _split_prefix(text: str, prefixes: tuple[str, ...]) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in ALL_PREFIXES:
        if text[:2] not in prefixes:
            raise FilterError(f"prefix {text[:2]!r} is not supported")
        return text[:2], text[2:]
    return "eq", text
