"""Bulk Cohort membership agreement: the suite's oracle against the mock on generated cohorts.

Starts the mock (``MockConfig(patients=N)``, on a thread), reads the population once by a
Patient-level export, then for each cohort the suite's strategies generate: async create →
Group export (``_type=Patient``) → judge with the suite's own evaluator. Prints agreed/total,
the time taken and every mismatch explained (missing and extra patients, the deciding filter).

    python benchmarks/cohort_agreement.py --patients 10000 --cohorts 200 --seed 20261121

Not a timed assertion: ``tests/test_cohort_agreement.py`` runs a small version in CI.
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.cohort.oracle import Population, judge  # noqa: E402
from conformance.strategies.cohort import CohortDefinition, Facts, cohort_definition  # noqa: E402
from mock_server import MockConfig  # noqa: E402
from mock_server.server import run_in_thread  # noqa: E402

TOKEN = "dev-token"
POPULATION_TYPES = "Patient,Condition,Encounter,Observation"


@dataclass
class Result:
    total: int = 0
    agreed: int = 0
    nontrivial: int = 0
    seconds: float = 0.0
    population_seconds: float = 0.0
    patients: int = 0
    mismatches: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


class Client:
    def __init__(self, base_url: str, token: str = TOKEN):
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}",
                                                             "Accept": "application/fhir+json"}, timeout=120)

    def wait(self, url: str, limit: float = 300) -> httpx.Response:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            r = self.http.get(url)
            if r.status_code not in (202, 429):
                return r
            time.sleep(0.02)
        raise TimeoutError(url)

    def export(self, path: str, params: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        r = self.http.get(path, params=params, headers={"Prefer": "respond-async"})
        if r.status_code != 202:
            raise RuntimeError(f"{path}: HTTP {r.status_code} {r.text[:300]}")
        done = self.wait(r.headers["content-location"])
        if done.status_code != 200:
            raise RuntimeError(f"{path}: export failed HTTP {done.status_code} {done.text[:300]}")
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in done.json()["output"]:
            with self.http.stream("GET", entry["url"]) as f:
                out[entry["type"]] = [json.loads(line) for line in f.iter_lines() if line.strip()]
        self.http.delete(r.headers["content-location"])
        return out

    def create(self, payload: dict[str, Any]) -> str:
        r = self.http.post("/Group", json=payload, headers={"Prefer": "respond-async"})
        if r.status_code != 202:
            raise RuntimeError(f"create: HTTP {r.status_code} {r.text[:300]}")
        done = self.wait(r.headers["content-location"])
        if done.status_code != 200:
            raise RuntimeError(f"create: HTTP {done.status_code} {done.text[:300]}")
        return done.json()["entry"][0]["response"]["location"].split("/")[-1]

    def patient_group(self, ids: list[str]) -> str:
        body = {"resourceType": "Group", "type": "person", "actual": True, "name": "agreement base",
                "member": [{"entity": {"reference": f"Patient/{p}"}} for p in ids]}
        r = self.http.post("/Group", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"patient group: HTTP {r.status_code} {r.text[:300]}")
        return r.headers["location"].rstrip("/").split("/")[-1]


def read_population(client: Client) -> Population:
    population = Population()
    for resources in client.export("/Patient/$export", {"_type": POPULATION_TYPES}).values():
        population.add_all(resources)
    return population


def agreement(base_url: str, cohorts: int, seed: int, group_size: int = 200, verbose: bool = False) -> Result:
    """Generate ``cohorts`` cohorts deterministically and judge the mock's exports with the oracle."""
    client = Client(base_url)
    result = Result()
    started = time.perf_counter()
    facts = Facts.of(read_population(client))
    result.population_seconds = time.perf_counter() - started
    result.patients = len(facts.patient_ids)
    base_ids = facts.patient_ids[::2][:group_size]
    groups = {client.patient_group(base_ids): set(base_ids)}
    prefix = f"agreement-{secrets.token_hex(3)}"

    def one(definition: CohortDefinition) -> None:
        gid = client.create(definition.payload)
        exported = client.export(f"/Group/{gid}/$export", {"_type": "Patient"})
        actual = {p["id"] for p in exported.get("Patient", [])}
        verdict = judge(definition.filters, facts.population, actual, definition.base)
        universe = facts.population.patient_ids if definition.base is None else definition.base
        result.total += 1
        result.sizes.append(len(verdict.expected))
        result.nontrivial += 0 < len(verdict.expected) < len(universe)
        if verdict.agrees:
            result.agreed += 1
        else:
            result.mismatches.append(f"{definition!r}\n{verdict.describe()}")
        if verbose:
            print(f"{result.total:4d} {'ok ' if verdict.agrees else 'BAD'} {len(actual):6d} members  {definition!r}",
                  flush=True)
        client.http.delete(f"/Group/{gid}")

    @hypothesis_seed(seed)
    @settings(max_examples=cohorts, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        one(data.draw(cohort_definition(facts, f"{prefix} cohort", groups)))

    run()
    result.seconds = time.perf_counter() - started
    return result


def report(result: Result) -> str:
    lines = [f"population: {result.patients} patients read by Patient/$export in {result.population_seconds:.1f} s",
             f"cohorts agreed: {result.agreed}/{result.total} ({result.nontrivial} select some but not all of "
             f"their base; median size {sorted(result.sizes)[len(result.sizes) // 2] if result.sizes else 0})",
             f"time: {result.seconds:.1f} s ({result.seconds / max(result.total, 1):.2f} s per cohort)"]
    for m in result.mismatches[:20]:
        lines.append("MISMATCH " + m)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10000, help="generated patients (besides the fixtures)")
    parser.add_argument("--cohorts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--target", help="an already running mock (else one is started on a thread)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.target:
        result = agreement(args.target, args.cohorts, args.seed, verbose=args.verbose)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            config = MockConfig(db=str(Path(tmp) / "mock.sqlite3"), patients=args.patients, export_min_seconds=0)
            with run_in_thread(config) as base_url:
                print(f"mock with {args.patients} generated patients up in {time.perf_counter() - t:.1f} s", flush=True)
                result = agreement(base_url, args.cohorts, args.seed, verbose=args.verbose)
    print(report(result))
    return 0 if result.agreed == result.total else 1


if __name__ == "__main__":
    sys.exit(main())
