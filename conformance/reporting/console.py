"""The terminal: the run's summary at the end, and the comparison with a baseline."""

from __future__ import annotations

from typing import Any, Callable

from ..results import BAD, EXIT_BROKEN, EXIT_FAILED, EXIT_OK, NOT_SELECTED, RunVerdict
from ..session import ConformanceRun
from .summary import build_summary, report_files


def render_comparison(comparison: dict[str, list[dict[str, Any]]], write: Callable[[str], None],
                      limit: int = 50) -> None:
    titles = (("regressions", "REGRESSED"), ("fixes", "FIXED"), ("unchanged_failures", "STILL FAILING"),
              ("other_changes", "CHANGED"))
    write("against the baseline: " + ", ".join(f"{len(comparison[k])} {k.replace('_', ' ')}" for k, _ in titles))
    for key, label in titles:
        rows = comparison[key]
        if not rows:
            continue
        write(f"{label} ({len(rows)}):")
        for row in rows[:limit]:
            reason = f": {row['reason'][:120]}" if row["reason"] and row["now"] in BAD else ""
            write(f"  {row['id']} ({row['strength']}) {row['was']} -> {row['now']}{reason}")
        if len(rows) > limit:
            write(f"  … and {len(rows) - limit} more")


def print_summary(run: ConformanceRun, write: Callable[[str], None]) -> None:
    summary = getattr(run, "summary", None) or build_summary(run)
    write("")
    for problem in summary.get("problems", []):
        write(f"PROBLEM: {problem}")
    if summary.get("tls", {}).get("insecure"):
        write("WARNING: TLS certificate verification was DISABLED (--insecure); the target's identity was not checked")
    seed = summary["seed"] if summary["seed"] is not None else "not fixed: pass --hypothesis-seed=N to repeat it"
    write(f"FHIR conformance of {summary['target']}  (seed {seed}, run prefix {summary['run_prefix']})")
    write(f"{'profile':<13}{'passed':>8}{'failed':>8}{'warnings':>10}{'skipped':>9}{'errors':>8}")
    for name, c in summary["profiles"].items():
        write(f"{name:<13}{c['passed']:>8}{c['failed']:>8}{c['warnings']:>10}{c['skipped']:>9}{c['errors']:>8}")
    by: dict[str, list[dict[str, Any]]] = {}
    partial = summary.get("selection", {}).get("partial")
    for v in summary["requirements"]:
        key = "not selected" if partial and v["verdict"] == "untested" and v["reason"] == NOT_SELECTED else v["verdict"]
        by.setdefault(key, []).append(v)
    write("requirements: " + ", ".join(f"{len(by.get(k, []))} {k}" for k in
                                       ("pass", "fail", "warn", "error", "skip", "untested", "not selected")
                                       if k != "not selected" or partial))
    for kind in ("fail", "warn", "error"):
        for v in by.get(kind, [])[:12]:
            write(f"  {kind.upper():<5} {v['id']} ({v['strength']}): {v['reason'][:150]}")
    if summary.get("export_group"):
        write(f"exported: {summary['export_group']}")
    if summary.get("missing_declarations"):
        write("run because of --profile although the target does not declare: "
              + "; ".join(summary["missing_declarations"]))
    left = summary["cleanup"]["left_behind"]
    if left:
        write(f"left behind on the target: {len(left)} resource(s): "
              + "; ".join(f"{item['reference']} ({item['why']})" for item in left[:20])
              + (f"; … {len(left) - 20} more in summary.json" if len(left) > 20 else ""))
    others = [p for p in summary["cleanup_problems"] if not p.startswith("could not remove ")]
    if others:
        write("clean-up problems: " + "; ".join(others))
    if "baseline" in summary:
        render_comparison(summary["baseline"], write, limit=12)
    written = [str(p) for p in report_files(run) if p.is_file()]
    write("reports: " + ("  ".join(written) if written else "(none written)"))
    own = summary.get("verdict") or {}
    if "baseline" in summary and own.get("label") != "NOTHING TESTED":
        labels = {EXIT_OK: "PASS (no regression against the baseline)", EXIT_FAILED: "FAIL (regressions)",
                  EXIT_BROKEN: "BROKEN (new errors against the baseline)"}
        write(f"verdict: {labels.get(summary['exit_code'], '?')} (exit {summary['exit_code']})")
    else:
        write(RunVerdict(summary["exit_code"], own.get("label", "?"), own.get("reason", "")).line())
