"""How a check states a verdict about one requirement.

``expect(requirement_id, condition, message)`` is the only assertion checks use
for conformance rules. A SHALL breach raises at once (so Hypothesis can shrink
it); a SHOULD/MAY breach is recorded as a warning and the check goes on, unless
the run is strict, where it raises like a SHALL. The plugin turns the records
into pytest outcomes and the report into per-requirement verdicts.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass, field
from typing import Any

from .http import Exchange
from .requirements import get as requirement

_current: contextvars.ContextVar["CheckRecord | None"] = contextvars.ContextVar("check_record", default=None)
_strict: contextvars.ContextVar[bool] = contextvars.ContextVar("strict", default=False)


def server_text(exchange: Exchange, limit: int = 300) -> str:
    """The error text of an answer (its OperationOutcome's diagnostics/details), on one line."""
    if exchange.status is None or exchange.status < 400 or not exchange.response_body:
        return ""
    try:
        body = json.loads(exchange.response_body)
    except ValueError:
        return " ".join(exchange.response_body.split())[:limit]
    issues = body.get("issue", []) if isinstance(body, dict) else []
    texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code") or "")
             for i in issues if isinstance(i, dict)]
    return "; ".join(t for t in texts if t)[:limit]


class RequirementFailed(AssertionError):
    """A breach of one requirement, with the exchange that shows it."""

    def __init__(self, requirement_id: str, message: str, exchange: Exchange | None = None):
        self.requirement_id = requirement_id
        self.message = message
        self.exchange = exchange
        text = f"[{requirement_id}] {message}"
        if exchange is not None:
            text += f"\n  request: {exchange.method} {exchange.url} -> {exchange.status}"
            said = server_text(exchange)
            if said:
                text += f"\n  the server said: {said}"
            text += f"\n  reproduce: {exchange.curl()}"
        super().__init__(text)


class Blocked(Exception):
    """A prerequisite of the check failed (and was reported, once, where it failed): the rest
    of the check cannot run. Reported as *blocked by* that failure, never as a pass and never
    as a second failure of a requirement the check did not get to test."""


@dataclass
class Finding:
    requirement_id: str
    message: str
    exchange: Exchange | None = None


@dataclass
class CheckRecord:
    """What one test item found, beyond its pytest outcome."""

    nodeid: str
    check_id: str
    requirements: tuple[str, ...]
    warnings: dict[str, Finding] = field(default_factory=dict)
    verified: set[str] = field(default_factory=set)


def begin(record: CheckRecord, strict: bool) -> None:
    _current.set(record)
    _strict.set(strict)


def end() -> None:
    _current.set(None)


def current() -> CheckRecord | None:
    return _current.get()


def expect(requirement_id: str, condition: Any, message: str, exchange: Exchange | None = None) -> bool:
    """State that ``condition`` holds for ``requirement_id``; see module docstring."""
    req = requirement(requirement_id)  # unknown ids are a bug in the suite: KeyError
    record = _current.get()
    if condition:
        if record is not None:
            record.verified.add(requirement_id)
        return True
    if req.mandatory or _strict.get():
        raise RequirementFailed(requirement_id, message, exchange)
    if record is not None and requirement_id not in record.warnings:
        record.warnings[requirement_id] = Finding(requirement_id, message, exchange)
    return False
