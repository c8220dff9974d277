"""From test outcomes to conformance verdicts: summary.json, HTML extras, the console.

A check's pytest outcome is not the whole story: one check verifies several
requirements of different strengths. Here each item is classified (passed,
failed, warning, skipped, error), each requirement gets a verdict from the items
tied to it, and the exit code follows SPEC §6: 1 only for a SHALL-level failure
(any failure with --strict), 3 when the run broke, else 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

from .http import AuthError, TargetError
from .outcome import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, EXIT_USAGE, RunVerdict, judge  # noqa: F401 (re-exported)
from .requirements import Requirement, catalogue
from .session import CheckResult, ConformanceRun, TargetUnreachable
from .settings import PROFILES
from .verdicts import Blocked, CheckRecord, RequirementFailed

OUTCOMES = ("passed", "failed", "warning", "skipped", "error")


def one_line(excinfo: Any) -> str:
    if excinfo is None:
        return ""
    exc = excinfo.value if hasattr(excinfo, "value") else excinfo
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _chain(exc: BaseException) -> Iterable[BaseException]:
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
    for e in _chain(exc):
        if isinstance(e, (TargetError, AuthError, TargetUnreachable)):
            return e
    return None


def _requirement_failures(exc: BaseException) -> list[RequirementFailed]:
    """RequirementFailed instances anywhere in an exception (groups, Hypothesis' Flaky)."""
    return [e for e in _chain(exc) if isinstance(e, RequirementFailed)]


TRACEBACK_KEPT = 4_000


def tail(text: str, limit: int = TRACEBACK_KEPT) -> str:
    """The end of a long traceback (where the cause is), saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"… ({len(text) - limit} earlier characters left out)\n" + text[-limit:]


def _skip_message(rep: pytest.TestReport) -> str:
    longrepr = rep.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


def classify(item: pytest.Item, rep: pytest.TestReport, call: pytest.CallInfo, record: CheckRecord,
             profile: str, strict: bool, roots: dict[int, tuple[str, BaseException]] | None = None) -> CheckResult:
    """One test item's outcome in conformance terms.

    ``roots`` remembers failures already reported: a shared prerequisite (a session
    fixture) that failed is reported by the first check that met it; every later check
    is *blocked by* that check (skipped with the reason), so one root cause counts once.
    """
    result = CheckResult(item.nodeid, record.check_id, profile, record.requirements, "passed",
                         duration=rep.duration)
    result.warned_requirements = {r: f.message for r, f in record.warnings.items()}
    result.exchange = next((f.exchange for f in record.warnings.values() if f.exchange), None)
    if rep.skipped:
        result.outcome, result.message = "skipped", _skip_message(rep)
        return result
    exc = call.excinfo.value if call.excinfo else None
    blocked = next((e for e in _chain(exc) if isinstance(e, Blocked)), None) if exc is not None else None
    if blocked is not None and not _requirement_failures(exc):
        result.outcome = "warning" if record.warnings else "skipped"
        result.message = "; ".join([*(f"[{r}] {f.message}" for r, f in record.warnings.items()), str(blocked)])
        result.verified = tuple(r for r in record.verified if r not in record.warnings)
        return result
    if roots is not None and exc is not None and rep.when == "setup":
        if id(exc) in roots:
            result.outcome = "skipped"
            result.message = f"blocked by {roots[id(exc)][0]}: {one_line(call.excinfo)[:200]}"
            return result
        roots[id(exc)] = (record.check_id, exc)     # the reference keeps the id from being reused
    problem = target_problem(exc)
    if problem is not None and not _requirement_failures(exc):
        result.outcome, result.message = "error", one_line(problem)
        return result
    if rep.when != "call" and rep.failed and not (exc and _requirement_failures(exc)):
        result.outcome, result.message = "error", one_line(call.excinfo)
        return result
    if rep.passed:
        result.outcome = "warning" if record.warnings else "passed"
        result.verified = tuple(r for r in dict.fromkeys([*record.requirements, *record.verified])
                                if r not in record.warnings)
        if record.warnings:
            result.message = "; ".join(f"[{r}] {f.message}" for r, f in record.warnings.items())
        return result
    failures = _requirement_failures(exc) if exc else []
    if failures:
        result.outcome = "failed"
        result.failed_requirements = tuple(dict.fromkeys(f.requirement_id for f in failures))
        result.message = f"[{failures[0].requirement_id}] {failures[0].message}"
        result.exchange = failures[0].exchange
    elif isinstance(exc, AssertionError):
        result.outcome, result.failed_requirements = "failed", record.requirements
        result.message = one_line(call.excinfo)
    else:
        result.outcome, result.message = "error", one_line(call.excinfo)
    result.verified = tuple(r for r in record.verified if r not in result.failed_requirements)
    if result.outcome == "failed" and not any(catalogue()[r].mandatory for r in result.failed_requirements):
        if not strict:
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
        verdict = "fail" if (req.mandatory or strict) else "warn"
        return verdict, f"{failed[0].check_id}: {failed[0].message}"
    warned = [r for r in tied if req.id in r.warned_requirements]
    if warned:
        return ("fail" if strict else "warn"), f"{warned[0].check_id}: {warned[0].warned_requirements[req.id]}"
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
    }
    if run.settings.baseline:
        comparison = compare(load_summary(run.settings.baseline), verdicts, partial=run.partial)
        summary["baseline"] = {"path": str(run.settings.baseline), **comparison}
        summary["exit_code_without_baseline"] = absolute
        summary["exit_code"] = gated_exit_code(comparison)
        if verdict.label == "NOTHING TESTED":
            summary["exit_code"] = verdict.exit_code     # no baseline makes an empty run a pass
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


def write_summary(run: ConformanceRun, config: pytest.Config) -> dict[str, Any]:
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


# -- attachments ---------------------------------------------------------------

def attach(rep: pytest.TestReport, result: CheckResult, record: CheckRecord, run: ConformanceRun) -> None:
    """Exchanges, curl and the reproduce line on every failing, warning or broken check."""
    if result.outcome not in ("failed", "warning", "error"):
        return
    failing = result.exchange or run.recorder.last
    rerun = (f"fhir-conformance run --target {run.settings.target} --seed {run.seed} "
             f"--check '{result.check_id}'")
    text = [f"verdict: {result.outcome}", f"re-run the check: {rerun}"]
    if failing is not None:
        text.append(f"the request that shows it: {failing.method} {failing.url} -> {failing.status}")
        text.append(f"re-send the {len(result.sequence)} request(s) that led to it: fhir-conformance replay "
                    f"{run.settings.report_dir} --check '{result.check_id}' (a curl script is in report.html)")
    rep.sections.append(("conformance", run.redact("\n".join(text))))


# -- JUnit ---------------------------------------------------------------------

def _junit_address(nodeid: str) -> tuple[str, str]:
    """(classname, name) as pytest's junitxml writes them for a node id."""
    parts = nodeid.split("::")
    path = parts[0].replace("/", ".").removesuffix(".py")
    return ".".join([path, *parts[1:-1]]), parts[-1]


def rename_junit_cases(path: Path, results: Iterable[CheckResult]) -> None:
    """Name each test case by its stable check id (classname: the profile) and add its node id.

    pytest writes test cases under Python function names; CI dashboards should show the
    ids users type (``--check ID``) and read everywhere else (SPEC §6).
    """
    import xml.etree.ElementTree as ET

    if not path.is_file():
        return
    by_address = {_junit_address(r.nodeid): r for r in results}
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        result = by_address.get((case.get("classname", ""), case.get("name", "")))
        if result is None:
            continue
        case.set("classname", f"fhir-conformance.{result.profile}")
        case.set("name", result.check_id)
        props = case.find("properties")
        if props is None:
            props = ET.Element("properties")
            case.insert(0, props)
        ET.SubElement(props, "property", name="nodeid", value=result.nodeid)
        ET.SubElement(props, "property", name="outcome", value=result.outcome)
    tree.write(path, encoding="utf-8", xml_declaration=True)
