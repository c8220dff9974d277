"""The pytest plugin: options, fixtures, and the hooks that turn test outcomes into
conformance verdicts. Thin on purpose: the settings come from options.py, every
verdict from results.py, the files from reporting/; this module only translates
pytest's items and reports into their plain values.

It stays inert in any pytest session that collects no conformance check, so
installing the kit does not change other projects' test runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import reproduce, results, smart
from .capabilities import Need
from .http import FhirClient
from .options import Settings, SettingsError, add_pytest_options, from_pytest, load
from .reporting import console, html, junit, summary as summary_files
from .results import CheckRecord, CheckResult, Finished
from .rules.catalogue import catalogue
from .session import ConformanceRun
from .target import Ledger, Supplier, TargetData

RUN_KEY = pytest.StashKey[ConformanceRun]()
RESULT_KEY = pytest.StashKey[CheckResult]()
RECORD_KEY = pytest.StashKey[CheckRecord]()
TRACEBACK_KEPT = 4_000

class InjectedSettings:
    """Registered by ``fhir-conformance run`` so secrets never travel on argv."""

    def __init__(self, settings: Settings, seed: int | None):
        self.settings, self.seed = settings, seed
        self.exit_code: int | None = None      # the run's, set when the session finishes (results.py decides it)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser.getgroup("fhir-conformance", "FHIR conformance suite"))


def pytest_configure(config: pytest.Config) -> None:
    for line in ("conformance(id, requirements): a conformance check and the requirements it verifies",
                 "verifies(*ids): requirements verified by one parametrized case",
                 "needs(resource, interaction, search_param, operation): what the target must declare",
                 "profile(name): the profile a check belongs to",
                 "run_last: a check that judges what the whole run met (runs after the others)"):
        config.addinivalue_line("markers", line)


def _settings_from(config: pytest.Config) -> tuple[Settings, int | None]:
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, InjectedSettings):
            return plugin.settings, plugin.seed
    cli = from_pytest(config.getoption)
    try:
        settings = load(cli, os.environ)
        if settings.baseline:
            results.load_summary(settings.baseline)
    except (SettingsError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from None
    seed = config.getoption("hypothesis_seed", None)
    return settings, int(seed) if seed is not None else settings.seed


def is_check(item: pytest.Item) -> bool:
    return item.get_closest_marker("conformance") is not None


def item_requirements(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for mark in item.iter_markers("conformance"):
        ids += mark.kwargs.get("requirements", ())
    for mark in item.iter_markers("verifies"):
        ids += mark.args
    return tuple(dict.fromkeys(ids))


def item_check_id(item: pytest.Item) -> str:
    base = item.get_closest_marker("conformance").kwargs["id"]
    callspec = getattr(item, "callspec", None)
    return f"{base}[{callspec.id}]" if callspec is not None else base


def item_base_check_id(item: pytest.Item) -> str:
    return item.get_closest_marker("conformance").kwargs["id"]


def item_strength(item: pytest.Item) -> str:
    """The strongest strength among the check's requirements (SHALL > SHOULD > MAY)."""
    strengths = {catalogue()[r].strength for r in item_requirements(item)}
    return next((s for s in ("SHALL", "SHOULD", "MAY") if s in strengths), "")


def selects(wanted: set[str], item: pytest.Item) -> bool:
    """``--check ID`` matches the stable id, with or without its parameters."""
    return item_check_id(item) in wanted or item_base_check_id(item) in wanted


def item_profile(item: pytest.Item) -> str:
    mark = item.get_closest_marker("profile")
    if mark:
        return mark.args[0]
    reqs = item_requirements(item)
    return catalogue()[reqs[0]].profile if reqs else "fhir-core"


def ensure_run(config: pytest.Config) -> ConformanceRun:
    """Create the run once; load the Hypothesis profile before any check module is imported."""
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        settings, seed = _settings_from(config)
        run = ConformanceRun(settings, seed)
        xml = getattr(config.option, "xmlpath", None)
        run.html_path = Path(settings.report_dir) / "report.html"
        run.junit_path = Path(xml) if xml else None
        config.stash[RUN_KEY] = run
        _load_hypothesis_profile(settings)
    return run


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    checks = [i for i in items if is_check(i)]
    if not checks:
        return
    items.sort(key=lambda i: i.get_closest_marker("run_last") is not None)   # stable: the rest keep their order
    for item in checks:               # -k matches stable check ids too (collection filters -k after this hook)
        item.extra_keyword_matches.update({item_check_id(item), item_base_check_id(item)})
    settings = ensure_run(config).settings
    if settings.requirements:
        unknown = [r for r in settings.requirements if r not in catalogue()]
        if unknown:
            raise pytest.UsageError(f"unknown requirement id(s): {', '.join(unknown)}")
        wanted = set(settings.requirements)
        keep = [i for i in items if not is_check(i) or wanted & set(item_requirements(i))]
        _deselect(config, items, keep)
    if settings.checks:
        known = {item_check_id(i) for i in checks} | {item_base_check_id(i) for i in checks}
        unknown = [c for c in settings.checks if c not in known]
        if unknown:
            raise pytest.UsageError(f"unknown check id(s): {', '.join(unknown)} (see `fhir-conformance list`)")
        wanted = set(settings.checks)
        _deselect(config, items, [i for i in items if not is_check(i) or selects(wanted, i)])


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Any deselection (-k, --check, --requirement) makes the run partial: unselected is not untested."""
    for item in items:
        run = item.config.stash.get(RUN_KEY, None)
        if run is not None:
            run.partial = True
            return


def _deselect(config: pytest.Config, items: list[pytest.Item], keep: list[pytest.Item]) -> None:
    deselected = [i for i in items if i not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def _load_hypothesis_profile(settings: Settings) -> None:
    from hypothesis import HealthCheck, Phase
    from hypothesis import settings as hsettings
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + ([Phase.shrink] if settings.shrink else [])
    hsettings.register_profile(
        "fhir-conformance", max_examples=settings.examples, deadline=None, database=None, phases=phases,
        report_multiple_bugs=False, print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.filter_too_much, HealthCheck.data_too_large])
    hsettings.load_profile("fhir-conformance")


def _skip_reason(run: ConformanceRun, item: pytest.Item) -> str | None:
    active, _ = run.active_profiles()
    profile = item_profile(item)
    if profile == smart.PROFILE and (not run.settings.profiles or profile in run.settings.profiles):
        reason = smart.skip_reason(run, explicit=profile in run.settings.profiles)
        if reason:      # detected by probing discovery and by the credentials given, not by metadata alone
            return reason
        active = active | {profile}
    if profile not in active:
        if run.settings.profiles:
            return f"profile '{profile}' not selected (selected: {', '.join(sorted(active))})"
        return (f"profile '{profile}' is not declared in the target's CapabilityStatement "
                f"(use --profile {profile} to run it anyway)")
    explicit = profile in run.settings.profiles
    for mark in item.iter_markers("needs"):
        need = Need(**mark.kwargs)
        if not run.capabilities.satisfies(need):
            if explicit:     # --profile: run what can run at all, and say what was not declared
                run.missing_declarations.add(need.describe())
                continue
            return f"the target's CapabilityStatement does not declare {need.describe()}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    run = item.config.stash.get(RUN_KEY, None)
    if run is None or not is_check(item):
        return
    record = CheckRecord(item.nodeid, item_check_id(item), item_requirements(item))
    item.stash[RECORD_KEY] = record
    # JUnit reads the properties of the item (the teardown report copies them), not of the call report
    item.user_properties += [("check_id", record.check_id), ("requirements", " ".join(record.requirements)),
                             ("strength", item_strength(item)), ("profile", item_profile(item))]
    run.recorder.clear()
    run.polite.current_check = record.check_id      # a target that dies is named with the check that saw it
    _mark_examples(item, run)
    results.begin(record, run.settings.strict)
    reason = _skip_reason(run, item)
    if reason:
        pytest.skip(reason)


def _mark_examples(item: pytest.Item, run: ConformanceRun) -> None:
    """Tell the recorder where each Hypothesis example starts (the failing one is replayed last)."""
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    inner = getattr(handle, "inner_test", None)
    if inner is None or getattr(inner, "_marks_examples", False):
        return
    recorder = run.recorder

    def marked(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        recorder.new_example()
        return inner(*args, **kwargs)

    marked._marks_examples = True  # type: ignore[attr-defined]
    handle.inner_test = marked


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep what a shared (module/session) fixture sends: a failure's reproduction replays its writes."""
    run = request.config.stash.get(RUN_KEY, None)
    if run is None or fixturedef.scope == "function":
        yield
        return
    captured = run.recorder.capture()
    try:
        yield
    finally:
        run.recorder.release(captured)
        run.fixture_exchanges[fixturedef.argname] = [e for e in captured if e.method != "GET"]


def pytest_runtest_teardown(item: pytest.Item) -> None:
    results.end()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    run = item.config.stash.get(RUN_KEY, None)
    if run is None or not is_check(item):
        return
    record = item.stash.get(RECORD_KEY, None) or CheckRecord(item.nodeid, item_check_id(item),
                                                              item_requirements(item))
    result = item.stash.get(RESULT_KEY, None)
    if result is None and (rep.when == "call" or rep.skipped or rep.failed):
        result = results.classify(_finished(rep, call), record.check_id, item.nodeid, item_profile(item), record,
                                  run.settings.strict, run.root_causes)
        item.stash[RESULT_KEY] = result
        run.results.append(result)
        if result.outcome in ("failed", "warning", "error"):
            prelude = sorted((e for name in getattr(item, "fixturenames", ())
                              for e in run.fixture_exchanges.get(name, ())), key=lambda e: e.seq)
            failing = result.exchange or run.recorder.last
            result.sequence = reproduce.sequence(prelude, run.recorder.own, failing)
            result.traceback = run.redact(tail(rep.longreprtext)) if rep.failed else ""
        attach(rep, result, run)
        _once_per_requirement(rep, result, run)
        _note_problems(item, run, rep, result)
        if result.outcome == "warning":
            item.user_properties.append(("warnings", result.message))
    elif result is not None and rep.when == "teardown" and rep.failed and result.outcome == "passed":
        result.outcome, result.message = "error", results.one_line(call.excinfo)
    if rep.location:                  # failure headers in the terminal name the stable check id
        rep.location = (rep.location[0], rep.location[1], item_check_id(item))
    _shorten(rep, call)


def _finished(rep: pytest.TestReport, call: pytest.CallInfo) -> Finished:
    """pytest's report of one phase, as the plain values results.classify judges."""
    skip = ""
    if rep.skipped:
        longrepr = rep.longrepr
        skip = (str(longrepr[2]).removeprefix("Skipped: ") if isinstance(longrepr, tuple) and len(longrepr) == 3
                else str(longrepr or ""))
    return Finished(rep.when, rep.outcome, skip, call.excinfo.value if call.excinfo else None,
                    results.one_line(call.excinfo), rep.duration)


def tail(text: str, limit: int = TRACEBACK_KEPT) -> str:
    """The end of a long traceback (where the cause is), saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"… ({len(text) - limit} earlier characters left out)\n" + text[-limit:]


def attach(rep: pytest.TestReport, result: CheckResult, run: ConformanceRun) -> None:
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


def _note_problems(item: pytest.Item, run: ConformanceRun, rep: pytest.TestReport, result: CheckResult) -> None:
    """Problems that make the rest of the run doubtful, announced the moment they are known."""
    if run.polite.gone:
        run.problem(f"{run.polite.gone} ({run.polite.failures} requests in a row failed, last: "
                    f"{run.polite.last_failure}); the remaining checks report errors", first=True)
    if result.outcome == "error" and rep.when == "setup":
        run.problem(f"set-up failed for {result.check_id} (and checks sharing its set-up): {result.message}")
    from .progress import Progress

    for plugin in item.config.pluginmanager.get_plugins():
        if isinstance(plugin, Progress):
            plugin.announce(run.problems)


def _once_per_requirement(rep: pytest.TestReport, result: CheckResult, run: ConformanceRun) -> None:
    """The first failing check of a requirement is shown in full; the next ones in one line each, so
    that a target failing everything keeps the console and junit.xml readable (report.html has all)."""
    breached = (*result.failed_requirements, *result.warned_requirements)
    if result.outcome not in ("failed", "warning") or not breached or not rep.failed:
        return
    shown = run.shown_in_full
    if all(rid in shown for rid in breached):
        first = shown[breached[0]]
        rep.longrepr = (f"{result.message.splitlines()[0][:300] if result.message else breached[0]} "
                        f"(like {first}, shown in full above; every exchange in report.html)")
        rep.sections = [(name, text) for name, text in rep.sections if name != "conformance"]
        return
    for rid in breached:
        shown.setdefault(rid, result.check_id)


def _shorten(rep: pytest.TestReport, call: pytest.CallInfo) -> None:
    """A misbehaving target is one line in the terminal and JUnit, not a traceback."""
    if not rep.failed or call.excinfo is None:
        return
    exc = call.excinfo.value
    problem = results.target_problem(exc)
    if problem is not None and not results.requirement_failures(exc):
        rep.longrepr = results.one_line(problem)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None or session.config.option.collectonly:   # listing checks writes no report
        return
    run.cleanup()
    summary = summary_files.write_summary(run)
    html.write(run, summary, run.html_path)
    target = summary["target"] or ""
    reproduce.save(Path(run.settings.report_dir) / reproduce.REPRODUCTION_FILE,
                   filter(None, (html.reproduction_of(r, target) for r in run.results
                                 if r.outcome in ("failed", "warning", "error"))), run.redact)
    for plugin in session.config.pluginmanager.get_plugins():
        if isinstance(plugin, InjectedSettings):
            plugin.exit_code = summary["exit_code"]
    if exitstatus in (0, 1):
        session.exitstatus = summary["exit_code"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """junit.xml is written by now: name its test cases by stable check id."""
    run = config.stash.get(RUN_KEY, None)
    xmlpath = getattr(config.option, "xmlpath", None)
    if run is not None and xmlpath:
        junit.rename_junit_cases(Path(xmlpath), run.results)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None and not config.option.collectonly:
        console.print_summary(run, terminalreporter.write_line)


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session")
def conformance_run(request: pytest.FixtureRequest) -> ConformanceRun:
    run = request.config.stash.get(RUN_KEY, None)
    if run is None:
        raise pytest.UsageError("conformance fixtures are only available to conformance checks")
    return run


@pytest.fixture(scope="session")
def fhir(conformance_run: ConformanceRun) -> FhirClient:
    """The client with the configured identity; every exchange is recorded."""
    return conformance_run.client


@pytest.fixture(scope="session")
def anonymous_fhir(fhir: FhirClient) -> FhirClient:
    """The same target, no Authorization header."""
    return fhir.with_token(None)


@pytest.fixture(scope="session")
def limited_fhir(fhir: FhirClient, conformance_run: ConformanceRun) -> FhirClient:
    """A client with a valid token lacking write scopes (skips when none is configured)."""
    token = conformance_run.settings.limited_token
    if not token:
        pytest.skip("no limited token configured (--limited-token / FHIR_CONFORMANCE_LIMITED_TOKEN)")
    fhir.redact.add(token)
    return fhir.with_token(token)


@pytest.fixture(scope="session")
def ledger(conformance_run: ConformanceRun) -> Ledger:
    return conformance_run.ledger


@pytest.fixture(scope="session")
def target_data(conformance_run: ConformanceRun) -> TargetData:
    """Ids and free responsibilities found on the target, and the run prefix; missing Practitioners and
    Patients are created on demand (``_support.require``) where the target declares create."""
    data = conformance_run.target_data
    if data.supplier is None:
        data.supplier = Supplier(conformance_run.client, conformance_run.ledger,
                                 conformance_run.capabilities.interactions, data)
    return data


@pytest.fixture(scope="session")
def settings(conformance_run: ConformanceRun) -> Settings:
    return conformance_run.settings
