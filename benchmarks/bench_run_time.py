"""Wall time of the default run against the bundled mock: a base commit against this tree.

    .venv/bin/python benchmarks/bench_run_time.py [--base REV] [--rounds N] [--seed N]

The base commit is checked out with ``git worktree`` into a temporary directory and run
with this virtualenv's interpreter (``PYTHONPATH`` points at it), so both runs share the
machine, the dependencies, the seed and the examples; rounds alternate base and new so
background load hits both alike. Prints each run's seconds, the number of checks and
examples it ran (they must be equal: a faster run that tests less is not faster), and
the ratio of the medians. Not a test: machines are loaded, figures vary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(tree: Path, seed: int, report_dir: Path, python: str = sys.executable) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_CONFORMANCE_")}
    env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    proc = subprocess.run([python, "-m", "conformance.cli", "run", "--seed", str(seed),
                           "--report-dir", str(report_dir)], cwd=tree, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or not (report_dir / "summary.json").exists():
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"run in {tree} exited {proc.returncode}")
    return elapsed, json.loads((report_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="1d5ccbe", help="the commit to compare with (default: before issue 13)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--base-python", default=sys.executable,
                        help="interpreter for the base run, when the base needs other dependencies "
                             "(the commit before issue 13 needs pytest-html: a venv with that commit's '.[dev]')")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.base],
                       check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"base": [], "new": []}
            counts: dict[str, int] = {}
            for i in range(args.rounds):
                for label, tree, python in (("base", base_tree, args.base_python), ("new", ROOT, sys.executable)):
                    seconds, summary = run_once(tree, args.seed, Path(tmp) / f"{label}-{i}", python)
                    times[label].append(seconds)
                    counts[label] = len(summary["checks"])
                    print(f"round {i + 1} {label:<4} {seconds:7.1f} s  {len(summary['checks'])} checks  "
                          f"exit {summary['exit_code']}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                           capture_output=True)
    base, new = statistics.median(times["base"]), statistics.median(times["new"])
    print(f"base {args.base}: median {base:.1f} s; new: median {new:.1f} s; new/base = {new / base:.0%} "
          f"(seed {args.seed}, {counts['base']} vs {counts['new']} checks, same examples)")
    print(f"per check: base {base / counts['base'] * 1000:.0f} ms, new {new / counts['new'] * 1000:.0f} ms")
    if counts["new"] < counts["base"]:
        print("WARNING: the new tree ran fewer checks than the base: it is not comparable")
    elif counts["new"] > counts["base"]:
        print(f"(the new tree has {counts['new'] - counts['base']} checks the base did not have yet)")


if __name__ == "__main__":
    main()
