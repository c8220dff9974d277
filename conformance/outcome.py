"""The verdict of a whole run and its exit code (SPEC §0, §6), in one pytest-free place.

The console, summary.json, the HTML banner and JUnit all show what ``judge`` says;
none of them computes a verdict of its own. The rules:

- a check that could not be judged because the target rate-limited the suite: RATE LIMITED,
  exit 3, whatever else failed (a run cut short by 429s is never headlined FAIL);
- a SHALL-level failure (any failure with --strict): FAIL, exit 1;
- a check the suite could not run (its own error, an unusable target): BROKEN, exit 3;
- no check executed at all (every one skipped or deselected): NOTHING TESTED, exit 3,
  with the skip reasons counted: a run that verified nothing is never a pass;
- otherwise PASS, exit 0.

The pre-flight verdicts (``not_fhir``, ``token_refused``) end a run before any check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
EXECUTED = ("passed", "warning", "failed")
RATE_LIMITED = "RateLimited: "      # how a check the target rate-limited out of its verdict reads


class Outcome(Protocol):
    outcome: str
    message: str


@dataclass(frozen=True)
class RunVerdict:
    exit_code: int
    label: str      # PASS | FAIL | RATE LIMITED | BROKEN | NOTHING TESTED | NOT A FHIR SERVER | TOKEN REFUSED
    reason: str = ""

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


def token_refused(status: int, where: str, has_credentials: bool) -> RunVerdict:
    if has_credentials:
        return RunVerdict(EXIT_USAGE, "TOKEN REFUSED", f"the target refused the token ({status} on {where}); "
                          "check --token / the client credentials: no check was run")
    return RunVerdict(EXIT_USAGE, "TOKEN REFUSED", f"the target requires a token ({status} on {where}); "
                      "give --token or client credentials: no check was run")
