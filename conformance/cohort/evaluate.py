"""FHIR search semantics over resources in memory: does a resource match a filter?

Written from the FHIR R4 search page (token, date and quantity rules), independent of
any server: the suite's own judge of cohort membership.

- token: ``system|code``, ``|code`` (no system), ``code`` (any system), ``system|``
  (any code of the system); commas OR.
- date: both the search value and the resource value are ranges set by their
  precision (``2024`` is the whole year; a Period is its start to its end).
  ``eq`` the resource range lies within the search range; ``ne`` it does not; ``gt``
  / ``lt`` some of it lies after / before the search range; ``ge`` / ``le`` some of it
  lies at-or-after / at-or-before; ``sa`` / ``eb`` it starts after / ends before.
  Times without a zone are taken as UTC.
- quantity: ``eq`` within half a unit of the value's last digit; other prefixes exact;
  ``|system|code`` must match the quantity's system and code (or unit).
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import Decimal
from typing import Any, Iterable

from .filters import DATE, QUANTITY, TOKEN, Criterion, DateValue, Filter, QuantityValue, Token, DATE_PATTERN

UTC = dt.timezone.utc
MIN = dt.datetime(1, 1, 1, tzinfo=UTC)
MAX = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
Range = tuple[dt.datetime, dt.datetime]     # half-open [low, high)


def date_range(text: str) -> Range | None:
    """The range a FHIR date/dateTime/instant covers, given its precision."""
    m = DATE_PATTERN.match(text or "")
    if not m:
        return None
    year, month, day, hour, minute, second, zone = m.groups()
    tz = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    y = int(year)
    if month is None:
        return dt.datetime(y, 1, 1, tzinfo=tz), dt.datetime(y + 1, 1, 1, tzinfo=tz)
    mo = int(month)
    if day is None:
        low = dt.datetime(y, mo, 1, tzinfo=tz)
        return low, low + dt.timedelta(days=calendar.monthrange(y, mo)[1])
    d = int(day)
    if hour is None:
        low = dt.datetime(y, mo, d, tzinfo=tz)
        return low, low + dt.timedelta(days=1)
    low = dt.datetime(y, mo, d, int(hour), int(minute), int(second or 0), tzinfo=tz)
    return low, low + (dt.timedelta(seconds=1) if second is not None else dt.timedelta(minutes=1))


def period_range(period: dict[str, Any]) -> Range | None:
    start = date_range(period.get("start", "")) if period.get("start") else None
    end = date_range(period.get("end", "")) if period.get("end") else None
    if start is None and end is None:
        return None
    return (start[0] if start else MIN), (end[1] if end else MAX)


def date_matches(value: DateValue, target: Range) -> bool:
    low, high = date_range(value.text)  # type: ignore[misc]
    t_low, t_high = target
    return {
        "eq": low <= t_low and t_high <= high,
        "ne": not (low <= t_low and t_high <= high),
        "gt": t_high > high,
        "lt": t_low < low,
        "ge": t_high > low,
        "le": t_low < high,
        "sa": t_low >= high,
        "eb": t_high <= low,
    }[value.prefix]


def codings(element: Any) -> list[dict[str, Any]]:
    """Codings of a CodeableConcept, a Coding, or a list of either."""
    if isinstance(element, list):
        return [c for e in element for c in codings(e)]
    if not isinstance(element, dict):
        return []
    if "coding" in element:
        return [c for c in element.get("coding") or [] if isinstance(c, dict)]
    if "code" in element or "system" in element:
        return [element]
    return []


def token_matches_coding(token: Token, coding: dict[str, Any]) -> bool:
    system, code = coding.get("system"), coding.get("code")
    if token.system is None:
        return code == token.code
    if token.system == "":
        return system is None and code == token.code
    if token.code is None:
        return system == token.system
    return system == token.system and code == token.code


def quantity_matches(value: QuantityValue, quantity: Any) -> bool:
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return False
    if value.system and quantity.get("system") != value.system:
        return False
    if value.code and value.code not in (quantity.get("code"), quantity.get("unit")):
        return False
    target = Decimal(str(quantity["value"]))
    n = value.number
    half = Decimal(1).scaleb(n.as_tuple().exponent) / 2
    within = n - half <= target < n + half
    return {"eq": within, "ne": not within, "gt": target > n, "lt": target < n,
            "ge": target >= n, "le": target <= n}[value.prefix]


# Where each supported parameter looks in a resource.
def _token_elements(rtype: str, name: str, resource: dict[str, Any]) -> list[dict[str, Any]] | None:
    paths = {("Condition", "code"): "code", ("Condition", "clinical-status"): "clinicalStatus",
             ("Condition", "category"): "category", ("Encounter", "class"): "class",
             ("Encounter", "type"): "type", ("Observation", "code"): "code"}
    if (rtype, name) in paths:
        return codings(resource.get(paths[(rtype, name)]))
    return None


def _date_ranges(rtype: str, name: str, resource: dict[str, Any]) -> list[Range]:
    found: list[Range | None] = []
    if (rtype, name) == ("Patient", "birthdate"):
        found.append(date_range(resource.get("birthDate", "")))
    elif (rtype, name) == ("Condition", "onset-date"):
        found.append(date_range(resource.get("onsetDateTime", "")))
        if isinstance(resource.get("onsetPeriod"), dict):
            found.append(period_range(resource["onsetPeriod"]))
    elif (rtype, name) == ("Encounter", "date") and isinstance(resource.get("period"), dict):
        found.append(period_range(resource["period"]))
    elif (rtype, name) == ("Observation", "date"):
        for key in ("effectiveDateTime", "effectiveInstant"):
            if resource.get(key):
                found.append(date_range(resource[key]))
        if isinstance(resource.get("effectivePeriod"), dict):
            found.append(period_range(resource["effectivePeriod"]))
    return [r for r in found if r is not None]


def criterion_matches(rtype: str, criterion: Criterion, resource: dict[str, Any]) -> bool:
    """Any of the criterion's (comma-separated) values matches the resource."""
    if criterion.kind == TOKEN:
        if criterion.name == "_id":
            return any(v.code == resource.get("id") and v.system in (None, "") for v in criterion.values)
        if (rtype, criterion.name) == ("Patient", "gender"):
            gender = resource.get("gender")
            return any(v.code == gender and v.system in (None, "", GENDER_SYSTEM) for v in criterion.values)
        codings = _token_elements(rtype, criterion.name, resource) or []
        return any(token_matches_coding(v, c) for v in criterion.values for c in codings)
    if criterion.kind == DATE:
        ranges = _date_ranges(rtype, criterion.name, resource)
        return any(date_matches(v, r) for v in criterion.values for r in ranges)
    if criterion.kind == QUANTITY:
        return any(quantity_matches(v, resource.get("valueQuantity")) for v in criterion.values)
    raise ValueError(f"unknown criterion kind {criterion.kind}")


def resource_matches(flt: Filter, resource: dict[str, Any]) -> bool:
    """The resource satisfies every criterion of the filter (repeated parameters AND)."""
    return resource.get("resourceType") == flt.resource_type and all(
        criterion_matches(flt.resource_type, c, resource) for c in flt.criteria)


def subject_of(resource: dict[str, Any]) -> str | None:
    """The Patient id a compartment resource belongs to (subject, or patient)."""
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference", "") if isinstance(resource.get(key), dict) else ""
        if ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def matching_patients(flt: Filter, resources: Iterable[dict[str, Any]]) -> set[str]:
    """Ids of the patients the filter selects, given every resource of its type."""
    out: set[str] = set()
    for resource in resources:
        if resource_matches(flt, resource):
            pid = resource.get("id") if flt.resource_type == "Patient" else subject_of(resource)
            if pid:
                out.add(pid)
    return out
