"""report.html: one self-contained page that leads with the answer.

Why a template and not pytest-html: pytest-html lays out pytest items (an environment
box, a results table of Python function names) and offers hooks to squeeze things in
around that. This report is about requirements: a banner with the verdict, the failed
requirements with their public sources, then the coverage matrix and per-check details.
Written from the run's results with Jinja2 (autoescaping on), it also works for the
pytest route and needs no JavaScript to be read (a few lines filter the matrix).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2

from ..reproduce import Reproduction, Step, script
from ..results import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, EXIT_USAGE, CheckResult
from ..rules.catalogue import catalogue
from ..session import ConformanceRun

BODY_SHOWN = 3_000          # characters of a body shown before "… n more"
STEPS_SHOWN = 10            # exchanges shown per check (the script keeps them all)
VERDICT_LABELS = {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_BROKEN: "ERROR", EXIT_USAGE: "NOTHING TESTED"}


def kit_version() -> str:
    try:
        return metadata.version("fhir-conformance-kit")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def verdict_label(summary: dict[str, Any]) -> str:
    """PASS / FAIL / ERROR / NOTHING TESTED, from the summary's verdict (or its exit code)."""
    own = summary.get("verdict")
    if isinstance(own, dict) and own.get("label"):          # the run's own judgement (results.judge)
        return "ERROR" if own["label"] == "BROKEN" else str(own["label"])
    if not summary.get("checks") or all(c["outcome"] == "skipped" for c in summary["checks"]):
        return "NOTHING TESTED"
    return VERDICT_LABELS.get(summary["exit_code"], "ERROR")


def _duration(summary: dict[str, Any]) -> str:
    try:
        seconds = (dt.datetime.fromisoformat(summary["finished"]) - dt.datetime.fromisoformat(summary["started"]))
    except (KeyError, TypeError, ValueError):
        return "?"
    total = int(seconds.total_seconds())
    return f"{total // 60} min {total % 60} s" if total >= 60 else f"{total} s"


def _shorten(text: str, limit: int = BODY_SHOWN) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… {len(text) - limit} more characters (the full body is in the reproduction script's replay)"


def reproduction_of(result: CheckResult, target: str) -> Reproduction | None:
    if not result.sequence:
        return None
    requirement = (result.failed_requirements or tuple(result.warned_requirements) or result.requirements or ("",))[0]
    message = re.sub(r"^\[[A-Z0-9-]+\] ", "", result.message)
    return Reproduction(result.check_id, target, requirement, message, [Step.of(e) for e in result.sequence])


def _strength_split(requirements: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    split: dict[str, dict[str, int]] = {}
    for r in requirements:
        row = split.setdefault(r["strength"], {})
        row[r["verdict"]] = row.get(r["verdict"], 0) + 1
    return split


def context(run: ConformanceRun, summary: dict[str, Any]) -> dict[str, Any]:
    cat = catalogue()
    results = {r.check_id: r for r in run.results}
    reqs = []
    for r in summary["requirements"]:
        req = cat.get(r["id"])
        reqs.append({**r, "cites": req.cites if req else "", "decision": req.decision if req else "",
                     "see_also": list(req.see_also) if req else []})
    failed = [r for r in reqs if r["verdict"] in ("fail", "error")]
    warned = [r for r in reqs if r["verdict"] == "warn"]
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for r in failed:
        by_profile.setdefault(r.get("profile", ""), []).append(r)
    details = []
    for result in run.results:
        if result.outcome not in ("failed", "warning", "error"):
            continue
        rep = reproduction_of(result, summary["target"] or "")
        text = script(rep) if rep else ""
        steps = result.sequence[-STEPS_SHOWN:]
        details.append({
            "result": result,
            "requirements": [cat[r] for r in (result.failed_requirements or tuple(result.warned_requirements)
                                              or result.requirements) if r in cat],
            "exchanges": [{"ex": e, "request_body": _shorten(e.request_body), "response_body": _shorten(e.response_body),
                           "failing": e is result.sequence[-1]} for e in steps],
            "hidden_steps": len(result.sequence) - len(steps),
            "script": text,
            "rerun": (f"fhir-conformance run --target {summary['target']} --seed {summary['seed']} "
                      f"--check '{result.check_id}'"),
            "replay": f"fhir-conformance replay {run.settings.report_dir} --check '{result.check_id}'",
        })
    order = {"failed": 0, "error": 1, "warning": 2}
    details.sort(key=lambda d: order[d["result"].outcome])
    checks_of = {r["id"]: [results[c] for c in r["checks"] if c in results] for r in reqs}
    return {
        "summary": summary, "verdict": verdict_label(summary),
        "verdict_reason": (summary.get("verdict") or {}).get("reason", "") if isinstance(summary.get("verdict"), dict) else "", "duration": _duration(summary),
        "version": kit_version(), "failed_by_profile": by_profile, "warned": warned, "requirements": reqs,
        "split": _strength_split(summary["requirements"]), "details": details, "checks_of": checks_of,
        "results": run.results, "insecure": summary.get("tls", {}).get("insecure"),
        "problems": summary.get("problems", []), "cleanup": summary.get("cleanup_problems", []),
        "baseline": summary.get("baseline"), "detail_ids": {d["result"].check_id for d in details},
    }


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("conformance", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
_ENV.filters["tojson_attr"] = lambda v: json.dumps(v)


def render(run: ConformanceRun, summary: dict[str, Any]) -> str:
    return _ENV.get_template("report.html.j2").render(**context(run, summary))


def write(run: ConformanceRun, summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run.redact(render(run, summary)), encoding="utf-8")
