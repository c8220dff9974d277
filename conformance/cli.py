"""``fhir-conformance``: run the suite against a target (or the bundled mock).

    fhir-conformance run                      # starts the bundled mock, runs everything
    fhir-conformance run --target URL         # a server of yours (token from the environment)
    fhir-conformance list                     # every requirement and the checks tied to it
    fhir-conformance diff OLD NEW             # compare two summary.json files

Exit codes (SPEC §6): 0 no SHALL failure, 1 a SHALL failure (any with --strict),
2 usage or configuration error (including a token the target refuses), 3 target
unreachable, not a FHIR server, the run broke, or nothing was tested.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

from .reporting.console import render_comparison
from .results import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, EXIT_USAGE, compare, load_summary
from .preflight import check_target, write_stopped_summary
from .rules.catalogue import catalogue
from .options import Settings, SettingsError, add_arguments, from_arguments, load

MOCK_START_TIMEOUT = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-conformance", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the suite and write reports")
    add_arguments(run)          # every setting, from the option table
    run.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing check")
    run.add_argument("--config", type=Path, help="settings file (default ./conformance.toml)")
    run.add_argument("-k", dest="keyword", help="only checks matching this pytest -k expression "
                                                 "(check ids and function names)")
    run.add_argument("-v", "--verbose", action="store_true", help="one line per check")
    lst = sub.add_parser("list", help="print every requirement and the checks tied to it")
    lst.add_argument("--format", choices=("text", "json"), default="text")
    replay = sub.add_parser("replay", help="re-send the requests that led a check to fail; exit 1 if it still fails")
    replay.add_argument("report_dir", type=Path, help="the report directory of the run (holds reproduction.json)")
    replay.add_argument("--check", required=True, metavar="ID", help="the failing check's id, as the report shows it")
    replay.add_argument("--target", help="send to this base URL instead of the run's target")
    replay.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    replay.add_argument("--insecure", action="store_true", help="do not verify the target's TLS certificate")
    diff = sub.add_parser("diff", help="compare two summary.json files (exit 1 when NEW regressed)")
    diff.add_argument("old", type=Path, help="the earlier summary.json (the baseline)")
    diff.add_argument("new", type=Path, help="the later summary.json")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def hypothesis_home() -> None:
    """Hypothesis keeps caches in ``./.hypothesis`` by default: a vendor's working directory is not
    the place. The CLI keeps them in the user's cache directory (``HYPOTHESIS_STORAGE_DIRECTORY``,
    when set, wins); where that cannot be written, in a directory of its own that goes away."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    from hypothesis.configuration import set_hypothesis_home_dir

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fhir-conformance" / "hypothesis"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.mkdtemp(prefix="fhir-conformance-hypothesis-"))
    set_hypothesis_home_dir(cache)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.command == "list":
        return _list(args.format)
    if args.command == "diff":
        return _diff(args.old, args.new, args.format)
    if args.command == "replay":
        from .replay import replay_command

        return replay_command(args.report_dir, args.check, args.target, args.timeout, args.insecure)
    cli = from_arguments(args)
    named_config = args.config or os.environ.get("FHIR_CONFORMANCE_CONFIG")
    if named_config and not Path(named_config).is_file():
        print(f"fhir-conformance: configuration error: config file not found: {named_config}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load(cli, os.environ, args.config)
        if settings.baseline:
            load_summary(settings.baseline)
    except (SettingsError, ValueError) as exc:
        print(f"fhir-conformance: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    seed = settings.seed if settings.seed is not None else random.randrange(2**31)
    with contextlib.ExitStack() as stack:
        if settings.target is None:
            try:
                settings = stack.enter_context(bundled_mock(settings))
            except RuntimeError as exc:
                print(f"fhir-conformance: could not start the bundled mock: {exc}", file=sys.stderr)
                return EXIT_BROKEN
            print(f"fhir-conformance: started the bundled mock at {settings.target}")
        stopped = check_target(settings)
        if stopped is not None:     # said first: nothing else of the run would mean anything
            print(f"fhir-conformance: {stopped.reason}\nfhir-conformance: {stopped.line()}", file=sys.stderr)
            write_stopped_summary(settings, stopped)
            return stopped.exit_code
        return run_pytest(settings, seed, args.keyword, args.verbose, args.exitfirst)


def run_pytest(settings: Settings, seed: int, keyword: str | None, verbose: bool, exitfirst: bool = False) -> int:
    import pytest

    from .plugin import InjectedSettings

    report_dir = Path(settings.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    checks_dir = Path(__file__).parent / "checks"
    args = [str(checks_dir), "--rootdir", str(checks_dir), "-c", str(checks_dir / "pytest.ini"),
            "-p", "no:cacheprovider", f"--hypothesis-seed={seed}",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            "-p", "no:html",
            f"--junitxml={report_dir / 'junit.xml'}", "-o", "junit_suite_name=fhir-conformance",
            "-v" if verbose else "-q", "--tb=short", "-rN"]
    if keyword:
        args += ["-k", keyword]
    if exitfirst:
        args.append("-x")
    from .progress import Progress

    hypothesis_home()
    progress = Progress(tty=sys.stdout.isatty())
    injected = InjectedSettings(settings, seed)
    code = pytest.main(args, plugins=[injected, progress])
    if code in (pytest.ExitCode.USAGE_ERROR,):
        return EXIT_USAGE
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("fhir-conformance: no check selected", file=sys.stderr)
        return EXIT_USAGE
    if injected.exit_code is None or code in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.INTERRUPTED):
        return EXIT_BROKEN
    return injected.exit_code        # what results.py decided for this run


@contextlib.contextmanager
def bundled_mock(settings: Settings) -> Iterator[Settings]:
    """Start ``fhir-mock`` on a free loopback port with a throw-away database, a fresh SMART Backend
    Services client (a new key registered with the mock: the run gets its tokens the SMART way, and
    the smart-backend profile runs) and a fresh read-only token."""
    from .smart import new_client_key

    limited = secrets.token_urlsafe(16)
    client_id = f"fhirck-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="fhir-mock-") as tmp:
        private_key, jwks, kid = new_client_key(Path(tmp))
        cmd = [sys.executable, "-m", "mock_server", "--host", "127.0.0.1", "--port", "0",
               "--db", str(Path(tmp) / "mock.sqlite3"),
               # --token=VALUE: a token_urlsafe value may start with '-', which argparse takes for an option
               f"--jwks-client={client_id}:{jwks}", f"--token={limited}:system/*.read",
               # a development server on loopback: exports say "poll again now" instead of making every
               # export check sleep a second (the suite still checks that Retry-After is present and valid),
               # and stay in progress 50 ms, not 300 (the first poll, sent at once, still sees the 202)
               "--retry-after", "0", "--export-min-seconds", "0.05"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = _await_listening(proc)
            yield replace(settings, target=url, token=None, limited_token=limited, client_id=client_id,
                          client_secret=None, token_url=None, private_key=str(private_key), key_id=kid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _await_listening(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + MOCK_START_TIMEOUT
    assert proc.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"fhir-mock exited with {proc.returncode}: {''.join(seen)[-500:]}")
            continue
        seen.append(line)
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
            _drain(proc)
            return url
    raise RuntimeError("fhir-mock did not report it was listening in time")


def _drain(proc: subprocess.Popen) -> None:
    """Keep reading the mock's output so its pipe never fills and blocks it."""
    import threading

    def pump() -> None:
        for _ in iter(proc.stdout.readline, ""):
            pass
    threading.Thread(target=pump, daemon=True).start()


class _Collector:
    """Records every conformance check pytest collects (id, requirements, profile)."""

    def __init__(self) -> None:
        self.checks: list[dict[str, object]] = []

    def pytest_collection_finish(self, session) -> None:  # type: ignore[no-untyped-def]
        from .plugin import is_check, item_check_id, item_profile, item_requirements

        for item in session.items:
            if is_check(item):
                self.checks.append({"id": item_check_id(item), "nodeid": item.nodeid,
                                    "profile": item_profile(item), "requirements": list(item_requirements(item))})


def collect_checks() -> list[dict[str, object]]:
    """Every check shipped in the package, without contacting any target."""
    import io

    import pytest

    from .plugin import InjectedSettings

    checks_dir = Path(__file__).parent / "checks"
    hypothesis_home()
    collector = _Collector()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(checks_dir), "--rootdir", str(checks_dir), "-c", str(checks_dir / "pytest.ini"),
                     "-p", "no:cacheprovider", "--collect-only", "-q",
                     "-W", "ignore::pytest.PytestAssertRewriteWarning"],
                    plugins=[InjectedSettings(Settings(), 0), collector])
    return collector.checks


def _list(fmt: str) -> int:
    reqs = list(catalogue().values())
    checks = collect_checks()
    by_req: dict[str, list[str]] = {}
    for c in checks:
        for rid in c["requirements"]:  # type: ignore[union-attr]
            by_req.setdefault(rid, []).append(str(c["id"]))
    if fmt == "json":
        print(json.dumps([{**r.__dict__, "checks": by_req.get(r.id, [])} for r in reqs], indent=2))
        return EXIT_OK
    print(f"{len(reqs)} requirements, {len(checks)} checks")
    for r in reqs:
        print(f"{r.id:<32} {r.strength:<7} {r.profile:<12} {r.statement}\n{'':<53}source: {r.source} ({r.cites})")
        if r.decision:
            print(f"{'':<53}the kit's decision: {r.decision}")
        tied = by_req.get(r.id, [])
        print(f"{'':<53}checks ({len(tied)}): {', '.join(tied) if tied else '(none)'}")
    print("\nchecks:")
    for c in checks:
        print(f"  {c['id']:<70} {c['profile']:<12} {' '.join(c['requirements'])}")  # type: ignore[arg-type]
    return EXIT_OK


def _diff(old_path: Path, new_path: Path, fmt: str) -> int:
    """A readable comparison of two summaries; exit 1 when NEW has regressions against OLD."""
    try:
        old, new = load_summary(old_path), load_summary(new_path)
    except ValueError as exc:
        print(f"fhir-conformance: {exc}", file=sys.stderr)
        return EXIT_USAGE
    comparison = compare(old, new["requirements"])
    if old.get("target") != new.get("target"):
        print(f"WARNING: the two summaries are for different targets ({old.get('target')} and "
              f"{new.get('target')}): the changes below may be differences between servers, not regressions",
              file=sys.stderr)
    if fmt == "json":
        print(json.dumps(comparison, indent=2))
    else:
        for label, s in (("old", old), ("new", new)):
            print(f"{label}: {s.get('target')}  started {s.get('started')}  seed {s.get('seed')}  "
                  f"exit {s.get('exit_code')}")
        for label, s in (("old", old), ("new", new)):
            counts: dict[str, int] = {}
            for r in s["requirements"]:
                counts[r.get("verdict", "?")] = counts.get(r.get("verdict", "?"), 0) + 1
            print(f"{label} verdicts: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in
                                                     ("pass", "fail", "warn", "error", "skip", "untested")))
        render_comparison(comparison, print, limit=1000)
    return EXIT_FAILED if comparison["regressions"] else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
