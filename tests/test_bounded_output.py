"""Bounded output (issue 11): no failing example prints the population or another fixture, and a run
where every profile fails keeps its console, report.html and junit.xml small."""

from __future__ import annotations

import pytest
from hypothesis.vendor.pretty import pretty

from conformance.brief import BriefDict
from conformance.checks.support.export import CompletedExport, ExportGroup
from conformance.http import FhirClient, TokenSource
from conformance.options import Settings
from conformance.session import ConformanceRun
from conformance.strategies.cohort import Facts
from conformance.target import Ledger, TargetData
from mock_server import MockConfig
from mock_server.deviations import DEVIATIONS
from mock_server.server import run_in_thread

from suite_runner import TOKENS, run_suite

MANY = [f"patient-{n:05d}" for n in range(20_000)]
MB = 1024 * 1024


def fixtures() -> list[object]:
    """One of each object checks receive as fixtures, each holding a lot."""
    facts = Facts.__new__(Facts)
    for name in Facts.__dataclass_fields__:
        setattr(facts, name, {})
    facts.patient_ids = list(MANY)
    ledger = Ledger({gid: {"member": MANY[:50]} for gid in MANY[:500]})
    settings = Settings(target="http://t", token="a-secret-token-value")
    run = ConformanceRun(settings)
    return [facts, ledger, settings, run, TargetData("p", practitioner_ids=MANY, patient_ids=MANY),
            ExportGroup("g", set(MANY)), CompletedExport("s", "r", None, {"output": MANY}),  # type: ignore[arg-type]
            BriefDict({gid: set(MANY[:100]) for gid in MANY[:200]}), FhirClient("http://t", TokenSource("tok"))]


@pytest.mark.parametrize("fixture", fixtures(), ids=lambda f: type(f).__name__)
def test_fixtures_print_as_one_short_line_in_falsifying_examples(fixture):
    shown = pretty(fixture)
    assert len(shown) < 600 and "\n" not in shown, shown[:300]
    assert "a-secret-token-value" not in shown and "patient-00042" not in shown


# two or three deviations per profile, all at once: every profile fails
DEVIATIONS_AT_ONCE = ("count-ignored", "paging-next-on-last-page", "responsibility-not-unique",
                      "type-enum-not-enforced", "search-ignores-type", "task-owner-kept-when-omitted",
                      "task-label-search-ignored", "export-type-ignored", "export-wrong-line-type", "cohort-filters-ored")


@pytest.mark.slow
def test_many_deviations_at_once_keep_the_output_bounded(tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS, deviations=frozenset(DEVIATIONS_AT_ONCE))
    broken = sorted({rid for name in DEVIATIONS_AT_ONCE for rid in DEVIATIONS[name].breaks})
    selection = [arg for rid in broken for arg in ("--requirement", rid)]
    reports = tmp_path / "reports"
    with run_in_thread(config) as base_url:
        run = run_suite(reports, "--seed", "7", "--examples", "3", "--no-shrink", *selection, target=base_url)
    failing = [r for r in run.summary["requirements"] if r["verdict"] in ("fail", "warn")]
    profiles = {r["profile"] for r in failing}
    assert len(failing) >= 7 and {"fhir-core", "canvas", "bulk-export"} <= profiles, (
        [(r["id"], r["verdict"]) for r in run.summary["requirements"]], run.output[-2000:])
    lines = run.output.splitlines()
    assert len(lines) <= 50 * len(failing), f"{len(lines)} console lines for {len(failing)} failing requirements"
    for name in ("report.html", "junit.xml"):
        size = (reports / name).stat().st_size
        assert size < 5 * MB, f"{name}: {size / MB:.1f} MB"
    junit = (reports / "junit.xml").read_text()
    for text in (run.output, junit):
        assert "patient_ids=" not in text and "population=" not in text      # no fixture printed field by field
    assert "Draw 1 (invalid): InvalidPayload(payload=" in junit          # the failing payload is shown
