"""Run ``fhir-conformance`` as its users do (a separate process) against a mock in a thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "suite-test-token"
LIMITED = "suite-test-limited"
TOKENS = {TOKEN: "", LIMITED: "system/*.read"}


@dataclass
class SuiteRun:
    exit_code: int
    output: str
    report_dir: Path

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.report_dir / "summary.json").read_text())

    def verdicts(self) -> dict[str, str]:
        return {r["id"]: r["verdict"] for r in self.summary["requirements"]}


def run_suite(report_dir: Path, *args: str, target: str | None = None, token: str | None = TOKEN,
              limited: str | None = LIMITED, env: dict[str, str] | None = None, timeout: float = 600) -> SuiteRun:
    """``fhir-conformance run`` with secrets passed the recommended way: in the environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_CONFORMANCE_")}
    if token:
        full_env["FHIR_CONFORMANCE_TOKEN"] = token
    if limited:
        full_env["FHIR_CONFORMANCE_LIMITED_TOKEN"] = limited
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--report-dir", str(report_dir), *args]
    if target:
        cmd += ["--target", target]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=report_dir.parent)
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, report_dir)


SMART_CLIENT = "suite-smart-app"


def smart_client(tmp: Path) -> tuple[dict[str, tuple[dict, str]], dict[str, str]]:
    """A fresh SMART Backend Services client: (the mock's ``jwks_clients``, the suite's environment).

    The environment passes the client id, private key and kid; the token URL is set separately
    (``smart_env``) once the mock's address is known, so that a deviating discovery document
    cannot take the run's own identity down with it."""
    from conformance.smart import new_client_key

    tmp.mkdir(parents=True, exist_ok=True)
    private, jwks, kid = new_client_key(tmp)
    env = {"FHIR_CONFORMANCE_CLIENT_ID": SMART_CLIENT, "FHIR_CONFORMANCE_PRIVATE_KEY": str(private),
           "FHIR_CONFORMANCE_KEY_ID": kid}
    return {SMART_CLIENT: (json.loads(jwks.read_text()), "")}, env


def smart_env(env: dict[str, str], base_url: str) -> dict[str, str]:
    return env | {"FHIR_CONFORMANCE_TOKEN_URL": f"{base_url}/auth/token/"}
