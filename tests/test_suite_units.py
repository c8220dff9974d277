"""Unit tests of the suite's own machinery: settings, redaction, verdicts, capabilities,
strategies and the CLI's exit codes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.group import Group
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from conformance import options as cfg
from conformance.capabilities import BULK_COHORT_PROFILE, Capabilities, Need
from conformance.client import Exchange, Redactor
from conformance.results import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, CheckResult, exit_code, requirement_verdicts
from conformance.strategies.common import locate
from conformance.strategies.group import PATIENT_GROUP, TEAM, invalid_group, valid_group, violations
from conformance.target import TargetData

# -- settings --------------------------------------------------------------------


def test_command_line_beats_environment_beats_file(tmp_path: Path):
    conf = tmp_path / "conformance.toml"
    conf.write_text('[conformance]\ntarget = "http://file"\nexamples = 3\ntimeout = 9\nprofiles = ["canvas"]\n')
    env = {"FHIR_CONFORMANCE_TARGET": "http://env", "FHIR_CONFORMANCE_EXAMPLES": "4"}
    s = cfg.load({"target": "http://cli"}, env, conf)
    assert (s.target, s.examples, s.timeout, s.profiles) == ("http://cli", 4, 9.0, ("canvas",))
    assert cfg.load({}, env, conf).target == "http://env"
    assert cfg.load({}, {}, conf).target == "http://file"


@pytest.mark.parametrize("cli, env, message", [
    ({"target": "ftp://x"}, {}, r"http\(s\) URL"),
    ({"profiles": ["nope"]}, {}, "unknown profile"),
    ({}, {"FHIR_CONFORMANCE_EXAMPLES": "many"}, "invalid value"),
    ({"client_id": "a"}, {}, "together"),
    ({}, {"FHIR_CONFORMANCE_COLOUR": "blue"}, "unknown setting"),
])
def test_bad_settings_are_reported_readably(tmp_path, cli, env, message):
    with pytest.raises(cfg.SettingsError, match=message):
        cfg.load(cli, env, tmp_path / "absent.toml")


def test_secrets_are_not_in_the_settings_repr():
    s = cfg.Settings(target="http://x", token="tok-123", client_secret="sec-456")
    assert "tok-123" not in repr(s) and "sec-456" not in repr(s)
    assert set(s.secrets()) == {"tok-123", "sec-456"}


# -- recording and redaction -------------------------------------------------------


def test_curl_uses_an_environment_reference_instead_of_the_token():
    ex = Exchange("POST", "http://t/Group", {"Authorization": "Bearer [REDACTED]", "Content-Type": "application/json"},
                  '{"a": "it\'s"}', 400, {}, "", 1.0)
    curl = ex.curl()
    assert "${FHIR_CONFORMANCE_TOKEN}" in curl and "[REDACTED]" not in curl
    assert "--data-raw" in curl and "-X POST" in curl


def test_redactor_replaces_every_distinctive_secret_wherever_it_appears():
    redact = Redactor(["abc-1234", "abc-1234-5678"])
    redact.add("zzzzzzzzzzzzzzzzzz")
    assert (redact("x abc-1234-5678 y abc-1234 zzzzzzzzzzzzzzzzzz") == "x [REDACTED] y [REDACTED] [REDACTED]")


@pytest.mark.parametrize("token", ["x", "e", "test", "token", "pass", "Bearer", "password"])
def test_short_and_word_like_tokens_leave_text_and_json_intact(token):
    redact = Redactor([token])
    summary = {"exit_code": 0, "verdict": "pass", "reason": "a test of the token exchange: Bearer password"}
    assert redact.tree(summary) == summary
    assert redact("exit_code test token") == "exit_code test token"


def test_structural_redaction_removes_credentials_whatever_their_value():
    from conformance.redaction import redact_body, redact_header, redact_url

    assert redact_header("Authorization", "Bearer x") == "Bearer [REDACTED]"
    assert redact_header("Cookie", "s=x") == "[REDACTED]"
    form = redact_body("grant_type=client_credentials&client_id=app&client_secret=x",
                       "application/x-www-form-urlencoded")
    assert "client_secret=%5BREDACTED%5D" in form.replace("[", "%5B").replace("]", "%5D") and "client_id=app" in form
    assert "x" not in redact_url("https://t/files/1?access_token=x&n=1").split("?", 1)[1].replace("n=1", "")
    assert redact_url("https://u:pw@t/a") == "https://u:[REDACTED]@t/a"
    jwk = json.loads(redact_body('{"keys": [{"kty": "RSA", "n": "AQAB", "d": "s3cr3t"}], "access_token": "t"}'))
    assert jwk["keys"][0]["d"] == "[REDACTED]" and jwk["keys"][0]["n"] == "AQAB"
    assert jwk["access_token"] == "[REDACTED]"
    outcome = '{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}'
    assert redact_body(outcome) == outcome


# -- verdicts and exit codes -----------------------------------------------------------


def result(outcome: str, reqs: tuple[str, ...], **kw) -> CheckResult:
    return CheckResult("n", "c", "canvas", reqs, outcome, **kw)


def verdict_of(rid: str, results: list[CheckResult], strict: bool = False) -> str:
    return {v["id"]: v["verdict"] for v in requirement_verdicts(results, strict)}[rid]


def test_requirement_verdicts():
    assert verdict_of("CANVAS-GROUP-TYPE", [result("passed", ("CANVAS-GROUP-TYPE",), verified=("CANVAS-GROUP-TYPE",))]) == "pass"
    assert verdict_of("CANVAS-GROUP-TYPE", [result("failed", ("CANVAS-GROUP-TYPE",),
                                                   failed_requirements=("CANVAS-GROUP-TYPE",))]) == "fail"
    assert verdict_of("CANVAS-GROUP-TYPE", [result("skipped", ("CANVAS-GROUP-TYPE",), message="why")]) == "skip"
    assert verdict_of("CANVAS-GROUP-TYPE", [result("error", ("CANVAS-GROUP-TYPE",))]) == "error"
    assert verdict_of("CANVAS-GROUP-TYPE", []) == "untested"
    warned = [result("warning", ("FHIR-REJECT-STATUS",), warned_requirements={"FHIR-REJECT-STATUS": "400 not 422"})]
    assert verdict_of("FHIR-REJECT-STATUS", warned) == "warn"
    assert verdict_of("FHIR-REJECT-STATUS", warned, strict=True) == "fail"


def test_exit_code_is_one_only_for_shall_failures():
    failing = [result("failed", ("CANVAS-GROUP-TYPE",), failed_requirements=("CANVAS-GROUP-TYPE",))]
    warning = [result("warning", ("FHIR-REJECT-STATUS",), warned_requirements={"FHIR-REJECT-STATUS": "x"})]
    broken = [result("error", ("CANVAS-GROUP-TYPE",))]
    assert exit_code(requirement_verdicts(failing, False), failing) == EXIT_FAILED
    assert exit_code(requirement_verdicts(warning, False), warning) == EXIT_OK
    assert exit_code(requirement_verdicts(warning, True), warning) == EXIT_FAILED
    assert exit_code(requirement_verdicts(broken, False), broken) == EXIT_BROKEN


# -- capabilities ------------------------------------------------------------------------


def test_capabilities_decide_profiles_and_needs():
    statement = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": [
        {"type": "Group", "interaction": [{"code": "read"}, {"code": "create"}],
         "searchParam": [{"name": "type"}], "operation": [{"name": "export"}],
         "supportedProfile": [BULK_COHORT_PROFILE + "|3.0.0"]}]}]}
    caps = Capabilities.from_statement(statement)
    # Group create + read is what every FHIR server with Groups declares: not a Canvas marker
    assert caps.declared_profiles() == {"fhir-core", "bulk-export", "bulk-cohort"}
    assert caps.satisfies(Need("Group", search_param="type"))
    assert not caps.satisfies(Need("Group", search_param="member"))
    assert "search parameter 'member'" in Need("Group", search_param="member").describe()
    assert Capabilities.from_statement(None).declared_profiles() == {"fhir-core"}


@pytest.mark.parametrize("marker", [
    {"software": {"name": "Canvas Medical FHIR"}}, {"publisher": "Canvas Medical"},
    {"rest": [{"mode": "server", "resource": [{"type": "Task", "extension": [
        {"url": "http://schemas.canvasmedical.com/fhir/extensions/task-group"}]}]}]}])
def test_canvas_is_detected_only_by_its_markers(marker):
    statement = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": [
        {"type": "Group", "interaction": [{"code": "read"}, {"code": "create"}]}]}]}
    assert "canvas" not in Capabilities.from_statement(statement).declared_profiles()
    assert "canvas" in Capabilities.from_statement({**statement, **marker}).declared_profiles()


def test_export_and_cohort_detection_follow_spec_0():
    by_definition = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": [
        {"type": "Group", "operation": [{"name": "group-level-export",
                                         "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}],
         "supportedProfile": BULK_COHORT_PROFILE}]}]}
    caps = Capabilities.from_statement(by_definition)
    assert {"bulk-export", "bulk-cohort"} <= caps.declared_profiles()   # a lone string still detected
    assert caps.profile_as_string("Group")


# -- strategies -----------------------------------------------------------------------------

DATA = TargetData("fhirck-test", practitioner_ids=["p1", "p2", "p3"], patient_ids=["q1", "q2"],
                  free_responsibilities=["PROCESS_REFILL_REQUESTS", "REVIEW_COVERAGES"])


@hsettings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from([TEAM, PATIENT_GROUP]), data=st.data())
def test_valid_payloads_are_valid_r4_groups_of_the_right_kind(variant, data):
    payload = data.draw(valid_group(DATA, variant))
    Group.model_validate(payload)        # structure, per fhir.resources (lax, so not the only judge)
    assert payload["name"].startswith("fhirck-test ")
    kind = "Practitioner" if variant == TEAM else "Patient"
    assert all(m["entity"]["reference"].startswith(kind + "/") for m in payload.get("member", []))
    if variant == PATIENT_GROUP:
        assert "characteristic" not in payload


@pytest.mark.parametrize("violation", violations(update=True), ids=lambda v: f"{v.variant}-{v.name}-{v.path}")
@hsettings(max_examples=10, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_each_invalid_payload_breaks_its_labelled_element(violation, data):
    base = {**data.draw(valid_group(DATA, violation.variant, min_members=1, min_responsibilities=1)), "id": "g1"}
    invalid = data.draw(invalid_group(DATA, violation, base=base))
    as_json = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731 - 1 == True in Python, not in JSON
    assert invalid.violation is violation and as_json(invalid.payload) != as_json(base)
    if violation.name == "missing":
        parent, key = locate(invalid.payload, violation.path)
        assert key not in parent
    elif violation.name == "empty-string":
        parent, key = locate(invalid.payload, violation.path)
        assert parent[key] == ""
    elif violation.name == "wrong-resource-type":
        assert invalid.payload["resourceType"] != "Group"


# -- the CLI -------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_configuration_error_exits_2(tmp_path):
    proc = cli("run", "--target", "not-a-url", cwd=tmp_path)
    assert proc.returncode == 2 and "configuration error" in proc.stderr


def test_cli_unreachable_target_exits_3_and_says_so(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # bound, never listening: connections are refused
        proc = cli("run", "--target", f"http://127.0.0.1:{port}", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 3 and "unreachable" in proc.stderr


def test_cli_lists_the_catalogue(tmp_path):
    proc = cli("list", "--format", "json", cwd=tmp_path)
    ids = {r["id"] for r in json.loads(proc.stdout)}
    assert proc.returncode == 0 and {"CANVAS-GROUP-RESP-UNIQUE", "FHIR-AUTH-401"} <= ids


def test_expected_statuses_are_said_as_a_person_would():
    from conformance.expectations import describe_statuses

    assert describe_statuses(range(400, 500)) == "a 4xx"
    assert describe_statuses(range(400, 600)) == "a 4xx or 5xx"
    assert describe_statuses((400, 422)) == "400 or 422"
    assert describe_statuses((404,)) == "HTTP 404"
    assert describe_statuses((400, 401, 403)) == "400, 401 or 403"


# -- valid payloads are valid FHIR (R4 invariants) -------------------------------------------


def _grp_1(group: dict) -> bool:
    """Group grp-1: member.empty() or (actual = true)."""
    return not group.get("member") or group.get("actual") is True


def _inv_1(task: dict) -> bool:
    """Task inv-1: lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn."""
    from conformance.checks.support.tasks import instant

    if "lastModified" not in task or "authoredOn" not in task:
        return True
    return instant(task["lastModified"]) >= instant(task["authoredOn"])


@hsettings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_valid_payloads_satisfy_the_fhir_r4_invariants(data):
    from conformance.strategies.task import valid_task

    for variant in (TEAM, PATIENT_GROUP):
        group = data.draw(valid_group(DATA, variant))
        assert _grp_1(group), group
        base = data.draw(st.sampled_from(violations()))
        if base.variant == variant:
            from conformance.strategies.group import violation_base
            assert _grp_1(data.draw(violation_base(DATA, base)))
    task = data.draw(valid_task(DATA, ["t1"], full=data.draw(st.booleans())))
    assert _inv_1(task), task
    assert _grp_1({"member": [1], "actual": False}) is False        # the oracle itself can fail
    assert _inv_1({"authoredOn": "2024-01-02T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"}) is False


def test_a_blocked_check_is_reported_as_blocked_not_as_a_second_failure():
    from conformance.results import Blocked, CheckRecord, Finding, Finished, classify

    record = CheckRecord("n", "export-kickoff-post", ("BULK-EXPORT-KICKOFF-POST",))
    record.warnings["BULK-EXPORT-KICKOFF-POST"] = Finding("BULK-EXPORT-KICKOFF-POST", "expected 202 Accepted, got 404")
    blocked = Blocked("blocked by BULK-EXPORT-KICKOFF-POST: POST kick-off was not accepted (HTTP 404)")
    result = classify(Finished("call", "failed", error=blocked, error_line=f"Blocked: {blocked}"),
                      "export-kickoff-post", "n", "bulk-export", record, strict=False)
    assert result.outcome == "warning" and not result.failed_requirements
    assert "blocked by BULK-EXPORT-KICKOFF-POST" in result.message

    # a failed shared prerequisite is counted once: later checks meeting it are blocked by the first
    roots: dict = {}
    shared = Finished("setup", "failed", error=RuntimeError("prerequisite failed"),
                      error_line="RuntimeError: prerequisite failed")
    first = classify(shared, "a", "n", "bulk-export", CheckRecord("n", "a", ()), False, roots)
    second = classify(shared, "b", "n", "bulk-export", CheckRecord("n", "b", ()), False, roots)
    assert first.outcome == "error" and second.outcome == "skipped" and second.message.startswith("blocked by a")


def test_every_declared_constraint_has_a_breach_in_strategies():
    """rules/ declares each cross-field rule; strategies/ must know how to break every one of them."""
    from conformance.rules.cohort import RULES
    from conformance.rules.group import GROUP
    from conformance.rules.task import TASK
    from conformance.strategies import cohort, group, task

    for profile, module in ((GROUP, group), (TASK, task)):
        assert {c.name for c in profile.constraints} == set(module.BREACHES), profile.resource_type
    assert {r.name for r in RULES} == set(cohort.BREACHES)
