"""Mock latency for Group interactions, and the suite's whole run against the mock.

    python benchmarks/bench_group.py [--requests 500]

Prints p50/p95 latency per interaction against a real waitress server (file
database), then the wall time of `fhir-conformance run` against it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mock_server import MockConfig
from mock_server.server import run_in_thread

TOKEN = "bench-token"


def timed(n: int, call) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def report(name: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=20)
    print(f"{name:<28} n={len(samples):<5} p50={statistics.median(samples):6.2f} ms  p95={q[18]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = MockConfig(db=str(Path(tmp) / "bench.sqlite3"), tokens={TOKEN: ""})
        with run_in_thread(config) as base, httpx.Client(base_url=base, headers={
                "Authorization": f"Bearer {TOKEN}"}) as c:
            ids: list[str] = []

            def create(i: int) -> None:
                r = c.post("/Group", json={"resourceType": "Group", "type": "person", "actual": True,
                                           "name": f"bench {i}"})
                ids.append(r.headers["location"].rsplit("/", 1)[1])

            report("create", timed(args.requests, create))
            report("read", timed(args.requests, lambda i: c.get(f"/Group/{ids[i]}")))
            report("update", timed(args.requests, lambda i: c.put(f"/Group/{ids[i]}", json={
                "resourceType": "Group", "id": ids[i], "type": "person", "actual": True, "name": f"bench {i}b"})))
            report("search name (prefix)", timed(args.requests, lambda i: c.get("/Group", params={"name": f"bench {i}"})))
            report("search type, page 3", timed(args.requests, lambda i: c.get(
                "/Group", params={"type": "person", "_count": 20, "_offset": 40})))
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--target", base, "--seed", "1",
                                   "--report-dir", str(Path(tmp) / "reports")],
                                  env={**__import__("os").environ, "FHIR_CONFORMANCE_TOKEN": TOKEN},
                                  capture_output=True, text=True)
            print(f"{'suite run (all checks)':<28} {time.perf_counter() - start:6.1f} s  exit {proc.returncode}  "
                  f"{proc.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
