"""Reports a person reads at a glance: public sources, stable check ids in JUnit and on the
command line, and no small lies (selection that matches nothing, a missing config file, the
pytest route's seed and report list, a partial run against a baseline, diff across targets)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance import cli, reproduce
from conformance.results import NOT_SELECTED, compare
from conformance.rules.catalogue import LOCAL_NAMES, PUBLIC_SOURCE, Requirement, catalogue, check_public
from mock_server import MockConfig
from mock_server.server import run_in_thread

import browser
from suite_runner import TOKEN, TOKENS, run_suite

ROOT = Path(__file__).resolve().parents[1]
FAILING = ("--requirement", "CANVAS-GROUP-NAME", "--requirement", "CANVAS-GROUP-RESP-UNIQUE",
           "--seed", "5", "--examples", "2")
BROKEN = frozenset({"name-not-required", "responsibility-not-unique"})


@pytest.fixture(scope="module")
def failing_mock():
    """A mock that breaks two SHALL rules: a Team without a name and a second holder of a
    responsibility are both accepted. It stays up so reproductions can be replayed against it."""
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS, deviations=BROKEN)) as url:
        yield url


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory, failing_mock):
    run = run_suite(tmp_path_factory.mktemp("failing") / "reports", *FAILING, target=failing_mock)
    assert run.exit_code == 1, run.output[-3000:]
    return run


# -- public sources --------------------------------------------------------------

def test_every_requirement_cites_a_public_page_and_says_what_on_it():
    for req in catalogue().values():
        assert PUBLIC_SOURCE.match(req.source), req
        assert req.cites, f"{req.id}: say what on the page is cited"
        assert not LOCAL_NAMES.search(req.cites + req.statement + req.decision), req
    decisions = [r for r in catalogue().values() if r.kit_decision]
    assert decisions and all(len(r.decision) > 40 for r in decisions), "a decision gives its reason"


@pytest.mark.parametrize("bad", [
    dict(source="000_eaffc2096145799d.txt create"),
    dict(source="SPEC.md §2"),
    dict(source="https://docs.canvasmedical.com/api/group/", cites="seed 003 attributes"),
    dict(source="https://docs.canvasmedical.com/api/group/", decision="see SPEC.md §1"),
    dict(source="http://hl7.org/fhir/R4/http.html"),
])
def test_a_local_or_unopenable_source_is_refused(bad):
    req = Requirement(**{"id": "X", "profile": "canvas", "strength": "SHALL", "statement": "s", "cites": "c", **bad})
    with pytest.raises(ValueError):
        check_public(req)


def test_no_report_names_a_local_file(failing_run):
    for name in ("report.html", "summary.json", "junit.xml", "requirements.csv"):
        text = (failing_run.report_dir / name).read_text(encoding="utf-8")
        found = LOCAL_NAMES.search(text)
        assert found is None, f"{name} names a local file: {text[max(0, found.start() - 80):found.end() + 80]!r}"
    failed = next(r for r in failing_run.summary["requirements"] if r["id"] == "CANVAS-GROUP-NAME")
    assert failed["source"].startswith("https://docs.canvasmedical.com/api/group/")


# -- stable check ids --------------------------------------------------------------

def test_junit_cases_are_named_by_check_id_with_its_properties(failing_run):
    tree = ET.parse(failing_run.report_dir / "junit.xml")
    cases = list(tree.iter("testcase"))
    checks = {c["id"]: c for c in failing_run.summary["checks"]}
    assert cases and {c.get("name") for c in cases} == set(checks)
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        check = checks[case.get("name")]
        assert props["check_id"] == case.get("name")
        assert props["requirements"].split() == check["requirements"]
        assert props["strength"] in ("SHALL", "SHOULD", "MAY")
        assert case.get("classname") == f"fhir-conformance.{check['profile']}"
    failed = [c for c in cases if c.find("failure") is not None]
    assert failed, "the broken rule shows as a failing test case"


def test_check_option_selects_by_stable_id(tmp_path):
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as url:
        run = run_suite(tmp_path / "reports", "--check", "group-create-valid", "--check", "group-read-unknown",
                        "--seed", "3", "--examples", "2", target=url)
        unknown = run_suite(tmp_path / "unknown", "--check", "no-such-check", target=url)
    assert run.exit_code == 0, run.output[-3000:]
    ids = {c["id"] for c in run.summary["checks"]}
    assert ids and {i.split("[")[0] for i in ids} == {"group-create-valid", "group-read-unknown"}, ids
    assert unknown.exit_code == 2 and "unknown check id(s): no-such-check" in unknown.output


# -- no small lies ---------------------------------------------------------------------

def test_a_selection_matching_nothing_is_not_a_pass(tmp_path):
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as url:
        run = run_suite(tmp_path / "reports", "-k", "matches-no-check-at-all", target=url)
    assert run.exit_code == 2
    assert "PASS" not in run.output and "NOTHING TESTED" in run.output


def test_a_missing_config_file_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_pytest_route_names_no_seed_it_lacks_and_no_report_it_did_not_write(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "junit.xml").write_text("stale, from an earlier run")
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as url:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs",
                               "conformance.checks", "--fhir-target", url, "--fhir-token", TOKEN,
                               "--fhir-requirement", "CANVAS-GROUP-CREATE", "--fhir-examples", "2",
                               "--fhir-report-dir", str(reports), "-q"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert "FHIR conformance of" in out, out[-3000:]
    assert "seed None" not in out and "--hypothesis-seed" in out
    listed = next(line for line in out.splitlines() if line.startswith("reports:"))
    assert "summary.json" in listed and "report.html" in listed and "junit.xml" not in listed
    assert "NOTHING TESTED" not in (reports / "report.html").read_text() and "PASS" in out


def test_a_partial_run_does_not_call_unselected_requirements_changed():
    old = {"requirements": [{"id": "A", "verdict": "pass"}, {"id": "B", "verdict": "pass"}]}
    new = [{"id": "A", "verdict": "fail", "reason": "x"}, {"id": "B", "verdict": "untested", "reason": NOT_SELECTED}]
    assert [r["id"] for r in compare(old, new)["other_changes"]] == ["B"]          # a full run: a real change
    partial = compare(old, new, partial=True)
    assert partial["other_changes"] == [] and [r["id"] for r in partial["regressions"]] == ["A"]


def test_a_baseline_run_restricted_by_requirement_lists_only_what_it_tested(tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"target": "x", "requirements": [
        {"id": rid, "verdict": "pass"} for rid in catalogue()]}))
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as url:
        run = run_suite(tmp_path / "reports", "--requirement", "CANVAS-GROUP-CREATE", "--seed", "2",
                        "--examples", "2", "--baseline", str(baseline), target=url)
    assert run.exit_code == 0, run.output[-3000:]
    assert run.summary["baseline"]["other_changes"] == [], run.summary["baseline"]["other_changes"][:3]
    assert "-> untested" not in run.output and "not selected" in run.output


def test_diff_warns_when_the_summaries_are_for_different_targets(tmp_path, capsys):
    for name, target in (("a", "https://one.example"), ("b", "https://two.example")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"target": target, "requirements": []}))
    assert cli.main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert "different targets" in capsys.readouterr().err
    (tmp_path / "c.json").write_text(json.dumps({"target": "https://one.example", "requirements": []}))
    assert cli.main(["diff", str(tmp_path / "a.json"), str(tmp_path / "c.json")]) == 0
    assert "different targets" not in capsys.readouterr().err


# -- reproduction of the sequence ----------------------------------------------------------

CONFLICT = "group-responsibility-unique-create"


def test_a_failure_records_the_sequence_that_led_to_it(failing_run):
    reps = reproduce.load(failing_run.report_dir)
    conflict = reps[CONFLICT]
    assert [s.method for s in conflict.steps][-2:] == ["POST", "POST"], conflict.steps
    holder, second = conflict.steps[-2:]
    assert holder.status == 201 and second.status == 201          # the second claim should have been 422
    claimed = json.loads(second.body)["characteristic"][0]["valueCodeableConcept"]["text"]
    assert claimed in holder.body, "the sequence starts with the team holding the responsibility"
    html = (failing_run.report_dir / "report.html").read_text()
    assert f'id="check-{CONFLICT}"' in html and "${FHIR_CONFORMANCE_TOKEN}" in html
    assert TOKEN not in (failing_run.report_dir / reproduce.REPRODUCTION_FILE).read_text()


def test_the_shell_script_replays_the_whole_sequence(failing_run, failing_mock, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    rep = reproduce.load(failing_run.report_dir)[CONFLICT]
    path = tmp_path / "reproduce.sh"
    path.write_text(reproduce.script(rep))
    env = {**os.environ, "FHIR_CONFORMANCE_TOKEN": TOKEN, "FHIR_CONFORMANCE_TARGET": failing_mock}
    proc = subprocess.run(["sh", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line[:1].isdigit()]
    assert lines[-1].endswith("-> 201 (the run saw 201)"), proc.stdout     # the breach occurs again
    assert TOKEN not in path.read_text()


def test_replay_shows_whether_the_failure_still_occurs(failing_run, failing_mock, capsys, monkeypatch):
    monkeypatch.setenv("FHIR_CONFORMANCE_TOKEN", TOKEN)
    assert cli.main(["replay", str(failing_run.report_dir), "--check", CONFLICT]) == 1
    assert "STILL FAILS" in capsys.readouterr().out
    # against a conforming server the same sequence builds the holder first, so the claim is refused:
    # clean-up of the run (which released the holder) does not matter
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as fixed:
        assert cli.main(["replay", str(failing_run.report_dir), "--check", CONFLICT, "--target", fixed]) == 0
    out = capsys.readouterr().out
    assert "CHANGED: the target now answers 422" in out, out
    assert cli.main(["replay", str(failing_run.report_dir), "--check", "no-such-check"]) == 2


# -- progress ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress(tty: bool):
    from conformance.progress import ProfileProgress, Progress

    out, clock = io.StringIO(), FakeClock()
    progress = Progress(tty=tty, stream=out, clock=clock, interval=5.0)
    cases = [("canvas", "group-a[x]", "group-a"), ("canvas", "group-a[y]", "group-a"), ("canvas", "group-b", "group-b"),
             ("bulk-export", "export-c", "export-c")]
    for i, (profile, check, group) in enumerate(cases):
        progress.items[f"n{i}"] = (profile, check, group)
        progress.profiles.setdefault(profile, ProfileProgress()).total += 1
        progress.group_left[group] = progress.group_left.get(group, 0) + 1
    return progress, out, clock


def _finish(progress, nodeid: str, failed: bool = False) -> None:
    progress.pytest_runtest_logstart(nodeid, None)
    for when in ("setup", "call", "teardown"):
        progress.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, when=when, failed=failed and when == "call"))


def test_without_a_terminal_a_plain_line_per_finished_group_at_most_every_few_seconds():
    progress, out, clock = _progress(tty=False)
    clock.now = 6.0
    _finish(progress, "n0")
    assert out.getvalue() == "", "group-a is not finished yet"
    _finish(progress, "n1", failed=True)
    assert out.getvalue().splitlines() == ["[    6 s] canvas 2/3 (1 failed); bulk-export 0/1 - finished group-a"]
    clock.now = 7.0
    _finish(progress, "n2")
    assert len(out.getvalue().splitlines()) == 1, "not within 5 s of the last line"
    clock.now = 12.0
    _finish(progress, "n3")
    last = out.getvalue().splitlines()[-1]
    assert last == "[   12 s] canvas 3/3 (1 failed); bulk-export 1/1 - finished group-b, export-c"


def test_in_a_terminal_a_live_line_per_profile_with_the_current_check():
    from rich.console import Console

    progress, _, clock = _progress(tty=True)
    _finish(progress, "n0")
    clock.now = 3.0
    progress.pytest_runtest_logstart("n2", None)
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(progress._table())
    lines = console.file.getvalue().splitlines()
    assert "canvas" in lines[0] and "1/3" in lines[0] and "group-b" in lines[0] and "3 s" in lines[0]
    assert "bulk-export" in lines[1] and "0/1" in lines[1] and "waiting" in lines[1]


def test_problems_are_printed_the_moment_they_are_known_and_once():
    progress, out, _ = _progress(tty=False)
    problems = ["the target stopped answering: 5 requests in a row failed"]
    progress.announce(problems)
    progress.announce(problems)
    assert out.getvalue().count("PROBLEM: the target stopped answering") == 1


def test_a_run_without_a_terminal_shows_progress_lines(failing_run):
    assert re.search(r"^\[\s*\d+ s\] canvas \d+/\d+", failing_run.output, re.M), failing_run.output[:2000]


# -- seen in a real browser ------------------------------------------------------------------

@pytest.fixture(scope="module")
def passing_run(tmp_path_factory):
    with run_in_thread(MockConfig(db=":memory:", tokens=TOKENS)) as url:
        run = run_suite(tmp_path_factory.mktemp("passing") / "reports", "--requirement", "CANVAS-GROUP-CREATE",
                        "--seed", "5", "--examples", "2", target=url)
    assert run.exit_code == 0, run.output[-3000:]
    return run


def _first_screen(run, tmp_path, selectors):
    binary = browser.chromium()
    if binary is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    page = run.report_dir / "report.html"
    png = tmp_path / f"{run.report_dir.parent.name}.png"
    browser.screenshot(binary, page, png)
    assert png.stat().st_size > 5_000, "Chromium wrote no real screenshot"
    return browser.geometry(binary, page, selectors, tmp_path)


def test_a_failing_report_shows_the_banner_and_the_first_failure_on_the_first_screen(failing_run, tmp_path):
    geo = _first_screen(failing_run, tmp_path, ["#verdict", "#banner", ".req.fail", "#failures"])
    height = geo["viewport"][1]
    verdict, first = geo["elements"]["#verdict"], geo["elements"][".req.fail"]
    assert verdict and verdict["visible"] and verdict["bottom"] <= height
    assert first is not None and first["visible"], "no failed requirement box in the page"
    assert first["top"] < height - 60, f"the first failure starts below the first screen: {first} (viewport {height})"
    assert geo["scrollWidth"] <= geo["viewport"][0], "the page is wider than the window: text does not wrap"
    text = (failing_run.report_dir / "report.html").read_text()
    assert '<h1 id="verdict">FAIL</h1>' in text


def test_a_passing_report_says_so_on_the_first_screen(passing_run, tmp_path):
    geo = _first_screen(passing_run, tmp_path, ["#verdict", "#failures", "#coverage"])
    height = geo["viewport"][1]
    assert geo["elements"]["#verdict"]["bottom"] <= height
    assert geo["elements"]["#failures"]["top"] < height
    assert geo["scrollWidth"] <= geo["viewport"][0]
    assert '<h1 id="verdict">PASS</h1>' in (passing_run.report_dir / "report.html").read_text()


def test_a_target_that_stops_answering_is_announced_at_once_and_on_top_of_the_summary(tmp_path):
    from misbehaving import Misbehaving

    with Misbehaving("drop", metadata_ok=True) as srv:
        run = run_suite(tmp_path / "reports", "--requirement", "CANVAS-GROUP-SEARCH-TYPE", "--requirement",
                        "CANVAS-GROUP-CREATE", "--examples", "1", "--timeout", "2", target=srv.url)
    assert run.exit_code == 3, run.output[-3000:]
    problems = [i for i, line in enumerate(run.output.splitlines()) if line.startswith("PROBLEM: ")]
    closing = next(i for i, line in enumerate(run.output.splitlines()) if line.startswith("FHIR conformance of"))
    assert problems and problems[0] < closing - 1, "announced while running, not only at the end"
    assert any(closing - 3 <= i < closing for i in problems), "repeated at the top of the closing summary"
    html = (run.report_dir / "report.html").read_text()
    assert 'class="problem"' in html and html.index('class="problem"') < html.index('id="failures"')


def test_listing_checks_writes_nothing_where_it_runs(tmp_path):
    """`list` collects the checks without running them: no reports/ (it used to overwrite the last
    run's summary.json with a NOTHING TESTED one) and no .hypothesis/ in the user's directory."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "list"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "requirements," in proc.stdout, proc.stderr
    assert list(work.iterdir()) == []
    assert (cache / "fhir-conformance" / "hypothesis").is_dir()       # Hypothesis's caches went here
