"""Explicit request limits (SPEC §7): a client mistake or a hostile query gets a 400 naming the
limit, never a 500 and never a request slow enough to starve the workers."""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from flask import request

from .http import FhirError

MAX_VALUES_PER_PARAMETER = 100   # comma-separated values plus repeats of one parameter
MAX_QUERY_VALUES = 1000          # values in one query string (or _search form body), all parameters
MAX_VALUE_LENGTH = 2048          # characters in one parameter value


def check_params(items: Iterable[tuple[str, str]], where: str = "query") -> list[tuple[str, str]]:
    """The (name, value) pairs, after checking every limit (400 with the limit's name otherwise)."""
    pairs = list(items)
    per_name: Counter[str] = Counter()
    total = 0
    for name, value in pairs:
        if len(value) > MAX_VALUE_LENGTH or len(name) > MAX_VALUE_LENGTH:
            raise FhirError(400, f"Limit exceeded: a {where} parameter value is longer than {MAX_VALUE_LENGTH} "
                                 f"characters ({name[:64]})", "too-long")
        count = value.count(",") + 1
        per_name[name.partition(":")[0]] += count
        total += count
        if per_name[name.partition(":")[0]] > MAX_VALUES_PER_PARAMETER:
            raise FhirError(400, f"Limit exceeded: more than {MAX_VALUES_PER_PARAMETER} values for parameter "
                                 f"'{name[:64]}' (values per parameter)", "too-costly")
        if total > MAX_QUERY_VALUES:
            raise FhirError(400, f"Limit exceeded: more than {MAX_QUERY_VALUES} parameter values in the {where} "
                                 "(values per query)", "too-costly")
    return pairs


def check_query_string() -> None:
    """before_request hook: the limits apply to every route's query string."""
    if request.query_string:
        check_params(request.args.items(multi=True))
