"""summary.json and requirements.csv: the run's results and verdicts as files (SPEC §6).

Every verdict in them comes from ``conformance.results``; this module only lays them out.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any, Iterable

from ..options import PROFILES
from ..results import CheckResult, compare, final_exit_code, judge, load_summary, requirement_verdicts
from ..session import ConformanceRun


def profile_counts(results: Iterable[CheckResult]) -> dict[str, dict[str, int]]:
    counts = {p: {"passed": 0, "failed": 0, "warnings": 0, "skipped": 0, "errors": 0} for p in PROFILES}
    key = {"passed": "passed", "failed": "failed", "warning": "warnings", "skipped": "skipped", "error": "errors"}
    for r in results:
        counts.setdefault(r.profile, {k: 0 for k in key.values()})[key[r.outcome]] += 1
    return counts


def build_summary(run: ConformanceRun) -> dict[str, Any]:
    verdicts = requirement_verdicts(run.results, run.settings.strict)
    verdict = judge(verdicts, run.results)
    absolute = verdict.exit_code
    summary: dict[str, Any] = {
        "target": run.settings.target,
        "started": run.started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": run.seed,
        "selection": {"requirements": list(run.settings.requirements), "checks": list(run.settings.checks),
                      "partial": run.partial},
        "strict": run.settings.strict,
        "run_prefix": run.run_prefix,
        "exit_code": absolute,
        "verdict": verdict.as_dict(),
        "tls": {"insecure": run.settings.insecure, "ca_bundle": bool(run.settings.ca_bundle),
                "client_certificate": bool(run.settings.client_cert)},
        "profiles": profile_counts(run.results),
        "requirements": verdicts,
        "checks": [{"id": r.check_id, "nodeid": r.nodeid, "profile": r.profile, "outcome": r.outcome,
                    "requirements": list(r.requirements), "failed_requirements": list(r.failed_requirements),
                    "warned_requirements": sorted(r.warned_requirements), "message": r.message,
                    "duration": round(r.duration, 3)} for r in run.results],
        "cleanup_problems": run.cleanup_problems,
        "cleanup": run.cleaned.as_dict(),
        "politeness": run.polite.as_dict(),
        "active_profiles": sorted(run.active_profiles()[0]) if "capabilities" in run.__dict__ or
        run.settings.profiles else [],
        "missing_declarations": sorted(run.missing_declarations),
        "problems": run.problems,
        "export_group": run.target_data.export_group if "target_data" in run.__dict__ else None,
    }
    if run.settings.baseline:
        comparison = compare(load_summary(run.settings.baseline), verdicts, partial=run.partial)
        summary["baseline"] = {"path": str(run.settings.baseline), **comparison}
        summary["exit_code_without_baseline"] = absolute
        summary["exit_code"] = final_exit_code(verdict, comparison)
    return summary


MATRIX_VERDICTS = ("pass", "fail", "warn", "error", "skip", "untested")


def matrix_csv(summary: dict[str, Any]) -> str:
    """The requirement coverage matrix: one row per requirement, one column per verdict."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["requirement", "profile", "strength", "verdict", *MATRIX_VERDICTS, "checks", "source", "reason"])
    for r in summary["requirements"]:
        writer.writerow([r["id"], r.get("profile", ""), r["strength"], r["verdict"],
                         *("x" if r["verdict"] == v else "" for v in MATRIX_VERDICTS),
                         " ".join(r["checks"]), r["source"], r["reason"]])
    return out.getvalue()


def write_summary(run: ConformanceRun) -> dict[str, Any]:
    summary = build_summary(run)
    out = Path(run.settings.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = run.redact.tree(summary)     # string values only: keys and structure stay intact
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    (out / "summary.json").write_text(text + "\n", encoding="utf-8")
    (out / "requirements.csv").write_text(matrix_csv(summary), encoding="utf-8")
    run.summary = summary
    return summary


def report_files(run: ConformanceRun) -> list[Path]:
    """The report files this run writes (the HTML and JUnit ones only where asked for)."""
    out = Path(run.settings.report_dir)
    asked = [p for p in (run.html_path, run.junit_path) if p is not None]
    return asked + [out / "summary.json", out / "requirements.csv"]


