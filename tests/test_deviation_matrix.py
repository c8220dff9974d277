"""The suite's own power: against each named deviation of the mock, the checks tied to
the requirement it breaks must report a failure (or, for SHOULD/MAY, a warning).

The matrix is printed at the end of the test session (see conftest.py).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import conformance.rules

from conformance.rules.catalogue import catalogue
from mock_server import MockConfig
from mock_server.deviations import DEVIATIONS
from mock_server.server import run_in_thread, run_tls_in_thread

from keys import pki
from suite_runner import TOKEN, TOKENS, run_suite, smart_client, smart_env

pytestmark = pytest.mark.slow
# deviations only seen at the end of a wait: a short --export-timeout keeps their case cheap
EXTRA_ARGS = {"export-empty-group-stuck": ("--export-timeout", "3")}
TLS_DEVIATIONS = {"tls-legacy-only", "tls-off"}      # effects of the TLS listener: served with a certificate


def test_every_deviation_names_catalogued_requirements():
    for deviation in DEVIATIONS.values():
        assert deviation.breaks and set(deviation.breaks) <= set(catalogue()), deviation


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_deviation_is_caught(name, tmp_path, record_property):
    deviation = DEVIATIONS[name]
    # smart-backend checks need a registered SMART client; the run then gets its token the SMART way
    smart = any(catalogue()[r].profile == "smart-backend" for r in deviation.breaks)
    jwks_clients, env = smart_client(tmp_path / "smart") if smart else ({}, {})
    config = MockConfig(db=str(tmp_path / "mock.sqlite3"), tokens=TOKENS, jwks_clients=jwks_clients,
                        deviations=frozenset({name}))
    selection = [arg for rid in deviation.breaks for arg in ("--requirement", rid)]
    extra = EXTRA_ARGS.get(name, ())
    if name in TLS_DEVIATIONS:
        (tmp_path / "pki").mkdir()
        certs = pki(tmp_path / "pki")
        serving = run_tls_in_thread(config, str(certs.server_cert), str(certs.server_key))
        extra = (*extra, "--ca-bundle", str(certs.ca))
    else:
        serving = run_in_thread(config)
    with serving as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "11", "--examples", "5", "--no-shrink", "-x",
                        *selection, *extra, target=base_url, token=None if smart else TOKEN,
                        env=smart_env(env, base_url) if smart else None)
    verdicts = run.verdicts()
    caught = {rid: verdicts[rid] for rid in deviation.breaks if verdicts[rid] in ("fail", "warn")}
    checks = sorted({c["id"] for c in run.summary["checks"]
                     if set(c["failed_requirements"]) & set(deviation.breaks)
                     or set(c["warned_requirements"]) & set(deviation.breaks)})
    record_property("deviation_matrix", (name, ",".join(deviation.breaks),
                                         "caught" if caught else "MISSED", len(checks)))
    assert caught, (f"deviation {name} ({deviation.description}) was not caught; verdicts "
                    f"{ {r: verdicts[r] for r in deviation.breaks} }\n{run.output[-3000:]}")
    mandatory = any(catalogue()[r].mandatory for r in caught)
    assert run.exit_code == (1 if mandatory else 0), run.output[-2000:]


def test_every_requirement_of_issue_14_has_a_deviation():
    """SMART, TLS, declarations, file status (rules/smart_backend.toml) and resource validity: each one
    has a deviation, so the matrix above shows its check can fail."""
    toml = Path(conformance.rules.__file__).parent / "smart_backend.toml"
    new = {r["id"] for r in tomllib.loads(toml.read_text())["requirement"]}
    new |= {"FHIR-RESOURCE-VALID", "BULK-EXPORT-RESOURCE-VALID"}
    broken = {rid for deviation in DEVIATIONS.values() for rid in deviation.breaks}
    assert new - broken == set()
