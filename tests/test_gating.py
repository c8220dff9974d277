"""Runs a team can gate on: the baseline logic (regression, fix, unchanged failure), the
exit code with --baseline, `diff`, `list`, the coverage matrix (HTML and CSV) and the
example CI workflow."""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

import pytest
import yaml

from conformance import cli
from conformance.results import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, compare, gated_exit_code
from mock_server import MockConfig
from mock_server.server import run_in_thread

from suite_runner import TOKENS, run_suite

ROOT = Path(__file__).resolve().parents[1]


def summary(**verdicts: str) -> dict:
    return {"requirements": [{"id": rid.replace("_", "-"), "strength": "SHALL", "verdict": v, "reason": ""}
                             for rid, v in verdicts.items()]}


def test_baseline_comparison_separates_regressions_fixes_and_unchanged_failures():
    old = summary(A="pass", B="fail", C="fail", D="error", E="pass", F="skip")
    new = summary(A="fail", B="pass", C="fail", D="fail", E="skip", F="error", G="fail")["requirements"]
    result = compare(old, new)
    ids = {k: [r["id"] for r in v] for k, v in result.items()}
    assert ids == {"regressions": ["A", "F", "G"], "fixes": ["B"], "unchanged_failures": ["C", "D"],
                   "other_changes": ["E"]}
    assert result["regressions"][2]["was"] == "absent"


def test_only_regressions_decide_the_gated_exit_code():
    assert gated_exit_code(compare(summary(A="fail"), summary(A="fail")["requirements"])) == EXIT_OK
    assert gated_exit_code(compare(summary(A="pass"), summary(A="fail")["requirements"])) == EXIT_FAILED
    assert gated_exit_code(compare(summary(A="pass"), summary(A="error")["requirements"])) == EXIT_BROKEN
    assert gated_exit_code(compare(summary(A="fail"), summary(A="pass")["requirements"])) == EXIT_OK


SELECT = ("--requirement", "CANVAS-GROUP-NAME", "--requirement", "CANVAS-GROUP-CREATE", "--seed", "4",
          "--examples", "2")


def _run(tmp: Path, name: str, deviate: bool, *extra: str):  # type: ignore[no-untyped-def]
    devs = frozenset({"name-not-required"}) if deviate else frozenset()
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS, deviations=devs)) as url:
        return run_suite(tmp / name / "reports", *SELECT, *extra, target=url)


@pytest.fixture(scope="module")
def gated_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gating")
    for name in ("clean", "broken", "still"):
        (tmp / name).mkdir()
    clean = _run(tmp, "clean", False)
    broken = _run(tmp, "broken", True, "--baseline", str(clean.report_dir / "summary.json"))
    still = _run(tmp, "still", True, "--baseline", str(broken.report_dir / "summary.json"))
    return clean, broken, still


def test_a_regression_against_the_baseline_fails_the_run(gated_runs):
    clean, broken, _ = gated_runs
    assert clean.exit_code == 0, clean.output[-2000:]
    assert broken.exit_code == 1, broken.output[-3000:]
    base = broken.summary["baseline"]
    assert [r["id"] for r in base["regressions"]] == ["CANVAS-GROUP-NAME"]
    assert "REGRESSED (1):" in broken.output and "CANVAS-GROUP-NAME (SHALL) pass -> fail" in broken.output


def test_an_unchanged_failure_does_not_fail_a_gated_run(gated_runs):
    _, _, still = gated_runs
    assert still.exit_code == 0, still.output[-3000:]
    assert still.summary["exit_code_without_baseline"] == 1
    assert [r["id"] for r in still.summary["baseline"]["unchanged_failures"]] == ["CANVAS-GROUP-NAME"]
    assert "STILL FAILING (1):" in still.output and "verdict: PASS (no regression" in still.output


def test_diff_of_two_summaries_lists_regressions_and_fixes(gated_runs, capsys):
    clean, broken, _ = gated_runs
    code = cli.main(["diff", str(clean.report_dir / "summary.json"), str(broken.report_dir / "summary.json")])
    text = capsys.readouterr().out
    assert code == 1
    assert "REGRESSED (1):" in text and "CANVAS-GROUP-NAME (SHALL) pass -> fail" in text
    assert cli.main(["diff", str(broken.report_dir / "summary.json"), str(clean.report_dir / "summary.json")]) == 0
    assert "FIXED (1):" in capsys.readouterr().out
    assert cli.main(["diff", str(ROOT / "README.md"), str(clean.report_dir / "summary.json")]) == 2


def test_unusable_baseline_is_a_usage_error(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text("{}")
    assert cli.main(["run", "--target", "http://127.0.0.1:9", "--baseline", str(bad)]) == 2


def test_html_report_leads_with_the_verdict_and_the_matrix_is_written_as_csv(gated_runs):
    _, broken, _ = gated_runs
    html = (broken.report_dir / "report.html").read_text()
    assert "Requirement coverage" in html and 'id="req-CANVAS-GROUP-NAME"' in html
    # the verdict first, then the failed requirement, then the matrix, then the per-check details
    assert (html.index('id="verdict"') < html.index('id="failed-CANVAS-GROUP-NAME"')
            < html.index("Requirement coverage") < html.index('id="details"'))
    rows = list(csv.DictReader(io.StringIO((broken.report_dir / "requirements.csv").read_text())))
    by_id = {r["requirement"]: r for r in rows}
    assert len(rows) == len(broken.summary["requirements"])
    assert by_id["CANVAS-GROUP-NAME"]["verdict"] == "fail" and by_id["CANVAS-GROUP-NAME"]["fail"] == "x"
    assert by_id["CANVAS-GROUP-NAME"]["checks"] and by_id["CANVAS-GROUP-NAME"]["source"]


def test_list_names_every_requirement_and_check(capsys):
    assert cli.main(["list", "--format", "json"]) == 0
    reqs = json.loads(capsys.readouterr().out)
    assert all({"id", "strength", "profile", "source", "checks"} <= set(r) for r in reqs)
    assert any(r["checks"] for r in reqs)
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    assert "checks:" in text and "group-create-valid[team]" in text and "CANVAS-GROUP-NAME" in text


def test_example_ci_workflow_runs_the_suite_and_publishes_the_reports():
    workflow = yaml.safe_load((ROOT / "examples/ci/github-actions.yml").read_text())
    job = next(iter(workflow["jobs"].values()))
    steps = job["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    suite = next(r for r in runs if r.startswith("fhir-conformance run"))
    argv = shlex.split(suite)[1:]
    parsed = cli._parser().parse_args(argv)          # every option the example uses exists
    assert parsed.command == "run" and parsed.baseline
    assert "--token" not in argv and "--client-secret" not in argv          # secrets: environment only
    assert job["env"]["FHIR_CONFORMANCE_CLIENT_SECRET"].startswith("${{ secrets.")
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    for name in ("report.html", "junit.xml", "summary.json", "requirements.csv"):
        assert f"reports/{name}" in upload["with"]["path"]
    diff = next(r for r in runs if r.startswith("fhir-conformance diff"))
    assert cli._parser().parse_args(shlex.split(diff.split("||")[0])[1:]).command == "diff"
