"""Legal variants of the mock: the switches work, and the suite passes every one of them.

The variant matrix is the mirror of the deviation matrix: a variant takes a choice the
sources allow (an optional feature left out, a MAY taken), so the suite restricted to
the requirements the variant touches must end with exit 0, no failed or broken
requirement, and a warning only where the variant declares one right (a SHOULD it
does not follow). Each case runs few examples on a fresh in-memory mock.
"""

from __future__ import annotations

import pytest

from conformance.rules.catalogue import catalogue
from mock_server import MockConfig
from mock_server.__main__ import main
from mock_server.server import run_in_thread
from mock_server.variants import VARIANTS, expand

from suite_runner import TOKEN, TOKENS, run_suite, smart_client, smart_env


def known_checks() -> set[str]:
    """Every stable check id (without parameters), from the check modules' sources."""
    import re
    from pathlib import Path

    import conformance

    sources = "".join(p.read_text() for p in (Path(conformance.__file__).parent / "checks").glob("test_*.py"))
    return set(re.findall(r'@check\("([^"]+)"', sources))


def test_every_variant_names_catalogued_requirements_and_known_variants():
    for variant in VARIANTS.values():
        assert variant.touches and set(variant.touches) <= set(catalogue()), variant
        assert set(variant.warns) <= set(variant.touches), variant
        assert all(catalogue()[r].strength != "SHALL" for r in variant.warns), variant
        assert set(variant.implies) <= set(VARIANTS), variant
        assert set(variant.runs) <= known_checks(), variant
        assert variant.allowed_by, variant


def test_list_variants(capsys):
    assert main(["--list-variants"]) == 0
    out = capsys.readouterr().out
    for v in VARIANTS.values():
        assert v.name in out


def test_unknown_variant_is_a_usage_error(capsys):
    assert main(["--variant", "no-such-variant"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown variant"):
        MockConfig(db=":memory:", variants=frozenset({"no-such-variant"}))


def test_implied_variants_are_switched_on():
    for name, variant in VARIANTS.items():
        assert set(variant.implies) <= expand({name})
        assert MockConfig(db=":memory:", variants=frozenset({name})).variants == expand({name})


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_suite_passes_the_variant(name, tmp_path, record_property):
    variant = VARIANTS[name]
    # a variant of the token endpoint needs a registered SMART client (the run then uses it)
    smart = any(catalogue()[r].profile == "smart-backend" for r in variant.touches)
    jwks_clients, env = smart_client(tmp_path / "smart") if smart else ({}, {})
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients=jwks_clients, variants=frozenset({name}))
    selection = [arg for rid in variant.touches for arg in ("--requirement", rid)]
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "11", "--examples", "3", "--no-shrink",
                        *selection, target=base_url, token=None if smart else TOKEN,
                        env=smart_env(env, base_url) if smart else None)
    verdicts = run.verdicts()
    broken = {rid: v for rid, v in verdicts.items() if v in ("fail", "error")}
    wrong_warnings = {rid for rid, v in verdicts.items() if v == "warn"} - set(variant.warns)
    record_property("variant_matrix", (name, "passed" if not broken and run.exit_code == 0 else "FAILED"))
    assert run.exit_code == 0, f"variant {name} ({variant.description}): exit {run.exit_code}\n{run.output[-3000:]}"
    assert not broken, f"variant {name} ({variant.description}) judged a departure: {broken}\n{run.output[-3000:]}"
    assert not wrong_warnings, f"variant {name}: unexpected warnings {sorted(wrong_warnings)}\n{run.output[-2000:]}"
    counts = {k: sum(p.get(k, 0) for p in run.summary["profiles"].values()) for k in ("passed", "warnings")}
    assert counts["passed"] + counts["warnings"] > 0, f"variant {name}: nothing was tested\n{run.output[-2000:]}"
    outcomes: dict[str, set[str]] = {}
    for c in run.summary["checks"]:
        outcomes.setdefault(c["id"].split("[")[0], set()).add(c["outcome"])
    not_run = {cid: sorted(outcomes.get(cid, {"not selected"})) for cid in variant.runs
               if not outcomes.get(cid) or not outcomes[cid] <= {"passed", "warning"}}
    assert not not_run, f"variant {name}: checks that must run did not: {not_run}\n{run.output[-2000:]}"
    assert run.summary["cleanup"]["left_behind"] == [], f"variant {name}: clean-up left resources behind"
    if name == "rate-limited":        # the 429s happened, were waited out, and cost no verdict
        assert run.summary["politeness"]["answered_429"] > 0, run.summary["politeness"]


@pytest.mark.slow
def test_canvas_is_not_auto_selected_on_a_generic_fhir_server(tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS, variants=frozenset({"generic-fhir"}))
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--examples", "2", "--requirement", "CANVAS-GROUP-CREATE",
                        "--requirement", "FHIR-CREATE-201", target=base_url)
    verdicts = {r["id"]: r for r in run.summary["requirements"]}
    assert run.exit_code == 0, run.output[-3000:]
    assert verdicts["CANVAS-GROUP-CREATE"]["verdict"] == "skip"
    assert "profile 'canvas' is not declared" in verdicts["CANVAS-GROUP-CREATE"]["reason"]
    assert verdicts["FHIR-CREATE-201"]["verdict"] == "pass"          # fhir-core runs on any FHIR server
    assert "canvas" not in run.summary["active_profiles"] and "fhir-core" in run.summary["active_profiles"]
    # told explicitly, the suite runs canvas anyway
    with run_in_thread(config) as base_url:
        told = run_suite(tmp_path / "told", "--seed", "3", "--examples", "2", "--requirement", "CANVAS-GROUP-CREATE",
                         "--profile", "canvas", target=base_url)
    assert told.verdicts()["CANVAS-GROUP-CREATE"] == "pass", told.output[-3000:]


@pytest.mark.slow
def test_a_404_post_kickoff_blocks_its_check_instead_of_polling_none(tmp_path):
    """The cascade the IG's optional POST used to cause: no poll of [base]/None, no STATUS failure."""
    config = MockConfig(db=":memory:", tokens=TOKENS, variants=frozenset({"export-no-post-kickoff"}))
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--examples", "1", "--requirement",
                        "BULK-EXPORT-KICKOFF-POST", "--requirement", "BULK-EXPORT-STATUS", target=base_url)
    assert run.exit_code == 0, run.output[-3000:]
    checks = {c["id"]: c for c in run.summary["checks"]}
    assert checks["export-kickoff-post"]["outcome"] == "skipped", checks["export-kickoff-post"]
    assert run.verdicts()["BULK-EXPORT-STATUS"] == "pass"
    assert "/None" not in (run.report_dir / "report.html").read_text()
    # the group exported is said, in the summary and on the console
    assert "created by this run" in run.summary["export_group"] and "exported: Group/" in run.output


def test_every_variant_changes_the_mock_somewhere():
    from pathlib import Path

    import mock_server

    sources = "".join(p.read_text() for p in Path(mock_server.__file__).parent.rglob("*.py"))
    unused = [name for name in VARIANTS if f'varies("{name}")' not in sources]
    assert unused == [], f"variants no code path takes: {unused}"


@pytest.mark.slow
def test_smart_backend_is_skipped_with_the_reason_on_an_open_server(tmp_path):
    """SMART credentials given, but the server publishes no SMART discovery: skipped, not failed."""
    jwks_clients, env = smart_client(tmp_path / "smart")
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients=jwks_clients, variants=frozenset({"open-server"}))
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--requirement", "SMART-DISCOVERY",
                        "--requirement", "SMART-SCOPE-ENFORCED", "--requirement", "FHIR-CREATE-201",
                        target=base_url, token=None, env=smart_env(env, base_url))
    verdicts = {r["id"]: r for r in run.summary["requirements"]}
    assert run.exit_code == 0, run.output[-3000:]
    for rid in ("SMART-DISCOVERY", "SMART-SCOPE-ENFORCED"):
        assert verdicts[rid]["verdict"] == "skip", verdicts[rid]
        assert "publishes neither .well-known/smart-configuration" in verdicts[rid]["reason"], verdicts[rid]
    assert verdicts["FHIR-CREATE-201"]["verdict"] == "pass"


@pytest.mark.slow
def test_missing_practitioners_are_created_and_deleted(tmp_path):
    """Variant no-practitioners-with-create: the Practitioner-needing checks run (not skip) on Practitioners
    the suite creates, and clean-up deletes every one of them (the target declares delete)."""
    import httpx


    config = MockConfig(db=":memory:", tokens=TOKENS, variants=frozenset({"no-practitioners-with-create"}))
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--examples", "2", "--check", "task-search-owner-status",
                        target=base_url)
        left = httpx.get(f"{base_url}/Practitioner", params={"_count": 100},
                         headers={"Authorization": f"Bearer {TOKEN}"}).json()
    checks = {c["id"]: c for c in run.summary["checks"]}
    assert run.exit_code == 0, run.output[-3000:]
    assert checks["task-search-owner-status"]["outcome"] == "passed", checks["task-search-owner-status"]
    assert left["total"] == 0, f"Practitioners left behind: {[e['resource']['id'] for e in left.get('entry', [])]}"
    assert not run.summary["cleanup_problems"], run.summary["cleanup_problems"]


@pytest.mark.slow
def test_undeclared_patient_export_is_tried_when_the_profile_is_forced(tmp_path):
    """Variant patient-export-undeclared: with --profile bulk-cohort the cohort checks read the population
    through the undeclared Patient/$export, and the summary reports it as undeclared."""
    config = MockConfig(db=":memory:", tokens=TOKENS, variants=frozenset({"patient-export-undeclared"}))
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--examples", "1", "--check", "cohort-create-async",
                        "--profile", "bulk-cohort", "--profile", "bulk-export", target=base_url)
    checks = {c["id"]: c for c in run.summary["checks"]}
    assert run.exit_code == 0, run.output[-3000:]
    assert checks["cohort-create-async"]["outcome"] == "passed", checks
    assert "operation '$export' on Patient" in run.summary["missing_declarations"]
