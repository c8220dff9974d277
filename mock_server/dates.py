"""The one FHIR date/dateTime/instant parser of the mock (searches, filters, bodies, export windows).

Search values carry a comparison prefix (``ge2024-01``): ``split_prefix`` takes it off.

A value denotes the half-open range ``[start, end)`` of its precision, in UTC. Years run
0001-9999 (SPEC §7); anything else, or an impossible calendar date, raises ``ValueError``
with a readable reason, which callers turn into a 400. Ranges touching the ends of the
calendar are clamped to ``EARLIEST``/``LATEST`` instead of overflowing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
DATE_TIME_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
                          r"(Z|[+-]\d{2}:\d{2})?)?)?)?")
RANGE_TEXT = "years 0001 to 9999"


@dataclass(frozen=True)
class FhirDate:
    """A parsed value: its UTC range, and what the text carried."""

    start: datetime
    end: datetime
    has_time: bool
    has_zone: bool


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        return EARLIEST if moment.year == 1 else LATEST


def _plus(moment: datetime, step: timedelta) -> datetime:
    try:
        return moment + step
    except OverflowError:
        return LATEST


def parse(text: str) -> FhirDate:
    """Parse a FHIR date or dateTime (a time without zone is UTC, as the mock stores it)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a date or dateTime string, got {type(text).__name__}")
    m = DATE_TIME_RE.fullmatch(text)
    if not m:
        raise ValueError(f"'{text[:64]}' is not a FHIR date or dateTime (YYYY[-MM[-DD[Thh:mm[:ss[.fff]][zone]]]])")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    if year == "0000":
        raise ValueError(f"'{text[:64]}' is out of range ({RANGE_TEXT})")
    tz = timezone.utc
    if zone not in (None, "Z"):
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 14 or minutes > 59:
            raise ValueError(f"'{text[:64]}' has an invalid time zone offset")
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(offset if zone[0] == "+" else -offset)
    try:
        if month is None:
            start = datetime(int(year), 1, 1, tzinfo=tz)
            end = datetime(int(year) + 1, 1, 1, tzinfo=tz) if year != "9999" else LATEST
        elif day is None:
            start = datetime(int(year), int(month), 1, tzinfo=tz)
            end = (datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=tz)
                   if (year, month) != ("9999", "12") else LATEST)
        elif hour is None:
            start = datetime(int(year), int(month), int(day), tzinfo=tz)
            end = _plus(start, timedelta(days=1))
        else:
            digits = (fraction or "")[:6]
            micro = int(digits.ljust(6, "0")) if digits else 0
            start = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro,
                             tzinfo=tz)
            if second is None:
                step = timedelta(minutes=1)
            elif not digits:
                step = timedelta(seconds=1)
            else:
                step = timedelta(microseconds=10 ** (6 - len(digits)))
            end = _plus(start, step)
    except ValueError as exc:
        raise ValueError(f"'{text[:64]}' is not a valid date ({exc})") from None
    return FhirDate(_utc(start), _utc(end), hour is not None, zone is not None)


def span(text: str) -> tuple[datetime, datetime] | None:
    """[start, end) of a FHIR date/dateTime at its precision; None when it is not one."""
    try:
        parsed = parse(text)
    except ValueError:
        return None
    return parsed.start, parsed.end


SEARCH_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})  # FHIR search.html#prefix


def split_prefix(text: str, known: frozenset[str] = SEARCH_PREFIXES) -> tuple[str, str]:
    """(prefix, value) of a date or quantity search value; 'eq' when it carries none of ``known``."""
    if len(text) > 2 and text[:2] in known:
        return text[:2], text[2:]
    return "eq", text


def is_valid(text: object) -> bool:
    try:
        parse(text)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def sortable(moment: datetime) -> str:
    """Fixed-width UTC text that sorts like the instant (the search indexes store this)."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
