"""Conditional update (SPEC §1): If-Unmodified-Since, and If-Match against the version ETag."""
from __future__ import annotations

import re
from datetime import datetime

from flask import request
from werkzeug.http import http_date, parse_date

from . import db
from .deviations import deviates
from .http import FhirError

ENTITY_TAG = re.compile(r'^(W/)?"[^"]*"$')     # RFC 9110 §8.8.3 (opaque-tag in double quotes)


def if_unmodified_since() -> datetime | None:
    """The request's If-Unmodified-Since, parsed (400 when it is not an HTTP-date)."""
    value = request.headers.get("If-Unmodified-Since")
    if value is None or deviates("if-unmodified-since-ignored"):
        return None
    when = parse_date(value)
    if when is None:
        raise FhirError(400, f"If-Unmodified-Since is not an HTTP-date: '{value}'")
    return when


def check(old: db.Row, since: datetime | None) -> None:
    """412 when If-Unmodified-Since predates the stored version (whole seconds) or If-Match differs."""
    if since is not None and old.last_updated.replace(microsecond=0) > since:
        raise FhirError(412, f"{old.rtype}/{old.id} was modified after {http_date(since)}")
    match = request.headers.get("If-Match")
    if match is not None:
        tags = [m.strip() for m in match.split(",")]
        if not all(t == "*" or ENTITY_TAG.match(t) for t in tags):
            if deviates("if-match-malformed-ignored"):
                return
            raise FhirError(412, f"If-Match {match[:80]} is not a list of entity tags: it matches no version")
        wanted = {t.removeprefix("W/").strip('"') for t in tags}
        if "*" not in wanted and str(old.version) not in wanted:
            raise FhirError(412, f"If-Match {match} does not match the current version W/\"{old.version}\"")
