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
