"""CI's small version of benchmarks/cohort_agreement.py: on the default population, the suite's
membership oracle agrees with the mock for every generated cohort (deterministic seed)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mock_server import MockConfig
from mock_server.server import run_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from cohort_agreement import agreement, report  # noqa: E402

pytestmark = pytest.mark.slow
COHORTS = 25


def test_oracle_agrees_with_the_mock_on_generated_cohorts():
    with run_in_thread(MockConfig(db=":memory:", export_min_seconds=0)) as base_url:
        result = agreement(base_url, COHORTS, seed=20261121, group_size=40)
    assert result.total == COHORTS, report(result)
    assert result.agreed == result.total, report(result)
    assert result.nontrivial >= COHORTS // 2, report(result)   # most select some but not all of their base
