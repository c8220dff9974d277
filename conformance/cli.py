"""``fhir-conformance``: run the suite against a target (or the bundled mock).

    fhir-conformance run                      # starts the bundled mock, runs everything
    fhir-conformance run --target URL         # a server of yours (token from the environment)
    fhir-conformance list                     # the requirement catalogue

Exit codes (SPEC §6): 0 no SHALL failure, 1 a SHALL failure (any with --strict),
2 usage or configuration error, 3 target unreachable or the run broke.
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

import httpx

from .report import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .requirements import catalogue
from .settings import PROFILES, Settings, SettingsError, load

MOCK_START_TIMEOUT = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-conformance", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the suite and write reports")
    run.add_argument("--target", help="base URL of the server under test (default: start the bundled mock)")
    run.add_argument("--token", help="bearer token (prefer FHIR_CONFORMANCE_TOKEN: argv is visible to others)")
    run.add_argument("--client-id", help="OAuth client id (client credentials)")
    run.add_argument("--client-secret", help="OAuth client secret (prefer FHIR_CONFORMANCE_CLIENT_SECRET)")
    run.add_argument("--token-url", help="OAuth token endpoint (default: from the CapabilityStatement)")
    run.add_argument("--limited-token", help="a valid token without write scopes, for the 403 checks")
    run.add_argument("--profile", action="append", choices=PROFILES, dest="profiles",
                     help="run this profile even if the target does not declare it (repeatable)")
    run.add_argument("--requirement", action="append", dest="requirements", metavar="ID",
                     help="run only the checks tied to this requirement (repeatable)")
    run.add_argument("--strict", action="store_true", default=None,
                     help="SHOULD/MAY breaches and inexact status codes fail the run")
    run.add_argument("--notes-replace", action="store_true", default=None,
                     help="the target replaces Task notes on update (instead of appending)")
    run.add_argument("--no-shrink", action="store_false", dest="shrink", default=None,
                     help="report failing examples as found, without minimising them (faster)")
    run.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing check")
    run.add_argument("--report-dir", help="where reports are written (default reports/)")
    run.add_argument("--seed", type=int, help="Hypothesis seed (printed in every report)")
    run.add_argument("--examples", type=int, help="Hypothesis examples per property check")
    run.add_argument("--timeout", type=float, help="seconds per HTTP request")
    run.add_argument("--export-timeout", type=float, help="seconds a bulk export may take (default 120)")
    run.add_argument("--config", type=Path, help="settings file (default ./conformance.toml)")
    run.add_argument("-k", dest="keyword", help="only checks matching this pytest -k expression")
    run.add_argument("-v", "--verbose", action="store_true", help="one line per check")
    lst = sub.add_parser("list", help="print the requirement catalogue")
    lst.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.command == "list":
        return _list(args.format)
    cli = {k: getattr(args, k) for k in ("target", "token", "client_id", "client_secret", "token_url",
                                         "limited_token", "profiles", "requirements", "strict",
                                         "notes_replace", "shrink", "report_dir", "seed", "examples", "timeout", "export_timeout")}
    try:
        settings = load(cli, os.environ, args.config)
    except SettingsError as exc:
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
        problem = preflight(settings)
        if problem:
            print(f"fhir-conformance: target unreachable: {problem}", file=sys.stderr)
            return EXIT_BROKEN
        return run_pytest(settings, seed, args.keyword, args.verbose, args.exitfirst)


def preflight(settings: Settings) -> str | None:
    """None when the target answers HTTP at all, else the one-line reason."""
    try:
        httpx.get(settings.target.rstrip("/") + "/metadata", timeout=settings.timeout,
                  headers={"Accept": "application/fhir+json"})
    except httpx.HTTPError as exc:
        return f"{settings.target}: {type(exc).__name__}: {exc}"
    return None


def run_pytest(settings: Settings, seed: int, keyword: str | None, verbose: bool, exitfirst: bool = False) -> int:
    import pytest

    from .plugin import InjectedSettings

    report_dir = Path(settings.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    checks_dir = Path(__file__).parent / "checks"
    args = [str(checks_dir), "--rootdir", str(checks_dir), "-c", str(checks_dir / "pytest.ini"),
            "-p", "no:cacheprovider", f"--hypothesis-seed={seed}",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            f"--html={report_dir / 'report.html'}", "--self-contained-html",
            f"--junitxml={report_dir / 'junit.xml'}", "-o", "junit_suite_name=fhir-conformance",
            "-v" if verbose else "-q", "--tb=short", "-rfE"]
    if keyword:
        args += ["-k", keyword]
    if exitfirst:
        args.append("-x")
    code = pytest.main(args, plugins=[InjectedSettings(settings, seed)])
    summary_path = report_dir / "summary.json"
    if code in (pytest.ExitCode.USAGE_ERROR,):
        return EXIT_USAGE
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("fhir-conformance: no check selected", file=sys.stderr)
        return EXIT_USAGE
    if not summary_path.exists() or code in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.INTERRUPTED):
        return EXIT_BROKEN
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return int(summary["exit_code"])


@contextlib.contextmanager
def bundled_mock(settings: Settings) -> Iterator[Settings]:
    """Start ``fhir-mock`` on a free loopback port with fresh tokens and a throw-away database."""
    token, limited = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="fhir-mock-") as tmp:
        cmd = [sys.executable, "-m", "mock_server", "--host", "127.0.0.1", "--port", "0",
               "--db", str(Path(tmp) / "mock.sqlite3"), "--token", token, "--token", f"{limited}:system/*.read"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = _await_listening(proc)
            yield replace(settings, target=url, token=token, limited_token=limited,
                          client_id=None, client_secret=None, token_url=None)
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


def _list(fmt: str) -> int:
    reqs = list(catalogue().values())
    if fmt == "json":
        print(json.dumps([r.__dict__ for r in reqs], indent=2))
        return EXIT_OK
    for r in reqs:
        print(f"{r.id:<32} {r.strength:<7} {r.profile:<12} {r.statement}\n{'':<53}source: {r.source}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
