"""Fixtures the check modules share, registered once. Helpers live in ``support/``."""

from __future__ import annotations

import pytest

from conformance.client import FhirClient
from conformance.plugin import ensure_run
from conformance.target import Ledger

from .support.api import GroupApi

# Fixtures shared across check modules are registered here, once: a session fixture
# imported into several modules would be a separate fixture (and run) in each.
from .support.cohort import cohorts, narrowing_groups, population  # noqa: F401
from .support.export import baseline_export, bulk, export_group  # noqa: F401
from .support.tasks import task_teams, tasks  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    """Runs as this conftest registers, before the check modules are imported, so their
    ``@given`` tests see the run's Hypothesis settings (examples, no deadline)."""
    ensure_run(config)


@pytest.fixture(scope="session")
def groups(fhir: FhirClient, ledger: Ledger) -> GroupApi:
    return GroupApi(fhir, ledger)
