"""From what checks find to verdicts and the exit code, in one pytest-free place.

- A check states each rule with ``expect(requirement_id, condition, message, exchange)``:
  a breach that ``breaks_run`` (SHALL, or any with --strict: the one strictness policy)
  raises at once, so Hypothesis can shrink it; a SHOULD/MAY breach is recorded as a
  warning and the check goes on.
- ``classify`` turns one check's outcome (plain values: no pytest objects) into a
  ``CheckResult``; ``requirement_verdicts`` gives each requirement its verdict from the
  results tied to it; ``judge`` gives the run its verdict and exit code (SPEC §0, §6):
  RATE LIMITED (3) when a check could not be judged because the target kept answering 429
  (whatever else failed: a run cut short by 429s is never headlined FAIL), FAIL (1) for a
  SHALL-level failure (any with --strict), BROKEN (3) when a check could not run, NOTHING
  TESTED (3) when no check executed, else PASS (0).
- ``compare`` and ``gated_exit_code`` judge a run against a baseline summary.

The plugin (pytest), the reports and the CLI only ever show what these functions say.
"""

from __future__ import annotations

import contextvars
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from .http import AuthError, Exchange, TargetError
from .rules.catalogue import Requirement, catalogue
from .rules.catalogue import get as requirement
from .session import TargetUnreachable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
EXECUTED = ("passed", "warning", "failed")
OUTCOMES = ("passed", "failed", "warning", "skipped", "error")
RATE_LIMITED = "RateLimited: "      # how a check the target rate-limited out of its verdict reads


def breaks_run(req: Requirement, strict: bool) -> bool:
    """The strictness policy: a breach fails the run when the rule is a SHALL, or when the run is strict."""
    return req.mandatory or strict


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
    if breaks_run(req, _strict.get()):
        raise RequirementFailed(requirement_id, message, exchange)
    if record is not None and requirement_id not in record.warnings:
        record.warnings[requirement_id] = Finding(requirement_id, message, exchange)
    return False


@dataclass
class CheckResult:
    """The outcome of one test item, in conformance terms."""

    nodeid: str
    check_id: str
    profile: str
    requirements: tuple[str, ...]
    outcome: str                     # passed | failed | warning | skipped | error
    message: str = ""
    failed_requirements: tuple[str, ...] = ()
    warned_requirements: dict[str, str] = field(default_factory=dict)
    verified: tuple[str, ...] = ()
    duration: float = 0.0
    exchange: Any = None             # the exchange that shows the breach, if known
    sequence: list[Any] = field(default_factory=list)   # exchanges that led to it (failing/warning/error)
    traceback: str = ""              # pytest's long representation (suite-internal detail)


def one_line(excinfo: Any) -> str:
    if excinfo is None:
        return ""
    exc = excinfo.value if hasattr(excinfo, "value") else excinfo
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def chain(exc: BaseException) -> Iterable[BaseException]:
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        for linked in (e.__cause__, e.__context__):
            if linked is not None:
                stack.append(linked)


def target_problem(exc: BaseException | None) -> BaseException | None:
    """The target's misbehaviour (or an unusable identity) behind an exception, if that is what it is."""
    if exc is None:
        return None
    for e in chain(exc):
        if isinstance(e, (TargetError, AuthError, TargetUnreachable)):
            return e
    return None


def requirement_failures(exc: BaseException) -> list[RequirementFailed]:
    """RequirementFailed instances anywhere in an exception (groups, Hypothesis' Flaky)."""
    return [e for e in chain(exc) if isinstance(e, RequirementFailed)]


@dataclass(frozen=True)
class Finished:
    """How one check ended, in plain values (the plugin fills it from pytest's report)."""

    phase: str                       # setup | call | teardown
    outcome: str                     # passed | failed | skipped (pytest's word)
    skip_reason: str = ""
    error: BaseException | None = None
    error_line: str = ""             # one_line() of the error
    duration: float = 0.0


def classify(finished: Finished, check_id: str, nodeid: str, profile: str, record: CheckRecord, strict: bool,
             roots: dict[int, tuple[str, BaseException]] | None = None) -> CheckResult:
    """One check's outcome in conformance terms.

    ``roots`` remembers failures already reported: a shared prerequisite (a session
    fixture) that failed is reported by the first check that met it; every later check
    is *blocked by* that check (skipped with the reason), so one root cause counts once.
    """
    result = CheckResult(nodeid, check_id, profile, record.requirements, "passed", duration=finished.duration)
    result.warned_requirements = {r: f.message for r, f in record.warnings.items()}
    result.exchange = next((f.exchange for f in record.warnings.values() if f.exchange), None)
    if finished.outcome == "skipped":
        result.outcome, result.message = "skipped", finished.skip_reason
        return result
    exc = finished.error
    failures = requirement_failures(exc) if exc is not None else []
    blocked = next((e for e in chain(exc) if isinstance(e, Blocked)), None) if exc is not None else None
    if blocked is not None and not failures:
        result.outcome = "warning" if record.warnings else "skipped"
        result.message = "; ".join([*(f"[{r}] {f.message}" for r, f in record.warnings.items()), str(blocked)])
        result.verified = tuple(r for r in record.verified if r not in record.warnings)
        return result
    if roots is not None and exc is not None and finished.phase == "setup":
        if id(exc) in roots:
            result.outcome = "skipped"
            result.message = f"blocked by {roots[id(exc)][0]}: {finished.error_line[:200]}"
            return result
        roots[id(exc)] = (check_id, exc)     # the reference keeps the id from being reused
    problem = target_problem(exc)
    if problem is not None and not failures:
        result.outcome, result.message = "error", one_line(problem)
        return result
    if finished.phase != "call" and finished.outcome == "failed" and not failures:
        result.outcome, result.message = "error", finished.error_line
        return result
    if finished.outcome == "passed":
        result.outcome = "warning" if record.warnings else "passed"
        result.verified = tuple(r for r in dict.fromkeys([*record.requirements, *record.verified])
                                if r not in record.warnings)
        if record.warnings:
            result.message = "; ".join(f"[{r}] {f.message}" for r, f in record.warnings.items())
        return result
    if failures:
        result.outcome = "failed"
        result.failed_requirements = tuple(dict.fromkeys(f.requirement_id for f in failures))
        result.message = f"[{failures[0].requirement_id}] {failures[0].message}"
        result.exchange = failures[0].exchange
    elif isinstance(exc, AssertionError):
        result.outcome, result.failed_requirements = "failed", record.requirements
        result.message = finished.error_line
    else:
        result.outcome, result.message = "error", finished.error_line
    result.verified = tuple(r for r in record.verified if r not in result.failed_requirements)
    if result.outcome == "failed" and not any(breaks_run(catalogue()[r], strict) for r in result.failed_requirements):
        result.outcome = "warning"
        result.warned_requirements.update({r: result.message for r in result.failed_requirements})
        result.failed_requirements = ()
    return result


def requirement_verdicts(results: Iterable[CheckResult], strict: bool) -> list[dict[str, Any]]:
    results = list(results)
    verdicts = []
    for req in catalogue().values():
        tied = [r for r in results if req.id in r.requirements or req.id in r.failed_requirements
                or req.id in r.warned_requirements or req.id in r.verified]
        verdict, reason = _verdict(req, tied, strict)
        verdicts.append({"id": req.id, "profile": req.profile, "strength": req.strength, "source": req.source,
                         "statement": req.statement, "verdict": verdict,
                         "checks": sorted({r.check_id for r in tied}), "reason": reason})
    return verdicts


def _verdict(req: Requirement, tied: list[CheckResult], strict: bool) -> tuple[str, str]:
    failed = [r for r in tied if req.id in r.failed_requirements]
    if failed:
        return ("fail" if breaks_run(req, strict) else "warn"), f"{failed[0].check_id}: {failed[0].message}"
    warned = [r for r in tied if req.id in r.warned_requirements]
    if warned:     # a warning of a SHALL cannot exist: only SHOULD/MAY breaches are recorded as warnings
        verdict = "fail" if breaks_run(req, strict) else "warn"
        return verdict, f"{warned[0].check_id}: {warned[0].warned_requirements[req.id]}"
    errors = [r for r in tied if r.outcome == "error"]
    if errors:
        return "error", f"{errors[0].check_id}: {errors[0].message}"
    if any(req.id in r.verified for r in tied):
        return "pass", ""
    skipped = [r for r in tied if r.outcome == "skipped"]
    if skipped:
        return "skip", skipped[0].message
    if tied:
        return "untested", "its checks did not verify it"
    return "untested", NOT_SELECTED


def exit_code(verdicts: list[dict[str, Any]], results: list[CheckResult]) -> int:
    return judge(verdicts, results).exit_code


BAD = ("fail", "error")


NOT_SELECTED = "no check selected for it"


def compare(old: dict[str, Any], new_requirements: list[dict[str, Any]],
            partial: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Requirement verdicts against a baseline summary.

    *regressions*: failing or broken now (``fail``/``error``) but not in the baseline
    (including requirements the baseline did not have); *fixes*: failing or broken in the
    baseline, ``pass``/``warn`` now; *unchanged failures*: failing or broken in both;
    *other changes*: any other verdict change (e.g. pass -> skip), for information.
    With ``partial`` (a run restricted by --requirement, --check or -k) requirements no
    selected check was tied to are left out: they were not tested, not changed.
    """
    before = {r["id"]: r.get("verdict", "untested") for r in old.get("requirements", []) if isinstance(r, dict)}
    out: dict[str, list[dict[str, Any]]] = {"regressions": [], "fixes": [], "unchanged_failures": [],
                                            "other_changes": []}
    for req in new_requirements:
        if partial and req["verdict"] == "untested" and req.get("reason") == NOT_SELECTED:
            continue
        was, now = before.get(req["id"]), req["verdict"]
        row = {"id": req["id"], "strength": req.get("strength", ""), "was": was or "absent", "now": now,
               "reason": req.get("reason", "")}
        if now in BAD and was not in BAD:
            out["regressions"].append(row)
        elif was in BAD and now in ("pass", "warn"):
            out["fixes"].append(row)
        elif was in BAD and now in BAD:
            out["unchanged_failures"].append(row)
        elif was is not None and was != now:
            out["other_changes"].append(row)
    return out


def gated_exit_code(comparison: dict[str, list[dict[str, Any]]]) -> int:
    """With a baseline, only regressions count: 1 for a new failure, 3 for a new error only."""
    verdicts = {r["now"] for r in comparison["regressions"]}
    if "fail" in verdicts:
        return EXIT_FAILED
    if "error" in verdicts:
        return EXIT_BROKEN
    return EXIT_OK


def final_exit_code(verdict: RunVerdict, comparison: dict[str, list[dict[str, Any]]] | None) -> int:
    """The run's exit code: its own verdict's, or with a baseline only its regressions' (an empty run
    is never a pass, baseline or not)."""
    if comparison is None or verdict.label == "NOTHING TESTED":
        return verdict.exit_code
    return gated_exit_code(comparison)


def load_summary(path: Path) -> dict[str, Any]:
    """A ``summary.json`` (ValueError with a readable reason when it is not one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("requirements"), list):
        raise ValueError(f"{path} is not a fhir-conformance summary.json (no 'requirements' list)")
    return data


class Outcome(Protocol):
    outcome: str
    message: str


@dataclass(frozen=True)
class RunVerdict:
    exit_code: int
    label: str      # PASS | FAIL | RATE LIMITED | BROKEN | NOTHING TESTED | NOT A FHIR SERVER | TOKEN REFUSED
    reason: str = ""
    failed_requirement: str = ""    # a run stopped before any check because this requirement failed (TLS)

    def line(self) -> str:
        reason = f": {self.reason}" if self.reason else ""
        return f"verdict: {self.label}{reason} (exit {self.exit_code})"

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "reason": self.reason, "exit_code": self.exit_code}


def skip_reasons(results: Iterable[Outcome], limit: int = 5) -> str:
    """'12 checks skipped: 8 × reason A; 4 × reason B' (the most frequent first)."""
    counts = Counter(r.message or "no reason given" for r in results if r.outcome == "skipped")
    if not counts:
        return "no check was selected"
    total = sum(counts.values())
    parts = [f"{n} × {reason}" for reason, n in counts.most_common(limit)]
    if len(counts) > limit:
        parts.append(f"{len(counts) - limit} other reasons")
    return f"{total} check{'s' if total != 1 else ''} skipped: " + "; ".join(parts)


def judge(requirement_verdicts: Iterable[dict[str, Any]], results: Iterable[Outcome]) -> RunVerdict:
    """The run's verdict from its requirement verdicts and check outcomes."""
    results = list(results)
    failed = [v["id"] for v in requirement_verdicts if v["verdict"] == "fail"]
    limited = [r for r in results if r.outcome == "error" and r.message.startswith(RATE_LIMITED)]
    if limited:
        also = f"; {len(failed)} requirement(s) failed among the checks that could run" if failed else ""
        return RunVerdict(EXIT_BROKEN, "RATE LIMITED", f"{len(limited)} check(s) could not be judged: the target "
                          f"kept answering 429 (try a lower --max-rps){also}")
    if failed:
        return RunVerdict(EXIT_FAILED, "FAIL", f"{len(failed)} requirement(s) failed: {', '.join(failed[:5])}"
                          + (" …" if len(failed) > 5 else ""))
    errors = [r for r in results if r.outcome == "error"]
    if errors:
        return RunVerdict(EXIT_BROKEN, "BROKEN", f"{len(errors)} check(s) could not run: {errors[0].message[:160]}")
    if not any(r.outcome in EXECUTED for r in results):
        return RunVerdict(EXIT_BROKEN, "NOTHING TESTED", f"nothing was tested ({skip_reasons(results)})")
    return RunVerdict(EXIT_OK, "PASS")


def not_fhir(where: str, detail: str) -> RunVerdict:
    return RunVerdict(EXIT_BROKEN, "NOT A FHIR SERVER",
                      f"the target is not a FHIR server: {where} {detail} (expected a CapabilityStatement)")


def tls_too_old(origin: str, version: str) -> RunVerdict:
    """An https target that speaks only TLS older than 1.2: BULK-TLS fails, and nothing else is tried
    (the suite sends no token and no health data over it)."""
    return RunVerdict(EXIT_FAILED, "FAIL", f"{origin} negotiates {version} at most; all exchanges SHALL be "
                      "secured using TLS 1.2 or later (BULK-TLS), so the suite sent nothing over it and no other "
                      "check was run", failed_requirement="BULK-TLS")


def token_refused(status: int, where: str, has_credentials: bool) -> RunVerdict:
    if has_credentials:
        return RunVerdict(EXIT_USAGE, "TOKEN REFUSED", f"the target refused the token ({status} on {where}); "
                          "check --token / the client credentials: no check was run")
    return RunVerdict(EXIT_USAGE, "TOKEN REFUSED", f"the target requires a token ({status} on {where}); "
                      "give --token or client credentials: no check was run")
