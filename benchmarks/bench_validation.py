"""Validation of a 100k-line export: lines per second, each stage side by side (not run by CI).

    .venv/bin/python benchmarks/bench_validation.py [--lines 100000] [--sample 10000] [--invalid-every 0]

The lines are the mock's own population (``mock_server.population``: Patients and their
Conditions, Encounters, Observations), as NDJSON text, so every stage also pays ``json.loads``
as the suite does. Stages, each over the same lines:

- ``parse only``: ``json.loads`` per line (the floor);
- ``fhir.resources``: the R4B model validation the suite used before (on ``--sample`` lines);
- ``jsonschema $ref``: ``Draft6Validator.iter_errors`` on ``{"$ref": "#/definitions/<type>"}``
  (on ``--sample`` lines);
- ``jsonschema inlined``: the same over the definitions with references rewired in place
  (what the suite uses for the first ``FAST_AFTER`` resources of a type; ``--sample`` lines);
- ``fastjsonschema``: the generated validator alone;
- ``schema (shipped)``: ``conformance.validation`` without invariants, as the suite runs it
  (jsonschema for the first ``FAST_AFTER`` resources of a type, then the generated validator,
  jsonschema listing the errors of the resources it refuses);
- ``invariants``: the FHIRPath table and the ele-1/ext-1 walk alone;
- ``validate() total``: both, as the suite runs them on every downloaded line.

``--invalid-every N`` breaks the gender of every Nth Patient to show the cost of the slow
path (jsonschema listing the errors). Compile times are printed apart. Figures vary with
the machine's load: compare the stages of one run, never assert them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.validation import invariants, schema, validator  # noqa: E402
from mock_server.population import compartment_for, generated_patients  # noqa: E402


def export_lines(count: int, invalid_every: int) -> list[str]:
    lines: list[str] = []
    patients = 0
    for _, _, patient in generated_patients(count):   # far more than needed; stops at count lines
        patients += 1
        if invalid_every and patients % invalid_every == 0:
            patient = {**patient, "gender": "unknown-value"}
        for resource in (patient, *(r for *_, r in compartment_for(patient))):
            lines.append(json.dumps(resource, separators=(",", ":")))
            if len(lines) == count:
                return lines
    return lines


def timed(label: str, lines: list[str], work: Callable[[dict], object]) -> tuple[float, int]:
    problems = 0
    started = time.perf_counter()
    for line in lines:
        if work(json.loads(line)):
            problems += 1
    seconds = time.perf_counter() - started
    rate = len(lines) / seconds if seconds else float("inf")
    print(f"{label:<20} {len(lines):>7} lines {seconds:8.2f} s {rate:>10,.0f} lines/s  {problems} with problems",
          flush=True)
    return rate, problems


def _fast(resource: dict) -> bool:
    try:
        schema.fast_validator(resource["resourceType"])(resource)
        return False
    except Exception:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=10_000, help="lines for the slow reference stages")
    parser.add_argument("--invalid-every", type=int, default=0, help="break every Nth Patient's gender")
    args = parser.parse_args()

    lines = export_lines(args.lines, args.invalid_every)
    types = sorted({json.loads(line)["resourceType"] for line in lines[:2000]})
    print(f"{len(lines)} NDJSON lines of {', '.join(types)} from the mock's population "
          f"({sum(map(len, lines)) / 1e6:.1f} MB)")

    started = time.perf_counter()
    schema.document()
    loaded = time.perf_counter() - started
    for rtype in types:
        schema.fast_validator(rtype)
    compiled = time.perf_counter() - started - loaded
    print(f"FAST_AFTER = {schema.FAST_AFTER}; schema load {loaded:.2f} s; fastjsonschema compile of {len(types)} types {compiled:.2f} s "
          f"({compiled / len(types):.2f} s each, once per process)")

    from fhir.resources.R4B import get_fhir_model_class
    sample = lines[:args.sample]
    timed("parse only", lines, lambda r: None)
    timed("fhir.resources", sample, lambda r: get_fhir_model_class(r["resourceType"]).model_validate(r) and None)
    import jsonschema
    by_ref = {t: jsonschema.Draft6Validator(schema._root(t)) for t in types}
    timed("jsonschema $ref", sample, lambda r: list(by_ref[r["resourceType"]].iter_errors(r)))
    timed("jsonschema inlined", sample, lambda r: list(schema.full_validator(r["resourceType"]).iter_errors(r)))
    timed("fastjsonschema", lines, lambda r: _fast(r))
    schema._seen.clear()     # each shipped stage starts as a fresh run: jsonschema for the first FAST_AFTER per type
    timed("schema (shipped)", lines, lambda r: validator.validate(r, check_invariants=False))
    timed("invariants", lines, lambda r: invariants.breaches(r)[0] + invariants.element_problems(r))
    schema._seen.clear()
    timed("validate() total", lines, validator.validate)


if __name__ == "__main__":
    main()
